/**
 * Price history. A price period holds a model's (or external API's) prices from its
 * `effectiveFrom` until the next period of the same model (or API), so usage is priced at the
 * rates in force when it happened and a price change never re-prices history.
 *
 * Rates are exact decimals: they are taken as numbers or decimal strings, turned into decimal
 * text without float arithmetic (`String(0.075)` is `"0.075"`), stored as `numeric(24,12)` and
 * returned as exact decimal strings.
 */
import type { Database } from "./db";
import { UnknownReferenceError, UsageValidationError, type FieldIssue } from "./errors";
import { Prisma, type PrismaClient } from "./generated/prisma/client";
import { MAX_INT32 } from "./types";
import { CONFIGURATION_TRANSACTION_MS, prismaWriteTransaction } from "./ledger/writeSession";
import { translateDatabaseError } from "./usageShared";
import { dateProblem, describeValue } from "./validation";

/** A price given as a number (`0.075`) or a decimal string (`"0.075"`). */
export type DecimalInput = number | string;

/**
 * A model's prices in PolicySynth's `ps_ai_models.configuration.prices` shape (all rates per
 * million tokens, PolicySynth's field names), plus three optional rates of this package's own for
 * reasoning, audio and image output. `null` or a missing optional rate falls back as the cost
 * rules say (see `costReport`).
 */
export interface ModelPriceInput {
  readonly currency: string;
  readonly costInTokensPerMillion: DecimalInput;
  readonly costOutTokensPerMillion: DecimalInput;
  readonly costInCachedContextTokensPerMillion?: DecimalInput | null;
  /** Cache-write input tokens cost the input rate times this. */
  readonly cacheWriteInputCostMultiplier?: DecimalInput | null;
  /** Kept for reference; the recorder (not the pricing) decides which tokens are long context. */
  readonly longContextTokenThreshold?: number | null;
  readonly longContextCostInTokensPerMillion?: DecimalInput | null;
  readonly longContextCostInCachedContextTokensPerMillion?: DecimalInput | null;
  readonly longContextCostOutTokensPerMillion?: DecimalInput | null;
  readonly costOutReasoningTokensPerMillion?: DecimalInput | null;
  readonly costOutAudioTokensPerMillion?: DecimalInput | null;
  readonly costOutImageTokensPerMillion?: DecimalInput | null;
  /**
   * Service-tier rates: usage whose `serviceTier` is `"flex"` (or `"priority"`, `"fast"`) is
   * priced at these instead of the input, cached input and output rates; a missing one falls
   * back to the standard rate.
   */
  readonly flexTokensIn?: DecimalInput | null;
  readonly flexTokensCachedIn?: DecimalInput | null;
  readonly flexTokensOut?: DecimalInput | null;
  readonly priorityTokensIn?: DecimalInput | null;
  readonly priorityTokensCachedIn?: DecimalInput | null;
  readonly priorityTokensOut?: DecimalInput | null;
  readonly fastTokensIn?: DecimalInput | null;
  readonly fastTokensCachedIn?: DecimalInput | null;
  readonly fastTokensOut?: DecimalInput | null;
  /**
   * Flex and priority also scale the long-context rates (tier rate × long-context rate / standard
   * rate); off (the default), their long-context tokens cost the standard long-context rates.
   * Fast always scales them, as in PolicySynth.
   */
  readonly flexPriorityTokensEnabledOnLongContext?: boolean | null;
  /**
   * Percent added to every token cost of usage with `regionalProcessing` set (10: × 1.1). May be
   * negative down to -100 (a discount; -100 makes it free). Web searches are not margined.
   */
  readonly regionalProcessingMargin?: DecimalInput | null;
  /** Price of 1,000 web searches (`webSearchCount`); missing: web searches cost nothing. */
  readonly costPerThousandWebSearches?: DecimalInput | null;
}

/** An external API's price in PolicySynth's `ps_external_apis.price_adapter` shape. */
export interface ExternalApiPriceInput {
  /** What one unit is (e.g. `"call"`, `"search"`); each unit of `call_count` costs `pricePerUnit`. */
  readonly unitType: string;
  readonly pricePerUnit: DecimalInput;
  readonly currency: string;
}

