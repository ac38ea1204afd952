// Cost reports with rollups price a day or month in which price periods start as a whole at one
// instant, plus a correction read at the finer level for the shorter side (src/reports/rollups.ts,
// pricedUnitsCte): the finer rows once at their own instants and once negated at that instant.
// Here every way that can go wrong: several periods starting inside one day and one slot, a day and
// a month priced whole while unpriced (before the model's first period), a currency change at a
// period's start, an agent whose usage is all on the corrected side (its group at the whole unit's
// period nets to nothing and must not appear), tiers and regional processing. Results must equal
// the ledger's, hold no negative value, and give the hand-checked totals.
import {
  agentTreeCostReport,
  costReport,
  setExternalApiPrice,
  setModelPrice,
  type CostAmounts,
  type CostReportOptions,
} from "../src";
import { Prisma } from "../src/generated/prisma/client";
import { usageRelationSql } from "../src/reports/rollups";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let m: number, n: number, api: number;
let root: number, child: number, grandchild: number, late: number, outside: number;

const price = (currency: string, inRate: number) => ({ currency, costInTokensPerMillion: inRate, costOutTokensPerMillion: 2 * inRate, flexTokensIn: inRate / 2, regionalProcessingMargin: 10 });

beforeAll(async () => {
  t = await openTestDatabase();
  const db = t.db;
  m = await createModel(db, "m");
  n = await createModel(db, "n");
  api = await createExternalApi(db, "search");
  root = await createAgent(db);
  child = await createAgent(db, root);
  grandchild = await createAgent(db, child);
  late = await createAgent(db, child);
  outside = await createAgent(db);
  // Model m: unpriced until 10 May 10:07:30; then three periods starting inside that day, two of
  // them inside the slot 10:00-10:15, the currency changing at each; 24 May 03:00 cuts the day and
  // (with 10 May) the month; 3 June 00:07:30 cuts June's first days and its first slot.
  await setModelPrice(db, m, price("USD", 1), new Date("2026-05-10T10:07:30Z"));
  await setModelPrice(db, m, price("EUR", 3), new Date("2026-05-10T10:12:00Z"));
  await setModelPrice(db, m, price("USD", 5), new Date("2026-05-10T20:00:00Z"));
  await setModelPrice(db, m, price("EUR", 7), new Date("2026-05-24T03:00:00Z"));
  await setModelPrice(db, m, price("USD", 9), new Date("2026-06-03T00:07:30Z"));
  // Model n: one period, before all usage.
  await setModelPrice(db, n, price("USD", 11), new Date("2026-01-01T00:00:00Z"));
  // The API: unpriced until 12 May 18:00, then EUR (a day priced whole while unpriced, corrected).
  await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: "0.25", currency: "EUR" }, new Date("2026-05-12T18:00:00Z"));
  const agents = [root, child, grandchild, outside, null];
  // m every 7 minutes from 8 May to 5 June, n every 11 minutes; the agent `late` only on 28 May
  // (all its usage on the corrected side of May, priced whole while unpriced).
  await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, token_out_count, service_tier, regional_processing, created_at, updated_at)
    SELECT 1 + g % 2, ${m}::int, (${agents}::int[])[1 + g % 5], 1000 + g % 7, 10 + g % 3,
      CASE WHEN g % 4 = 0 THEN 'flex' END, CASE WHEN g % 6 = 0 THEN 'eu' END, c, c
    FROM generate_series(0, 5759) g, LATERAL (SELECT timestamptz '2026-05-08 00:00:00+00' + g * interval '7 minutes' AS c) s`;
  await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, token_out_count, created_at, updated_at)
    SELECT 1, ${n}::int, (${agents}::int[])[1 + g % 5], 500, 5, c, c
    FROM generate_series(0, 3664) g, LATERAL (SELECT timestamptz '2026-05-08 00:00:00+00' + g * interval '11 minutes' AS c) s`;
  await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, token_out_count, created_at, updated_at)
    SELECT 1, ${m}::int, ${late}::int, 2000, 20, c, c
    FROM generate_series(0, 47) g, LATERAL (SELECT timestamptz '2026-05-28 00:00:00+00' + g * interval '30 minutes' AS c) s`;
  await db.prisma.$executeRaw`INSERT INTO ps_external_api_usage (user_id, external_api_id, agent_id, call_count, created_at, updated_at)
    SELECT 1, ${api}::int, (${agents}::int[])[1 + g % 5], 1 + g % 4, c, c
    FROM generate_series(0, 1343) g, LATERAL (SELECT timestamptz '2026-05-08 00:00:00+00' + g * interval '29 minutes' AS c) s`;
  await db.prisma.$executeRaw`ANALYZE`;
}, 120_000);
afterAll(() => t.dispose());

/** Every count and amount of a report's rows and totals (none may be negative). */
function amounts(report: { rows: readonly CostAmounts[]; totals: readonly CostAmounts[] }): number[] {
  return [...report.rows, ...report.totals].flatMap((r) => [
    Number(r.modelEvents),
    Number(r.externalApiEvents),
    Number(r.externalApiCalls),
    Number(r.webSearchCount),
    ...Object.values(r.tokens).map(Number),
    ...[r.modelCost, r.externalApiCost, r.cost].filter((x): x is string => x !== null).map(Number),
  ]);
}

const OPTIONS: CostReportOptions[] = [
  {},
  { groupBy: "agentId" },
  { groupBy: ["agentId", "modelId", "externalApiId"] },
  { groupBy: "agentId", bucket: "day" },
  { groupBy: "agentId", bucket: "month" },
  { groupBy: "agentId", bucket: "week", timeZone: "Europe/Berlin" },
  { groupBy: "agentId", bucket: "hour", timeZone: "Asia/Kathmandu" },
  { groupBy: "agentId", where: { from: new Date("2026-05-09T13:07:00Z"), to: new Date("2026-06-04T05:00:00Z") } },
  { groupBy: "agentId", where: { from: new Date("2026-05-01T00:00:00Z") } },
  { groupBy: ["agentId", "userId"] },
];

test("cost reports by agent equal the ledger's where periods start inside days and months, with no negative amount", async () => {
  for (const options of OPTIONS) {
    const fromRollups = await costReport(t.db, options);
    expect(fromRollups).toEqual(await costReport(t.db, { ...options, rollups: false }));
    expect(amounts(fromRollups).filter((x) => x < 0)).toEqual([]);
    const { groupBy, ...rest } = options;
    const treeOptions = { ...rest, groupBy: [groupBy ?? []].flat().filter((g) => g !== "agentId") };
    const tree = await agentTreeCostReport(t.db, root, treeOptions);
    expect(tree).toEqual(await agentTreeCostReport(t.db, root, { ...treeOptions, rollups: false }));
    expect(amounts(tree).filter((x) => x < 0)).toEqual([]);
  }
}, 120_000);

test("the tree's costs: unpriced usage before the first period, each currency, and no row for a period the agent never used", async () => {
  const report = await agentTreeCostReport(t.db, root, { groupBy: "modelId" });
  // Calls in the tree (agents root, child, grandchild: g % 5 < 3) before each first period.
  const before = (rows: number, everyMinutes: number, until: string) =>
    Array.from({ length: rows }, (_, g) => g).filter((g) => g % 5 < 3 && Date.parse("2026-05-08T00:00:00Z") + g * everyMinutes * 60_000 < Date.parse(until)).length;
  const mBefore = before(5760, 7, "2026-05-10T10:07:30Z");
  const apiBefore = before(1344, 29, "2026-05-12T18:00:00Z");
  expect([mBefore, apiBefore]).toEqual([300, 142]);
  expect(report.unpricedEvents).toBe(BigInt(mBefore + apiBefore));
  expect(report.totals.map((x) => x.currency)).toEqual(["EUR", "USD", null]);
  // The agent used only on 28 May (period from 24 May, EUR): one row, EUR, 48 events, priced at 7 and 14 per million.
  const lateRows = report.rows.filter((r) => r.agentId === late);
  expect(lateRows.map((r) => [r.modelId, r.currency, r.modelEvents, r.modelCost])).toEqual([[m, "EUR", 48n, (48 * (2000 * 7 + 20 * 14) * 1e-6).toFixed(5).replace(/0+$/, "")]]);
  expect(report).toEqual(await agentTreeCostReport(t.db, root, { groupBy: "modelId", rollups: false }));
});

test("a day priced whole is corrected from the shorter side: 24 May (period at 03:00) reads 12 slots of the 15-minute rollup, not 96", async () => {
  const tree = [root, child, grandchild, late];
  const relation = usageRelationSql({
    table: "modelUsage",
    priced: true,
    rollups: true,
    conditions: [Prisma.sql`agent_id = ANY(${tree}::int[])`],
    uses: ["agent_id"],
    where: { modelId: m, from: new Date("2026-05-24T00:00:00Z"), to: new Date("2026-05-25T00:00:00Z") },
  });
  const [row] = await t.db.prisma.$queryRaw<{ "QUERY PLAN": [{ Plan: Record<string, unknown> }] }[]>`
    EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(event_count) AS n FROM ${relation} AS u`;
  const slotRowsRead = (node: Record<string, unknown>): number =>
    (node["Relation Name"] === "ps_model_usage_rollup" ? (node["Actual Rows"] as number) * (node["Actual Loops"] as number) : 0) +
    ((node.Plans as Record<string, unknown>[] | undefined) ?? []).reduce((s, c) => s + slotRowsRead(c), 0);
  // 00:00-03:00 at one call every 7 minutes, 3 in 5 in the tree: 16 rollup rows, read three times
  // (to find the cut slots, as whole slots, and negated); the whole day holds 123 (read twice before).
  expect(slotRowsRead(row["QUERY PLAN"][0].Plan)).toBe(3 * 16);
  const [sum] = await t.db.prisma.$queryRaw<{ n: bigint }[]>`SELECT sum(event_count)::bigint AS n FROM ${relation} AS u`;
  const [ledger] = await t.db.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*)::bigint AS n FROM ps_model_usage
    WHERE model_id = ${m} AND agent_id = ANY(${tree}::int[]) AND created_at >= '2026-05-24T00:00:00Z' AND created_at < '2026-05-25T00:00:00Z'`;
  expect(sum.n).toBe(ledger.n);
});
