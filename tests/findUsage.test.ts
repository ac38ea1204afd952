// Finding usage: every filter against hand-computed expectations, both orders, keyset pages
// that visit every row exactly once while inserts continue, related rows as plain records,
// and filter values (SQL text included) that are only ever data.
import { Prisma } from "../src/generated/prisma/client";
import {
  UsageValidationError,
  findExternalApiUsage,
  findModelUsage,
  recordExternalApiUsage,
  recordModelUsage,
  recordModelUsageBatch,
  type FoundModelUsage,
  type ModelUsageFilter,
  type ModelUsageInput,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { issuesOf } from "./support/errors";

let t: TestDatabase;
let models: number[];
let agents: number[];
let connectors: number[];
let apiId: number;
/** The fixture rows of the filter tests (user ids 1-3), with their ids. */
let fixture: (ModelUsageInput & { id: number; createdAt: Date })[];

beforeAll(async () => {
  t = await openTestDatabase();
  models = [await createModel(t.db, "m-a"), await createModel(t.db, "m-b")];
  agents = [await createAgent(t.db), await createAgent(t.db), await createAgent(t.db)];
  connectors = [await createConnector(t.db), await createConnector(t.db)];
  apiId = await createExternalApi(t.db);
  fixture = [];
  // 36 rows: every combination of user, model, agent (or none) and connector, one hour apart.
  const start = Date.UTC(2025, 0, 1);
  let n = 0;
  for (const userId of [1, 2, 3]) {
    for (const modelId of models) {
      for (const agentId of [agents[0], agents[1], null]) {
        for (const connectorId of [connectors[0], null]) {
          const createdAt = new Date(start + n * 3_600_000);
          const row = await recordModelUsage(t.db, { userId, modelId, agentId, connectorId, createdAt, tokenInCount: n });
          fixture.push({ userId, modelId, agentId, connectorId, createdAt, tokenInCount: n, id: row.id });
          n++;
        }
      }
    }
  }
});
afterAll(() => t.dispose());

/** Ids of every page of a find, following the cursors. */
async function allIds(filter: ModelUsageFilter, limit = 7, order: "newest" | "oldest" = "newest"): Promise<number[]> {
  const ids: number[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await findModelUsage(t.db, filter, { limit, order, ...(cursor ? { cursor } : {}) });
    ids.push(...page.items.map((r) => r.id));
    if (!page.nextCursor) return ids;
    cursor = page.nextCursor;
  }
}

const onlyFixture = (ids: number[]) => ids.filter((id) => fixture.some((f) => f.id === id));
const expectedIds = (keep: (f: (typeof fixture)[number]) => boolean) =>
  fixture
    .filter(keep)
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())
    .map((f) => f.id);