/** A stored model price period. Rates are exact decimal strings; unset optional rates are null. */
export interface ModelPricePeriod {
  readonly id: number;
  readonly modelId: number;
  readonly effectiveFrom: Date;
  /** The next period's `effectiveFrom`, or null while this period is the latest. */
  readonly effectiveTo: Date | null;
  readonly currency: string;
  readonly costInTokensPerMillion: string;
  readonly costOutTokensPerMillion: string;
  readonly costInCachedContextTokensPerMillion: string | null;
  readonly cacheWriteInputCostMultiplier: string | null;
  readonly longContextTokenThreshold: number | null;
  readonly longContextCostInTokensPerMillion: string | null;
  readonly longContextCostInCachedContextTokensPerMillion: string | null;
  readonly longContextCostOutTokensPerMillion: string | null;
  readonly costOutReasoningTokensPerMillion: string | null;
  readonly costOutAudioTokensPerMillion: string | null;
  readonly costOutImageTokensPerMillion: string | null;
  readonly flexTokensIn: string | null;
  readonly flexTokensCachedIn: string | null;
  readonly flexTokensOut: string | null;
  readonly priorityTokensIn: string | null;
  readonly priorityTokensCachedIn: string | null;
  readonly priorityTokensOut: string | null;
  readonly fastTokensIn: string | null;
  readonly fastTokensCachedIn: string | null;
  readonly fastTokensOut: string | null;
  readonly flexPriorityTokensEnabledOnLongContext: boolean;
  /** Percent, possibly negative (a discount). */
  readonly regionalProcessingMargin: string | null;
  readonly costPerThousandWebSearches: string | null;
  readonly createdAt: Date;
}

/** A stored external API price period; `pricePerUnit` is an exact decimal string. */
export interface ExternalApiPricePeriod {
  readonly id: number;
  readonly externalApiId: number;
  readonly effectiveFrom: Date;
  /** The next period's `effectiveFrom`, or null while this period is the latest. */
  readonly effectiveTo: Date | null;
  readonly unitType: string;
  readonly pricePerUnit: string;
  readonly currency: string;
  readonly createdAt: Date;
}

/** Options of {@link syncPricesFromConfiguration}. */
export interface SyncPricesOptions {
  /** When a changed price takes effect. Default: now (the database's clock). */
  readonly effectiveFrom?: Date;
  /**
   * Where the first period of a model or API that has none starts. Default: 1970-01-01T00:00Z,
   * so usage recorded before prices were first synced is priced at the configured prices (the
   * best price known for it) rather than left unpriced.
   */
  readonly firstPeriodFrom?: Date;
}

/** What {@link syncPricesFromConfiguration} did. */
export interface PriceSyncResult {
  /** Periods created because a model's configured prices differ from the period in force. */
  readonly modelPeriods: readonly ModelPricePeriod[];
  /** Periods created because an API's `price_adapter` differs from the period in force. */
  readonly externalApiPeriods: readonly ExternalApiPricePeriod[];
  /** Models and APIs whose configured price equals the period in force: nothing written. */
  readonly unchanged: number;
  /** Models with no `configuration.prices`: their usage stays unpriced until a price is set. */
  readonly modelsWithoutPrices: readonly number[];
  /** External APIs with an empty `price_adapter`. */
  readonly externalApisWithoutPrices: readonly number[];
}

type Tx = Prisma.TransactionClient | PrismaClient;

const DECIMAL_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
/** numeric(24,12): 12 digits before the point, 12 after. */
const MAX_SCALE = 12;
const MAX_VALUE = new Prisma.Decimal("1e12");
/** The start of the first period `syncPricesFromConfiguration` creates for a model or API. */
const EPOCH = new Date(0);

/** The optional non-negative decimal rates of a model price, in the order of the table. */
const OPTIONAL_MODEL_RATES = [
  "costInCachedContextTokensPerMillion",
  "cacheWriteInputCostMultiplier",
  "longContextCostInTokensPerMillion",
  "longContextCostInCachedContextTokensPerMillion",
  "longContextCostOutTokensPerMillion",
  "costOutReasoningTokensPerMillion",
  "costOutAudioTokensPerMillion",
  "costOutImageTokensPerMillion",
  "flexTokensIn",
  "flexTokensCachedIn",
  "flexTokensOut",
  "priorityTokensIn",
  "priorityTokensCachedIn",
  "priorityTokensOut",
  "fastTokensIn",
  "fastTokensCachedIn",
  "fastTokensOut",
  "costPerThousandWebSearches",
] as const;

/** The lowest regional processing margin: -100 percent makes regional usage free; below, costs would turn negative. */
const MIN_MARGIN = new Prisma.Decimal(-100);

type OptionalModelRate = (typeof OPTIONAL_MODEL_RATES)[number];

/** A validated model price: rates as canonical decimal strings. */
interface ModelPriceRow {
  currency: string;
  costInTokensPerMillion: string;
  costOutTokensPerMillion: string;
  longContextTokenThreshold: number | null;
  rates: Record<OptionalModelRate, string | null>;
  flexPriorityTokensEnabledOnLongContext: boolean;
  regionalProcessingMargin: string | null;
}

