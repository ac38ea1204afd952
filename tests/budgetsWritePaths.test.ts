/**
 * Budgets behave the same on every write path: single records, batches of either table, provider
 * records and batches, NDJSON imports. Thresholds fire after each; `enforceBudgets` refuses a
 * batch whole (nothing written) when it would take a hard limit past its amount.
 */
import { Readable } from "node:stream";
import {
  BudgetExceededError,
  InputLineError,
  budgetChecksSettled,
  budgetStatus,
  forUser,
  openDatabase,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  recordNdjson,
  recordProviderUsage,
  recordProviderUsageBatch,
  setBudget,
  setExternalApiPrice,
  setModelPrice,
  type BudgetAlert,
  type Database,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { issuesOf } from "./support/errors";
import { backend, createScratchDatabase } from "./support/testDatabase";

const JAN = new Date("2025-01-01T00:00:00Z");
/** 1 USD per million input tokens: tokenInCount is micro-dollars. */
const USD = (dollars: number) => dollars * 1_000_000;

let db: Database;
let drop: () => Promise<void> = async () => undefined;
let model: number;
let freeModel: number;
let api: number;
const seen: BudgetAlert[] = [];
/** Each test has users of its own, so budgets on a user do not see other tests' usage. */
let nextUser = 1000;

beforeAll(async () => {
  const onBudgetAlert = (a: BudgetAlert) => void seen.push(a);
  if (backend === "pglite") {
    db = await openDatabase({ dataDir: "memory://", migrate: true, onBudgetAlert });
  } else {
    const scratch = await createScratchDatabase();
    db = await openDatabase({ url: scratch.url, migrate: true, onBudgetAlert });
    drop = scratch.drop;
  }
  model = await createModel(db, "usd");
  freeModel = await createModel(db, "free");
  api = await createExternalApi(db);
  await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
  await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: "0.25", currency: "USD" }, JAN);
});
afterAll(async () => {
  await db.close();
  await drop();
});

async function rows(userId: number): Promise<number> {
  return (await db.prisma.psModelUsage.count({ where: { userId } })) + (await db.prisma.psExternalApiUsage.count({ where: { userId } }));
}

/** A budget of 1 USD per month on a fresh user, alerting at 50 %. */
async function budgetFor(name: string, hardLimit = false): Promise<number> {
  const userId = nextUser++;
  await setBudget(db, { name, scope: { userId }, period: "month", amount: "1", currency: "USD", thresholds: [0.5], hardLimit });
  return userId;
}

const at = new Date("2025-03-10T10:00:00Z");
const alertsOf = (name: string) => seen.filter((a) => a.budgetName === name).map((a) => [a.threshold, a.spent]);

describe("thresholds fire after every write path", () => {
  test("recordExternalApiUsageBatch", async () => {
    const userId = await budgetFor("api-batch");
    await recordExternalApiUsageBatch(db, [{ userId, externalApiId: api, callCount: 3, createdAt: at }]);
    await budgetChecksSettled(db);
    expect(alertsOf("api-batch")).toEqual([["0.5", "0.75"]]);
  });

  test("recordProviderUsage and recordProviderUsageBatch", async () => {
    const userId = await budgetFor("provider-batch");
    await recordProviderUsageBatch(db, [{ provider: "openai", usage: { prompt_tokens: USD(0.3), completion_tokens: 0 }, userId, modelId: model, createdAt: at }]);
    await budgetChecksSettled(db);
    expect(alertsOf("provider-batch")).toEqual([]);
    const single = await budgetFor("provider-single");
    await recordProviderUsage(db, { provider: "openai", usage: { prompt_tokens: USD(0.6), completion_tokens: 0 }, userId: single, modelId: model, createdAt: at });
    await recordProviderUsageBatch(db, [{ provider: "openai", usage: { prompt_tokens: USD(0.3), completion_tokens: 0 }, userId, modelId: model, createdAt: at }]);
    await budgetChecksSettled(db);
    expect(alertsOf("provider-single")).toEqual([["0.5", "0.6"]]);
    expect(alertsOf("provider-batch")).toEqual([["0.5", "0.6"]]);
  });

  test("recordNdjson (both kinds in one batch)", async () => {
    const userId = await budgetFor("ndjson");
    const lines = [
      JSON.stringify({ userId, modelId: model, tokenInCount: USD(0.2), createdAt: at.toISOString() }),
      JSON.stringify({ userId, externalApiId: api, callCount: 2, createdAt: at.toISOString() }),
    ];
    await recordNdjson(db, Readable.from([lines.join("\n")]));
    await budgetChecksSettled(db);
    expect(alertsOf("ndjson")).toEqual([["0.5", "0.7"]]);
  });
});

