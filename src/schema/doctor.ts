/**
 * Checks a database for what the schema alone cannot prevent, above all on a PolicySynth
 * database that both PolicySynth and this package write: rows another writer changed after
 * they were written, and rows pointing at models, APIs, agents or connectors that do not exist.
 */
import type { Database, SqlSession } from "../db";
import { countOrphans, migrationStatements, type OrphanCount } from "./adopt";
import { readCatalog, currentSchema } from "./catalog";
import { readMigrations, statusOn, type MigrateOptions, type MigrationStatus } from "./migrate";
import { MODEL_USAGE_COUNTERS } from "../types";

/** Rows whose `updated_at` is later than their `created_at`: usage added after the row was written. */
export interface ChangedRows {
  readonly table: "ps_model_usage" | "ps_external_api_usage";
  readonly rows: number;
  /** Up to 10 ids, smallest first. */
  readonly sampleIds: readonly number[];
  /** The earliest `created_at` among them: where a time-bucketed report puts their later usage. */
  readonly earliestCreatedAt: Date | null;
  /** All tokens (model usage) or calls (external API usage) on those rows, as an exact decimal string. */
  readonly units: string;
}

/** What {@link doctor} found. */
export interface DoctorReport {
  readonly target: string;
  readonly migrations: MigrationStatus;
  /** Per usage table (when it exists). */
  readonly changedRows: readonly ChangedRows[];
  /** For each reference whose foreign key is missing or `NOT VALID`: rows pointing at nothing. */
  readonly orphans: readonly OrphanCount[];
  /** Reference foreign keys of the usage tables that do not exist in this database. */
  readonly missingForeignKeys: readonly string[];
  /** Foreign keys that exist `NOT VALID` (they check new rows, not the old ones). */
  readonly unvalidatedForeignKeys: readonly string[];
  /** True when nothing above needs attention. */
  readonly healthy: boolean;
}

export interface DoctorOptions extends MigrateOptions {
  /**
   * How much later than `created_at` an `updated_at` must be to count as changed. Default 0:
   * this package writes both equal, and so does PolicySynth's `create`; only an update moves
   * `updated_at` (rows written by versions before 0.2 with a given `createdAt` have
   * `updated_at` = the time they were recorded: raise this to skip them).
   */
  readonly toleranceMs?: number;
}

const USAGE_UNITS = {
  ps_model_usage: MODEL_USAGE_COUNTERS.map(([, column]) => `${column}::numeric`).join(" + "),
  ps_external_api_usage: "call_count::numeric",
} as const;

async function changedRows(session: SqlSession, table: keyof typeof USAGE_UNITS, toleranceMs: number): Promise<ChangedRows> {
  const rows = await session.query<{ n: string; ids: number[] | null; earliest: Date | null; units: string | null }>(
    `SELECT count(*)::text AS n, (array_agg(id ORDER BY id))[1:10] AS ids, min(created_at) AS earliest,
            sum(${USAGE_UNITS[table]})::text AS units
       FROM "${table}" WHERE updated_at > created_at + make_interval(secs => $1::double precision / 1000)`,
    [toleranceMs],
  );
  const r = rows[0];
  return {
    table,
    rows: Number(r.n),
    sampleIds: (r.ids ?? []).map(Number),
    earliestCreatedAt: r.earliest === null ? null : new Date(r.earliest),
    units: r.units ?? "0",
  };
}

/**
 * Reports rows another writer changed after they were written (PolicySynth's `findOrCreate` +
 * `increment` adds later calls to an existing row, so their tokens are dated at the row's
 * `created_at`), rows pointing at no model / API / agent / connector, and foreign keys that
 * are missing or not validated. Reads only; each check is one scan of a usage table.
 *
 * @example
 * const report = await doctor(db);
 * if (!report.healthy) console.log(report.changedRows, report.orphans);
 */
export async function doctor(db: Database, options: DoctorOptions = {}): Promise<DoctorReport> {
  const files = readMigrations(options.migrationsDir);
  const toleranceMs = options.toleranceMs ?? 0;
  return db.driver.withSession(async (session) => {
    const migrations = await statusOn(session, db.target, files);
    const expected = files.length > 0 ? migrationStatements(files[0]).filter((s) => s.kind === "foreign-key" && (s.table === "ps_model_usage" || s.table === "ps_external_api_usage")) : [];
    const catalog = await readCatalog(session, await currentSchema(session), ["ps_model_usage", "ps_external_api_usage"]);
    const changed: ChangedRows[] = [];
    for (const table of ["ps_model_usage", "ps_external_api_usage"] as const) {
      if (catalog.tables.has(table)) changed.push(await changedRows(session, table, toleranceMs));
    }
    const orphans: OrphanCount[] = [];
    const missing: string[] = [];
    const unvalidated: string[] = [];
    for (const s of expected) {
      const m = /FOREIGN KEY \("([^"]+)"\) REFERENCES "([^"]+)"\("([^"]+)"\)/.exec(s.sql);
      if (!m || !catalog.tables.has(s.table!)) continue;
      const [, column, references, referencedColumn] = m;
      const fk = catalog.foreignKeys.find((f) => f.table === s.table && f.columns.length === 1 && f.columns[0] === column && f.references === references);
      if (fk && fk.validated) continue;
      (fk ? unvalidated : missing).push(fk?.name ?? s.name!);
      orphans.push(await countOrphans(session, s.table!, column, references, referencedColumn));
    }
    const healthy =
      changed.every((c) => c.rows === 0) &&
      orphans.every((o) => o.rows === 0) &&
      migrations.pending.length + migrations.failed.length + migrations.modified.length + migrations.unmanagedTables.length === 0;
    return { target: db.target, migrations, changedRows: changed, orphans, missingForeignKeys: missing, unvalidatedForeignKeys: unvalidated, healthy };
  });
}
