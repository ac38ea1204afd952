/**
 * Gemini `usageMetadata` objects (generateContent) to a {@link ProviderUsage}.
 *
 * Facts this mapping rests on (read from Google's own reference documentation):
 * - `promptTokenCount` INCLUDES the cache: "When `cached_content` is set, this is still the total
 *   effective prompt size meaning this includes the number of tokens in the cached content";
 *   `cachedContentTokenCount` is the "number of tokens in the cached part of the prompt".
 *   https://ai.google.dev/api/generate-content#UsageMetadata (also in Google's SDK references:
 *   https://googleapis.github.io/js-genai/release_docs/interfaces/types.UsageMetadata.html and
 *   https://ai.google.dev/api/python/google/generativeai/protos/GenerateContentResponse/UsageMetadata)
 * - `thoughtsTokenCount` and `toolUsePromptTokenCount` are APART from the prompt and candidates:
 *   `totalTokenCount` is "the sum of prompt_token_count, candidates_token_count,
 *   tool_use_prompt_token_count, and thoughts_token_count"; tool-use prompt tokens are "the
 *   results from tool executions, which are provided back to the model as input".
 *   https://googleapis.github.io/js-genai/release_docs/interfaces/types.UsageMetadata.html
 *   Older versions of the same reference define the total without the thoughts ("prompt,
 *   response candidates, and tool-use prompts"), so `totalTokenCount` is kept in `raw` but not
 *   checked against the other counts.
 * - `promptTokensDetails` / `candidatesTokensDetails` are lists of `{ modality, tokenCount }`,
 *   modality one of TEXT, IMAGE, VIDEO, AUDIO, DOCUMENT (MODALITY_UNSPECIFIED by default).
 *   https://docs.cloud.google.com/vertex-ai/docs/reference/rest/v1beta1/CountTokensResponse
 * - The Gemini API reports the applied tier as `usageMetadata.serviceTier` ("standard", "flex",
 *   "priority"; "unspecified" means standard). Not supported on Vertex AI.
 *   https://googleapis.github.io/js-genai/release_docs/enums/types.ServiceTier.html
 * - Zero counts are left out of the JSON (proto3), so every count but `promptTokenCount` (a
 *   request always has a prompt) may be absent and then means 0. The Live API names the
 *   candidates `responseTokenCount` / `responseTokensDetails`; those are read the same way.
 * - Cache writes are not part of a generateContent call (a cache is created, and billed for
 *   storage, by its own request), and web searches (grounding) are not counted in
 *   `usageMetadata`: pass them as `options.webSearchCalls`.
 */
import {
  UsageReader,
  allValid,
  rawCopy,
  type JsonObject,
  type ProviderUsage,
  type ProviderUsageOptions,
} from "./shared";
import { describeValue } from "../validation";

/** Options of {@link usageFromGemini}. */
export type GeminiUsageOptions = ProviderUsageOptions;

const OPTIONS = ["webSearchCalls", "serviceTier"] as const;

/**
 * Normalizes a Gemini `usageMetadata` (`promptTokenCount`, `cachedContentTokenCount`,
 * `candidatesTokenCount`, `thoughtsTokenCount`, `toolUsePromptTokenCount`, `promptTokensDetails` /
 * `candidatesTokensDetails` per-modality lists, `totalTokenCount`, `serviceTier`). Gemini's prompt
 * count includes its cached tokens, so they are taken out; tool-use prompt tokens are input the
 * prompt count leaves out, so they are added: `inputTokens = promptTokenCount -
 * cachedContentTokenCount + toolUsePromptTokenCount`. Thoughts are apart from the candidates and
 * become `reasoningTokens`; the candidates' IMAGE and AUDIO tokens become `imageOutputTokens` and
 * `audioOutputTokens`, the rest `outputTokens`. The prompt's AUDIO tokens are `audioInputTokens`.
 *
 * Throws {@link UsageValidationError} naming the field (e.g. `usage.candidatesTokensDetails[1].tokenCount`)
 * for a usage that is not an object, a count that is not a non-negative safe integer, a missing
 * `promptTokenCount`, or counts that contradict each other (cached tokens above the prompt, image
 * and audio candidates above all candidates, options that contradict the usage). Fields it does
 * not read never throw: they stay in `raw`.
 *
 * @example
 * const response = await ai.models.generateContent({ model: "gemini-2.5-flash", contents });
 * const usage = usageFromGemini(response.usageMetadata);
 * usage.reasoningTokens; // thoughtsTokenCount
 */
export function usageFromGemini(usage: unknown, options?: GeminiUsageOptions): ProviderUsage {
  return mapGemini(usage, options, true);
}

/**
 * @internal usageFromGemini for the package's own batches: `copyRaw` false skips the copy of the raw usage
 * (half the mapping's time; a batch stores no usage item) and keeps the caller's object as `raw`.
 */
