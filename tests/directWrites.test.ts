// Single records and batches are sent to the driver directly (not through Prisma's client): the
// server's errors must still become the same typed errors, the returned record must be the same
// DTO that a find returns, and a batch chunk that leaves out arrays none of its items fills must
// still store every value, on both backends.
import {
  DatabaseNotMigratedError,
  UnknownReferenceError,
  findExternalApiUsage,
  findModelUsage,
  recordExternalApiUsage,
  recordModelUsage,
  recordModelUsageBatch,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let modelId: number;
let apiId: number;
let agentId: number;
let connectorId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db);
  apiId = await createExternalApi(t.db);
  agentId = await createAgent(t.db);
  connectorId = await createConnector(t.db);
});
afterAll(() => t.dispose());

const counts = async () => ({
  model: await t.db.prisma.psModelUsage.count(),
  api: await t.db.prisma.psExternalApiUsage.count(),
  keys: await t.db.prisma.psUsageIdempotencyKey.count(),
});

test("the record returned is the row a find returns: same fields, numbers, dates and nulls", async () => {
  const at = new Date("2026-03-04T05:06:07.089Z");
  const model = await recordModelUsage(t.db, { userId: 9, modelId, agentId, tokenInCount: 12, webSearchCount: 2, serviceTier: "flex", createdAt: at });
  const keyed = await recordModelUsage(t.db, { userId: 9, modelId, connectorId, tokenOutCount: 3, regionalProcessing: "eu" }, { idempotencyKey: "dto-model" });
  const api = await recordExternalApiUsage(t.db, { userId: 9, externalApiId: apiId, callCount: 4, createdAt: at });
  const apiKeyed = await recordExternalApiUsage(t.db, { userId: 9, externalApiId: apiId, agentId, callCount: 1 }, { idempotencyKey: "dto-api" });
  const models = (await findModelUsage(t.db.primary, { userId: 9 }, { order: "oldest" })).items;
  const apis = (await findExternalApiUsage(t.db.primary, { userId: 9 }, { order: "oldest" })).items;
  expect(models.find((r) => r.id === model.id)).toEqual(model);
  expect(models.find((r) => r.id === keyed.id)).toEqual(keyed);
  expect(apis.find((r) => r.id === api.id)).toEqual(api);
  expect(apis.find((r) => r.id === apiKeyed.id)).toEqual(apiKeyed);
  expect(model).toMatchObject({ createdAt: at, updatedAt: at, agentId, connectorId: null, tokenInCount: 12, tokenOutCount: 0, webSearchCount: 2, serviceTier: "flex", regionalProcessing: null });
  expect(keyed.createdAt).toBeInstanceOf(Date);
  expect(keyed.updatedAt).toEqual(keyed.createdAt);
  expect(Object.keys(keyed).sort()).toEqual(Object.keys(model).sort());
  expect(apiKeyed).toEqual({ id: apiKeyed.id, userId: 9, externalApiId: apiId, callCount: 1, agentId, connectorId: null, createdAt: apiKeyed.createdAt, updatedAt: apiKeyed.createdAt });
  expect(typeof apiKeyed.id).toBe("number");
  // A replay returns the stored row, equal to the first call's.
  expect(await recordModelUsage(t.db, { userId: 9, modelId }, { idempotencyKey: "dto-model" })).toEqual(keyed);
  expect(await recordExternalApiUsage(t.db, { userId: 9, externalApiId: apiId, callCount: 1 }, { idempotencyKey: "dto-api" })).toEqual(apiKeyed);
});

