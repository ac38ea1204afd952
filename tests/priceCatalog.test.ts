import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  costReport,
  importPriceCatalog,
  listModelPrices,
  priceFromCatalogEntry,
  recordModelUsage,
  setModelPrice,
  UsageValidationError,
} from "../src";
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";
import { createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

/** The sample the package ships: entries copied unchanged from LiteLLM's catalog. */
const SAMPLE_FILE = path.resolve(__dirname, "..", "data", "litellm-sample-2026-11.json");
const SAMPLE = JSON.parse(fs.readFileSync(SAMPLE_FILE, "utf8")) as Record<string, Record<string, unknown>>;

const OCT_15 = new Date("2026-10-15T12:00:00Z");
const NOV_1 = new Date("2026-11-01T00:00:00Z");
const NOV_10 = new Date("2026-11-10T12:00:00Z");

/** Runs `fn`, expects a UsageValidationError, and returns its issues as "field: reason" strings. */
async function validationIssues(fn: () => unknown): Promise<string[]> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageValidationError);
    return (err as UsageValidationError).issues.map((i) => `${i.field}: ${i.reason}`);
  }
  throw new Error("expected a UsageValidationError");
}

describe("priceFromCatalogEntry: each sample entry, per million tokens, exactly", () => {
  const map = (key: string) => priceFromCatalogEntry(SAMPLE[key], key);

  test("gpt-4o: cached input and priority rates; batch prices are reported", () => {
    expect(map("gpt-4o")).toEqual({
      price: {
        currency: "USD",
        costInTokensPerMillion: "2.5",
        costOutTokensPerMillion: "10",
        costInCachedContextTokensPerMillion: "1.25",
        priorityTokensIn: "4.25",
        priorityTokensCachedIn: "2.125",
        priorityTokensOut: "17",
      },
      unknownFields: [
        { field: "input_cost_per_token_batches", reason: "batch API prices: ps-usage has no batch tier" },
        { field: "output_cost_per_token_batches", reason: "batch API prices: ps-usage has no batch tier" },
      ],
    });
  });

  test("gpt-4o-mini", () => {
    expect(map("gpt-4o-mini").price).toEqual({
      currency: "USD",
      costInTokensPerMillion: "0.15",
      costOutTokensPerMillion: "0.6",
      costInCachedContextTokensPerMillion: "0.075",
      priorityTokensIn: "0.25",
      priorityTokensCachedIn: "0.125",
      priorityTokensOut: "1",
    });
  });

  test("gpt-5: flex and priority tiers", () => {
    expect(map("gpt-5")).toEqual({
      price: {
        currency: "USD",
        costInTokensPerMillion: "1.25",
        costOutTokensPerMillion: "10",
        costInCachedContextTokensPerMillion: "0.125",
        flexTokensIn: "0.625",
        flexTokensCachedIn: "0.0625",
        flexTokensOut: "5",
        priorityTokensIn: "2.5",
        priorityTokensCachedIn: "0.25",
        priorityTokensOut: "20",
      },
      unknownFields: [],
    });
  });

  test("claude-sonnet-4-5: cache writes as a multiplier, the 200k tier, web searches; 1-hour cache writes reported", () => {
    expect(map("claude-sonnet-4-5")).toEqual({
      price: {
        currency: "USD",
        costInTokensPerMillion: "3",
        costOutTokensPerMillion: "15",
        costInCachedContextTokensPerMillion: "0.3",
        cacheWriteInputCostMultiplier: "1.25", // 3.75e-06 / 3e-06
        // "above 200k tokens" is > 200000; ps-usage's threshold is reached at >=.
        longContextTokenThreshold: 200001,
        longContextCostInTokensPerMillion: "6",
        longContextCostOutTokensPerMillion: "22.5",
        longContextCostInCachedContextTokensPerMillion: "0.6",
        costPerThousandWebSearches: "10", // 0.01 per search
      },
      unknownFields: [
        {
          field: "cache_creation_input_token_cost_above_1hr",
          reason: "1-hour cache writes: ps-usage records cache writes in one counter, priced at the input rate × cacheWriteInputCostMultiplier",
        },
        {
          field: "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
          reason: "1-hour cache writes: ps-usage records cache writes in one counter, priced at the input rate × cacheWriteInputCostMultiplier",
        },
      ],
    });
  });

  test("gemini/gemini-2.5-pro: long context; its priority long-context rates are the standard ones (flag off)", () => {
    expect(map("gemini/gemini-2.5-pro")).toEqual({
      price: {
        currency: "USD",
        costInTokensPerMillion: "1.25",
        costOutTokensPerMillion: "10",
        costInCachedContextTokensPerMillion: "0.125",
        priorityTokensIn: "1.25",
        priorityTokensOut: "10",
        longContextTokenThreshold: 200001,
        longContextCostInTokensPerMillion: "2.5",
        longContextCostOutTokensPerMillion: "15",
        longContextCostInCachedContextTokensPerMillion: "0.25",
        costPerThousandWebSearches: "35",
      },
      unknownFields: [],
    });
  });

  test("gemini/gemini-3-pro-preview: priority long-context rates scale with the tier (flag on); decimal, not float, arithmetic", () => {
    // What float arithmetic would store for 3.6e-06 per token: the mapping must not go through it.
    expect(String(3.6e-6 * 1e6)).toBe("3.5999999999999996");
    expect(map("gemini/gemini-3-pro-preview").price).toEqual({
      currency: "USD",
      costInTokensPerMillion: "2",
      costOutTokensPerMillion: "12",
      costInCachedContextTokensPerMillion: "0.2",
      priorityTokensIn: "3.6",
      priorityTokensCachedIn: "0.36",
      priorityTokensOut: "21.6",
      longContextTokenThreshold: 200001,
      longContextCostInTokensPerMillion: "4",
      longContextCostOutTokensPerMillion: "18",
      longContextCostInCachedContextTokensPerMillion: "0.4",
      // 7.2e-06 = 3.6e-06 × 4e-06 / 2e-06, and so for cached input and output.
      flexPriorityTokensEnabledOnLongContext: true,
      costPerThousandWebSearches: "14",
    });
  });

  test("gemini/gemini-2.5-flash: reasoning output; audio input reported", () => {
    expect(map("gemini/gemini-2.5-flash")).toEqual({
      price: {
        currency: "USD",
        costInTokensPerMillion: "0.3",
        costOutTokensPerMillion: "2.5",
        costInCachedContextTokensPerMillion: "0.03",
        costOutReasoningTokensPerMillion: "2.5",
        costPerThousandWebSearches: "35",
      },
      unknownFields: [
        { field: "input_cost_per_audio_token", reason: "audio input tokens: ps-usage has no audio input counter (they count as input tokens)" },
      ],
    });
  });

  test("audio, image and embedding models: what fits is mapped, the rest reported", () => {
    expect(map("gpt-4o-audio-preview").price).toEqual({
      currency: "USD",
      costInTokensPerMillion: "2.5",
      costOutTokensPerMillion: "10",
      costOutAudioTokensPerMillion: "80",
    });
    expect(map("gpt-image-1.5")).toEqual({
      price: {
        currency: "USD",
        costInTokensPerMillion: "5",
        costOutTokensPerMillion: "10",
        costInCachedContextTokensPerMillion: "1.25",
        costOutImageTokensPerMillion: "32",
      },
      unknownFields: [
        { field: "input_cost_per_image_token", reason: "image input tokens: ps-usage has no image input counter (they count as input tokens)" },
      ],
    });
    expect(map("gemini/gemini-embedding-001")).toEqual({
      price: { currency: "USD", costInTokensPerMillion: "0.15", costOutTokensPerMillion: "0" },
      unknownFields: [],
    });
  });

  test("an image model priced per pixel has no price; web search costs that depend on the context size are reported", () => {
    expect(map("1024-x-1024/dall-e-2")).toEqual({
      price: null,
      unpriced: "no input_cost_per_token and output_cost_per_token (ps-usage prices tokens)",
      unknownFields: [
        { field: "input_cost_per_pixel", reason: "not priced per token: ps-usage prices tokens (and web searches)" },
        { field: "output_cost_per_pixel", reason: "not priced per token: ps-usage prices tokens (and web searches)" },
      ],
    });
    const mini = map("gpt-4o-mini-2024-07-18");
    expect(mini.price).not.toHaveProperty("costPerThousandWebSearches");
    expect(mini.unknownFields).toContainEqual({
      field: "search_context_cost_per_query",
      reason: "the cost depends on the search context size (low 0.025, medium 0.0275, high 0.03); ps-usage records only a count of web searches",
    });
  });

  test("a cache-write cost that is no exact multiple of the input rate is reported, never rounded", () => {
    const r = priceFromCatalogEntry({ input_cost_per_token: 3e-6, output_cost_per_token: 1.1e-6, cache_creation_input_token_cost: 1e-6 }, "thirds");
    expect(r.price).toEqual({ currency: "USD", costInTokensPerMillion: "3", costOutTokensPerMillion: "1.1" });
    expect(r.unknownFields).toEqual([
      {
        field: "cache_creation_input_token_cost",
        reason: "0.000001 ÷ input 0.000003 is not an exact decimal of at most 12 places; cacheWriteInputCostMultiplier left unset (not rounded)",
      },
    ]);
  });

  test("metadata is ignored, an unknown field is listed, a malformed rate throws naming it", async () => {
    const r = priceFromCatalogEntry(
      { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, mode: "chat", supports_vision: true, max_tokens: 10, provider_specific_entry: { us: 1.1 } },
      "m",
    );
    expect(r.unknownFields).toEqual([{ field: "provider_specific_entry", reason: "not a price field this importer knows" }]);
    expect(
      await validationIssues(() => priceFromCatalogEntry({ input_cost_per_token: -1e-6, output_cost_per_token: "cheap" }, "bad/model")),
    ).toEqual([
      'catalog["bad/model"].input_cost_per_token: must not be negative, got -0.000001',
      'catalog["bad/model"].output_cost_per_token: must be a non-negative number, got "cheap"',
    ]);
    expect(await validationIssues(() => priceFromCatalogEntry([], "list"))).toEqual(['catalog["list"]: must be an object of prices']);
  });
});

