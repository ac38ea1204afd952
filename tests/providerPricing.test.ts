// Prices as providers bill (issue 13, part 3): service tiers (flex, priority, fast) chosen by the
// tier the provider reports as applied, long-context rates derived for a tier, the regional
// processing margin, web searches per thousand; the new usage fields on every write path, in finds,
// sums and cost reports; and validation naming each new field. Expected costs are worked out by
// hand in the comments (tokens × rate / 1,000,000).
import { Readable } from "node:stream";
import {
  agentTreeCostReport,
  costReport,
  findModelUsage,
  formatReportCsv,
  InputLineError,
  listModelPrices,
  modelCallToUsage,
  recordModelCall,
  recordModelUsage,
  recordModelUsageBatch,
  recordNdjson,
  setModelPrice,
  sumAgentTreeUsage,
  sumModelUsage,
  syncPricesFromConfiguration,
  type ModelPriceInput,
  type ModelUsageInput,
} from "../src";
import { createCliDatabase, runCli } from "./support/cli";
import { issuesOf } from "./support/errors";
import { createAgent, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.dispose());

const JAN = new Date("2025-01-01T00:00:00Z");
const MAR = new Date("2025-03-10T12:00:00Z");
const JUN = new Date("2025-06-01T00:00:00Z");
const JUL = new Date("2025-07-10T12:00:00Z");
const M = 1_000_000;

// Standard rates, one rate per tier kind, and long-context rates at simple ratios to the standard
// ones (input ×2, cached ×2, output ×1.5), so derived tier rates are easy to check by hand.
const TIERED: ModelPriceInput = {
  currency: "USD",
  costInTokensPerMillion: "2",
  costInCachedContextTokensPerMillion: "0.5",
  costOutTokensPerMillion: "8",
  cacheWriteInputCostMultiplier: "1.25",
  longContextTokenThreshold: 200_000,
  longContextCostInTokensPerMillion: "4",
  longContextCostInCachedContextTokensPerMillion: "1",
  longContextCostOutTokensPerMillion: "12",
  flexTokensIn: "1",
  flexTokensCachedIn: "0.25",
  flexTokensOut: "4",
  priorityTokensIn: "3.5",
  // no priorityTokensCachedIn: the standard cached rate 0.5
  priorityTokensOut: "14",
  fastTokensIn: "6",
  // no fastTokensCachedIn, no fastTokensOut: the standard 0.5 and 8
};
const TIERED_LONG: ModelPriceInput = { ...TIERED, flexPriorityTokensEnabledOnLongContext: true };

/** A new model priced from JAN (and optionally more periods), its id. */
async function pricedModel(name: string, ...periods: [ModelPriceInput, Date?][]): Promise<number> {
  const modelId = await createModel(t.db, name);
  for (const [prices, from] of periods) await setModelPrice(t.db, modelId, prices, from ?? JAN);
  return modelId;
}

type Usage = Omit<ModelUsageInput, "userId" | "modelId">;

async function record(modelId: number, usage: Usage[]): Promise<void> {
  await recordModelUsageBatch(t.db, usage.map((u) => ({ userId: 1, modelId, createdAt: MAR, ...u })));
}

/** The model's single-currency total. */
async function total(modelId: number) {
  const report = await costReport(t.db, { where: { modelId } });
  expect(report.totals).toHaveLength(1);
  return report.totals[0];
}

