import {
  listExternalApiPrices,
  listModelPrices,
  setExternalApiPrice,
  setModelPrice,
  syncPricesFromConfiguration,
  UnknownReferenceError,
  UsageValidationError,
} from "../src";
import { createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.dispose());

const JAN = new Date("2025-01-01T00:00:00Z");
const JUN = new Date("2025-06-01T00:00:00Z");

/** Runs `fn`, expects a UsageValidationError, and returns its issues as "field: reason" strings. */
async function validationIssues(fn: () => Promise<unknown>): Promise<string[]> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageValidationError);
    return (err as UsageValidationError).issues.map((i) => `${i.field}: ${i.reason}`);
  }
  throw new Error("expected a UsageValidationError");
}

describe("setModelPrice", () => {
  test("stores every rate exactly as its decimal text, floats included", async () => {
    const modelId = await createModel(t.db, "exact");
    const period = await setModelPrice(
      t.db,
      modelId,
      {
        currency: "usd",
        costInTokensPerMillion: 0.075,
        costOutTokensPerMillion: "0.30",
        costInCachedContextTokensPerMillion: 0.1 + 0.2, // 0.30000000000000004 has 17 decimals: rejected below
        cacheWriteInputCostMultiplier: 1.25,
        longContextTokenThreshold: 200_000,
        longContextCostInTokensPerMillion: "0.15",
        longContextCostInCachedContextTokensPerMillion: "0.0375",
        longContextCostOutTokensPerMillion: 0.6,
        costOutReasoningTokensPerMillion: "0.3",
        costOutAudioTokensPerMillion: 12,
        costOutImageTokensPerMillion: "40.000000000001",
      },
      JAN,
    ).catch((e: unknown) => e);
    expect(period).toBeInstanceOf(UsageValidationError);
    expect((period as UsageValidationError).issues).toEqual([
      { field: "costInCachedContextTokensPerMillion", reason: "has more than 12 decimal places" },
    ]);

    const stored = await setModelPrice(
      t.db,
      modelId,
      {
        currency: "usd",
        costInTokensPerMillion: 0.075,
        costOutTokensPerMillion: "0.30",
        costInCachedContextTokensPerMillion: 0.01875,
        cacheWriteInputCostMultiplier: 1.25,
        longContextTokenThreshold: 200_000,
        longContextCostInTokensPerMillion: "0.15",
        longContextCostInCachedContextTokensPerMillion: "0.0375",
        longContextCostOutTokensPerMillion: 0.6,
        costOutReasoningTokensPerMillion: "0.3",
        costOutAudioTokensPerMillion: 12,
        costOutImageTokensPerMillion: "40.000000000001",
      },
      JAN,
    );
    expect(stored).toEqual({
      id: expect.any(Number),
      modelId,
      effectiveFrom: JAN,
      effectiveTo: null,
      currency: "USD",
      costInTokensPerMillion: "0.075",
      costOutTokensPerMillion: "0.3",
      costInCachedContextTokensPerMillion: "0.01875",
      cacheWriteInputCostMultiplier: "1.25",
      longContextTokenThreshold: 200000,
      longContextCostInTokensPerMillion: "0.15",
      longContextCostInCachedContextTokensPerMillion: "0.0375",
      longContextCostOutTokensPerMillion: "0.6",
      costOutReasoningTokensPerMillion: "0.3",
      costOutAudioTokensPerMillion: "12",
      costOutImageTokensPerMillion: "40.000000000001",
      // Not given: no tier rates, the flag off, no margin, no web search price.
      flexTokensIn: null,
      flexTokensCachedIn: null,
      flexTokensOut: null,
      priorityTokensIn: null,
      priorityTokensCachedIn: null,
      priorityTokensOut: null,
      fastTokensIn: null,
      fastTokensCachedIn: null,
      fastTokensOut: null,
      flexPriorityTokensEnabledOnLongContext: false,
      regionalProcessingMargin: null,
      costPerThousandWebSearches: null,
      createdAt: expect.any(Date),
    });
    // The database holds the exact decimal, not a float's neighbour.
    const raw = await t.db.prisma.$queryRaw<{ ok: boolean }[]>`
      SELECT cost_in_tokens_per_million = 0.075 AND cost_out_image_tokens_per_million = 40.000000000001 AS ok
      FROM ps_ai_model_price_periods WHERE id = ${stored.id}`;
    expect(raw).toEqual([{ ok: true }]);
  });

  test("a later price starts a new period; the earlier one ends where it starts; same start replaces", async () => {
    const modelId = await createModel(t.db, "history");
    const first = await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: 5, costOutTokensPerMillion: 15 }, JAN);
    expect(first.effectiveTo).toBeNull();
    await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: "2.5", costOutTokensPerMillion: "10" }, JUN);
    // Backdated insert between the two: its effectiveTo is the next period's start.
    const mid = await setModelPrice(
      t.db,
      modelId,
      { currency: "USD", costInTokensPerMillion: 4, costOutTokensPerMillion: 12 },
      new Date("2025-03-01T00:00:00Z"),
    );
    expect(mid.effectiveTo).toEqual(JUN);
    // Same start again: the period is corrected, not duplicated.
    await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "8" }, JUN);

    const history = await listModelPrices(t.db, { modelId });
    expect(history.map((p) => [p.effectiveFrom.toISOString(), p.effectiveTo?.toISOString() ?? null, p.costInTokensPerMillion, p.costOutTokensPerMillion])).toEqual([
      ["2025-01-01T00:00:00.000Z", "2025-03-01T00:00:00.000Z", "5", "15"],
      ["2025-03-01T00:00:00.000Z", "2025-06-01T00:00:00.000Z", "4", "12"],
      ["2025-06-01T00:00:00.000Z", null, "2", "8"],
    ]);
  });

  test("without effectiveFrom the period starts at the database's now", async () => {
    const modelId = await createModel(t.db, "now");
    const before = Date.now() - 60_000;
    const p = await setModelPrice(t.db, modelId, { currency: "EUR", costInTokensPerMillion: 1, costOutTokensPerMillion: 2 });
    expect(p.effectiveFrom.getTime()).toBeGreaterThan(before);
    expect(p.effectiveFrom.getTime()).toBeLessThan(Date.now() + 60_000);
  });

  test("bad prices are rejected with every field named, and nothing is written", async () => {
    const modelId = await createModel(t.db, "invalid");
    const issues = await validationIssues(() =>
      setModelPrice(
        t.db,
        modelId,
        {
          currency: "",
          costInTokensPerMillion: -1,
          costOutTokensPerMillion: Number.NaN,
          costInCachedContextTokensPerMillion: "abc",
          cacheWriteInputCostMultiplier: Number.POSITIVE_INFINITY,
          longContextTokenThreshold: 1.5,
          longContextCostOutTokensPerMillion: "1e12",
          costOutAudioTokensPerMillion: {} as unknown as string,
        },
        new Date("not a date"),
      ),
    );
    expect(issues).toEqual([
      "effectiveFrom: must be a valid Date, got Invalid Date",
      "currency: is missing",
      "costInTokensPerMillion: must not be negative",
      "costOutTokensPerMillion: is NaN",
      'costInCachedContextTokensPerMillion: must be a decimal number, got "abc"',
      "cacheWriteInputCostMultiplier: must be finite",
      "longContextCostOutTokensPerMillion: is too large (at most 12 digits before the decimal point)",
      "costOutAudioTokensPerMillion: must be a number or a decimal string",
      "longContextTokenThreshold: must be a positive integer up to 2147483647",
    ]);
    const missing = await validationIssues(() =>
      setModelPrice(t.db, 0, { currency: "USD" } as unknown as Parameters<typeof setModelPrice>[2]),
    );
    expect(missing).toEqual([
      "modelId: must be a positive integer id",
      "costInTokensPerMillion: is missing",
      "costOutTokensPerMillion: is missing",
    ]);
    expect(await listModelPrices(t.db, { modelId })).toEqual([]);
  });

  test("an unknown model is an UnknownReferenceError", async () => {
    const err = await setModelPrice(t.db, 999_999, { currency: "USD", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownReferenceError);
    expect(err).toMatchObject({ table: "ps_ai_models", id: 999_999 });
  });
});

