/**
 * What the provider modules share: the normalized {@link ProviderUsage} every `usageFrom…`
 * function returns, the reader that validates a provider's usage object field by field, and
 * {@link providerUsageToModelUsage}, which turns a normalized call into the 14 `ps_model_usage`
 * counters with PolicySynth's all-or-nothing long-context split. Pure: no database.
 */
import { UsageValidationError, type FieldIssue } from "../errors";
import { modelCallTokensToCounters } from "../modelUsage";
import { MODEL_USAGE_COUNTERS, type ModelUsageCounter } from "../types";
import { countProblem, describeValue } from "../validation";

/** The providers whose usage objects this package reads. */
export type UsageProvider = "openai" | "anthropic" | "gemini";

/** Which of a provider's APIs the usage object came from. */
export type UsageApi = "chat_completions" | "responses" | "messages" | "generate_content";

/**
 * One model call as the provider reported it, normalized. The token counts are disjoint, like
 * the counters they become: `inputTokens` were neither read from nor written to a prompt cache,
 * `cachedInputTokens` were read from it, `cacheWriteInputTokens` were written to it;
 * `outputTokens` exclude the reasoning, audio and image output, which are counted apart. So
 * `inputTokens + cachedInputTokens + cacheWriteInputTokens` is the call's whole input and
 * `outputTokens + reasoningTokens + audioOutputTokens + imageOutputTokens` its whole output.
 */
export interface ProviderUsage {
  readonly provider: UsageProvider;
  readonly api: UsageApi;
  /** Input tokens billed at the plain input rate (not read from nor written to a cache). */
  readonly inputTokens: number;
  /** Input tokens read from the prompt cache. */
  readonly cachedInputTokens: number;
  /** Input tokens written to the prompt cache (all lifetimes). */
  readonly cacheWriteInputTokens: number;
  /**
   * Of `cacheWriteInputTokens`, those written with a 5-minute and with a 1-hour lifetime
   * (Anthropic prices them differently). Null when the provider does not split its writes by
   * lifetime (OpenAI, Gemini) or did not report the split.
   */
  readonly cacheWrite5mInputTokens: number | null;
  readonly cacheWrite1hInputTokens: number | null;
  /** Output tokens other than reasoning, audio and image. */
  readonly outputTokens: number;
  /** Reasoning ("thinking") output tokens. */
  readonly reasoningTokens: number;
  /**
   * Audio input tokens, when the provider reports them. They are part of the input counts above
   * (the package has no audio input counter); null when not reported.
   */
  readonly audioInputTokens: number | null;
  readonly audioOutputTokens: number;
  readonly imageOutputTokens: number;
  /** Web searches the call made (priced per thousand, apart from tokens). */
  readonly webSearchCalls: number;
  /**
   * The service tier the provider reports as applied to the call, in its own words (OpenAI
   * `"default"`, `"flex"`, `"priority"`, …; Anthropic `"standard"`, `"priority"`, `"batch"`;
   * Gemini `"standard"`, `"flex"`, `"priority"`), or null when it reported none.
   */
  readonly serviceTier: string | null;
  /** The provider's usage object as JSON data, every field kept (also the ones this package does not read). */
  readonly raw: { readonly [key: string]: unknown };
}

/** What the provider's usage object does not say, passed alongside it. */
export interface ProviderUsageOptions {
  /**
   * Web searches the call made, when the usage object does not count them: for OpenAI the
   * response's `web_search_call` output items, for Gemini the grounding searches. When the usage
   * object counts them too (Anthropic's `server_tool_use.web_search_requests`), both must agree.
   */
  readonly webSearchCalls?: number;
  /**
   * The service tier the provider reports as applied, when it is not inside the usage object:
   * OpenAI returns it as the response's `service_tier`, beside `usage`. When the usage object has
   * it too (Anthropic, Gemini), both must agree.
   */
  readonly serviceTier?: string | null;
}

/** All 14 `ps_model_usage` counters of one call (what `recordModelUsage` takes, without the ids). */
export type ModelUsageCounts = { readonly [K in ModelUsageCounter]: number };

/** A plain JSON object. */
export type JsonObject = Record<string, unknown>;