describe("service tiers", () => {
  test("flex replaces the standard rates; long context stays standard with flexPriorityTokensEnabledOnLongContext off", async () => {
    const modelId = await pricedModel("flex-off", [TIERED]);
    await record(modelId, [
      {
        serviceTier: "flex",
        tokenInCount: M, //                         1e6 × flex 1            = 1
        tokenInCachedContextCount: 2 * M, //        2e6 × flex cached 0.25  = 0.5
        tokenInCacheWriteCount: 400_000, //         4e5 × flex in 1 × 1.25  = 0.5
        tokenOutCount: 500_000, //                  5e5 × flex out 4        = 2
        longContextTokenInCount: M, //              standard long 4         = 4
        longContextTokenInCachedContextCount: M, // standard long cached 1  = 1
        longContextTokenOutCount: M, //             standard long out 12    = 12
      },
    ]);
    expect(await total(modelId)).toMatchObject({ currency: "USD", modelEvents: 1n, modelCost: "21", cost: "21" }); // 1+0.5+0.5+2+4+1+12
  });

  test("with flexPriorityTokensEnabledOnLongContext on, flex scales the long-context rates: tier × long / standard", async () => {
    const modelId = await pricedModel("flex-on", [TIERED_LONG]);
    await record(modelId, [
      {
        serviceTier: "flex",
        tokenInCount: M, //                          1
        tokenInCachedContextCount: 2 * M, //         0.5
        tokenInCacheWriteCount: 400_000, //          0.5
        tokenOutCount: 500_000, //                   2
        longContextTokenInCount: M, //               flex 1 × 4/2       = 2
        longContextTokenInCachedContextCount: M, //  flex 0.25 × 1/0.5  = 0.5
        longContextTokenInCacheWriteCount: M, //     flex 1 × 4/2 × 1.25 = 2.5
        longContextTokenOutCount: M, //              flex 4 × 12/8      = 6
      },
    ]);
    expect((await total(modelId)).modelCost).toBe("15"); // 1+0.5+0.5+2+2+0.5+2.5+6
  });

  test("priority uses its rates and falls back to the standard rate it lacks (cached)", async () => {
    const modelId = await pricedModel("priority", [TIERED_LONG]);
    await record(modelId, [
      {
        serviceTier: "priority",
        tokenInCount: M, //                          3.5
        tokenInCachedContextCount: 2 * M, //         no priority cached rate: standard 0.5 → 1
        tokenOutCount: 500_000, //                   5e5 × 14 = 7
        longContextTokenInCount: M, //               3.5 × 4/2  = 7
        longContextTokenInCachedContextCount: M, //  0.5 × 1/0.5 = 1 (the standard long cached rate)
      },
    ]);
    expect((await total(modelId)).modelCost).toBe("19.5"); // 3.5+1+7+7+1
  });

  test("fast always scales long context (the flag is off here), falling back to standard rates", async () => {
    const modelId = await pricedModel("fast", [TIERED]);
    await record(modelId, [
      {
        serviceTier: "fast",
        tokenInCount: M, //                          fast 6
        tokenInCachedContextCount: 2 * M, //         standard cached 0.5 → 1
        tokenOutCount: 500_000, //                   standard out 8 → 4
        longContextTokenInCount: M, //               6 × 4/2    = 12
        longContextTokenInCachedContextCount: M, //  0.5 × 1/0.5 = 1
        longContextTokenOutCount: M, //              8 × 12/8   = 12
        longContextTokenInCacheWriteCount: M, //     12 × 1.25  = 15
      },
    ]);
    expect((await total(modelId)).modelCost).toBe("51"); // 6+1+4+12+1+12+15
  });

  test("a tier the period has no rates for is priced at the standard rates; a missing cached rate is the tier's input rate", async () => {
    const modelId = await pricedModel("tier-fallbacks", [
      { currency: "USD", costInTokensPerMillion: "3", costOutTokensPerMillion: "15", flexTokensIn: "1.5", longContextCostInTokensPerMillion: "6" },
    ]);
    await record(modelId, [
      // priority: no priority rates at all → standard: 1e6 × 3 + 1e6 × 15 = 18
      { serviceTier: "priority", tokenInCount: M, tokenOutCount: M },
      // flex: no cached rate anywhere → the flex input rate 1.5 (PolicySynth would price it at 0);
      // long context with the flag off: the standard long rate 6
      { serviceTier: "flex", tokenInCachedContextCount: M, longContextTokenInCount: M },
      // standard: no cached rate → the input rate 3
      { tokenInCachedContextCount: M },
    ]);
    expect((await total(modelId)).modelCost).toBe("28.5"); // 18 + 1.5 + 6 + 3
  });

  test("without a long-context rate, tier tokens in long context cost the tier rate (flag on or off)", async () => {
    const prices: ModelPriceInput = { currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "8", flexTokensIn: "1", flexTokensOut: "4" };
    const off = await pricedModel("no-long-off", [prices]);
    const on = await pricedModel("no-long-on", [{ ...prices, flexPriorityTokensEnabledOnLongContext: true }]);
    for (const modelId of [off, on]) await record(modelId, [{ serviceTier: "flex", longContextTokenInCount: M, longContextTokenOutCount: M }]);
    expect((await total(off)).modelCost).toBe("5"); // 1 + 4
    expect((await total(on)).modelCost).toBe("5");
  });

  test("reasoning, audio and image rates scale with the tier's output rate", async () => {
    const modelId = await pricedModel("tier-kinds", [
      { ...TIERED, costOutReasoningTokensPerMillion: "10", costOutAudioTokensPerMillion: "64" },
    ]);
    await record(modelId, [
      {
        serviceTier: "flex",
        tokenOutReasoningCount: M, //             10 × flex out 4 / out 8 = 5
        tokenOutAudioCount: M, //                 64 × 4/8               = 32
        tokenOutImageCount: M, //                 no image rate: flex out 4
        longContextTokenOutReasoningCount: M, //  the standard long output rate 12 (flag off)
      },
    ]);
    expect((await total(modelId)).modelCost).toBe("53"); // 5+32+4+12
  });

  test("a derived rate that does not terminate is computed multiply-first, exact to 30 decimals", async () => {
    const modelId = await pricedModel("thirds", [
      { currency: "USD", costInTokensPerMillion: "3", costOutTokensPerMillion: "3", longContextCostInTokensPerMillion: "7", fastTokensIn: "1" },
    ]);
    const other = await pricedModel("thirds-whole", [
      { currency: "USD", costInTokensPerMillion: "3", costOutTokensPerMillion: "3", longContextCostInTokensPerMillion: "7", fastTokensIn: "1" },
    ]);
    // 1e6 × 1 × 7 / 3 = 2333333.33… rounded at the 24th decimal, then × 0.000001.
    await record(modelId, [{ serviceTier: "fast", longContextTokenInCount: M }]);
    // 3e6 × 1 × 7 / 3 = 7e6 exactly: multiplying first leaves nothing to round.
    await record(other, [{ serviceTier: "fast", longContextTokenInCount: 3 * M }]);
    expect((await total(modelId)).modelCost).toBe("2.333333333333333333333333333333");
    expect((await total(other)).modelCost).toBe("7");
  });

  test("a tier price change mid-year: each side priced by its own period, tiers and standard alike", async () => {
    const modelId = await pricedModel(
      "tier-change",
      [{ currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "8", flexTokensIn: "1" }, JAN],
      // From June the standard input rate drops to 1.8 and there is no flex rate any more.
      [{ currency: "USD", costInTokensPerMillion: "1.8", costOutTokensPerMillion: "8" }, JUN],
    );
    await record(modelId, [
      { tokenInCount: M, createdAt: MAR }, //                       2
      { serviceTier: "flex", tokenInCount: M, createdAt: MAR }, //  1
      { tokenInCount: M, createdAt: JUL }, //                       1.8
      { serviceTier: "flex", tokenInCount: M, createdAt: JUL }, //  no flex rate: standard 1.8
    ]);
    const report = await costReport(t.db, { where: { modelId }, bucket: "month" });
    expect(report.rows.map((r) => [r.bucketStart?.toISOString(), r.modelEvents, r.modelCost])).toEqual([
      ["2025-03-01T00:00:00.000Z", 2n, "3"],
      ["2025-07-01T00:00:00.000Z", 2n, "3.6"],
    ]);
    expect(report.totals[0].cost).toBe("6.6");
  });

  test("grouped by model and day, tiers mixed in one group add up; unknown tier text from another writer is standard", async () => {
    const a = await pricedModel("mixed-a", [TIERED]);
    const b = await pricedModel("mixed-b", [TIERED_LONG]);
    const day2 = new Date("2025-03-11T08:00:00Z");
    await record(a, [
      { tokenInCount: M }, //                          2
      { serviceTier: "flex", tokenInCount: M }, //     1
      { serviceTier: "priority", tokenInCount: M }, // 3.5
      { serviceTier: "fast", tokenInCount: M }, //     6
      { tokenInCount: M, createdAt: day2 }, //         2 on the next day
    ]);
    await record(b, [{ serviceTier: "flex", longContextTokenOutCount: M }]); // flag on: 4 × 12/8 = 6
    // A row written by other SQL with a tier text this package does not know: standard rates (2).
    await t.db.prisma.$executeRaw`
      INSERT INTO ps_model_usage (user_id, model_id, token_in_count, service_tier, created_at, updated_at)
      VALUES (1, ${b}, ${M}, 'scale', ${MAR}, ${MAR})`;
    const report = await costReport(t.db, { where: { modelId: [a, b] }, groupBy: "modelId", bucket: "day" });
    expect(report.rows.map((r) => [r.modelId, r.bucketStart?.toISOString(), r.modelEvents, r.tokens.tokenInCount, r.modelCost])).toEqual([
      [a, "2025-03-10T00:00:00.000Z", 4n, 4_000_000n, "12.5"], // 2+1+3.5+6
      [b, "2025-03-10T00:00:00.000Z", 2n, 1_000_000n, "8"], // 6 + 2
      [a, "2025-03-11T00:00:00.000Z", 1n, 1_000_000n, "2"],
    ]);
    expect(report.totals).toMatchObject([{ currency: "USD", modelEvents: 7n, cost: "22.5" }]);
  });

  test("tier usage no price period covers is unpriced, never priced at 0", async () => {
    const modelId = await pricedModel("late-price", [TIERED, JUN]);
    await record(modelId, [
      { serviceTier: "flex", tokenInCount: M, webSearchCount: 2, createdAt: MAR }, // before any period
      { serviceTier: "flex", tokenInCount: M, createdAt: JUL }, // flex 1
    ]);
    const report = await costReport(t.db, { where: { modelId } });
    expect(report.unpricedEvents).toBe(1n);
    expect(report.totals.map((r) => [r.currency, r.modelEvents, r.webSearchCount, r.modelCost])).toEqual([
      ["USD", 1n, 0n, "1"],
      [null, 1n, 2n, null],
    ]);
  });
});

