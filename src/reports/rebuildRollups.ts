/**
 * Checks the rollups against the ledger and, unless asked only to check, rebuilds them: the
 * triggers keep them exact for every write, but a restore with triggers disabled
 * (`session_replication_role = replica`, as pg_restore and logical replication apply use), a
 * `TRUNCATE` of a rollup or a hand edit would leave them wrong, and this is how that is found and
 * fixed.
 */
import type { Database, SqlSession } from "../db";
import { UsageValidationError, type FieldIssue } from "../errors";
import { MODEL_USAGE_ALL_COUNTERS } from "../types";
import { lockTimeoutError } from "../usageShared";
import { checkOptionNames } from "../usageSql";
import { checkLockTimeoutMs } from "../db/sessionSettings";
import { dayOfSql, monthOfSql, slotOfSql } from "./rollups";

/** One slot and key where the rollup and the ledger disagree. */
export interface RollupDifference {
  readonly slotStart: Date;
  readonly userId: number;
  /** `modelId` for model usage, `externalApiId` for external API usage. */
  readonly modelId?: number;
  readonly externalApiId?: number;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  /** Ledger rows in the slot and key, and what the rollup says (0: no rollup row). */
  readonly ledgerEvents: bigint;
  readonly rollupEvents: bigint;
}

/** The check of one rollup table. */
export interface RollupTableCheck {
  readonly table: "ps_model_usage_rollup" | "ps_external_api_usage_rollup";
  /** Rollup rows (after a rebuild: the rebuilt ones). */
  readonly rows: number;
  /**
   * Where the ledger was pruned to (null: never). The slots before it are neither compared nor
   * rebuilt: the rollups are the only record of the pruned rows.
   */
  readonly prunedBefore: Date | null;
  /** Slots and keys where any sum differed from the ledger (before a rebuild). */
  readonly differences: number;
  /** Up to 20 of them, earliest slot first. */
  readonly samples: readonly RollupDifference[];
}

/**
 * The check of one coarser level (per model; per agent and day or month; per user or connector and day: see src/reports/rollups.ts)
 * against the 15-minute rollups it sums (which, before a prune point, are the only record).
 */
export interface RollupLevelCheck {
  readonly table:
    | "ps_model_usage_model_rollup"
    | "ps_model_usage_agent_day_rollup"
    | "ps_model_usage_agent_month_rollup"
    | "ps_external_api_usage_agent_day_rollup"
    | "ps_external_api_usage_agent_month_rollup"
    | "ps_model_usage_user_day_rollup"
    | "ps_model_usage_connector_day_rollup"
    | "ps_external_api_usage_user_day_rollup"
    | "ps_external_api_usage_connector_day_rollup";
  /** Rows (after a rebuild: the rebuilt ones). */
  readonly rows: number;
  /** Keys where any sum differed from the 15-minute rollups (before a rebuild). */
  readonly differences: number;
}

/** What {@link rebuildRollups} found and did. */
export interface RebuildRollupsResult {
  readonly modelUsage: RollupTableCheck;
  readonly externalApiUsage: RollupTableCheck;
  /** The coarser levels, each checked against the 15-minute rollups as they are after any rebuild of those. */
  readonly levels: readonly RollupLevelCheck[];
  /** True when the rollups were rewritten (some difference, and not `dryRun`). */
  readonly rebuilt: boolean;
}

/** Options of {@link rebuildRollups}. */
export interface RebuildRollupsOptions {
  /** Only compare; change nothing and block no writer (one consistent snapshot). Default false. */
  readonly dryRun?: boolean;
  /**
   * How long to wait for the write lock on the two usage tables before giving up (a rebuild
   * blocks writers while it compares and rewrites; readers go on). Default 10,000 ms.
   */
  readonly lockTimeoutMs?: number;
}