/**
 * Reads a provider's usage object and collects every problem with it (a batch of problems is
 * reported at once, as everywhere in this package). Paths name the provider's own fields, e.g.
 * `usage.prompt_tokens_details.cached_tokens`.
 */
export class UsageReader {
  /** Made on the first problem: most usage objects have none, and a batch maps thousands. */
  private issues: FieldIssue[] | null = null;

  problem(field: string, reason: string): void {
    (this.issues ??= []).push({ field, reason });
  }

  /** The usage object itself, or null (with an issue) when it is not an object. */
  root(value: unknown): JsonObject | null {
    if (isObject(value)) return value;
    this.problem("usage", `must be the provider's usage object, got ${describeValue(value)}`);
    return null;
  }

  /** A nested object; null when absent or null (providers send null for "none"). */
  object(parent: JsonObject | null, key: string, path: string): JsonObject | null {
    if (parent === null) return null;
    const value = parent[key];
    if (value === undefined || value === null) return null;
    if (isObject(value)) return value;
    this.problem(path, `must be an object, got ${describeValue(value)}`);
    return null;
  }

  /**
   * A token (or call) count: a non-negative safe integer. Absent or null gives null, or an issue
   * when `required`. A bad value gives an issue and NaN, so that checks between counts skip it.
   */
  count(parent: JsonObject | null, key: string, path: string, required = false): number | null {
    if (parent === null) return required ? NaN : null;
    const value = parent[key];
    if (value === undefined || value === null) {
      if (!required) return null;
      this.problem(path, "is required");
      return NaN;
    }
    const problem = tokenCountProblem(value);
    if (problem === null) return value as number;
    this.problem(path, problem);
    return NaN;
  }

  /** A string (a service tier); null when absent or null. */
  string(parent: JsonObject | null, key: string, path: string): string | null {
    if (parent === null) return null;
    const value = parent[key];
    if (value === undefined || value === null) return null;
    if (typeof value === "string" && value !== "") return value;
    this.problem(path, `must be a non-empty string, got ${describeValue(value)}`);
    return null;
  }

  /**
   * Checks the options object: only `allowed` keys, a count for `webSearchCalls`, a non-empty
   * string or null for `serviceTier`. Returns the valid ones (none when absent).
   */
  options(options: unknown, allowed: readonly string[]): Readonly<JsonObject> {
    if (options === undefined) return NO_OPTIONS;
    const valid: JsonObject = {};
    if (!isObject(options)) {
      this.problem("options", `must be an object, got ${describeValue(options)}`);
      return valid;
    }
    for (const key in options) {
      if (!allowed.includes(key)) this.problem(`options.${key}`, `is not an option (options are ${allowed.join(", ")})`);
      else if (key !== "webSearchCalls" && key !== "serviceTier") valid[key] = options[key];
    }
    const searches = options.webSearchCalls;
    if (searches !== undefined) {
      const problem = tokenCountProblem(searches);
      if (problem) this.problem("options.webSearchCalls", problem);
      else valid.webSearchCalls = searches;
    }
    const tier = options.serviceTier;
    if (tier !== undefined && tier !== null && (typeof tier !== "string" || tier === "")) {
      this.problem("options.serviceTier", `must be a non-empty string or null, got ${describeValue(tier)}`);
    } else if (tier !== undefined) valid.serviceTier = tier;
    return valid;
  }

  /**
   * A value the usage object may report and the options may pass too: whichever is given, and
   * an issue on the option when both are given and differ.
   */
  agree<T>(fromUsage: T | null, usagePath: string, fromOptions: T | null | undefined, optionPath: string): T | null {
    if (fromOptions === undefined || fromOptions === null) return fromUsage;
    if (fromUsage === null || Number.isNaN(fromUsage)) return fromOptions;
    if (fromUsage !== fromOptions) {
      this.problem(optionPath, `contradicts ${usagePath} (${JSON.stringify(fromUsage)}), got ${JSON.stringify(fromOptions)}`);
    }
    return fromUsage;
  }

  /** Throws a {@link UsageValidationError} listing every issue, if there is one. */
  throwIfAny(): void {
    if (this.issues !== null) throw new UsageValidationError(this.issues);
  }
}

