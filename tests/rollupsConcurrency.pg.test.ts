// Concurrent writers on PostgreSQL: batches whose rows hit the same rollup rows in opposite
// orders, single records and PolicySynth-style increments, all at once. No deadlock, no lost
// increment: afterwards the rollups equal the ledger, slot by slot.
import { Client } from "pg";
import { openDatabase, rebuildRollups, recordModelUsage, recordModelUsageBatch, sumModelUsage, type Database, type ModelUsageInput } from "../src";
import { createAgent, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
const extra: Database[] = [];

beforeAll(async () => {
  t = await openTestDatabase();
  for (let i = 0; i < 3; i++) extra.push(await openDatabase({ url: t.url!, poolSize: 6 }));
});
afterAll(async () => {
  for (const db of extra) await db.close();
  await t.dispose();
});

test("many writers at once over the same slots and keys: no deadlock, no lost increment", async () => {
  const models = [await createModel(t.db, "a"), await createModel(t.db, "b"), await createModel(t.db, "c")];
  const agents = [await createAgent(t.db), await createAgent(t.db), await createAgent(t.db)];
  const base = Date.UTC(2026, 10, 1, 12);
  // Every batch covers the same 3 slots x 3 models x 3 agents, in its own order.
  const batch = (seed: number): ModelUsageInput[] => {
    const rows: ModelUsageInput[] = [];
    for (let i = 0; i < 90; i++) {
      const k = (i * (seed % 2 === 0 ? 7 : 11) + seed) % 27;
      rows.push({ userId: 1, modelId: models[k % 3], agentId: agents[Math.floor(k / 3) % 3], createdAt: new Date(base + Math.floor(k / 9) * 900_000 + seed), tokenInCount: 1 + (k % 5), tokenOutCount: seed });
    }
    return seed % 2 === 0 ? rows : rows.reverse();
  };
  const [{ id: running }] = await t.db.prisma.$queryRaw<{ id: number }[]>`
    INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, created_at, updated_at)
    VALUES (1, ${models[0]}, ${agents[0]}, 0, ${new Date(base + 60_000)}::timestamptz, now()) RETURNING id`;
  const increment = async (n: number) => {
    // PolicySynth's Sequelize `increment`: one UPDATE of the running row per call.
    const client = new Client({ connectionString: t.url });
    await client.connect();
    try {
      for (let i = 0; i < n; i++) await client.query("UPDATE ps_model_usage SET token_in_count = token_in_count + 3, updated_at = now() WHERE id = $1", [running]);
    } finally {
      await client.end();
    }
  };
  const writers: Promise<unknown>[] = [];
  const dbs = [t.db, ...extra];
  for (let w = 0; w < 24; w++) writers.push(recordModelUsageBatch(dbs[w % dbs.length], batch(w)));
  for (let w = 0; w < 60; w++) {
    writers.push(recordModelUsage(dbs[w % dbs.length], { userId: 2, modelId: models[w % 3], agentId: agents[(w + 1) % 3], createdAt: new Date(base + (w % 3) * 900_000 + w), tokenInCount: 10 }));
  }
  writers.push(increment(40), increment(40));
  const results = await Promise.allSettled(writers);
  expect(results.filter((r) => r.status === "rejected")).toEqual([]);

  const check = await rebuildRollups(t.db, { dryRun: true });
  expect([check.modelUsage.differences, check.externalApiUsage.differences]).toEqual([0, 0]);
  const [total] = await sumModelUsage(t.db);
  expect(total.events).toBe(BigInt(24 * 90 + 60 + 1));
  const expectedIn = Array.from({ length: 24 }, (_, w) => batch(w).reduce((s, r) => s + (r.tokenInCount ?? 0), 0)).reduce((a, b) => a + b, 0) + 60 * 10 + 80 * 3;
  expect(total.tokenInCount).toBe(BigInt(expectedIn));
  expect(await sumModelUsage(t.db, { groupBy: ["agentId", "modelId"], bucket: "hour" })).toEqual(
    await sumModelUsage(t.db, { groupBy: ["agentId", "modelId"], bucket: "hour", rollups: false }),
  );
}, 120_000);