/** The rollup key of a ledger row `u`, exactly as the triggers of the usage_rollups migration compute it. */
const SLOT = slotOfSql("u.created_at");
const SPEC = {
  modelUsage: {
    ledger: "ps_model_usage",
    rollup: "ps_model_usage_rollup" as const,
    keys: ["slot_start", "user_id", "model_id", "agent_id", "connector_id", "service_tier", "regional_processing"],
    keyExpressions: [
      SLOT,
      "u.user_id",
      "u.model_id",
      "COALESCE(u.agent_id, 0)",
      "COALESCE(u.connector_id, 0)",
      "COALESCE('=' || u.service_tier, '')",
      "COALESCE('=' || u.regional_processing, '')",
    ],
    sums: MODEL_USAGE_ALL_COUNTERS.map(([, column]) => column),
    idField: "modelId" as const,
  },
  externalApiUsage: {
    ledger: "ps_external_api_usage",
    rollup: "ps_external_api_usage_rollup" as const,
    keys: ["slot_start", "user_id", "external_api_id", "agent_id", "connector_id"],
    keyExpressions: [SLOT, "u.user_id", "u.external_api_id", "COALESCE(u.agent_id, 0)", "COALESCE(u.connector_id, 0)"],
    sums: ["call_count"],
    idField: "externalApiId" as const,
  },
};

type Spec = (typeof SPEC)[keyof typeof SPEC];

/** The coarser levels, each the 15-minute rollup (`r`) summed by fewer keys, as the triggers of the usage_rollup_levels migration keep them. */
const LEVELS: readonly { table: RollupLevelCheck["table"]; from: string; keys: readonly string[]; keyExpressions: readonly string[]; sums: readonly string[] }[] = [
  {
    table: "ps_model_usage_model_rollup",
    from: SPEC.modelUsage.rollup,
    keys: ["slot_start", "model_id", "service_tier", "regional_processing"],
    keyExpressions: ["r.slot_start", "r.model_id", "r.service_tier", "r.regional_processing"],
    sums: SPEC.modelUsage.sums,
  },
  {
    table: "ps_model_usage_agent_day_rollup",
    from: SPEC.modelUsage.rollup,
    keys: ["day_start", "agent_id", "model_id", "service_tier", "regional_processing"],
    keyExpressions: [dayOfSql("r.slot_start"), "r.agent_id", "r.model_id", "r.service_tier", "r.regional_processing"],
    sums: SPEC.modelUsage.sums,
  },
  {
    table: "ps_model_usage_agent_month_rollup",
    from: SPEC.modelUsage.rollup,
    keys: ["month_start", "agent_id", "model_id", "service_tier", "regional_processing"],
    keyExpressions: [monthOfSql("r.slot_start"), "r.agent_id", "r.model_id", "r.service_tier", "r.regional_processing"],
    sums: SPEC.modelUsage.sums,
  },
  {
    table: "ps_external_api_usage_agent_day_rollup",
    from: SPEC.externalApiUsage.rollup,
    keys: ["day_start", "agent_id", "external_api_id"],
    keyExpressions: [dayOfSql("r.slot_start"), "r.agent_id", "r.external_api_id"],
    sums: SPEC.externalApiUsage.sums,
  },
  {
    table: "ps_external_api_usage_agent_month_rollup",
    from: SPEC.externalApiUsage.rollup,
    keys: ["month_start", "agent_id", "external_api_id"],
    keyExpressions: [monthOfSql("r.slot_start"), "r.agent_id", "r.external_api_id"],
    sums: SPEC.externalApiUsage.sums,
  },
  // The usage_rollup_user_connector migration: keys in the level's primary key order.
  {
    table: "ps_model_usage_user_day_rollup",
    from: SPEC.modelUsage.rollup,
    keys: ["user_id", "day_start", "model_id", "service_tier", "regional_processing"],
    keyExpressions: ["r.user_id", dayOfSql("r.slot_start"), "r.model_id", "r.service_tier", "r.regional_processing"],
    sums: SPEC.modelUsage.sums,
  },
  {
    table: "ps_model_usage_connector_day_rollup",
    from: SPEC.modelUsage.rollup,
    keys: ["connector_id", "day_start", "model_id", "service_tier", "regional_processing"],
    keyExpressions: ["r.connector_id", dayOfSql("r.slot_start"), "r.model_id", "r.service_tier", "r.regional_processing"],
    sums: SPEC.modelUsage.sums,
  },
  {
    table: "ps_external_api_usage_user_day_rollup",
    from: SPEC.externalApiUsage.rollup,
    keys: ["user_id", "day_start", "external_api_id"],
    keyExpressions: ["r.user_id", dayOfSql("r.slot_start"), "r.external_api_id"],
    sums: SPEC.externalApiUsage.sums,
  },
  {
    table: "ps_external_api_usage_connector_day_rollup",
    from: SPEC.externalApiUsage.rollup,
    keys: ["connector_id", "day_start", "external_api_id"],
    keyExpressions: ["r.connector_id", dayOfSql("r.slot_start"), "r.external_api_id"],
    sums: SPEC.externalApiUsage.sums,
  },
];

