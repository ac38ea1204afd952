// Everything the package throws is a PsUsageError, and every result is well formed: forged
// cursors, dates the database cannot hold, a database that was never migrated, close() while a
// batch runs, and NDJSON idempotency keys that would grow past the key limit (issue 9, item 6).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import {
  DatabaseConnectionError,
  DatabaseNotMigratedError,
  PsUsageError,
  UsageValidationError,
  agentTreeCostReport,
  costReport,
  findExternalApiUsage,
  findModelUsage,
  forUser,
  listExternalApiPrices,
  listModelPrices,
  openDatabase,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelCall,
  recordModelUsage,
  recordModelUsageBatch,
  recordNdjson,
  seedDemo,
  setExternalApiPrice,
  setModelPrice,
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  syncPricesFromConfiguration,
  type Database,
  setBudget,
  listBudgets,
  removeBudget,
  budgetStatus,
  checkBudgets,
} from "../src";
import { issuesOf } from "./support/errors";
import { createExternalApi, createModel } from "./support/fixtures";
import { backend, createScratchDatabase, openTestDatabase, type TestDatabase } from "./support/testDatabase";

/** What a call rejected with (fails the test if it resolved). */
async function rejection(name: string, call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => new Error(`${name} succeeded`),
    (e: unknown) => e,
  );
}

function forgedCursor(version: string, content: object): string {
  return `${version}.${Buffer.from(JSON.stringify(content), "utf8").toString("base64url")}`;
}

