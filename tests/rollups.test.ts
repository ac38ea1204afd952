// The rollups: sums and cost reports read whole 15-minute slots from them and must give exactly
// what the ledger alone gives (`rollups: false`), for every zone, bucket, grouping, range and
// price history; the triggers keep them exact for writes by anyone (this package, SQL the way
// PolicySynth's Sequelize code writes: increments, deletes, an agent deleted); rebuildRollups
// finds and repairs a rollup that went wrong; the migration fills them from rows already there.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import {
  MODEL_USAGE_COUNTERS,
  DatabaseTimeoutError,
  UsageValidationError,
  agentTreeCostReport,
  costReport,
  budgetStatus,
  migrate,
  prune,
  rebuildRollups,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  setBudget,
  setExternalApiPrice,
  setModelPrice,
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  type ExternalApiUsageInput,
  type ModelUsageGroupBy,
  type ModelUsageInput,
  type TimeBucket,
} from "../src";
import { Prisma } from "../src/generated/prisma/client";
import { usageRelationSql } from "../src/reports/rollups";
import { PACKAGE_ROOT } from "../src/schema/migrate";
import { createCliDatabase, runCli } from "./support/cli";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let models: number[], agents: number[], connectors: number[], apis: number[];

const COUNTERS = MODEL_USAGE_COUNTERS.map(([field]) => field);

// Instants around what cuts slots and buckets: DST changes (US, EU, Lord Howe's 30 minutes),
// zones 30 and 45 minutes off UTC, and 1971, when Africa/Monrovia was 44 min 30 s behind UTC
// (its day boundaries fell inside slots, which must then be read from the ledger).
const CENTRES = [
  "1971-06-15T12:00:00Z",
  "2026-03-08T07:00:00Z",
  "2026-03-29T01:00:00Z",
  "2026-04-04T15:00:00Z",
  "2026-10-25T01:00:00Z",
  "2026-11-01T06:00:00Z",
  "2026-11-24T18:15:00Z",
].map((s) => Date.parse(s));
const ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe", "Africa/Monrovia"];
const BUCKETS: TimeBucket[] = ["hour", "day", "week", "month"];
const DAY = 86_400_000;

/** A deterministic generator, so the data is the same on both backends. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
}

beforeAll(async () => {
  t = await openTestDatabase();
  models = [await createModel(t.db, "m1"), await createModel(t.db, "m2")];
  const root = await createAgent(t.db);
  const child = await createAgent(t.db, root);
  agents = [root, child, await createAgent(t.db, child), await createAgent(t.db)];
  connectors = [await createConnector(t.db), await createConnector(t.db)];
  apis = [await createExternalApi(t.db, "a"), await createExternalApi(t.db, "b")];

  // Price history: periods on slot boundaries and inside slots (10 s and 7.5 min past one).
  const price = (inRate: number, extra: object = {}) => ({ currency: "USD", costInTokensPerMillion: inRate, costOutTokensPerMillion: 2 * inRate, ...extra });
  await setModelPrice(t.db, models[0], price(1), new Date("1970-01-01T00:00:00Z"));
  await setModelPrice(t.db, models[0], price(3, { longContextTokenThreshold: 5000, longContextCostInTokensPerMillion: 6, flexTokensIn: 0.5, regionalProcessingMargin: 10, costPerThousandWebSearches: 25 }), new Date("2026-03-29T01:07:30Z"));
  await setModelPrice(t.db, models[0], price(5), new Date("2026-11-24T18:15:10Z"));
  await setModelPrice(t.db, models[1], price(7, { priorityTokensIn: 14 }), new Date("2026-01-01T00:00:00Z"));
  // On a slot boundary inside a UTC day: the day is cut (read by slot), no slot is.
  await setModelPrice(t.db, models[1], price(9), new Date("2026-04-04T15:00:00Z"));
  await setExternalApiPrice(t.db, apis[0], { unitType: "call", pricePerUnit: "0.01", currency: "USD" }, new Date("1970-01-01T00:00:00Z"));
  await setExternalApiPrice(t.db, apis[0], { unitType: "call", pricePerUnit: "0.02", currency: "USD" }, new Date("2026-11-01T06:03:00Z"));
  await setExternalApiPrice(t.db, apis[1], { unitType: "call", pricePerUnit: "0.5", currency: "EUR" }, new Date("2026-01-01T00:00:00Z"));
  await setExternalApiPrice(t.db, apis[1], { unitType: "call", pricePerUnit: "0.75", currency: "EUR" }, new Date("2026-10-25T10:30:00Z"));

  const rnd = random(20261125);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)];
  const at = () => new Date(pick(CENTRES) + Math.round((rnd() - 0.5) * 6 * DAY));
  const modelInputs: ModelUsageInput[] = [];
  for (let i = 0; i < 1500; i++) {
    const input: Record<string, unknown> = {
      userId: 1 + Math.floor(rnd() * 3),
      modelId: pick(models),
      agentId: rnd() < 0.2 ? null : pick(agents),
      connectorId: rnd() < 0.5 ? null : pick(connectors),
      createdAt: at(),
      webSearchCount: Math.floor(rnd() * 3),
      serviceTier: pick([null, null, "flex", "priority"]),
      regionalProcessing: rnd() < 0.2 ? "eu" : null,
    };
    for (const field of COUNTERS) input[field] = rnd() < 0.3 ? 0 : Math.floor(rnd() * 10_000);
    modelInputs.push(input as unknown as ModelUsageInput);
  }
  // Rows on both sides of what cuts a slot: the price periods that start inside one, and
  // Monrovia's 1971 midnights (00:44:30 UTC).
  const cutting: [number, string][] = [
    [models[0], "2026-03-29T01:05:00Z"], [models[0], "2026-03-29T01:07:29Z"], [models[0], "2026-03-29T01:07:30Z"], [models[0], "2026-03-29T01:10:00Z"],
    [models[0], "2026-11-24T18:15:05Z"], [models[0], "2026-11-24T18:15:20Z"],
    [models[1], "1971-06-15T00:44:00Z"], [models[1], "1971-06-15T00:44:40Z"], [models[0], "1971-06-16T00:44:50Z"], [models[0], "1971-06-16T00:31:00Z"],
  ];
  for (const [modelId, iso] of cutting) {
    modelInputs.push({ userId: 1, modelId, agentId: agents[1], createdAt: new Date(iso), tokenInCount: 6000, tokenOutCount: 10, webSearchCount: 2 });
  }
  await recordModelUsageBatch(t.db, modelInputs);
  const apiInputs: ExternalApiUsageInput[] = [];
  for (let i = 0; i < 600; i++) {
    apiInputs.push({ userId: 1 + Math.floor(rnd() * 3), externalApiId: pick(apis), agentId: rnd() < 0.2 ? null : pick(agents), connectorId: rnd() < 0.5 ? null : pick(connectors), callCount: 1 + Math.floor(rnd() * 5), createdAt: at() });
  }
  for (const iso of ["2026-11-01T06:01:00Z", "2026-11-01T06:04:00Z", "1971-06-15T00:44:45Z"]) {
    apiInputs.push({ userId: 1, externalApiId: apis[0], agentId: agents[1], callCount: 4, createdAt: new Date(iso) });
  }
  await recordExternalApiUsageBatch(t.db, apiInputs);

  // Other writers, in SQL: PolicySynth's Sequelize increments running rows, deletes some, and an
  // agent deleted sets its usage's agent_id to NULL.
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage SET token_in_count = token_in_count + 111, token_out_count = token_out_count + 7, updated_at = now() WHERE id % 13 = 0`;
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage SET created_at = created_at + interval '20 minutes' WHERE id % 17 = 0`;
  await t.db.prisma.$executeRaw`DELETE FROM ps_model_usage WHERE id % 19 = 0`;
  await t.db.prisma.$executeRaw`UPDATE ps_external_api_usage SET call_count = call_count + 3 WHERE id % 11 = 0`;
  await t.db.prisma.$executeRaw`DELETE FROM ps_external_api_usage WHERE id % 23 = 0`;
  await t.db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, created_at, updated_at)
    SELECT 2, ${models[1]}, ${agents[3]}, g, timestamptz '2026-11-24 18:00:00+00' + g * interval '37 seconds', now() FROM generate_series(1, 60) g`;
  await t.db.prisma.$executeRaw`DELETE FROM ps_agents WHERE id = ${agents[3]}`;
}, 120_000);
afterAll(() => t.dispose());

const RUNS = 30;
const ISO = (ms: number) => new Date(ms);

/** A range: none, open on one side, or both bounds, on slot boundaries or inside slots. */
const rangeArb = fc.record({
  from: fc.option(fc.tuple(fc.constantFrom(...CENTRES), fc.integer({ min: -4 * 96, max: 4 * 96 }), fc.boolean()), { nil: undefined }),
  length: fc.integer({ min: 1, max: 8 * 96 }),
  to: fc.boolean(),
  offsetMs: fc.integer({ min: 1, max: 899_999 }),
});
function range(r: { from?: [number, number, boolean]; length: number; to: boolean; offsetMs: number }): { from?: Date; to?: Date } {
  if (!r.from) return {};
  const [centre, slots, inside] = r.from;
  const from = centre + slots * 900_000 + (inside ? r.offsetMs : 0);
  return r.to ? { from: ISO(from), to: ISO(from + r.length * 900_000 + (inside ? 0 : r.offsetMs)) } : { from: ISO(from) };
}

