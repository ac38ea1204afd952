/**
 * Monthly partitions of the ledger (opt-in, new deployments only): turns the migrated, still
 * empty `ps_model_usage` and `ps_external_api_usage` into tables partitioned by month of
 * `created_at`, managed by pg_partman, so that retention drops a month's table instead of
 * deleting its rows (see {@link prune}).
 *
 * Done by a function (and `ps-usage partition --monthly`) rather than a SQL file to paste: it reads
 * the indexes, foreign keys and rollup triggers of each table from the database's own catalog
 * and re-creates exactly those on the partitioned table, so it follows whatever migrations were
 * applied (a later migration that changes the triggers changes what is kept), and it can refuse
 * with a typed error, changing nothing, where a script would fail half-way or rewrite data.
 */
import type { Database, SqlSession } from "../db";
import { PsUsageError, UsageValidationError, type FieldIssue } from "../errors";
import { checkLockTimeoutMs } from "../db/sessionSettings";
import { forgetGuardedReferences } from "../ledger/references";
import { lockTimeoutError } from "../usageShared";
import { checkOptionNames } from "../usageSql";
import { dateProblem } from "../validation";
import { currentSchema } from "./catalog";
import { migrationStatus, withMigrationLock } from "./migrate";

/** Why {@link partitionMonthly} refused; nothing was changed. */
export type PartitionRefusal = "pglite" | "not-migrated" | "not-empty" | "partman-missing";

/** {@link partitionMonthly} refused to run; the database was left as it was. */
export class PartitionRefusedError extends PsUsageError {
  readonly reason: PartitionRefusal;
  readonly target: string;
  constructor(target: string, reason: PartitionRefusal, detail: string) {
    super("PS_USAGE_PARTITION_REFUSED", `Cannot partition ${target}: ${detail}. Nothing was changed.`);
    this.reason = reason;
    this.target = target;
  }
}

/** Options of {@link partitionMonthly}. */
export interface PartitionOptions {
  /** The first month to create a partition for (its UTC month; default: the current month). Older rows go to the default partition. */
  readonly startMonth?: Date;
  /** Months created ahead of the current one (pg_partman's `premake`, default 4); `run_maintenance()` keeps that many ahead. */
  readonly premake?: number;
  /** Give up if a table lock is not granted this soon (default 10,000 ms). */
  readonly lockTimeoutMs?: number;
}

/** One usage table after {@link partitionMonthly}. */
export interface PartitionedTable {
  readonly table: "ps_model_usage" | "ps_external_api_usage";
  /** False when it already was partitioned (nothing was done to it). */
  readonly changed: boolean;
  /** Its partitions, oldest first (the default partition last). */
  readonly partitions: readonly string[];
}

/** What {@link partitionMonthly} did. */
export interface PartitionResult {
  /** The schema pg_partman is installed in (`partman` when this call installed it). */
  readonly partmanSchema: string;
  /** pg_partman's version (`extversion`). */
  readonly partmanVersion: string;
  readonly tables: readonly PartitionedTable[];
}

const TABLES = [
  { table: "ps_model_usage" as const, keyColumn: "model_usage_id" },
  { table: "ps_external_api_usage" as const, keyColumn: "external_api_usage_id" },
];

/** The package's tables whose rows say that usage was recorded (the rollups outlive a prune). */
const USAGE_TABLES = ["ps_model_usage", "ps_external_api_usage", "ps_model_usage_rollup", "ps_external_api_usage_rollup"];

/**
 * Replaces the idempotency keys' foreign keys (ON DELETE CASCADE) to a partitioned usage table,
 * which PostgreSQL cannot have (a foreign key must reference a unique constraint, and on a
 * partitioned table every unique constraint includes `created_at`): the keys of deleted rows go
 * with them, as the cascade did. A dropped partition fires no trigger: {@link prune} deletes its
 * keys before it drops it.
 */
const KEYS_CASCADE_FUNCTION = `CREATE OR REPLACE FUNCTION ps_usage_partitioned_keys_cascade() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
  IF TG_ARGV[0] = 'model_usage_id' THEN
    DELETE FROM ps_usage_idempotency_keys k USING old_rows o WHERE k.model_usage_id = o.id;
  ELSE
    DELETE FROM ps_usage_idempotency_keys k USING old_rows o WHERE k.external_api_usage_id = o.id;
  END IF;
  RETURN NULL;
END
$fn$`;

function firstOfMonthUtc(d: Date): string {
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}-01 00:00:00+00`;
}

/** @internal The partitions of `table`, oldest first, the default partition last. */
export async function partitionsOf(session: SqlSession, table: string): Promise<string[]> {
  const rows = await session.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1)
      ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname`,
    [table],
  );
  return rows.map((r) => r.name);
}

/** @internal Whether `table` is a partitioned table. */
export async function isPartitioned(session: SqlSession, table: string): Promise<boolean> {
  const [row] = await session.query<{ kind: string | null }>(`SELECT relkind::text AS kind FROM pg_class WHERE oid = to_regclass($1)`, [table]);
  return row?.kind === "p";
}

