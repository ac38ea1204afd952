// Recording what providers return (issue 13): the provider's own usage object in, the ledger's
// counters out, the tier and web searches stored with the row, PolicySynth's usage item beside
// it on request, and reports that read either the ledger or the items, never both.
import {
  findModelUsage,
  recordProviderUsage,
  recordProviderUsageBatch,
  setModelPrice,
  sumModelUsage,
  costReport,
  UsageValidationError,
  UnknownReferenceError,
  type Database,
  type ProviderUsageCall,
} from "../src";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let db: Database;
let modelId: number;
let agentId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  db = t.db;
  modelId = (await db.prisma.psAiModel.create({ data: { userId: 1, name: "provider-test" } })).id;
  agentId = (await db.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1 } })).id;
  // The price period in force gives the long-context threshold.
  await setModelPrice(db, modelId, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 2, longContextTokenThreshold: 200_000 }, new Date("2026-01-01T00:00:00Z"));
});
afterAll(async () => {
  await t.dispose();
});

const at = new Date("2026-06-01T12:00:00Z");
const count = async (table: "psModelUsage" | "psModelUsageItem") => (table === "psModelUsage" ? db.prisma.psModelUsage.count() : db.prisma.psModelUsageItem.count());

test("OpenAI Chat Completions: cached input and reasoning split off, the applied flex tier stored", async () => {
  // The prompt caching guide's numbers (2006 prompt tokens, 1920 of them cached) with reasoning.
  const usage = {
    prompt_tokens: 2006,
    completion_tokens: 300,
    total_tokens: 2306,
    prompt_tokens_details: { cached_tokens: 1920, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 256, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
  const { usage: row, itemId } = await recordProviderUsage(db, { provider: "openai", usage, serviceTier: "flex", userId: 1, modelId, agentId, createdAt: at });
  expect(itemId).toBeNull();
  const [found] = (await findModelUsage(db, { modelId, from: at, to: new Date(at.getTime() + 1) })).items;
  expect(found.id).toBe(row.id);
  expect({
    tokenInCount: found.tokenInCount,
    tokenInCachedContextCount: found.tokenInCachedContextCount,
    tokenOutCount: found.tokenOutCount,
    tokenOutReasoningCount: found.tokenOutReasoningCount,
    serviceTier: found.serviceTier,
    webSearchCount: found.webSearchCount,
  }).toEqual({ tokenInCount: 86, tokenInCachedContextCount: 1920, tokenOutCount: 44, tokenOutReasoningCount: 256, serviceTier: "flex", webSearchCount: 0 });
});

test("Anthropic: cache writes and reads apart from input, web searches counted, priority priced as fast", async () => {
  const usage = {
    input_tokens: 105,
    cache_creation_input_tokens: 1500,
    cache_read_input_tokens: 2000,
    cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 500 },
    output_tokens: 510,
    server_tool_use: { web_search_requests: 3 },
    service_tier: "priority",
    some_future_field: { kept: true },
  };
  const { usage: row, itemId } = await recordProviderUsage(db, { provider: "anthropic", usage, userId: 1, modelId, agentId, createdAt: at }, { item: true });
  expect(row).toMatchObject({ tokenInCount: 105, tokenInCacheWriteCount: 1500, tokenInCachedContextCount: 2000, tokenOutCount: 510, webSearchCount: 3, serviceTier: "fast" });
  const item = await db.prisma.psModelUsageItem.findUniqueOrThrow({ where: { id: itemId! } });
  expect({ userId: item.userId, modelId: item.modelId, agentId: item.agentId, createdAt: item.createdAt }).toEqual({ userId: 1, modelId, agentId, createdAt: at });
  const data = item.data as Record<string, any>;
  expect(data.usageRaw).toEqual(usage); // the unknown field too
  expect(data.usageNormalized).toMatchObject({ tokensIn: 3605, tokensOut: 510, cachedInTokens: 2000, cacheWriteInputTokens: 1500 });
  expect(data.providerMetadata.builtInTools.webSearchCallCount).toBe(3);
  expect(data.psUsage.modelUsageId).toBe(row.id);
  expect(data.pricing).toMatchObject({ longContextTokenThreshold: 200_000, inferenceType: "fast" });
  expect(typeof data.pricing.pricePeriodId).toBe("number");
});

test("Gemini: a call whose whole input reaches the model's threshold goes to long context", async () => {
  const usage = { promptTokenCount: 210_000, cachedContentTokenCount: 10_000, candidatesTokenCount: 800, thoughtsTokenCount: 1200, totalTokenCount: 212_000 };
  const { usage: row } = await recordProviderUsage(db, { provider: "gemini", usage, userId: 1, modelId, agentId, createdAt: at });
  expect(row).toMatchObject({
    tokenInCount: 0,
    longContextTokenInCount: 200_000,
    longContextTokenInCachedContextCount: 10_000,
    longContextTokenOutCount: 800,
    longContextTokenOutReasoningCount: 1200,
  });
});

test("a bad usage object or an item without an agent writes nothing; an unknown model is UnknownReferenceError", async () => {
  const before = [await count("psModelUsage"), await count("psModelUsageItem")];
  const bad = await recordProviderUsage(db, { provider: "openai", usage: { prompt_tokens: -1, completion_tokens: 2 }, userId: 1, modelId }).catch((e: unknown) => e);
  expect(bad).toBeInstanceOf(UsageValidationError);
  expect((bad as UsageValidationError).issues.map((i) => i.field)).toContain("usage.prompt_tokens");
  const noAgent = await recordProviderUsage(db, { provider: "anthropic", usage: { input_tokens: 1, output_tokens: 1 }, userId: 1, modelId }, { item: true }).catch((e: unknown) => e);
  expect((noAgent as UsageValidationError).issues).toEqual([expect.objectContaining({ field: "agentId" })]);
  await expect(recordProviderUsage(db, { provider: "anthropic", usage: { input_tokens: 1, output_tokens: 1 }, userId: 1, modelId: 999_999, agentId }, { item: true })).rejects.toBeInstanceOf(
    UnknownReferenceError,
  );
  const badThreshold = await recordProviderUsage(db, { provider: "anthropic", usage: { input_tokens: 1, output_tokens: 1 }, userId: 1, modelId }, { longContextTokenThreshold: -5 }).catch((e: unknown) => e);
  expect((badThreshold as UsageValidationError).issues).toEqual([{ field: "longContextTokenThreshold", reason: "must not be negative, got -5" }]);
  await expect(recordProviderUsageBatch(db, [], { longContextTokenThreshold: 1.5 })).rejects.toMatchObject({ issues: [{ field: "longContextTokenThreshold", reason: "must be an integer, got 1.5" }] });
  expect([await count("psModelUsage"), await count("psModelUsageItem")]).toEqual(before);
});

test("a retried key records the call and its item once", async () => {
  const before = [await count("psModelUsage"), await count("psModelUsageItem")];
  const call = { provider: "anthropic" as const, usage: { input_tokens: 7, output_tokens: 3 }, userId: 1, modelId, agentId, createdAt: at };
  const first = await recordProviderUsage(db, call, { item: true, idempotencyKey: "provider-call-1" });
  const again = await recordProviderUsage(db, call, { item: true, idempotencyKey: "provider-call-1" });
  expect(again.usage.id).toBe(first.usage.id);
  expect(again.itemId).toBeNull();
  expect([await count("psModelUsage"), await count("psModelUsageItem")]).toEqual([before[0] + 1, before[1] + 1]);
});

test("a batch of mixed providers is one all-or-nothing batch; a bad call is named by its index", async () => {
  const before = await count("psModelUsage");
  const calls = [
    { provider: "openai" as const, usage: { input_tokens: 50, output_tokens: 5, input_tokens_details: { cached_tokens: 10 }, output_tokens_details: { reasoning_tokens: 2 } }, userId: 1, modelId },
    { provider: "anthropic" as const, usage: { input_tokens: 40, output_tokens: 4 }, userId: 1, modelId },
    { provider: "gemini" as const, usage: { promptTokenCount: 300_000, candidatesTokenCount: 9 }, userId: 1, modelId, createdAt: at },
  ];
  const bad = await recordProviderUsageBatch(db, [...calls, { provider: "gemini" as const, usage: { candidatesTokenCount: 1 }, userId: 1, modelId }]).catch((e: unknown) => e);
  expect((bad as UsageValidationError).issues).toEqual([expect.objectContaining({ field: "usage.promptTokenCount", index: 3 })]);
  expect(await count("psModelUsage")).toBe(before);
  const result = await recordProviderUsageBatch(db, calls, { returnIds: true });
  expect(result.count).toBe(3);
  const rows = await db.prisma.psModelUsage.findMany({ where: { id: { in: [...result.ids!] } }, orderBy: { id: "asc" } });
  expect(rows.map((r) => [r.tokenInCount, r.tokenInCachedContextCount, r.tokenOutCount, r.tokenOutReasoningCount, r.longContextTokenInCount])).toEqual([
    [40, 10, 3, 2, 0],
    [40, 0, 4, 0, 0],
    [0, 0, 0, 0, 300_000],
  ]);
});

test("a misspelt call field is refused by name, single or batch, and nothing is written", async () => {
  const before = await count("psModelUsage");
  const misspelt = { provider: "anthropic" as const, usage: { input_tokens: 5, output_tokens: 1 }, userId: 1, modelId, agentID: agentId } as unknown as ProviderUsageCall;
  const reason = "is not a field of ProviderUsageCall (did you mean agentId?)";
  await expect(recordProviderUsage(db, misspelt)).rejects.toMatchObject({ issues: [{ field: "agentID", reason }] });
  const good = { provider: "gemini" as const, usage: { promptTokenCount: 3, candidatesTokenCount: 1 }, userId: 1, modelId };
  await expect(recordProviderUsageBatch(db, [good, misspelt])).rejects.toMatchObject({ issues: [{ field: "agentID", reason, index: 1 }] });
  expect(await count("psModelUsage")).toBe(before);
});

test("a batch count too large for its INTEGER counter is named by the counter it would go to, and nothing is written", async () => {
  const before = await count("psModelUsage");
  const huge = 3_000_000_000;
  const calls: ProviderUsageCall[] = [
    { provider: "openai", usage: { prompt_tokens: 10, completion_tokens: huge }, userId: 1, modelId, createdAt: at },
    // Whole input above the model's 200,000 threshold: long context.
    { provider: "anthropic", usage: { input_tokens: huge, output_tokens: 1 }, userId: 1, modelId, createdAt: at },
    { provider: "anthropic", usage: { input_tokens: 1, output_tokens: 1, server_tool_use: { web_search_requests: huge } }, userId: 1, modelId, createdAt: at },
  ];
  const bad = await recordProviderUsageBatch(db, calls).catch((e: unknown) => e);
  expect(bad).toBeInstanceOf(UsageValidationError);
  expect((bad as UsageValidationError).issues).toEqual([
    { field: "tokenOutCount", reason: `must be at most 2147483647 (PostgreSQL INTEGER), got ${huge}`, index: 0 },
    { field: "longContextTokenInCount", reason: `must be at most 2147483647 (PostgreSQL INTEGER), got ${huge}`, index: 1 },
    { field: "webSearchCount", reason: `must be at most 2147483647 (PostgreSQL INTEGER), got ${huge}`, index: 2 },
  ]);
  expect(await count("psModelUsage")).toBe(before);
});

test("reports read the ledger or the items, never both: on rows written with items both agree", async () => {
  const fresh = await openTestDatabase();
  try {
    const d = fresh.db;
    const m = (await d.prisma.psAiModel.create({ data: { userId: 1, name: "m" } })).id;
    const a = (await d.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1 } })).id;
    await setModelPrice(d, m, { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 15, costInCachedContextTokensPerMillion: "0.3", cacheWriteInputCostMultiplier: "1.25", longContextTokenThreshold: 1000 }, new Date("2026-01-01T00:00:00Z"));
    await recordProviderUsage(d, { provider: "anthropic", usage: { input_tokens: 100, cache_read_input_tokens: 50, cache_creation_input_tokens: 20, output_tokens: 30 }, userId: 1, modelId: m, agentId: a, createdAt: at }, { item: true });
    await recordProviderUsage(d, { provider: "openai", usage: { prompt_tokens: 1500, completion_tokens: 10, total_tokens: 1510 }, userId: 1, modelId: m, agentId: a, createdAt: at }, { item: true });
    const ledger = await sumModelUsage(d, { groupBy: ["agentId"], bucket: "day" });
    const items = await sumModelUsage(d, { groupBy: ["agentId"], bucket: "day", source: "items" });
    expect(items).toEqual(ledger);
    expect(ledger[0]).toMatchObject({ events: 2n, tokenInCount: 100n, longContextTokenInCount: 1500n });
    const costs = await costReport(d, { source: "items" });
    expect(costs.totals).toEqual((await costReport(d)).totals);
  } finally {
    await fresh.dispose();
  }
});