test.each([
  ["model", () => recordModelUsage(t.db, { userId: 9, modelId: 987_654 }), "ps_ai_models", 987_654],
  ["model, keyed", () => recordModelUsage(t.db, { userId: 9, modelId: 987_654 }, { idempotencyKey: "unknown-model" }), "ps_ai_models", 987_654],
  ["connector", () => recordModelUsage(t.db, { userId: 9, modelId, connectorId: 876_543 }), "ps_agent_connectors", 876_543],
  ["external API", () => recordExternalApiUsage(t.db, { userId: 9, externalApiId: 765_432, callCount: 1 }), "ps_external_apis", 765_432],
  ["external API, keyed", () => recordExternalApiUsage(t.db, { userId: 9, externalApiId: 765_432, callCount: 1 }, { idempotencyKey: "unknown-api" }), "ps_external_apis", 765_432],
  ["agent of an external API record, keyed", () => recordExternalApiUsage(t.db, { userId: 9, externalApiId: apiId, agentId: 654_321, callCount: 1 }, { idempotencyKey: "unknown-agent" }), "ps_agents", 654_321],
])("an unknown %s is an UnknownReferenceError naming the table and id; nothing written", async (_, record, table, id) => {
  const before = await counts();
  const error = await record().catch((e: unknown) => e);
  expect(error).toBeInstanceOf(UnknownReferenceError);
  expect(error).toMatchObject({ table, id });
  expect(await counts()).toEqual(before);
});

test("a usage table missing a column is DatabaseNotMigratedError naming it, keyed or not", async () => {
  const other = await openTestDatabase();
  try {
    const model = await createModel(other.db);
    const api = await createExternalApi(other.db);
    await other.db.driver.exec("ALTER TABLE ps_model_usage DROP COLUMN regional_processing; ALTER TABLE ps_external_api_usage DROP COLUMN call_count");
    for (const record of [
      () => recordModelUsage(other.db, { userId: 1, modelId: model }),
      () => recordModelUsage(other.db, { userId: 1, modelId: model }, { idempotencyKey: "no-column" }),
      () => recordExternalApiUsage(other.db, { userId: 1, externalApiId: api, callCount: 1 }),
      () => recordExternalApiUsage(other.db, { userId: 1, externalApiId: api, callCount: 1 }, { idempotencyKey: "no-column-api" }),
    ]) {
      const error = await record().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseNotMigratedError);
      expect((error as Error).message).toMatch(/column (regional_processing|call_count)( of relation ps_\w+)? does not exist/);
    }
    expect(await other.db.prisma.psUsageIdempotencyKey.count()).toBe(0);
  } finally {
    await other.dispose();
  }
});

test("a batch stores web search counts, tiers and regions in the chunks that have them, defaults in the others", async () => {
  const at = new Date("2026-05-01T00:00:00.000Z");
  const items = [
    { userId: 21, modelId, tokenInCount: 1, createdAt: at },
    { userId: 21, modelId, tokenInCount: 2, webSearchCount: 3, createdAt: at },
    { userId: 21, modelId, tokenInCount: 3, createdAt: at },
    { userId: 21, modelId, tokenInCount: 4, createdAt: at },
    { userId: 21, modelId, tokenInCount: 5, serviceTier: "flex" as const, createdAt: at },
    { userId: 21, modelId, tokenInCount: 6, regionalProcessing: "eu", createdAt: at },
    { userId: 21, modelId, tokenInCount: 7, webSearchCount: 0, serviceTier: "standard" as const },
  ];
  const { ids } = await recordModelUsageBatch(t.db, items, { chunkSize: 2, returnIds: true });
  const found = new Map((await findModelUsage(t.db.primary, { userId: 21 }, { limit: 100 })).items.map((r) => [r.id, r]));
  const stored = ids!.map((id) => found.get(id)!);
  expect(stored.map((r) => [r.tokenInCount, r.webSearchCount, r.serviceTier, r.regionalProcessing])).toEqual([
    [1, 0, null, null],
    [2, 3, null, null],
    [3, 0, null, null],
    [4, 0, null, null],
    [5, 0, "flex", null],
    [6, 0, null, "eu"],
    [7, 0, null, null],
  ]);
  for (const row of stored.slice(0, 6)) expect([row.createdAt, row.updatedAt]).toEqual([at, at]);
  expect(stored[6].updatedAt).toEqual(stored[6].createdAt);
});