describe("filters", () => {
  test.each<[string, ModelUsageFilter, (f: (typeof fixture)[number]) => boolean]>([
    ["no filter", {}, () => true],
    ["user", { userId: 2 }, (f) => f.userId === 2],
    ["one agent", { agentId: 0 }, (f) => f.agentId === agents[0]],
    ["several agents", { agentId: [0, 1] }, (f) => f.agentId === agents[0] || f.agentId === agents[1]],
    ["connector", { connectorId: 0 }, (f) => f.connectorId === connectors[0]],
    ["one model", { modelId: 1 }, (f) => f.modelId === models[1]],
    ["several models", { modelId: [0, 1] }, () => true],
    ["from (inclusive)", { from: new Date(Date.UTC(2025, 0, 1, 10)) }, (f) => f.createdAt.getTime() >= Date.UTC(2025, 0, 1, 10)],
    ["to (exclusive)", { to: new Date(Date.UTC(2025, 0, 1, 10)) }, (f) => f.createdAt.getTime() < Date.UTC(2025, 0, 1, 10)],
    [
      "everything at once",
      { userId: 3, modelId: 0, agentId: [1], connectorId: 0, from: new Date(Date.UTC(2025, 0, 1, 24)), to: new Date(Date.UTC(2025, 0, 3)) },
      (f) =>
        f.userId === 3 && f.modelId === models[0] && f.agentId === agents[1] && f.connectorId === connectors[0] &&
        f.createdAt.getTime() >= Date.UTC(2025, 0, 1, 24) && f.createdAt.getTime() < Date.UTC(2025, 0, 3),
    ],
  ])("%s", async (_, symbolic, keep) => {
    // Agents, connectors and models are given by position in the fixture lists.
    const pick = (list: number[], v: number | readonly number[] | undefined) =>
      v === undefined ? undefined : typeof v === "number" ? list[v] : v.map((i) => list[i]);
    const filter: ModelUsageFilter = {
      ...symbolic,
      ...(symbolic.agentId !== undefined ? { agentId: pick(agents, symbolic.agentId) } : {}),
      ...(symbolic.connectorId !== undefined ? { connectorId: connectors[symbolic.connectorId] } : {}),
      ...(symbolic.modelId !== undefined ? { modelId: pick(models, symbolic.modelId) } : {}),
    };
    const expected = expectedIds(keep);
    expect(expected.length).toBeGreaterThan(0);
    expect(onlyFixture(await allIds(filter, 5))).toEqual(expected);
  });

  test("a half-open range: a row exactly at `to` is excluded, one exactly at `from` included", async () => {
    const at = fixture[5].createdAt;
    expect(await allIds({ from: at, to: new Date(at.getTime() + 1) })).toEqual([fixture[5].id]);
    expect(await allIds({ to: at, from: new Date(at.getTime() - 1) })).toEqual([]);
  });

  test("oldest first is the exact reverse of newest first", async () => {
    const newest = onlyFixture(await allIds({}, 4, "newest"));
    const oldest = onlyFixture(await allIds({}, 4, "oldest"));
    expect(oldest).toEqual([...newest].reverse());
  });

  test("an empty id list matches nothing", async () => {
    expect((await findModelUsage(t.db, { agentId: [] })).items).toEqual([]);
  });
});

