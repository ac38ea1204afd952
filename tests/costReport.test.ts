import {
  agentTreeCostReport,
  costReport,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  setExternalApiPrice,
  setModelPrice,
  type CostAmounts,
  type CostReport,
  type CostReportOptions,
  type Database,
  type ModelUsageCounter,
  MODEL_USAGE_COUNTERS,
} from "../src";
import { Prisma } from "../src/generated/prisma/client";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { seededRandom } from "../src/random";

/** Decimal with room for every digit the reports return: sums in the tests are exact. */
const Exact = Prisma.Decimal.clone({ precision: 200 });

interface ModelEvent {
  userId: number;
  modelId: number;
  agentId?: number | null;
  connectorId?: number | null;
  createdAt: Date;
  counters: Partial<Record<ModelUsageCounter, number>>;
}
interface ApiEvent {
  userId: number;
  externalApiId: number;
  agentId?: number | null;
  connectorId?: number | null;
  createdAt: Date;
  callCount: number;
}

async function insertUsage(db: Database, model: ModelEvent[], api: ApiEvent[]): Promise<void> {
  if (model.length > 0) await recordModelUsageBatch(db, model.map(({ counters, ...e }) => ({ ...e, ...counters })));
  if (api.length > 0) await recordExternalApiUsageBatch(db, api);
}

/** A row's amounts, keyed "currency" -> [cost, modelEvents, calls], for comparing. */
function amountsByCurrency(rows: readonly CostAmounts[]): Record<string, [string | null, bigint, bigint]> {
  return Object.fromEntries(rows.map((r) => [String(r.currency), [r.cost, r.modelEvents, r.externalApiCalls]]));
}