interface ExternalApiPriceRow {
  unitType: string;
  pricePerUnit: string;
  currency: string;
}

/**
 * Parses a non-negative decimal without float arithmetic: a number goes through `String(n)`
 * (its shortest round-trip text), a string is checked against a decimal pattern. With `min`, a
 * negative value down to `min` is accepted too (`minReason` says why not lower).
 */
/** @internal */
export function parseDecimal(value: unknown, field: string, issues: FieldIssue[], min?: Prisma.Decimal, minReason?: string): string | undefined {
  let text: string;
  if (typeof value === "number") {
    if (Number.isNaN(value)) {
      issues.push({ field, reason: "is NaN" });
      return undefined;
    }
    if (!Number.isFinite(value)) {
      issues.push({ field, reason: "must be finite" });
      return undefined;
    }
    text = String(value);
  } else if (typeof value === "string") {
    text = value.trim();
    if (!DECIMAL_TEXT.test(text)) {
      issues.push({ field, reason: `must be a decimal number, got ${JSON.stringify(value)}` });
      return undefined;
    }
  } else {
    issues.push({ field, reason: "must be a number or a decimal string" });
    return undefined;
  }
  const d = new Prisma.Decimal(text);
  if (d.isNegative() && !d.isZero() && (min === undefined || d.lt(min))) {
    issues.push({ field, reason: min === undefined ? "must not be negative" : (minReason ?? `must be at least ${min.toFixed()}`) });
    return undefined;
  }
  if (d.decimalPlaces() > MAX_SCALE) {
    issues.push({ field, reason: `has more than ${MAX_SCALE} decimal places` });
    return undefined;
  }
  if (d.abs().gte(MAX_VALUE)) {
    issues.push({ field, reason: "is too large (at most 12 digits before the decimal point)" });
    return undefined;
  }
  // Zero without its sign ("-0" is "0").
  return d.isZero() ? "0" : d.toFixed();
}

/** @internal Upper-cased currency code (1-16 letters or digits). */
export function parseCurrency(value: unknown, field: string, issues: FieldIssue[]): string | undefined {
  if (value === undefined || value === null || (typeof value === "string" && value.trim() === "")) {
    issues.push({ field, reason: "is missing" });
    return undefined;
  }
  if (typeof value !== "string" || !/^[A-Za-z0-9_]{1,16}$/.test(value.trim())) {
    issues.push({ field, reason: "must be a currency code of 1-16 letters or digits, e.g. USD" });
    return undefined;
  }
  // Upper case, so "usd" and "USD" are one currency in the reports.
  return value.trim().toUpperCase();
}

function checkObject(value: unknown, field: string, issues: FieldIssue[]): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    issues.push({ field, reason: "must be an object" });
    return false;
  }
  return true;
}

function validateModelPrice(prices: unknown, prefix: string, issues: FieldIssue[]): ModelPriceRow | undefined {
  if (!checkObject(prices, prefix || "prices", issues)) return undefined;
  const f = (name: string) => (prefix ? `${prefix}.${name}` : name);
  const before = issues.length;
  const currency = parseCurrency(prices.currency, f("currency"), issues);
  const required = (name: "costInTokensPerMillion" | "costOutTokensPerMillion") => {
    if (prices[name] === undefined || prices[name] === null) {
      issues.push({ field: f(name), reason: "is missing" });
      return undefined;
    }
    return parseDecimal(prices[name], f(name), issues);
  };
  const costIn = required("costInTokensPerMillion");
  const costOut = required("costOutTokensPerMillion");
  const rates = {} as Record<OptionalModelRate, string | null>;
  for (const name of OPTIONAL_MODEL_RATES) {
    const v = prices[name];
    rates[name] = v === undefined || v === null ? null : (parseDecimal(v, f(name), issues) ?? null);
  }
  let threshold: number | null = null;
  const t = prices.longContextTokenThreshold;
  if (t !== undefined && t !== null) {
    if (typeof t !== "number" || !Number.isInteger(t) || t <= 0 || t > MAX_INT32) {
      issues.push({ field: f("longContextTokenThreshold"), reason: `must be a positive integer up to ${MAX_INT32}` });
    } else {
      threshold = t;
    }
  }
  const flag = prices.flexPriorityTokensEnabledOnLongContext;
  if (flag !== undefined && flag !== null && typeof flag !== "boolean") {
    issues.push({ field: f("flexPriorityTokensEnabledOnLongContext"), reason: `must be true or false, got ${describeValue(flag)}` });
  }
  const m = prices.regionalProcessingMargin;
  const margin =
    m === undefined || m === null
      ? null
      : (parseDecimal(m, f("regionalProcessingMargin"), issues, MIN_MARGIN, "must be at least -100 (percent; -100 makes regional usage free)") ?? null);
  if (issues.length > before) return undefined;
  return {
    currency: currency!,
    costInTokensPerMillion: costIn!,
    costOutTokensPerMillion: costOut!,
    longContextTokenThreshold: threshold,
    rates,
    flexPriorityTokensEnabledOnLongContext: flag === true,
    regionalProcessingMargin: margin,
  };
}