/** What of a table's access is kept: its owner (quoted) and its grants (`SELECT TO "app"`, ...). */
interface Access {
  readonly owner: string;
  readonly grants: readonly string[];
}

async function accessOf(session: SqlSession, table: string): Promise<Access> {
  const [{ owner }] = await session.query<{ owner: string }>(`SELECT quote_ident(pg_get_userbyid(relowner)) AS owner FROM pg_class WHERE oid = $1::regclass`, [table]);
  const grants = await session.query<{ sql: string }>(
    `SELECT format('%s TO %s%s', a.privilege_type,
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                   CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS sql
       FROM pg_class c, aclexplode(c.relacl) a
      WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`,
    [table],
  );
  return { owner, grants: grants.map((g) => g.sql) };
}

/**
 * Gives `table` and its partitions the owner and grants the table had before: the migrations'
 * role keeps using (and pruning) the ledger when a superuser ran this for pg_partman.
 */
async function restoreAccess(session: SqlSession, table: string, access: Access): Promise<void> {
  for (const name of [table, ...(await partitionsOf(session, table))]) {
    await session.exec(`ALTER TABLE "${name}" OWNER TO ${access.owner}`);
    for (const grant of access.grants) {
      const [privilege, rest] = grant.split(/ TO (.*)/s);
      await session.exec(`GRANT ${privilege} ON "${name}" TO ${rest}`);
    }
  }
}

