/**
 * Price catalogs in LiteLLM's `model_prices_and_context_window.json` format: one object whose keys
 * are model names (`"gpt-4o"`, `"gemini/gemini-2.5-pro"`) and whose values hold prices per token
 * in US dollars (`input_cost_per_token: 2.5e-06`) beside metadata (`max_tokens`, `mode`,
 * `supports_vision`, …). The key `sample_spec` documents the format and is not a model.
 *
 * `priceFromCatalogEntry` maps one entry to this package's price shape (rates per million tokens,
 * exact decimals); `importPriceCatalog` starts price periods for the models of `ps_ai_models` that
 * a catalog names. What a field means was read from LiteLLM's cost calculator
 * (`litellm/litellm_core_utils/llm_cost_calc/utils.py`, `tool_call_cost_tracking.py`); a field
 * this module does not know, or knows but cannot express, is reported and never guessed.
 */
import fs from "node:fs/promises";
import type { Database } from "../db";
import { UsageValidationError, type FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import {
  checkModelPriceForImport,
  inModelPriceTransaction,
  setModelPriceUnlessUnchanged,
  type CheckedModelPrice,
  type ModelPriceInput,
} from "../prices";
import { dateProblem } from "../validation";

/**
 * A model price as a catalog gives it: a {@link ModelPriceInput} (with the service-tier rates, the
 * margin and the web search price where the entry has them), rates as exact decimal strings per
 * million tokens.
 */
export type CatalogModelPrice = ModelPriceInput;

/** A field of a catalog entry that was not imported, and why. */
export interface CatalogFieldNote {
  readonly field: string;
  readonly reason: string;
}

/** What {@link priceFromCatalogEntry} made of one entry. */
export interface CatalogEntryPrice {
  /** The price, or null when the entry has no per-token input and output price (see `unpriced`). */
  readonly price: CatalogModelPrice | null;
  /** Why there is no price (e.g. an image model priced per image). */
  readonly unpriced?: string;
  /** Price fields that were not imported: unknown ones, and known ones this package cannot hold. */
  readonly unknownFields: readonly CatalogFieldNote[];
}

/** Options of {@link importPriceCatalog}. */
export interface PriceCatalogImportOptions {
  /** When the catalog's prices take effect. Default: now (the database's clock). Usage before it keeps its price. */
  readonly effectiveFrom?: Date;
  /**
   * Explicit matches, checked first: a `ps_ai_models` id (as a string) or name → a catalog key,
   * e.g. `{ "GPT-4o (EU)": "gpt-4o", "7": "gemini/gemini-2.5-pro" }`.
   */
  readonly models?: Readonly<Record<string, string>>;
  /** The catalog's currency. Default and LiteLLM's: `"USD"`. */
  readonly currency?: string;
  /** Work out and report everything, write nothing. */
  readonly dryRun?: boolean;
}

/** A model whose catalog price started a period (or would, on a dry run). */
export interface CatalogImportedModel {
  readonly modelId: number;
  readonly name: string;
  readonly catalogKey: string;
  /** The new period's id; null on a dry run. */
  readonly periodId: number | null;
  /** A period starting exactly at `effectiveFrom` existed and was replaced. */
  readonly replaced: boolean;
  readonly price: CatalogModelPrice;
}

/** What {@link importPriceCatalog} did. */
export interface PriceCatalogImportResult {
  readonly dryRun: boolean;
  readonly effectiveFrom: Date;
  readonly created: readonly CatalogImportedModel[];
  /** Models whose period in force at `effectiveFrom` already has the catalog's prices: nothing written. */
  readonly unchanged: readonly { readonly modelId: number; readonly name: string; readonly catalogKey: string }[];
  /** Models whose entry has no per-token price (priced per image, pixel, second, …): nothing written. */
  readonly unpriced: readonly { readonly modelId: number; readonly name: string; readonly catalogKey: string; readonly reason: string }[];
  /** `ps_ai_models` rows the catalog does not name: their prices are left as they are. */
  readonly modelsWithoutEntry: readonly { readonly modelId: number; readonly name: string }[];
  /** Catalog entries (besides `sample_spec`) that no model matched. */
  readonly entriesWithoutModel: number;
  /** Fields of the matched entries that were not imported, per catalog key. */
  readonly unknownFields: readonly { readonly catalogKey: string; readonly field: string; readonly reason: string }[];
}

/** The key LiteLLM's file uses to document its own format; it is not a model. */
export const CATALOG_SPEC_KEY = "sample_spec";

/**
 * Fields that describe a model rather than price it: ignored without a note. `supports_*` fields
 * are ignored too.
 */
export const CATALOG_METADATA_FIELDS: readonly string[] = [
  "litellm_provider",
  "mode",
  "max_tokens",
  "max_input_tokens",
  "max_output_tokens",
  "output_vector_size",
  "supported_endpoints",
  "supported_modalities",
  "supported_output_modalities",
  "supported_regions",
  "source",
  "metadata",
  "deprecation_date",
  "rpm",
  "tpm",
  "prompt_cache_min_tokens",
  "tool_use_system_prompt_tokens",
  "uses_embed_content",
  "web_search_billing_unit", // checked with search_context_cost_per_query
];
const METADATA = new Set(CATALOG_METADATA_FIELDS);

/** Per-token fields mapped one to one onto a rate per million tokens. */
const DIRECT_RATES: Readonly<Record<string, keyof CatalogModelPrice>> = {
  input_cost_per_token: "costInTokensPerMillion",
  output_cost_per_token: "costOutTokensPerMillion",
  cache_read_input_token_cost: "costInCachedContextTokensPerMillion",
  output_cost_per_reasoning_token: "costOutReasoningTokensPerMillion",
  output_cost_per_audio_token: "costOutAudioTokensPerMillion",
  output_cost_per_image_token: "costOutImageTokensPerMillion",
  input_cost_per_token_flex: "flexTokensIn",
  cache_read_input_token_cost_flex: "flexTokensCachedIn",
  output_cost_per_token_flex: "flexTokensOut",
  input_cost_per_token_priority: "priorityTokensIn",
  cache_read_input_token_cost_priority: "priorityTokensCachedIn",
  output_cost_per_token_priority: "priorityTokensOut",
};

/** Known price fields this package has no place for, and why. */
const UNSUPPORTED: readonly (readonly [RegExp, string])[] = [
  [/^cache_creation_input_token_cost_above_1hr/, "1-hour cache writes: ps-usage records cache writes in one counter, priced at the input rate × cacheWriteInputCostMultiplier"],
  [/^input_cost_per_audio_token$/, "audio input tokens: ps-usage has no audio input counter (they count as input tokens)"],
  [/^input_cost_per_image_token$/, "image input tokens: ps-usage has no image input counter (they count as input tokens)"],
  [/_batches$/, "batch API prices: ps-usage has no batch tier"],
  [/^cache_creation_input_token_cost_(flex|priority)$/, "a service tier's cache-write rate: ps-usage has none (cache writes cost the input rate × cacheWriteInputCostMultiplier)"],
  [/_per_(image|pixel|second|character|query|page|request|video_per_second|audio_per_second)$/, "not priced per token: ps-usage prices tokens (and web searches)"],
];

/** `<base>_above_<N>[k]_tokens[_<tier>]`, the bases LiteLLM's cost calculator tiers. */
const ABOVE = /^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost)_above_(\d+)(k?)_tokens(?:_(flex|priority))?$/;

