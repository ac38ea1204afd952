import {
  MODEL_USAGE_ALL_COUNTERS,
  UsageValidationError,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  type ModelUsageGroupBy,
  type ModelUsageInput,
  type ModelUsageTotals,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let m1: number, m2: number, a1: number, a2: number, c1: number, api1: number, api2: number;
let modelInputs: ModelUsageInput[];

/** Every counter 0n except the ones given: the expected value of one sum row. */
function totals(given: Partial<Record<keyof ModelUsageTotals, bigint>>): ModelUsageTotals {
  const zeros = Object.fromEntries([["events", 0n], ...MODEL_USAGE_ALL_COUNTERS.map(([field]) => [field, 0n])]);
  return { ...zeros, ...given } as ModelUsageTotals;
}

beforeAll(async () => {
  t = await openTestDatabase();
  const db = t.db;
  m1 = await createModel(db, "m1");
  m2 = await createModel(db, "m2");
  a1 = await createAgent(db);
  a2 = await createAgent(db);
  c1 = await createConnector(db);
  api1 = await createExternalApi(db, "search");
  api2 = await createExternalApi(db, "scrape");
  modelInputs = [
    { userId: 1, modelId: m1, agentId: a1, connectorId: c1, tokenInCount: 100, tokenOutCount: 10, createdAt: new Date("2026-01-05T10:00:00Z") },
    { userId: 1, modelId: m1, agentId: a1, tokenInCount: 200, tokenOutCount: 20, tokenInCachedContextCount: 5, createdAt: new Date("2026-01-06T10:00:00Z") },
    { userId: 1, modelId: m2, agentId: a2, tokenInCount: 300, tokenOutReasoningCount: 7, createdAt: new Date("2026-01-07T10:00:00Z") },
    { userId: 2, modelId: m1, connectorId: c1, tokenInCount: 400, longContextTokenInCount: 1000, createdAt: new Date("2026-01-08T10:00:00Z") },
    { userId: 2, modelId: m2, tokenInCount: 500, tokenOutImageCount: 3, createdAt: new Date("2026-01-09T10:00:00Z") },
  ];
  await recordModelUsageBatch(db, modelInputs);
  await recordExternalApiUsageBatch(db, [
    { userId: 1, externalApiId: api1, agentId: a1, connectorId: c1, callCount: 3, createdAt: new Date("2026-01-05T10:00:00Z") },
    { userId: 1, externalApiId: api2, agentId: a1, callCount: 4, createdAt: new Date("2026-01-06T10:00:00Z") },
    { userId: 2, externalApiId: api1, callCount: 2_147_483_647, createdAt: new Date("2026-01-07T10:00:00Z") },
    { userId: 2, externalApiId: api1, agentId: a2, callCount: 2_147_483_647, createdAt: new Date("2026-01-08T10:00:00Z") },
  ]);
});
afterAll(() => t.dispose());

describe("sumModelUsage totals", () => {
  test("without groupBy or bucket it returns one row with every counter summed as bigint", async () => {
    expect(await sumModelUsage(t.db)).toEqual([
      totals({
        events: 5n,
        tokenInCount: 1500n,
        tokenOutCount: 30n,
        tokenInCachedContextCount: 5n,
        tokenOutReasoningCount: 7n,
        longContextTokenInCount: 1000n,
        tokenOutImageCount: 3n,
      }),
    ]);
  });

  test("nothing matching still gives one row, of zeros", async () => {
    expect(await sumModelUsage(t.db, { where: { userId: 99 } })).toEqual([totals({})]);
    expect(await sumModelUsage(t.db, { where: { agentId: [] } })).toEqual([totals({})]);
  });

  test("each filter field narrows the rows summed", async () => {
    const one = async (where: Parameters<typeof sumModelUsage>[1]) => {
      const [row] = await sumModelUsage(t.db, where);
      return [row.events, row.tokenInCount];
    };
    expect(await one({ where: { userId: 1 } })).toEqual([3n, 600n]);
    expect(await one({ where: { agentId: a2 } })).toEqual([1n, 300n]);
    expect(await one({ where: { agentId: [a1, a2] } })).toEqual([3n, 600n]);
    expect(await one({ where: { connectorId: c1 } })).toEqual([2n, 500n]);
    expect(await one({ where: { modelId: m2 } })).toEqual([2n, 800n]);
    expect(await one({ where: { modelId: [m1, m2], userId: 2 } })).toEqual([2n, 900n]);
    // from is inclusive, to exclusive: the rows at exactly 01-06 10:00 and before 01-08 10:00.
    expect(await one({ where: { from: new Date("2026-01-06T10:00:00Z"), to: new Date("2026-01-08T10:00:00Z") } })).toEqual([2n, 500n]);
    expect(await one({ where: { from: new Date("2026-01-06T10:00:00.001Z") } })).toEqual([3n, 1200n]);
  });
});

describe("sumModelUsage groups", () => {
  test("by user", async () => {
    expect(await sumModelUsage(t.db, { groupBy: ["userId"] })).toEqual([
      { userId: 1, ...totals({ events: 3n, tokenInCount: 600n, tokenOutCount: 30n, tokenInCachedContextCount: 5n, tokenOutReasoningCount: 7n }) },
      { userId: 2, ...totals({ events: 2n, tokenInCount: 900n, longContextTokenInCount: 1000n, tokenOutImageCount: 3n }) },
    ]);
  });

  test("by agent, the rows without an agent last under null", async () => {
    expect(await sumModelUsage(t.db, { groupBy: ["agentId"] })).toEqual([
      { agentId: a1, ...totals({ events: 2n, tokenInCount: 300n, tokenOutCount: 30n, tokenInCachedContextCount: 5n }) },
      { agentId: a2, ...totals({ events: 1n, tokenInCount: 300n, tokenOutReasoningCount: 7n }) },
      { agentId: null, ...totals({ events: 2n, tokenInCount: 900n, longContextTokenInCount: 1000n, tokenOutImageCount: 3n }) },
    ]);
  });

  test("by model and agent, ordered by the keys in the order given", async () => {
    const rows = await sumModelUsage(t.db, { groupBy: ["modelId", "agentId"] });
    expect(rows.map((r) => [r.modelId, r.agentId, r.events, r.tokenInCount])).toEqual([
      [m1, a1, 2n, 300n],
      [m1, null, 1n, 400n],
      [m2, a2, 1n, 300n],
      [m2, null, 1n, 500n],
    ]);
    const reversed = await sumModelUsage(t.db, { groupBy: ["agentId", "modelId"] });
    expect(reversed.map((r) => [r.agentId, r.modelId, r.tokenInCount])).toEqual([
      [a1, m1, 300n],
      [a2, m2, 300n],
      [null, m1, 400n],
      [null, m2, 500n],
    ]);
  });

  test("by connector, with a filter", async () => {
    const rows = await sumModelUsage(t.db, { groupBy: ["connectorId"], where: { userId: 1 } });
    expect(rows.map((r) => [r.connectorId, r.events, r.tokenInCount])).toEqual([
      [c1, 1n, 100n],
      [null, 2n, 500n],
    ]);
  });

  test("every combination of group fields matches a grouping done by hand in the test", async () => {
    const fields: ModelUsageGroupBy[] = ["userId", "agentId", "connectorId", "modelId"];
    for (let mask = 1; mask < 1 << fields.length; mask++) {
      const groupBy = fields.filter((_, i) => mask & (1 << i));
      const expected = new Map<string, { keys: (number | null)[]; events: bigint; tokenInCount: bigint; tokenOutCount: bigint }>();
      for (const input of modelInputs) {
        const keys = groupBy.map((field) => (input[field] as number | null | undefined) ?? null);
        const key = JSON.stringify(keys);
        const entry = expected.get(key) ?? { keys, events: 0n, tokenInCount: 0n, tokenOutCount: 0n };
        entry.events += 1n;
        entry.tokenInCount += BigInt(input.tokenInCount ?? 0);
        entry.tokenOutCount += BigInt(input.tokenOutCount ?? 0);
        expected.set(key, entry);
      }
      // Nulls last, then ascending, key by key.
      const order = (a: (number | null)[], b: (number | null)[]) => {
        for (let i = 0; i < a.length; i++) {
          if (a[i] === b[i]) continue;
          if (a[i] === null) return 1;
          if (b[i] === null) return -1;
          return (a[i] as number) - (b[i] as number);
        }
        return 0;
      };
      const want = [...expected.values()].sort((x, y) => order(x.keys, y.keys));
      const rows = await sumModelUsage(t.db, { groupBy });
      expect({ groupBy, rows: rows.map((r) => [groupBy.map((f) => (r as Record<string, unknown>)[f]), r.events, r.tokenInCount, r.tokenOutCount]) }).toEqual({
        groupBy,
        rows: want.map((w) => [w.keys, w.events, w.tokenInCount, w.tokenOutCount]),
      });
    }
  });
});

describe("sumExternalApiUsage", () => {
  test("the total is exact past 32 bits", async () => {
    expect(await sumExternalApiUsage(t.db)).toEqual([{ events: 4n, callCount: 4_294_967_301n }]);
  });

  test("by external API and by user", async () => {
    expect(await sumExternalApiUsage(t.db, { groupBy: ["externalApiId"] })).toEqual([
      { externalApiId: api1, events: 3n, callCount: 4_294_967_297n },
      { externalApiId: api2, events: 1n, callCount: 4n },
    ]);
    expect(await sumExternalApiUsage(t.db, { groupBy: ["userId", "agentId"] })).toEqual([
      { userId: 1, agentId: a1, events: 2n, callCount: 7n },
      { userId: 2, agentId: a2, events: 1n, callCount: 2_147_483_647n },
      { userId: 2, agentId: null, events: 1n, callCount: 2_147_483_647n },
    ]);
  });

  test("filters by API (one or many), connector and time", async () => {
    expect(await sumExternalApiUsage(t.db, { where: { externalApiId: api2 } })).toEqual([{ events: 1n, callCount: 4n }]);
    expect(await sumExternalApiUsage(t.db, { where: { externalApiId: [api2], connectorId: c1 } })).toEqual([{ events: 0n, callCount: 0n }]);
    expect(await sumExternalApiUsage(t.db, { where: { connectorId: c1 } })).toEqual([{ events: 1n, callCount: 3n }]);
    expect(
      await sumExternalApiUsage(t.db, { where: { from: new Date("2026-01-06T00:00:00Z"), to: new Date("2026-01-08T00:00:00Z") }, groupBy: ["connectorId"] }),
    ).toEqual([{ connectorId: null, events: 2n, callCount: 2_147_483_651n }]);
  });
});

describe("bad input", () => {
  async function issuesOf(run: () => Promise<unknown>) {
    const error = await run().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(UsageValidationError);
    return (error as UsageValidationError).issues.map((i) => i.field);
  }

  test("unknown group fields, buckets, options and zones are named", async () => {
    expect(await issuesOf(() => sumModelUsage(t.db, { groupBy: ["externalApiId" as never] }))).toEqual(["groupBy"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { groupBy: ["userId", "userId"] }))).toEqual(["groupBy"]);
    expect(await issuesOf(() => sumExternalApiUsage(t.db, { groupBy: ["modelId" as never] }))).toEqual(["groupBy"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { bucket: "year" as never }))).toEqual(["bucket"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { groupby: ["userId"] } as never))).toEqual(["groupby"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { bucket: "day", timeZone: "Mars/Olympus_Mons" }))).toEqual(["timeZone"]);
    // PostgreSQL would take a POSIX offset spec; it is not an IANA zone name.
    expect(await issuesOf(() => sumModelUsage(t.db, { bucket: "day", timeZone: "UTC+3" }))).toEqual(["timeZone"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { bucket: "day", timeZone: "" }))).toEqual(["timeZone"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { fillEmptyBuckets: true }))).toEqual(["fillEmptyBuckets"]);
  });

  test("bad filter ids and dates are named, every one of them at once", async () => {
    const fields = await issuesOf(() =>
      sumModelUsage(t.db, {
        where: { userId: 0, agentId: [1, -2, 1.5], modelId: "3" as never, from: new Date("2026-02-01"), to: new Date("2026-01-01") },
        groupBy: ["nope" as never],
      }),
    );
    expect(fields).toEqual(["where.userId", "where.agentId[1]", "where.agentId[2]", "where.modelId", "where.to", "groupBy"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { where: { from: new Date("2026-01-01"), to: new Date("2026-01-01") } }))).toEqual(["where.to"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { where: { from: new Date("nonsense") } }))).toEqual(["where.from"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { where: { externalApiId: 1 } as never }))).toEqual(["where.externalApiId"]);
  });

  test("a value full of SQL is only data: it is refused and the table is intact", async () => {
    const attack = "UTC'; DROP TABLE ps_model_usage; --";
    expect(await issuesOf(() => sumModelUsage(t.db, { bucket: "day", timeZone: attack }))).toEqual(["timeZone"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { groupBy: [`userId"; DROP TABLE ps_model_usage; --` as never] }))).toEqual(["groupBy"]);
    expect(await issuesOf(() => sumModelUsage(t.db, { bucket: "day'); DROP TABLE ps_model_usage; --" as never }))).toEqual(["bucket"]);
    const [row] = await sumModelUsage(t.db);
    expect(row.events).toBe(5n);
  });

  test("zone names are matched without regard to case", async () => {
    const rows = await sumModelUsage(t.db, { bucket: "month", timeZone: "america/new_york" });
    expect(rows.map((r) => [r.bucketStart.toISOString(), r.events])).toEqual([["2026-01-01T05:00:00.000Z", 5n]]);
  });
});