describe("enforceBudgets on batches: all or nothing", () => {
  test("recordModelUsageBatch: a batch that would cross the limit is refused whole; one that fits passes and raises its alerts", async () => {
    const userId = await budgetFor("model-batch", true);
    const refused = await recordModelUsageBatch(
      db,
      [
        { userId, modelId: model, tokenInCount: USD(0.6), createdAt: at },
        { userId, modelId: model, tokenInCount: USD(0.6), createdAt: at },
      ],
      { enforceBudgets: true },
    ).catch((e) => e);
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({ reason: "limit", budgetName: "model-batch", spent: "1.2", amount: "1" });
    expect(await rows(userId)).toBe(0);
    // Up to the limit exactly: written, and its 50 % alert delivered by the call itself.
    const ok = await recordModelUsageBatch(
      db,
      [
        { userId, modelId: model, tokenInCount: USD(0.6), createdAt: at },
        { userId, modelId: model, tokenInCount: USD(0.4) }, // now: another month, counted there
      ],
      { enforceBudgets: true, returnIds: true },
    );
    expect(ok.count).toBe(2);
    expect(alertsOf("model-batch")).toEqual([["0.5", "0.6"]]);
    const next = await recordModelUsageBatch(db, [{ userId, modelId: model, tokenInCount: USD(0.5), createdAt: at }], { enforceBudgets: true }).catch((e) => e);
    expect(next).toMatchObject({ reason: "limit", spent: "1.1" });
    // Unguarded: written past the limit.
    await recordModelUsageBatch(db, [{ userId, modelId: model, tokenInCount: USD(0.5), createdAt: at }]);
    expect((await budgetStatus(db, "model-batch", { at })).spent).toBe("1.1");
    expect(await rows(userId)).toBe(3);
  });

  test("recordExternalApiUsageBatch, an agent's tree, a key that is not kept when refused, unpriced usage", async () => {
    const root = await createAgent(db);
    const sub = await createAgent(db, root);
    const userId = nextUser++;
    await setBudget(db, { name: "tree-batch", scope: { agentId: root }, period: "day", amount: "1", currency: "USD", hardLimit: true });
    const refused = await recordExternalApiUsageBatch(db, [{ userId, externalApiId: api, agentId: sub, callCount: 5, createdAt: at }], { enforceBudgets: true, idempotencyKey: "tb-1" }).catch((e) => e);
    expect(refused).toMatchObject({ reason: "limit", budgetName: "tree-batch", spent: "1.25" });
    expect(await rows(userId)).toBe(0);
    expect(await db.prisma.psUsageIdempotencyKey.count({ where: { key: "tb-1" } })).toBe(0);
    const unpriced = await recordModelUsageBatch(
      db,
      [
        { userId, modelId: model, agentId: sub, tokenInCount: 1, createdAt: at },
        { userId, modelId: freeModel, agentId: sub, tokenInCount: 1, createdAt: at },
      ],
      { enforceBudgets: true },
    ).catch((e) => e);
    expect(unpriced).toMatchObject({ reason: "unpriced", budgetName: "tree-batch" });
    expect(await rows(userId)).toBe(0);
    expect(await recordExternalApiUsageBatch(db, [{ userId, externalApiId: api, agentId: sub, callCount: 4, createdAt: at }], { enforceBudgets: true, idempotencyKey: "tb-1" })).toEqual({ count: 1 });
    // The replay writes nothing and is not refused.
    expect(await recordExternalApiUsageBatch(db, [{ userId, externalApiId: api, agentId: sub, callCount: 4, createdAt: at }], { enforceBudgets: true, idempotencyKey: "tb-1" })).toEqual({
      count: 0,
      replayed: true,
    });
    // Outside the tree: nothing to say.
    await recordModelUsageBatch(db, [{ userId, modelId: freeModel, tokenInCount: 1, createdAt: at }], { enforceBudgets: true });
    expect(await rows(userId)).toBe(2);
  });

  test("recordProviderUsage and recordProviderUsageBatch take enforceBudgets", async () => {
    const userId = await budgetFor("provider-cap", true);
    const call = (tokens: number) => ({ provider: "openai" as const, usage: { prompt_tokens: tokens, completion_tokens: 0 }, userId, modelId: model, createdAt: at });
    await expect(recordProviderUsage(db, call(USD(1.5)), { enforceBudgets: true })).rejects.toMatchObject({ reason: "limit", spent: "1.5" });
    await expect(recordProviderUsageBatch(db, [call(USD(0.5)), call(USD(0.6))], { enforceBudgets: true })).rejects.toMatchObject({ reason: "limit", spent: "1.1" });
    expect(await rows(userId)).toBe(0);
    await recordProviderUsage(db, call(USD(0.5)), { enforceBudgets: true });
    await recordProviderUsageBatch(db, [call(USD(0.25)), call(USD(0.25))], { enforceBudgets: true });
    await expect(recordProviderUsage(db, call(1), { enforceBudgets: true })).rejects.toThrow(BudgetExceededError);
    expect(await rows(userId)).toBe(3);
    expect(await issuesOf(recordProviderUsageBatch(db, [call(1)], { enforceBudgets: "yes" as never }))).toEqual([
      { field: "options.enforceBudgets", reason: 'must be a boolean, got string "yes"' },
    ]);
  });

  test("recordNdjson with enforceBudgets: the batch past the limit is refused whole, the ones before stay", async () => {
    const userId = await budgetFor("ndjson-cap", true);
    const line = (tokens: number) => JSON.stringify({ userId, modelId: model, tokenInCount: tokens, createdAt: at.toISOString() });
    const input = [line(USD(0.3)), line(USD(0.3)), line(USD(0.3)), line(USD(0.3))].join("\n");
    const failure = await recordNdjson(db, Readable.from([input]), { batchSize: 2, enforceBudgets: true }).catch((e) => e);
    expect(failure).toBeInstanceOf(BudgetExceededError);
    expect(failure).toMatchObject({ reason: "limit", spent: "1.2" });
    expect(failure).not.toBeInstanceOf(InputLineError);
    expect(await rows(userId)).toBe(2);
    // Without the guard the same input is recorded.
    await recordNdjson(db, Readable.from([input]), { batchSize: 2 });
    expect(await rows(userId)).toBe(6);
  });

  test("a forUser view's batch is guarded too", async () => {
    const userId = await budgetFor("view-cap", true);
    const view = forUser(db, userId);
    await expect(view.recordModelUsageBatch([{ userId, modelId: model, tokenInCount: USD(2), createdAt: at }], { enforceBudgets: true })).rejects.toThrow(BudgetExceededError);
    expect(await rows(userId)).toBe(0);
  });
});
