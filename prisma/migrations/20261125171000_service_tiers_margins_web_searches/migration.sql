-- AlterTable
ALTER TABLE "ps_model_usage" ADD COLUMN     "regional_processing" VARCHAR(16),
ADD COLUMN     "service_tier" VARCHAR(16),
ADD COLUMN     "web_search_count" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "ps_ai_model_price_periods" ADD COLUMN     "cost_per_thousand_web_searches" DECIMAL(24,12),
ADD COLUMN     "fast_tokens_cached_in" DECIMAL(24,12),
ADD COLUMN     "fast_tokens_in" DECIMAL(24,12),
ADD COLUMN     "fast_tokens_out" DECIMAL(24,12),
ADD COLUMN     "flex_priority_tokens_enabled_on_long_context" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "flex_tokens_cached_in" DECIMAL(24,12),
ADD COLUMN     "flex_tokens_in" DECIMAL(24,12),
ADD COLUMN     "flex_tokens_out" DECIMAL(24,12),
ADD COLUMN     "priority_tokens_cached_in" DECIMAL(24,12),
ADD COLUMN     "priority_tokens_in" DECIMAL(24,12),
ADD COLUMN     "priority_tokens_out" DECIMAL(24,12),
ADD COLUMN     "regional_processing_margin" DECIMAL(24,12);
