-- CreateTable
CREATE TABLE "ps_usage_budgets" (
    "id" SERIAL NOT NULL,
    "name" VARCHAR(255) NOT NULL,
    "user_id" INTEGER,
    "agent_id" INTEGER,
    "connector_id" INTEGER,
    "model_id" INTEGER,
    "external_api_id" INTEGER,
    "period" VARCHAR(16) NOT NULL,
    "time_zone" VARCHAR(64) NOT NULL,
    "range_from" TIMESTAMPTZ,
    "range_to" TIMESTAMPTZ,
    "amount" DECIMAL(24,12) NOT NULL,
    "currency" VARCHAR(16) NOT NULL,
    "thresholds" DECIMAL(8,4)[],
    "hard_limit" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ps_usage_budgets_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ps_usage_budget_alerts" (
    "id" SERIAL NOT NULL,
    "budget_id" INTEGER NOT NULL,
    "period_start" TIMESTAMPTZ NOT NULL,
    "period_end" TIMESTAMPTZ NOT NULL,
    "threshold" DECIMAL(8,4) NOT NULL,
    "amount" DECIMAL(24,12) NOT NULL,
    "currency" VARCHAR(16) NOT NULL,
    "spent" DECIMAL(65,30) NOT NULL,
    "fired_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "claimed_at" TIMESTAMPTZ,
    "delivered_at" TIMESTAMPTZ,

    CONSTRAINT "ps_usage_budget_alerts_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "ps_usage_budgets_name" ON "ps_usage_budgets"("name");

-- CreateIndex
CREATE INDEX "ps_usage_budgets_user_id" ON "ps_usage_budgets"("user_id");

-- CreateIndex
CREATE INDEX "ps_usage_budget_alerts_delivered_at" ON "ps_usage_budget_alerts"("delivered_at");

-- CreateIndex
CREATE UNIQUE INDEX "ps_usage_budget_alerts_budget_id_period_start_threshold" ON "ps_usage_budget_alerts"("budget_id", "period_start", "threshold");

-- AddForeignKey
ALTER TABLE "ps_usage_budget_alerts" ADD CONSTRAINT "ps_usage_budget_alerts_budget_id_fkey" FOREIGN KEY ("budget_id") REFERENCES "ps_usage_budgets"("id") ON DELETE CASCADE ON UPDATE CASCADE;