function validateExternalApiPrice(adapter: unknown, prefix: string, issues: FieldIssue[]): ExternalApiPriceRow | undefined {
  if (!checkObject(adapter, prefix || "priceAdapter", issues)) return undefined;
  const f = (name: string) => (prefix ? `${prefix}.${name}` : name);
  const before = issues.length;
  let unitType: string | undefined;
  const u = adapter.unitType;
  if (typeof u !== "string" || u.trim() === "") {
    issues.push({ field: f("unitType"), reason: u === undefined || u === null ? "is missing" : "must be a non-empty string" });
  } else if (u.trim().length > 64) {
    issues.push({ field: f("unitType"), reason: "is longer than 64 characters" });
  } else {
    unitType = u.trim();
  }
  let pricePerUnit: string | undefined;
  if (adapter.pricePerUnit === undefined || adapter.pricePerUnit === null) {
    issues.push({ field: f("pricePerUnit"), reason: "is missing" });
  } else {
    pricePerUnit = parseDecimal(adapter.pricePerUnit, f("pricePerUnit"), issues);
  }
  const currency = parseCurrency(adapter.currency, f("currency"), issues);
  if (issues.length > before) return undefined;
  return { unitType: unitType!, pricePerUnit: pricePerUnit!, currency: currency! };
}

function checkId(value: unknown, field: string, issues: FieldIssue[]): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0 || value > MAX_INT32) {
    issues.push({ field, reason: "must be a positive integer id" });
  }
}

function checkDate(value: unknown, field: string, issues: FieldIssue[]): void {
  if (value === undefined) return;
  // The one date check (years 1..9999, what timestamptz, ISO 8601 and both drivers round-trip).
  const problem = dateProblem(value);
  if (problem) issues.push({ field, reason: problem });
}

async function databaseNow(tx: Tx): Promise<Date> {
  // The database's clock, the same one that stamps usage rows by default.
  const rows = await tx.$queryRaw<{ now: Date }[]>`SELECT clock_timestamp() AS now`;
  return rows[0].now;
}

const dec = (v: Prisma.Decimal | null): string | null => (v === null ? null : v.toFixed());

type ModelPeriodRow = Awaited<ReturnType<PrismaClient["psAiModelPricePeriod"]["findFirstOrThrow"]>>;
type ApiPeriodRow = Awaited<ReturnType<PrismaClient["psExternalApiPricePeriod"]["findFirstOrThrow"]>>;

function toModelPeriod(r: ModelPeriodRow, effectiveTo: Date | null): ModelPricePeriod {
  return {
    id: r.id,
    modelId: r.modelId,
    effectiveFrom: r.effectiveFrom,
    effectiveTo,
    currency: r.currency,
    costInTokensPerMillion: r.costInTokensPerMillion.toFixed(),
    costOutTokensPerMillion: r.costOutTokensPerMillion.toFixed(),
    costInCachedContextTokensPerMillion: dec(r.costInCachedContextTokensPerMillion),
    cacheWriteInputCostMultiplier: dec(r.cacheWriteInputCostMultiplier),
    longContextTokenThreshold: r.longContextTokenThreshold,
    longContextCostInTokensPerMillion: dec(r.longContextCostInTokensPerMillion),
    longContextCostInCachedContextTokensPerMillion: dec(r.longContextCostInCachedContextTokensPerMillion),
    longContextCostOutTokensPerMillion: dec(r.longContextCostOutTokensPerMillion),
    costOutReasoningTokensPerMillion: dec(r.costOutReasoningTokensPerMillion),
    costOutAudioTokensPerMillion: dec(r.costOutAudioTokensPerMillion),
    costOutImageTokensPerMillion: dec(r.costOutImageTokensPerMillion),
    flexTokensIn: dec(r.flexTokensIn),
    flexTokensCachedIn: dec(r.flexTokensCachedIn),
    flexTokensOut: dec(r.flexTokensOut),
    priorityTokensIn: dec(r.priorityTokensIn),
    priorityTokensCachedIn: dec(r.priorityTokensCachedIn),
    priorityTokensOut: dec(r.priorityTokensOut),
    fastTokensIn: dec(r.fastTokensIn),
    fastTokensCachedIn: dec(r.fastTokensCachedIn),
    fastTokensOut: dec(r.fastTokensOut),
    flexPriorityTokensEnabledOnLongContext: r.flexPriorityTokensEnabledOnLongContext,
    regionalProcessingMargin: dec(r.regionalProcessingMargin),
    costPerThousandWebSearches: dec(r.costPerThousandWebSearches),
    createdAt: r.createdAt,
  };
}