/** A level as the 15-minute rollup gives it. */
function levelExpectedSql(level: (typeof LEVELS)[number]): string {
  const keys = level.keyExpressions.map((e, i) => `${e} AS ${level.keys[i]}`);
  const sums = ["event_count", ...level.sums].map((c) => `sum(r.${c})::bigint AS ${c}`);
  return `SELECT ${[...keys, ...sums].join(", ")} FROM ${level.from} r GROUP BY ${level.keys.map((_, i) => i + 1).join(", ")}`;
}

/** Compares each coarser level with the 15-minute rollups and, when `rewrite`, rewrites the ones that differ. */
async function checkLevels(session: SqlSession, rewrite: boolean): Promise<{ checks: RollupLevelCheck[]; rewritten: string[] }> {
  const checks: RollupLevelCheck[] = [];
  const rewritten: string[] = [];
  for (const level of LEVELS) {
    const on = level.keys.map((k) => `e.${k} = r.${k}`).join(" AND ");
    const differs = ["event_count", ...level.sums].map((c) => `e.${c} IS DISTINCT FROM r.${c}`).join(" OR ");
    const [row] = await session.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${levelExpectedSql(level)}) e FULL JOIN ${level.table} r ON ${on} WHERE ${differs}`);
    const differences = Number(row.n);
    if (rewrite && differences > 0) {
      await session.query(`DELETE FROM ${level.table}`);
      await session.query(
        `INSERT INTO ${level.table} (${[...level.keys, "event_count", ...level.sums].join(", ")}) ${levelExpectedSql(level)} ORDER BY ${level.keys.map((_, i) => i + 1).join(", ")}`,
      );
      rewritten.push(level.table);
    }
    const [count] = await session.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${level.table}`);
    checks.push({ table: level.table, rows: Number(count.n), differences });
  }
  return { checks, rewritten };
}

/** SQL bounds on the slots compared: `from` (inclusive) and `before` (exclusive), as parameter references. */
interface SlotRange {
  readonly from?: string;
  readonly before?: string;
}

/** The rollup the ledger gives: `SELECT keys, event_count, sums FROM ledger GROUP BY keys` (slots in `range`). */
function expectedSql(spec: Spec, range: SlotRange = {}): string {
  const keys = spec.keyExpressions.map((e, i) => `${e} AS ${spec.keys[i]}`);
  const sums = spec.sums.map((c) => `sum(u.${c})::bigint AS ${c}`);
  const positions = spec.keys.map((_, i) => i + 1).join(", ");
  const bounds = [range.from && `u.created_at >= ${range.from}`, range.before && `u.created_at < ${range.before}`].filter(Boolean);
  const where = bounds.length > 0 ? ` WHERE ${bounds.join(" AND ")}` : "";
  return `SELECT ${[...keys, "count(*)::bigint AS event_count", ...sums].join(", ")} FROM ${spec.ledger} u${where} GROUP BY ${positions}`;
}

/** The rollup rows of the slots in `range`. */
function rollupSql(spec: Spec, range: SlotRange): string {
  const bounds = [range.from && `slot_start >= ${range.from}`, range.before && `slot_start < ${range.before}`].filter(Boolean);
  return bounds.length > 0 ? `(SELECT * FROM ${spec.rollup} WHERE ${bounds.join(" AND ")})` : spec.rollup;
}

