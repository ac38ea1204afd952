import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Database, SqlSession } from "../db";
import { MigrationError } from "../errors";
import { forgetGuardedReferences } from "../ledger/references";

/** The package's root directory (it holds prisma/), found from this file whether it runs from src/ or dist/src/. */
function findPackageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "prisma", "migrations"))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, "..", "..", "..");
  }
}

/** @internal The package's root directory: prisma/, prisma.config.ts and package.json are there. */
export const PACKAGE_ROOT = findPackageRoot();

/** The migrations shipped with the package (`prisma/migrations`). */
export const DEFAULT_MIGRATIONS_DIR = path.join(PACKAGE_ROOT, "prisma", "migrations");

/**
 * The advisory lock key Prisma Migrate takes on PostgreSQL. Taking the same one makes this
 * migrator and `prisma migrate deploy` exclude each other as well as themselves.
 */
export const MIGRATION_LOCK_KEY = 72707369;

/** @internal Prisma Migrate's own table definition (schema engine, PostgreSQL flavour). */
export const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);`;

/** A migration directory on disk. */
export interface MigrationFile {
  readonly name: string;
  readonly checksum: string;
  readonly sql: string;
}

/** A row of `_prisma_migrations` as the migrator reads it. */
export interface AppliedMigration {
  readonly name: string;
  readonly checksum: string;
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
  readonly rolledBackAt: Date | null;
}

/** What {@link migrationStatus} reports. */
export interface MigrationStatus {
  /** Which database: the redacted URL or the PGlite directory. */
  readonly target: string;
  /** Applied and finished, in the order they were applied. */
  readonly applied: readonly AppliedMigration[];
  /** On disk and not applied yet, in the order they would be applied. */
  readonly pending: readonly string[];
  /** Recorded as started but never finished nor rolled back (Prisma's P3009 state). */
  readonly failed: readonly string[];
  /** Applied, but the file on disk no longer has the checksum that was applied. */
  readonly modified: readonly string[];
  /** Applied, but no longer on disk. */
  readonly missing: readonly string[];
  /**
   * Tables that pending migrations create but that exist already: a database made by
   * PolicySynth (or by hand). `migrate` refuses it; `adopt` takes it over.
   */
  readonly unmanagedTables: readonly string[];
}

/** What {@link migrate} did. */
export interface MigrateResult {
  /** The migrations this call applied (empty when all were already applied). */
  readonly applied: readonly string[];
}

/** Options for {@link migrate} and {@link migrationStatus}. */
export interface MigrateOptions {
  /** Where the migration directories are. Default: the package's own `prisma/migrations`. */
  readonly migrationsDir?: string;
}

/**
 * Reads the migration directories in the order Prisma applies them (by name).
 *
 * @example
 * readMigrations().map((m) => [m.name, m.checksum]); // [["20261125083500_init", "b5d3…"], …]
 */
export function readMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): MigrationFile[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw new MigrationError(`Cannot read migrations directory ${dir}: ${(err as Error).message}`, undefined, { cause: err });
  }
  return entries
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dir, e.name, "migration.sql")))
    .map((e) => e.name)
    .sort()
    .map((name) => {
      const bytes = fs.readFileSync(path.join(dir, name, "migration.sql"));
      return { name, checksum: createHash("sha256").update(bytes).digest("hex"), sql: bytes.toString("utf8") };
    });
}

/** @internal The rows of `_prisma_migrations` (none when the table does not exist). */
export async function readApplied(session: SqlSession): Promise<AppliedMigration[]> {
  const exists = await session.query<{ t: string | null }>(`SELECT to_regclass('"_prisma_migrations"')::text AS t`);
  if (!exists[0]?.t) return [];
  const rows = await session.query<{
    migration_name: string;
    checksum: string;
    started_at: Date;
    finished_at: Date | null;
    rolled_back_at: Date | null;
  }>(
    `SELECT migration_name, checksum, started_at, finished_at, rolled_back_at
       FROM "_prisma_migrations" ORDER BY started_at, migration_name`,
  );
  return rows.map((r) => ({
    name: r.migration_name,
    checksum: r.checksum,
    startedAt: new Date(r.started_at),
    finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
    rolledBackAt: r.rolled_back_at === null ? null : new Date(r.rolled_back_at),
  }));
}

/** @internal The tables a migration's SQL creates (Prisma writes `CREATE TABLE "name" (`). */
export function tablesCreatedBy(file: MigrationFile): string[] {
  return [...file.sql.matchAll(/^CREATE TABLE "([^"]+)" \(/gm)].map((m) => m[1]);
}

/** @internal Which of `tables` exist in the session's current schema. */
export async function existingTables(session: SqlSession, tables: readonly string[]): Promise<string[]> {
  const rows = await session.query<{ t: string }>(
    `SELECT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[]) ORDER BY 1`,
    [[...tables]],
  );
  return rows.map((r) => r.t);
}

/**
 * @internal Tables that migrations not recorded as applied would create but that exist already
 * (PolicySynth made them): such a migration cannot run, `adopt` takes it over.
 */
async function unmanagedTables(session: SqlSession, files: readonly MigrationFile[], rows: readonly AppliedMigration[]): Promise<string[]> {
  const recorded = new Set(rows.filter((r) => r.rolledBackAt === null).map((r) => r.name));
  const wanted = files.filter((f) => !recorded.has(f.name)).flatMap(tablesCreatedBy);
  return wanted.length ? existingTables(session, wanted) : [];
}

function compare(target: string, files: readonly MigrationFile[], rows: readonly AppliedMigration[], unmanaged: readonly string[] = []): MigrationStatus {
  // A rolled-back row (`prisma migrate resolve --rolled-back`) no longer counts, as in Prisma.
  const live = rows.filter((r) => r.rolledBackAt === null);
  const applied = live.filter((r) => r.finishedAt !== null);
  const failed = live.filter((r) => r.finishedAt === null).map((r) => r.name);
  const byName = new Map(files.map((f) => [f.name, f]));
  const appliedNames = new Set(applied.map((r) => r.name));
  return {
    target,
    applied,
    pending: files.filter((f) => !appliedNames.has(f.name) && !failed.includes(f.name)).map((f) => f.name),
    failed,
    modified: applied.filter((r) => byName.has(r.name) && byName.get(r.name)!.checksum !== r.checksum).map((r) => r.name),
    missing: applied.filter((r) => !byName.has(r.name)).map((r) => r.name),
    unmanagedTables: unmanaged,
  };
}

/**
 * Lists applied, pending, failed and modified migrations, reading `_prisma_migrations` as
 * Prisma Migrate does. Changes nothing.
 *
 * @example
 * const s = await migrationStatus(db);
 * console.log(s.applied.map((m) => m.name), s.pending);
 */
export async function migrationStatus(db: Database, options: MigrateOptions = {}): Promise<MigrationStatus> {
  const files = readMigrations(options.migrationsDir);
  return db.driver.withSession((session) => statusOn(session, db.target, files));
}

/**
 * Applies pending migrations in order, each in its own transaction, and records each in
 * `_prisma_migrations` exactly as Prisma Migrate does (checksum = sha256 hex of the file), so
 * a database migrated by this function and one migrated by `prisma migrate deploy` are each
 * up to date for the other tool.
 *
 * It holds Prisma's PostgreSQL advisory lock while it runs, so concurrent migrators (this one
 * or Prisma's) apply each migration once. It refuses with a {@link MigrationError}, changing
 * nothing, when an applied migration's file was modified or a failed migration is recorded,
 * and when the database already holds tables that pending migrations create, without a history
 * (a PolicySynth database: take it over with {@link adopt}).
 *
 * @example
 * const db = await openDatabase();
 * const { applied } = await migrate(db);   // [] when everything was already applied
 */
export async function migrate(db: Database, options: MigrateOptions = {}): Promise<MigrateResult> {
  const files = readMigrations(options.migrationsDir);
  return db.driver.withSession((session) =>
    withMigrationLock(session, async () => {
      const status = await statusOn(session, db.target, files);
      refuseBrokenHistory(db.target, status);
      if (status.unmanagedTables.length > 0) {
        // Prisma Migrate's P3005 ("the database schema is not empty"), narrowed to the tables
        // this package would create: other tables of the host application are no obstacle.
        throw new MigrationError(
          `${db.target} already holds ${status.unmanagedTables.join(", ")} without a migration history: pending migrations would create them ` +
            `(a database created by PolicySynth or by hand; Prisma Migrate calls this P3005). Nothing was changed. ` +
            `Take it over with \`ps-usage adopt\` (or adopt(db)); \`ps-usage adopt --dry-run\` shows what it would do.`,
          status.pending[0],
        );
      }
      const applied = await applyPending(session, db.target, files, status.pending);
      // A migration may add or drop the reference foreign keys the record functions rely on.
      if (applied.length > 0) forgetGuardedReferences(db);
      return { applied };
    }),
  );
}

