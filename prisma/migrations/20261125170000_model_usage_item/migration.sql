-- CreateTable
CREATE TABLE "ps_model_usage_item" (
    "id" SERIAL NOT NULL,
    "user_id" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "model_id" INTEGER NOT NULL,
    "agent_id" INTEGER NOT NULL,
    "connector_id" INTEGER,
    "data" JSONB NOT NULL,

    CONSTRAINT "ps_model_usage_item_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "ps_model_usage_item_user_id" ON "ps_model_usage_item"("user_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_item_model_id" ON "ps_model_usage_item"("model_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_item_agent_id" ON "ps_model_usage_item"("agent_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_item_connector_id" ON "ps_model_usage_item"("connector_id");

-- CreateIndex
CREATE INDEX "ps_model_usage_item_created_at" ON "ps_model_usage_item"("created_at");
