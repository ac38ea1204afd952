// Provider usage in, counters out (issue 13, part 1): each provider's own usage object, copied
// from its documentation, normalized into disjoint counts and then into the 14 counters with
// PolicySynth's all-or-nothing long-context split. Pure: no database.
import {
  MODEL_USAGE_COUNTERS,
  UsageValidationError,
  providerUsageToModelUsage,
  usageFromAnthropic,
  usageFromGemini,
  usageFromOpenAI,
  type FieldIssue,
  type ModelUsageCounts,
  type ProviderUsage,
} from "../src";

/** The issues of a call that must throw a UsageValidationError. */
function issuesOf(call: () => unknown): readonly FieldIssue[] {
  let error: unknown;
  try {
    call();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(UsageValidationError);
  return (error as UsageValidationError).issues;
}

/** The fields an error names. */
function fieldsOf(call: () => unknown): string[] {
  return issuesOf(call).map((i) => i.field);
}

/** All 14 counters at 0, with `set` on top. */
function counters(set: Partial<Record<keyof ModelUsageCounts, number>>): ModelUsageCounts {
  const all = Object.fromEntries(MODEL_USAGE_COUNTERS.map(([field]) => [field, 0])) as Record<keyof ModelUsageCounts, number>;
  return { ...all, ...set };
}

describe("usageFromOpenAI", () => {
  test("Chat Completions: the API reference's chat completion object, service tier from the response", () => {
    // https://platform.openai.com/docs/api-reference/chat/object (chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT)
    const completion = {
      id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      object: "chat.completion",
      model: "gpt-4.1-2025-04-14",
      usage: {
        prompt_tokens: 19,
        completion_tokens: 10,
        total_tokens: 29,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      },
      service_tier: "default",
    };
    const usage = usageFromOpenAI(completion.usage, { serviceTier: completion.service_tier });
    expect(usage).toEqual({
      provider: "openai",
      api: "chat_completions",
      inputTokens: 19,
      cachedInputTokens: 0,
      cacheWriteInputTokens: 0,
      cacheWrite5mInputTokens: null,
      cacheWrite1hInputTokens: null,
      outputTokens: 10,
      reasoningTokens: 0,
      audioInputTokens: 0,
      audioOutputTokens: 0,
      imageOutputTokens: 0,
      webSearchCalls: 0,
      serviceTier: "default",
      raw: completion.usage,
    });
  });

  test("prompt_tokens includes cached_tokens: the prompt caching guide's example leaves 86 uncached", () => {
    // https://platform.openai.com/docs/guides/prompt-caching (as quoted in openai/openai-python#2544)
    const usage = usageFromOpenAI({
      prompt_tokens: 2006,
      completion_tokens: 300,
      total_tokens: 2306,
      prompt_tokens_details: { cached_tokens: 1920 },
      completion_tokens_details: { reasoning_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    });
    expect(usage.inputTokens).toBe(86);
    expect(usage.cachedInputTokens).toBe(1920);
    expect(usage.outputTokens).toBe(300);
    expect(usage.audioInputTokens).toBeNull(); // not reported here
    expect(providerUsageToModelUsage(usage)).toEqual(counters({ tokenInCount: 86, tokenInCachedContextCount: 1920, tokenOutCount: 300 }));
  });

  test("Responses: output_tokens includes reasoning_tokens (the reasoning guide's example)", () => {
    // https://developers.openai.com/api/docs/guides/reasoning
    const usage = usageFromOpenAI({
      input_tokens: 75,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 1186,
      output_tokens_details: { reasoning_tokens: 1024 },
      total_tokens: 1261,
    });
    expect(usage.api).toBe("responses");
    expect(usage.inputTokens).toBe(75);
    expect(usage.outputTokens).toBe(162);
    expect(usage.reasoningTokens).toBe(1024);
    expect(providerUsageToModelUsage(usage)).toEqual(counters({ tokenInCount: 75, tokenOutCount: 162, tokenOutReasoningCount: 1024 }));
  });

  test("audio output is part of completion_tokens and gets its own counter", () => {
    // A gpt-4o-audio-preview chat completion as published in an API proxy's docs
    // (https://302ai-jp.apifox.cn/225241593e0); OpenAI's own pages show no audio usage with numbers.
    // completion_tokens 54 = audio 37 + text 17.
    const raw = {
      prompt_tokens: 8,
      completion_tokens: 54,
      total_tokens: 62,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0, text_tokens: 8, image_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 37, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0, text_tokens: 17 },
    };
    const usage = usageFromOpenAI(raw);
    expect(usage.outputTokens).toBe(17);
    expect(usage.audioOutputTokens).toBe(37);
    expect(usage.audioInputTokens).toBe(0);
    expect(usage.raw).toEqual(raw); // text_tokens and image_tokens are not read, but kept
    expect(providerUsageToModelUsage(usage)).toEqual(counters({ tokenInCount: 8, tokenOutCount: 17, tokenOutAudioCount: 37 }));
  });

  test("cache writes (GPT-5.6 and later) are part of the input too, apart from reads", () => {
    // "OpenAI reports writes in cache_write_tokens and reads in cached_tokens ... input tokens use
    // the uncached-input, cached-input, or cache-write rate" (developers.openai.com/api/docs/guides/prompt-caching).
    // The guide shows no numbers for writes: these are ours.
    const usage = usageFromOpenAI({
      input_tokens: 5000,
      input_tokens_details: { cached_tokens: 0, cache_write_tokens: 4096 },
      output_tokens: 200,
      output_tokens_details: { reasoning_tokens: 64 },
      total_tokens: 5200,
    });
    expect(usage).toMatchObject({ inputTokens: 904, cachedInputTokens: 0, cacheWriteInputTokens: 4096, outputTokens: 136, reasoningTokens: 64 });
  });

  test("a flex call with web searches: the tier and the searches come from the response, not usage", () => {
    const usage = usageFromOpenAI(
      { input_tokens: 75, output_tokens: 1186, output_tokens_details: { reasoning_tokens: 1024 }, total_tokens: 1261 },
      { serviceTier: "flex", webSearchCalls: 2 },
    );
    expect(usage.serviceTier).toBe("flex");
    expect(usage.webSearchCalls).toBe(2);
  });

  test("the API is decided by shape, or by options.api when a usage has both shapes", () => {
    const both = { prompt_tokens: 10, completion_tokens: 5, input_tokens: 12, output_tokens: 6 };
    expect(fieldsOf(() => usageFromOpenAI(both))).toEqual(["usage"]);
    expect(usageFromOpenAI(both, { api: "chat_completions" })).toMatchObject({ api: "chat_completions", inputTokens: 10, outputTokens: 5 });
    expect(usageFromOpenAI(both, { api: "responses" })).toMatchObject({ api: "responses", inputTokens: 12, outputTokens: 6 });
  });

  test("Gemini's OpenAI-compatible endpoint counts reasoning outside completion_tokens: total_tokens gives it away", () => {
    // A real usage from Gemini through the OpenAI SDK, quoted in openai/openai-python#2544:
    // 2181 + 57 = 2238, not 2518 (its reasoning_tokens 280 are counted beside completion_tokens).
    const issues = issuesOf(() =>
      usageFromOpenAI({ completion_tokens: 57, prompt_tokens: 2181, total_tokens: 2518, completion_tokens_details: null, prompt_tokens_details: null, reasoning_tokens: 280 }),
    );
    expect(issues).toEqual([{ field: "usage.total_tokens", reason: "must equal prompt_tokens + completion_tokens (2181 + 57 = 2238), got 2518" }]);
  });
});

describe("usageFromAnthropic", () => {
  test("input_tokens excludes cache reads and writes: the web search example maps one to one", () => {
    // https://platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool ("Usage and pricing")
    const raw = {
      input_tokens: 105,
      output_tokens: 6039,
      cache_read_input_tokens: 7123,
      cache_creation_input_tokens: 7345,
      server_tool_use: { web_search_requests: 1 },
    };
    expect(usageFromAnthropic(raw)).toEqual({
      provider: "anthropic",
      api: "messages",
      inputTokens: 105,
      cachedInputTokens: 7123,
      cacheWriteInputTokens: 7345,
      cacheWrite5mInputTokens: null, // a write total without its split by lifetime
      cacheWrite1hInputTokens: null,
      outputTokens: 6039,
      reasoningTokens: 0,
      audioInputTokens: null,
      audioOutputTokens: 0,
      imageOutputTokens: 0,
      webSearchCalls: 1,
      serviceTier: null,
      raw,
    });
  });

  test("the service tier applied is in usage (the service tiers page's example)", () => {
    // https://platform.claude.com/docs/en/api/service-tiers
    const usage = usageFromAnthropic({ input_tokens: 410, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 585, service_tier: "priority" });
    expect(usage).toMatchObject({ inputTokens: 410, cachedInputTokens: 0, cacheWriteInputTokens: 0, outputTokens: 585, serviceTier: "priority" });
    // Nothing was written, so nothing with either lifetime.
    expect([usage.cacheWrite5mInputTokens, usage.cacheWrite1hInputTokens]).toEqual([0, 0]);
    expect(usageFromAnthropic({ input_tokens: 1, output_tokens: 1, service_tier: "batch" }).serviceTier).toBe("batch");
  });

  test("a 1-hour cache write, with the fields this package does not read kept in raw", () => {
    // A Messages usage as Claude Code logged it (msg_017TKwBGQSY9phGZp1ZFrNiJ,
    // req_011CYFTXWXWj2oSjRhNTQw6d), from a public write-up of its transcript format.
    const raw = {
      input_tokens: 2,
      cache_creation_input_tokens: 10408,
      cache_read_input_tokens: 14265,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 10408 },
      output_tokens: 1,
      service_tier: "standard",
      inference_geo: "not_available",
    };
    const usage = usageFromAnthropic(raw);
    expect(usage).toMatchObject({
      inputTokens: 2,
      cachedInputTokens: 14265,
      cacheWriteInputTokens: 10408,
      cacheWrite5mInputTokens: 0,
      cacheWrite1hInputTokens: 10408,
      outputTokens: 1,
      serviceTier: "standard",
    });
    expect(usage.raw).toEqual(raw);
  });

  test("5-minute and 1-hour writes are summed and kept apart; the docs' own example does not add up", () => {
    // https://platform.claude.com/docs/en/build-with-claude/prompt-caching#1-hour-cache-duration says
    // "cache_creation_input_tokens ... equals the sum of the values in the cache_creation object",
    // yet its example has 248 against 456 + 100: a contradiction, rejected.
    const documented = {
      input_tokens: 2048,
      cache_read_input_tokens: 1800,
      cache_creation_input_tokens: 248,
      output_tokens: 503,
      cache_creation: { ephemeral_5m_input_tokens: 456, ephemeral_1h_input_tokens: 100 },
    };
    expect(issuesOf(() => usageFromAnthropic(documented))).toEqual([
      {
        field: "usage.cache_creation",
        reason: "ephemeral_5m_input_tokens + ephemeral_1h_input_tokens (456 + 100 = 556) must equal usage.cache_creation_input_tokens (248), their total",
      },
    ]);
    // With the total that the documented rule gives, both lifetimes are counted.
    const usage = usageFromAnthropic({ ...documented, cache_creation_input_tokens: 556 });
    expect(usage).toMatchObject({ inputTokens: 2048, cachedInputTokens: 1800, cacheWriteInputTokens: 556, cacheWrite5mInputTokens: 456, cacheWrite1hInputTokens: 100 });
    // A split without the total: the total is the sum.
    const { cache_creation_input_tokens: _omitted, ...withoutTotal } = documented;
    expect(usageFromAnthropic(withoutTotal).cacheWriteInputTokens).toBe(556);
  });

  test("thinking tokens are part of output_tokens and become reasoning", () => {
    // output_tokens_details.thinking_tokens is "always <= output_tokens" (anthropic-sdk-python
    // types/output_tokens_details.py); the numbers are ours.
    const usage = usageFromAnthropic({ input_tokens: 50, output_tokens: 503, output_tokens_details: { thinking_tokens: 311 } });
    expect(usage).toMatchObject({ outputTokens: 192, reasoningTokens: 311 });
  });

  test("options may fill in, but not contradict, what usage says", () => {
    const usage = { input_tokens: 105, output_tokens: 6039, server_tool_use: { web_search_requests: 1 }, service_tier: "standard" };
    expect(usageFromAnthropic(usage, { webSearchCalls: 1, serviceTier: "standard" })).toMatchObject({ webSearchCalls: 1, serviceTier: "standard" });
    expect(issuesOf(() => usageFromAnthropic(usage, { webSearchCalls: 2, serviceTier: "priority" }))).toEqual([
      { field: "options.webSearchCalls", reason: "contradicts usage.server_tool_use.web_search_requests (1), got 2" },
      { field: "options.serviceTier", reason: 'contradicts usage.service_tier ("standard"), got "priority"' },
    ]);
    expect(usageFromAnthropic({ input_tokens: 1, output_tokens: 1 }, { webSearchCalls: 3 }).webSearchCalls).toBe(3);
  });
});

