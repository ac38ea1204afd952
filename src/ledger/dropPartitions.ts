/**
 * Retention on a partitioned ledger ({@link partitionMonthly}): a partition that lies wholly before
 * a prune's cutoff, and holds no row the prune must keep, is dropped (`DROP TABLE`, its space
 * back to the operating system at once) instead of deleted row by row. The idempotency keys of
 * its rows go first, as the delete trigger would take them. Dropping fires no trigger, so the
 * rollups keep its usage, as they do after deletes.
 */
import type { SqlSession } from "../db";

/** A partition of a ledger table and the instant its range ends (null: the default partition). */
interface Partition {
  readonly name: string;
  readonly end: Date | null;
}

async function partitions(session: SqlSession, table: string): Promise<Partition[]> {
  const rows = await session.query<{ name: string; bound: string }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1) AND (SELECT relkind FROM pg_class WHERE oid = to_regclass($1)) = 'p'
      ORDER BY c.relname`,
    [table],
  );
  return rows.map((r) => {
    // "FOR VALUES FROM ('2026-09-01 00:00:00+00') TO ('2026-10-01 00:00:00+00')", or "DEFAULT".
    const to = /\bTO \('([^']+)'\)/.exec(r.bound);
    return { name: r.name, end: to ? new Date(to[1].replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00")) : null };
  });
}

/** @internal The partitions of `table` that end at or before `cutoff` (none when it is not partitioned). */
export async function partitionsBefore(session: SqlSession, table: string, cutoff: Date): Promise<string[]> {
  return (await partitions(session, table)).filter((p) => p.end !== null && !Number.isNaN(p.end.getTime()) && p.end <= cutoff).map((p) => p.name);
}

/**
 * @internal
 * Drops `partition` when every row in it is prunable (`prunableWhere`, `$1` the cutoff), in the
 * caller's transaction; returns its row count, or null when it holds a row to keep (left for the
 * row-by-row prune). The partition is locked against writes first (writes to other months go on),
 * so no row arrives between the count and the drop; the drop itself holds the parent table's
 * lock only for the catalog change.
 */
export async function dropPartitionIfPrunable(
  session: SqlSession,
  partition: string,
  keyColumn: string,
  prunableWhere: string,
  cutoff: Date,
): Promise<number | null> {
  await session.exec(`LOCK TABLE "${partition}" IN SHARE MODE`);
  const [row] = await session.query<{ total: string; kept: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE (${prunableWhere}) IS NOT TRUE) AS kept FROM "${partition}"`,
    [cutoff.toISOString()],
  );
  if (Number(row.kept) > 0) return null;
  await session.exec(`DELETE FROM ps_usage_idempotency_keys WHERE ${keyColumn} IN (SELECT id FROM "${partition}")`);
  await session.exec(`DROP TABLE "${partition}"`);
  return Number(row.total);
}
