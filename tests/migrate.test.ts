// The migrator: applies each migration once, records it as Prisma Migrate does, refuses to run
// over a modified or failed history without changing anything, and rolls back a failing one.
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MigrationError, migrate, migrationStatus, openDatabase, type Database } from "../src";
import { backend, openTestDatabase, type TestDatabase } from "./support/testDatabase";

const SHIPPED_DIR = path.resolve(__dirname, "..", "prisma", "migrations");
const SHIPPED = ["20261125083500_init", "20261125090000_idempotency_keys_and_price_periods", "20261125140000_idempotency_key_user", "20261125170000_model_usage_item", "20261125171000_service_tiers_margins_web_searches", "20261125200000_usage_rollups", "20261207100000_usage_rollup_levels", "20261207200000_budgets", "20261207230000_usage_rollup_months", "20261208100000_usage_rollup_user_connector"];

// One database for the file (opening an embedded PGlite costs seconds); each test empties it.
let t: TestDatabase;
const tempDirs: string[] = [];
beforeAll(async () => {
  t = await openTestDatabase({ migrate: false });
});
afterAll(async () => {
  await t.dispose();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** This file's database, emptied: no tables, no _prisma_migrations. */
async function emptyDatabase(): Promise<TestDatabase> {
  await t.db.prisma.$executeRaw`DROP SCHEMA public CASCADE`;
  await t.db.prisma.$executeRaw`CREATE SCHEMA public`;
  expect(await tableExists(t.db, "_prisma_migrations")).toBe(false);
  return t;
}

/** A copy of the shipped migrations that a test may tamper with or add to. */
function copyOfMigrations(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-migrations-"));
  tempDirs.push(dir);
  fs.cpSync(SHIPPED_DIR, dir, { recursive: true });
  return dir;
}

function addMigration(dir: string, name: string, sql: string): void {
  fs.mkdirSync(path.join(dir, name));
  fs.writeFileSync(path.join(dir, name, "migration.sql"), sql);
}

interface MigrationRow {
  id: string;
  checksum: string;
  migration_name: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  started_at: Date;
  logs: string | null;
  applied_steps_count: number;
}

async function migrationRows(db: Database): Promise<MigrationRow[]> {
  return db.prisma.$queryRaw<MigrationRow[]>`
    SELECT id, checksum, migration_name, finished_at, rolled_back_at, started_at, logs, applied_steps_count
      FROM _prisma_migrations ORDER BY started_at, migration_name`;
}

async function tableExists(db: Database, table: string): Promise<boolean> {
  const [{ found }] = await db.prisma.$queryRaw<{ found: boolean }[]>`SELECT to_regclass(${table}) IS NOT NULL AS found`;
  return found;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
}

test("the first migrate applies every shipped migration in order, the second applies nothing", async () => {
  const { db } = await emptyDatabase();
  expect(await migrate(db)).toEqual({ applied: SHIPPED });
  expect(await migrate(db)).toEqual({ applied: [] });
  expect((await migrationRows(db)).map((r) => r.migration_name)).toEqual(SHIPPED);
});

test("_prisma_migrations rows are what Prisma Migrate writes: sha256 checksum of migration.sql, one step, finished", async () => {
  const { db } = await emptyDatabase();
  const before = Date.now();
  await migrate(db);
  const rows = await migrationRows(db);
  expect(rows).toHaveLength(SHIPPED.length);
  for (const [i, row] of rows.entries()) {
    const bytes = fs.readFileSync(path.join(SHIPPED_DIR, SHIPPED[i], "migration.sql"));
    expect(row.migration_name).toBe(SHIPPED[i]);
    expect(row.checksum).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(row.applied_steps_count).toBe(1);
    expect(row.rolled_back_at).toBeNull();
    expect(row.logs).toBeNull();
    expect(row.finished_at).toBeInstanceOf(Date);
    // Clocks of the database and of this process may differ a little.
    expect(row.finished_at!.getTime()).toBeGreaterThan(before - 60_000);
    expect(row.finished_at!.getTime()).toBeGreaterThanOrEqual(row.started_at.getTime());
  }
  expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
});

test("several migrate calls at once apply each migration exactly once", async () => {
  const t = await emptyDatabase();
  // On PostgreSQL each migrator has a Database (pool) of its own, as separate app instances would.
  const extra = backend === "postgres" ? await Promise.all([1, 2, 3, 4].map(() => openDatabase({ url: t.url!, poolSize: 2 }))) : [];
  try {
    const databases = [t.db, t.db, ...extra];
    const results = await Promise.all(databases.map((db) => migrate(db)));
    expect(results.flatMap((r) => r.applied).sort()).toEqual(SHIPPED);
    const counts = await t.db.prisma.$queryRaw<{ migration_name: string; n: number }[]>`
      SELECT migration_name, count(*)::int AS n FROM _prisma_migrations GROUP BY migration_name ORDER BY migration_name`;
    expect(counts).toEqual(SHIPPED.map((migration_name) => ({ migration_name, n: 1 })));
  } finally {
    for (const db of extra) await db.close();
  }
});

test("a modified applied migration is refused by name, and nothing changes (not even a new pending migration)", async () => {
  const { db } = await emptyDatabase();
  const dir = copyOfMigrations();
  await migrate(db, { migrationsDir: dir });
  const rowsBefore = await migrationRows(db);

  fs.appendFileSync(path.join(dir, SHIPPED[1], "migration.sql"), "\n-- edited after it was applied\n");
  addMigration(dir, "20991231000000_new_table", `CREATE TABLE "should_not_exist" ("id" INTEGER);`);

  const error = await rejection(migrate(db, { migrationsDir: dir }));
  expect(error).toBeInstanceOf(MigrationError);
  expect((error as MigrationError).migration).toBe(SHIPPED[1]);
  expect((error as MigrationError).message).toContain(SHIPPED[1]);
  expect((error as MigrationError).message).toMatch(/checksum/);

  expect(await tableExists(db, "should_not_exist")).toBe(false);
  expect(await migrationRows(db)).toEqual(rowsBefore);
});

test("a migration recorded as failed (finished_at NULL) is refused by name, and nothing changes", async () => {
  const { db } = await emptyDatabase();
  const dir = copyOfMigrations();
  await migrate(db, { migrationsDir: dir });
  // What Prisma leaves behind when a migration fails half way.
  await db.prisma.$executeRaw`
    INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count, logs)
    VALUES ('00000000-0000-4000-8000-000000000001', ${"0".repeat(64)}, '20991231000000_half_done', now(), 0, 'boom')`;
  addMigration(dir, "20991231000000_half_done", `CREATE TABLE "half_done" ("id" INTEGER);`);
  addMigration(dir, "20991231000001_after", `CREATE TABLE "after_half_done" ("id" INTEGER);`);
  const rowsBefore = await migrationRows(db);

  const error = await rejection(migrate(db, { migrationsDir: dir }));
  expect(error).toBeInstanceOf(MigrationError);
  expect((error as MigrationError).migration).toBe("20991231000000_half_done");
  expect((error as MigrationError).message).toContain("20991231000000_half_done");
  expect((error as MigrationError).message).toMatch(/failed/);

  expect(await tableExists(db, "half_done")).toBe(false);
  expect(await tableExists(db, "after_half_done")).toBe(false);
  expect(await migrationRows(db)).toEqual(rowsBefore);
  const status = await migrationStatus(db, { migrationsDir: dir });
  expect(status.failed).toEqual(["20991231000000_half_done"]);
  expect(status.pending).toEqual(["20991231000001_after"]);
});

test("a rolled-back row is ignored: the migration is applied again and recorded anew", async () => {
  const { db } = await emptyDatabase();
  const dir = copyOfMigrations();
  await migrate(db, { migrationsDir: dir });
  // `prisma migrate resolve --rolled-back` marks a failed row this way.
  await db.prisma.$executeRaw`
    INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, rolled_back_at, applied_steps_count, logs)
    VALUES ('00000000-0000-4000-8000-000000000002', ${"0".repeat(64)}, '20991231000000_retry', now(), now(), 0, 'boom')`;
  addMigration(dir, "20991231000000_retry", `CREATE TABLE "retried" ("id" INTEGER);`);
  expect((await migrationStatus(db, { migrationsDir: dir })).pending).toEqual(["20991231000000_retry"]);

  expect(await migrate(db, { migrationsDir: dir })).toEqual({ applied: ["20991231000000_retry"] });

  expect(await tableExists(db, "retried")).toBe(true);
  const retryRows = (await migrationRows(db)).filter((r) => r.migration_name === "20991231000000_retry");
  expect(retryRows).toHaveLength(2);
  expect(retryRows.filter((r) => r.rolled_back_at !== null)).toHaveLength(1);
  expect(retryRows.filter((r) => r.rolled_back_at === null && r.finished_at !== null)).toHaveLength(1);
});

test("a failing migration is rolled back completely and not recorded; the ones before it stay applied", async () => {
  const { db } = await emptyDatabase();
  const dir = copyOfMigrations();
  addMigration(dir, "20991231000000_good", `CREATE TABLE "good_one" ("id" INTEGER);`);
  addMigration(
    dir,
    "20991231000001_bad",
    [
      `CREATE TABLE "partial_table" ("id" INTEGER);`,
      `CREATE INDEX "partial_index" ON "ps_model_usage"("token_out_count");`,
      `ALTER TABLE "ps_model_usage" ADD COLUMN "partial_column" INTEGER;`,
      `INSERT INTO "no_such_table" VALUES (1);`,
    ].join("\n"),
  );
  addMigration(dir, "20991231000002_later", `CREATE TABLE "later_one" ("id" INTEGER);`);

  const error = await rejection(migrate(db, { migrationsDir: dir }));
  expect(error).toBeInstanceOf(MigrationError);
  expect((error as MigrationError).migration).toBe("20991231000001_bad");
  expect((error as MigrationError).message).toContain("20991231000001_bad");
  expect((error as MigrationError).message).toContain("no_such_table");

  expect(await tableExists(db, "good_one")).toBe(true);
  expect(await tableExists(db, "partial_table")).toBe(false);
  expect(await tableExists(db, "partial_index")).toBe(false);
  const [{ n }] = await db.prisma.$queryRaw<{ n: number }[]>`
    SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'ps_model_usage' AND column_name = 'partial_column'`;
  expect(n).toBe(0);
  expect(await tableExists(db, "later_one")).toBe(false);
  expect((await migrationRows(db)).map((r) => r.migration_name)).toEqual([...SHIPPED, "20991231000000_good"]);

  const status = await migrationStatus(db, { migrationsDir: dir });
  expect(status.failed).toEqual([]);
  expect(status.pending).toEqual(["20991231000001_bad", "20991231000002_later"]);

  // Once fixed, the same migration applies (nothing of the failed attempt is in the way).
  fs.writeFileSync(path.join(dir, "20991231000001_bad", "migration.sql"), `CREATE TABLE "partial_table" ("id" INTEGER);`);
  expect(await migrate(db, { migrationsDir: dir })).toEqual({ applied: ["20991231000001_bad", "20991231000002_later"] });
});

test("migrationStatus reports pending, applied, modified and missing migrations and changes nothing", async () => {
  const { db } = await emptyDatabase();
  const dir = copyOfMigrations();

  const fresh = await migrationStatus(db, { migrationsDir: dir });
  expect(fresh).toMatchObject({ target: db.target, applied: [], pending: SHIPPED, failed: [], modified: [], missing: [] });
  // Reading the status of an empty database does not create _prisma_migrations.
  expect(await tableExists(db, "_prisma_migrations")).toBe(false);

  await migrate(db, { migrationsDir: dir });
  const done = await migrationStatus(db, { migrationsDir: dir });
  expect(done.applied.map((m) => m.name)).toEqual(SHIPPED);
  expect(done.applied.every((m) => m.finishedAt instanceof Date && m.rolledBackAt === null)).toBe(true);
  expect(done).toMatchObject({ pending: [], failed: [], modified: [], missing: [] });

  fs.appendFileSync(path.join(dir, SHIPPED[0], "migration.sql"), "-- changed\n");
  addMigration(dir, "20991231000000_next", `SELECT 1;`);
  const changed = await migrationStatus(db, { migrationsDir: dir });
  expect(changed).toMatchObject({ pending: ["20991231000000_next"], failed: [], modified: [SHIPPED[0]], missing: [] });

  fs.rmSync(path.join(dir, SHIPPED[1]), { recursive: true });
  const gone = await migrationStatus(db, { migrationsDir: dir });
  expect(gone).toMatchObject({ pending: ["20991231000000_next"], modified: [SHIPPED[0]], missing: [SHIPPED[1]] });
  expect(await tableExists(db, "ps_model_usage")).toBe(true);
});

test("a migrations directory that does not exist is a MigrationError naming it", async () => {
  const { db } = await emptyDatabase();
  const missing = path.join(os.tmpdir(), "ps-usage-no-such-migrations-dir");
  const error = await rejection(migrate(db, { migrationsDir: missing }));
  expect(error).toBeInstanceOf(MigrationError);
  expect((error as MigrationError).message).toContain(missing);
  expect(await tableExists(db, "_prisma_migrations")).toBe(false);
});
