/**
 * Retention: deleting ledger rows older than a date once the rollups hold them, so the ledger
 * (one row per event, about 300 bytes with its indexes) stops growing forever while sums and cost
 * reports over the pruned time stay what they were.
 */
import type { Database, SqlSession } from "../db";
import { PsUsageError, UsageValidationError, type FieldIssue } from "../errors";
import { lockTimeoutError } from "../usageShared";
import { ROLLUP_SLOT_MS, pricedCutSlotsSql, slotOfSql } from "../reports/rollups";
import { rollupDifferencesBefore } from "../reports/rebuildRollups";
import { checkOptionNames } from "../usageSql";
import { dateProblem } from "../validation";
import { isPartitioned } from "../schema/partition";
import { dropPartitionIfPrunable, partitionsBefore } from "./dropPartitions";

/** The rollups do not hold the rows a prune would delete; nothing was deleted. */
export class RollupsDifferError extends PsUsageError {
  readonly differences: number;
  constructor(target: string, differences: number) {
    super(
      "PS_USAGE_ROLLUPS_DIFFER",
      `The rollups of ${target} differ from the ledger in ${differences} slot(s) and key(s) before the prune date, so pruning would lose usage; nothing was deleted. Run \`ps-usage rebuild-rollups\` (or rebuildRollups(db)), then prune again.`,
    );
    this.differences = differences;
  }
}

/** Options of {@link prune}. */
export interface PruneOptions {
  /** Delete rows created before this instant (rounded down to a 15-minute slot boundary). */
  readonly before: Date;
  /** Rows deleted per transaction (default 10,000): each batch locks only its own rows, briefly. */
  readonly batchSize?: number;
  /** Count what would be deleted and check the rollups; delete nothing. Default false. */
  readonly dryRun?: boolean;
}

/** What one usage table lost (or would lose). */
export interface PrunedTable {
  readonly table: "ps_model_usage" | "ps_external_api_usage";
  /** Rows deleted (dry run: that would be). */
  readonly deleted: number;
  /**
   * Rows before the date kept because a price period starts inside their 15-minute slot: a cost
   * report prices them row by row, which the rollups cannot.
   */
  readonly kept: number;
  /**
   * On a ledger partitioned by month ({@link partitionMonthly}): the partitions dropped whole
   * (their rows are counted in `deleted`); dry run: those wholly before the cutoff, which are
   * dropped unless they hold a row to keep. Absent on an unpartitioned ledger.
   */
  readonly droppedPartitions?: readonly string[];
}

/** What {@link prune} did. */
export interface PruneResult {
  /** The cutoff used: `before` rounded down to a slot boundary. */
  readonly before: Date;
  readonly dryRun: boolean;
  readonly modelUsage: PrunedTable;
  readonly externalApiUsage: PrunedTable;
  /** Delete transactions run. */
  readonly batches: number;
}

const TABLES = {
  modelUsage: { name: "modelUsage" as const, table: "ps_model_usage" as const, key: "model_id", keyColumn: "model_usage_id" },
  externalApiUsage: { name: "externalApiUsage" as const, table: "ps_external_api_usage" as const, key: "external_api_id", keyColumn: "external_api_usage_id" },
};

/** Rows before the cutoff outside the slots a price period starts inside (`$1`: the cutoff). */
function prunableWhere(spec: (typeof TABLES)[keyof typeof TABLES]): string {
  return `created_at < $1::timestamptz AND (${spec.key}, ${slotOfSql("created_at")}) NOT IN (${pricedCutSlotsSql(spec.name)})`;
}