/** Re-creates `table` (empty, locked) as a table partitioned by `created_at`, keeping its indexes, foreign keys and triggers. */
async function rebuildPartitioned(session: SqlSession, table: string, keyColumn: string, owner: string): Promise<void> {
  const q = (sql: string, params?: unknown[]) => session.query<Record<string, string>>(sql, params);
  const [{ sequence }] = await q(`SELECT pg_get_serial_sequence($1, 'id') AS sequence`, [table]);
  const indexes = await q(
    `SELECT pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indrelid = $1::regclass AND NOT indisprimary ORDER BY indexrelid::regclass::text`,
    [table],
  );
  const foreignKeys = await q(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname`,
    [table],
  );
  const triggers = await q(`SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname`, [table]);
  const referencing = await q(
    `SELECT conrelid::regclass::text AS "table", conname AS name FROM pg_constraint WHERE confrelid = $1::regclass AND contype = 'f' ORDER BY conname`,
    [table],
  );
  for (const fk of referencing) await session.exec(`ALTER TABLE ${fk.table} DROP CONSTRAINT "${fk.name}"`);
  const old = `${table}_unpartitioned`;
  await session.exec(`ALTER TABLE ${table} RENAME TO ${old}`);
  await session.exec(
    `CREATE TABLE ${table} (LIKE ${old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (created_at)`,
  );
  // The same owner as before (a sequence can only belong to a table of its own owner), and the
  // id sequence moves to the new table (dropping the old one would drop it otherwise).
  await session.exec(`ALTER TABLE ${table} OWNER TO ${owner}`);
  if (sequence) await session.exec(`ALTER SEQUENCE ${sequence} OWNED BY ${table}.id`);
  await session.exec(`DROP TABLE ${old}`);
  await session.exec(`ALTER TABLE ${table} ADD CONSTRAINT ${table}_pkey PRIMARY KEY (id, created_at)`);
  for (const index of indexes) await session.exec(index.def);
  for (const fk of foreignKeys) await session.exec(`ALTER TABLE ${table} ADD CONSTRAINT "${fk.name}" ${fk.def}`);
  // The rollup triggers, as the migrations made them: statement-level with transition tables,
  // which on a partitioned table hold the rows of every partition the statement touched.
  for (const trigger of triggers) await session.exec(trigger.def);
  await session.exec(
    `CREATE TRIGGER ${table}_keys_cascade AFTER DELETE ON ${table} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ps_usage_partitioned_keys_cascade('${keyColumn}')`,
  );
}

/**
 * Partitions the ledger by month (pg_partman), on an empty PostgreSQL database migrated by this
 * package: `ps_model_usage` and `ps_external_api_usage` become tables partitioned by range of
 * `created_at` (UTC months, a default partition for rows outside them) with the primary key
 * `(id, created_at)`, their indexes, foreign keys and rollup triggers as the migrations made them.
 * The idempotency keys' foreign keys to them are replaced by a delete trigger (PostgreSQL cannot
 * reference a partitioned table by `id` alone). Installs pg_partman (`CREATE EXTENSION`, schema
 * `partman`; superuser) when the server has it. Run it once, after {@link migrate}, before the
 * first record; later, call `partman.run_maintenance()` regularly (with `TimeZone` UTC) to create
 * months ahead, and {@link prune} drops whole months.
 *
 * One transaction: it changes everything or nothing. Calling it again on a partitioned database
 * changes nothing. Refuses with a {@link PartitionRefusedError} (nothing changed) on PGlite, on a
 * database with pending migrations, one that holds usage (ledger or rollup rows), or a server
 * without pg_partman (it names the package to install); with a {@link UsageValidationError} for
 * bad options.
 *
 * @example
 * const db = await openDatabase({ url, migrate: true });
 * await partitionMonthly(db); // before the first record
 */
export async function partitionMonthly(db: Database, options: PartitionOptions = {}): Promise<PartitionResult> {
  const issues: FieldIssue[] = [];
  checkOptionNames(options, ["startMonth", "premake", "lockTimeoutMs"], issues);
  const opts = (typeof options === "object" && options !== null ? options : {}) as Partial<PartitionOptions>;
  if (opts.startMonth !== undefined) {
    const problem = dateProblem(opts.startMonth);
    if (problem) issues.push({ field: "startMonth", reason: problem });
  }
  const premake = opts.premake ?? 4;
  if (typeof premake !== "number" || !Number.isInteger(premake) || premake < 1 || premake > 120) {
    issues.push({ field: "premake", reason: `must be a whole number of months from 1 to 120, got ${String(premake)}` });
  }
  const lockTimeoutMs = checkLockTimeoutMs(opts.lockTimeoutMs, 10_000, issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  if (db.kind !== "postgresql") {
    throw new PartitionRefusedError(db.target, "pglite", "partitions need a PostgreSQL server with pg_partman; PGlite (the embedded database) has neither");
  }
  const status = await migrationStatus(db);
  if (status.pending.length > 0 || status.applied.length === 0) {
    throw new PartitionRefusedError(db.target, "not-migrated", `run \`ps-usage migrate\` first (${status.pending.length} migration(s) pending)`);
  }
  const start = firstOfMonthUtc(opts.startMonth ?? new Date());

  const result = await db.driver.withSession((session) =>
    withMigrationLock(session, async () => {
      const [available] = await session.query<{ version: string | null; installed: string | null; schema: string | null; major: string }>(
        `SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_partman') AS version,
                e.extversion AS installed, n.nspname AS schema, current_setting('server_version_num')::int / 10000 AS major
           FROM (SELECT 1) one LEFT JOIN pg_extension e ON e.extname = 'pg_partman' LEFT JOIN pg_namespace n ON n.oid = e.extnamespace`,
      );
      if (available.version === null && available.installed === null) {
        throw new PartitionRefusedError(
          db.target,
          "partman-missing",
          `pg_partman is not installed on this server: install it (Debian/Ubuntu: \`apt-get install postgresql-${available.major}-partman\`; elsewhere the pg_partman package for PostgreSQL ${available.major}), then run this again`,
        );
      }
      await session.exec("BEGIN");
      try {
        await session.exec(`SET LOCAL lock_timeout = '${lockTimeoutMs}ms'; SET LOCAL TimeZone = 'UTC'`);
        const toDo = [];
        for (const spec of TABLES) if (!(await isPartitioned(session, spec.table))) toDo.push(spec);
        if (toDo.length > 0) {
          // Locked before counting: no row can arrive between the check and the rebuild.
          await session.exec(`LOCK TABLE ${USAGE_TABLES.join(", ")} IN ACCESS EXCLUSIVE MODE`);
          const held: string[] = [];
          for (const table of USAGE_TABLES) {
            const [row] = await session.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${table}) AS any`);
            if (row.any) held.push(table);
          }
          if (held.length > 0) {
            throw new PartitionRefusedError(
              db.target,
              "not-empty",
              `${held.join(", ")} already hold usage; partitioning is for new deployments (converting a table with rows would rewrite it)`,
            );
          }
        }
        let schema = available.schema;
        if (schema === null) {
          await session.exec(`CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION pg_partman SCHEMA partman`);
          schema = "partman";
        }
        const [{ version }] = await session.query<{ version: string }>(`SELECT extversion AS version FROM pg_extension WHERE extname = 'pg_partman'`);
        const home = await currentSchema(session);
        if (toDo.length > 0) await session.exec(KEYS_CASCADE_FUNCTION);
        for (const spec of toDo) {
          const access = await accessOf(session, spec.table);
          await rebuildPartitioned(session, spec.table, spec.keyColumn, access.owner);
          // pg_partman 4.x names native partitioning 'native'; 5.x has only it, named 'range', and
          // takes p_interval before p_type: named arguments fit both.
          const type = Number(version.split(".")[0]) >= 5 ? "range" : "native";
          await session.query(
            `SELECT "${schema}".create_parent(p_parent_table := $1, p_control := 'created_at', p_type := $2, p_interval := $3, p_premake := $4::int, p_start_partition := $5)`,
            [`${home}.${spec.table}`, type, type === "native" ? "monthly" : "1 month", premake, start],
          );
          await restoreAccess(session, spec.table, access);
        }
        const tables: PartitionedTable[] = [];
        for (const spec of TABLES) tables.push({ table: spec.table, changed: toDo.includes(spec), partitions: await partitionsOf(session, spec.table) });
        await session.exec("COMMIT");
        return { partmanSchema: schema, partmanVersion: version, tables };
      } catch (err) {
        await session.exec("ROLLBACK").catch(() => undefined);
        throw lockTimeoutError(db.target, err) ?? err;
      }
    }),
  );
  forgetGuardedReferences(db);
  return result;
}