/** The slots and keys in `range` where the rollup differs from the ledger, with a count over all of them. */
function differencesSql(spec: Spec, range: SlotRange): string {
  const on = spec.keys.map((k) => `e.${k} = r.${k}`).join(" AND ");
  const differs = ["event_count", ...spec.sums].map((c) => `e.${c} IS DISTINCT FROM r.${c}`).join(" OR ");
  const key = spec.keys.map((k) => `COALESCE(e.${k}, r.${k}) AS ${k}`).join(", ");
  return `SELECT ${key}, COALESCE(e.event_count, 0)::bigint AS ledger_events, COALESCE(r.event_count, 0)::bigint AS rollup_events,
      count(*) OVER ()::int AS differences
    FROM (${expectedSql(spec, range)}) e FULL JOIN ${rollupSql(spec, range)} r ON ${on}
    WHERE ${differs}
    ORDER BY 1, 2, 3, 4, 5 LIMIT 20`;
}

type DifferenceRow = Record<string, unknown> & { ledger_events: bigint | string; rollup_events: bigint | string; differences: number };

/**
 * @internal Where the ledger of `table` has been pruned to (null: never): before it, the rollups
 * are the record (see src/ledger/prune.ts).
 */
export async function prunedBefore(session: SqlSession, table: string): Promise<Date | null> {
  const [row] = await session.query<{ pruned_before: Date | string }>("SELECT pruned_before FROM ps_usage_prune_state WHERE table_name = $1", [table]);
  return row ? new Date(row.pruned_before) : null;
}

async function check(session: SqlSession, spec: Spec, from: Date | null, before?: Date): Promise<{ differences: number; samples: RollupDifference[] }> {
  const params: string[] = [];
  const range: { from?: string; before?: string } = {};
  if (from) range.from = `$${params.push(from.toISOString())}::timestamptz`;
  if (before) range.before = `$${params.push(before.toISOString())}::timestamptz`;
  const rows = await session.query<DifferenceRow>(differencesSql(spec, range), params);
  const samples = rows.map((r) => ({
    slotStart: new Date(r.slot_start as string | Date),
    userId: Number(r.user_id),
    [spec.idField]: Number(r[spec.keys[2]]),
    agentId: Number(r.agent_id) === 0 ? null : Number(r.agent_id),
    connectorId: Number(r.connector_id) === 0 ? null : Number(r.connector_id),
    ledgerEvents: BigInt(r.ledger_events),
    rollupEvents: BigInt(r.rollup_events),
  })) as RollupDifference[];
  return { differences: rows.length === 0 ? 0 : Number(rows[0].differences), samples };
}

/**
 * @internal How many slots and keys from where the ledger was last pruned up to `cutoff` (a slot
 * boundary) differ between the rollups and the ledger, both tables, in the session's snapshot.
 */
export async function rollupDifferencesBefore(session: SqlSession, cutoff: Date): Promise<number> {
  let total = 0;
  for (const spec of [SPEC.modelUsage, SPEC.externalApiUsage]) {
    total += (await check(session, spec, await prunedBefore(session, spec.ledger), cutoff)).differences;
  }
  return total;
}