describe("usageFromGemini", () => {
  test("the count tokens reference's example", () => {
    // https://ai.google.dev/api/tokens: "prompt_token_count: 11, candidates_token_count: 73,
    // total_token_count: 84" (the REST JSON names them in camelCase)
    const raw = { promptTokenCount: 11, candidatesTokenCount: 73, totalTokenCount: 84 };
    expect(usageFromGemini(raw)).toEqual({
      provider: "gemini",
      api: "generate_content",
      inputTokens: 11,
      cachedInputTokens: 0,
      cacheWriteInputTokens: 0,
      cacheWrite5mInputTokens: null,
      cacheWrite1hInputTokens: null,
      outputTokens: 73,
      reasoningTokens: 0,
      audioInputTokens: null,
      audioOutputTokens: 0,
      imageOutputTokens: 0,
      webSearchCalls: 0,
      serviceTier: null,
      raw,
    });
  });

  test("thoughtsTokenCount is apart from candidatesTokenCount", () => {
    // A live gemini-2.5-flash response that spent its budget thinking (quoted in a public test
    // suite): 27 + 6 + 194 = 227. totalTokenCount sums prompt, candidates, tool-use prompt and
    // thoughts (googleapis.github.io/js-genai/release_docs/interfaces/types.UsageMetadata.html).
    const usage = usageFromGemini({ promptTokenCount: 27, candidatesTokenCount: 6, thoughtsTokenCount: 194, totalTokenCount: 227 });
    expect(usage).toMatchObject({ inputTokens: 27, outputTokens: 6, reasoningTokens: 194 });
    expect(providerUsageToModelUsage(usage)).toEqual(counters({ tokenInCount: 27, tokenOutCount: 6, tokenOutReasoningCount: 194 }));
  });

  test("promptTokenCount includes cachedContentTokenCount; tool-use prompt tokens are input beside it; modalities split the output", () => {
    // Field meanings from https://ai.google.dev/api/generate-content#UsageMetadata and the js-genai
    // reference; the numbers are ours (Google's pages show no response with all of them).
    const raw = {
      promptTokenCount: 141_236,
      cachedContentTokenCount: 140_000,
      toolUsePromptTokenCount: 320,
      candidatesTokenCount: 1_370,
      thoughtsTokenCount: 512,
      totalTokenCount: 143_438,
      promptTokensDetails: [
        { modality: "TEXT", tokenCount: 140_978 },
        { modality: "AUDIO", tokenCount: 258 },
      ],
      cacheTokensDetails: [{ modality: "TEXT", tokenCount: 140_000 }],
      candidatesTokensDetails: [
        { modality: "TEXT", tokenCount: 50 },
        { modality: "IMAGE", tokenCount: 1_290 },
        { modality: "AUDIO", tokenCount: 30 },
      ],
      serviceTier: "flex",
      trafficType: "ON_DEMAND",
    };
    const usage = usageFromGemini(raw, { webSearchCalls: 1 });
    expect(usage).toMatchObject({
      inputTokens: 1_556, // 141,236 - 140,000 + 320
      cachedInputTokens: 140_000,
      cacheWriteInputTokens: 0,
      outputTokens: 50,
      reasoningTokens: 512,
      audioInputTokens: 258,
      audioOutputTokens: 30,
      imageOutputTokens: 1_290,
      webSearchCalls: 1,
      serviceTier: "flex",
    });
    expect(usage.raw).toEqual(raw);
  });

  test("zero counts left out of the JSON are 0, and the Live API's responseTokenCount is the candidates", () => {
    expect(usageFromGemini({ promptTokenCount: 9 })).toMatchObject({ inputTokens: 9, outputTokens: 0, reasoningTokens: 0 });
    expect(usageFromGemini({ promptTokenCount: 100, responseTokenCount: 50, responseTokensDetails: [{ modality: "AUDIO", tokenCount: 50 }] })).toMatchObject({
      outputTokens: 0,
      audioOutputTokens: 50,
    });
  });
});

