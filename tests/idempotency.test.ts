// Exactly once under retries: the same idempotency key records once and returns the first row,
// also between concurrent callers (real concurrency on PostgreSQL: several pool connections).
import {
  UnknownReferenceError,
  UsageValidationError,
  recordExternalApiUsage,
  recordModelCall,
  recordModelUsage,
} from "../src";
import { createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let modelId: number;
let apiId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db);
  apiId = await createExternalApi(t.db);
});
afterAll(() => t.dispose());

const counts = async () => ({
  model: await t.db.prisma.psModelUsage.count(),
  api: await t.db.prisma.psExternalApiUsage.count(),
  keys: await t.db.prisma.psUsageIdempotencyKey.count(),
});

test("the same key twice records once and returns the first row, even with other values", async () => {
  const before = await counts();
  const first = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 100 }, { idempotencyKey: "retry-1" });
  const retry = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 100 }, { idempotencyKey: "retry-1" });
  const changed = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 999 }, { idempotencyKey: "retry-1" });
  expect(retry).toEqual(first);
  expect(changed).toEqual(first);
  expect(await counts()).toEqual({ ...before, model: before.model + 1, keys: before.keys + 1 });
  const key = await t.db.prisma.psUsageIdempotencyKey.findUniqueOrThrow({ where: { key: "retry-1" } });
  expect(key).toMatchObject({ modelUsageId: first.id, externalApiUsageId: null });
});

test("different keys record different rows; no key records every time", async () => {
  const a = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 1 }, { idempotencyKey: "k-a" });
  const b = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 1 }, { idempotencyKey: "k-b" });
  const c = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 1 });
  const d = await recordModelUsage(t.db, { userId: 4, modelId, tokenInCount: 1 });
  expect(new Set([a.id, b.id, c.id, d.id]).size).toBe(4);
});

test("concurrent callers with one key: one row, every caller gets it", async () => {
  const before = await counts();
  const calls = Array.from({ length: 8 }, () =>
    recordModelUsage(t.db, { userId: 6, modelId, tokenOutCount: 42 }, { idempotencyKey: "concurrent-model" }),
  );
  const rows = await Promise.all(calls);
  expect(new Set(rows.map((r) => r.id)).size).toBe(1);
  for (const row of rows) expect(row).toEqual(rows[0]);
  expect(await counts()).toEqual({ ...before, model: before.model + 1, keys: before.keys + 1 });
});

test("concurrent external API callers with one key: one row", async () => {
  const before = await counts();
  const rows = await Promise.all(
    Array.from({ length: 8 }, () => recordExternalApiUsage(t.db, { userId: 6, externalApiId: apiId, callCount: 3 }, { idempotencyKey: "concurrent-api" })),
  );
  expect(new Set(rows.map((r) => r.id)).size).toBe(1);
  expect(await counts()).toEqual({ ...before, api: before.api + 1, keys: before.keys + 1 });
});

test("many keys at once, each sent three times concurrently: one row per key", async () => {
  const before = await counts();
  const calls = [];
  for (let k = 0; k < 20; k++) {
    for (let copy = 0; copy < 3; copy++) {
      calls.push(recordModelUsage(t.db, { userId: 6, modelId, tokenInCount: k }, { idempotencyKey: `bulk-${k}` }));
    }
  }
  const rows = await Promise.all(calls);
  expect(new Set(rows.map((r) => r.id)).size).toBe(20);
  expect(await counts()).toEqual({ ...before, model: before.model + 20, keys: before.keys + 20 });
});

test("a key used for model usage cannot record external API usage, and the other way round", async () => {
  await recordModelUsage(t.db, { userId: 4, modelId }, { idempotencyKey: "shared-key" });
  await recordExternalApiUsage(t.db, { userId: 4, externalApiId: apiId, callCount: 1 }, { idempotencyKey: "api-key" });
  const before = await counts();
  const a = await recordExternalApiUsage(t.db, { userId: 4, externalApiId: apiId, callCount: 1 }, { idempotencyKey: "shared-key" }).catch((e: unknown) => e);
  expect(a).toBeInstanceOf(UsageValidationError);
  expect((a as UsageValidationError).issues).toEqual([{ field: "options.idempotencyKey", reason: "was already used to record model usage" }]);
  const b = await recordModelUsage(t.db, { userId: 4, modelId }, { idempotencyKey: "api-key" }).catch((e: unknown) => e);
  expect((b as UsageValidationError).issues).toEqual([{ field: "options.idempotencyKey", reason: "was already used to record external API usage" }]);
  expect(await counts()).toEqual(before);
});

test("a key used by another user is rejected, not answered with that user's row", async () => {
  await recordModelUsage(t.db, { userId: 100, modelId, tokenInCount: 5 }, { idempotencyKey: "user-100-call" });
  const before = await counts();
  const error = await recordModelUsage(t.db, { userId: 200, modelId }, { idempotencyKey: "user-100-call" }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(UsageValidationError);
  expect((error as UsageValidationError).issues).toEqual([{ field: "options.idempotencyKey", reason: "was already used by another user" }]);
  expect(await counts()).toEqual(before);
});

test("a keyed record with a missing reference writes neither the row nor the key, and the key stays free", async () => {
  const before = await counts();
  const error = await recordModelUsage(t.db, { userId: 4, modelId, agentId: 777_777 }, { idempotencyKey: "fails-first" }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(UnknownReferenceError);
  expect(error).toMatchObject({ table: "ps_agents", id: 777_777 });
  expect(await counts()).toEqual(before);
  const row = await recordModelUsage(t.db, { userId: 4, modelId }, { idempotencyKey: "fails-first" });
  expect(row.agentId).toBeNull();
});

test("keys are data: SQL text and any Unicode are stored as given", async () => {
  const key = "'); DROP TABLE ps_model_usage; -- ✓ 🔑";
  const first = await recordModelCall(t.db, { userId: 4, modelId, inputTokens: 3, outputTokens: 4 }, { idempotencyKey: key });
  const again = await recordModelCall(t.db, { userId: 4, modelId, inputTokens: 3, outputTokens: 4 }, { idempotencyKey: key });
  expect(again.id).toBe(first.id);
  expect(await t.db.prisma.psUsageIdempotencyKey.findUnique({ where: { key } })).not.toBeNull();
  const bad = await recordModelUsage(t.db, { userId: 4, modelId }, { idempotencyKey: "a\u0000b" }).catch((e: unknown) => e);
  expect((bad as UsageValidationError).issues).toEqual([{ field: "options.idempotencyKey", reason: "must not contain the NUL character" }]);
  const lone = await recordModelUsage(t.db, { userId: 4, modelId }, { idempotencyKey: "x\uD800" }).catch((e: unknown) => e);
  expect((lone as UsageValidationError).issues[0].reason).toMatch(/lone surrogate/);
});