describe("regional processing margin and web searches", () => {
  const MARGINED: ModelPriceInput = { ...TIERED, regionalProcessingMargin: "10", costPerThousandWebSearches: "10" };

  test("the margin multiplies every token cost of regionally processed usage; web searches are not margined", async () => {
    const modelId = await pricedModel("margin", [MARGINED]);
    const [eu, plain] = [await createAgent(t.db), await createAgent(t.db)];
    const call: Usage = { serviceTier: "flex", tokenInCount: M, tokenOutCount: 500_000, longContextTokenInCount: M, webSearchCount: 3 };
    await record(modelId, [
      // flex 1 + 5e5 × 4 + standard long 4 = 7 tokens × 1.1 = 7.7; 3 searches × 10 / 1000 = 0.03
      { ...call, agentId: eu, regionalProcessing: "eu" },
      // the same without regional processing: 7 + 0.03
      { ...call, agentId: plain },
    ]);
    const report = await costReport(t.db, { where: { modelId }, groupBy: "agentId" });
    expect(report.rows.map((r) => [r.agentId, r.webSearchCount, r.modelCost])).toEqual([
      [eu, 3n, "7.73"],
      [plain, 3n, "7.03"],
    ]);
    expect(report.totals[0]).toMatchObject({ webSearchCount: 6n, modelCost: "14.76", cost: "14.76" });
  });

  test("regional usage on a period without a margin costs the plain rates; a negative margin is a discount", async () => {
    const noMargin = await pricedModel("no-margin", [TIERED]);
    const discount = await pricedModel("discount", [{ ...TIERED, regionalProcessingMargin: "-20" }]);
    for (const modelId of [noMargin, discount]) await record(modelId, [{ regionalProcessing: "eu", tokenInCount: M, tokenOutCount: M }]);
    expect((await total(noMargin)).modelCost).toBe("10"); // 2 + 8
    expect((await total(discount)).modelCost).toBe("8"); // 10 × 0.8
  });

  test("web searches cost count × costPerThousandWebSearches / 1000; a period without that rate prices them at 0", async () => {
    const modelId = await pricedModel("searches", [MARGINED, JAN], [TIERED, JUN]);
    await record(modelId, [
      { webSearchCount: 7, createdAt: MAR }, // 7 × 10 / 1000 = 0.07
      { webSearchCount: 123, regionalProcessing: "eu", createdAt: MAR }, // 123 × 10 / 1000 = 1.23 (not margined)
      { webSearchCount: 5, createdAt: JUL }, // no rate in the June period: 0
    ]);
    expect(await total(modelId)).toMatchObject({ modelEvents: 3n, webSearchCount: 135n, modelCost: "1.3" }); // 0.07 + 1.23
  });
});