describe("on a migrated database", () => {
  let t: TestDatabase;
  let db: Database;
  let modelId: number;
  let externalApiId: number;

  beforeAll(async () => {
    t = await openTestDatabase();
    db = t.db;
    modelId = await createModel(db);
    externalApiId = await createExternalApi(db);
  });
  afterAll(() => t.dispose());

  test("a forged cursor whose id or position is out of range is a UsageValidationError on page.cursor", async () => {
    await recordModelUsage(db, { userId: 1, modelId });
    const forged = [
      forgedCursor("v1", { t: "m", o: "n", id: 2 ** 31 }),
      forgedCursor("v1", { t: "m", o: "n", id: 2 ** 40 }),
      forgedCursor("v2", { t: "m", o: "n", at: "2026-01-01T00:00:00.000000Z", id: 2 ** 31 }),
      forgedCursor("v2", { t: "m", o: "n", at: "2026-13-01T00:00:00.000000Z", id: 1 }),
      forgedCursor("v2", { t: "m", o: "n", at: "2026-02-30T00:00:00.000000Z", id: 1 }),
      forgedCursor("v2", { t: "m", o: "n", at: "0000-01-01T00:00:00.000000Z", id: 1 }),
      forgedCursor("v2", { t: "m", o: "n", at: "2026-01-01 00:00:00", id: 1 }),
      forgedCursor("v2", { t: "m", o: "n", at: 5, id: 1 }),
      forgedCursor("v3", { t: "m", o: "n", at: "2026-01-01T00:00:00.000000Z", id: 1 }),
    ];
    for (const cursor of forged) {
      const issues = await issuesOf(findModelUsage(db, {}, { cursor }));
      expect([cursor, issues.map((i) => i.field)]).toEqual([cursor, ["page.cursor"]]);
    }
    const apiIssues = await issuesOf(findExternalApiUsage(db, {}, { cursor: forgedCursor("v1", { t: "e", o: "n", id: 2 ** 31 }) }));
    expect(apiIssues.map((i) => i.field)).toEqual(["page.cursor"]);
  });

  test("paging goes on exactly when the cursor's row and its neighbours are deleted between pages", async () => {
    const userId = 101;
    const base = Date.parse("2026-05-01T00:00:00Z");
    // Pairs of rows share a createdAt, so ties are broken by id.
    const inputs = Array.from({ length: 12 }, (_, i) => ({ userId, modelId, createdAt: new Date(base + Math.floor(i / 2) * 1000) }));
    for (const order of ["newest", "oldest"] as const) {
      await db.prisma.psModelUsage.deleteMany({ where: { userId } });
      const { ids } = await recordModelUsageBatch(db, inputs, { returnIds: true });
      const sorted = [...ids!].sort((a, b) => (order === "oldest" ? a - b : b - a));
      const seen: number[] = [];
      const deletedUnseen = new Set<number>();
      let page = await findModelUsage(db, { userId }, { limit: 3, order });
      for (;;) {
        seen.push(...page.items.map((r) => r.id));
        // Bounded: a cursor that does not move on must fail the test, not loop.
        if (!page.nextCursor || seen.length > 24) break;
        // A retention job deletes the page's last row (the cursor's row), the row before it
        // and the row after it (the first row of the next page).
        const remaining = (await findModelUsage(db, { userId }, { limit: 1000, order })).items.map((r) => r.id);
        const at = remaining.indexOf(page.items[page.items.length - 1].id);
        const doomed = [remaining[at - 1], remaining[at], remaining[at + 1]].filter((id): id is number => id !== undefined);
        if (remaining[at + 1] !== undefined) deletedUnseen.add(remaining[at + 1]);
        await db.prisma.psModelUsage.deleteMany({ where: { id: { in: doomed } } });
        page = await findModelUsage(db, { userId }, { limit: 3, order, cursor: page.nextCursor });
      }
      // Every row in (createdAt, id) order, once, except those deleted before they were reached.
      expect([order, seen]).toEqual([order, sorted.filter((id) => !deletedUnseen.has(id))]);
      expect(deletedUnseen.size).toBeGreaterThan(0);
    }
  });

  test("rows that share a millisecond but not a microsecond page in exact (createdAt, id) order", async () => {
    const userId = 102;
    // Inserted so that id order is the reverse of microsecond order within the millisecond.
    const micros = [999, 700, 500, 500, 300, 1];
    for (const us of micros) {
      await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, created_at, updated_at)
        VALUES (${userId}, ${modelId}, ${`2026-06-01T12:00:00.123${String(us).padStart(3, "0")}Z`}::timestamptz, now())`;
    }
    // A row a millisecond earlier and one a millisecond later.
    await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, created_at, updated_at)
      VALUES (${userId}, ${modelId}, '2026-06-01T12:00:00.122999Z'::timestamptz, now()), (${userId}, ${modelId}, '2026-06-01T12:00:00.124000Z'::timestamptz, now())`;
    const exact = await db.prisma.$queryRaw<{ id: number }[]>`SELECT id FROM ps_model_usage WHERE user_id = ${userId} ORDER BY created_at, id`;
    const oldestFirst = exact.map((r) => r.id);
    for (const order of ["oldest", "newest"] as const) {
      for (const limit of [1, 2, 3]) {
        const seen: number[] = [];
        let cursor: string | undefined;
        do {
          const page = await findModelUsage(db, { userId }, { limit, order, ...(cursor ? { cursor } : {}) });
          seen.push(...page.items.map((r) => r.id));
          cursor = page.nextCursor ?? undefined;
        } while (cursor && seen.length <= 20);
        expect([order, limit, seen]).toEqual([order, limit, order === "oldest" ? oldestFirst : [...oldestFirst].reverse()]);
      }
    }
    // The same on the external API table, through its own finder.
    for (const us of [900, 100, 500]) {
      await db.prisma.$executeRaw`INSERT INTO ps_external_api_usage (user_id, external_api_id, call_count, created_at, updated_at)
        VALUES (${userId}, ${externalApiId}, 1, ${`2026-06-01T12:00:00.123${String(us).padStart(3, "0")}Z`}::timestamptz, now())`;
    }
    const apiExact = await db.prisma.$queryRaw<{ id: number }[]>`SELECT id FROM ps_external_api_usage WHERE user_id = ${userId} ORDER BY created_at DESC, id DESC`;
    const seen: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await findExternalApiUsage(db, { userId }, { limit: 1, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((r) => r.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor && seen.length <= 20);
    expect(seen).toEqual(apiExact.map((r) => r.id));
  });

  test("a cursor of the previous version (v1) still continues while its row exists, and is refused once it is gone", async () => {
    const userId = 103;
    const { ids } = await recordModelUsageBatch(
      db,
      [0, 1, 2, 3].map((i) => ({ userId, modelId, createdAt: new Date(Date.UTC(2026, 6, 1, 0, 0, i)) })),
      { returnIds: true },
    );
    const v1 = forgedCursor("v1", { t: "m", o: "o", id: ids![1] });
    const page = await findModelUsage(db, { userId }, { order: "oldest", cursor: v1 });
    expect(page.items.map((r) => r.id)).toEqual([ids![2], ids![3]]);
    await db.prisma.psModelUsage.delete({ where: { id: ids![1] } });
    const issues = await issuesOf(findModelUsage(db, { userId }, { order: "oldest", cursor: v1 }));
    expect(issues).toEqual([{ field: "page.cursor", reason: expect.stringMatching(/no longer exists.*start again/) }]);
  });

  test("dates the database cannot hold are refused with UsageValidationError naming the field, never stored", async () => {
    const price = { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 2 };
    const bad = [
      new Date("0000-06-01T00:00:00Z"),
      new Date("-000100-06-01T00:00:00Z"),
      new Date("0000-12-31T23:59:59.999Z"),
      new Date("+010000-01-01T00:00:00Z"),
      new Date(8.64e15),
    ];
    for (const date of bad) {
      expect((await issuesOf(setModelPrice(db, modelId, price, date))).map((i) => i.field)).toEqual(["effectiveFrom"]);
      expect(
        (await issuesOf(setExternalApiPrice(db, externalApiId, { unitType: "call", pricePerUnit: 1, currency: "USD" }, date))).map((i) => i.field),
      ).toEqual(["effectiveFrom"]);
      expect((await issuesOf(syncPricesFromConfiguration(db, { effectiveFrom: date }))).map((i) => i.field)).toEqual(["effectiveFrom"]);
      expect((await issuesOf(syncPricesFromConfiguration(db, { firstPeriodFrom: date }))).map((i) => i.field)).toEqual(["firstPeriodFrom"]);
      expect((await issuesOf(recordModelUsage(db, { userId: 1, modelId, createdAt: date }))).map((i) => i.field)).toEqual(["createdAt"]);
      expect((await issuesOf(findModelUsage(db, { from: date }))).map((i) => i.field)).toEqual(["filter.from"]);
      expect((await issuesOf(sumModelUsage(db, { where: { to: date } }))).map((i) => i.field)).toEqual(["where.to"]);
      expect((await issuesOf(costReport(db, { where: { from: date } } as never))).map((i) => i.field)).toEqual(["where.from"]);
    }
    expect(await listModelPrices(db)).toEqual([]);
    expect(await listExternalApiPrices(db)).toEqual([]);
    // The ends of the accepted range round-trip exactly.
    const first = new Date("0001-01-01T00:00:00.000Z");
    const last = new Date("9999-12-31T23:59:59.999Z");
    const api = await createExternalApi(db, "range");
    await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: 1, currency: "USD" }, first);
    await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: 2, currency: "USD" }, last);
    const periods = await listExternalApiPrices(db, { externalApiId: api });
    expect(periods.map((p) => [p.effectiveFrom.toISOString(), p.effectiveTo?.toISOString() ?? null])).toEqual([
      [first.toISOString(), last.toISOString()],
      [last.toISOString(), null],
    ]);
  });

  test("a time bucket that would start before year 1 is refused, never returned as Invalid Date", async () => {
    const userId = 104;
    const model = await createModel(db, "year-one");
    await recordModelUsage(db, { userId, modelId: model, createdAt: new Date("0001-01-01T00:02:00Z"), tokenInCount: 5 });
    // In UTC the buckets start at 0001-01-01T00:00Z: fine.
    const utc = await sumModelUsage(db, { where: { modelId: model }, bucket: "month" });
    expect(utc.map((r) => r.bucketStart.toISOString())).toEqual(["0001-01-01T00:00:00.000Z"]);
    // West of UTC (New York kept its local mean time, -4:56:02, then), even its hour starts in 1 BC.
    for (const bucket of ["hour", "day", "week", "month"] as const) {
      for (const timeZone of ["America/New_York", "Pacific/Kiritimati"]) {
        const issues = await issuesOf(sumModelUsage(db, { where: { modelId: model }, bucket, timeZone }));
        expect([bucket, timeZone, issues.map((i) => i.field)]).toEqual([bucket, timeZone, ["bucket"]]);
        expect(issues[0].reason).toMatch(/before year 1/);
      }
    }
    const filled = await issuesOf(
      sumModelUsage(db, {
        where: { modelId: model, from: new Date("0001-01-01T00:00:00Z"), to: new Date("0001-03-01T00:00:00Z") },
        bucket: "week",
        timeZone: "America/New_York",
        fillEmptyBuckets: true,
      }),
    );
    expect(filled.map((i) => i.field)).toEqual(["bucket"]);
    const report = await issuesOf(costReport(db, { where: { modelId: model }, bucket: "day", timeZone: "America/New_York" } as never));
    expect(report.map((i) => i.field)).toEqual(["bucket"]);
  });

  test("an NDJSON idempotency key too long for its longest batch suffix is refused before anything is written", async () => {
    const userId = 105;
    const lines = Array.from({ length: 12 }, () => JSON.stringify({ userId, modelId, tokenInCount: 1 })).join("\n");
    // Today's suffixes are ":1-2" … ":11-12": a 250-character key overflows only at the last batch.
    const error = await rejection("import", recordNdjson(db, Readable.from([lines]), { batchSize: 2, idempotencyKey: "k".repeat(250) }));
    expect(error).toBeInstanceOf(UsageValidationError);
    expect((error as UsageValidationError).issues.map((i) => i.field)).toEqual(["options.idempotencyKey"]);
    expect(await db.prisma.psModelUsage.count({ where: { userId } })).toBe(0);
    // The longest key accepted works over many batches, and a re-run replays every one.
    const longest = "k".repeat(221);
    const first = await recordNdjson(db, Readable.from([lines]), { batchSize: 2, idempotencyKey: longest });
    expect(first).toEqual({ lines: 12, modelUsage: 12, externalApiUsage: 0, skippedLines: 0 });
    const again = await recordNdjson(db, Readable.from([lines]), { batchSize: 2, idempotencyKey: longest });
    expect(again).toEqual({ lines: 12, modelUsage: 0, externalApiUsage: 0, skippedLines: 12 });
    expect(await db.prisma.psModelUsage.count({ where: { userId } })).toBe(12);
    const tooLong = await rejection("import", recordNdjson(db, Readable.from([lines]), { idempotencyKey: "k".repeat(222) }));
    expect((tooLong as UsageValidationError).issues).toEqual([
      { field: "options.idempotencyKey", reason: expect.stringMatching(/at most 221 characters/) },
    ]);
  });
});

