/**
 * Anthropic Messages usage objects to a {@link ProviderUsage}.
 *
 * Facts this mapping rests on (read from Anthropic's own documentation):
 * - `input_tokens` EXCLUDES the cache: it is the "number of input tokens which were not read from
 *   or used to create a cache (that is, tokens after the last cache breakpoint)", and
 *   `total_input_tokens = cache_read_input_tokens + cache_creation_input_tokens + input_tokens`.
 *   So the three are already disjoint and map one to one.
 *   https://platform.claude.com/docs/en/build-with-claude/prompt-caching#tracking-cache-performance
 * - `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` split the writes by
 *   lifetime (priced 1.25x and 2x the input rate), and "the current `cache_creation_input_tokens`
 *   field equals the sum of the values in the `cache_creation` object".
 *   https://platform.claude.com/docs/en/build-with-claude/prompt-caching#1-hour-cache-duration
 * - `output_tokens` includes thinking: `output_tokens_details.thinking_tokens` is "always <=
 *   `output_tokens`; `output_tokens - thinking_tokens` approximates the non-reasoning output"
 *   (anthropic-sdk-python src/anthropic/types/output_tokens_details.py and usage.py).
 * - `server_tool_use.web_search_requests` counts the web searches ($10 per 1,000 searches, apart
 *   from tokens). https://platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool
 * - `usage.service_tier` is the tier assigned to the request: "standard", "priority" or "batch".
 *   https://platform.claude.com/docs/en/api/service-tiers
 */
import {
  UsageReader,
  allValid,
  rawCopy,
  type ProviderUsage,
  type ProviderUsageOptions,
} from "./shared";

/** Options of {@link usageFromAnthropic}. */
export type AnthropicUsageOptions = ProviderUsageOptions;

const OPTIONS = ["webSearchCalls", "serviceTier"] as const;

/**
 * Normalizes an Anthropic Messages `usage` (`input_tokens`, `output_tokens`,
 * `cache_read_input_tokens`, `cache_creation_input_tokens`, `cache_creation.ephemeral_5m_input_tokens`
 * / `ephemeral_1h_input_tokens`, `output_tokens_details.thinking_tokens`,
 * `server_tool_use.web_search_requests`, `service_tier`). Anthropic's `input_tokens` already
 * excludes cache reads and cache writes, so it is taken as it is; the writes are the 5-minute and
 * 1-hour writes summed, also reported apart (`cacheWrite5mInputTokens`, `cacheWrite1hInputTokens`;
 * null when the usage gives a write total without its split). Thinking tokens are taken out of
 * `output_tokens` into `reasoningTokens`.
 *
 * Throws {@link UsageValidationError} naming the field for a usage that is not an object, a count
 * that is not a non-negative safe integer, a missing `input_tokens` / `output_tokens`, or counts
 * that contradict each other (a `cache_creation` split that does not add up to
 * `cache_creation_input_tokens`, thinking tokens above `output_tokens`, options that contradict
 * the usage). Fields it does not read never throw: they stay in `raw`.
 *
 * @example
 * const message = await anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 1024, messages });
 * const usage = usageFromAnthropic(message.usage);
 * usage.cacheWrite1hInputTokens; // cache_creation.ephemeral_1h_input_tokens
 */
export function usageFromAnthropic(usage: unknown, options?: AnthropicUsageOptions): ProviderUsage {
  return mapAnthropic(usage, options, true);
}

/**
 * @internal usageFromAnthropic for the package's own batches: `copyRaw` false skips the copy of the raw usage
 * (half the mapping's time; a batch stores no usage item) and keeps the caller's object as `raw`.
 */
export function mapAnthropic(usage: unknown, options: AnthropicUsageOptions | undefined, copyRaw: boolean): ProviderUsage {
  const reader = new UsageReader();
  const opts = reader.options(options, OPTIONS);
  const u = reader.root(usage);
  if (u === null) {
    reader.throwIfAny();
    throw new Error("unreachable: an unread Anthropic usage without an issue");
  }
  const input = reader.count(u, "input_tokens", "usage.input_tokens", true) as number;
  const output = reader.count(u, "output_tokens", "usage.output_tokens", true) as number;
  const cacheRead = reader.count(u, "cache_read_input_tokens", "usage.cache_read_input_tokens") ?? 0;
  const writeTotal = reader.count(u, "cache_creation_input_tokens", "usage.cache_creation_input_tokens");
  const split = reader.object(u, "cache_creation", "usage.cache_creation");
  const write5m = reader.count(split, "ephemeral_5m_input_tokens", "usage.cache_creation.ephemeral_5m_input_tokens");
  const write1h = reader.count(split, "ephemeral_1h_input_tokens", "usage.cache_creation.ephemeral_1h_input_tokens");
  const outDetails = reader.object(u, "output_tokens_details", "usage.output_tokens_details");
  const thinking = reader.count(outDetails, "thinking_tokens", "usage.output_tokens_details.thinking_tokens") ?? 0;
  const serverTools = reader.object(u, "server_tool_use", "usage.server_tool_use");
  const searchesPath = "usage.server_tool_use.web_search_requests";
  const searches = reader.count(serverTools, "web_search_requests", searchesPath);
  const tier = reader.string(u, "service_tier", "usage.service_tier");

  let cacheWrite = writeTotal ?? 0;
  let cacheWrite5m: number | null = null;
  let cacheWrite1h: number | null = null;
  if (split !== null) {
    cacheWrite5m = write5m ?? 0;
    cacheWrite1h = write1h ?? 0;
    const sum = cacheWrite5m + cacheWrite1h;
    if (writeTotal === null) cacheWrite = sum;
    else if (allValid(writeTotal, sum) && writeTotal !== sum) {
      reader.problem(
        "usage.cache_creation",
        `ephemeral_5m_input_tokens + ephemeral_1h_input_tokens (${cacheWrite5m} + ${cacheWrite1h} = ${sum}) must equal usage.cache_creation_input_tokens (${writeTotal}), their total`,
      );
    }
  } else if (cacheWrite === 0) {
    // Nothing was written, so nothing was written with either lifetime.
    cacheWrite5m = 0;
    cacheWrite1h = 0;
  }
  if (allValid(output, thinking) && thinking > output) {
    reader.problem("usage.output_tokens_details.thinking_tokens", `must not exceed usage.output_tokens (${output}), which includes the thinking tokens; got ${thinking}`);
  }
  const webSearchCalls = reader.agree(searches, searchesPath, opts.webSearchCalls as number | undefined, "options.webSearchCalls") ?? 0;
  const serviceTier = reader.agree(tier, "usage.service_tier", opts.serviceTier as string | null | undefined, "options.serviceTier");

  const raw = copyRaw ? rawCopy(reader, u) : u;
  reader.throwIfAny();
  return {
    provider: "anthropic",
    api: "messages",
    inputTokens: input,
    cachedInputTokens: cacheRead,
    cacheWriteInputTokens: cacheWrite,
    cacheWrite5mInputTokens: cacheWrite5m,
    cacheWrite1hInputTokens: cacheWrite1h,
    outputTokens: output - thinking,
    reasoningTokens: thinking,
    audioInputTokens: null,
    audioOutputTokens: 0,
    imageOutputTokens: 0,
    webSearchCalls,
    serviceTier,
    raw,
  };
}
