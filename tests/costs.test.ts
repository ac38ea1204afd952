import {
  agentTreeCostReport,
  costReport,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  setExternalApiPrice,
  setModelPrice,
  UnknownReferenceError,
  UsageValidationError,
  type ModelPriceInput,
  type ModelUsageCounter,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.dispose());

const JAN = new Date("2025-01-01T00:00:00Z");
const JUN = new Date("2025-06-01T00:00:00Z");
const FEB_1 = new Date("2025-02-01T12:00:00Z");

async function addModelUsage(modelId: number, counters: Partial<Record<ModelUsageCounter, number>>, createdAt = FEB_1, agentId: number | null = null) {
  await recordModelUsageBatch(t.db, [{ userId: 1, modelId, agentId, createdAt, ...counters }]);
}

async function addApiUsage(externalApiId: number, callCount: number, createdAt = FEB_1, agentId: number | null = null) {
  await recordExternalApiUsageBatch(t.db, [{ userId: 1, externalApiId, callCount, agentId, createdAt }]);
}

/** The single currency total of one model's usage. */
async function modelTotal(modelId: number) {
  const report = await costReport(t.db, { where: { modelId } });
  expect(report.totals).toHaveLength(1);
  return report.totals[0];
}

// Rates per million tokens. FULL has every optional rate; BASIC only the two required ones.
const FULL: ModelPriceInput = {
  currency: "USD",
  costInTokensPerMillion: "2.5",
  costOutTokensPerMillion: "10",
  costInCachedContextTokensPerMillion: "1.25",
  cacheWriteInputCostMultiplier: "1.25",
  longContextTokenThreshold: 200_000,
  longContextCostInTokensPerMillion: "5",
  longContextCostInCachedContextTokensPerMillion: "2.5",
  longContextCostOutTokensPerMillion: "15",
  costOutReasoningTokensPerMillion: "12",
  costOutAudioTokensPerMillion: "80",
  costOutImageTokensPerMillion: "40",
};
const BASIC: ModelPriceInput = { currency: "USD", costInTokensPerMillion: "3", costOutTokensPerMillion: "15" };
// Normal-context extras but no long-context rates.
const NO_LONG_CONTEXT: ModelPriceInput = {
  ...BASIC,
  costInCachedContextTokensPerMillion: "0.3",
  cacheWriteInputCostMultiplier: "2",
  costOutReasoningTokensPerMillion: "20",
};
// A long-context input rate but no cached rates.
const LONG_INPUT_ONLY: ModelPriceInput = { ...BASIC, longContextCostInTokensPerMillion: "6", cacheWriteInputCostMultiplier: "1.25" };

const TOKENS = 1_234_567;