describe("usage fields on every path", () => {
  let modelId: number;
  let agentId: number;
  beforeAll(async () => {
    modelId = await pricedModel("paths", [{ ...TIERED, costPerThousandWebSearches: "10", regionalProcessingMargin: "10" }]);
    agentId = await createAgent(t.db);
  });

  test("single, keyed single, batch, keyed batch, model call and NDJSON store them; finds return them", async () => {
    const single = await recordModelUsage(t.db, { userId: 7, modelId, agentId, createdAt: MAR, webSearchCount: 2, serviceTier: "flex", regionalProcessing: "eu" });
    expect(single).toMatchObject({ webSearchCount: 2, serviceTier: "flex", regionalProcessing: "eu" });
    const keyed = await recordModelUsage(t.db, { userId: 7, modelId, agentId, createdAt: MAR, webSearchCount: 3, serviceTier: "fast" }, { idempotencyKey: "pp-1" });
    const replay = await recordModelUsage(t.db, { userId: 7, modelId, agentId, createdAt: MAR }, { idempotencyKey: "pp-1" });
    expect(replay).toEqual(keyed);
    expect(keyed).toMatchObject({ webSearchCount: 3, serviceTier: "fast", regionalProcessing: null });
    await recordModelUsageBatch(t.db, [
      { userId: 7, modelId, agentId, createdAt: MAR, webSearchCount: 4, serviceTier: "priority", regionalProcessing: "EU-west_1" },
      // "standard" and "default" mean no tier: stored as null
      { userId: 7, modelId, agentId, createdAt: MAR, serviceTier: "standard", regionalProcessing: null },
    ]);
    await recordModelUsageBatch(t.db, [{ userId: 7, modelId, agentId, createdAt: MAR, webSearchCount: 5, serviceTier: "default" }], { idempotencyKey: "pp-batch" });
    const call = await recordModelCall(
      t.db,
      { userId: 7, modelId, agentId, createdAt: MAR, inputTokens: 10, outputTokens: 1, webSearchCount: 6, serviceTier: "flex", regionalProcessing: "us" },
      { idempotencyKey: "pp-call" },
    );
    expect(call).toMatchObject({ tokenInCount: 10, webSearchCount: 6, serviceTier: "flex", regionalProcessing: "us" });
    const lines = [
      JSON.stringify({ userId: 7, modelId, agentId, createdAt: MAR.toISOString(), webSearchCount: 8, serviceTier: "priority", regionalProcessing: "eu" }),
      JSON.stringify({ userId: 7, modelId, agentId, createdAt: MAR.toISOString() }),
    ];
    expect(await recordNdjson(t.db, Readable.from([lines.join("\n")]))).toMatchObject({ modelUsage: 2 });

    const page = await findModelUsage(t.db, { agentId }, { order: "oldest", limit: 1000 });
    expect(page.items.map((r) => [r.webSearchCount, r.serviceTier, r.regionalProcessing])).toEqual([
      [2, "flex", "eu"],
      [3, "fast", null],
      [4, "priority", "EU-west_1"],
      [0, null, null],
      [5, null, null],
      [6, "flex", "us"],
      [8, "priority", "eu"],
      [0, null, null],
    ]);

    // Sums and the agent tree count web searches beside the tokens.
    const [sum] = await sumModelUsage(t.db, { where: { agentId } });
    expect(sum).toMatchObject({ events: 8n, webSearchCount: 28n, tokenInCount: 10n });
    const tree = await sumAgentTreeUsage(t.db, agentId);
    expect(tree.total.modelUsage).toMatchObject({ events: 8n, webSearchCount: 28n });
    const treeCost = await agentTreeCostReport(t.db, agentId);
    expect(treeCost.totals[0]).toMatchObject({ webSearchCount: 28n, modelEvents: 8n });
    // CSV has a column for them.
    const csv = formatReportCsv(treeCost, { keys: ["agentId"] }).trim().split("\n");
    const head = csv[0].split(",");
    expect(csv[1].split(",")[head.indexOf("webSearchCount")]).toBe("28");
  });

  test("modelCallToUsage passes the fields through", () => {
    expect(
      modelCallToUsage({ userId: 1, modelId: 2, inputTokens: 5, outputTokens: 1, webSearchCount: 1, serviceTier: "priority", regionalProcessing: "eu" }),
    ).toMatchObject({ tokenInCount: 5, tokenOutCount: 1, webSearchCount: 1, serviceTier: "priority", regionalProcessing: "eu" });
  });

  test("bad values are refused naming the field, single and in a batch, and nothing is written", async () => {
    const before = await t.db.prisma.psModelUsage.count();
    const issues = await issuesOf(
      recordModelUsage(t.db, { userId: 1, modelId, webSearchCount: -1, serviceTier: "turbo", regionalProcessing: "" } as unknown as ModelUsageInput),
    );
    expect(issues).toEqual([
      { field: "webSearchCount", reason: "must not be negative, got -1" },
      { field: "serviceTier", reason: 'must be "flex", "priority" or "fast" (the tier the provider reports as applied), or "standard", "default" or null for standard pricing, got string "turbo"' },
      { field: "regionalProcessing", reason: 'must be 1 to 16 letters, digits, "-" or "_" (e.g. "eu"), or null, got string ""' },
    ]);
    const batch = await issuesOf(
      recordModelUsageBatch(t.db, [
        { userId: 1, modelId, webSearchCount: 1.5 },
        { userId: 1, modelId, serviceTier: "auto", regionalProcessing: "europe west" },
        { userId: 1, modelId, webSearchCount: 2 ** 31, serviceTier: 3, regionalProcessing: "x".repeat(17) },
      ] as unknown as ModelUsageInput[]),
    );
    expect(batch).toEqual([
      { index: 0, field: "webSearchCount", reason: "must be an integer, got 1.5" },
      { index: 1, field: "serviceTier", reason: '"auto" is a tier to request, not one applied: pass the tier the provider reports as applied' },
      { index: 1, field: "regionalProcessing", reason: 'must be 1 to 16 letters, digits, "-" or "_" (e.g. "eu"), or null, got string "europe west"' },
      { index: 2, field: "webSearchCount", reason: "must be at most 2147483647 (PostgreSQL INTEGER), got 2147483648" },
      { index: 2, field: "serviceTier", reason: 'must be "flex", "priority" or "fast" (the tier the provider reports as applied), or "standard", "default" or null for standard pricing, got 3' },
      { index: 2, field: "regionalProcessing", reason: `must be 1 to 16 letters, digits, "-" or "_" (e.g. "eu"), or null, got string "${"x".repeat(17)}"` },
    ]);
    const line = await recordNdjson(t.db, Readable.from([`${JSON.stringify({ userId: 1, modelId })}\n${JSON.stringify({ userId: 1, modelId, serviceTier: "batch" })}\n`])).catch((e: unknown) => e);
    expect(line).toBeInstanceOf(InputLineError);
    expect((line as InputLineError).line).toBe(2);
    expect((line as InputLineError).message).toContain('serviceTier: must be "flex", "priority" or "fast"');
    expect(await t.db.prisma.psModelUsage.count()).toBe(before);
  });
});