export function mapGemini(usage: unknown, options: GeminiUsageOptions | undefined, copyRaw: boolean): ProviderUsage {
  const reader = new UsageReader();
  const opts = reader.options(options, OPTIONS);
  const u = reader.root(usage);
  if (u === null) {
    reader.throwIfAny();
    throw new Error("unreachable: an unread Gemini usage without an issue");
  }
  const prompt = reader.count(u, "promptTokenCount", "usage.promptTokenCount", true) as number;
  const cached = reader.count(u, "cachedContentTokenCount", "usage.cachedContentTokenCount") ?? 0;
  const toolUse = reader.count(u, "toolUsePromptTokenCount", "usage.toolUsePromptTokenCount") ?? 0;
  const thoughts = reader.count(u, "thoughtsTokenCount", "usage.thoughtsTokenCount") ?? 0;
  reader.count(u, "totalTokenCount", "usage.totalTokenCount");
  const candidatesKey = u.candidatesTokenCount === undefined && u.responseTokenCount !== undefined ? "responseTokenCount" : "candidatesTokenCount";
  const candidatesPath = candidatesKey === "candidatesTokenCount" ? "usage.candidatesTokenCount" : "usage.responseTokenCount";
  const candidates = reader.count(u, candidatesKey, candidatesPath) ?? 0;
  const promptDetails = modalities(reader, u, "promptTokensDetails");
  const detailsKey = u.candidatesTokensDetails === undefined && u.responseTokensDetails !== undefined ? "responseTokensDetails" : "candidatesTokensDetails";
  const candidateDetails = modalities(reader, u, detailsKey);
  modalities(reader, u, "cacheTokensDetails");
  modalities(reader, u, "toolUsePromptTokensDetails");
  const tier = reader.string(u, "serviceTier", "usage.serviceTier");

  if (allValid(prompt, cached) && cached > prompt) {
    reader.problem("usage.cachedContentTokenCount", `must not exceed usage.promptTokenCount (${prompt}), which includes the cached tokens; got ${cached}`);
  }
  const audioIn = promptDetails.get("AUDIO") ?? null;
  if (audioIn !== null && allValid(prompt, audioIn) && audioIn > prompt) {
    reader.problem("usage.promptTokensDetails", `AUDIO tokens (${audioIn}) must not exceed usage.promptTokenCount (${prompt})`);
  }
  const imageOut = candidateDetails.get("IMAGE") ?? 0;
  const audioOut = candidateDetails.get("AUDIO") ?? 0;
  if (allValid(candidates, imageOut, audioOut) && imageOut + audioOut > candidates) {
    reader.problem(`usage.${detailsKey}`, `IMAGE and AUDIO tokens (${imageOut} + ${audioOut}) must not exceed ${candidatesPath} (${candidates})`);
  }
  const webSearchCalls = (opts.webSearchCalls as number | undefined) ?? 0;
  const serviceTier = reader.agree(tier, "usage.serviceTier", opts.serviceTier as string | null | undefined, "options.serviceTier");

  const raw = copyRaw ? rawCopy(reader, u) : u;
  reader.throwIfAny();
  return {
    provider: "gemini",
    api: "generate_content",
    inputTokens: prompt - cached + toolUse,
    cachedInputTokens: cached,
    cacheWriteInputTokens: 0,
    cacheWrite5mInputTokens: null,
    cacheWrite1hInputTokens: null,
    outputTokens: candidates - imageOut - audioOut,
    reasoningTokens: thoughts,
    audioInputTokens: audioIn,
    audioOutputTokens: audioOut,
    imageOutputTokens: imageOut,
    webSearchCalls,
    serviceTier,
    raw,
  };
}

const NO_MODALITIES: ReadonlyMap<string, number> = new Map();

/**
 * A `[{ modality, tokenCount }]` list, summed by modality (a modality may appear more than once).
 * A bad entry is an issue on its path and adds NaN to its modality, so that checks skip it.
 */
function modalities(reader: UsageReader, u: JsonObject, key: string): ReadonlyMap<string, number> {
  const list = u[key];
  // Most usages list few of the four details: an absent one allocates nothing (a batch maps thousands).
  if (list === undefined || list === null) return NO_MODALITIES;
  const byModality = new Map<string, number>();
  if (!Array.isArray(list)) {
    reader.problem(`usage.${key}`, `must be a list of { modality, tokenCount }, got ${describeValue(list)}`);
    return byModality;
  }
  list.forEach((entry: unknown, i) => {
    const path = `usage.${key}[${i}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      reader.problem(path, `must be an object { modality, tokenCount }, got ${describeValue(entry)}`);
      return;
    }
    const e = entry as JsonObject;
    let modality = "MODALITY_UNSPECIFIED";
    if (e.modality !== undefined && e.modality !== null) {
      if (typeof e.modality === "string" && e.modality !== "") modality = e.modality;
      else reader.problem(`${path}.modality`, `must be a non-empty string, got ${describeValue(e.modality)}`);
    }
    const count = reader.count(e, "tokenCount", `${path}.tokenCount`) ?? 0;
    byModality.set(modality, (byModality.get(modality) ?? 0) + count);
  });
  return byModality;
}
