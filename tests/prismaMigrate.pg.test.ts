// Our migrator and real Prisma Migrate (`prisma migrate deploy` / `status`) each accept what
// the other did, in both directions and mixed half-way.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { migrate, migrationStatus, openDatabase, readMigrations, type Database } from "../src";
import { ensurePrisma6, REPO_MIGRATIONS, runPrisma6 } from "./support/prismaMigrate";
import { createScratchDatabase } from "./support/testDatabase";

const SHIPPED = readMigrations(REPO_MIGRATIONS).map((m) => m.name);
const UP_TO_DATE = "Database schema is up to date!";

const cleanups: (() => Promise<void> | void)[] = [];
beforeAll(async () => {
  await ensurePrisma6(); // the first run installs it: npm ci, a few seconds with a warm cache
}, 600_000);
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function emptyDatabase(): Promise<{ db: Database; url: string }> {
  const scratch = await createScratchDatabase();
  const db = await openDatabase({ url: scratch.url });
  cleanups.push(() => scratch.drop(), () => db.close());
  return { db, url: scratch.url };
}

test("after our migrate(), Prisma's migrate status says the database schema is up to date", async () => {
  const { db, url } = await emptyDatabase();
  await migrate(db);
  const status = await runPrisma6(["migrate", "status"], { databaseUrl: url });
  expect(status.code).toBe(0);
  expect(status.stdout).toContain(`${SHIPPED.length} migrations found`);
  expect(status.stdout).toContain(UP_TO_DATE);
});

test("after Prisma's migrate deploy, our status shows everything applied and our migrate() applies nothing", async () => {
  const { db, url } = await emptyDatabase();
  const deploy = await runPrisma6(["migrate", "deploy"], { databaseUrl: url });
  expect({ code: deploy.code, ok: deploy.stdout.includes("All migrations have been successfully applied") }).toEqual({
    code: 0,
    ok: true,
  });

  const status = await migrationStatus(db);
  expect(status.applied.map((m) => m.name)).toEqual(SHIPPED);
  expect(status).toMatchObject({ pending: [], failed: [], modified: [], missing: [] });
  // Prisma's checksum of each file is the one we compute: same algorithm, same bytes.
  const ours = new Map(readMigrations().map((m) => [m.name, m.checksum]));
  for (const m of status.applied) expect(m.checksum).toBe(ours.get(m.name));

  expect(await migrate(db)).toEqual({ applied: [] });
  const [{ n }] = await db.prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM _prisma_migrations`;
  expect(n).toBe(SHIPPED.length);
  // The tables Prisma created are usable through our client.
  const model = await db.prisma.psAiModel.create({ data: { userId: 1, name: "deployed-by-prisma" } });
  expect(model.uuid).toHaveLength(36);
});

test("Prisma deploys the first migration, our migrate() applies the rest, and Prisma then finds it up to date", async () => {
  const { db, url } = await emptyDatabase();
  const firstOnly = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-first-migration-"));
  cleanups.push(() => fs.rmSync(firstOnly, { recursive: true, force: true }));
  fs.copyFileSync(path.join(REPO_MIGRATIONS, "migration_lock.toml"), path.join(firstOnly, "migration_lock.toml"));
  fs.cpSync(path.join(REPO_MIGRATIONS, SHIPPED[0]), path.join(firstOnly, SHIPPED[0]), { recursive: true });

  const deploy = await runPrisma6(["migrate", "deploy"], { databaseUrl: url, migrationsDir: firstOnly });
  expect(deploy.code).toBe(0);

  // Prisma itself sees the rest as pending (so "up to date" below is a real answer).
  const halfway = await runPrisma6(["migrate", "status"], { databaseUrl: url });
  expect(halfway.code).not.toBe(0);
  expect(halfway.stdout).toMatch(/have not yet been applied/);
  expect(halfway.stdout).toContain(SHIPPED[1]);
  expect(halfway.stdout).not.toContain(UP_TO_DATE);
  expect((await migrationStatus(db)).pending).toEqual(SHIPPED.slice(1));

  expect(await migrate(db)).toEqual({ applied: SHIPPED.slice(1) });

  const after = await runPrisma6(["migrate", "status"], { databaseUrl: url });
  expect(after.code).toBe(0);
  expect(after.stdout).toContain(UP_TO_DATE);
  const [{ n }] = await db.prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM _prisma_migrations`;
  expect(n).toBe(SHIPPED.length);
});