describe("pages", () => {
  test("the default page size is 100 and the maximum 1000", async () => {
    await recordModelUsageBatch(t.db, Array.from({ length: 150 }, () => ({ userId: 50, modelId: models[0] })));
    const first = await findModelUsage(t.db, { userId: 50 });
    expect(first.items).toHaveLength(100);
    expect(first.nextCursor).not.toBeNull();
    const second = await findModelUsage(t.db, { userId: 50 }, { cursor: first.nextCursor! });
    expect(second.items).toHaveLength(50);
    expect(second.nextCursor).toBeNull();
    expect((await findModelUsage(t.db, { userId: 50 }, { limit: 1000 })).items).toHaveLength(150);
    const error = await findModelUsage(t.db, {}, { limit: 1001 }).catch((e: unknown) => e);
    expect((error as UsageValidationError).issues).toEqual([{ field: "page.limit", reason: "must be at most 1000, got 1001" }]);
  });

  test("rows with the same createdAt, down to microseconds, are ordered by id and none is skipped", async () => {
    // Timestamps inside one millisecond (JavaScript Dates cannot tell them apart), out of id order.
    const micros = [456, 200, 600, 123, 999, 0, 456, 456];
    for (const us of micros) {
      const at = `2030-01-01 00:00:00.123${String(us).padStart(3, "0")}+00`;
      await t.db.prisma.$executeRaw(Prisma.sql`INSERT INTO ps_model_usage (user_id, model_id, created_at) VALUES (60, ${models[0]}, ${at}::timestamptz)`);
    }
    const expected = await t.db.prisma.$queryRaw<{ id: number }[]>(
      Prisma.sql`SELECT id FROM ps_model_usage WHERE user_id = 60 ORDER BY created_at DESC, id DESC`,
    );
    expect(await allIds({ userId: 60 }, 1)).toEqual(expected.map((r) => r.id));
    expect(await allIds({ userId: 60 }, 3, "oldest")).toEqual(expected.map((r) => r.id).reverse());
  });

  test("pages visit every row exactly once while inserts continue", async () => {
    const userId = 70;
    await recordModelUsageBatch(t.db, Array.from({ length: 300 }, (_, i) => ({ userId, modelId: models[i % 2], tokenInCount: i })));
    // Rows with earlier, equal and later timestamps than the batch's.
    for (let i = 0; i < 20; i++) {
      await recordModelUsage(t.db, { userId, modelId: models[0], createdAt: new Date(Date.UTC(2024, 5, 1, 0, 0, i % 5)) });
    }
    const existing = (await t.db.prisma.psModelUsage.findMany({ where: { userId }, select: { id: true } })).map((r) => r.id);

    for (const order of ["newest", "oldest"] as const) {
      const seen: number[] = [];
      let page = await findModelUsage(t.db, { userId }, { limit: 13, order });
      seen.push(...page.items.map((r) => r.id));
      let paging = true;
      let inserted = 0;
      // From the first page on, another writer keeps recording for the same user (concurrently
      // on PostgreSQL), and we record one more row between pages.
      const writer = (async () => {
        while (paging) {
          await recordModelUsageBatch(t.db, Array.from({ length: 5 }, () => ({ userId, modelId: models[1] })));
          inserted += 5;
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      })();
      try {
        while (page.nextCursor) {
          await recordModelUsage(t.db, { userId, modelId: models[0] });
          inserted++;
          page = await findModelUsage(t.db, { userId }, { limit: 13, order, cursor: page.nextCursor });
          seen.push(...page.items.map((r) => r.id));
        }
      } finally {
        paging = false;
        await writer;
      }
      expect(inserted).toBeGreaterThan(0);
      expect(new Set(seen).size).toBe(seen.length); // nothing twice
      const seenSet = new Set(seen);
      for (const id of existing) expect(seenSet.has(id)).toBe(true); // nothing skipped
      if (order === "newest") {
        // Newer rows land before the first page: they never shift a page into a repeat.
        expect(seen.filter((id) => !existing.includes(id))).toEqual([]);
      }
      existing.push(...(await t.db.prisma.psModelUsage.findMany({ where: { userId, id: { notIn: existing } }, select: { id: true } })).map((r) => r.id));
    }
  });
});

describe("related rows", () => {
  test("agent, connector and model are included as plain records when asked", async () => {
    const row = fixture.find((f) => f.agentId === agents[0] && f.connectorId === connectors[0])!;
    const page = await findModelUsage(
      t.db,
      { from: row.createdAt, to: new Date(row.createdAt.getTime() + 1) },
      { include: { agent: true, connector: true, model: true } },
    );
    const item: FoundModelUsage = page.items[0];
    expect(item.id).toBe(row.id);
    expect(item.agent).toMatchObject({ id: agents[0], userId: 1, classId: 1, groupId: 1, parentAgentId: null });
    expect(item.connector).toMatchObject({ id: connectors[0], userId: 1 });
    expect(item.model).toMatchObject({ id: row.modelId, name: row.modelId === models[0] ? "m-a" : "m-b" });
    expect(Object.getPrototypeOf(item.model)).toBe(Object.prototype);
    const noAgent = fixture.find((f) => f.agentId === null)!;
    const bare = await findModelUsage(t.db, { from: noAgent.createdAt, to: new Date(noAgent.createdAt.getTime() + 1) }, { include: { agent: true } });
    expect(bare.items[0].agent).toBeNull();
    expect("model" in bare.items[0]).toBe(false);
    const plain = await findModelUsage(t.db, { from: row.createdAt, to: new Date(row.createdAt.getTime() + 1) });
    expect(Object.keys(plain.items[0]).sort()).toEqual(Object.keys(item).filter((k) => !["agent", "connector", "model"].includes(k)).sort());
  });

  test("external API usage: filters, pages and the included API", async () => {
    const rows = [];
    for (let i = 0; i < 5; i++) {
      rows.push(await recordExternalApiUsage(t.db, { userId: 80, externalApiId: apiId, agentId: agents[2], callCount: i + 1, createdAt: new Date(Date.UTC(2025, 1, i + 1)) }));
    }
    const first = await findExternalApiUsage(t.db, { userId: 80, externalApiId: [apiId], agentId: agents[2] }, { limit: 2, include: { externalApi: true } });
    expect(first.items.map((r) => r.callCount)).toEqual([5, 4]);
    expect(first.items[0].externalApi).toMatchObject({ id: apiId, type: "search" });
    const rest = await findExternalApiUsage(t.db, { userId: 80 }, { limit: 10, cursor: first.nextCursor! });
    expect(rest.items.map((r) => r.callCount)).toEqual([3, 2, 1]);
    const oldest = await findExternalApiUsage(t.db, { userId: 80, from: new Date(Date.UTC(2025, 1, 2)), to: new Date(Date.UTC(2025, 1, 4)) }, { order: "oldest" });
    expect(oldest.items.map((r) => r.id)).toEqual([rows[1].id, rows[2].id]);
  });
});

describe("bad filters and cursors", () => {

  test("every bad filter field is listed", async () => {
    expect(
      await issuesOf(
        findModelUsage(t.db, { userId: 0, agentId: [1, -2, 1.5], connectorId: "1", modelId: NaN, from: new Date("x"), userID: 3 } as never),
      ),
    ).toEqual([
      { field: "filter.userID", reason: "is not an option (known: userId, agentId, connectorId, modelId, from, to)" },
      { field: "filter.userId", reason: "must be a positive integer, got 0" },
      { field: "filter.connectorId", reason: 'must be a number, got string "1"' },
      { field: "filter.agentId[1]", reason: "must be a positive integer, got -2" },
      { field: "filter.agentId[2]", reason: "must be an integer, got 1.5" },
      { field: "filter.modelId", reason: "must be a finite integer, got NaN" },
      { field: "filter.from", reason: "must be a valid Date, got Invalid Date" },
    ]);
    const d = new Date(Date.UTC(2025, 0, 1));
    expect(await issuesOf(findModelUsage(t.db, { from: d, to: d }))).toEqual([
      { field: "filter.to", reason: "must be after filter.from (2025-01-01T00:00:00.000Z), got 2025-01-01T00:00:00.000Z" },
    ]);
    expect(await issuesOf(findExternalApiUsage(t.db, { modelId: 1 } as never))).toEqual([
      { field: "filter.modelId", reason: "is not an option (known: userId, agentId, connectorId, externalApiId, from, to)" },
    ]);
    expect(await issuesOf(findModelUsage(t.db, {}, { order: "desc", include: { agents: true } } as never))).toEqual([
      { field: "page.order", reason: 'must be "newest" or "oldest", got string "desc"' },
      { field: "page.include.agents", reason: "is not an option (known: agent, connector, model)" },
    ]);
  });

  test("SQL text in a filter or cursor is data: a typed error, never a database error", async () => {
    const sql = "1; DROP TABLE ps_model_usage; --";
    expect(await issuesOf(findModelUsage(t.db, { userId: sql } as never))).toEqual([
      { field: "filter.userId", reason: 'must be a number, got string "1; DROP TABLE ps_model_usage; --"' },
    ]);
    for (const cursor of [sql, "v1.' OR 1=1 --", `v1.${Buffer.from('{"t":"m","o":"n","id":"1 OR 1=1"}').toString("base64url")}`, "", "v1."]) {
      expect(await issuesOf(findModelUsage(t.db, {}, { cursor }))).toEqual([
        { field: "page.cursor", reason: "is not a cursor returned by findModelUsage" },
      ]);
    }
    expect(await t.db.prisma.psModelUsage.count()).toBeGreaterThan(0);
  });

  test("a cursor belongs to its find and its order", async () => {
    const modelCursor = (await findModelUsage(t.db, {}, { limit: 1 })).nextCursor!;
    expect(await issuesOf(findExternalApiUsage(t.db, {}, { cursor: modelCursor }))).toEqual([
      { field: "page.cursor", reason: "is a cursor of findModelUsage, not of findExternalApiUsage" },
    ]);
    expect(await issuesOf(findModelUsage(t.db, {}, { cursor: modelCursor, order: "oldest" }))).toEqual([
      { field: "page.cursor", reason: 'was made for order "newest", not "oldest"' },
    ]);
  });
});