describe("a small report worked out by hand", () => {
  let t: TestDatabase;
  let model: number;
  let api: number;
  let root: number;
  let child: number;
  let grandchild: number;
  let other: number;

  beforeAll(async () => {
    t = await openTestDatabase();
    const db = t.db;
    model = await createModel(db, "m");
    api = await createExternalApi(db, "a");
    root = await createAgent(db);
    child = await createAgent(db, root);
    grandchild = await createAgent(db, child);
    other = await createAgent(db);
    const jan = new Date("2025-01-01T00:00:00Z");
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "2" }, jan);
    await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: "0.01", currency: "EUR" }, jan);
    // US daylight saving starts 2025-03-09 07:00Z; New York is UTC-4 after it.
    await insertUsage(
      db,
      [
        { userId: 1, modelId: model, agentId: root, createdAt: new Date("2025-03-09T23:30:00Z"), counters: { tokenInCount: 1_000_000 } }, // USD 1
        { userId: 2, modelId: model, agentId: child, createdAt: new Date("2025-03-10T02:00:00Z"), counters: { tokenOutCount: 500_000 } }, // USD 1
        { userId: 1, modelId: model, agentId: grandchild, createdAt: new Date("2025-03-10T12:00:00Z"), counters: { tokenInCount: 250_000 } }, // USD 0.25
      ],
      [
        { userId: 2, externalApiId: api, agentId: other, createdAt: new Date("2025-03-10T05:00:00Z"), callCount: 30 }, // EUR 0.3
        { userId: 1, externalApiId: api, agentId: grandchild, createdAt: new Date("2025-03-11T03:00:00Z"), callCount: 10 }, // EUR 0.1
      ],
    );
  });
  afterAll(() => t.dispose());

  test("ungrouped: one row per currency", async () => {
    const report = await costReport(t.db);
    expect(amountsByCurrency(report.rows)).toEqual({ EUR: ["0.4", 0n, 40n], USD: ["2.25", 3n, 0n] });
    expect(report.totals).toEqual(report.rows);
    expect(report.totals[1].tokens).toMatchObject({ tokenInCount: 1_250_000n, tokenOutCount: 500_000n });
  });

  test("by user", async () => {
    const report = await costReport(t.db, { groupBy: "userId" });
    expect(report.rows.map((r) => [r.userId, r.currency, r.modelCost, r.externalApiCost, r.cost])).toEqual([
      [1, "EUR", "0", "0.1", "0.1"],
      [1, "USD", "1.25", "0", "1.25"],
      [2, "EUR", "0", "0.3", "0.3"],
      [2, "USD", "1", "0", "1"],
    ]);
    expect(amountsByCurrency(report.totals)).toEqual({ EUR: ["0.4", 0n, 40n], USD: ["2.25", 3n, 0n] });
  });

  test("by day in UTC and in New York", async () => {
    const utc = await costReport(t.db, { bucket: "day" });
    expect(utc.rows.map((r) => [r.bucketStart?.toISOString(), r.currency, r.cost])).toEqual([
      ["2025-03-09T00:00:00.000Z", "USD", "1"],
      ["2025-03-10T00:00:00.000Z", "EUR", "0.3"],
      ["2025-03-10T00:00:00.000Z", "USD", "1.25"],
      ["2025-03-11T00:00:00.000Z", "EUR", "0.1"],
    ]);
    const ny = await costReport(t.db, { bucket: "day", timeZone: "America/New_York" });
    // Local midnights: 9 March still EST (05:00Z), 10 March already EDT (04:00Z).
    expect(ny.rows.map((r) => [r.bucketStart?.toISOString(), r.currency, r.cost, r.modelEvents, r.externalApiEvents])).toEqual([
      ["2025-03-09T05:00:00.000Z", "USD", "2", 2n, 0n],
      ["2025-03-10T04:00:00.000Z", "EUR", "0.4", 0n, 2n],
      ["2025-03-10T04:00:00.000Z", "USD", "0.25", 1n, 0n],
    ]);
  });

  test("by model and external API: each kind of usage has null for the other's key", async () => {
    const report = await costReport(t.db, { groupBy: ["modelId", "externalApiId"] });
    expect(report.rows.map((r) => [r.modelId, r.externalApiId, r.currency, r.cost])).toEqual([
      [model, null, "USD", "2.25"],
      [null, api, "EUR", "0.4"],
    ]);
  });

  test("filters: a time range, an agent list, a model filter leaves external API usage out", async () => {
    const march10 = await costReport(t.db, { where: { from: new Date("2025-03-10T00:00:00Z"), to: new Date("2025-03-11T00:00:00Z") } });
    expect(amountsByCurrency(march10.totals)).toEqual({ EUR: ["0.3", 0n, 30n], USD: ["1.25", 2n, 0n] });
    const agents = await costReport(t.db, { where: { agentId: [root, other] } });
    expect(amountsByCurrency(agents.totals)).toEqual({ EUR: ["0.3", 0n, 30n], USD: ["1", 1n, 0n] });
    const modelOnly = await costReport(t.db, { where: { modelId: model } });
    expect(amountsByCurrency(modelOnly.totals)).toEqual({ USD: ["2.25", 3n, 0n] });
  });

  test("agent tree: per agent in tree order, totals for the tree, other agents left out", async () => {
    const tree = await agentTreeCostReport(t.db, root);
    expect(tree.rootAgentId).toBe(root);
    expect(tree.agents).toEqual([
      { agentId: root, parentAgentId: null, depth: 0 },
      { agentId: child, parentAgentId: root, depth: 1 },
      { agentId: grandchild, parentAgentId: child, depth: 2 },
    ]);
    expect(tree.rows.map((r) => [r.agentId, r.currency, r.cost])).toEqual([
      [root, "USD", "1"],
      [child, "USD", "1"],
      [grandchild, "EUR", "0.1"],
      [grandchild, "USD", "0.25"],
    ]);
    expect(amountsByCurrency(tree.totals)).toEqual({ EUR: ["0.1", 0n, 10n], USD: ["2.25", 3n, 0n] });

    const subtree = await agentTreeCostReport(t.db, child, { groupBy: ["userId"], bucket: "day" });
    expect(subtree.rows.map((r) => [r.agentId, r.userId, r.bucketStart?.toISOString(), r.currency, r.cost])).toEqual([
      [child, 2, "2025-03-10T00:00:00.000Z", "USD", "1"],
      [grandchild, 1, "2025-03-10T00:00:00.000Z", "USD", "0.25"],
      [grandchild, 1, "2025-03-11T00:00:00.000Z", "EUR", "0.1"],
    ]);
    expect(amountsByCurrency(subtree.totals)).toEqual({ EUR: ["0.1", 0n, 10n], USD: ["1.25", 2n, 0n] });
  });

  test("agent tree: a cycle in parent links is walked once", async () => {
    const x = await createAgent(t.db);
    const y = await createAgent(t.db, x);
    await t.db.prisma.psAgent.update({ where: { id: x }, data: { parentAgentId: y } });
    await insertUsage(
      t.db,
      [
        { userId: 3, modelId: model, agentId: x, createdAt: new Date("2025-04-01T00:00:00Z"), counters: { tokenInCount: 1_000_000 } },
        { userId: 3, modelId: model, agentId: y, createdAt: new Date("2025-04-01T00:00:00Z"), counters: { tokenOutCount: 1_000_000 } },
      ],
      [],
    );
    const tree = await agentTreeCostReport(t.db, x);
    expect(tree.agents).toEqual([
      { agentId: x, parentAgentId: y, depth: 0 },
      { agentId: y, parentAgentId: x, depth: 1 },
    ]);
    expect(amountsByCurrency(tree.totals)).toEqual({ USD: ["3", 2n, 0n] });
  });
});