describe("importPriceCatalog", () => {
  let t: TestDatabase;
  let gpt4o: number;
  let claude: number;
  let gemini: number;
  let dalle: number;
  let inHouse: number;

  beforeAll(async () => {
    t = await openTestDatabase();
    // Matched by configuration.model (PolicySynth's provider model id), by name, by
    // provider/model, by an explicit mapping, and not at all.
    gpt4o = await createModel(t.db, "GPT-4o", { provider: "openai", model: "gpt-4o" });
    claude = await createModel(t.db, "claude-sonnet-4-5", { provider: "anthropic" });
    gemini = await createModel(t.db, "Gemini Pro", { provider: "gemini", model: "gemini-2.5-pro" });
    dalle = await createModel(t.db, "DALL-E 2 (square)");
    inHouse = await createModel(t.db, "in-house-llm", { model: "in-house-llm-v2" });

    // GPT-4o had a price before the catalog; claude none.
    await setModelPrice(t.db, gpt4o, { currency: "USD", costInTokensPerMillion: 5, costOutTokensPerMillion: 15 }, new Date("2026-01-01T00:00:00Z"));
    for (const createdAt of [OCT_15, NOV_10]) {
      await recordModelUsage(t.db, { userId: 1, modelId: gpt4o, tokenInCount: 1_000_000, tokenOutCount: 100_000, createdAt });
      await recordModelUsage(t.db, { userId: 1, modelId: claude, tokenInCount: 1_000_000, createdAt });
    }
  });
  afterAll(() => t.dispose());

  const options = { effectiveFrom: NOV_1, models: { "DALL-E 2 (square)": "1024-x-1024/dall-e-2" } };

  test("a dry run reports everything and writes nothing", async () => {
    const before = await listModelPrices(t.db);
    const r = await importPriceCatalog(t.db, SAMPLE_FILE, { ...options, dryRun: true });
    expect(r.dryRun).toBe(true);
    expect(r.effectiveFrom).toEqual(NOV_1);
    expect(r.created.map((c) => [c.modelId, c.catalogKey, c.periodId, c.replaced])).toEqual([
      [gpt4o, "gpt-4o", null, false],
      [claude, "claude-sonnet-4-5", null, false],
      [gemini, "gemini/gemini-2.5-pro", null, false],
    ]);
    expect(await listModelPrices(t.db)).toEqual(before);
  });

  test("periods start at effectiveFrom; usage before it keeps its price (or stays unpriced)", async () => {
    const r = await importPriceCatalog(t.db, SAMPLE_FILE, options);
    expect(r.created).toEqual([
      { modelId: gpt4o, name: "GPT-4o", catalogKey: "gpt-4o", periodId: expect.any(Number), replaced: false, price: priceFromCatalogEntry(SAMPLE["gpt-4o"], "gpt-4o").price },
      { modelId: claude, name: "claude-sonnet-4-5", catalogKey: "claude-sonnet-4-5", periodId: expect.any(Number), replaced: false, price: expect.objectContaining({ cacheWriteInputCostMultiplier: "1.25" }) },
      { modelId: gemini, name: "Gemini Pro", catalogKey: "gemini/gemini-2.5-pro", periodId: expect.any(Number), replaced: false, price: expect.objectContaining({ longContextTokenThreshold: 200001 }) },
    ]);
    expect(r.unchanged).toEqual([]);
    expect(r.unpriced).toEqual([
      { modelId: dalle, name: "DALL-E 2 (square)", catalogKey: "1024-x-1024/dall-e-2", reason: "no input_cost_per_token and output_cost_per_token (ps-usage prices tokens)" },
    ]);
    expect(r.modelsWithoutEntry).toEqual([{ modelId: inHouse, name: "in-house-llm" }]);
    expect(r.entriesWithoutModel).toBe(8); // 12 entries, 4 matched; sample_spec is not an entry
    expect(r.unknownFields.map((u) => `${u.catalogKey}: ${u.field}`)).toEqual([
      "1024-x-1024/dall-e-2: input_cost_per_pixel",
      "1024-x-1024/dall-e-2: output_cost_per_pixel",
      "claude-sonnet-4-5: cache_creation_input_token_cost_above_1hr",
      "claude-sonnet-4-5: cache_creation_input_token_cost_above_1hr_above_200k_tokens",
      "gpt-4o: input_cost_per_token_batches",
      "gpt-4o: output_cost_per_token_batches",
    ]);

    const history = await listModelPrices(t.db, { modelId: gpt4o });
    expect(history.map((p) => [p.effectiveFrom, p.effectiveTo, p.costInTokensPerMillion, p.costOutTokensPerMillion, p.costInCachedContextTokensPerMillion])).toEqual([
      [new Date("2026-01-01T00:00:00Z"), NOV_1, "5", "15", null],
      [NOV_1, null, "2.5", "10", "1.25"],
    ]);
    const [claudePeriod] = await listModelPrices(t.db, { modelId: claude });
    expect(claudePeriod).toMatchObject({
      effectiveFrom: NOV_1,
      costInTokensPerMillion: "3",
      costOutTokensPerMillion: "15",
      costInCachedContextTokensPerMillion: "0.3",
      cacheWriteInputCostMultiplier: "1.25",
      longContextTokenThreshold: 200001,
      longContextCostInTokensPerMillion: "6",
      longContextCostInCachedContextTokensPerMillion: "0.6",
      longContextCostOutTokensPerMillion: "22.5",
    });

    // October at the old GPT-4o price (5 + 1.5), November at the catalog's (2.5 + 1); Claude's
    // October usage had no price and still has none.
    const report = await costReport(t.db, { groupBy: ["modelId"], bucket: "month", where: { modelId: [gpt4o, claude] } });
    expect(report.rows.map((row) => [row.bucketStart, row.modelId, row.currency, row.cost])).toEqual([
      [new Date("2026-10-01T00:00:00Z"), gpt4o, "USD", "6.5"],
      [new Date("2026-10-01T00:00:00Z"), claude, null, null],
      [new Date("2026-11-01T00:00:00Z"), gpt4o, "USD", "3.5"],
      [new Date("2026-11-01T00:00:00Z"), claude, "USD", "3"],
    ]);
  });

  test("importing the same catalog again writes nothing", async () => {
    const count = await t.db.prisma.psAiModelPricePeriod.count();
    const r = await importPriceCatalog(t.db, SAMPLE_FILE, options);
    expect(r.created).toEqual([]);
    expect(r.unchanged.map((u) => [u.modelId, u.catalogKey])).toEqual([
      [gpt4o, "gpt-4o"],
      [claude, "claude-sonnet-4-5"],
      [gemini, "gemini/gemini-2.5-pro"],
    ]);
    expect(await t.db.prisma.psAiModelPricePeriod.count()).toBe(count);
  });

  test("all or nothing: one malformed entry names its field and nothing is written", async () => {
    const count = await t.db.prisma.psAiModelPricePeriod.count();
    const catalog = {
      "in-house-llm-v2": { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 },
      "gpt-4o": { input_cost_per_token: 1e-6, output_cost_per_token: -2e-6 },
    };
    expect(await validationIssues(() => importPriceCatalog(t.db, catalog, { effectiveFrom: new Date("2026-12-01T00:00:00Z") }))).toEqual([
      'catalog["gpt-4o"].output_cost_per_token: must not be negative, got -0.000002',
    ]);
    expect(await t.db.prisma.psAiModelPricePeriod.count()).toBe(count);
  });

  test("bad files, mappings and dates are typed errors naming the field", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-catalog-"));
    try {
      const notJson = path.join(dir, "prices.json");
      fs.writeFileSync(notJson, "{ not json");
      const list = path.join(dir, "list.json");
      fs.writeFileSync(list, "[]");
      expect(await validationIssues(() => importPriceCatalog(t.db, path.join(dir, "missing.json")))).toEqual([
        `catalog: cannot read ${JSON.stringify(path.join(dir, "missing.json"))}: no such file`,
      ]);
      expect((await validationIssues(() => importPriceCatalog(t.db, notJson)))[0]).toMatch(/^catalog: ".*prices\.json" is not JSON: /);
      expect(await validationIssues(() => importPriceCatalog(t.db, list))).toEqual([`catalog: ${JSON.stringify(list)} must hold a JSON object of model entries`]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(await validationIssues(() => importPriceCatalog(t.db, SAMPLE, { models: { "GPT-4o": "gpt-4o-2099" } }))).toEqual([
      'models["GPT-4o"]: the catalog has no entry "gpt-4o-2099"',
    ]);
    expect(await validationIssues(() => importPriceCatalog(t.db, SAMPLE, { models: { "no such model": "gpt-4o" } }))).toEqual([
      'models["no such model"]: no ps_ai_models row has this id or name',
    ]);
    expect(await validationIssues(() => importPriceCatalog(t.db, SAMPLE, { effectiveFrom: new Date(Number.NaN) }))).toEqual([
      "effectiveFrom: must be a valid Date, got Invalid Date",
    ]);
  });

  test("flex, priority and web search rates reach the price period and price the usage of their tier", async () => {
    const gptPeriod = (await listModelPrices(t.db, { modelId: gpt4o })).at(-1);
    expect(gptPeriod).toMatchObject({ priorityTokensIn: "4.25", priorityTokensCachedIn: "2.125", priorityTokensOut: "17" });
    const [claudePeriod] = await listModelPrices(t.db, { modelId: claude });
    expect(claudePeriod).toMatchObject({ costPerThousandWebSearches: "10" });
    const NOV_20 = new Date("2026-11-20T12:00:00Z");
    await recordModelUsage(t.db, { userId: 1, modelId: gpt4o, serviceTier: "priority", tokenInCount: 1_000_000, tokenOutCount: 100_000, createdAt: NOV_20 });
    await recordModelUsage(t.db, { userId: 1, modelId: claude, webSearchCount: 3, createdAt: NOV_20 });
    const report = await costReport(t.db, { groupBy: ["modelId"], where: { modelId: [gpt4o, claude], from: NOV_20 } });
    // Priority: 1e6 × 4.25 + 1e5 × 17 / 1e6 = 4.25 + 1.7; Claude: 3 searches × 10 / 1000.
    expect(report.rows.map((row) => [row.modelId, row.cost])).toEqual([
      [gpt4o, "5.95"],
      [claude, "0.03"],
    ]);
  });
});

describe("ps-usage prices import", () => {
  let cli: CliDatabase;
  let gpt4o: number;

  beforeAll(async () => {
    cli = await createCliDatabase("ps-usage-prices-");
    expect((await runCli(["migrate", "--db", cli.arg])).code).toBe(0);
    gpt4o = await cli.withDb((db) => createModel(db, "GPT-4o", { provider: "openai", model: "gpt-4o" }));
  });
  afterAll(() => cli.drop());

  test("--dry-run --json reports the plan and writes nothing; then the import, and again unchanged", async () => {
    const dry = await runCli(["prices", "import", SAMPLE_FILE, "--db", cli.arg, "--effective-from", "2026-11-01", "--dry-run", "--json"]);
    expect(dry.stderr).toBe("");
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan).toMatchObject({
      dryRun: true,
      effectiveFrom: "2026-11-01T00:00:00.000Z",
      created: [{ modelId: gpt4o, name: "GPT-4o", catalogKey: "gpt-4o", periodId: null, price: { costInTokensPerMillion: "2.5" } }],
      entriesWithoutModel: 11,
    });
    expect(await cli.withDb((db) => db.prisma.psAiModelPricePeriod.count())).toBe(0);

    // A date without an offset is a wall time in --tz.
    const done = await runCli(["prices", "import", SAMPLE_FILE, "--db", cli.arg, "--effective-from", "2026-11-01", "--tz", "Europe/Berlin"]);
    expect(done.code).toBe(0);
    expect(done.stdout).toContain(`effective from 2026-10-31T23:00:00.000Z.\nStarted 1 price period:\n  #${gpt4o} GPT-4o <- gpt-4o: in 2.5, out 10, cached 1.25 USD/M tokens (period `);
    expect(done.stdout).toContain("  gpt-4o: input_cost_per_token_batches: batch API prices: ps-usage has no batch tier\n");

    const again = await runCli(["prices", "import", SAMPLE_FILE, "--db", cli.arg, "--effective-from", "2026-11-01T00:00+01:00"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`Started 0 price periods.\nUnchanged (the period in force has these prices): #${gpt4o} GPT-4o <- gpt-4o\n`);
  });

  test("a missing file or a bad flag is a usage error (exit 2); a bad rate in the file exits 1 naming it", async () => {
    const missing = await runCli(["prices", "import", "no-such-catalog.json", "--db", cli.arg]);
    expect([missing.code, missing.stderr]).toEqual([2, 'ps-usage: cannot read "no-such-catalog.json": no such file\n']);
    const badDate = await runCli(["prices", "import", SAMPLE_FILE, "--db", cli.arg, "--effective-from", "2026-02-30"]);
    expect(badDate.code).toBe(2);
    expect(badDate.stderr).toContain("--effective-from 2026-02-30 does not exist");
    const badMap = await runCli(["prices", "import", SAMPLE_FILE, "--db", cli.arg, "--map", "GPT-4o=gpt-9"]);
    expect([badMap.code, badMap.stderr]).toEqual([2, 'ps-usage: --map["GPT-4o"]: the catalog has no entry "gpt-9"\n']);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-catalog-cli-"));
    try {
      const file = path.join(dir, "prices.json");
      fs.writeFileSync(file, JSON.stringify({ "gpt-4o": { input_cost_per_token: "2.5e-6", output_cost_per_token: "ten" } }));
      const bad = await runCli(["prices", "import", file, "--db", cli.arg]);
      expect([bad.code, bad.stderr]).toEqual([1, 'ps-usage: Invalid usage input: catalog["gpt-4o"].output_cost_per_token: must be a non-negative number, got "ten"\n']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