/** LiteLLM bills these providers' tiers from the threshold on (`>=`), all others only above it. */
const INCLUSIVE_THRESHOLD_PROVIDERS = new Set(["xai"]);

/** Enough digits for any rate numeric(24,12) holds, times a million, exactly. */
const ExactDecimal = Prisma.Decimal.clone({ precision: 1000 });
type Exact = InstanceType<typeof ExactDecimal>;

const DECIMAL_TEXT = /^[+]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** A non-negative number or decimal string as an exact decimal; an issue otherwise. */
function readRate(value: unknown, field: string, issues: FieldIssue[]): Exact | undefined {
  let text: string;
  if (typeof value === "number" && Number.isFinite(value)) text = String(value); // shortest round-trip text: 2.5e-7 stays 2.5e-7
  else if (typeof value === "string" && DECIMAL_TEXT.test(value.trim())) text = value.trim();
  else {
    issues.push({ field, reason: `must be a non-negative number, got ${JSON.stringify(value)}` });
    return undefined;
  }
  const d = new ExactDecimal(text);
  if (d.isNegative() && !d.isZero()) {
    issues.push({ field, reason: `must not be negative, got ${text}` });
    return undefined;
  }
  return d.abs();
}

const perMillion = (d: Exact): string => d.times(1_000_000).toFixed();