describe("on a database that was never migrated", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase({ migrate: false });
  });
  afterAll(() => t.dispose());

  test("every public function family rejects with DatabaseNotMigratedError saying to run ps-usage migrate", async () => {
    const db = t.db;
    const scoped = forUser(db, 1);
    const calls: [string, () => Promise<unknown>][] = [
      ["recordModelUsage", () => recordModelUsage(db, { userId: 1, modelId: 1 })],
      ["recordModelUsage with a key", () => recordModelUsage(db, { userId: 1, modelId: 1 }, { idempotencyKey: "k" })],
      ["recordModelCall", () => recordModelCall(db, { userId: 1, modelId: 1, inputTokens: 1, outputTokens: 1 })],
      ["recordModelUsageBatch", () => recordModelUsageBatch(db, [{ userId: 1, modelId: 1 }])],
      ["recordModelUsageBatch in chunks with a key", () => recordModelUsageBatch(db, [{ userId: 1, modelId: 1 }, { userId: 1, modelId: 1 }], { chunkSize: 1, idempotencyKey: "b" })],
      ["recordExternalApiUsage", () => recordExternalApiUsage(db, { userId: 1, externalApiId: 1, callCount: 1 })],
      ["recordExternalApiUsageBatch", () => recordExternalApiUsageBatch(db, [{ userId: 1, externalApiId: 1, callCount: 1 }])],
      ["findModelUsage", () => findModelUsage(db)],
      ["findExternalApiUsage", () => findExternalApiUsage(db, {}, { include: { externalApi: true } })],
      ["sumModelUsage", () => sumModelUsage(db, { bucket: "day", timeZone: "Europe/Berlin" })],
      ["sumExternalApiUsage", () => sumExternalApiUsage(db)],
      ["sumAgentTreeUsage", () => sumAgentTreeUsage(db, 1)],
      ["costReport", () => costReport(db)],
      ["agentTreeCostReport", () => agentTreeCostReport(db, 1)],
      ["setModelPrice", () => setModelPrice(db, 1, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 })],
      ["setExternalApiPrice", () => setExternalApiPrice(db, 1, { unitType: "call", pricePerUnit: 1, currency: "USD" })],
      ["syncPricesFromConfiguration", () => syncPricesFromConfiguration(db)],
      ["listModelPrices", () => listModelPrices(db)],
      ["listExternalApiPrices", () => listExternalApiPrices(db)],
      ["recordNdjson", () => recordNdjson(db, Readable.from(['{"userId":1,"modelId":1}\n']))],
      ["seedDemo", () => seedDemo(db, { events: 10 })],
      ["setBudget", () => setBudget(db, { name: "b", period: "day", amount: 1, currency: "USD" })],
      ["listBudgets", () => listBudgets(db)],
      ["removeBudget", () => removeBudget(db, "b")],
      ["budgetStatus", () => budgetStatus(db, "b")],
      ["checkBudgets", () => checkBudgets(db)],
      ["recordModelUsage with enforceBudgets", () => recordModelUsage(db, { userId: 1, modelId: 1 }, { enforceBudgets: true })],
      ["forUser().setBudget", () => scoped.setBudget({ name: "b", period: "day", amount: 1, currency: "USD" })],
      ["forUser().recordModelUsage", () => scoped.recordModelUsage({ modelId: 1 })],
      ["forUser().findModelUsage", () => scoped.findModelUsage()],
      ["forUser().sumModelUsage", () => scoped.sumModelUsage()],
    ];
    for (const [name, call] of calls) {
      const error = await rejection(name, call());
      expect([name, error]).toEqual([name, expect.any(DatabaseNotMigratedError)]);
      const e = error as DatabaseNotMigratedError;
      expect(e).toBeInstanceOf(PsUsageError);
      expect(e.code).toBe("PS_USAGE_NOT_MIGRATED");
      expect(e.target).toBe(db.target);
      expect(e.message).toContain("is not migrated");
      expect(e.message).toContain("ps-usage migrate");
      // No Prisma internals, no source frames.
      expect([name, e.message]).not.toEqual([name, expect.stringMatching(/invocation|prisma\.|\.ts:\d|at .*\(|P2021|42P01/)]);
    }
  });
});