describe("a report grouped several ways adds up exactly to the ungrouped total", () => {
  let t: TestDatabase;


  beforeAll(async () => {
    t = await openTestDatabase();
    const db = t.db;
    const start = new Date("2025-03-01T00:00:00Z").getTime();
    const change = new Date("2025-03-15T12:34:56.789Z");
    const agents = [await createAgent(db)];
    agents.push(await createAgent(db, agents[0]), await createAgent(db, agents[0]));
    agents.push(await createAgent(db, agents[1]));
    const connectors = [await createConnector(db), await createConnector(db)];
    const models = [await createModel(db, "full"), await createModel(db, "eur"), await createModel(db, "late"), await createModel(db, "changes")];
    await setModelPrice(db, models[0], {
      currency: "USD",
      costInTokensPerMillion: "2.5",
      costOutTokensPerMillion: "10",
      costInCachedContextTokensPerMillion: "1.25",
      cacheWriteInputCostMultiplier: "1.25",
      longContextCostInTokensPerMillion: "5",
      longContextCostOutTokensPerMillion: "15",
      costOutReasoningTokensPerMillion: "12",
      costOutAudioTokensPerMillion: "80",
    }, new Date(start));
    await setModelPrice(db, models[1], { currency: "EUR", costInTokensPerMillion: "0.137", costOutTokensPerMillion: "0.551" }, new Date(start));
    await setModelPrice(db, models[2], { currency: "USD", costInTokensPerMillion: "0.3", costOutTokensPerMillion: "0.9" }, change); // unpriced before
    await setModelPrice(db, models[3], { currency: "USD", costInTokensPerMillion: "3", costOutTokensPerMillion: "15" }, new Date(start));
    await setModelPrice(db, models[3], { currency: "USD", costInTokensPerMillion: "2.7", costOutTokensPerMillion: "13.3" }, change);
    const apis = [await createExternalApi(db, "search"), await createExternalApi(db, "scrape"), await createExternalApi(db, "free")];
    await setExternalApiPrice(db, apis[0], { unitType: "search", pricePerUnit: "0.005", currency: "USD" }, new Date(start));
    await setExternalApiPrice(db, apis[1], { unitType: "page", pricePerUnit: "0.0017", currency: "EUR" }, new Date(start));

    const rand = seededRandom(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const when = () => new Date(start + Math.floor(rand() * 30 * 86_400_000));
    const modelEvents: ModelEvent[] = [];
    for (let i = 0; i < 600; i++) {
      const counters: Partial<Record<ModelUsageCounter, number>> = {};
      for (const [field] of MODEL_USAGE_COUNTERS) if (rand() < 0.4) counters[field] = Math.floor(rand() * 200_000);
      modelEvents.push({
        userId: pick([1, 2, 3]),
        modelId: pick(models),
        agentId: pick([...agents, null]),
        connectorId: pick([...connectors, null]),
        createdAt: when(),
        counters,
      });
    }
    const apiEvents: ApiEvent[] = [];
    for (let i = 0; i < 200; i++) {
      apiEvents.push({
        userId: pick([1, 2, 3]),
        externalApiId: pick(apis),
        agentId: pick([...agents, null]),
        connectorId: pick([...connectors, null]),
        createdAt: when(),
        callCount: 1 + Math.floor(rand() * 20),
      });
    }
    await insertUsage(db, modelEvents, apiEvents);
  });
  afterAll(() => t.dispose());

  /** Sums the rows of a report per currency with exact decimals and bigints. */
  function sumRows(report: CostReport) {
    const sums = new Map<string, { cost: InstanceType<typeof Exact> | null; modelEvents: bigint; calls: bigint; tokens: bigint[] }>();
    for (const r of report.rows) {
      const key = String(r.currency);
      const s = sums.get(key) ?? { cost: r.cost === null ? null : new Exact(0), modelEvents: 0n, calls: 0n, tokens: MODEL_USAGE_COUNTERS.map(() => 0n) };
      if (r.cost !== null) s.cost = s.cost!.plus(r.cost);
      s.modelEvents += r.modelEvents;
      s.calls += r.externalApiCalls;
      MODEL_USAGE_COUNTERS.forEach(([field], i) => (s.tokens[i] += r.tokens[field]));
      sums.set(key, s);
    }
    return Object.fromEntries(
      [...sums].map(([currency, s]) => [currency, { cost: s.cost === null ? null : s.cost.toFixed(), modelEvents: s.modelEvents, calls: s.calls, tokens: s.tokens }]),
    );
  }

  const GROUPINGS: readonly CostReportOptions[] = [
    { groupBy: "agentId" },
    { groupBy: "modelId" },
    { groupBy: "userId" },
    { groupBy: "connectorId" },
    { groupBy: "externalApiId" },
    { bucket: "day" },
    { bucket: "day", timeZone: "Asia/Kolkata" },
    { bucket: "hour", timeZone: "Europe/Berlin" },
    { bucket: "week" },
    { bucket: "month", timeZone: "Pacific/Honolulu" },
    { groupBy: ["agentId", "modelId", "externalApiId"], bucket: "day" },
    { groupBy: ["userId", "connectorId", "agentId", "modelId", "externalApiId"], bucket: "hour" },
  ];

  test.each(GROUPINGS)("grouped %j", async (options) => {
    const total = await costReport(t.db);
    expect(total.unpricedEvents).toBeGreaterThan(0n);
    expect(total.totals.map((x) => x.currency)).toEqual(["EUR", "USD", null]);
    const grouped = await costReport(t.db, options);
    expect(grouped.rows.length).toBeGreaterThan(total.rows.length);
    expect(sumRows(grouped)).toEqual(sumRows(total));
    expect(grouped.totals).toEqual(total.totals);
    expect(grouped.unpricedEvents).toBe(total.unpricedEvents);
  });

  test("the agent tree of the root adds up to the report of every agent but the unassigned usage", async () => {
    const root = await t.db.prisma.psAgent.findFirstOrThrow({ where: { parentAgentId: null }, orderBy: { id: "asc" } });
    const tree = await agentTreeCostReport(t.db, root.id);
    const assigned = await costReport(t.db, { where: { agentId: tree.agents.map((a) => a.agentId) } });
    expect(tree.agents).toHaveLength(4);
    expect(sumRows(tree)).toEqual(sumRows(assigned));
    expect(tree.totals).toEqual(assigned.totals);
  });
});
