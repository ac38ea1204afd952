export { usageFromOpenAI, type OpenAIUsageApi, type OpenAIUsageOptions } from "./openai";
export { usageFromAnthropic, type AnthropicUsageOptions } from "./anthropic";
export { usageFromGemini, type GeminiUsageOptions } from "./gemini";
export {
  providerUsageToModelUsage,
  type ModelUsageCounts,
  type ProviderUsage,
  type ProviderUsageOptions,
  type UsageApi,
  type UsageProvider,
} from "./shared";