test("sums read from the rollups equal the ledger's, for random zones, buckets, groupings and ranges", async () => {
  await fc.assert(
    fc.asyncProperty(
      rangeArb,
      fc.subarray(["userId", "agentId", "connectorId", "modelId"] as ModelUsageGroupBy[]),
      fc.option(fc.constantFrom(...BUCKETS), { nil: undefined }),
      fc.constantFrom(...ZONES),
      fc.option(fc.constantFrom(...[1, 2, 3]), { nil: undefined }),
      async (r, groupBy, bucket, timeZone, userId) => {
        const where = { ...range(r), ...(userId ? { userId } : {}) };
        const options = { where, groupBy, bucket, timeZone };
        const fromRollups = await sumModelUsage(t.db, options);
        const fromLedger = await sumModelUsage(t.db, { ...options, rollups: false });
        expect(fromRollups).toEqual(fromLedger);
        const apiGroups = groupBy.map((g) => (g === "modelId" ? "externalApiId" : g)) as ("userId" | "agentId" | "connectorId" | "externalApiId")[];
        const apiOptions = { where, groupBy: apiGroups, bucket, timeZone };
        expect(await sumExternalApiUsage(t.db, apiOptions)).toEqual(await sumExternalApiUsage(t.db, { ...apiOptions, rollups: false }));
      },
    ),
    { numRuns: RUNS, seed: 12 },
  );
}, 300_000);

test("cost reports from the rollups equal the ledger's, with price periods starting inside slots", async () => {
  await fc.assert(
    fc.asyncProperty(
      rangeArb,
      fc.subarray(["userId", "agentId", "connectorId", "modelId", "externalApiId"] as const),
      fc.option(fc.constantFrom(...BUCKETS), { nil: undefined }),
      fc.constantFrom(...ZONES),
      async (r, groupBy, bucket, timeZone) => {
        const options = { where: range(r), groupBy: [...groupBy], bucket, timeZone };
        const fromRollups = await costReport(t.db, options);
        expect(fromRollups).toEqual(await costReport(t.db, { ...options, rollups: false }));
      },
    ),
    { numRuns: RUNS, seed: 34 },
  );
}, 300_000);

test("sums and cost reports by user or by connector alone (the per-user and per-connector daily levels) equal the ledger's, in zones 30 and 45 minutes off UTC, with price periods starting inside a day", async () => {
  await fc.assert(
    fc.asyncProperty(
      rangeArb,
      fc.constantFrom("userId" as const, "connectorId" as const),
      fc.constantFrom("group", "filter", "both"),
      fc.boolean(),
      fc.option(fc.constantFrom(...BUCKETS), { nil: undefined }),
      fc.constantFrom(...ZONES, "Asia/Kolkata", "Australia/Eucla", "Australia/Adelaide"),
      fc.integer({ min: 0, max: 2 }),
      async (r, key, how, byModel, bucket, timeZone, i) => {
        const id = key === "userId" ? 1 + i : connectors[i % 2];
        const where = { ...range(r), ...(how !== "group" ? { [key]: id } : {}) };
        const keys = how !== "filter" ? [key] : [];
        const options = { where, groupBy: [...keys, ...(byModel ? (["modelId"] as const) : [])], bucket, timeZone };
        expect(await sumModelUsage(t.db, options)).toEqual(await sumModelUsage(t.db, { ...options, rollups: false }));
        const apiOptions = { where, groupBy: [...keys, ...(byModel ? (["externalApiId"] as const) : [])], bucket, timeZone };
        expect(await sumExternalApiUsage(t.db, apiOptions)).toEqual(await sumExternalApiUsage(t.db, { ...apiOptions, rollups: false }));
        expect(await costReport(t.db, options)).toEqual(await costReport(t.db, { ...options, rollups: false }));
      },
    ),
    { numRuns: 2 * RUNS, seed: 56 },
  );
}, 600_000);

test("the agent tree's sums and cost report from the rollups equal the ledger's", async () => {
  for (const [i, where] of [{}, range({ from: [CENTRES[2], -10, true], length: 300, to: true, offsetMs: 123_456 }), { userId: 2 }].entries()) {
    const options = { where, ...(i === 1 ? {} : {}) };
    expect(await sumAgentTreeUsage(t.db, agents[0], options)).toEqual(await sumAgentTreeUsage(t.db, agents[0], { ...options, rollups: false }));
    const costOptions = { where, bucket: "day" as const, timeZone: "Asia/Kathmandu" };
    expect(await agentTreeCostReport(t.db, agents[0], costOptions)).toEqual(await agentTreeCostReport(t.db, agents[0], { ...costOptions, rollups: false }));
  }
  const tree = await sumAgentTreeUsage(t.db, agents[0]);
  expect(tree.total.modelUsage.events).toBeGreaterThan(0n);
});

/** Ledger rows a plan's scans of ps_model_usage read (returned or filtered out), over all loops. */
function ledgerRowsRead(node: Record<string, unknown>): number {
  const own =
    node["Relation Name"] === "ps_model_usage"
      ? ((node["Actual Rows"] as number) + ((node["Rows Removed by Filter"] as number) ?? 0) + ((node["Rows Removed by Index Recheck"] as number) ?? 0)) *
        (node["Actual Loops"] as number)
      : 0;
  return own + ((node.Plans as Record<string, unknown>[] | undefined) ?? []).reduce((sum, child) => sum + ledgerRowsRead(child), 0);
}

