// PGlite runs one transaction at a time. A write that finds one running in the same process (here
// an interactive transaction on db.prisma, the public client) waits for it at most writeTimeoutMs,
// then fails with a DatabaseTimeoutError and writes nothing; the Database works afterwards.
import {
  DatabaseTimeoutError,
  forUser,
  listBudgets,
  listExternalApiPrices,
  listModelPrices,
  recordModelUsage,
  recordModelUsageBatch,
  setBudget,
  setExternalApiPrice,
  setModelPrice,
  syncPricesFromConfiguration,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { settlesWithin } from "./support/settles";
import { backend, openTestDatabase, type TestDatabase } from "./support/testDatabase";

// On PostgreSQL the transaction holds one pooled connection and the writes take others
// (tests/boundedWaits.pg covers the pool's own wait): this is PGlite's.
const pgliteTest = backend === "pglite" ? test : test.skip;

let t: TestDatabase;
let modelId: number;

beforeAll(async () => {
  t = await openTestDatabase({ writeTimeoutMs: 300 });
  modelId = await createModel(t.db);
});
afterAll(() => t?.dispose());

/** Holds an interactive transaction open until `release` is called. */
async function holdTransaction(): Promise<{ release(): void; done: Promise<unknown> }> {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const done = t.db.prisma.$transaction(
    async (tx) => {
      await tx.$queryRaw`SELECT 1`;
      started();
      await held;
    },
    { timeout: 60_000 },
  );
  await running;
  return { release, done };
}

/**
 * Each of `calls` fails within 10 s (a hang, not slowness: before, each waited until the
 * transaction ended, never here, or for Prisma's own maxWait) with the wait's DatabaseTimeoutError.
 */
async function expectEachTimedOut(calls: Record<string, Promise<unknown>>): Promise<void> {
  const settled = await Promise.all(Object.entries(calls).map(async ([name, call]) => [name, (await settlesWithin(call, 10_000)).error] as const));
  for (const [name, error] of settled) {
    expect([name, error]).toEqual([name, expect.any(DatabaseTimeoutError)]);
    expect(error).toMatchObject({ phase: "connect", code: "PS_USAGE_TIMEOUT" });
    expect((error as Error).message).toContain("writeTimeoutMs (300 ms)");
    expect((error as Error).message).toContain("nothing was written");
  }
}

pgliteTest("batches and records waiting behind a running transaction fail after writeTimeoutMs with nothing written", async () => {
  const event = (tokens: number) => ({ userId: 1, modelId, tokenInCount: tokens });
  // A Database in use: what the first write reads once (the foreign keys, through db.prisma) is read.
  await recordModelUsage(t.db, event(0));
  const holder = await holdTransaction();
  const calls = {
    batch: recordModelUsageBatch(t.db, [event(1), event(2)]),
    keyedBatch: recordModelUsageBatch(t.db, [event(3)], { idempotencyKey: "wait-1" }),
    oneEventBatch: recordModelUsageBatch(t.db, [event(4)]),
    record: recordModelUsage(t.db, event(5)),
  };
  // 10 s: a hang, not slowness (before, each waited until the transaction ended: never, here).
  await expectEachTimedOut(calls);
  holder.release();
  await holder.done;
  expect(await t.db.prisma.psModelUsage.count()).toBe(1);
  // The key was not taken, and the same Database writes again.
  expect(await recordModelUsageBatch(t.db, [event(3)], { idempotencyKey: "wait-1" })).toMatchObject({ count: 1 });
  expect(await recordModelUsageBatch(t.db, [event(1), event(2)])).toMatchObject({ count: 2 });
  expect(await t.db.prisma.psModelUsage.count()).toBe(4);
});

pgliteTest("records that run in a Prisma transaction (a reference check, enforceBudgets) fail after writeTimeoutMs too, nothing written", async () => {
  const agentId = await createAgent(t.db); // user 1's
  const event = (tokens: number) => ({ userId: 1, modelId, tokenInCount: tokens });
  // In use already, as above (the view's first record reads the foreign keys through db.prisma).
  await forUser(t.db, 1).recordModelUsage({ modelId, agentId, tokenInCount: 0 });
  const before = await t.db.prisma.psModelUsage.count();
  const holder = await holdTransaction();
  const calls = {
    // A view's record naming an agent checks the agent's owner in the insert's transaction.
    checkedRecord: forUser(t.db, 1).recordModelUsage({ modelId, agentId, tokenInCount: 6 }),
    guardedRecord: recordModelUsage(t.db, event(7), { enforceBudgets: true }),
    guardedBatch: recordModelUsageBatch(t.db, [event(8), event(9)], { enforceBudgets: true }),
  };
  // 10 s: before, each waited for Prisma's maxWait (a minute), then failed with Prisma's P2028.
  await expectEachTimedOut(calls);
  holder.release();
  await holder.done;
  expect(await t.db.prisma.psModelUsage.count()).toBe(before);
  // The same Database writes them once the transaction has ended.
  await forUser(t.db, 1).recordModelUsage({ modelId, agentId, tokenInCount: 6 });
  await recordModelUsage(t.db, event(7), { enforceBudgets: true });
  await recordModelUsageBatch(t.db, [event(8), event(9)], { enforceBudgets: true });
  expect(await t.db.prisma.psModelUsage.count()).toBe(before + 4);
});

pgliteTest("price and budget writes (Prisma transactions too) fail after writeTimeoutMs behind a running transaction, nothing written", async () => {
  const apiId = await createExternalApi(t.db);
  const price = { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "2" };
  const budget = { name: "wait-budget", scope: {}, period: "day" as const, amount: "5", currency: "USD" };
  const before = { models: await listModelPrices(t.db), apis: await listExternalApiPrices(t.db), budgets: await listBudgets(t.db) };
  const holder = await holdTransaction();
  const calls = {
    modelPrice: setModelPrice(t.db, modelId, price),
    apiPrice: setExternalApiPrice(t.db, apiId, { unitType: "search", pricePerUnit: "0.005", currency: "USD" }),
    sync: syncPricesFromConfiguration(t.db),
    budget: setBudget(t.db, budget),
  };
  // 10 s: before, each waited Prisma's default maxWait (2 s), then failed with Prisma's raw P2028.
  await expectEachTimedOut(calls);
  holder.release();
  await holder.done;
  expect({ models: await listModelPrices(t.db), apis: await listExternalApiPrices(t.db), budgets: await listBudgets(t.db) }).toEqual(before);
  // Once the transaction has ended they write.
  await setModelPrice(t.db, modelId, price);
  await setBudget(t.db, budget);
  expect((await listModelPrices(t.db, { modelId })).length).toBe(before.models.filter((p) => p.modelId === modelId).length + 1);
  expect((await listBudgets(t.db)).map((b) => b.name)).toContain("wait-budget");
});