// [price set, counter, expected cost of 1,234,567 tokens, prices] — worked out by hand: tokens × rate / 1e6.
const RULES: readonly [string, ModelUsageCounter, string, ModelPriceInput][] = [
  ["FULL", "tokenInCount", "3.0864175", FULL], // × 2.5
  ["FULL", "tokenInCachedContextCount", "1.54320875", FULL], // × 1.25 cached rate
  ["FULL", "tokenInCacheWriteCount", "3.858021875", FULL], // × 2.5 × 1.25 multiplier
  ["FULL", "longContextTokenInCount", "6.172835", FULL], // × 5
  ["FULL", "longContextTokenInCachedContextCount", "3.0864175", FULL], // × 2.5
  ["FULL", "longContextTokenInCacheWriteCount", "7.71604375", FULL], // × 5 × 1.25
  ["FULL", "tokenOutCount", "12.34567", FULL], // × 10
  ["FULL", "tokenOutReasoningCount", "14.814804", FULL], // × 12 own rate
  ["FULL", "tokenOutAudioCount", "98.76536", FULL], // × 80 own rate
  ["FULL", "tokenOutImageCount", "49.38268", FULL], // × 40 own rate
  ["FULL", "longContextTokenOutCount", "18.518505", FULL], // × 15
  ["FULL", "longContextTokenOutReasoningCount", "18.518505", FULL], // × 15 long-context output rate wins
  ["FULL", "longContextTokenOutAudioCount", "18.518505", FULL],
  ["FULL", "longContextTokenOutImageCount", "18.518505", FULL],
  ["BASIC", "tokenInCachedContextCount", "3.703701", BASIC], // no cached rate: input rate 3
  ["BASIC", "tokenInCacheWriteCount", "3.703701", BASIC], // no multiplier: 1
  ["BASIC", "longContextTokenInCount", "3.703701", BASIC], // no long-context rate: input rate
  ["BASIC", "longContextTokenInCachedContextCount", "3.703701", BASIC],
  ["BASIC", "longContextTokenInCacheWriteCount", "3.703701", BASIC],
  ["BASIC", "tokenOutReasoningCount", "18.518505", BASIC], // no own rate: output rate 15
  ["BASIC", "tokenOutAudioCount", "18.518505", BASIC],
  ["BASIC", "tokenOutImageCount", "18.518505", BASIC],
  ["BASIC", "longContextTokenOutCount", "18.518505", BASIC],
  ["BASIC", "longContextTokenOutReasoningCount", "18.518505", BASIC],
  ["BASIC", "longContextTokenOutAudioCount", "18.518505", BASIC],
  ["BASIC", "longContextTokenOutImageCount", "18.518505", BASIC],
  ["NO_LONG_CONTEXT", "longContextTokenInCachedContextCount", "0.3703701", NO_LONG_CONTEXT], // normal cached rate 0.3
  ["NO_LONG_CONTEXT", "longContextTokenInCacheWriteCount", "7.407402", NO_LONG_CONTEXT], // input 3 × 2
  ["NO_LONG_CONTEXT", "longContextTokenOutReasoningCount", "24.69134", NO_LONG_CONTEXT], // own reasoning rate 20
  ["NO_LONG_CONTEXT", "longContextTokenOutAudioCount", "18.518505", NO_LONG_CONTEXT], // output rate 15
  ["LONG_INPUT_ONLY", "longContextTokenInCacheWriteCount", "9.2592525", LONG_INPUT_ONLY], // long input 6 × 1.25
  ["LONG_INPUT_ONLY", "longContextTokenInCachedContextCount", "3.703701", LONG_INPUT_ONLY], // no cached rate at all: input 3
];

describe("cost rules", () => {
  test.each(RULES)("%s prices %s at %s", async (name, counter, expected, prices) => {
    const modelId = await createModel(t.db, `${name}-${counter}`);
    await setModelPrice(t.db, modelId, prices, JAN);
    await addModelUsage(modelId, { [counter]: TOKENS });
    const total = await modelTotal(modelId);
    expect(total).toMatchObject({ currency: "USD", modelEvents: 1n, modelCost: expected, externalApiCost: "0", cost: expected });
    expect(total.tokens[counter]).toBe(BigInt(TOKENS));
  });

  test("all counters of one row add up", async () => {
    const modelId = await createModel(t.db, "all-counters");
    await setModelPrice(t.db, modelId, FULL, JAN);
    const counters = Object.fromEntries(RULES.filter((r) => r[0] === "FULL").map((r) => [r[1], TOKENS]));
    await addModelUsage(modelId, counters);
    // Sum of the FULL rows above.
    expect((await modelTotal(modelId)).modelCost).toBe("274.845478375");
  });

  test("external API usage costs pricePerUnit per call", async () => {
    const apiId = await createExternalApi(t.db, "per-unit");
    await setExternalApiPrice(t.db, apiId, { unitType: "search", pricePerUnit: "0.005", currency: "USD" }, JAN);
    await addApiUsage(apiId, 3);
    await addApiUsage(apiId, 7);
    const report = await costReport(t.db, { where: { externalApiId: apiId } });
    expect(report.totals).toEqual([
      expect.objectContaining({ currency: "USD", modelEvents: 0n, modelCost: "0", externalApiEvents: 2n, externalApiCalls: 10n, externalApiCost: "0.05", cost: "0.05" }),
    ]);
  });

  test("tiny rates stay exact (no float, no rounding to 2 places)", async () => {
    const modelId = await createModel(t.db, "tiny");
    await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: 0.000000000001, costOutTokensPerMillion: 0.1 }, JAN);
    await addModelUsage(modelId, { tokenInCount: 1, tokenOutCount: 3 });
    // 1 × 1e-12 / 1e6 + 3 × 0.1 / 1e6
    expect((await modelTotal(modelId)).modelCost).toBe("0.000000300000000001");
  });
});