test("a slot a price period starts inside is read from the ledger for its 15 minutes only, not every row of the filter", async () => {
  // Its own database: 20,160 calls, one a minute for 14 days, and a price change 7.5 minutes into
  // a slot. Read as a plain join, the cut slot's rows were found by hashing all 20,160.
  const own = await openTestDatabase();
  try {
    const db = own.db;
    const model = await createModel(db, "m");
    const root = await createAgent(db);
    const child = await createAgent(db, root);
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 2 }, new Date("2026-03-04T12:07:30Z"));
    await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, created_at, updated_at)
      SELECT 1, ${model}::int, CASE WHEN g % 2 = 0 THEN ${root}::int ELSE ${child}::int END, 1000, t, t
      FROM generate_series(0, 20159) g, LATERAL (SELECT timestamptz '2026-02-25 00:00:00+00' + g * interval '1 minute' AS t) s`;
    await db.prisma.$executeRaw`ANALYZE`;
    for (const conditions of [[], [Prisma.sql`agent_id = ANY(${[root, child]}::int[])`]]) {
      const relation = usageRelationSql({ table: "modelUsage", priced: true, rollups: true, conditions });
      const [row] = await db.prisma.$queryRaw<{ "QUERY PLAN": [{ Plan: Record<string, unknown> }] }[]>`
        EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(event_count) FROM ${relation} AS u`;
      // The slot 12:00-12:15 holds 15 calls.
      expect(ledgerRowsRead(row["QUERY PLAN"][0].Plan)).toBe(15);
    }
    // 10,808 calls before the change at 0.001 USD, 9,352 from it at 0.002.
    const report = await agentTreeCostReport(db, root);
    expect(report.totals.map((x) => [x.currency, x.modelEvents, x.cost])).toEqual([["USD", 20160n, "29.512"]]);
    expect(report).toEqual(await agentTreeCostReport(db, root, { rollups: false }));
    expect(await costReport(db, { groupBy: "agentId" })).toEqual(await costReport(db, { groupBy: "agentId", rollups: false }));
  } finally {
    await own.dispose();
  }
}, 120_000);

test("the rollups hold every ledger row once: totals, events and a 1971 zone whose days cut slots", async () => {
  const [ledger] = await t.db.prisma.$queryRaw<{ n: bigint; tokens: bigint }[]>`SELECT count(*)::bigint AS n, sum(token_in_count)::bigint AS tokens FROM ps_model_usage`;
  const [rollup] = await t.db.prisma.$queryRaw<{ n: bigint; tokens: bigint }[]>`SELECT sum(event_count)::bigint AS n, sum(token_in_count)::bigint AS tokens FROM ps_model_usage_rollup`;
  expect(rollup).toEqual(ledger);
  const [total] = await sumModelUsage(t.db);
  expect({ n: total.events, tokens: total.tokenInCount }).toEqual(ledger);
  // Monrovia's 1971 midnight is 00:44:30 UTC: the slot 00:30-00:45 lies in two of its days.
  const days = { where: { from: new Date("1971-06-01T00:00:00Z"), to: new Date("1971-07-01T00:00:00Z") }, bucket: "day" as const, timeZone: "Africa/Monrovia" };
  const monrovia = await sumModelUsage(t.db, days);
  expect(monrovia.length).toBeGreaterThan(3);
  expect(monrovia[1].bucketStart.toISOString()).toMatch(/T00:44:30\.000Z$/);
  expect(monrovia).toEqual(await sumModelUsage(t.db, { ...days, rollups: false }));
});

test("rebuildRollups finds a rollup that went wrong, names the slot, and rewrites it from the ledger", async () => {
  const clean = await rebuildRollups(t.db, { dryRun: true });
  expect(clean.modelUsage.differences).toBe(0);
  expect(clean.externalApiUsage.differences).toBe(0);
  expect(clean.rebuilt).toBe(false);
  expect(clean.modelUsage.rows).toBeGreaterThan(100);

  // A writer that bypassed the triggers (a restore with session_replication_role = replica).
  const [victim] = await t.db.prisma.$queryRaw<{ slot_start: Date; user_id: number; model_id: number; event_count: bigint }[]>`
    SELECT slot_start, user_id, model_id, event_count FROM ps_model_usage_rollup ORDER BY slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing LIMIT 1`;
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_rollup SET token_out_count = token_out_count + 5
    WHERE (slot_start, user_id, model_id) = (${victim.slot_start}::timestamptz, ${victim.user_id}, ${victim.model_id})`;
  await t.db.prisma.$executeRaw`DELETE FROM ps_external_api_usage_rollup WHERE slot_start = (SELECT max(slot_start) FROM ps_external_api_usage_rollup)`;
  // By user and agent: a report the 15-minute level answers (a total reads the per-model level,
  // one by user alone the per-user level, which the corruption did not touch).
  const ofVictim = { where: { userId: victim.user_id }, groupBy: ["agentId" as const] };
  const tokenOut = async (options: { rollups?: boolean }) => (await sumModelUsage(t.db, { ...ofVictim, ...options })).reduce((sum, r) => sum + r.tokenOutCount, 0n);
  const wrongTotal = await tokenOut({});
  const rightTotal = await tokenOut({ rollups: false });
  expect(wrongTotal).not.toBe(rightTotal);

  const check = await rebuildRollups(t.db, { dryRun: true });
  expect(check.modelUsage.differences).toBeGreaterThanOrEqual(1);
  expect(check.modelUsage.samples[0]).toMatchObject({ slotStart: victim.slot_start, userId: victim.user_id, modelId: victim.model_id, ledgerEvents: victim.event_count, rollupEvents: victim.event_count });
  expect(check.externalApiUsage.differences).toBeGreaterThanOrEqual(1);
  expect(check.externalApiUsage.samples[0].rollupEvents).toBe(0n);
  expect(check.rebuilt).toBe(false);
  expect(await tokenOut({})).toBe(wrongTotal); // the dry run changed nothing

  const fixed = await rebuildRollups(t.db);
  expect(fixed.rebuilt).toBe(true);
  expect(fixed.modelUsage.differences).toBe(check.modelUsage.differences);
  // The rewritten tables are vacuumed and analyzed: the planner's row count is theirs, and every
  // page is all-visible (index-only scans need not visit the heap; no first reader sets hint bits).
  for (const table of ["ps_model_usage_rollup", "ps_external_api_usage_rollup"]) {
    const [stats] = await t.db.prisma.$queryRawUnsafe<{ reltuples: number; relpages: number; relallvisible: number; rows: bigint }[]>(
      `SELECT c.reltuples::float8 AS reltuples, c.relpages, c.relallvisible, (SELECT count(*) FROM ${table}) AS rows FROM pg_class c WHERE c.oid = '${table}'::regclass`,
    );
    expect({ table, reltuples: stats.reltuples, allVisible: stats.relallvisible }).toEqual({ table, reltuples: Number(stats.rows), allVisible: stats.relpages });
  }
  expect(await tokenOut({})).toBe(rightTotal);
  const after = await rebuildRollups(t.db, { dryRun: true });
  expect([after.modelUsage.differences, after.externalApiUsage.differences]).toEqual([0, 0]);
});

