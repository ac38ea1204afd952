// openDatabase: every way of failing to open is a DatabaseConnectionError that names what was
// tried (password hidden); the defaults are the documented ones.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { DatabaseConnectionError, migrationStatus, openDatabase, readMigrations, type Database } from "../src";
import { backend, createScratchDatabase, urlFor } from "./support/testDatabase";

const tempDirs: string[] = [];
afterAll(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-open-"));
  tempDirs.push(dir);
  return dir;
}

// Embedded-database behaviour does not depend on the server backend: run it once, in the
// pglite project (a file-backed PGlite takes seconds to create).
const pgliteTest = backend === "pglite" ? test : test.skip;

async function connectionError(promise: Promise<Database>): Promise<DatabaseConnectionError> {
  const outcome = await promise.then(
    async (db) => {
      await db.close();
      return new Error(`expected openDatabase to fail, but it opened ${db.target}`);
    },
    (e: unknown) => e,
  );
  expect(outcome).toBeInstanceOf(DatabaseConnectionError);
  return outcome as DatabaseConnectionError;
}

/** A TCP port on 127.0.0.1 that nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test("a URL that is not postgres:// is refused, naming it with the password hidden", async () => {
  const error = await connectionError(openDatabase({ url: "mysql://app:hunter2@db.example:3306/usage" }));
  expect(error.code).toBe("PS_USAGE_CONNECTION");
  expect(error.target).toBe("mysql://app:***@db.example:3306/usage");
  expect(error.message).toContain("mysql://app:***@db.example:3306/usage");
  expect(error.message).toMatch(/not a postgres/);
  expect(error.message).not.toContain("hunter2");
});

test("DATABASE_URL from the given environment is used when no url is passed", async () => {
  const error = await connectionError(openDatabase({ env: { DATABASE_URL: "sqlite://file.db" } }));
  expect(error.target).toBe("sqlite://file.db");
});

test("an unreachable server is a DatabaseConnectionError naming host and port, password hidden", async () => {
  const port = await closedPort();
  const url = `postgresql://usage_app:S3cr%40t-pw@127.0.0.1:${port}/usage`;
  const error = await connectionError(openDatabase({ url }));
  expect(error.target).toBe(`postgresql://usage_app:***@127.0.0.1:${port}/usage`);
  expect(error.message).toContain(`127.0.0.1:${port}`);
  expect(error.message).toMatch(/ECONNREFUSED/);
  expect(error.message).not.toMatch(/S3cr/);
  expect(error.cause).toBeDefined();
});

test("a database that does not exist on a reachable server is a DatabaseConnectionError naming it", async () => {
  const name = `ps_usage_no_such_db_${process.pid}`;
  const error = await connectionError(openDatabase({ url: urlFor(name) }));
  expect(error.target).toBe(urlFor(name));
  expect(error.message).toContain(name);
  expect(error.message).toMatch(/does not exist/);
});

test("a PGlite directory that cannot be created (its parent is a file) is a DatabaseConnectionError naming it", async () => {
  const file = path.join(tempDir(), "not-a-directory");
  fs.writeFileSync(file, "x");
  const dataDir = path.join(file, "db");
  const error = await connectionError(openDatabase({ dataDir }));
  expect(error.target).toBe(dataDir);
  expect(error.message).toContain(dataDir);
  expect(fs.statSync(file).isFile()).toBe(true);
});

pgliteTest("without url, dataDir or DATABASE_URL it opens .ps-usage in the working directory, and the data persists", async () => {
  const cwd = process.cwd();
  const dir = tempDir();
  process.chdir(dir);
  try {
    const first = await openDatabase({ env: {}, migrate: true });
    const expectedDir = path.join(fs.realpathSync(dir), ".ps-usage");
    expect(first.kind).toBe("pglite");
    expect(fs.realpathSync(first.target)).toBe(expectedDir);
    const model = await first.prisma.psAiModel.create({ data: { userId: 5, name: "persisted" } });
    await first.close();
    expect(fs.existsSync(path.join(expectedDir, "PG_VERSION"))).toBe(true);

    const again = await openDatabase({ dataDir: expectedDir });
    try {
      expect(await again.prisma.psAiModel.findUnique({ where: { id: model.id } })).toMatchObject({ name: "persisted", userId: 5 });
      expect((await migrationStatus(again)).pending).toEqual([]);
    } finally {
      await again.close();
    }
  } finally {
    process.chdir(cwd);
  }
});

pgliteTest("a dataDir wins over DATABASE_URL", async () => {
  const db = await openDatabase({ dataDir: "memory://", env: { DATABASE_URL: "mysql://ignored" } });
  try {
    expect(db.kind).toBe("pglite");
    expect(db.target).toBe("memory://");
  } finally {
    await db.close();
  }
});

test("migrate: true opens a database with every migration applied", async () => {
  if (backend === "postgres") {
    const scratch = await createScratchDatabase();
    try {
      const db = await openDatabase({ url: scratch.url, migrate: true });
      try {
        expect(db.kind).toBe("postgresql");
        expect(db.target).toBe(scratch.url);
        const status = await migrationStatus(db);
        expect(status.pending).toEqual([]);
        expect(status.applied).toHaveLength(readMigrations().length);
        expect(await db.prisma.psModelUsage.count()).toBe(0);
      } finally {
        await db.close();
        await db.close(); // closing twice is harmless
      }
    } finally {
      await scratch.drop();
    }
  } else {
    const db = await openDatabase({ dataDir: "memory://", migrate: true });
    try {
      const status = await migrationStatus(db);
      expect(status.pending).toEqual([]);
      expect(status.applied).toHaveLength(readMigrations().length);
      expect(await db.prisma.psModelUsage.count()).toBe(0);
    } finally {
      await db.close();
      await db.close();
    }
  }
});

test("without migrate the database is opened as it is: nothing applied", async () => {
  const scratch = backend === "postgres" ? await createScratchDatabase() : undefined;
  const db = await openDatabase(scratch ? { url: scratch.url } : { dataDir: "memory://" });
  try {
    const status = await migrationStatus(db);
    expect(status.applied).toEqual([]);
    expect(status.pending).toHaveLength(readMigrations().length);
  } finally {
    await db.close();
    await scratch?.drop();
  }
});
