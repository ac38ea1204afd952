/**
 * The package's own input and result types, shared by the repository modules. Callers never
 * need the generated Prisma types.
 */

/** The token counters of `ps_model_usage`: camelCase field -> column. Order is the table's. */
export const MODEL_USAGE_COUNTERS = [
  ["tokenInCount", "token_in_count"],
  ["tokenInCachedContextCount", "token_in_cached_context_count"],
  ["tokenInCacheWriteCount", "token_in_cache_write_count"],
  ["longContextTokenInCount", "long_context_token_in_count"],
  ["longContextTokenInCachedContextCount", "long_context_token_in_cached_context_count"],
  ["longContextTokenInCacheWriteCount", "long_context_token_in_cache_write_count"],
  ["tokenOutCount", "token_out_count"],
  ["tokenOutReasoningCount", "token_out_reasoning_count"],
  ["tokenOutAudioCount", "token_out_audio_count"],
  ["tokenOutImageCount", "token_out_image_count"],
  ["longContextTokenOutCount", "long_context_token_out_count"],
  ["longContextTokenOutReasoningCount", "long_context_token_out_reasoning_count"],
  ["longContextTokenOutAudioCount", "long_context_token_out_audio_count"],
  ["longContextTokenOutImageCount", "long_context_token_out_image_count"],
] as const;

/** One of the token counter fields of a model usage row. */
export type ModelUsageCounter = (typeof MODEL_USAGE_COUNTERS)[number][0];

/**
 * The counters of `ps_model_usage` that count calls, not tokens: the model's built-in web
 * searches (priced per thousand, apart from the tokens). Field -> column.
 */
export const MODEL_USAGE_CALL_COUNTERS = [["webSearchCount", "web_search_count"]] as const;

/**
 * Every integer counter of a model usage row, as recorded, summed and checked: the 14 token
 * counters, then the call counters. Cost reports keep the two apart (`tokens` and `webSearchCount`).
 */
export const MODEL_USAGE_ALL_COUNTERS = [...MODEL_USAGE_COUNTERS, ...MODEL_USAGE_CALL_COUNTERS] as const;

/** A counter field of a model usage row: a token counter or `webSearchCount`. */
export type ModelUsageAnyCounter = (typeof MODEL_USAGE_ALL_COUNTERS)[number][0];

/**
 * The service tiers that choose other rates (PolicySynth's `flex*`, `priority*`, `fast*` prices):
 * OpenAI's flex and priority processing, Anthropic's fast mode. No tier (null) is standard pricing.
 */
export const SERVICE_TIERS = ["flex", "priority", "fast"] as const;

/** A service tier with rates of its own; null stands for standard. */
export type ServiceTier = (typeof SERVICE_TIERS)[number];

/** Largest value of a PostgreSQL INTEGER column. */
export const MAX_INT32 = 2_147_483_647;

/** What `recordModelUsage` takes: counters not given are 0. */
export type ModelUsageInput = {
  readonly userId: number;
  readonly modelId: number;
  readonly agentId?: number | null;
  readonly connectorId?: number | null;
  /** When the usage happened. Default: now (the database's clock). */
  readonly createdAt?: Date;
  /** Web searches the call made (built-in tool calls, priced per thousand). Default 0. */
  readonly webSearchCount?: number;
  /**
   * The service tier the provider reports as APPLIED to the call (not the one requested):
   * `"flex"`, `"priority"` or `"fast"` choose the price period's tier rates. `"standard"`,
   * `"default"` and null mean standard pricing and are stored as null. Default: null.
   */
  readonly serviceTier?: ServiceTier | "standard" | "default" | null;
  /**
   * The regional processing the provider applied (data residency), e.g. `"eu"`: the price
   * period's `regionalProcessingMargin` applies to the call's token costs. 1 to 16 letters,
   * digits, `-` or `_`, stored as given. Null (the default): none.
   */
  readonly regionalProcessing?: string | null;
} & { readonly [K in ModelUsageCounter]?: number };

/** A stored `ps_model_usage` row. */
export type ModelUsageRecord = {
  readonly id: number;
  readonly userId: number;
  readonly modelId: number;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly webSearchCount: number;
  /**
   * The applied tier (`"flex"`, `"priority"`, `"fast"`), null for standard. This package writes
   * nothing else; text another writer stored is returned as it is (and priced as standard).
   */
  readonly serviceTier: string | null;
  readonly regionalProcessing: string | null;
} & { readonly [K in ModelUsageCounter]: number };