test("bad options of rebuildRollups and of the sums' rollups switch are typed errors naming the field", async () => {
  for (const [options, field] of [
    [{ dryRun: "yes" }, "dryRun"],
    [{ lockTimeoutMs: 0 }, "lockTimeoutMs"],
    [{ lockTimeoutMs: 1.5 }, "lockTimeoutMs"],
    [{ dryrun: true }, "dryrun"],
  ] as const) {
    const error = await rebuildRollups(t.db, options as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageValidationError);
    expect((error as UsageValidationError).issues.map((i) => i.field)).toEqual([field]);
  }
  for (const call of [
    sumModelUsage(t.db, { rollups: "no" as never }),
    sumExternalApiUsage(t.db, { rollups: 0 as never }),
    costReport(t.db, { rollups: null as never }),
    sumAgentTreeUsage(t.db, agents[0], { rollups: "false" as never }),
  ]) {
    const error = await call.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageValidationError);
    expect((error as UsageValidationError).issues.map((i) => i.field)).toEqual(["rollups"]);
  }
});

test("a single record, an update and a truncate keep the rollup equal to the ledger", async () => {
  const before = (await sumModelUsage(t.db, { groupBy: ["modelId"] })).map((r) => [r.modelId, r.events]);
  const row = await recordModelUsage(t.db, { userId: 3, modelId: models[1], tokenInCount: 42, createdAt: new Date("2026-11-24T18:16:00Z") });
  const after = await sumModelUsage(t.db, { where: { modelId: models[1], from: new Date("2026-11-24T18:15:00Z"), to: new Date("2026-11-24T18:30:00Z"), userId: 3 } });
  expect(after[0].tokenInCount).toBeGreaterThanOrEqual(42n);
  expect((await sumModelUsage(t.db, { groupBy: ["modelId"] })).map((r) => [r.modelId, r.events])).toEqual(
    before.map(([m, n]) => [m, m === models[1] ? (n as bigint) + 1n : n]),
  );
  expect(row.id).toBeGreaterThan(0);
  const check = await rebuildRollups(t.db, { dryRun: true });
  expect(check.modelUsage.differences).toBe(0);
});

test("the migration fills the rollups from the rows already in the ledger", async () => {
  const fresh = await openTestDatabase({ migrate: false });
  try {
    // Every migration before the rollups', then rows, then the rollups' migration.
    const all = fs.readdirSync(path.join(PACKAGE_ROOT, "prisma", "migrations")).filter((n) => /^\d{14}_/.test(n)).sort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-rollup-migrations-"));
    for (const name of all.filter((n) => n < "20261125200000")) fs.cpSync(path.join(PACKAGE_ROOT, "prisma", "migrations", name), path.join(dir, name), { recursive: true });
    fs.copyFileSync(path.join(PACKAGE_ROOT, "prisma", "migrations", "migration_lock.toml"), path.join(dir, "migration_lock.toml"));
    await migrate(fresh.db, { migrationsDir: dir });
    const model = await createModel(fresh.db, "old");
    await fresh.db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, token_in_count, token_out_count, created_at, updated_at)
      SELECT 1 + g % 3, ${model}, g, 2 * g, timestamptz '2026-05-01 00:00:00+00' + g * interval '7 minutes', now() FROM generate_series(1, 500) g`;
    const status = await migrate(fresh.db);
    expect(status.applied.slice(0, 2)).toEqual(["20261125200000_usage_rollups", "20261207100000_usage_rollup_levels"]);
    const check = await rebuildRollups(fresh.db, { dryRun: true });
    expect(check.modelUsage).toMatchObject({ differences: 0 });
    const [sum] = await sumModelUsage(fresh.db, { where: { from: new Date("2026-05-01T10:00:00Z") } });
    const [ledger] = await sumModelUsage(fresh.db, { where: { from: new Date("2026-05-01T10:00:00Z") }, rollups: false });
    expect(sum).toEqual(ledger);
    expect(sum.events).toBe(500n - 85n);
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    await fresh.dispose();
  }
});

/** Rows a plan's scans of `table` read (returned or filtered out), over all loops. */
function rowsRead(node: Record<string, unknown>, table: string): number {
  const own =
    node["Relation Name"] === table
      ? ((node["Actual Rows"] as number) + ((node["Rows Removed by Filter"] as number) ?? 0) + ((node["Rows Removed by Index Recheck"] as number) ?? 0)) *
        (node["Actual Loops"] as number)
      : 0;
  return own + ((node.Plans as Record<string, unknown>[] | undefined) ?? []).reduce((sum, child) => sum + rowsRead(child, table), 0);
}

test("reports that need no user or connector read the per-model, per-agent-day and per-agent-month levels, not a row per slot and key", async () => {
  // Its own database: 20 agents under one root, 2 models, one call a minute for 14 days (20,160
  // calls in about 20,000 15-minute rollup rows: every slot has its own agents), a price change
  // 7.5 minutes into a slot of model 1.
  const own = await openTestDatabase();
  try {
    const db = own.db;
    const m = [await createModel(db, "a"), await createModel(db, "b")];
    const root = await createAgent(db);
    const tree = [root];
    for (let i = 0; i < 19; i++) tree.push(await createAgent(db, tree[Math.floor(i / 3)]));
    await setModelPrice(db, m[0], { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, m[0], { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 2 }, new Date("2026-03-04T12:07:30Z"));
    await setModelPrice(db, m[1], { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 3 }, new Date("2026-01-01T00:00:00Z"));
    await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, created_at, updated_at)
      SELECT 1 + g % 7, (${m}::int[])[1 + g % 2], (${tree}::int[])[1 + (g * 7) % 20], 1000 + g % 10, t, t
      FROM generate_series(0, 20159) g, LATERAL (SELECT timestamptz '2026-02-25 00:00:00+00' + g * interval '1 minute' AS t) s`;
    await db.prisma.$executeRaw`ANALYZE`;
    const explain = async (relation: Prisma.Sql) => {
      const [row] = await db.prisma.$queryRaw<{ "QUERY PLAN": [{ Plan: Record<string, unknown> }] }[]>`
        EXPLAIN (ANALYZE, FORMAT JSON) SELECT agent_id, sum(event_count) FROM ${relation} AS u GROUP BY 1`;
      const plan = row["QUERY PLAN"][0].Plan;
      return ["ps_model_usage", "ps_model_usage_rollup", "ps_model_usage_model_rollup", "ps_model_usage_agent_day_rollup", "ps_model_usage_agent_month_rollup"].map((table) => rowsRead(plan, table));
    };
    // By agent over all time: 2 months (February, March) x 20 agents x 2 models from the monthly level, nothing else.
    const [ledger, slots, , days, months] = await explain(usageRelationSql({ table: "modelUsage", rollups: true, uses: ["agent_id"] }));
    expect([ledger, slots, days]).toEqual([0, 0, 0]);
    expect(months).toBeGreaterThan(0);
    expect(months).toBeLessThanOrEqual(2 * 20 * 2);
    // From a day inside February: that month's last 2 days from the daily level (not all its 15
    // days: an index range, some rows filtered), March from the monthly one.
    const fromFeb27 = await explain(usageRelationSql({ table: "modelUsage", rollups: true, uses: ["agent_id"], where: { from: new Date("2026-02-27T00:00:00Z") } }));
    expect(fromFeb27.slice(0, 2)).toEqual([0, 0]);
    expect(fromFeb27[3]).toBeLessThan(15 * 20 * 2);
    expect(fromFeb27[4]).toBeLessThanOrEqual(20 * 2);
    // Priced, the day of the price change is read from the 15-minute level (at most that day's
    // 1,440 rows, not the table's 20,000) and the cut slot from the ledger (its 15 minutes).
    const priced = await explain(usageRelationSql({ table: "modelUsage", rollups: true, priced: true, uses: ["agent_id"] }));
    expect(priced[0]).toBe(15);
    expect(priced[1]).toBeGreaterThan(0);
    expect(priced[1]).toBeLessThanOrEqual(1440);
    // No agent: the per-model level, one row a slot and model.
    const [l2, s2, models2] = await explain(usageRelationSql({ table: "modelUsage", rollups: true, uses: [] }));
    expect([l2, s2]).toEqual([0, 0]);
    expect(models2).toBeLessThanOrEqual(14 * 96 * 2 + 2);
    // And the reports agree with the ledger.
    expect(await agentTreeCostReport(db, root)).toEqual(await agentTreeCostReport(db, root, { rollups: false }));
    expect(await sumAgentTreeUsage(db, root)).toEqual(await sumAgentTreeUsage(db, root, { rollups: false }));
    const kolkata = { where: { from: new Date("2026-02-26T00:00:00Z"), to: new Date("2026-03-08T00:00:00Z") }, groupBy: ["modelId" as const], bucket: "day" as const, timeZone: "Asia/Kolkata" };
    expect(await sumModelUsage(db, kolkata)).toEqual(await sumModelUsage(db, { ...kolkata, rollups: false }));
    const byAgent = { where: { from: new Date("2026-02-26T05:30:00Z"), to: new Date("2026-03-08T17:07:00Z") }, groupBy: ["agentId" as const] };
    expect(await sumModelUsage(db, byAgent)).toEqual(await sumModelUsage(db, { ...byAgent, rollups: false }));
    // Whole months in range, a UTC week bucket (which cuts months), and a price change inside March.
    const months2 = { where: { from: new Date("2026-02-01T00:00:00Z"), to: new Date("2026-04-01T00:00:00Z") }, groupBy: ["agentId" as const] };
    expect(await sumModelUsage(db, months2)).toEqual(await sumModelUsage(db, { ...months2, rollups: false }));
    const weeks = { groupBy: ["agentId" as const], bucket: "week" as const };
    expect(await sumModelUsage(db, weeks)).toEqual(await sumModelUsage(db, { ...weeks, rollups: false }));
    const costByAgentMonth = { groupBy: "agentId" as const, bucket: "month" as const, timeZone: "America/New_York" };
    expect(await costReport(db, costByAgentMonth)).toEqual(await costReport(db, { ...costByAgentMonth, rollups: false }));
  } finally {
    await own.dispose();
  }
}, 120_000);