describe("price history", () => {
  test("usage before a price change keeps the old price, usage from the change on gets the new one", async () => {
    const modelId = await createModel(t.db, "changes");
    await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: "2.5", costOutTokensPerMillion: "10" }, JAN);
    await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "8" }, JUN);
    await addModelUsage(modelId, { tokenInCount: 1_000_000, tokenOutCount: 100_000 }, new Date(JUN.getTime() - 1)); // 2.5 + 1
    await addModelUsage(modelId, { tokenInCount: 1_000_000, tokenOutCount: 100_000 }, JUN); // 2 + 0.8
    await addModelUsage(modelId, { tokenInCount: 500_000 }, new Date("2025-07-15T00:00:00Z")); // 1

    expect((await modelTotal(modelId)).modelCost).toBe("7.3");
    const monthly = await costReport(t.db, { where: { modelId }, bucket: "month" });
    expect(monthly.rows.map((r) => [r.bucketStart?.toISOString(), r.modelEvents, r.modelCost])).toEqual([
      ["2025-05-01T00:00:00.000Z", 1n, "3.5"],
      ["2025-06-01T00:00:00.000Z", 1n, "2.8"],
      ["2025-07-01T00:00:00.000Z", 1n, "1"],
    ]);
  });

  test("an external API price change splits the same way", async () => {
    const apiId = await createExternalApi(t.db, "api-changes");
    await setExternalApiPrice(t.db, apiId, { unitType: "call", pricePerUnit: "0.01", currency: "USD" }, JAN);
    await setExternalApiPrice(t.db, apiId, { unitType: "call", pricePerUnit: "0.004", currency: "USD" }, JUN);
    await addApiUsage(apiId, 100, new Date("2025-05-31T23:59:59Z")); // 1
    await addApiUsage(apiId, 100, JUN); // 0.4
    const report = await costReport(t.db, { where: { externalApiId: apiId } });
    expect(report.totals.map((x) => [x.currency, x.externalApiCalls, x.externalApiCost])).toEqual([["USD", 200n, "1.4"]]);
  });

  test("usage with no price period in force is reported unpriced, never as 0", async () => {
    const modelId = await createModel(t.db, "late-price");
    await setModelPrice(t.db, modelId, BASIC, JUN);
    const never = await createModel(t.db, "never-priced");
    await addModelUsage(modelId, { tokenInCount: 1_000_000 }, FEB_1); // before the first period
    await addModelUsage(modelId, { tokenInCount: 1_000_000 }, new Date("2025-06-02T00:00:00Z")); // 3
    await addModelUsage(never, { tokenOutCount: 42 });
    const apiId = await createExternalApi(t.db, "unpriced-api");
    await addApiUsage(apiId, 5);

    const report = await costReport(t.db, { where: { modelId: [modelId, never], externalApiId: apiId }, groupBy: "modelId" });
    expect(report.rows.map((r) => [r.modelId, r.currency, r.modelEvents, r.externalApiCalls, r.cost])).toEqual([
      [modelId, "USD", 1n, 0n, "3"],
      [modelId, null, 1n, 0n, null],
      [never, null, 1n, 0n, null],
      [null, null, 0n, 5n, null],
    ]);
    expect(report.unpricedEvents).toBe(3n);
    expect(report.totals).toEqual([
      expect.objectContaining({ currency: "USD", cost: "3", modelEvents: 1n }),
      expect.objectContaining({ currency: null, cost: null, modelCost: null, externalApiCost: null, modelEvents: 2n, externalApiEvents: 1n }),
    ]);
    expect(report.totals[1].tokens).toMatchObject({ tokenInCount: 1_000_000n, tokenOutCount: 42n });
  });
});

