-- CreateTable
CREATE TABLE "ps_usage_idempotency_keys" (
    "key" VARCHAR(255) NOT NULL,
    "model_usage_id" INTEGER,
    "external_api_usage_id" INTEGER,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_usage_idempotency_keys_pkey" PRIMARY KEY ("key")
);

-- CreateTable
CREATE TABLE "ps_ai_model_price_periods" (
    "id" SERIAL NOT NULL,
    "model_id" INTEGER NOT NULL,
    "effective_from" TIMESTAMPTZ NOT NULL,
    "currency" VARCHAR(16) NOT NULL,
    "cost_in_tokens_per_million" DECIMAL(24,12) NOT NULL,
    "cost_out_tokens_per_million" DECIMAL(24,12) NOT NULL,
    "cost_in_cached_context_tokens_per_million" DECIMAL(24,12),
    "cache_write_input_cost_multiplier" DECIMAL(24,12),
    "long_context_token_threshold" INTEGER,
    "long_context_cost_in_tokens_per_million" DECIMAL(24,12),
    "long_context_cost_in_cached_context_tokens_per_million" DECIMAL(24,12),
    "long_context_cost_out_tokens_per_million" DECIMAL(24,12),
    "cost_out_reasoning_tokens_per_million" DECIMAL(24,12),
    "cost_out_audio_tokens_per_million" DECIMAL(24,12),
    "cost_out_image_tokens_per_million" DECIMAL(24,12),
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_ai_model_price_periods_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_external_api_price_periods" (
    "id" SERIAL NOT NULL,
    "external_api_id" INTEGER NOT NULL,
    "effective_from" TIMESTAMPTZ NOT NULL,
    "unit_type" VARCHAR(64) NOT NULL,
    "price_per_unit" DECIMAL(24,12) NOT NULL,
    "currency" VARCHAR(16) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_external_api_price_periods_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "ps_usage_idempotency_keys_model_usage_id_key" ON "ps_usage_idempotency_keys"("model_usage_id");

-- CreateIndex
CREATE UNIQUE INDEX "ps_usage_idempotency_keys_external_api_usage_id_key" ON "ps_usage_idempotency_keys"("external_api_usage_id");

-- CreateIndex
CREATE UNIQUE INDEX "ps_ai_model_price_periods_model_id_effective_from" ON "ps_ai_model_price_periods"("model_id", "effective_from");

-- CreateIndex
CREATE UNIQUE INDEX "ps_external_api_price_periods_external_api_id_effective_from" ON "ps_external_api_price_periods"("external_api_id", "effective_from");

-- AddForeignKey
ALTER TABLE "ps_usage_idempotency_keys" ADD CONSTRAINT "ps_usage_idempotency_keys_model_usage_id_fkey" FOREIGN KEY ("model_usage_id") REFERENCES "ps_model_usage"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_usage_idempotency_keys" ADD CONSTRAINT "ps_usage_idempotency_keys_external_api_usage_id_fkey" FOREIGN KEY ("external_api_usage_id") REFERENCES "ps_external_api_usage"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_ai_model_price_periods" ADD CONSTRAINT "ps_ai_model_price_periods_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "ps_ai_models"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_external_api_price_periods" ADD CONSTRAINT "ps_external_api_price_periods_external_api_id_fkey" FOREIGN KEY ("external_api_id") REFERENCES "ps_external_apis"("id") ON DELETE CASCADE ON UPDATE CASCADE;