/** @internal Runs `fn` holding Prisma Migrate's advisory lock on `session`. */
export async function withMigrationLock<T>(session: SqlSession, fn: () => Promise<T>): Promise<T> {
  await session.query(`SELECT pg_advisory_lock($1)`, [MIGRATION_LOCK_KEY]);
  try {
    return await fn();
  } finally {
    await session.query(`SELECT pg_advisory_unlock($1)`, [MIGRATION_LOCK_KEY]).catch(() => undefined);
  }
}

/** @internal Refuses (changing nothing) a history with a failed or a modified migration. */
export function refuseBrokenHistory(target: string, status: MigrationStatus): void {
  if (status.failed.length > 0) {
    throw new MigrationError(
      `Migration ${status.failed.join(", ")} is recorded as failed in _prisma_migrations of ${target}. ` +
        `Fix the database, then mark it with \`prisma migrate resolve --rolled-back <name>\` (or --applied). Nothing was changed.`,
      status.failed[0],
    );
  }
  if (status.modified.length > 0) {
    throw new MigrationError(
      `Migration ${status.modified.join(", ")} was modified after it was applied to ${target}: ` +
        `the checksum of migration.sql differs from the one recorded in _prisma_migrations. Nothing was changed.`,
      status.modified[0],
    );
  }
}

