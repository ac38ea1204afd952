/**
 * PolicySynth's per-call `ps_model_usage_item` rows, one page at a time, as `findModelUsage`
 * pages the ledger: where PolicySynth keeps running counter rows in `ps_model_usage`, the items
 * are the calls, each at its own time, with the provider's raw usage and the prices in `data`.
 */
import type { Database } from "../db";
import type { Prisma } from "../generated/prisma/client";
import type { ModelUsageFilter, PageOptions, UsagePage } from "../types";
import { findUsagePage, type FindSpec } from "../usageShared";

/** One `ps_model_usage_item` row. `data` is PolicySynth's `PsModelUsageItemData` (or this package's, with `psUsage`). */
export interface ModelUsageItemRecord {
  readonly id: number;
  readonly userId: number;
  readonly modelId: number;
  readonly agentId: number;
  readonly connectorId: number | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly data: unknown;
}

type ItemRow = ModelUsageItemRecord;

const FIND_MODEL_USAGE_ITEMS: FindSpec<ItemRow, ModelUsageItemRecord> = {
  table: "modelItem",
  idField: "modelId",
  includeKeys: [],
  findMany: (db, args) => db.reportPrisma.psModelUsageItem.findMany(args as Prisma.PsModelUsageItemFindManyArgs),
  toItem: (row) => ({
    id: row.id,
    userId: row.userId,
    modelId: row.modelId,
    agentId: row.agentId,
    connectorId: row.connectorId,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    data: row.data,
  }),
};

/**
 * Finds usage items (the filters, paging, order and cursors of `findModelUsage`; no `include`).
 *
 * @example
 * const page = await findModelUsageItems(db, { agentId: 7, from: new Date("2026-03-01") }, { limit: 100 });
 * for (const item of page.items) console.log(item.createdAt, (item.data as any).usageNormalized);
 */
export async function findModelUsageItems(db: Database, filter: ModelUsageFilter = {}, page: PageOptions = {}): Promise<UsagePage<ModelUsageItemRecord>> {
  return findUsagePage(db, FIND_MODEL_USAGE_ITEMS, filter, page);
}