function toApiPeriod(r: ApiPeriodRow, effectiveTo: Date | null): ExternalApiPricePeriod {
  return {
    id: r.id,
    externalApiId: r.externalApiId,
    effectiveFrom: r.effectiveFrom,
    effectiveTo,
    unitType: r.unitType,
    pricePerUnit: r.pricePerUnit.toFixed(),
    currency: r.currency,
    createdAt: r.createdAt,
  };
}

/**
 * Runs `fn` and maps a database error to the package's typed errors: a foreign key violation (the
 * model or API was deleted meanwhile) to UnknownReferenceError, a lost connection to
 * DatabaseConnectionError.
 */
async function withTypedErrors<T>(db: Database, table: string, id: number | null, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw await translateDatabaseError(db, err, async () => new UnknownReferenceError(table, id));
  }
}

async function nextModelPeriodStart(tx: Tx, modelId: number, after: Date): Promise<Date | null> {
  const next = await tx.psAiModelPricePeriod.findFirst({
    where: { modelId, effectiveFrom: { gt: after } },
    orderBy: { effectiveFrom: "asc" },
    select: { effectiveFrom: true },
  });
  return next?.effectiveFrom ?? null;
}

async function nextApiPeriodStart(tx: Tx, externalApiId: number, after: Date): Promise<Date | null> {
  const next = await tx.psExternalApiPricePeriod.findFirst({
    where: { externalApiId, effectiveFrom: { gt: after } },
    orderBy: { effectiveFrom: "asc" },
    select: { effectiveFrom: true },
  });
  return next?.effectiveFrom ?? null;
}

async function writeModelPeriod(tx: Tx, modelId: number, p: ModelPriceRow, effectiveFrom: Date): Promise<ModelPricePeriod> {
  const data = {
    currency: p.currency,
    costInTokensPerMillion: p.costInTokensPerMillion,
    costOutTokensPerMillion: p.costOutTokensPerMillion,
    longContextTokenThreshold: p.longContextTokenThreshold,
    ...p.rates,
    flexPriorityTokensEnabledOnLongContext: p.flexPriorityTokensEnabledOnLongContext,
    regionalProcessingMargin: p.regionalProcessingMargin,
  };
  const row = await tx.psAiModelPricePeriod.upsert({
    where: { modelId_effectiveFrom: { modelId, effectiveFrom } },
    create: { modelId, effectiveFrom, ...data },
    update: data,
  });
  return toModelPeriod(row, await nextModelPeriodStart(tx, modelId, effectiveFrom));
}

async function writeApiPeriod(tx: Tx, externalApiId: number, p: ExternalApiPriceRow, effectiveFrom: Date): Promise<ExternalApiPricePeriod> {
  const row = await tx.psExternalApiPricePeriod.upsert({
    where: { externalApiId_effectiveFrom: { externalApiId, effectiveFrom } },
    create: { externalApiId, effectiveFrom, ...p },
    update: p,
  });
  return toApiPeriod(row, await nextApiPeriodStart(tx, externalApiId, effectiveFrom));
}

/** What a price period belongs to: a model or an external API. */
interface PriceOwner<R, P> {
  /** The owner's table, as typed errors name it. */
  readonly table: string;
  exists(tx: Tx, id: number): Promise<boolean>;
  write(tx: Tx, id: number, price: R, effectiveFrom: Date): Promise<P>;
}

const MODEL_PRICES: PriceOwner<ModelPriceRow, ModelPricePeriod> = {
  table: "ps_ai_models",
  exists: async (tx, id) => (await tx.psAiModel.findUnique({ where: { id }, select: { id: true } })) !== null,
  write: writeModelPeriod,
};

const EXTERNAL_API_PRICES: PriceOwner<ExternalApiPriceRow, ExternalApiPricePeriod> = {
  table: "ps_external_apis",
  exists: async (tx, id) => (await tx.psExternalApi.findUnique({ where: { id }, select: { id: true } })) !== null,
  write: writeApiPeriod,
};