/** What `recordExternalApiUsage` takes. */
export interface ExternalApiUsageInput {
  readonly userId: number;
  readonly externalApiId: number;
  /** How many calls (units) this event stands for. Required, as in PolicySynth (no default). */
  readonly callCount: number;
  readonly agentId?: number | null;
  readonly connectorId?: number | null;
  readonly createdAt?: Date;
}

/** A stored `ps_external_api_usage` row. */
export interface ExternalApiUsageRecord {
  readonly id: number;
  readonly userId: number;
  readonly externalApiId: number;
  readonly callCount: number;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** Options of a single record call. */
export interface RecordOptions {
  /**
   * A key that makes the call safe to retry: the same key again records nothing and returns the
   * row the first call stored (also between concurrent callers).
   */
  readonly idempotencyKey?: string;
  /**
   * Refuse the event with {@link BudgetExceededError} (nothing written) when it would take a
   * budget with a hard limit past its amount, or cannot be priced in that budget's currency. Guarded
   * calls of one budget take turns, so together they never pass its amount (README "Budgets").
   * Default false: the event is recorded and only the budgets' thresholds are checked.
   */
  readonly enforceBudgets?: boolean;
}

/**
 * Which rows a find, sum or report covers. Every field is optional; fields combine with AND.
 * `from` is inclusive and `to` exclusive, on `created_at`.
 */
export interface UsageFilter {
  readonly userId?: number;
  /** One agent or any of several. */
  readonly agentId?: number | readonly number[];
  readonly connectorId?: number;
  readonly from?: Date;
  readonly to?: Date;
}

/** Filter for model usage. */
export interface ModelUsageFilter extends UsageFilter {
  readonly modelId?: number | readonly number[];
}

/** Filter for external API usage. */
export interface ExternalApiUsageFilter extends UsageFilter {
  readonly externalApiId?: number | readonly number[];
}

/** Time bucket sizes for sums and reports. Weeks start on Monday (ISO). */
export type TimeBucket = "hour" | "day" | "week" | "month";

/** Dimensions model usage can be grouped by. */
export type ModelUsageGroupBy = "userId" | "agentId" | "connectorId" | "modelId";

/** Dimensions external API usage can be grouped by. */
export type ExternalApiUsageGroupBy = "userId" | "agentId" | "connectorId" | "externalApiId";

// --- Recording in batches, raw model calls, finding (appended by the record/query repository) ---

/** Options of a batch record call. */
export interface BatchRecordOptions {
  /**
   * Rows per INSERT statement (default {@link DEFAULT_BATCH_CHUNK_SIZE} on PostgreSQL,
   * {@link DEFAULT_EMBEDDED_BATCH_CHUNK_SIZE} on the embedded database; at most
   * {@link MAX_BATCH_CHUNK_SIZE}). A larger batch is split into several statements inside one
   * transaction, still all or nothing, and lets the event loop run between them.
   */
  readonly chunkSize?: number;
  /** Also return the new rows' ids, in input order. Default false (a little slower). */
  readonly returnIds?: boolean;
  /**
   * Makes the whole batch safe to retry: a batch with a key that was already recorded writes
   * nothing and returns `{ count: 0, replayed: true }`, also when the first call is still running
   * (the retry waits for it). Keys share one namespace with single-record keys; prefix them (for
   * example with the run or import id).
   */
  readonly idempotencyKey?: string;
  /**
   * Refuse the whole batch with {@link BudgetExceededError} (nothing written) when its events
   * together would take a budget with a hard limit past its amount in any period, or when one of
   * them in such a budget's scope cannot be priced in its currency: as `RecordOptions.enforceBudgets`
   * for one event, the batch and the guard in one transaction. Default false.
   */
  readonly enforceBudgets?: boolean;
}

/** Rows per INSERT statement of a batch on PostgreSQL unless `chunkSize` says otherwise. */
export const DEFAULT_BATCH_CHUNK_SIZE = 20_000;

/**
 * Rows per INSERT statement on the embedded database (PGlite runs each statement on the caller's
 * thread, so a smaller chunk is a shorter stretch without timers or I/O for the host app).
 */
export const DEFAULT_EMBEDDED_BATCH_CHUNK_SIZE = 5_000;

/** The largest `chunkSize` a batch accepts. */
export const MAX_BATCH_CHUNK_SIZE = 100_000;

/** What a batch record call returns. */
export interface BatchRecordResult {
  /** Rows this call wrote: the batch's length, or 0 when its idempotency key was already used. */
  readonly count: number;
  /** The new rows' ids in input order, when `returnIds` was asked for. */
  readonly ids?: readonly number[];
  /** True when the batch's idempotency key had already recorded it: nothing was written. */
  readonly replayed?: boolean;
}

/**
 * One model call as a provider reports it, for `recordModelCall`. Input tokens are split the way
 * the columns are: `inputTokens` are the uncached ones, `cachedInputTokens` were read from the
 * prompt cache, `cacheWriteInputTokens` were written to it. Reasoning, audio and image tokens are
 * counted apart from `outputTokens` (each has its own column and price).
 */
export interface ModelCallInput {
  readonly userId: number;
  readonly modelId: number;
  readonly agentId?: number | null;
  readonly connectorId?: number | null;
  readonly createdAt?: Date;
  readonly inputTokens: number;
  readonly cachedInputTokens?: number;
  readonly cacheWriteInputTokens?: number;
  readonly outputTokens: number;
  readonly reasoningTokens?: number;
  readonly audioTokens?: number;
  readonly imageTokens?: number;
  /** Passed through to the usage as they are (see {@link ModelUsageInput}). */
  readonly webSearchCount?: number;
  readonly serviceTier?: ModelUsageInput["serviceTier"];
  readonly regionalProcessing?: string | null;
}

/** Options of `recordModelCall`. */
export interface ModelCallOptions extends RecordOptions {
  /**
   * The model's `longContextTokenThreshold` (PolicySynth's `configuration.prices`). A call whose
   * total input (`inputTokens + cachedInputTokens + cacheWriteInputTokens`) reaches it is
   * recorded entirely in the `long_context_*` columns. Absent, null or 0: never long context.
   */
  readonly longContextTokenThreshold?: number | null;
}

/** Sort order of a find: `newest` first (default) or `oldest` first, by `(createdAt, id)`. */
export type UsageOrder = "newest" | "oldest";

/** Paging of a find. */
export interface PageOptions {
  /** Rows per page: default {@link DEFAULT_PAGE_SIZE}, at most {@link MAX_PAGE_SIZE}. */
  readonly limit?: number;
  /** The `nextCursor` of the previous page (opaque). */
  readonly cursor?: string;
  readonly order?: UsageOrder;
}

/** Rows per page unless `limit` says otherwise. */
export const DEFAULT_PAGE_SIZE = 100;

/** The largest page a find returns. */
export const MAX_PAGE_SIZE = 1000;

/** Paging of `findModelUsage`, and which related rows to include. */
export interface ModelUsagePageOptions extends PageOptions {
  readonly include?: { readonly agent?: boolean; readonly connector?: boolean; readonly model?: boolean };
}

/** Paging of `findExternalApiUsage`, and which related rows to include. */
export interface ExternalApiUsagePageOptions extends PageOptions {
  readonly include?: { readonly agent?: boolean; readonly connector?: boolean; readonly externalApi?: boolean };
}

/** One page of a find. `nextCursor` is null on the last page. */
export interface UsagePage<T> {
  readonly items: readonly T[];
  readonly nextCursor: string | null;
}

/** A `ps_agents` row. */
export interface AgentRecord {
  readonly id: number;
  readonly uuid: string;
  readonly userId: number;
  readonly classId: number;
  readonly groupId: number;
  readonly parentAgentId: number | null;
  readonly configuration: unknown;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A `ps_agent_connectors` row. */
export interface ConnectorRecord {
  readonly id: number;
  readonly uuid: string;
  readonly userId: number;
  readonly classId: number;
  readonly groupId: number;
  readonly configuration: unknown;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A `ps_ai_models` row. */
export interface AiModelRecord {
  readonly id: number;
  readonly uuid: string;
  readonly userId: number;
  readonly organizationId: number | null;
  readonly name: string;
  readonly configuration: unknown;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A `ps_external_apis` row. */
export interface ExternalApiRecord {
  readonly id: number;
  readonly uuid: string;
  readonly userId: number;
  readonly organizationId: number | null;
  readonly type: string;
  readonly priceAdapter: unknown;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A model usage row from a find; related rows are present only when included. */
export type FoundModelUsage = ModelUsageRecord & {
  readonly agent?: AgentRecord | null;
  readonly connector?: ConnectorRecord | null;
  readonly model?: AiModelRecord;
};

/** An external API usage row from a find; related rows are present only when included. */
export type FoundExternalApiUsage = ExternalApiUsageRecord & {
  readonly agent?: AgentRecord | null;
  readonly connector?: ConnectorRecord | null;
  readonly externalApi?: ExternalApiRecord;
};
