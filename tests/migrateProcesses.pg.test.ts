// Separate processes (as several app instances or deploy jobs would be) migrating one
// PostgreSQL database at the same moment: each migration is applied and recorded once.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { migrate, openDatabase, readMigrations, type Database } from "../src";
import { createScratchDatabase } from "./support/testDatabase";
import { startChild } from "./support/children";

const CHILD = path.join(__dirname, "support", "migrateChild.js");
const SHIPPED = readMigrations().map((m) => m.name);

type MigrateResult = { applied?: string[]; error?: string; migration?: string; message?: string };

/** Starts a migrating child; resolves `ready` once it has opened the database. */
function startMigrator(url: string, migrationsDir?: string) {
  return startChild<MigrateResult>(CHILD, [url, ...(migrationsDir ? [migrationsDir] : [])]);
}

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function emptyDatabase(): Promise<{ db: Database; url: string }> {
  const scratch = await createScratchDatabase();
  const db = await openDatabase({ url: scratch.url });
  cleanups.push(() => scratch.drop(), () => db.close());
  return { db, url: scratch.url };
}

async function recordedCounts(db: Database): Promise<{ migration_name: string; n: number }[]> {
  return db.prisma.$queryRaw`
    SELECT migration_name, count(*)::int AS n FROM _prisma_migrations GROUP BY migration_name ORDER BY migration_name`;
}

test("four processes migrating one empty database at once all succeed, and each migration is recorded once", async () => {
  const { db, url } = await emptyDatabase();
  const children = [1, 2, 3, 4].map(() => startMigrator(url));
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.go();
  const outcomes = await Promise.all(children.map((c) => c.done));

  for (const o of outcomes) expect({ code: o.code, stderr: o.stderr }).toEqual({ code: 0, stderr: "" });
  // Between them they applied every migration exactly once; the others found nothing to do.
  expect(outcomes.flatMap((o) => o.result?.applied ?? ["<no result>"]).sort()).toEqual(SHIPPED);
  expect(await recordedCounts(db)).toEqual(SHIPPED.map((migration_name) => ({ migration_name, n: 1 })));
  expect(await db.prisma.psModelUsage.count()).toBe(0);
});

test("a process given a tampered applied migration exits non-zero with a MigrationError naming it, changing nothing", async () => {
  const { db, url } = await emptyDatabase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-tampered-"));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.resolve(__dirname, "..", "prisma", "migrations"), dir, { recursive: true });
  await migrate(db, { migrationsDir: dir });
  const before = await db.prisma.$queryRaw`SELECT * FROM _prisma_migrations ORDER BY migration_name`;

  fs.appendFileSync(path.join(dir, SHIPPED[0], "migration.sql"), "\nDROP TABLE ps_model_usage CASCADE;\n");
  const child = startMigrator(url, dir);
  await child.ready;
  child.go();
  const outcome = await child.done;

  expect(outcome.code).toBe(2);
  expect(outcome.result).toMatchObject({ error: "MigrationError", migration: SHIPPED[0] });
  expect(outcome.result?.message).toContain(SHIPPED[0]);
  expect(await db.prisma.$queryRaw`SELECT * FROM _prisma_migrations ORDER BY migration_name`).toEqual(before);
  expect(await db.prisma.psModelUsage.count()).toBe(0); // the table is still there
});