describe("close() while a batch is being written", () => {
  async function openFresh(): Promise<{ db: Database; reopen: () => Promise<Database>; cleanup: () => Promise<void> }> {
    if (backend === "postgres") {
      const scratch = await createScratchDatabase();
      return {
        db: await openDatabase({ url: scratch.url, migrate: true }),
        reopen: () => openDatabase({ url: scratch.url }),
        cleanup: () => scratch.drop(),
      };
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-close-"));
    return {
      db: await openDatabase({ dataDir: dir, migrate: true }),
      reopen: () => openDatabase({ dataDir: dir }),
      cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  }

  test("a record, find, sum or report in flight when close() is called settles, typed; none hangs", async () => {
    const { db: first, reopen, cleanup } = await openFresh();
    let db = first;
    try {
      const modelId = await createModel(db);
      // One process opens an embedded directory once at a time: close before each reopen.
      await first.close();
      const calls: [string, (d: Database) => Promise<unknown>][] = [
        ["recordModelUsage", (d) => recordModelUsage(d, { userId: 1, modelId })],
        ["recordModelUsage with a key", (d) => recordModelUsage(d, { userId: 1, modelId }, { idempotencyKey: "in-flight" })],
        ["findModelUsage", (d) => findModelUsage(d)],
        ["sumModelUsage", (d) => sumModelUsage(d)],
        ["costReport", (d) => costReport(d)],
        ["setModelPrice", (d) => setModelPrice(d, modelId, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 })],
      ];
      for (const [name, call] of calls) {
        db = await reopen();
        const settled = call(db).then(
          () => "resolved",
          (e: unknown) => e,
        );
        await db.close();
        const outcome = await Promise.race([settled, new Promise((resolve) => setTimeout(() => resolve("never settled"), 10_000))]);
        if (outcome !== "resolved") expect([name, outcome]).toEqual([name, expect.any(DatabaseConnectionError)]);
      }
    } finally {
      await db.close();
      await first.close();
      await cleanup();
    }
  });

  test("the batch rejects with a lost DatabaseConnectionError, writes nothing, and close neither hangs nor throws", async () => {
    const { db: first, reopen, cleanup } = await openFresh();
    let db = first;
    try {
      const modelId = await createModel(db);
      const inputs = Array.from({ length: 60_000 }, (_, i) => ({ userId: 1, modelId, tokenInCount: i }));
      // close() in the same tick as the batch (a batch of several chunks must then stop), and once
      // the batch is under way (it may already have committed: it must say so truthfully).
      const rounds = [
        { chunkSize: 5_000, delayMs: 0 },
        { chunkSize: 60_000, delayMs: 0 },
        { chunkSize: 5_000, delayMs: 50 },
        { chunkSize: 60_000, delayMs: 50 },
      ];
      for (const [round, { chunkSize, delayMs }] of rounds.entries()) {
        if (round > 0) db = await reopen();
        const settled = rejection("batch", recordModelUsageBatch(db, inputs, { chunkSize }));
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
        expect(await rejection("close", db.close())).toEqual(new Error("close succeeded"));
        const error = await settled;
        const check = await reopen();
        try {
          const stored = await check.prisma.psModelUsage.count();
          if ((delayMs > 0 || chunkSize === 60_000) && error instanceof Error && error.message === "batch succeeded") {
            // Its one statement was sent, or it committed, before close(): close() let it end, and it said so.
            expect(stored).toBe(60_000);
            await check.prisma.psModelUsage.deleteMany();
          } else {
            expect([chunkSize, delayMs, error]).toEqual([chunkSize, delayMs, expect.any(DatabaseConnectionError)]);
            expect((error as DatabaseConnectionError).lost).toBe(true);
            expect((error as DatabaseConnectionError).target).toBe(db.target);
            expect(stored).toBe(0);
          }
        } finally {
          await check.close();
        }
        // Calls after close() are typed too.
        expect(await rejection("after close", recordModelUsageBatch(db, inputs.slice(0, 2)))).toBeInstanceOf(DatabaseConnectionError);
        expect(await rejection("after close", findModelUsage(db))).toBeInstanceOf(DatabaseConnectionError);
      }
    } finally {
      await db.close();
      await cleanup();
    }
  });
});
