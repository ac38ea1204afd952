/**
 * Recording what a provider returned: its own usage object in, the ledger's counters out (with
 * PolicySynth's long-context split at the model's threshold), the service tier the provider
 * applied, its web searches, and optionally PolicySynth's per-call `ps_model_usage_item` beside
 * the ledger row, in the same transaction, so a bill can be explained call by call.
 */
import type { Database } from "../db";
import { UsageValidationError, type FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { MODEL_USAGE_BATCH, isLongContextCall, modelUsageInsertSql, recordModelUsageAs, type ChunkArray } from "../modelUsage";
import { mapAnthropic } from "../providers/anthropic";
import { mapGemini } from "../providers/gemini";
import { mapOpenAI, type OpenAIUsageApi } from "../providers/openai";
import { tokenCountProblem, type ProviderUsage, type UsageProvider } from "../providers/shared";
import {
  MAX_INT32,
  MODEL_USAGE_ALL_COUNTERS,
  MODEL_USAGE_COUNTERS,
  type BatchRecordOptions,
  type BatchRecordResult,
  type ModelUsageAnyCounter,
  type ModelUsageInput,
  type ModelUsageRecord,
  type RecordOptions,
  type ServiceTier,
} from "../types";
import { intArrayLiteral, recordBatch, textArrayLiteral, timestampArrayLiteral } from "../usageShared";
import { PROVIDER_USAGE_CALL, checkInput, countProblem } from "../validation";

/** One model call as the provider returned it. */
export interface ProviderUsageCall {
  readonly provider: UsageProvider;
  /** The provider's usage object as it came (`completion.usage`, `message.usage`, `response.usageMetadata`). */
  readonly usage: unknown;
  readonly userId: number;
  readonly modelId: number;
  readonly agentId?: number | null;
  readonly connectorId?: number | null;
  readonly createdAt?: Date;
  /** OpenAI: which API the usage object came from (default: told apart by its fields). */
  readonly api?: OpenAIUsageApi;
  /** The tier the provider reports as applied, where it is outside the usage object (OpenAI's `response.service_tier`). */
  readonly serviceTier?: string | null;
  /** Web searches the call made, where the usage object does not count them (OpenAI, Gemini grounding). */
  readonly webSearchCalls?: number;
  /** Regional processing the call had (e.g. `"eu"`): the price period's margin applies to it. */
  readonly regionalProcessing?: string | null;
}

/** Options of {@link recordProviderUsage}. */
export interface RecordProviderUsageOptions extends RecordOptions {
  /**
   * The long-context threshold to split at. Default: the model's price period in force at the
   * call's time (else `configuration.prices.longContextTokenThreshold`, else none).
   */
  readonly longContextTokenThreshold?: number | null;
  /**
   * Also write PolicySynth's `ps_model_usage_item` for the call (needs `agentId`: the column is
   * NOT NULL), with the raw usage, the tier, the price period and the counters written.
   * `providerMetadata` and `request` are stored as given.
   */
  readonly item?: boolean | { readonly providerMetadata?: Record<string, unknown>; readonly request?: Record<string, unknown> };
}

/** What {@link recordProviderUsage} stored. */
export interface ProviderUsageRecord {
  readonly usage: ModelUsageRecord;
  /** The `ps_model_usage_item` id, when `item` was asked for (and not on a replay of a key). */
  readonly itemId: number | null;
  /** The provider's usage as the package read it. */
  readonly normalized: ProviderUsage;
}

/**
 * The package's `service_tier` for the tier a provider reports as applied, as PolicySynth prices
 * it (`normalizeInferenceTypeForProvider`): OpenAI's and Gemini's `flex` and `priority`;
 * Anthropic's `priority` is priced with the `fast` rates. Standard tiers (`default`, `standard`,
 * `auto`) and tiers the package has no rates for (`scale`, `batch`) are the standard rate: null.
 */
export function serviceTierOf(provider: UsageProvider, reported: string | null): "flex" | "priority" | "fast" | null {
  if (reported === null) return null;
  const tier = reported.toLowerCase();
  if (provider === "anthropic") return tier === "priority" || tier === "fast" ? "fast" : null;
  if (tier === "flex" || tier === "priority") return tier;
  return provider === "openai" && tier === "fast" ? "priority" : null;
}

function normalize(call: ProviderUsageCall, copyRaw = true): ProviderUsage {
  // Only the options the call has, built without spreads, and none when it has none: a batch maps
  // thousands of calls.
  let options: { serviceTier?: string | null; webSearchCalls?: number; api?: OpenAIUsageApi } | undefined;
  if (call.serviceTier !== undefined) (options ??= {}).serviceTier = call.serviceTier;
  if (call.webSearchCalls !== undefined) (options ??= {}).webSearchCalls = call.webSearchCalls;
  switch (call.provider) {
    case "openai":
      if (call.api !== undefined) (options ??= {}).api = call.api;
      return mapOpenAI(call.usage, options, copyRaw);
    case "anthropic":
      return mapAnthropic(call.usage, options, copyRaw);
    case "gemini":
      return mapGemini(call.usage, options, copyRaw);
    default:
      throw new UsageValidationError([{ field: "provider", reason: `must be "openai", "anthropic" or "gemini", got ${JSON.stringify(call.provider)}` }]);
  }
}

/** The price period in force for `modelId` at `at` (null: now), and the threshold it (or the model's configuration) gives. */
async function pricingAt(db: Database, modelId: number, at: Date | undefined): Promise<{ periodId: number | null; threshold: number | null }> {
  const rows = await db.prisma.$queryRaw<{ period_id: number | null; threshold: number | null }[]>`
    SELECT p.id AS period_id,
           COALESCE(p.long_context_token_threshold, (m.configuration #>> '{prices,longContextTokenThreshold}')::numeric::int) AS threshold
      FROM ps_ai_models m
      LEFT JOIN LATERAL (
        SELECT id, long_context_token_threshold FROM ps_ai_model_price_periods
         WHERE model_id = m.id AND effective_from <= COALESCE(${at ?? null}::timestamptz, now())
         ORDER BY effective_from DESC LIMIT 1) p ON TRUE
     WHERE m.id = ${modelId}`;
  // An unknown model finds no row: the insert reports it (UnknownReferenceError).
  return { periodId: rows[0]?.period_id ?? null, threshold: rows[0]?.threshold ?? null };
}

function toInput(call: ProviderUsageCall, u: ProviderUsage, threshold: number | null | undefined): ModelUsageInput {
  // The counts come from this package's own mappers (already checked); their range against the
  // INTEGER columns is checked with the rest of the input by recordModelUsage.
  const lc = isLongContextCall(u.inputTokens, u.cachedInputTokens, u.cacheWriteInputTokens, threshold);
  const input: Record<string, unknown> = { userId: call.userId, modelId: call.modelId };
  for (const source of COUNTER_SOURCES) input[source.field] = written(source, lc) ? u[STAGED[source.count]] : 0;
  input.serviceTier = serviceTierOf(u.provider, u.serviceTier);
  input.regionalProcessing = call.regionalProcessing ?? null;
  if (call.agentId !== undefined) input.agentId = call.agentId;
  if (call.connectorId !== undefined) input.connectorId = call.connectorId;
  if (call.createdAt !== undefined) input.createdAt = call.createdAt;
  return input as unknown as ModelUsageInput;
}

/**
 * Records one model call from the provider's own usage object: maps it with
 * `usageFromOpenAI` / `usageFromAnthropic` / `usageFromGemini`, splits it at the model's
 * long-context threshold as PolicySynth does, stores the applied service tier, web searches and
 * regional processing with the row, and with `item` writes PolicySynth's `ps_model_usage_item`
 * in the same transaction. Errors and `idempotencyKey` are as for `recordModelUsage`; a bad usage
 * object is a {@link UsageValidationError} naming the provider's field (`usage.prompt_tokens`).
 *
 * @example
 * const completion = await openai.chat.completions.create({ model: "gpt-4.1", messages, service_tier: "flex" });
 * await recordProviderUsage(db, {
 *   provider: "openai", usage: completion.usage, serviceTier: completion.service_tier,
 *   userId: 42, modelId: 3, agentId: 7,
 * }, { item: true });
 */
export async function recordProviderUsage(db: Database, call: ProviderUsageCall, options: RecordProviderUsageOptions = {}): Promise<ProviderUsageRecord> {
  checkCall(call, undefined);
  const issues: FieldIssue[] = [];
  let normalized: ProviderUsage | undefined;
  try {
    normalized = normalize(call);
  } catch (err) {
    if (!(err instanceof UsageValidationError)) throw err;
    issues.push(...err.issues);
  }
  // A field the call does not have (a misspelt agentId) is refused, not dropped.
  checkInput(call, PROVIDER_USAGE_CALL, issues);
  const wantsItem = options.item !== undefined && options.item !== false;
  checkThreshold(options.longContextTokenThreshold, issues);
  if (wantsItem && (call.agentId === undefined || call.agentId === null)) {
    issues.push({ field: "agentId", reason: "is required with item: ps_model_usage_item.agent_id is NOT NULL in PolicySynth's table" });
  }
  if (issues.length > 0 || normalized === undefined) throw new UsageValidationError(issues);
  const pricing = await pricingAt(db, call.modelId, call.createdAt);
  const threshold = options.longContextTokenThreshold !== undefined ? options.longContextTokenThreshold : pricing.threshold;
  const input = toInput(call, normalized, threshold);
  let itemId: number | null = null;
  const extra = typeof options.item === "object" ? options.item : {};
  const usage = await recordModelUsageAs(
    db,
    input,
    options.idempotencyKey === undefined && options.enforceBudgets === undefined
      ? undefined
      : {
          ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
          ...(options.enforceBudgets === undefined ? {} : { enforceBudgets: options.enforceBudgets }),
        },
    null,
    wantsItem
      ? async (client, row) => {
          const item = await client.psModelUsageItem.create({
            data: {
              userId: row.userId,
              modelId: row.modelId,
              agentId: row.agentId!,
              connectorId: row.connectorId,
              createdAt: row.createdAt,
              updatedAt: row.updatedAt,
              data: itemData(call, normalized, row, input, pricing.periodId, threshold ?? null, extra) as Prisma.InputJsonValue,
            },
            select: { id: true },
          });
          itemId = item.id;
        }
      : undefined,
  );
  return { usage, itemId, normalized };
}

/**
 * `ps_model_usage_item.data` in PolicySynth's shape (`version`, `provider`, `apiFamily`,
 * `model`, `actor`, `pricing`, `usageNormalized` with the whole input in `tokensIn` as PolicySynth
 * counts it, `usageRaw`, `providerMetadata.builtInTools.webSearchCallCount`), plus `psUsage`:
 * the ledger row, the price period and the counters it was written with.
 */
function itemData(
  call: ProviderUsageCall,
  u: ProviderUsage,
  row: ModelUsageRecord,
  input: ModelUsageInput,
  pricePeriodId: number | null,
  threshold: number | null,
  extra: { readonly providerMetadata?: Record<string, unknown>; readonly request?: Record<string, unknown> },
): Record<string, unknown> {
  const counters: Record<string, number> = {};
  for (const [field] of MODEL_USAGE_COUNTERS) counters[field] = (input[field] as number | undefined) ?? 0;
  counters.webSearchCount = input.webSearchCount ?? 0;
  return {
    version: 1,
    accountingVersion: 2,
    provider: u.provider,
    apiFamily: u.api,
    timestamp: row.createdAt.toISOString(),
    model: { id: row.modelId },
    actor: { userId: row.userId, agentId: row.agentId, connectorId: row.connectorId },
    ...(extra.request ? { request: extra.request } : {}),
    pricing: { pricePeriodId, longContextTokenThreshold: threshold, inferenceType: input.serviceTier ?? "standard", regionalProcessing: call.regionalProcessing ?? null },
    usageNormalized: {
      tokensIn: u.inputTokens + u.cachedInputTokens + u.cacheWriteInputTokens,
      tokensOut: u.outputTokens + u.reasoningTokens + u.audioOutputTokens + u.imageOutputTokens,
      cachedInTokens: u.cachedInputTokens,
      cacheReadInputTokens: u.cachedInputTokens,
      cacheWriteInputTokens: u.cacheWriteInputTokens,
      reasoningTokens: u.reasoningTokens,
      audioTokens: u.audioOutputTokens,
      imageTokens: u.imageOutputTokens,
    },
    usageRaw: u.raw,
    providerMetadata: { ...(extra.providerMetadata ?? {}), builtInTools: { webSearchCallCount: u.webSearchCalls } },
    psUsage: { modelUsageId: row.id, counters, serviceTier: input.serviceTier ?? null, providerServiceTier: u.serviceTier },
  };
}

/** A given threshold must be a token count a counter can hold (null: no long context). */
function checkThreshold(threshold: unknown, issues: FieldIssue[]): void {
  if (threshold === undefined || threshold === null) return;
  const problem = tokenCountProblem(threshold);
  if (problem) issues.push({ field: "longContextTokenThreshold", reason: problem });
}

function checkCall(call: unknown, index: number | undefined): void {
  if (typeof call !== "object" || call === null || Array.isArray(call)) {
    throw new UsageValidationError([{ field: "call", reason: "must be an object with provider, usage, userId and modelId", ...(index === undefined ? {} : { index }) }]);
  }
}

/**
 * {@link recordProviderUsage} for many calls: each mapped and split at its model's threshold in
 * force at its time (one query for the batch), then written as `recordModelUsageBatch` writes,
 * all or nothing. Items are not written by batches (use `recordProviderUsage` with `item`). A bad
 * usage object or call field is refused with the call's `index`.
 *
 * @example
 * await recordProviderUsageBatch(db, responses.map((r) => ({ provider: "anthropic", usage: r.usage, userId: 42, modelId: 5 })));
 */
export async function recordProviderUsageBatch(
  db: Database,
  calls: readonly ProviderUsageCall[],
  options: BatchRecordOptions & { readonly longContextTokenThreshold?: number | null } = {},
): Promise<BatchRecordResult> {
  if (!Array.isArray(calls)) throw new UsageValidationError([{ field: "calls", reason: "must be an array of provider usage calls" }]);
  const issues: FieldIssue[] = [];
  checkThreshold(options.longContextTokenThreshold, issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  const { longContextTokenThreshold, ...batchOptions } = options;
  // The thresholds are read while the calls are mapped: the query is on the wire during the CPU work.
  const lookup = longContextTokenThreshold !== undefined ? null : thresholdLookup(db, calls);
  if (lookup !== null) {
    // Keep an early refusal from leaving the query's rejection unhandled.
    lookup.catch(() => undefined);
    // Prisma sends a query only after a few asynchronous steps of its own: one turn of the event
    // loop puts it on the wire, where it runs while this thread maps the calls.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const rows = new StagedRows(calls.length);
  for (let i = 0; i < calls.length; i++) {
    const call = calls[i];
    try {
      checkCall(call, i);
      // No item is written from a batch: its raw usage is not copied.
      rows.set(i, normalize(call, false));
    } catch (err) {
      if (!(err instanceof UsageValidationError)) throw err;
      for (const issue of err.issues) issues.push({ ...issue, index: i });
    }
  }
  if (issues.length > 0) throw new UsageValidationError(issues);
  const thresholdOf = lookup === null ? null : await lookup;
  for (let i = 0; i < calls.length; i++) {
    rows.split(i, thresholdOf === null ? longContextTokenThreshold : thresholdOf(calls[i]), issues);
  }
  if (issues.length > 0) throw new UsageValidationError(issues);
  // The calls themselves are the batch's items: their ids, createdAt and regional processing are
  // checked and written as a ModelUsageInput's; the counters and tier come from the staged columns.
  return recordBatch(db, calls, batchOptions, {
    shape: PROVIDER_USAGE_CALL,
    table: "ps_model_usage",
    references: MODEL_USAGE_BATCH.references,
    budgetEvent: MODEL_USAGE_BATCH.budgetEvent,
    chunkSql: (items, start, end, returnIds) =>
      modelUsageInsertSql(
        [
          ["user_id", intArrayLiteral(items, start, end, "userId", 0), "int"],
          ["model_id", intArrayLiteral(items, start, end, "modelId", 0), "int"],
          ["agent_id", intArrayLiteral(items, start, end, "agentId"), "int"],
          ["connector_id", intArrayLiteral(items, start, end, "connectorId"), "int"],
          ["created_at", timestampArrayLiteral(items, start, end), "timestamptz"],
          ...COUNTER_SOURCES.map((source): ChunkArray => [source.column, rows.counterLiteral(source, start, end), "int"]),
          ["service_tier", rows.tierLiteral(start, end), "text"],
          ["regional_processing", textArrayLiteral(items, start, end, (item) => item.regionalProcessing ?? null), "text"],
        ],
        returnIds,
      ),
  });
}

/** The normalized counts a batch keeps per call, in {@link StagedRows}' columns. */
const STAGED = ["inputTokens", "cachedInputTokens", "cacheWriteInputTokens", "outputTokens", "reasoningTokens", "audioOutputTokens", "imageOutputTokens", "webSearchCalls"] as const;
type StagedCount = (typeof STAGED)[number];

/**
 * Where each `ps_model_usage` counter comes from, in MODEL_USAGE_ALL_COUNTERS order: a normalized
 * count, on one side of PolicySynth's long-context split (`longContext`: written only when the
 * call is long context; false: only when it is not; null: either way).
 */
const COUNTER_SOURCES: readonly { readonly field: ModelUsageAnyCounter; readonly column: string; readonly count: number; readonly longContext: boolean | null }[] = (() => {
  const sources: Record<ModelUsageAnyCounter, readonly [StagedCount, boolean | null]> = {
    tokenInCount: ["inputTokens", false],
    tokenInCachedContextCount: ["cachedInputTokens", false],
    tokenInCacheWriteCount: ["cacheWriteInputTokens", false],
    longContextTokenInCount: ["inputTokens", true],
    longContextTokenInCachedContextCount: ["cachedInputTokens", true],
    longContextTokenInCacheWriteCount: ["cacheWriteInputTokens", true],
    tokenOutCount: ["outputTokens", false],
    tokenOutReasoningCount: ["reasoningTokens", false],
    tokenOutAudioCount: ["audioOutputTokens", false],
    tokenOutImageCount: ["imageOutputTokens", false],
    longContextTokenOutCount: ["outputTokens", true],
    longContextTokenOutReasoningCount: ["reasoningTokens", true],
    longContextTokenOutAudioCount: ["audioOutputTokens", true],
    longContextTokenOutImageCount: ["imageOutputTokens", true],
    webSearchCount: ["webSearchCalls", null],
  };
  return MODEL_USAGE_ALL_COUNTERS.map(([field, column]) => ({ field, column, count: STAGED.indexOf(sources[field][0]), longContext: sources[field][1] }));
})();

/** Whether a counter of `source` gets the count of a call that is (or is not) long context. */
function written(source: (typeof COUNTER_SOURCES)[number], longContext: boolean): boolean {
  return source.longContext === null || source.longContext === longContext;
}

/**
 * A batch's mapped calls column by column: the normalized counts, whether each call is long
 * context, and its stored tier. No object per call outlives its mapping, so a batch of thousands
 * leaves the collector nothing to copy, and the array literals are read straight from the columns.
 */
class StagedRows {
  private readonly counts: Float64Array[];
  private readonly longContext: Uint8Array;
  private readonly tiers: (ServiceTier | null)[];

  constructor(length: number) {
    this.counts = STAGED.map(() => new Float64Array(length));
    this.longContext = new Uint8Array(length);
    this.tiers = new Array<ServiceTier | null>(length).fill(null);
  }

  set(i: number, u: ProviderUsage): void {
    for (let c = 0; c < STAGED.length; c++) this.counts[c][i] = u[STAGED[c]];
    this.tiers[i] = serviceTierOf(u.provider, u.serviceTier);
  }

  /**
   * Splits call `i` at `threshold` (PolicySynth's rule, isLongContextCall) and checks that each
   * count fits the INTEGER column it goes to (the mappers allow any safe integer), with the
   * counter's name, as `recordModelUsageBatch` would name it.
   */
  split(i: number, threshold: number | null | undefined, issues: FieldIssue[]): void {
    const [input, cached, cacheWrite] = this.counts;
    const lc = isLongContextCall(input[i], cached[i], cacheWrite[i], threshold);
    this.longContext[i] = lc ? 1 : 0;
    for (const source of COUNTER_SOURCES) {
      const value = this.counts[source.count][i];
      if (value > MAX_INT32 && written(source, lc)) {
        issues.push({ field: source.field, reason: countProblem(value)!, index: i });
      }
    }
  }

  /** A counter's `int[]` literal for calls `start..end` (see intArrayLiteral). */
  counterLiteral(source: (typeof COUNTER_SOURCES)[number], start: number, end: number): string {
    const values = this.counts[source.count];
    const parts = new Array<number>(end - start);
    // Checked by split to fit an INTEGER: `| 0` is exact and gives small integers, which join fastest.
    for (let i = start; i < end; i++) parts[i - start] = written(source, this.longContext[i] === 1) ? values[i] | 0 : 0;
    return `{${parts.join(",")}}`;
  }

  /** The stored tiers' `text[]` literal for calls `start..end` (see textArrayLiteral). */
  tierLiteral(start: number, end: number): string {
    return textArrayLiteral(this.tiers, start, end, (tier) => tier);
  }
}

/**
 * A lookup of each call's threshold at its time (calls without createdAt: the database's now).
 * One query reads the price periods of the batch's few models; a call then finds its period by
 * binary search (most models have one period), rather than the database looking one up per call.
 */
async function thresholdLookup(db: Database, calls: readonly ProviderUsageCall[]): Promise<(call: ProviderUsageCall) => number | null> {
  // A batch names few models, mostly in runs: the last one seen is checked before the set.
  const models = new Set<number>();
  let last: unknown;
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i] as ProviderUsageCall | null;
    if (typeof c !== "object" || c === null) continue;
    const id = c.modelId;
    if (id !== last && Number.isInteger(id)) models.add(id);
    last = id;
  }
  const rows = models.size === 0 ? [] : await db.prisma.$queryRaw<{ model_id: number; from_ms: number | null; threshold: number | null; configured: number | null; now_ms: number }[]>`
    SELECT m.id AS model_id, (extract(epoch FROM p.effective_from) * 1000)::float8 AS from_ms,
           (m.configuration #>> '{prices,longContextTokenThreshold}')::numeric::int AS configured,
           COALESCE(p.long_context_token_threshold, (m.configuration #>> '{prices,longContextTokenThreshold}')::numeric::int) AS threshold,
           (extract(epoch FROM now()) * 1000)::float8 AS now_ms
      FROM ps_ai_models m
      LEFT JOIN ps_ai_model_price_periods p ON p.model_id = m.id
     WHERE m.id = ANY(${`{${[...models].join(",")}}`}::int[])
     ORDER BY m.id, p.effective_from`;
  const now = rows.length > 0 ? Number(rows[0].now_ms) : Date.now();
  const periods = new Map<number, { from: number[]; threshold: (number | null)[]; configured: number | null }>();
  for (const r of rows) {
    let p = periods.get(r.model_id);
    if (!p) periods.set(r.model_id, (p = { from: [], threshold: [], configured: r.configured }));
    if (r.from_ms !== null) {
      p.from.push(Number(r.from_ms));
      p.threshold.push(r.threshold);
    }
  }
  // Before a model's first period, or without one: its configuration's threshold, as for one call.
  return (c) => {
    const p = periods.get(c.modelId);
    if (!p) return null; // unknown model: the insert reports it
    const at = c.createdAt instanceof Date ? c.createdAt.getTime() : now;
    let lo = 0;
    let hi = p.from.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (p.from[mid] <= at) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? p.configured : p.threshold[found];
  };
}