async function rowCount(session: SqlSession, spec: Spec): Promise<number> {
  const [row] = await session.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${spec.rollup}`);
  return Number(row.n);
}

/**
 * Compares the rollups with the ledger, slot by slot and key by key, and rewrites them from the
 * ledger where any differs; slots before where the ledger was pruned ({@link prune}) are left as
 * they are, as the only record of the pruned rows. The check reads one snapshot (a rollup and its ledger rows are written
 * in the same transaction, so a consistent snapshot shows them equal); the rebuild holds a write
 * lock on both usage tables while it compares and rewrites, so no write lands in between (writers
 * wait; readers do not).
 *
 * Throws {@link UsageValidationError} for bad options, and {@link DatabaseTimeoutError} (phase
 * `"lock"`) when the write lock is not granted within `lockTimeoutMs`; then nothing changes.
 *
 * @example
 * const check = await rebuildRollups(db, { dryRun: true });
 * if (check.modelUsage.differences > 0) await rebuildRollups(db);
 */
export async function rebuildRollups(db: Database, options: RebuildRollupsOptions = {}): Promise<RebuildRollupsResult> {
  const issues: FieldIssue[] = [];
  checkOptionNames(options, ["dryRun", "lockTimeoutMs"], issues);
  const dryRun = options?.dryRun ?? false;
  if (typeof dryRun !== "boolean") issues.push({ field: "dryRun", reason: `must be true or false, got ${String(dryRun)}` });
  const lockTimeoutMs = checkLockTimeoutMs(options?.lockTimeoutMs, 10_000, issues);
  if (issues.length > 0) throw new UsageValidationError(issues);

  return db.driver.withSession(async (session) => {
    await session.exec(dryRun ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN");
    try {
      if (!dryRun) {
        await session.query("SELECT set_config('lock_timeout', $1, true)", [`${lockTimeoutMs}ms`]);
        await session.exec("LOCK TABLE ps_model_usage, ps_external_api_usage IN SHARE ROW EXCLUSIVE MODE");
      }
      // Before where the ledger was pruned, the rollups are the record: left as they are.
      const from = { modelUsage: await prunedBefore(session, SPEC.modelUsage.ledger), externalApiUsage: await prunedBefore(session, SPEC.externalApiUsage.ledger) };
      const found = { modelUsage: await check(session, SPEC.modelUsage, from.modelUsage), externalApiUsage: await check(session, SPEC.externalApiUsage, from.externalApiUsage) };
      const rewritten: string[] = [];
      if (!dryRun) {
        for (const name of ["modelUsage", "externalApiUsage"] as const) {
          if (found[name].differences === 0) continue;
          const spec = SPEC[name];
          const since = from[name];
          const params = since ? [since.toISOString()] : [];
          await session.query(`DELETE FROM ${spec.rollup}${since ? " WHERE slot_start >= $1::timestamptz" : ""}`, params);
          await session.query(
            // In key order (slot first), as the triggers write them over time: a report reading
            // a day of it then reads adjacent pages, not a page per row (a cut day at 10M rows:
            // 23,000 rows in 475 ms from a table rebuilt in hash order, bench/SCALE.md).
            `INSERT INTO ${spec.rollup} (${[...spec.keys, "event_count", ...spec.sums].join(", ")}) ${expectedSql(spec, since ? { from: "$1::timestamptz" } : {})} ORDER BY ${spec.keys.map((_, i) => i + 1).join(", ")}`,
            params,
          );
          rewritten.push(spec.rollup);
        }
      }
      // The coarser levels, from the 15-minute rollups as they now are.
      const levels = await checkLevels(session, !dryRun);
      rewritten.push(...levels.rewritten);
      const rebuilt = rewritten.length > 0;
      const result = {
        levels: levels.checks,
        modelUsage: { table: SPEC.modelUsage.rollup, rows: await rowCount(session, SPEC.modelUsage), prunedBefore: from.modelUsage, ...found.modelUsage },
        externalApiUsage: { table: SPEC.externalApiUsage.rollup, rows: await rowCount(session, SPEC.externalApiUsage), prunedBefore: from.externalApiUsage, ...found.externalApiUsage },
        rebuilt,
      };
      await session.exec(dryRun ? "ROLLBACK" : "COMMIT");
      // A rewritten table is all dead rows and new rows the planner has no statistics of, and
      // whose pages are not yet all-visible (index-only scans go to the heap, the first reads set
      // hint bits): vacuumed and analyzed now rather than whenever autovacuum comes by.
      // SKIP_LOCKED: a table autovacuum is already on is left to it.
      if (rebuilt) await session.exec(`VACUUM (ANALYZE, SKIP_LOCKED) ${rewritten.join(", ")}`);
      return result;
    } catch (err) {
      await session.exec("ROLLBACK").catch(() => undefined);
      throw (
        lockTimeoutError(
          db.target,
          err,
          `the write lock on ps_model_usage and ps_external_api_usage was not granted within ${lockTimeoutMs} ms (a long transaction holds them; retry, or raise lockTimeoutMs); nothing changed`,
        ) ?? err
      );
    }
  });
}