describe("prices", () => {
  test("setModelPrice and listModelPrices carry the tier rates, the flag, the margin and the web search price", async () => {
    const modelId = await createModel(t.db, "price-fields");
    const period = await setModelPrice(
      t.db,
      modelId,
      { ...TIERED_LONG, fastTokensCachedIn: 0.6, fastTokensOut: "30.000", regionalProcessingMargin: -12.5, costPerThousandWebSearches: 25 },
      JAN,
    );
    const expected = {
      flexTokensIn: "1",
      flexTokensCachedIn: "0.25",
      flexTokensOut: "4",
      priorityTokensIn: "3.5",
      priorityTokensCachedIn: null,
      priorityTokensOut: "14",
      fastTokensIn: "6",
      fastTokensCachedIn: "0.6",
      fastTokensOut: "30",
      flexPriorityTokensEnabledOnLongContext: true,
      regionalProcessingMargin: "-12.5",
      costPerThousandWebSearches: "25",
    };
    expect(period).toMatchObject(expected);
    expect(await listModelPrices(t.db, { modelId })).toMatchObject([expected]);
    const plain = await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 2 }, JUN);
    expect(plain).toMatchObject({ flexTokensIn: null, fastTokensOut: null, flexPriorityTokensEnabledOnLongContext: false, regionalProcessingMargin: null, costPerThousandWebSearches: null });
  });

  test("bad values of the new price fields are refused naming each field, and nothing is written", async () => {
    const modelId = await createModel(t.db, "bad-price-fields");
    const issues = await issuesOf(
      setModelPrice(t.db, modelId, {
        currency: "USD",
        costInTokensPerMillion: 1,
        costOutTokensPerMillion: 2,
        flexTokensIn: -1,
        flexTokensCachedIn: "abc",
        priorityTokensOut: Number.NaN,
        fastTokensIn: "1.0000000000001",
        flexPriorityTokensEnabledOnLongContext: "yes",
        regionalProcessingMargin: -100.5,
        costPerThousandWebSearches: "1e12",
      } as unknown as ModelPriceInput),
    );
    expect(issues).toEqual([
      { field: "flexTokensIn", reason: "must not be negative" },
      { field: "flexTokensCachedIn", reason: 'must be a decimal number, got "abc"' },
      { field: "priorityTokensOut", reason: "is NaN" },
      { field: "fastTokensIn", reason: "has more than 12 decimal places" },
      { field: "costPerThousandWebSearches", reason: "is too large (at most 12 digits before the decimal point)" },
      { field: "flexPriorityTokensEnabledOnLongContext", reason: 'must be true or false, got string "yes"' },
      { field: "regionalProcessingMargin", reason: "must be at least -100 (percent; -100 makes regional usage free)" },
    ]);
    const infinite = await issuesOf(
      setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 2, regionalProcessingMargin: Number.POSITIVE_INFINITY }),
    );
    expect(infinite).toEqual([{ field: "regionalProcessingMargin", reason: "must be finite" }]);
    expect(await listModelPrices(t.db, { modelId })).toEqual([]);
  });

  test("syncPricesFromConfiguration reads the fields as PolicySynth stores them, and a change in any of them is a new period", async () => {
    const own = await openTestDatabase();
    try {
      const db = own.db;
      // As PolicySynth keeps them in ps_ai_models.configuration.prices (numbers and a boolean).
      const prices = {
        currency: "USD",
        costInTokensPerMillion: 2,
        costOutTokensPerMillion: 8,
        costInCachedContextTokensPerMillion: 0.5,
        flexTokensIn: 1,
        flexTokensCachedIn: 0.25,
        flexTokensOut: 4,
        priorityTokensIn: 3.5,
        priorityTokensOut: 14,
        flexPriorityTokensEnabledOnLongContext: false,
        regionalProcessingMargin: 10,
        costPerThousandWebSearches: 10,
      };
      const model = await createModel(db, "synced", { prices });
      const first = await syncPricesFromConfiguration(db, { effectiveFrom: JAN });
      expect(first.modelPeriods).toMatchObject([
        { flexTokensIn: "1", flexTokensOut: "4", priorityTokensCachedIn: null, flexPriorityTokensEnabledOnLongContext: false, regionalProcessingMargin: "10", costPerThousandWebSearches: "10" },
      ]);
      expect((await syncPricesFromConfiguration(db, { effectiveFrom: MAR })).unchanged).toBe(1);
      const changes: [Date, Record<string, number | boolean>][] = [
        [MAR, { flexTokensIn: 0.9 }],
        [JUN, { flexPriorityTokensEnabledOnLongContext: true }],
        [JUL, { regionalProcessingMargin: 15 }],
        [new Date("2025-08-01T00:00:00Z"), { costPerThousandWebSearches: 12 }],
        [new Date("2025-09-01T00:00:00Z"), { fastTokensIn: 6 }],
      ];
      let config: Record<string, string | number | boolean> = prices;
      for (const [at, change] of changes) {
        config = { ...config, ...change };
        await db.prisma.psAiModel.update({ where: { id: model }, data: { configuration: { prices: config } } });
        const synced = await syncPricesFromConfiguration(db, { effectiveFrom: at });
        expect(synced.modelPeriods.map((p) => p.effectiveFrom)).toEqual([at]);
      }
      // Priced from the configuration: flex in March at 0.9 with the margin of 10% → 0.99.
      await recordModelUsage(db, { userId: 1, modelId: model, serviceTier: "flex", regionalProcessing: "eu", tokenInCount: M, createdAt: new Date("2025-03-20T00:00:00Z") });
      expect((await costReport(db)).totals[0].cost).toBe("0.99");
    } finally {
      await own.dispose();
    }
  });
});