describe("currencies", () => {
  test("are never added together: rows and totals per currency", async () => {
    const agentId = await createAgent(t.db);
    const usd = await createModel(t.db, "usd-model");
    const eur = await createModel(t.db, "eur-model");
    const switches = await createModel(t.db, "switches-currency");
    const api = await createExternalApi(t.db, "chf-api");
    await setModelPrice(t.db, usd, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "2" }, JAN);
    await setModelPrice(t.db, eur, { currency: "EUR", costInTokensPerMillion: "0.9", costOutTokensPerMillion: "1.8" }, JAN);
    await setModelPrice(t.db, switches, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
    await setModelPrice(t.db, switches, { currency: "EUR", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JUN);
    await setExternalApiPrice(t.db, api, { unitType: "page", pricePerUnit: "0.02", currency: "CHF" }, JAN);
    await addModelUsage(usd, { tokenInCount: 1_000_000, tokenOutCount: 1_000_000 }, FEB_1, agentId); // USD 3
    await addModelUsage(eur, { tokenInCount: 1_000_000, tokenOutCount: 1_000_000 }, FEB_1, agentId); // EUR 2.7
    await addModelUsage(switches, { tokenInCount: 500_000 }, FEB_1, agentId); // USD 0.5
    await addModelUsage(switches, { tokenInCount: 500_000 }, new Date("2025-07-01T00:00:00Z"), agentId); // EUR 0.5
    await addApiUsage(api, 50, FEB_1, agentId); // CHF 1

    const byAgent = await costReport(t.db, { where: { agentId }, groupBy: ["agentId"] });
    expect(byAgent.rows.map((r) => [r.agentId, r.currency, r.modelCost, r.externalApiCost, r.cost])).toEqual([
      [agentId, "CHF", "0", "1", "1"],
      [agentId, "EUR", "3.2", "0", "3.2"],
      [agentId, "USD", "3.5", "0", "3.5"],
    ]);
    expect(byAgent.totals.map((x) => [x.currency, x.cost])).toEqual([
      ["CHF", "1"],
      ["EUR", "3.2"],
      ["USD", "3.5"],
    ]);
    expect(byAgent.unpricedEvents).toBe(0n);
  });
});

describe("validation", () => {
  async function issuesOf(promise: Promise<unknown>): Promise<string[]> {
    const err = await promise.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageValidationError);
    return (err as UsageValidationError).issues.map((i) => i.field);
  }

  test("bad options are rejected field by field", async () => {
    expect(
      await issuesOf(
        costReport(t.db, {
          where: { userId: -1, agentId: [1, 1.5], from: new Date("x"), modelld: 3 } as never,
          groupBy: ["agentId", "day" as never, "agentId"],
          bucket: "year" as never,
          timeZone: "Mars/Olympus_Mons",
          groupby: "userId",
        } as never),
      ),
    ).toEqual(["groupby", "where.userId", "where.agentId[1]", "where.from", "where.modelld", "groupBy", "groupBy", "bucket", "timeZone"]);
    expect(await issuesOf(costReport(t.db, { timeZone: "+02:00" }))).toEqual(["timeZone"]);
    expect(await issuesOf(costReport(t.db, { where: { from: JUN, to: JAN } }))).toEqual(["where.to"]);
  });

  test("the agent tree report checks its agent", async () => {
    expect(await issuesOf(agentTreeCostReport(t.db, 0))).toEqual(["agentId"]);
    expect(await issuesOf(agentTreeCostReport(t.db, 1, { where: { agentId: 2 } as never }))).toEqual(["where.agentId"]);
    const err = await agentTreeCostReport(t.db, 777_777).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownReferenceError);
    expect(err).toMatchObject({ table: "ps_agents", id: 777_777 });
  });
});
