// Retention: prune deletes ledger rows before a date once the rollups hold them; sums and cost
// reports over the pruned time are unchanged, finds there return nothing, idempotency keys of the
// pruned rows go with them, and rows a price period cuts are kept.
import {
  RollupsDifferError,
  UsageValidationError,
  agentTreeCostReport,
  costReport,
  findModelUsage,
  prune,
  rebuildRollups,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  setExternalApiPrice,
  setModelPrice,
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  type ModelUsageInput,
} from "../src";
import { createCliDatabase, runCli } from "./support/cli";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let models: number[], agents: number[], api: number;
const START = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

beforeAll(async () => {
  t = await openTestDatabase();
  models = [await createModel(t.db, "a"), await createModel(t.db, "b")];
  const root = await createAgent(t.db);
  agents = [root, await createAgent(t.db, root), await createAgent(t.db, root)];
  api = await createExternalApi(t.db, "search");
  await setModelPrice(t.db, models[0], { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 8 }, new Date(START - 86_400_000));
  // A price change 5 minutes into a slot, inside the time that will be pruned.
  await setModelPrice(t.db, models[0], { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 9 }, new Date(START + 10 * 24 * HOUR + 5 * 60_000));
  await setModelPrice(t.db, models[1], { currency: "EUR", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 }, new Date(START - 86_400_000));
  await setExternalApiPrice(t.db, api, { unitType: "call", pricePerUnit: "0.003", currency: "USD" }, new Date(START - 86_400_000));
  const inputs: ModelUsageInput[] = [];
  for (let i = 0; i < 60 * 24; i++) {
    // One call every hour for 60 days, 7 minutes past it, plus two around the price change.
    inputs.push({ userId: 1 + (i % 2), modelId: models[i % 2], agentId: agents[i % 3], createdAt: new Date(START + i * HOUR + 7 * 60_000), tokenInCount: 100 + i, tokenOutCount: 10 });
  }
  inputs.push({ userId: 1, modelId: models[0], createdAt: new Date(START + 10 * 24 * HOUR + 60_000), tokenInCount: 1_000_000 });
  inputs.push({ userId: 1, modelId: models[0], createdAt: new Date(START + 10 * 24 * HOUR + 9 * 60_000), tokenInCount: 1_000_000 });
  await recordModelUsageBatch(t.db, inputs);
  await recordExternalApiUsageBatch(t.db, Array.from({ length: 600 }, (_, i) => ({ userId: 1, externalApiId: api, agentId: agents[i % 3], callCount: 1 + (i % 4), createdAt: new Date(START + i * 2 * HOUR) })));
}, 120_000);
afterAll(() => t.dispose());

/** Everything the reports say about the first 40 days, in several shapes. */
async function reports() {
  const where = { from: new Date(START), to: new Date(START + 40 * 24 * HOUR) };
  return {
    total: await sumModelUsage(t.db, { where }),
    byAgentDay: await sumModelUsage(t.db, { where, groupBy: ["agentId"], bucket: "day", timeZone: "Europe/Berlin" }),
    byModelHour: await sumModelUsage(t.db, { where, groupBy: ["modelId"], bucket: "hour", timeZone: "Asia/Kathmandu" }),
    api: await sumExternalApiUsage(t.db, { where, groupBy: ["agentId"], bucket: "week", timeZone: "America/New_York" }),
    tree: await sumAgentTreeUsage(t.db, agents[0], { where }),
    costs: await costReport(t.db, { where, groupBy: ["modelId", "externalApiId"], bucket: "day", timeZone: "America/St_Johns" }),
    treeCosts: await agentTreeCostReport(t.db, agents[0], { bucket: "month" }),
  };
}

test("a dry run counts and deletes nothing; prune then deletes in batches, and every report over the pruned time is unchanged", async () => {
  const before = await reports();
  const cutoff = new Date(START + 30 * 24 * HOUR);
  const dry = await prune(t.db, { before: cutoff, dryRun: true });
  // 30 days of hourly rows, minus the slot of the price change (its hourly row at 10 days + 7 min and the two extra ones are kept).
  expect(dry).toMatchObject({ dryRun: true, batches: 0, before: cutoff, modelUsage: { deleted: 30 * 24 - 1, kept: 3 }, externalApiUsage: { deleted: 360, kept: 0 } });
  expect((await findModelUsage(t.db, { to: cutoff }, { limit: 5 })).items).toHaveLength(5);

  const done = await prune(t.db, { before: new Date(cutoff.getTime() + 7 * 60_000), batchSize: 100 });
  expect(done.before).toEqual(cutoff); // rounded down to the slot
  expect(done.modelUsage).toEqual({ table: "ps_model_usage", deleted: 30 * 24 - 1, kept: 3 });
  expect(done.externalApiUsage.deleted).toBe(360);
  expect(done.batches).toBe(8 + 4);
  const [{ n }] = await t.db.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*)::bigint AS n FROM ps_model_usage WHERE created_at < ${cutoff}::timestamptz`;
  expect(n).toBe(3n);

  expect(await reports()).toEqual(before);
  // Finds over pruned time return what is left: the three rows of the price change's slot.
  expect((await findModelUsage(t.db, { to: cutoff })).items.map((r) => r.tokenInCount).sort((a, b) => a - b)).toEqual([100 + 240, 1_000_000, 1_000_000]);
  // A second prune has nothing left to do.
  expect((await prune(t.db, { before: cutoff })).modelUsage.deleted).toBe(0);
  // The rollups are now the only record before the cutoff: a rebuild leaves them alone.
  const check = await rebuildRollups(t.db, { dryRun: true });
  expect(check.modelUsage).toMatchObject({ differences: 0, prunedBefore: cutoff });
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_rollup SET token_out_count = token_out_count + 1 WHERE slot_start = (SELECT max(slot_start) FROM ps_model_usage_rollup)`;
  expect(await rebuildRollups(t.db)).toMatchObject({ rebuilt: true, modelUsage: { differences: 1 } });
  expect(await reports()).toEqual(before);
});