/**
 * `a / b` as an exact decimal string, or null when it has no finite decimal expansion (1/3) or
 * more than 12 decimal places (what numeric(24,12) holds). Integer arithmetic, no rounding.
 */
function exactQuotient(a: Exact, b: Exact): string | null {
  if (b.isZero()) return null;
  const [an, ad] = toFraction(a);
  const [bn, bd] = toFraction(b);
  let num = an * bd;
  let den = ad * bn;
  const g = gcd(num, den);
  num /= g;
  den /= g;
  let twos = 0;
  let fives = 0;
  while (den % 2n === 0n) (den /= 2n), twos++;
  while (den % 5n === 0n) (den /= 5n), fives++;
  if (den !== 1n) return null;
  const places = Math.max(twos, fives);
  if (places > 12) return null;
  const scaled = num * 2n ** BigInt(places - twos) * 5n ** BigInt(places - fives);
  return new ExactDecimal(scaled.toString()).dividedBy(new ExactDecimal(10).pow(places)).toFixed();
}

function toFraction(d: Exact): [bigint, bigint] {
  const places = d.decimalPlaces();
  return [BigInt(d.times(new ExactDecimal(10).pow(places)).toFixed()), 10n ** BigInt(places)];
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a < 0n ? -a : a;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `catalog["gpt-4o"].input_cost_per_token`: keys hold dots and slashes, so they are quoted. */
function fieldPath(catalogKey: string, field?: string): string {
  return `catalog[${JSON.stringify(catalogKey)}]${field === undefined ? "" : `.${field}`}`;
}

/**
 * Maps one entry of a LiteLLM price catalog to this package's price shape, exactly: each rate per
 * token times 1,000,000 in decimal arithmetic (`2.5e-07` → `"0.25"`), never in floats.
 *
 * - `input_cost_per_token`, `output_cost_per_token` (both required for a price),
 *   `cache_read_input_token_cost`, `output_cost_per_reasoning/audio/image_token` → the rates of
 *   the same meaning.
 * - `cache_creation_input_token_cost` → `cacheWriteInputCostMultiplier` = creation ÷ input, when
 *   that quotient is an exact decimal of at most 12 places; otherwise it is reported and left
 *   unset (never rounded).
 * - `<rate>_above_<N>k_tokens` → `longContextTokenThreshold` and the long-context rates. LiteLLM
 *   (like the providers) bills the higher tier when the prompt is *above* N×1000 tokens; this
 *   package's threshold is reached at `>=`, so the threshold is N×1000 + 1 (N×1000 for the
 *   providers LiteLLM bills from the threshold on: xai). One tier only; several are reported.
 * - `<rate>_flex` / `<rate>_priority` → `flexTokens*` / `priorityTokens*`. Their
 *   `…_above_<N>k_tokens_<tier>` rates set `flexPriorityTokensEnabledOnLongContext` when scaling
 *   the long-context rates reproduces them; rates neither setting reproduces are reported.
 * - `search_context_cost_per_query` (dollars per web search request, by search context size) →
 *   `costPerThousandWebSearches` = × 1000, when the three sizes cost the same; otherwise reported.
 *
 * Metadata ({@link CATALOG_METADATA_FIELDS}, `supports_*`) is ignored. Every other field is listed
 * in `unknownFields` with the reason. A malformed value (a negative or non-numeric rate) throws a
 * {@link UsageValidationError} naming `catalog["<name>"].<field>`.
 *
 * @example
 * priceFromCatalogEntry({ input_cost_per_token: 2.5e-6, output_cost_per_token: 1e-5, cache_read_input_token_cost: 1.25e-6 }, "gpt-4o").price;
 * // { currency: "USD", costInTokensPerMillion: "2.5", costOutTokensPerMillion: "10", costInCachedContextTokensPerMillion: "1.25" }
 */
export function priceFromCatalogEntry(entry: unknown, name: string, options: { currency?: string } = {}): CatalogEntryPrice {
  const issues: FieldIssue[] = [];
  if (!isPlainObject(entry)) throw new UsageValidationError([{ field: fieldPath(name), reason: "must be an object of prices" }]);
  const f = (field: string) => fieldPath(name, field);
  const notes: CatalogFieldNote[] = [];
  const note = (field: string, reason: string) => notes.push({ field, reason });
  const rates = new Map<string, Exact>(); // field → per-token rate, for the price fields understood
  const above: AboveRate[] = [];
  let webSearch: { field: string; value: Record<string, unknown> } | undefined;

  for (const [field, value] of Object.entries(entry)) {
    if (METADATA.has(field) || field.startsWith("supports_")) continue;
    if (field in DIRECT_RATES || field === "cache_creation_input_token_cost") {
      const rate = readRate(value, f(field), issues);
      if (rate) rates.set(field, rate);
      continue;
    }
    const m = ABOVE.exec(field);
    if (m) {
      const rate = readRate(value, f(field), issues);
      if (rate) above.push({ field, base: m[1], label: m[2] + m[3], n: Number(m[2]) * (m[3] ? 1000 : 1), tier: m[4], rate });
      continue;
    }
    if (field === "search_context_cost_per_query") {
      if (!isPlainObject(value)) issues.push({ field: f(field), reason: "must be an object of search_context_size_low/medium/high costs" });
      else webSearch = { field, value };
      continue;
    }
    const unsupported = UNSUPPORTED.find(([pattern]) => pattern.test(field));
    note(field, unsupported ? unsupported[1] : "not a price field this importer knows");
  }
  if (issues.length > 0) throw new UsageValidationError(issues);

  const input = rates.get("input_cost_per_token");
  const output = rates.get("output_cost_per_token");
  const missing = [!input && "input_cost_per_token", !output && "output_cost_per_token"].filter(Boolean);
  if (!input || !output) {
    // Nothing else can be priced without the two base rates; list what the entry had.
    for (const field of [...rates.keys(), ...above.map((a) => a.field)]) {
      if (field !== "input_cost_per_token" && field !== "output_cost_per_token") note(field, `not imported: the entry has no ${missing.join(" or ")}`);
    }
    if (webSearch) note(webSearch.field, `not imported: the entry has no ${missing.join(" or ")}`);
    return { price: null, unpriced: `no ${missing.join(" and ")} (ps-usage prices tokens)`, unknownFields: sortNotes(notes) };
  }

  const price: Record<string, unknown> = { currency: options.currency ?? "USD" };
  for (const [field, key] of Object.entries(DIRECT_RATES)) {
    const rate = rates.get(field);
    if (rate) price[key] = perMillion(rate);
  }

  // Cache writes: the package prices them as input × multiplier.
  const creation = rates.get("cache_creation_input_token_cost");
  let multiplier: Exact | undefined;
  if (creation) {
    const q = exactQuotient(creation, input);
    if (q === null) {
      note("cache_creation_input_token_cost", `${creation.toFixed()} ÷ input ${input.toFixed()} is not an exact decimal of at most 12 places; cacheWriteInputCostMultiplier left unset (not rounded)`);
    } else {
      price.cacheWriteInputCostMultiplier = q;
      multiplier = new ExactDecimal(q);
    }
  }

  mapLongContext(entry, input, rates, above, multiplier, creation, price, note);

  if (webSearch) {
    const sizes = ["search_context_size_low", "search_context_size_medium", "search_context_size_high"];
    const values = sizes.map((s) => readRate(webSearch!.value[s], f(`${webSearch!.field}.${s}`), issues));
    if (issues.length > 0) throw new UsageValidationError(issues);
    const extra = Object.keys(webSearch.value).filter((k) => !sizes.includes(k));
    const unit = entry.web_search_billing_unit;
    if (unit !== undefined && unit !== "per_query") {
      note(webSearch.field, `web_search_billing_unit is ${JSON.stringify(unit)}, not "per_query"`);
    } else if (extra.length > 0) {
      note(webSearch.field, `has ${extra.join(", ")} besides the three search context sizes`);
    } else if (!values.every((v) => v!.eq(values[0]!))) {
      const [low, medium, high] = values.map((v) => v!.toFixed());
      note(webSearch.field, `the cost depends on the search context size (low ${low}, medium ${medium}, high ${high}); ps-usage records only a count of web searches`);
    } else {
      price.costPerThousandWebSearches = values[0]!.times(1000).toFixed();
    }
  }
  return { price: price as unknown as CatalogModelPrice, unknownFields: sortNotes(notes) };
}

function sortNotes(notes: CatalogFieldNote[]): CatalogFieldNote[] {
  return notes.sort((a, b) => (a.field < b.field ? -1 : a.field > b.field ? 1 : 0));
}

/** A `<base>_above_<label>_tokens[_<tier>]` rate; `n` is the threshold in tokens. */
interface AboveRate {
  field: string;
  base: string;
  label: string;
  n: number;
  tier?: string;
  rate: Exact;
}

/** The `_above_<N>k_tokens` tier: threshold, long-context rates, and the flex/priority flag. */
function mapLongContext(
  entry: Record<string, unknown>,
  input: Exact,
  rates: Map<string, Exact>,
  above: AboveRate[],
  multiplier: Exact | undefined,
  creation: Exact | undefined,
  price: Record<string, unknown>,
  note: (field: string, reason: string) => void,
): void {
  if (above.length === 0) return;
  const thresholds = [...new Set(above.map((a) => a.n))].sort((a, b) => a - b);
  if (thresholds.length > 1) {
    for (const a of above) note(a.field, `the entry has ${thresholds.length} long-context tiers (${thresholds.join(", ")} tokens); a ps-usage price holds one`);
    return;
  }
  const n = thresholds[0];
  const std = new Map(above.filter((a) => !a.tier).map((a) => [a.base, a]));
  const lcInput = std.get("input_cost_per_token");
  if (!lcInput) {
    // LiteLLM applies a tier only when its input_cost_per_token_above_… rate exists.
    for (const a of above) note(a.field, `LiteLLM ignores it without input_cost_per_token_above_${a.label}_tokens`);
    return;
  }
  const provider = typeof entry.litellm_provider === "string" ? entry.litellm_provider : "";
  price.longContextTokenThreshold = INCLUSIVE_THRESHOLD_PROVIDERS.has(provider) ? n : n + 1;
  price.longContextCostInTokensPerMillion = perMillion(lcInput.rate);
  const lcOutput = std.get("output_cost_per_token");
  if (lcOutput) price.longContextCostOutTokensPerMillion = perMillion(lcOutput.rate);
  const lcCached = std.get("cache_read_input_token_cost");
  if (lcCached) price.longContextCostInCachedContextTokensPerMillion = perMillion(lcCached.rate);

  // Long-context cache writes cost (long-context input) × multiplier here; LiteLLM has a rate of its own.
  const lcCreation = std.get("cache_creation_input_token_cost");
  if (lcCreation || creation) {
    const litellm = lcCreation?.rate ?? creation!;
    const ours = lcInput.rate.times(multiplier ?? 1);
    if (!litellm.eq(ours)) {
      note(
        lcCreation?.field ?? "cache_creation_input_token_cost",
        `long-context cache writes cost ${litellm.toFixed()} per token in the catalog; ps-usage would charge long-context input × cacheWriteInputCostMultiplier = ${ours.toFixed()}`,
      );
    }
  }

  // Flex and priority above the threshold: LiteLLM takes <rate>_above_…_<tier>, else the standard
  // long-context rate. PolicySynth keeps the standard long-context rates, or with
  // flexPriorityTokensEnabledOnLongContext scales them by tier ÷ standard.
  const tiered = above.filter((a) => a.tier);
  const kinds: [base: string, tierField: (tier: string) => string][] = [
    ["input_cost_per_token", (t) => `input_cost_per_token_${t}`],
    ["cache_read_input_token_cost", (t) => `cache_read_input_token_cost_${t}`],
    ["output_cost_per_token", (t) => `output_cost_per_token_${t}`],
  ];
  let keeps = true;
  let scales = true;
  for (const tier of ["flex", "priority"]) {
    const hasTier = kinds.some(([, tf]) => rates.has(tf(tier))) || tiered.some((a) => a.tier === tier);
    if (!hasTier) continue;
    for (const [base, tf] of kinds) {
      const lc = std.get(base)?.rate;
      const own = tiered.find((a) => a.tier === tier && a.base === base);
      if (!lc) {
        if (own) keeps = scales = false;
        continue;
      }
      const litellm = own?.rate ?? lc;
      // PolicySynth's deriveLongContextRate: selected × long ÷ standard, or long without a standard rate.
      const standard = rates.get(base);
      const selected = rates.get(tf(tier)) ?? standard;
      const scaled = !standard || standard.isZero() ? lc : selected!.times(lc).dividedBy(standard);
      if (!litellm.eq(lc)) keeps = false;
      if (!litellm.eq(scaled)) scales = false;
    }
  }
  for (const a of above) {
    if (!a.tier) continue;
    if (a.base === "cache_creation_input_token_cost") note(a.field, "a service tier's cache-write rate: ps-usage has none");
    else if (!keeps && !scales) note(a.field, "neither keeping nor scaling the long-context rates (flexPriorityTokensEnabledOnLongContext) gives this rate");
  }
  if (!keeps && scales) price.flexPriorityTokensEnabledOnLongContext = true;
}

/**
 * Reads a catalog file (JSON). A missing or unreadable file, or text that is not a JSON object,
 * throws a {@link UsageValidationError} on `catalog`.
 */
export async function readPriceCatalog(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageValidationError([{ field: "catalog", reason: `cannot read ${JSON.stringify(file)}: ${e.code === "ENOENT" ? "no such file" : e.message}` }]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageValidationError([{ field: "catalog", reason: `${JSON.stringify(file)} is not JSON: ${(err as Error).message}` }]);
  }
  if (!isPlainObject(parsed)) throw new UsageValidationError([{ field: "catalog", reason: `${JSON.stringify(file)} must hold a JSON object of model entries` }]);
  return parsed;
}

/** A model's configured provider model id (`configuration.model`) and provider, when they are strings. */
function configured(configuration: unknown): { model?: string; provider?: string } {
  if (!isPlainObject(configuration)) return {};
  const { model, provider } = configuration;
  return { model: typeof model === "string" ? model : undefined, provider: typeof provider === "string" ? provider : undefined };
}

/**
 * Imports the prices a LiteLLM-format catalog gives for the models of `ps_ai_models`: for each
 * model the catalog names, a price period starts at `effectiveFrom` (default: now), unless the
 * period in force then already has those prices. Usage before `effectiveFrom` keeps its price.
 * All or nothing: one transaction, and any malformed rate throws a {@link UsageValidationError}
 * naming it (`catalog["gpt-4o"].input_cost_per_token`) before anything is written.
 *
 * A model matches, in this order and only exactly (never by similarity): `options.models` (by id
 * or name), the key `<configuration.provider>/<configuration.model>`, the key
 * `configuration.model` (PolicySynth's provider model id), the key equal to its `name`.
 * Models without a match, entries without a model, entries priced per image (or second, …) and
 * fields that were not imported are all reported.
 *
 * `catalog` is the parsed object or a file path. Prices are USD, as LiteLLM's are.
 *
 * @example
 * const result = await importPriceCatalog(db, "model_prices_and_context_window.json", {
 *   effectiveFrom: new Date("2026-11-01T00:00:00Z"),
 * });
 * result.created;      // [{ modelId: 3, name: "GPT-4o", catalogKey: "gpt-4o", periodId: 12, … }]
 * result.unknownFields; // [{ catalogKey: "gpt-4o", field: "input_cost_per_token_batches", reason: "batch API prices: …" }]
 */
export async function importPriceCatalog(
  db: Database,
  catalog: object | string,
  options: PriceCatalogImportOptions = {},
): Promise<PriceCatalogImportResult> {
  const issues: FieldIssue[] = [];
  if (options.effectiveFrom !== undefined) {
    const problem = dateProblem(options.effectiveFrom);
    if (problem) issues.push({ field: "effectiveFrom", reason: problem });
  }
  const mapping = options.models ?? {};
  if (!isPlainObject(mapping)) issues.push({ field: "models", reason: "must be an object of model id or name → catalog key" });
  else {
    for (const [k, v] of Object.entries(mapping)) {
      if (typeof v !== "string" || v === "") issues.push({ field: `models[${JSON.stringify(k)}]`, reason: "must be a catalog key (a non-empty string)" });
    }
  }
  const currency = options.currency ?? "USD";
  if (issues.length > 0) throw new UsageValidationError(issues);
  const entries = typeof catalog === "string" ? await readPriceCatalog(catalog) : catalog;
  if (!isPlainObject(entries)) throw new UsageValidationError([{ field: "catalog", reason: "must be an object of model entries" }]);
  const has = (key: string) => key !== CATALOG_SPEC_KEY && Object.prototype.hasOwnProperty.call(entries, key);
  for (const [k, v] of Object.entries(mapping)) {
    if (!has(v)) issues.push({ field: `models[${JSON.stringify(k)}]`, reason: `the catalog has no entry ${JSON.stringify(v)}` });
  }
  if (issues.length > 0) throw new UsageValidationError(issues);
  const dryRun = options.dryRun === true;

  return inModelPriceTransaction(db, options.effectiveFrom, async (tx, at) => {
    const models = await tx.psAiModel.findMany({ select: { id: true, name: true, configuration: true }, orderBy: { id: "asc" } });
    const ids = new Set(models.map((m) => String(m.id)));
    const names = new Set(models.map((m) => m.name));
    for (const k of Object.keys(mapping)) {
      if (!ids.has(k) && !names.has(k)) issues.push({ field: `models[${JSON.stringify(k)}]`, reason: "no ps_ai_models row has this id or name" });
    }

    const matched: { id: number; name: string; key: string }[] = [];
    const modelsWithoutEntry: { modelId: number; name: string }[] = [];
    for (const m of models) {
      const { model, provider } = configured(m.configuration);
      const candidates = [
        mapping[String(m.id)],
        mapping[m.name],
        provider && model ? `${provider}/${model}` : undefined,
        model,
        m.name,
      ];
      const key = candidates.find((c): c is string => typeof c === "string" && has(c));
      if (key === undefined) modelsWithoutEntry.push({ modelId: m.id, name: m.name });
      else matched.push({ id: m.id, name: m.name, key });
    }

    // Each matched entry once: mapped, then validated as setModelPrice validates.
    const byKey = new Map<string, { mapped: CatalogEntryPrice; checked?: CheckedModelPrice }>();
    for (const key of new Set(matched.map((m) => m.key))) {
      let mapped: CatalogEntryPrice;
      try {
        mapped = priceFromCatalogEntry(entries[key], key, { currency });
      } catch (err) {
        if (!(err instanceof UsageValidationError)) throw err;
        issues.push(...err.issues);
        continue;
      }
      // The tier fields reach the database once setModelPrice knows them (ModelPriceInput).
      const checked = mapped.price ? checkModelPriceForImport(mapped.price, fieldPath(key), issues) : undefined;
      byKey.set(key, { mapped, checked });
    }
    if (issues.length > 0) throw new UsageValidationError(issues);

    const created: CatalogImportedModel[] = [];
    const unchanged: { modelId: number; name: string; catalogKey: string }[] = [];
    const unpriced: { modelId: number; name: string; catalogKey: string; reason: string }[] = [];
    for (const m of matched) {
      const { mapped, checked } = byKey.get(m.key)!;
      if (!mapped.price || !checked) {
        unpriced.push({ modelId: m.id, name: m.name, catalogKey: m.key, reason: mapped.unpriced ?? "no price" });
        continue;
      }
      const r = await setModelPriceUnlessUnchanged(tx, m.id, checked, at, dryRun);
      if (r.status === "unchanged") unchanged.push({ modelId: m.id, name: m.name, catalogKey: m.key });
      else created.push({ modelId: m.id, name: m.name, catalogKey: m.key, periodId: r.period?.id ?? null, replaced: r.replaced, price: mapped.price });
    }

    const used = new Set(matched.map((m) => m.key));
    const entriesWithoutModel = Object.keys(entries).filter((k) => k !== CATALOG_SPEC_KEY && !used.has(k)).length;
    const unknownFields = [...byKey.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap(([catalogKey, { mapped }]) => mapped.unknownFields.map((n) => ({ catalogKey, ...n })));
    return { dryRun, effectiveFrom: at, created, unchanged, unpriced, modelsWithoutEntry, entriesWithoutModel, unknownFields };
  });
}