/** Why `value` is not a token count (a non-negative safe integer), or null when it is one. */
export function tokenCountProblem(value: unknown): string | null {
  if (typeof value !== "number") return `must be a number, got ${describeValue(value)}`;
  if (!Number.isFinite(value)) return `must be a finite integer, got ${value}`;
  if (!Number.isInteger(value)) return `must be an integer, got ${value}`;
  if (value < 0) return `must not be negative, got ${value}`;
  if (!Number.isSafeInteger(value)) return `must be a safe integer (at most ${Number.MAX_SAFE_INTEGER}), got ${value}`;
  return null;
}

/** True when every count is a valid number (not NaN from a bad field). */
export function allValid(...counts: readonly number[]): boolean {
  return counts.every((c) => !Number.isNaN(c));
}

/**
 * The usage object as JSON data: what will be stored as the raw usage. A value JSON cannot hold
 * (a bigint, a cycle) is an issue on `usage`.
 */
export function rawCopy(reader: UsageReader, usage: JsonObject): JsonObject {
  try {
    return JSON.parse(JSON.stringify(usage)) as JsonObject;
  } catch (err) {
    reader.problem("usage", `must be JSON data (${err instanceof Error ? err.message : String(err)})`);
    return {};
  }
}

const NO_OPTIONS: Readonly<JsonObject> = Object.freeze({});

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const NORMALIZED_COUNTS = [
  "inputTokens",
  "cachedInputTokens",
  "cacheWriteInputTokens",
  "outputTokens",
  "reasoningTokens",
  "audioOutputTokens",
  "imageOutputTokens",
] as const;

/**
 * The 14 `ps_model_usage` counters of one provider call, split the way PolicySynth splits long
 * context (the same rule as `modelCallToUsage` and `recordModelCall`): when the call's whole
 * input (`inputTokens + cachedInputTokens + cacheWriteInputTokens`) reaches the model's
 * `longContextTokenThreshold`, all of its tokens go to the `long_context_*` counters; otherwise
 * to the normal ones. A threshold that is absent, null or 0 means the model has no long-context
 * pricing. Audio input has no counter of its own: it stays in the input counters. Web searches
 * and the service tier are not token counters; they stay on the {@link ProviderUsage}.
 *
 * Throws {@link UsageValidationError} for a count that is not an integer in 0..2147483647 (a
 * counter is a PostgreSQL INTEGER) or a bad threshold.
 *
 * @example
 * const usage = usageFromAnthropic(message.usage);
 * await recordModelUsage(db, { userId: 42, modelId: 3, ...providerUsageToModelUsage(usage, 200_000) });
 */
export function providerUsageToModelUsage(usage: ProviderUsage, longContextTokenThreshold?: number | null): ModelUsageCounts {
  const issues: FieldIssue[] = [];
  if (typeof usage !== "object" || usage === null || Array.isArray(usage)) {
    issues.push({ field: "usage", reason: `must be a ProviderUsage (from usageFromOpenAI, usageFromAnthropic or usageFromGemini), got ${describeValue(usage)}` });
  } else {
    for (const field of NORMALIZED_COUNTS) {
      const problem = countProblem(usage[field]);
      if (problem) issues.push({ field: `usage.${field}`, reason: problem });
    }
  }
  if (longContextTokenThreshold !== undefined && longContextTokenThreshold !== null) {
    const problem = countProblem(longContextTokenThreshold);
    if (problem) issues.push({ field: "longContextTokenThreshold", reason: problem });
  }
  if (issues.length > 0) throw new UsageValidationError(issues);

  const counts = {} as Record<ModelUsageCounter, number>;
  for (const [counter] of MODEL_USAGE_COUNTERS) counts[counter] = 0;
  const split = modelCallTokensToCounters(
    {
      inputTokens: usage.inputTokens,
      cachedInputTokens: usage.cachedInputTokens,
      cacheWriteInputTokens: usage.cacheWriteInputTokens,
      outputTokens: usage.outputTokens,
      reasoningTokens: usage.reasoningTokens,
      audioTokens: usage.audioOutputTokens,
      imageTokens: usage.imageOutputTokens,
    },
    longContextTokenThreshold,
  );
  return Object.assign(counts, split);
}
