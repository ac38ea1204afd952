import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { openDatabase, type Database, type OpenDatabaseOptions } from "../../src";

/** Which backend this jest project runs on (set by tests/support/backend-*.js). */
export const backend: "pglite" | "postgres" =
  process.env.PS_USAGE_TEST_BACKEND === "postgres" ? "postgres" : "pglite";

/** The server the postgres project creates its throwaway databases on. */
export const ADMIN_URL = process.env.PS_USAGE_TEST_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

export function urlFor(database: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * The defaults every scratch database gets: a zone west of UTC, off the hour and with DST, and a
 * DateStyle that is not ISO, as a host's postgresql.conf or a managed service may set them. The
 * package pins its own sessions (src/db/sessionSettings.ts), so every test keeps proving that
 * these defaults change nothing.
 */
export const SCRATCH_DATABASE_DEFAULTS = { timezone: "America/St_Johns", datestyle: "SQL, DMY" } as const;

/** Creates an empty, uniquely named database on the test server and returns its URL. */
export async function createScratchDatabase(): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const name = `ps_usage_t_${process.pid}_${randomBytes(4).toString("hex")}`;
  await admin(async (c) => {
    await c.query(`CREATE DATABASE "${name}"`);
    for (const [setting, value] of Object.entries(SCRATCH_DATABASE_DEFAULTS)) {
      await c.query(`ALTER DATABASE "${name}" SET ${setting} TO '${value}'`);
    }
  });
  return {
    name,
    url: urlFor(name),
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/** A database of this test file's own, on this project's backend; `dispose` removes it. */
export interface TestDatabase {
  readonly db: Database;
  /** The PostgreSQL URL, or undefined on PGlite. */
  readonly url?: string;
  dispose(): Promise<void>;
}

/** Opens a fresh database on this project's backend, migrated unless `migrate: false`. */
export async function openTestDatabase(options: { migrate?: boolean; writeTimeoutMs?: number } = {}): Promise<TestDatabase> {
  const migrate = options.migrate ?? true;
  if (backend === "pglite") {
    const db = await openDatabase({ dataDir: "memory://", migrate, writeTimeoutMs: options.writeTimeoutMs });
    return { db, dispose: () => db.close() };
  }
  const scratch = await createScratchDatabase();
  const db = await openDatabase({ url: scratch.url, migrate, writeTimeoutMs: options.writeTimeoutMs });
  return {
    db,
    url: scratch.url,
    async dispose() {
      await db.close();
      await scratch.drop();
    },
  };
}

/** A migrated scratch PostgreSQL database opened by the package, and a plain `pg` session on it. */
export interface ScratchPostgres {
  readonly url: string;
  readonly name: string;
  readonly db: Database;
  /** A session of its own: to look at pg_stat_activity, count rows, or hold locks. */
  readonly admin: Client;
  close(): Promise<void>;
}

/** Creates a scratch database, migrates and opens it (with `options`), and connects an admin session. */
export async function openScratchPostgres(options: Omit<OpenDatabaseOptions, "url" | "migrate"> = {}): Promise<ScratchPostgres> {
  const scratch = await createScratchDatabase();
  const db = await openDatabase({ ...options, url: scratch.url, migrate: true });
  const adminClient = new Client({ connectionString: scratch.url });
  await adminClient.connect();
  return {
    url: scratch.url,
    name: scratch.name,
    db,
    admin: adminClient,
    async close() {
      await adminClient.end().catch(() => undefined);
      await db.close();
      await scratch.drop();
    },
  };
}

/**
 * The queries of the sessions of `admin`'s database waiting for a lock (all but `except`'s pids
 * and its own), once there are at least `count`; throws if that never happens within 10 s.
 */
export async function waitingStatements(admin: Client, count = 1, except: readonly number[] = []): Promise<string[]> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const { rows } = await admin.query<{ query: string }>(
      `SELECT query FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND state = 'active'
          AND pid <> pg_backend_pid() AND NOT (pid = ANY($1::int[]))`,
      [except],
    );
    if (rows.length >= count) return rows.map((r) => r.query);
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`fewer than ${count} statements ever waited for a lock`);
}