describe("CLI", () => {
  test("record takes the new fields as flags; report shows web searches in the table, JSON and CSV", async () => {
    const cli = await createCliDatabase("ps-usage-pricing-");
    try {
      const modelId = await cli.withDb(
        async (db) => {
          const id = await createModel(db, "gpt-tiers");
          await setModelPrice(db, id, { ...TIERED, costPerThousandWebSearches: "10", regionalProcessingMargin: "10" }, JAN);
          return id;
        },
        { migrate: true },
      );
      const at = ["--at", "2025-03-10T12:00:00Z"];
      const flags = ["--user", "1", "--model", String(modelId), ...at, "--token-in-count", "1000000", "--web-search-count", "4"];
      const recorded = await runCli(["record", "--db", cli.arg, ...flags, "--service-tier", "flex", "--regional-processing", "eu"]);
      expect(recorded.code).toBe(0);
      expect(JSON.parse(recorded.stdout)).toMatchObject({ tokenInCount: 1_000_000, webSearchCount: 4, serviceTier: "flex", regionalProcessing: "eu" });
      const bad = await runCli(["record", "--db", cli.arg, ...flags, "--service-tier", "turbo"]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--service-tier: must be "flex", "priority" or "fast"');

      // flex 1 × 1.1 (margin) + 4 searches × 10 / 1000 = 1.14
      const json = JSON.parse((await runCli(["report", "--db", cli.arg, "--json"])).stdout);
      expect(json.totals).toMatchObject([{ currency: "USD", webSearchCount: "4", modelCost: "1.14" }]);
      const csv = (await runCli(["report", "--db", cli.arg, "--csv"])).stdout.trim().split("\n");
      const head = csv[0].split(",");
      expect(head.slice(head.indexOf("longContextTokenOutImageCount") + 1, head.indexOf("longContextTokenOutImageCount") + 3)).toEqual(["webSearchCount", "modelCost"]);
      expect(csv[1].split(",")[head.indexOf("webSearchCount")]).toBe("4");
      const table = (await runCli(["report", "--db", cli.arg, "--group-by", "model"])).stdout;
      expect(table).toMatch(/Web searches/);
      // Model calls, tokens in, tokens out, web searches, API calls, cost.
      const cells = table.split("\n").find((l) => l.includes("gpt-tiers"))!.split("│").map((c) => c.trim()).filter(Boolean);
      expect(cells).toEqual([`gpt-tiers (#${modelId})`, "1", "1,000,000", "0", "4", "0", "1.14 USD"]);
    } finally {
      await cli.drop();
    }
  });
});