describe("providerUsageToModelUsage: PolicySynth's all-or-nothing long-context split", () => {
  // The web search example: 105 + 7,123 + 7,345 = 14,573 input tokens in all.
  const usage = usageFromAnthropic({
    input_tokens: 105,
    output_tokens: 6039,
    cache_read_input_tokens: 7123,
    cache_creation_input_tokens: 7345,
    output_tokens_details: { thinking_tokens: 39 },
    server_tool_use: { web_search_requests: 1 },
  });

  test("a call whose whole input reaches the threshold goes entirely to long_context_*", () => {
    expect(providerUsageToModelUsage(usage, 14_573)).toEqual(
      counters({
        longContextTokenInCount: 105,
        longContextTokenInCachedContextCount: 7123,
        longContextTokenInCacheWriteCount: 7345,
        longContextTokenOutCount: 6000,
        longContextTokenOutReasoningCount: 39,
      }),
    );
  });

  test("one token short of it, or no threshold, it all stays in the normal counters", () => {
    const normal = counters({ tokenInCount: 105, tokenInCachedContextCount: 7123, tokenInCacheWriteCount: 7345, tokenOutCount: 6000, tokenOutReasoningCount: 39 });
    expect(providerUsageToModelUsage(usage, 14_574)).toEqual(normal);
    expect(providerUsageToModelUsage(usage)).toEqual(normal);
    expect(providerUsageToModelUsage(usage, null)).toEqual(normal);
    expect(providerUsageToModelUsage(usage, 0)).toEqual(normal);
  });

  test("audio and image output go to their own long-context counters too", () => {
    const gemini = usageFromGemini({
      promptTokenCount: 300_000,
      cachedContentTokenCount: 100_000,
      candidatesTokenCount: 1_400,
      candidatesTokensDetails: [
        { modality: "IMAGE", tokenCount: 1_290 },
        { modality: "AUDIO", tokenCount: 10 },
        { modality: "TEXT", tokenCount: 100 },
      ],
    });
    expect(providerUsageToModelUsage(gemini, 200_000)).toEqual(
      counters({
        longContextTokenInCount: 200_000,
        longContextTokenInCachedContextCount: 100_000,
        longContextTokenOutCount: 100,
        longContextTokenOutAudioCount: 10,
        longContextTokenOutImageCount: 1_290,
      }),
    );
  });

  test("a bad threshold or a count no counter can hold is rejected", () => {
    expect(fieldsOf(() => providerUsageToModelUsage(usage, -1))).toEqual(["longContextTokenThreshold"]);
    const huge: ProviderUsage = { ...usage, inputTokens: 2_147_483_648 };
    expect(issuesOf(() => providerUsageToModelUsage(huge))).toEqual([
      { field: "usage.inputTokens", reason: "must be at most 2147483647 (PostgreSQL INTEGER), got 2147483648" },
    ]);
    expect(fieldsOf(() => providerUsageToModelUsage(null as unknown as ProviderUsage))).toEqual(["usage"]);
  });
});