test("reports and budgets on one user or one connector read the per-user or per-connector daily level for whole days, not a row per slot and key", async () => {
  // Its own database: 7 users, 3 connectors (and none), 2 models, one call a minute for 14 days
  // (20,160 calls, every slot's rows in about 15 full-key rollup rows), a price change of model 1
  // 7.5 minutes into a slot and one of model 2 on a slot boundary inside a day.
  const own = await openTestDatabase();
  try {
    const db = own.db;
    const m = [await createModel(db, "a"), await createModel(db, "b")];
    const c = [await createConnector(db), await createConnector(db), await createConnector(db)];
    await setModelPrice(db, m[0], { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, m[0], { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 2 }, new Date("2026-03-04T12:07:30Z"));
    await setModelPrice(db, m[1], { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 3 }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, m[1], { currency: "USD", costInTokensPerMillion: 4, costOutTokensPerMillion: 4 }, new Date("2026-03-06T09:00:00Z"));
    await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, connector_id, token_in_count, created_at, updated_at)
      SELECT 1 + g % 7, (${m}::int[])[1 + g % 2], (${c}::int[])[1 + g % 4], 1000 + g % 10, t, t
      FROM generate_series(0, 20159) g, LATERAL (SELECT timestamptz '2026-02-25 00:00:00+00' + g * interval '1 minute' AS t) s`;
    await db.prisma.$executeRaw`ANALYZE`;
    const tables = ["ps_model_usage", "ps_model_usage_rollup", "ps_model_usage_user_day_rollup", "ps_model_usage_connector_day_rollup"];
    const explain = async (relation: Prisma.Sql) => {
      const [row] = await db.prisma.$queryRaw<{ "QUERY PLAN": [{ Plan: Record<string, unknown> }] }[]>`
        EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(event_count) FROM ${relation} AS u`;
      return tables.map((table) => rowsRead(row["QUERY PLAN"][0].Plan, table));
    };
    const days = { from: new Date("2026-02-26T00:00:00Z"), to: new Date("2026-03-08T00:00:00Z") };
    // One user's 11 whole days: the user level alone (at most its 7 x 14 x 2 rows: on so small a
    // table the planner may well scan it all), nothing of the 15-minute level or the ledger.
    const user = await explain(usageRelationSql({ table: "modelUsage", rollups: true, uses: [], where: { ...days, userId: 3 } }));
    expect(user.slice(0, 2)).toEqual([0, 0]);
    expect(user[2]).toBeGreaterThan(0);
    expect(user[2]).toBeLessThanOrEqual(7 * 14 * 2);
    // One connector's, priced: the day of model 1's change (2026-03-04) and of model 2's (03-06)
    // from the 15-minute level for that model (one day's index range each), model 1's cut slot from
    // the ledger (its 15 minutes), the other days from the connector level.
    const connector = await explain(usageRelationSql({ table: "modelUsage", rollups: true, priced: true, uses: [], where: { ...days, connectorId: c[1] } }));
    expect(connector[0]).toBeLessThanOrEqual(15);
    expect(connector[1]).toBeLessThanOrEqual(3 * 96 * 15);
    expect(connector[3]).toBeLessThanOrEqual(4 * 14 * 2);
    // Grouped by user over every user: the user level (7 users x 11 days x 2 models at most).
    const everyUser = await explain(usageRelationSql({ table: "modelUsage", rollups: true, uses: ["user_id"], where: days }));
    expect(everyUser.slice(0, 2)).toEqual([0, 0]);
    expect(everyUser[2]).toBeLessThanOrEqual(7 * 14 * 2);
    // Range edges inside a day: that day's slots from the 15-minute level, its cut slot from the ledger.
    const edges = await explain(usageRelationSql({ table: "modelUsage", rollups: true, uses: [], where: { from: new Date("2026-02-26T05:37:00Z"), to: new Date("2026-03-07T13:30:00Z"), userId: 2 } }));
    expect(edges[0]).toBeLessThanOrEqual(15);
    expect(edges[1]).toBeLessThanOrEqual(2 * 96 * 15);
    expect(edges[2]).toBeLessThanOrEqual(7 * 14 * 2);
    // And what they report agrees with the ledger: sums, cost reports in zones 30 and 45 minutes off UTC, budgets.
    for (const options of [
      { where: { ...days, userId: 3 }, bucket: "day" as const, timeZone: "Asia/Kolkata" },
      { where: { connectorId: c[2] }, groupBy: ["modelId" as const], bucket: "hour" as const, timeZone: "Asia/Kathmandu" },
      { where: { from: new Date("2026-02-26T05:37:00Z") }, groupBy: ["userId" as const], bucket: "week" as const, timeZone: "America/St_Johns" },
    ]) {
      expect(await sumModelUsage(db, options)).toEqual(await sumModelUsage(db, { ...options, rollups: false }));
      expect(await costReport(db, options)).toEqual(await costReport(db, { ...options, rollups: false }));
    }
    await setBudget(db, { name: "user 3", scope: { userId: 3 }, period: "month", timeZone: "Asia/Kolkata", amount: 1, currency: "USD" });
    await setBudget(db, { name: "connector", scope: { connectorId: c[1] }, period: "month", timeZone: "UTC", amount: 1, currency: "USD" });
    const at = new Date("2026-03-05T00:00:00Z");
    const user3 = await budgetStatus(db, "user 3", { at });
    const march = { from: user3.periodStart, to: user3.periodEnd };
    expect(user3.spent).toBe((await costReport(db, { where: { ...march, userId: 3 }, rollups: false })).totals[0].cost);
    const conn = await budgetStatus(db, "connector", { at });
    expect(conn.spent).toBe((await costReport(db, { where: { from: conn.periodStart, to: conn.periodEnd, connectorId: c[1] }, rollups: false })).totals[0].cost);
  } finally {
    await own.dispose();
  }
}, 120_000);

test("the per-user and per-connector levels are filled from the 15-minute rollups, which keep what a prune deleted from the ledger", async () => {
  const fresh = await openTestDatabase({ migrate: false });
  try {
    // Every migration up to the month level, rows, a prune, then the migration of the new levels.
    const all = fs.readdirSync(path.join(PACKAGE_ROOT, "prisma", "migrations")).filter((n) => /^\d{14}_/.test(n)).sort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-rollup-migrations-"));
    for (const name of all.filter((n) => n <= "20261207230000_usage_rollup_months")) fs.cpSync(path.join(PACKAGE_ROOT, "prisma", "migrations", name), path.join(dir, name), { recursive: true });
    fs.copyFileSync(path.join(PACKAGE_ROOT, "prisma", "migrations", "migration_lock.toml"), path.join(dir, "migration_lock.toml"));
    await migrate(fresh.db, { migrationsDir: dir });
    const model = await createModel(fresh.db, "old");
    const api = await createExternalApi(fresh.db, "old api");
    const connector = await createConnector(fresh.db);
    await fresh.db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, connector_id, token_in_count, token_out_count, created_at, updated_at)
      SELECT 1 + g % 3, ${model}, CASE WHEN g % 2 = 0 THEN ${connector}::int END, g, 2 * g, timestamptz '2026-05-01 00:00:00+00' + g * interval '7 minutes', now() FROM generate_series(1, 500) g`;
    await fresh.db.prisma.$executeRaw`INSERT INTO ps_external_api_usage (user_id, external_api_id, connector_id, call_count, created_at, updated_at)
      SELECT 1 + g % 3, ${api}, CASE WHEN g % 3 = 0 THEN ${connector}::int END, g, timestamptz '2026-05-01 00:00:00+00' + g * interval '11 minutes', now() FROM generate_series(1, 300) g`;
    const reports = async () => [
      await sumModelUsage(fresh.db, { groupBy: ["userId"], bucket: "day" }),
      await sumModelUsage(fresh.db, { groupBy: ["connectorId"] }),
      await sumExternalApiUsage(fresh.db, { groupBy: ["userId"] }),
      await sumExternalApiUsage(fresh.db, { groupBy: ["connectorId"], bucket: "day" }),
    ];
    // What the ledger gives before the prune (the new levels do not exist yet).
    const before = [
      await sumModelUsage(fresh.db, { groupBy: ["userId"], bucket: "day", rollups: false }),
      await sumModelUsage(fresh.db, { groupBy: ["connectorId"], rollups: false }),
      await sumExternalApiUsage(fresh.db, { groupBy: ["userId"], rollups: false }),
      await sumExternalApiUsage(fresh.db, { groupBy: ["connectorId"], bucket: "day", rollups: false }),
    ];
    const pruned = await prune(fresh.db, { before: new Date("2026-05-02T12:00:00Z") });
    expect([pruned.modelUsage.deleted > 0, pruned.externalApiUsage.deleted > 0]).toEqual([true, true]);
    const status = await migrate(fresh.db);
    expect(status.applied).toEqual(["20261208100000_usage_rollup_user_connector"]);
    expect(await reports()).toEqual(before);
    const check = await rebuildRollups(fresh.db, { dryRun: true });
    expect(check.levels.map((l) => l.differences)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(check.levels.slice(5).every((l) => l.rows > 0)).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    await fresh.dispose();
  }
}, 120_000);

test("rebuildRollups writes the rollups in slot order, as the triggers do over time (a report reading one day reads adjacent pages)", async () => {
  const own = await openTestDatabase();
  try {
    const db = own.db;
    const model = await createModel(db, "m");
    const agents: number[] = [];
    for (let i = 0; i < 50; i++) agents.push(await createAgent(db));
    // Rows in an order unrelated to time, with the triggers off (as a restore writes them).
    await db.prisma.$transaction(async (tx) => {
      await tx.$executeRaw`SET LOCAL session_replication_role = replica`;
      await tx.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, created_at, updated_at)
        SELECT 1 + g % 5, ${model}, (${agents}::int[])[1 + (g * 7) % 50], g, t, t
        FROM generate_series(1, 20000) g, LATERAL (SELECT timestamptz '2026-02-01 00:00:00+00' + ((g * 7919) % 20000) * interval '3 minutes' AS t) s`;
    });
    const rebuilt = await rebuildRollups(db);
    expect(rebuilt.rebuilt).toBe(true);
    for (const [table, column] of [["ps_model_usage_rollup", "slot_start"], ["ps_model_usage_agent_day_rollup", "day_start"], ["ps_model_usage_agent_month_rollup", "month_start"]]) {
      const [row] = await db.prisma.$queryRawUnsafe<{ out_of_order: number }[]>(
        `SELECT count(*)::int AS out_of_order FROM (SELECT ${column} < lag(${column}) OVER (ORDER BY ctid) AS back FROM ${table}) s WHERE back`,
      );
      expect([table, row.out_of_order]).toEqual([table, 0]);
    }
  } finally {
    await own.dispose();
  }
}, 120_000);

test("the planner counts the groups of a cost report's keys from statistics on the key columns together, not 200 per all-NULL column", async () => {
  // Cost reports group usage by agent (or user, connector, model), service tier and regional
  // processing. Tier and region are NULL in most deployments; alone, an all-NULL column counts as
  // 200 distinct values, and a tree cost report over 10M ledger rows was planned for 3.4M groups
  // (an index scan and a sort of every row: 41.6 s) instead of a hash of a few thousand.
  const own = await openTestDatabase();
  try {
    const db = own.db;
    const model = await createModel(db, "m");
    const agents: number[] = [];
    for (let i = 0; i < 20; i++) agents.push(await createAgent(db));
    await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, created_at, updated_at)
      SELECT 1, ${model}, (${agents}::int[])[1 + g % 20], g, t, t
      FROM generate_series(1, 20000) g, LATERAL (SELECT timestamptz '2026-02-25 00:00:00+00' + g * interval '1 minute' AS t) s`;
    await db.prisma.$executeRaw`ANALYZE ps_model_usage`;
    const [row] = await db.prisma.$queryRaw<{ "QUERY PLAN": [{ Plan: { "Plan Rows": number } }] }[]>`
      EXPLAIN (FORMAT JSON) SELECT agent_id, service_tier, regional_processing IS NOT NULL, count(*) FROM ps_model_usage GROUP BY 1, 2, 3`;
    expect(row["QUERY PLAN"][0].Plan["Plan Rows"]).toBeLessThanOrEqual(100);
  } finally {
    await own.dispose();
  }
}, 120_000);

test("a month in which a price period starts is read from the monthly level when none of its usage comes before the start, and priced by that period", async () => {
  const own = await openTestDatabase();
  try {
    const db = own.db;
    // Model a: first priced on 10 March 06:00 (mid-month, before any use), used from 11 March.
    // Model b: priced from January, repriced on 20 March 12:07:30 with use on both sides (cut).
    // Model c: priced from January, repriced on 25 March with use only before it (cut, to be safe).
    const [a, b, c] = [await createModel(db, "a"), await createModel(db, "b"), await createModel(db, "c")];
    const api = await createExternalApi(db, "search");
    const root = await createAgent(db);
    const tree = [root, await createAgent(db, root), await createAgent(db, root)];
    await setModelPrice(db, a, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 2 }, new Date("2026-03-10T06:00:00Z"));
    await setModelPrice(db, b, { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 4 }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, b, { currency: "USD", costInTokensPerMillion: 5, costOutTokensPerMillion: 6 }, new Date("2026-03-20T12:07:30Z"));
    await setModelPrice(db, c, { currency: "USD", costInTokensPerMillion: 7, costOutTokensPerMillion: 8 }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, c, { currency: "USD", costInTokensPerMillion: 9, costOutTokensPerMillion: 9 }, new Date("2026-03-25T00:00:00Z"));
    await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: "0.01", currency: "USD" }, new Date("2026-03-10T06:00:00Z"));
    const models = [a, b, c];
    await recordModelUsageBatch(
      db,
      Array.from({ length: 600 }, (_, i): ModelUsageInput => ({
        userId: 1 + (i % 3),
        modelId: models[i % 3],
        agentId: tree[i % 3],
        tokenInCount: 100 + i,
        tokenOutCount: 10 + (i % 7),
        // 11 March to 24 April; model c only until 24 March.
        createdAt: new Date(Date.UTC(2026, 2, 11) + (i % 3 === 2 ? (i * 11 * 60_000) % (13 * 86_400_000) : i * 105 * 60 * 1000)),
      })),
    );
    await recordExternalApiUsageBatch(db, Array.from({ length: 60 }, (_, i): ExternalApiUsageInput => ({ userId: 1, externalApiId: api, agentId: tree[i % 3], callCount: 1 + (i % 4), createdAt: new Date(Date.UTC(2026, 2, 11) + i * 86_400_000 / 2) })));
    await db.prisma.$executeRaw`ANALYZE`;
    expect(await agentTreeCostReport(db, root)).toEqual(await agentTreeCostReport(db, root, { rollups: false }));
    for (const bucket of [undefined, "month" as const, "day" as const]) {
      const options = { groupBy: ["agentId" as const, "modelId" as const], bucket };
      expect(await costReport(db, options)).toEqual(await costReport(db, { ...options, rollups: false }));
    }
    const [row] = await db.prisma.$queryRaw<{ "QUERY PLAN": [{ Plan: Record<string, unknown> }] }[]>`
      EXPLAIN (ANALYZE, FORMAT JSON) SELECT model_id, sum(event_count) FROM ${usageRelationSql({ table: "modelUsage", rollups: true, priced: true, uses: ["agent_id"] })} AS u GROUP BY 1`;
    const plan = row["QUERY PLAN"][0].Plan;
    // March is cut (its days read from the daily level) for models b and c, not for model a.
    const cteRows = (node: Record<string, unknown>, name: string): number | undefined =>
      node["Subplan Name"] === `CTE ${name}`
        ? (node["Actual Rows"] as number)
        : ((node.Plans as Record<string, unknown>[] | undefined) ?? []).map((child) => cteRows(child, name)).find((n) => n !== undefined);
    expect(cteRows(plan, "month_cut")).toBe(2);
  } finally {
    await own.dispose();
  }
}, 120_000);

