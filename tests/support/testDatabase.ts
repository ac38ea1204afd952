import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { openDatabase, type Database } from "../../src";

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
    const db = await openDatabase({ dataDir: "memory://", migrate });
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