/** Runs `fn` in one price write's transaction (all or nothing) with the package's typed errors, naming `table` and `id`. */
function priceTransaction<T>(db: Database, table: string, id: number | null, fn: (tx: Prisma.TransactionClient) => Promise<T>): Promise<T> {
  return withTypedErrors(db, table, id, () => prismaWriteTransaction(db, fn, CONFIGURATION_TRANSACTION_MS));
}

/** Writes a checked price of `owner`'s row `id` from `effectiveFrom` (default: now), once the row is found. */
function setPricePeriod<R, P>(db: Database, owner: PriceOwner<R, P>, id: number, price: R, effectiveFrom: Date | undefined): Promise<P> {
  return priceTransaction(db, owner.table, id, async (tx) => {
    if (!(await owner.exists(tx, id))) throw new UnknownReferenceError(owner.table, id);
    return owner.write(tx, id, price, effectiveFrom ?? (await databaseNow(tx)));
  });
}

/**
 * Sets a model's prices from `effectiveFrom` (default: now, by the database's clock) until the
 * model's next price period. Usage before `effectiveFrom` keeps the price it had. Setting a price
 * at exactly the start of an existing period replaces that period's prices (to correct a typo).
 *
 * Throws {@link UsageValidationError} (nothing written) for a negative, NaN or malformed rate,
 * a missing currency or required rate, or a bad date, and {@link UnknownReferenceError} when
 * the model does not exist.
 *
 * @example
 * await setModelPrice(db, gpt4oId, {
 *   currency: "USD",
 *   costInTokensPerMillion: 2.5,            // numbers are taken as their decimal text: exactly 2.5
 *   costOutTokensPerMillion: "10",
 *   costInCachedContextTokensPerMillion: "1.25",
 * }, new Date("2025-06-01T00:00:00Z"));
 */