test("rebuildRollups checks the per-model, per-agent-day and per-agent-month levels against the 15-minute rollups and rewrites one that went wrong", async () => {
  const clean = await rebuildRollups(t.db, { dryRun: true });
  expect(clean.levels.map((l) => [l.table, l.differences])).toEqual([
    ["ps_model_usage_model_rollup", 0],
    ["ps_model_usage_agent_day_rollup", 0],
    ["ps_model_usage_agent_month_rollup", 0],
    ["ps_external_api_usage_agent_day_rollup", 0],
    ["ps_external_api_usage_agent_month_rollup", 0],
    ["ps_model_usage_user_day_rollup", 0],
    ["ps_model_usage_connector_day_rollup", 0],
    ["ps_external_api_usage_user_day_rollup", 0],
    ["ps_external_api_usage_connector_day_rollup", 0],
  ]);
  expect(clean.levels.every((l) => l.rows > 0)).toBe(true);
  const right = await sumModelUsage(t.db, { groupBy: ["agentId"] });
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_agent_day_rollup SET token_in_count = token_in_count + 1000 WHERE day_start = (SELECT min(day_start) FROM ps_model_usage_agent_day_rollup)`;
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_agent_month_rollup SET token_out_count = token_out_count + 7 WHERE month_start = (SELECT max(month_start) FROM ps_model_usage_agent_month_rollup)`;
  await t.db.prisma.$executeRaw`DELETE FROM ps_external_api_usage_agent_day_rollup WHERE day_start = (SELECT max(day_start) FROM ps_external_api_usage_agent_day_rollup)`;
  expect(await sumModelUsage(t.db, { groupBy: ["agentId"] })).not.toEqual(right);
  const check = await rebuildRollups(t.db, { dryRun: true });
  expect(check.levels.map((l) => l.differences > 0)).toEqual([false, true, true, true, false, false, false, false, false]);
  const fixed = await rebuildRollups(t.db);
  expect(fixed.rebuilt).toBe(true);
  expect(await sumModelUsage(t.db, { groupBy: ["agentId"] })).toEqual(right);
  expect((await rebuildRollups(t.db, { dryRun: true })).levels.map((l) => l.differences)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0]);
});

