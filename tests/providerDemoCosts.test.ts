// Issue 13's proof: a cost report over calls of three providers, recorded from their own usage
// objects, with service tiers, a regional margin, cache writes, long context and web searches,
// equal to totals computed by hand (the arithmetic is in the comments). The ledger and the
// usage items written beside it give the same report.
import { costReport, recordProviderUsage, setModelPrice, type Database } from "../src";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let db: Database;
const ids = { openai: 0, anthropic: 0, gemini: 0 };

beforeAll(async () => {
  t = await openTestDatabase();
  db = t.db;
  const agentId = (await db.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1 } })).id;
  for (const name of ["openai", "anthropic", "gemini"] as const) ids[name] = (await db.prisma.psAiModel.create({ data: { userId: 1, name } })).id;
  const from = new Date("2026-01-01T00:00:00Z");
  await setModelPrice(db, ids.openai, {
    currency: "USD",
    costInTokensPerMillion: 2,
    costInCachedContextTokensPerMillion: "0.5",
    costOutTokensPerMillion: 8,
    flexTokensIn: 1,
    flexTokensCachedIn: "0.25",
    flexTokensOut: 4,
    priorityTokensIn: 4,
    priorityTokensOut: 16,
    regionalProcessingMargin: 10,
    costPerThousandWebSearches: 10,
  }, from);
  await setModelPrice(db, ids.anthropic, {
    currency: "USD",
    costInTokensPerMillion: 3,
    costInCachedContextTokensPerMillion: "0.3",
    costOutTokensPerMillion: 15,
    cacheWriteInputCostMultiplier: "1.25",
    fastTokensIn: 6,
    fastTokensOut: 30,
    longContextTokenThreshold: 200_000,
    longContextCostInTokensPerMillion: 6,
    longContextCostOutTokensPerMillion: "22.5",
  }, from);
  await setModelPrice(db, ids.gemini, { currency: "USD", costInTokensPerMillion: "1.25", costOutTokensPerMillion: 10, flexTokensIn: "0.625", flexTokensOut: 5, regionalProcessingMargin: 20 }, from);

  const at = new Date("2026-05-05T10:00:00Z");
  const call = { userId: 1, agentId, createdAt: at };
  // OpenAI, flex, EU: counters in 6,000, cached 4,000, out 800, reasoning 200; rates 1 / 0.25 / 4 / 4 (reasoning: the resolved output)
  //   6,000×1 + 4,000×0.25 + 800×4 + 200×4 = 11,000 → 0.011 × 1.1 = 0.0121; web searches 3 × 10 / 1,000 = 0.03 → 0.0421
  await recordProviderUsage(db, {
    ...call,
    provider: "openai",
    modelId: ids.openai,
    serviceTier: "flex",
    webSearchCalls: 3,
    regionalProcessing: "eu",
    usage: { prompt_tokens: 10_000, completion_tokens: 1_000, total_tokens: 11_000, prompt_tokens_details: { cached_tokens: 4_000 }, completion_tokens_details: { reasoning_tokens: 200 } },
  }, { item: true });
  // OpenAI, priority: 1,000×4 + 500×16 = 12,000 → 0.012
  await recordProviderUsage(db, { ...call, provider: "openai", modelId: ids.openai, serviceTier: "priority", usage: { input_tokens: 1_000, output_tokens: 500 } }, { item: true });
  // OpenAI, default tier (standard), EU: 1,000×2 + 1,000×0.5 + 100×8 = 3,300 → 0.0033 × 1.1 = 0.00363
  await recordProviderUsage(db, { ...call, provider: "openai", modelId: ids.openai, serviceTier: "default", regionalProcessing: "eu", usage: { prompt_tokens: 2_000, completion_tokens: 100, total_tokens: 2_100, prompt_tokens_details: { cached_tokens: 1_000 } } }, { item: true });
  // OpenAI in all: 0.0421 + 0.012 + 0.00363 = 0.05773

  // Anthropic, standard: 1,000×3 + 2,000×0.3 + 400×3×1.25 + 300×15 = 9,600 → 0.0096 (2 web searches, no web price: 0)
  await recordProviderUsage(db, {
    ...call,
    provider: "anthropic",
    modelId: ids.anthropic,
    usage: { input_tokens: 1_000, cache_read_input_tokens: 2_000, cache_creation_input_tokens: 400, cache_creation: { ephemeral_5m_input_tokens: 400, ephemeral_1h_input_tokens: 0 }, output_tokens: 300, server_tool_use: { web_search_requests: 2 }, service_tier: "standard" },
  }, { item: true });
  // Anthropic, priority (priced as fast): 500×6 + 100×30 = 6,000 → 0.006
  await recordProviderUsage(db, { ...call, provider: "anthropic", modelId: ids.anthropic, usage: { input_tokens: 500, output_tokens: 100, service_tier: "priority" } }, { item: true });
  // Anthropic, standard, long context (150,000 + 60,000 read ≥ 200,000: all of it long):
  //   150,000×6 + 60,000×0.3 (no long cached rate: the cached rate) + 1,000×22.5 = 940,500 → 0.9405
  await recordProviderUsage(db, { ...call, provider: "anthropic", modelId: ids.anthropic, usage: { input_tokens: 150_000, cache_read_input_tokens: 60_000, output_tokens: 1_000 } }, { item: true });
  // Anthropic in all: 0.0096 + 0.006 + 0.9405 = 0.9561

  // Gemini, flex, EU: in 6,000, cached 2,000, out 1,000, reasoning 500; rates 0.625 / 0.625 (no cached rate: the input) / 5 / 5
  //   6,000×0.625 + 2,000×0.625 + 1,000×5 + 500×5 = 12,500 → 0.0125 × 1.2 = 0.015
  await recordProviderUsage(db, {
    ...call,
    provider: "gemini",
    modelId: ids.gemini,
    serviceTier: "flex",
    regionalProcessing: "eu",
    usage: { promptTokenCount: 8_000, cachedContentTokenCount: 2_000, candidatesTokenCount: 1_000, thoughtsTokenCount: 500, totalTokenCount: 9_500 },
  }, { item: true });
});
afterAll(async () => {
  await t.dispose();
});

test("the cost report equals the hand-computed totals, per model and in all", async () => {
  const report = await costReport(db, { groupBy: ["modelId"] });
  expect(report.rows.map((r) => [r.modelId, r.modelCost, r.webSearchCount])).toEqual([
    [ids.openai, "0.05773", 3n],
    [ids.anthropic, "0.9561", 2n],
    [ids.gemini, "0.015", 0n],
  ]);
  expect(report.totals).toHaveLength(1);
  expect(report.totals[0]).toMatchObject({ currency: "USD", modelEvents: 7n, cost: "1.02883" }); // 0.05773 + 0.9561 + 0.015
});

test("the usage items written beside the ledger give the same report", async () => {
  expect(await costReport(db, { groupBy: ["modelId"], source: "items" })).toEqual(await costReport(db, { groupBy: ["modelId"] }));
});