test("idempotency keys of pruned rows go with them: the key can be used again", async () => {
  const at = new Date(START + 45 * 24 * HOUR);
  const first = await recordModelUsage(t.db, { userId: 1, modelId: models[1], tokenInCount: 5, createdAt: at }, { idempotencyKey: "prune-me" });
  expect((await recordModelUsage(t.db, { userId: 1, modelId: models[1], tokenInCount: 5, createdAt: at }, { idempotencyKey: "prune-me" })).id).toBe(first.id);
  await prune(t.db, { before: new Date(START + 46 * 24 * HOUR) });
  const [{ keys }] = await t.db.prisma.$queryRaw<{ keys: bigint }[]>`SELECT count(*)::bigint AS keys FROM ps_usage_idempotency_keys WHERE key = 'prune-me'`;
  expect(keys).toBe(0n);
  const again = await recordModelUsage(t.db, { userId: 1, modelId: models[1], tokenInCount: 5, createdAt: at }, { idempotencyKey: "prune-me" });
  expect(again.id).not.toBe(first.id);
});

test("prune refuses, deleting nothing, when the rollups do not hold the rows; bad options are typed errors", async () => {
  const cutoff = new Date(START + 50 * 24 * HOUR);
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_rollup SET event_count = event_count + 1
    WHERE slot_start = (SELECT max(slot_start) FROM ps_model_usage_rollup WHERE slot_start < ${cutoff}::timestamptz)`;
  const [{ n: rowsBefore }] = await t.db.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*)::bigint AS n FROM ps_model_usage`;
  const error = await prune(t.db, { before: cutoff }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(RollupsDifferError);
  expect((error as RollupsDifferError).differences).toBe(1);
  expect((error as Error).message).toContain("ps-usage rebuild-rollups");
  const [{ n: rowsAfter }] = await t.db.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*)::bigint AS n FROM ps_model_usage`;
  expect(rowsAfter).toBe(rowsBefore);
  await t.db.prisma.$executeRaw`UPDATE ps_model_usage_rollup SET event_count = event_count - 1
    WHERE slot_start = (SELECT max(slot_start) FROM ps_model_usage_rollup WHERE slot_start < ${cutoff}::timestamptz)`;

  for (const [options, field] of [
    [{}, "before"],
    [{ before: "2026-01-01" }, "before"],
    [{ before: new Date("nope") }, "before"],
    [{ before: cutoff, batchSize: 0 }, "batchSize"],
    [{ before: cutoff, dryRun: 1 }, "dryRun"],
    [{ before: cutoff, olderThan: cutoff }, "olderThan"],
  ] as const) {
    const e = await prune(t.db, options as never).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UsageValidationError);
    expect((e as UsageValidationError).issues.map((i) => i.field)).toEqual([field]);
  }
});

test("ps-usage prune --before with --dry-run and --json", async () => {
  const target = await createCliDatabase("ps-usage-prune-cli-");
  try {
    await target.withDb(async (db) => {
      const model = await createModel(db, "cli");
      await recordModelUsageBatch(db, [0, 1, 2, 3].map((d) => ({ userId: 1, modelId: model, tokenInCount: 10, createdAt: new Date(Date.UTC(2026, 5, 1 + d, 12)) })));
    }, { migrate: true });
    const dry = await runCli(["prune", "--before", "2026-06-03", "--tz", "Europe/Berlin", "--dry-run", "--db", target.arg]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(
      "ps_model_usage: would delete 2 row(s) created before 2026-06-02T22:00:00.000Z\nps_external_api_usage: would delete 0 row(s) created before 2026-06-02T22:00:00.000Z\nDry run: nothing was deleted.\n",
    );
    const done = JSON.parse((await runCli(["prune", "--before", "2026-06-03T00:00:00Z", "--json", "--db", target.arg])).stdout);
    expect(done).toMatchObject({ dryRun: false, modelUsage: { deleted: 2 }, before: "2026-06-03T00:00:00.000Z" });
    const missing = await runCli(["prune", "--db", target.arg]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("--before");
  } finally {
    await target.drop();
  }
}, 120_000);