/** @internal Reads the history and its status on a session (the caller holds the lock). */
export async function statusOn(session: SqlSession, target: string, files: readonly MigrationFile[]): Promise<MigrationStatus> {
  const rows = await readApplied(session);
  return compare(target, files, rows, await unmanagedTables(session, files, rows));
}

/**
 * @internal Applies `pending` in order, each in its own transaction together with its
 * `_prisma_migrations` row (and, the first time, the table itself: a failed first migration
 * leaves no empty history behind).
 */
export async function applyPending(session: SqlSession, target: string, files: readonly MigrationFile[], pending: readonly string[]): Promise<string[]> {
  const applied: string[] = [];
  for (const name of pending) {
    const file = files.find((f) => f.name === name)!;
    await session.exec("BEGIN");
    try {
      await session.exec(CREATE_MIGRATIONS_TABLE);
      await session.exec(file.sql);
      await session.query(
        `INSERT INTO "_prisma_migrations"
           (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
         VALUES ($1, $2, now(), $3, NULL, NULL, now(), 1)`,
        [randomUUID(), file.checksum, file.name],
      );
      await session.exec("COMMIT");
    } catch (err) {
      await session.exec("ROLLBACK").catch(() => undefined);
      throw new MigrationError(`Migration ${name} failed on ${target} and was rolled back: ${(err as Error).message}`, name, { cause: err });
    }
    applied.push(name);
  }
  return applied;
}
