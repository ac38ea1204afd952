-- AlterTable
ALTER TABLE "ps_usage_idempotency_keys" ADD COLUMN     "user_id" INTEGER;