describe("setExternalApiPrice", () => {
  test("stores the price adapter exactly and keeps its history", async () => {
    const apiId = await createExternalApi(t.db, "search-hist");
    await setExternalApiPrice(t.db, apiId, { unitType: "search", pricePerUnit: 0.005, currency: "USD" }, JAN);
    const later = await setExternalApiPrice(t.db, apiId, { unitType: "search", pricePerUnit: "0.0045", currency: "USD" }, JUN);
    expect(later).toEqual({
      id: expect.any(Number),
      externalApiId: apiId,
      effectiveFrom: JUN,
      effectiveTo: null,
      unitType: "search",
      pricePerUnit: "0.0045",
      currency: "USD",
      createdAt: expect.any(Date),
    });
    const history = await listExternalApiPrices(t.db, { externalApiId: apiId });
    expect(history.map((p) => [p.pricePerUnit, p.effectiveTo?.toISOString() ?? null])).toEqual([
      ["0.005", "2025-06-01T00:00:00.000Z"],
      ["0.0045", null],
    ]);
  });

  test("bad adapters and unknown APIs are typed errors", async () => {
    const apiId = await createExternalApi(t.db, "bad");
    expect(
      await validationIssues(() =>
        setExternalApiPrice(t.db, apiId, { unitType: " ", pricePerUnit: "-0.01", currency: undefined as unknown as string }),
      ),
    ).toEqual(["unitType: must be a non-empty string", "pricePerUnit: must not be negative", "currency: is missing"]);
    const err = await setExternalApiPrice(t.db, 888_888, { unitType: "call", pricePerUnit: 1, currency: "USD" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownReferenceError);
    expect(err).toMatchObject({ table: "ps_external_apis", id: 888_888 });
    expect(await listExternalApiPrices(t.db, { externalApiId: apiId })).toEqual([]);
  });
});

describe("syncPricesFromConfiguration", () => {
  test("records configured prices, then a new period only where the configuration changed", async () => {
    // Its own database: sync looks at every model and API.
    const own = await openTestDatabase();
    try {
      const db = own.db;
      const prices = { currency: "USD", costInTokensPerMillion: 2.5, costOutTokensPerMillion: 10, costInCachedContextTokensPerMillion: 1.25 };
      const gpt = await createModel(db, "gpt", { prices });
      const mini = await createModel(db, "mini", { prices: { currency: "USD", costInTokensPerMillion: "0.15", costOutTokensPerMillion: "0.6" } });
      const unpriced = await createModel(db, "unpriced", { temperature: 0.2 });
      const search = await createExternalApi(db, "search", { unitType: "search", pricePerUnit: 0.005, currency: "USD" });
      const noAdapter = await createExternalApi(db, "scrape", {});

      const first = await syncPricesFromConfiguration(db, { effectiveFrom: JAN });
      expect(first.modelPeriods.map((p) => [p.modelId, p.effectiveFrom.toISOString(), p.costInTokensPerMillion])).toEqual([
        [gpt, "1970-01-01T00:00:00.000Z", "2.5"],
        [mini, "1970-01-01T00:00:00.000Z", "0.15"],
      ]);
      expect(first.externalApiPeriods.map((p) => [p.externalApiId, p.pricePerUnit, p.unitType])).toEqual([[search, "0.005", "search"]]);
      expect(first).toMatchObject({ unchanged: 0, modelsWithoutPrices: [unpriced], externalApisWithoutPrices: [noAdapter] });

      // Same configuration (written differently: "2.50" vs 2.5): nothing new.
      await db.prisma.psAiModel.update({ where: { id: gpt }, data: { configuration: { prices: { ...prices, costInTokensPerMillion: "2.50" } } } });
      const again = await syncPricesFromConfiguration(db, { effectiveFrom: JAN });
      expect(again).toMatchObject({ modelPeriods: [], externalApiPeriods: [], unchanged: 3 });

      // The host app lowers gpt's price and the search price: new periods from JUN.
      await db.prisma.psAiModel.update({ where: { id: gpt }, data: { configuration: { prices: { ...prices, costOutTokensPerMillion: 8 } } } });
      await db.prisma.psExternalApi.update({ where: { id: search }, data: { priceAdapter: { unitType: "search", pricePerUnit: "0.004", currency: "USD" } } });
      const changed = await syncPricesFromConfiguration(db, { effectiveFrom: JUN });
      expect(changed.modelPeriods.map((p) => [p.modelId, p.effectiveFrom.toISOString(), p.costOutTokensPerMillion])).toEqual([
        [gpt, "2025-06-01T00:00:00.000Z", "8"],
      ]);
      expect(changed.externalApiPeriods.map((p) => [p.externalApiId, p.effectiveFrom.toISOString(), p.pricePerUnit])).toEqual([
        [search, "2025-06-01T00:00:00.000Z", "0.004"],
      ]);
      expect(changed.unchanged).toBe(1);
      expect((await listModelPrices(db, { modelId: gpt })).map((p) => [p.costOutTokensPerMillion, p.effectiveTo?.toISOString() ?? null])).toEqual([
        ["10", "2025-06-01T00:00:00.000Z"],
        ["8", null],
      ]);
      expect((await listModelPrices(db)).map((p) => p.modelId)).toEqual([gpt, gpt, mini]);

      // A malformed price anywhere: every bad field named, nothing written (not even the good change).
      await db.prisma.psAiModel.update({ where: { id: mini }, data: { configuration: { prices: { costInTokensPerMillion: "0.1", costOutTokensPerMillion: -2 } } } });
      await db.prisma.psAiModel.update({ where: { id: gpt }, data: { configuration: { prices: { ...prices, costOutTokensPerMillion: 7 } } } });
      const issues = await validationIssues(() => syncPricesFromConfiguration(db));
      expect(issues).toEqual([
        `ps_ai_models[${mini}].configuration.prices.currency: is missing`,
        `ps_ai_models[${mini}].configuration.prices.costOutTokensPerMillion: must not be negative`,
      ]);
      expect(await listModelPrices(db, { modelId: gpt })).toHaveLength(2);
    } finally {
      await own.dispose();
    }
  });

  test("a bad date option is a validation error", async () => {
    expect(await validationIssues(() => syncPricesFromConfiguration(t.db, { effectiveFrom: new Date(Number.NaN) }))).toEqual([
      "effectiveFrom: must be a valid Date, got Invalid Date",
    ]);
  });
});
