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