async function counts(session: SqlSession, spec: (typeof TABLES)[keyof typeof TABLES], cutoff: Date): Promise<{ prunable: number; kept: number }> {
  const [row] = await session.query<{ total: string; prunable: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE ${prunableWhere(spec)}) AS prunable
       FROM ${spec.table} WHERE created_at < $1::timestamptz`,
    [cutoff.toISOString()],
  );
  return { prunable: Number(row.prunable), kept: Number(row.total) - Number(row.prunable) };
}

/**
 * Deletes the ledger rows (model and external API usage) created before `before`, after checking
 * that the rollups hold exactly those rows (from where an earlier prune stopped; that point is
 * kept in `ps_usage_prune_state`, and {@link rebuildRollups} leaves the rollups before it alone);
 * the rollups keep them, so sums and cost reports over
 * the pruned time are unchanged, while finds there return nothing. Idempotency keys of pruned rows
 * go with them (a replay of such a key records the event again). Rows in a 15-minute slot in which
 * a price period starts are kept (they are priced row by row). PolicySynth's `ps_model_usage_item`
 * rows are not touched.
 *
 * On a ledger partitioned by month ({@link partitionMonthly}), each partition wholly before the
 * cutoff that holds no row to keep is dropped (`DROP TABLE`: the space goes back to the operating
 * system) after its idempotency keys are deleted; what is left before the cutoff is deleted as
 * below. A drop locks its own partition against writes while it counts it, and the parent table
 * for the catalog change; both waits give up after 10 s with a {@link DatabaseTimeoutError}.
 *
 * Works in batches of `batchSize` rows, each its own short transaction deleting by primary key
 * (no table lock: concurrent writers go on). Over pruned time, ranges on 15-minute boundaries
 * (every local hour, day, week and month of zones in use today) are exact; a `from` or `to` inside
 * a pruned slot no longer sees the part of that slot it would have read from the ledger.
 *
 * Throws {@link UsageValidationError} for bad options and {@link RollupsDifferError} when the
 * rollups do not match the ledger before the date (run {@link rebuildRollups} first).
 *
 * @example
 * const cutoff = new Date(Date.now() - 400 * 86_400_000);
 * const dry = await prune(db, { before: cutoff, dryRun: true });
 * console.log(dry.modelUsage.deleted, "rows would go");
 * await prune(db, { before: cutoff });
 */
export async function prune(db: Database, options: PruneOptions): Promise<PruneResult> {
  const issues: FieldIssue[] = [];
  checkOptionNames(options, ["before", "batchSize", "dryRun"], issues);
  const opts = (typeof options === "object" && options !== null ? options : {}) as Partial<PruneOptions>;
  const problem = dateProblem(opts.before);
  if (problem) issues.push({ field: "before", reason: problem });
  const batchSize = opts.batchSize ?? 10_000;
  if (typeof batchSize !== "number" || !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1_000_000) {
    issues.push({ field: "batchSize", reason: `must be a whole number from 1 to 1,000,000, got ${String(batchSize)}` });
  }
  const dryRun = opts.dryRun ?? false;
  if (typeof dryRun !== "boolean") issues.push({ field: "dryRun", reason: `must be true or false, got ${String(dryRun)}` });
  if (issues.length > 0) throw new UsageValidationError(issues);
  const cutoff = new Date(Math.floor((opts.before as Date).getTime() / ROLLUP_SLOT_MS) * ROLLUP_SLOT_MS);

  return db.driver.withSession(async (session) => {
    // One snapshot: a rollup and its ledger rows are written in one transaction, so they agree in it.
    await session.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    let differences: number;
    let model: { prunable: number; kept: number };
    let api: { prunable: number; kept: number };
    try {
      differences = await rollupDifferencesBefore(session, cutoff);
      model = await counts(session, TABLES.modelUsage, cutoff);
      api = await counts(session, TABLES.externalApiUsage, cutoff);
    } finally {
      await session.exec("ROLLBACK");
    }
    if (differences > 0) throw new RollupsDifferError(db.target, differences);
    const deleted = { modelUsage: 0, externalApiUsage: 0 };
    const dropped: Record<"modelUsage" | "externalApiUsage", string[]> = { modelUsage: [], externalApiUsage: [] };
    const partitioned = {
      modelUsage: await isPartitioned(session, TABLES.modelUsage.table),
      externalApiUsage: await isPartitioned(session, TABLES.externalApiUsage.table),
    };
    if (dryRun) {
      for (const name of ["modelUsage", "externalApiUsage"] as const) dropped[name] = await partitionsBefore(session, TABLES[name].table, cutoff);
    }
    let batches = 0;
    if (!dryRun) {
      for (const name of ["modelUsage", "externalApiUsage"] as const) {
        const spec = TABLES[name];
        // Recorded first: from now on the rollups are the record before the cutoff, even if the
        // deletes below are interrupted (the rows left are still in the rollups, so a later run
        // finishes them).
        await session.query(
          `INSERT INTO ps_usage_prune_state (table_name, pruned_before, pruned_at) VALUES ($1, $2::timestamptz, now())
           ON CONFLICT (table_name) DO UPDATE SET pruned_before = GREATEST(ps_usage_prune_state.pruned_before, EXCLUDED.pruned_before), pruned_at = now()`,
          [spec.table, cutoff.toISOString()],
        );
        for (const partition of await partitionsBefore(session, spec.table, cutoff)) {
          await session.exec("BEGIN");
          try {
            await session.exec("SET LOCAL lock_timeout = '10s'");
            const n = await dropPartitionIfPrunable(session, partition, spec.keyColumn, prunableWhere(spec), cutoff);
            await session.exec("COMMIT");
            batches++;
            if (n !== null) {
              deleted[name] += n;
              dropped[name].push(partition);
            }
          } catch (err) {
            await session.exec("ROLLBACK").catch(() => undefined);
            throw lockTimeoutError(db.target, err) ?? err;
          }
        }
        for (;;) {
          await session.exec("BEGIN");
          try {
            // The rollups keep what is deleted here (the delete trigger leaves them as they are).
            await session.exec("SET LOCAL ps_usage.keep_rollups = 'on'");
            const [row] = await session.query<{ n: string }>(
              `WITH gone AS (DELETE FROM ${spec.table} WHERE id IN (
                 SELECT id FROM ${spec.table} WHERE ${prunableWhere(spec)} ORDER BY created_at, id LIMIT $2) RETURNING 1)
               SELECT count(*) AS n FROM gone`,
              [cutoff.toISOString(), batchSize],
            );
            await session.exec("COMMIT");
            batches++;
            const n = Number(row.n);
            deleted[name] += n;
            if (n < batchSize) break;
          } catch (err) {
            await session.exec("ROLLBACK").catch(() => undefined);
            throw lockTimeoutError(db.target, err) ?? err;
          }
        }
      }
    }
    return {
      before: cutoff,
      dryRun,
      modelUsage: { table: "ps_model_usage", deleted: dryRun ? model.prunable : deleted.modelUsage, kept: model.kept, ...(partitioned.modelUsage ? { droppedPartitions: dropped.modelUsage } : {}) },
      externalApiUsage: { table: "ps_external_api_usage", deleted: dryRun ? api.prunable : deleted.externalApiUsage, kept: api.kept, ...(partitioned.externalApiUsage ? { droppedPartitions: dropped.externalApiUsage } : {}) },
      batches,
    };
  });
}
