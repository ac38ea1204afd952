-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateTable
CREATE TABLE "ps_ai_models" (
    "id" SERIAL NOT NULL,
    "uuid" UUID NOT NULL DEFAULT gen_random_uuid(),
    "user_id" INTEGER NOT NULL,
    "organization_id" INTEGER,
    "name" VARCHAR(255) NOT NULL,
    "configuration" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_ai_models_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_external_apis" (
    "id" SERIAL NOT NULL,
    "uuid" UUID NOT NULL DEFAULT gen_random_uuid(),
    "user_id" INTEGER NOT NULL,
    "organization_id" INTEGER,
    "type" VARCHAR(255) NOT NULL,
    "price_adapter" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_external_apis_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_agents" (
    "id" SERIAL NOT NULL,
    "uuid" UUID NOT NULL DEFAULT gen_random_uuid(),
    "user_id" INTEGER NOT NULL,
    "class_id" INTEGER NOT NULL,
    "group_id" INTEGER NOT NULL,
    "configuration" JSONB NOT NULL DEFAULT '{}',
    "parent_agent_id" INTEGER,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_agents_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_agent_connectors" (
    "id" SERIAL NOT NULL,
    "uuid" UUID NOT NULL DEFAULT gen_random_uuid(),
    "user_id" INTEGER NOT NULL,
    "class_id" INTEGER NOT NULL,
    "group_id" INTEGER NOT NULL,
    "configuration" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_agent_connectors_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_model_usage" (
    "id" SERIAL NOT NULL,
    "user_id" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "model_id" INTEGER NOT NULL,
    "token_in_count" INTEGER NOT NULL DEFAULT 0,
    "token_in_cached_context_count" INTEGER NOT NULL DEFAULT 0,
    "token_in_cache_write_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_in_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_in_cached_context_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_in_cache_write_count" INTEGER NOT NULL DEFAULT 0,
    "token_out_count" INTEGER NOT NULL DEFAULT 0,
    "token_out_reasoning_count" INTEGER NOT NULL DEFAULT 0,
    "token_out_audio_count" INTEGER NOT NULL DEFAULT 0,
    "token_out_image_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_out_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_out_reasoning_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_out_audio_count" INTEGER NOT NULL DEFAULT 0,
    "long_context_token_out_image_count" INTEGER NOT NULL DEFAULT 0,
    "agent_id" INTEGER,
    "connector_id" INTEGER,

    CONSTRAINT "ps_model_usage_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_external_api_usage" (
    "id" SERIAL NOT NULL,
    "user_id" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "external_api_id" INTEGER NOT NULL,
    "call_count" INTEGER NOT NULL,
    "agent_id" INTEGER,
    "connector_id" INTEGER,

    CONSTRAINT "ps_external_api_usage_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "ps_ai_models_uuid_key" ON "ps_ai_models"("uuid");

-- CreateIndex
CREATE UNIQUE INDEX "ps_external_apis_uuid_key" ON "ps_external_apis"("uuid");

-- CreateIndex
CREATE UNIQUE INDEX "ps_agents_uuid_key" ON "ps_agents"("uuid");

-- CreateIndex
CREATE INDEX "ps_agents_parent_agent_id" ON "ps_agents"("parent_agent_id");

-- CreateIndex
CREATE UNIQUE INDEX "ps_agent_connectors_uuid_key" ON "ps_agent_connectors"("uuid");

-- CreateIndex
CREATE INDEX "ps_model_usage_user_id" ON "ps_model_usage"("user_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_model_id" ON "ps_model_usage"("model_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_agent_id" ON "ps_model_usage"("agent_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_connector_id" ON "ps_model_usage"("connector_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_created_at_id" ON "ps_model_usage"("created_at", "id");

-- CreateIndex
CREATE INDEX "ps_external_api_usage_user_id" ON "ps_external_api_usage"("user_id");

-- CreateIndex
CREATE INDEX "ps_external_api_usage_external_api_id" ON "ps_external_api_usage"("external_api_id");

-- CreateIndex
CREATE INDEX "ps_external_api_usage_agent_id" ON "ps_external_api_usage"("agent_id");

-- CreateIndex
CREATE INDEX "ps_external_api_usage_connector_id" ON "ps_external_api_usage"("connector_id");

-- CreateIndex
CREATE INDEX "ps_external_api_usage_created_at_id" ON "ps_external_api_usage"("created_at", "id");

-- AddForeignKey
ALTER TABLE "ps_agents" ADD CONSTRAINT "ps_agents_parent_agent_id_fkey" FOREIGN KEY ("parent_agent_id") REFERENCES "ps_agents"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_model_usage" ADD CONSTRAINT "ps_model_usage_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "ps_ai_models"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_model_usage" ADD CONSTRAINT "ps_model_usage_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ps_agents"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_model_usage" ADD CONSTRAINT "ps_model_usage_connector_id_fkey" FOREIGN KEY ("connector_id") REFERENCES "ps_agent_connectors"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_external_api_usage" ADD CONSTRAINT "ps_external_api_usage_external_api_id_fkey" FOREIGN KEY ("external_api_id") REFERENCES "ps_external_apis"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_external_api_usage" ADD CONSTRAINT "ps_external_api_usage_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ps_agents"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ps_external_api_usage" ADD CONSTRAINT "ps_external_api_usage_connector_id_fkey" FOREIGN KEY ("connector_id") REFERENCES "ps_agent_connectors"("id") ON DELETE SET NULL ON UPDATE CASCADE;