export async function setModelPrice(
  db: Database,
  modelId: number,
  prices: ModelPriceInput,
  effectiveFrom?: Date,
): Promise<ModelPricePeriod> {
  const issues: FieldIssue[] = [];
  checkId(modelId, "modelId", issues);
  checkDate(effectiveFrom, "effectiveFrom", issues);
  const row = validateModelPrice(prices, "", issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  return setPricePeriod(db, MODEL_PRICES, modelId, row!, effectiveFrom);
}

/**
 * Sets an external API's price per unit from `effectiveFrom` (default: now, by the database's
 * clock) until its next price period. Each unit of `call_count` costs `pricePerUnit`. Setting a
 * price at exactly the start of an existing period replaces that period.
 *
 * Throws {@link UsageValidationError} for a bad price or date and {@link UnknownReferenceError}
 * when the API does not exist; nothing is written then.
 *
 * @example
 * await setExternalApiPrice(db, searchApiId, { unitType: "search", pricePerUnit: "0.005", currency: "USD" });
 */
export async function setExternalApiPrice(
  db: Database,
  externalApiId: number,
  priceAdapter: ExternalApiPriceInput,
  effectiveFrom?: Date,
): Promise<ExternalApiPricePeriod> {
  const issues: FieldIssue[] = [];
  checkId(externalApiId, "externalApiId", issues);
  checkDate(effectiveFrom, "effectiveFrom", issues);
  const row = validateExternalApiPrice(priceAdapter, "", issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  return setPricePeriod(db, EXTERNAL_API_PRICES, externalApiId, row!, effectiveFrom);
}

function sameDecimal(a: string | null, b: Prisma.Decimal | null): boolean {
  if (a === null || b === null) return a === null && b === null;
  return b.eq(a);
}

function sameModelPrice(p: ModelPriceRow, r: ModelPeriodRow): boolean {
  return (
    p.currency === r.currency &&
    sameDecimal(p.costInTokensPerMillion, r.costInTokensPerMillion) &&
    sameDecimal(p.costOutTokensPerMillion, r.costOutTokensPerMillion) &&
    p.longContextTokenThreshold === r.longContextTokenThreshold &&
    OPTIONAL_MODEL_RATES.every((name) => sameDecimal(p.rates[name], r[name])) &&
    p.flexPriorityTokensEnabledOnLongContext === r.flexPriorityTokensEnabledOnLongContext &&
    sameDecimal(p.regionalProcessingMargin, r.regionalProcessingMargin)
  );
}

function sameApiPrice(p: ExternalApiPriceRow, r: ApiPeriodRow): boolean {
  return p.currency === r.currency && p.unitType === r.unitType && sameDecimal(p.pricePerUnit, r.pricePerUnit);
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
}

/**
 * Records the prices the host application keeps in `ps_ai_models.configuration.prices` and
 * `ps_external_apis.price_adapter` as price periods: wherever the configured price differs from
 * the period in force at `effectiveFrom`, a new period starts at `effectiveFrom` (default: now).
 * A model or API with no period yet gets one from `firstPeriodFrom` (default 1970-01-01), so
 * its earlier usage is priced too. Run it after editing prices (or before each report) and the
 * history is kept from then on; running it again without a change writes nothing.
 *
 * Models without `configuration.prices` and APIs with an empty `price_adapter` are skipped and
 * listed. A malformed price anywhere throws {@link UsageValidationError} naming the row and
 * field (e.g. `ps_ai_models[3].configuration.prices.currency`), and nothing is written.
 * The `price_adapter.formula` of PolicySynth is not evaluated: each unit costs `pricePerUnit`.
 *
 * @example
 * await db.prisma.psAiModel.update({ where: { id }, data: { configuration: { prices: { ...newPrices } } } });
 * const { modelPeriods, unchanged } = await syncPricesFromConfiguration(db);
 */
export async function syncPricesFromConfiguration(db: Database, options: SyncPricesOptions = {}): Promise<PriceSyncResult> {
  const issues: FieldIssue[] = [];
  checkDate(options.effectiveFrom, "effectiveFrom", issues);
  checkDate(options.firstPeriodFrom, "firstPeriodFrom", issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  return priceTransaction(db, "ps_ai_models", null, async (tx) => {
    const [models, apis] = await Promise.all([
      tx.psAiModel.findMany({ select: { id: true, configuration: true }, orderBy: { id: "asc" } }),
      tx.psExternalApi.findMany({ select: { id: true, priceAdapter: true }, orderBy: { id: "asc" } }),
    ]);
    const modelPrices: { id: number; price: ModelPriceRow }[] = [];
    const modelsWithoutPrices: number[] = [];
    for (const m of models) {
      const config = m.configuration as Record<string, unknown> | null;
      const prices = config && typeof config === "object" && !Array.isArray(config) ? config.prices : undefined;
      if (prices === undefined || prices === null) {
        modelsWithoutPrices.push(m.id);
        continue;
      }
      const price = validateModelPrice(prices, `ps_ai_models[${m.id}].configuration.prices`, issues);
      if (price) modelPrices.push({ id: m.id, price });
    }
    const apiPrices: { id: number; price: ExternalApiPriceRow }[] = [];
    const externalApisWithoutPrices: number[] = [];
    for (const a of apis) {
      if (a.priceAdapter === null || isEmptyObject(a.priceAdapter)) {
        externalApisWithoutPrices.push(a.id);
        continue;
      }
      const price = validateExternalApiPrice(a.priceAdapter, `ps_external_apis[${a.id}].price_adapter`, issues);
      if (price) apiPrices.push({ id: a.id, price });
    }
    if (issues.length > 0) throw new UsageValidationError(issues);

    const at = options.effectiveFrom ?? (await databaseNow(tx));
    const first = options.firstPeriodFrom ?? EPOCH;
    let unchanged = 0;
    const modelPeriods: ModelPricePeriod[] = [];
    for (const { id, price } of modelPrices) {
      const current = await tx.psAiModelPricePeriod.findFirst({
        where: { modelId: id, effectiveFrom: { lte: at } },
        orderBy: { effectiveFrom: "desc" },
      });
      if (current && sameModelPrice(price, current)) {
        unchanged++;
        continue;
      }
      const any = current ?? (await tx.psAiModelPricePeriod.findFirst({ where: { modelId: id }, select: { id: true } }));
      modelPeriods.push(await writeModelPeriod(tx, id, price, any ? at : first));
    }
    const externalApiPeriods: ExternalApiPricePeriod[] = [];
    for (const { id, price } of apiPrices) {
      const current = await tx.psExternalApiPricePeriod.findFirst({
        where: { externalApiId: id, effectiveFrom: { lte: at } },
        orderBy: { effectiveFrom: "desc" },
      });
      if (current && sameApiPrice(price, current)) {
        unchanged++;
        continue;
      }
      const any = current ?? (await tx.psExternalApiPricePeriod.findFirst({ where: { externalApiId: id }, select: { id: true } }));
      externalApiPeriods.push(await writeApiPeriod(tx, id, price, any ? at : first));
    }
    return { modelPeriods, externalApiPeriods, unchanged, modelsWithoutPrices, externalApisWithoutPrices };
  });
}

/** Pairs each period with the start of the next one of the same owner (rows sorted by owner, time). */
function withEffectiveTo<R extends { effectiveFrom: Date }, T>(rows: R[], owner: (r: R) => number, map: (r: R, to: Date | null) => T): T[] {
  return rows.map((r, i) => {
    const next = rows[i + 1];
    return map(r, next && owner(next) === owner(r) ? next.effectiveFrom : null);
  });
}

/**
 * The price history of one model, or of every model: periods sorted by model and
 * `effectiveFrom`, each with the `effectiveTo` where the next one starts.
 *
 * @example
 * const history = await listModelPrices(db, { modelId: gpt4oId });
 * // [{ effectiveFrom: 2025-01-01, effectiveTo: 2025-06-01, costInTokensPerMillion: "5", ... }, ...]
 */
export async function listModelPrices(db: Database, options: { readonly modelId?: number } = {}): Promise<ModelPricePeriod[]> {
  const issues: FieldIssue[] = [];
  if (options.modelId !== undefined) checkId(options.modelId, "modelId", issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  const rows = await withTypedErrors(db, "ps_ai_models", null, () =>
    db.prisma.psAiModelPricePeriod.findMany({
      where: options.modelId === undefined ? {} : { modelId: options.modelId },
      orderBy: [{ modelId: "asc" }, { effectiveFrom: "asc" }],
    }),
  );
  return withEffectiveTo(rows, (r) => r.modelId, toModelPeriod);
}

/**
 * The price history of one external API, or of every API, sorted by API and `effectiveFrom`.
 *
 * @example
 * const history = await listExternalApiPrices(db, { externalApiId: searchApiId });
 * console.log(history.at(-1)?.pricePerUnit); // "0.005"
 */
export async function listExternalApiPrices(
  db: Database,
  options: { readonly externalApiId?: number } = {},
): Promise<ExternalApiPricePeriod[]> {
  const issues: FieldIssue[] = [];
  if (options.externalApiId !== undefined) checkId(options.externalApiId, "externalApiId", issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  const rows = await withTypedErrors(db, "ps_external_apis", null, () =>
    db.prisma.psExternalApiPricePeriod.findMany({
      where: options.externalApiId === undefined ? {} : { externalApiId: options.externalApiId },
      orderBy: [{ externalApiId: "asc" }, { effectiveFrom: "asc" }],
    }),
  );
  return withEffectiveTo(rows, (r) => r.externalApiId, toApiPeriod);
}

/** @internal A model price checked by {@link checkModelPriceForImport}; opaque outside this module. */
export interface CheckedModelPrice {
  readonly checked: unknown;
}

/** @internal Validates a model price as setModelPrice does, its issues' fields under `prefix`. */
export function checkModelPriceForImport(prices: unknown, prefix: string, issues: FieldIssue[]): CheckedModelPrice | undefined {
  const row = validateModelPrice(prices, prefix, issues);
  return row && { checked: row };
}

/**
 * @internal Runs `fn` in one transaction (all or nothing) with the package's typed errors; `at` is
 * `effectiveFrom`, or now by the database's clock.
 */
export async function inModelPriceTransaction<T>(
  db: Database,
  effectiveFrom: Date | undefined,
  fn: (tx: Prisma.TransactionClient, at: Date) => Promise<T>,
): Promise<T> {
  return priceTransaction(db, "ps_ai_models", null, async (tx) => fn(tx, effectiveFrom ?? (await databaseNow(tx))));
}

/** @internal What {@link setModelPriceUnlessUnchanged} did (or, on a dry run, would do). */
export type ImportedModelPrice =
  | { readonly status: "unchanged" }
  | { readonly status: "created"; readonly period: ModelPricePeriod | null; readonly replaced: boolean };

/**
 * @internal In the caller's transaction: starts a period at `at` unless the period in force then has
 * the same prices (a period starting exactly at `at` is replaced, as setModelPrice does). With
 * `dryRun` it writes nothing and returns no period.
 */
export async function setModelPriceUnlessUnchanged(
  tx: Prisma.TransactionClient,
  modelId: number,
  price: CheckedModelPrice,
  at: Date,
  dryRun: boolean,
): Promise<ImportedModelPrice> {
  const row = price.checked as ModelPriceRow;
  const current = await tx.psAiModelPricePeriod.findFirst({
    where: { modelId, effectiveFrom: { lte: at } },
    orderBy: { effectiveFrom: "desc" },
  });
  if (current && sameModelPrice(row, current)) return { status: "unchanged" };
  const replaced = current !== null && current.effectiveFrom.getTime() === at.getTime();
  return { status: "created", replaced, period: dryRun ? null : await writeModelPeriod(tx, modelId, row, at) };
}