describe("bad usage objects are UsageValidationErrors naming the provider's field", () => {
  test("not an object", () => {
    for (const bad of [null, undefined, "19 tokens", 19, [], true]) {
      expect(fieldsOf(() => usageFromOpenAI(bad))).toEqual(["usage"]);
      expect(fieldsOf(() => usageFromAnthropic(bad))).toEqual(["usage"]);
      expect(fieldsOf(() => usageFromGemini(bad))).toEqual(["usage"]);
    }
  });

  test("negative, non-integer, unsafe, non-number counts", () => {
    expect(issuesOf(() => usageFromOpenAI({ prompt_tokens: -1, completion_tokens: 1.5 }))).toEqual([
      { field: "usage.prompt_tokens", reason: "must not be negative, got -1" },
      { field: "usage.completion_tokens", reason: "must be an integer, got 1.5" },
    ]);
    expect(issuesOf(() => usageFromAnthropic({ input_tokens: 2 ** 53, output_tokens: "12", cache_read_input_tokens: NaN }))).toEqual([
      { field: "usage.input_tokens", reason: `must be a safe integer (at most ${Number.MAX_SAFE_INTEGER}), got ${2 ** 53}` },
      { field: "usage.output_tokens", reason: 'must be a number, got string "12"' },
      { field: "usage.cache_read_input_tokens", reason: "must be a finite integer, got NaN" },
    ]);
    expect(fieldsOf(() => usageFromGemini({ promptTokenCount: 10, candidatesTokensDetails: [{ modality: "TEXT", tokenCount: 5 }, { modality: "IMAGE", tokenCount: -3 }] }))).toEqual([
      "usage.candidatesTokensDetails[1].tokenCount",
    ]);
    expect(fieldsOf(() => usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: { cached_tokens: "all" } }))).toEqual([
      "usage.prompt_tokens_details.cached_tokens",
    ]);
  });

  test("missing required counts", () => {
    expect(issuesOf(() => usageFromAnthropic({ output_tokens: 1 }))).toEqual([{ field: "usage.input_tokens", reason: "is required" }]);
    expect(fieldsOf(() => usageFromGemini({ candidatesTokenCount: 5 }))).toEqual(["usage.promptTokenCount"]);
    expect(fieldsOf(() => usageFromOpenAI({ total_tokens: 5 }))).toEqual(["usage.prompt_tokens"]);
    expect(fieldsOf(() => usageFromOpenAI({ input_tokens: 5 }))).toEqual(["usage.output_tokens"]);
  });

  test("counts that contradict each other", () => {
    expect(issuesOf(() => usageFromOpenAI({ prompt_tokens: 100, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 101 } }))).toEqual([
      { field: "usage.prompt_tokens_details.cached_tokens", reason: "must not exceed usage.prompt_tokens (100), which includes the cached tokens; got 101" },
    ]);
    expect(fieldsOf(() => usageFromOpenAI({ input_tokens: 100, output_tokens: 1, input_tokens_details: { cached_tokens: 60, cache_write_tokens: 41 } }))).toEqual([
      "usage.input_tokens_details.cache_write_tokens",
    ]);
    expect(fieldsOf(() => usageFromOpenAI({ input_tokens: 10, output_tokens: 100, output_tokens_details: { reasoning_tokens: 101 } }))).toEqual([
      "usage.output_tokens_details.reasoning_tokens",
    ]);
    expect(fieldsOf(() => usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 10, completion_tokens_details: { reasoning_tokens: 6, audio_tokens: 5 } }))).toEqual([
      "usage.completion_tokens_details.audio_tokens",
    ]);
    expect(fieldsOf(() => usageFromAnthropic({ input_tokens: 1, output_tokens: 10, output_tokens_details: { thinking_tokens: 11 } }))).toEqual([
      "usage.output_tokens_details.thinking_tokens",
    ]);
    expect(issuesOf(() => usageFromGemini({ promptTokenCount: 100, cachedContentTokenCount: 140 }))).toEqual([
      { field: "usage.cachedContentTokenCount", reason: "must not exceed usage.promptTokenCount (100), which includes the cached tokens; got 140" },
    ]);
    expect(fieldsOf(() => usageFromGemini({ promptTokenCount: 1, candidatesTokenCount: 10, candidatesTokensDetails: [{ modality: "IMAGE", tokenCount: 11 }] }))).toEqual([
      "usage.candidatesTokensDetails",
    ]);
  });

  test("every problem is listed at once", () => {
    expect(fieldsOf(() => usageFromOpenAI({ prompt_tokens: -5, completion_tokens: 2.5, prompt_tokens_details: "none" }, { webSearchCalls: -1, colour: "red" } as never))).toEqual([
      "options.colour",
      "options.webSearchCalls",
      "usage.prompt_tokens",
      "usage.completion_tokens",
      "usage.prompt_tokens_details",
    ]);
  });

  test("bad options", () => {
    expect(fieldsOf(() => usageFromOpenAI({ prompt_tokens: 1, completion_tokens: 1 }, { api: "completions" } as never))).toEqual(["options.api"]);
    expect(fieldsOf(() => usageFromGemini({ promptTokenCount: 1 }, { serviceTier: "" }))).toEqual(["options.serviceTier"]);
    expect(fieldsOf(() => usageFromGemini({ promptTokenCount: 1, serviceTier: "standard" }, { serviceTier: "flex" }))).toEqual(["options.serviceTier"]);
    expect(fieldsOf(() => usageFromAnthropic({ input_tokens: 1, output_tokens: 1 }, "fast" as never))).toEqual(["options"]);
  });

  test("a value JSON cannot hold, even in a field not read, is rejected", () => {
    expect(issuesOf(() => usageFromAnthropic({ input_tokens: 1, output_tokens: 1, request_cost: 10n }))).toEqual([
      { field: "usage", reason: "must be JSON data (Do not know how to serialize a BigInt)" },
    ]);
  });
});

describe("unknown fields never throw and stay in raw", () => {
  test("each provider keeps the whole object, as a copy", () => {
    const openai = { prompt_tokens: 5, completion_tokens: 1, future_tokens_details: { hologram_tokens: 3 } };
    const anthropic = { input_tokens: 5, output_tokens: 1, iterations: [{ input_tokens: 5, output_tokens: 1, type: "message" }], speed: "standard" };
    const gemini = { promptTokenCount: 5, trafficType: "ON_DEMAND", newCount: 7 };
    const usages = [usageFromOpenAI(openai), usageFromAnthropic(anthropic), usageFromGemini(gemini)];
    expect(usages.map((u) => u.raw)).toEqual([openai, anthropic, gemini]);
    // The raw usage is the JSON the provider sent, not a live view of the caller's object.
    openai.prompt_tokens = 6;
    expect(usages[0].raw.prompt_tokens).toBe(5);
  });
});