test("rebuildRollups finds a damaged row of each per-user and per-connector daily level and rewrites it", async () => {
  const reports = async () => [
    await sumModelUsage(t.db, { groupBy: ["userId"] }),
    await sumModelUsage(t.db, { groupBy: ["connectorId"] }),
    await sumExternalApiUsage(t.db, { groupBy: ["userId"] }),
    await sumExternalApiUsage(t.db, { groupBy: ["connectorId"] }),
  ];
  const right = await reports();
  expect(right).toEqual([
    await sumModelUsage(t.db, { groupBy: ["userId"], rollups: false }),
    await sumModelUsage(t.db, { groupBy: ["connectorId"], rollups: false }),
    await sumExternalApiUsage(t.db, { groupBy: ["userId"], rollups: false }),
    await sumExternalApiUsage(t.db, { groupBy: ["connectorId"], rollups: false }),
  ]);
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_user_day_rollup SET token_in_count = token_in_count + 5 WHERE (user_id, day_start) = (SELECT user_id, max(day_start) FROM ps_model_usage_user_day_rollup WHERE user_id = 2 GROUP BY 1)`;
  await t.db.prisma.$executeRaw`DELETE FROM ps_model_usage_connector_day_rollup WHERE (connector_id, day_start) IN (SELECT connector_id, min(day_start) FROM ps_model_usage_connector_day_rollup WHERE connector_id = 0 GROUP BY 1)`;
  await t.db.prisma.$executeRaw`UPDATE ps_external_api_usage_user_day_rollup SET event_count = event_count + 1 WHERE (user_id, day_start) IN (SELECT user_id, min(day_start) FROM ps_external_api_usage_user_day_rollup WHERE user_id = 3 GROUP BY 1)`;
  await t.db.prisma.$executeRaw`UPDATE ps_external_api_usage_connector_day_rollup SET call_count = call_count + 2 WHERE (connector_id, day_start) IN (SELECT connector_id, max(day_start) FROM ps_external_api_usage_connector_day_rollup WHERE connector_id = ${connectors[1]} GROUP BY 1)`;
  const damaged = await reports();
  for (let i = 0; i < 4; i++) expect(damaged[i]).not.toEqual(right[i]);
  const check = await rebuildRollups(t.db, { dryRun: true });
  expect(check.levels.map((l) => [l.table, l.differences])).toEqual([
    ["ps_model_usage_model_rollup", 0],
    ["ps_model_usage_agent_day_rollup", 0],
    ["ps_model_usage_agent_month_rollup", 0],
    ["ps_external_api_usage_agent_day_rollup", 0],
    ["ps_external_api_usage_agent_month_rollup", 0],
    ["ps_model_usage_user_day_rollup", expect.any(Number)],
    ["ps_model_usage_connector_day_rollup", expect.any(Number)],
    ["ps_external_api_usage_user_day_rollup", expect.any(Number)],
    ["ps_external_api_usage_connector_day_rollup", expect.any(Number)],
  ]);
  expect(check.levels.slice(5).every((l) => l.differences > 0)).toBe(true);
  expect((await rebuildRollups(t.db)).rebuilt).toBe(true);
  expect(await reports()).toEqual(right);
  expect((await rebuildRollups(t.db, { dryRun: true })).levels.map((l) => l.differences)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0]);
});

test("deletes and updates of ledger rows by SQL (user, connector, time and counters changed) keep the per-user and per-connector levels exact", async () => {
  const byUser = { groupBy: ["userId" as const, "modelId" as const], bucket: "day" as const, timeZone: "Asia/Kathmandu" };
  const byConnector = { groupBy: ["connectorId" as const], bucket: "hour" as const, timeZone: "America/St_Johns" };
  await t.db.prisma.$transaction([
    t.db.prisma.$executeRaw`UPDATE ps_model_usage SET user_id = 1 + user_id % 3, connector_id = CASE WHEN connector_id IS NULL THEN ${connectors[0]}::int END WHERE id % 7 = 1`,
    t.db.prisma.$executeRaw`UPDATE ps_model_usage SET created_at = created_at - interval '1 day 3 hours', token_out_count = token_out_count + 5 WHERE id % 29 = 2`,
    t.db.prisma.$executeRaw`DELETE FROM ps_model_usage WHERE id % 31 = 3`,
    t.db.prisma.$executeRaw`UPDATE ps_external_api_usage SET user_id = 1 + user_id % 3, connector_id = NULL, created_at = created_at + interval '13 hours' WHERE id % 5 = 1`,
    t.db.prisma.$executeRaw`DELETE FROM ps_external_api_usage WHERE id % 37 = 4`,
  ]);
  expect(await sumModelUsage(t.db, byUser)).toEqual(await sumModelUsage(t.db, { ...byUser, rollups: false }));
  expect(await sumModelUsage(t.db, byConnector)).toEqual(await sumModelUsage(t.db, { ...byConnector, rollups: false }));
  expect(await sumExternalApiUsage(t.db, { groupBy: ["userId"] })).toEqual(await sumExternalApiUsage(t.db, { groupBy: ["userId"], rollups: false }));
  expect(await sumExternalApiUsage(t.db, { groupBy: ["connectorId"] })).toEqual(await sumExternalApiUsage(t.db, { groupBy: ["connectorId"], rollups: false }));
  expect((await rebuildRollups(t.db, { dryRun: true })).levels.map((l) => [l.table, l.differences]).filter(([, n]) => n !== 0)).toEqual([]);
});

test("rebuildRollups gives up on a write lock it cannot get, as a DatabaseTimeoutError, changing nothing", async () => {
  if (t.db.kind !== "postgresql") return; // PGlite has one connection: nothing else can hold a lock
  const { Client } = await import("pg");
  const holder = new Client({ connectionString: t.url });
  await holder.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE ps_model_usage IN ROW EXCLUSIVE MODE");
    const error = await rebuildRollups(t.db, { lockTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseTimeoutError);
    expect((error as DatabaseTimeoutError).phase).toBe("lock");
  } finally {
    await holder.query("ROLLBACK");
    await holder.end();
  }
});

test("ps-usage rebuild-rollups: a dry run exits 1 on a difference and names it, the rebuild fixes it", async () => {
  const target = await createCliDatabase("ps-usage-rollups-cli-");
  try {
    await target.withDb(async (db) => {
      const model = await createModel(db, "cli");
      await recordModelUsageBatch(db, [1, 2, 3].map((i) => ({ userId: 1, modelId: model, tokenInCount: i, createdAt: new Date(Date.UTC(2026, 4, 1, 0, 10 * i)) })));
      await db.prisma.$executeRaw`UPDATE ps_model_usage_rollup SET token_in_count = 99 WHERE slot_start = '2026-05-01T00:15:00Z'`;
    }, { migrate: true });
    const dry = await runCli(["rebuild-rollups", "--dry-run", "--db", target.arg]);
    expect(dry.code).toBe(1);
    expect(dry.stdout).toContain("ps_model_usage_rollup: 3 rows, 1 slot(s) and key(s) differed from the ledger");
    expect(dry.stdout).toContain("2026-05-01T00:15:00.000Z user 1 model 1 agent - connector -: ledger 1 events, rollup 1");
    expect(dry.stdout).toContain("Dry run: nothing changed");
    const json = JSON.parse((await runCli(["rebuild-rollups", "--dry-run", "--json", "--db", target.arg])).stdout);
    expect(json).toMatchObject({ rebuilt: false, modelUsage: { differences: 1, samples: [{ ledgerEvents: "1", rollupEvents: "1" }] } });
    const done = await runCli(["rebuild-rollups", "--db", target.arg]);
    expect([done.code, done.stdout.trim().split("\n").pop()]).toEqual([0, "Rebuilt from the ledger."]);
    const again = await runCli(["rebuild-rollups", "--dry-run", "--db", target.arg]);
    expect([again.code, again.stdout]).toEqual([
      0,
      "ps_model_usage_rollup: 3 rows, equal to the ledger\nps_external_api_usage_rollup: 0 rows, equal to the ledger\n" +
        "ps_model_usage_model_rollup: 3 rows, equal to the 15-minute rollups\nps_model_usage_agent_day_rollup: 1 rows, equal to the 15-minute rollups\n" +
        "ps_model_usage_agent_month_rollup: 1 rows, equal to the 15-minute rollups\n" +
        "ps_external_api_usage_agent_day_rollup: 0 rows, equal to the 15-minute rollups\nps_external_api_usage_agent_month_rollup: 0 rows, equal to the 15-minute rollups\n" +
        "ps_model_usage_user_day_rollup: 1 rows, equal to the 15-minute rollups\nps_model_usage_connector_day_rollup: 1 rows, equal to the 15-minute rollups\n" +
        "ps_external_api_usage_user_day_rollup: 0 rows, equal to the 15-minute rollups\nps_external_api_usage_connector_day_rollup: 0 rows, equal to the 15-minute rollups\nNothing to rebuild.\n",
    ]);
  } finally {
    await target.drop();
  }
}, 120_000);
