import fs from "node:fs";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import { Pool } from "pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { DatabaseConnectionError } from "./errors";
import { migrate } from "./migrate";
import { SESSION_SETTINGS_SQL } from "./db/sessionSettings";
import { markClosing, trackedClient, workEnded } from "./db/closing";
import { PrismaClient } from "./generated/prisma/client";

/** Where a database lives: a PostgreSQL server, or an embedded PGlite directory. */
export type DatabaseKind = "postgresql" | "pglite";

/** Options for {@link openDatabase}. Every field is optional. */
export interface OpenDatabaseOptions {
  /** A `postgres://` / `postgresql://` URL. Default: `DATABASE_URL` from the environment. */
  readonly url?: string;
  /**
   * Embedded PGlite directory, used when no URL is given. Default: `.ps-usage` in the working
   * directory. `memory://` keeps the database in memory (gone on close).
   */
  readonly dataDir?: string;
  /** Apply pending migrations after opening (see {@link migrate}). Default: false. */
  readonly migrate?: boolean;
  /** Environment to read `DATABASE_URL` from. Default: `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Maximum connections in the PostgreSQL pool. Default: 10. */
  readonly poolSize?: number;
}

/** @internal A plain SQL session on one connection, for the migrator and tests. */
export interface SqlSession {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a script of several statements (the simple query protocol). */
  exec(script: string): Promise<void>;
}

/** @internal */
export interface SqlDriver extends SqlSession {
  /** Runs `fn` on one connection of its own (PGlite has only one: calls are serialized). */
  withSession<T>(fn: (session: SqlSession) => Promise<T>): Promise<T>;
}

/** An open database: a ready Prisma client and a way to close it. */
export interface Database {
  /** The generated Prisma client, connected through the matching driver adapter. */
  readonly prisma: PrismaClient;
  readonly kind: DatabaseKind;
  /** What was opened: the URL with its password hidden, or the PGlite directory. */
  readonly target: string;
  /** The PGlite instance when `kind` is `pglite` (e.g. to serve it to Prisma Studio). */
  readonly pglite?: PGlite;
  /** @internal */
  readonly driver: SqlDriver;
  /** Disconnects Prisma and closes the pool or the embedded database. */
  close(): Promise<void>;
}

/** The default embedded database directory: `.ps-usage` in the working directory. */
export const DEFAULT_DATA_DIR = ".ps-usage";

/**
 * True for `postgres://` and `postgresql://` URLs.
 *
 * @example
 * isPostgresUrl("postgresql://postgres@127.0.0.1:5432/usage"); // true
 * isPostgresUrl("./.ps-usage");                                // false
 */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

/**
 * The URL with its password replaced by `***`, for messages and logs.
 *
 * @example
 * redactUrl("postgresql://alice:s3cret@db:5432/usage"); // "postgresql://alice:***@db:5432/usage"
 */
export function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return value.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@");
  }
}

/**
 * Opens the usage database and returns a ready Prisma client.
 *
 * With a PostgreSQL URL (`options.url` or `DATABASE_URL`) it connects through
 * `@prisma/adapter-pg`; without one it opens an embedded PGlite database persisted in
 * `options.dataDir` (default `.ps-usage`). It checks the connection before returning, so a bad
 * URL, an unreachable server or an unwritable directory fails here with a
 * {@link DatabaseConnectionError} that names what was tried.
 *
 * @example
 * const db = await openDatabase({ migrate: true });          // embedded, ./.ps-usage
 * const pg = await openDatabase({ url: "postgresql://postgres@127.0.0.1:5432/usage" });
 * await db.close();
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  const env = options.env ?? process.env;
  const url = options.url ?? (options.dataDir === undefined ? env.DATABASE_URL : undefined);
  const opened = url ? await openPostgres(url, options.poolSize ?? 10) : await openPglite(options.dataDir ?? DEFAULT_DATA_DIR);
  const db: Database = { ...opened, prisma: trackedClient(() => db, opened.prisma), close: () => closeDatabase(db, opened) };
  if (options.migrate) {
    try {
      await migrate(db);
    } catch (err) {
      await db.close();
      throw err;
    }
  }
  return db;
}

/**
 * `close()`: marks the database closing first, so that calls still running end as a lost
 * connection (a batch between chunks stops and rolls back, writing nothing), lets a running
 * batch's statement or transaction end, then disconnects.
 * A statement already running is not interrupted: a batch that commits before the close resolves
 * with all its rows. Closing again is a no-op; a failure to close is a DatabaseConnectionError.
 */
async function closeDatabase(db: Database, opened: Database): Promise<void> {
  markClosing(db);
  try {
    await workEnded(db);
    await opened.close();
  } catch (err) {
    throw new DatabaseConnectionError(db.target, `closing failed: ${(err as Error)?.message ?? String(err)}`, { cause: err, lost: true });
  }
}

async function openPostgres(url: string, poolSize: number): Promise<Database> {
  const target = redactUrl(url);
  if (!isPostgresUrl(url)) {
    throw new DatabaseConnectionError(target, "not a postgres:// or postgresql:// URL");
  }
  try {
    new URL(url);
  } catch {
    throw new DatabaseConnectionError(target, "the URL cannot be parsed");
  }
  // TCP keepalive lets a connection to a server that vanished without closing it (a dead host)
  // fail within a minute instead of hanging until the operating system's two-hour default.
  const pool = new Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 10_000, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
  // An idle client whose server went away emits 'error' on the pool; without a listener that
  // would crash the process. The next query reconnects or fails with its own error.
  pool.on("error", () => undefined);
  // Pin each new connection's session before anything else runs on it: pg queues this SET
  // ahead of the first query the connection is handed out for. A failure here means the
  // connection is broken, and that query fails with its own error.
  pool.on("connect", (client) => {
    client.query(SESSION_SETTINGS_SQL).catch(() => undefined);
  });
  try {
    const client = await pool.connect();
    try {
      await client.query("SELECT 1");
    } finally {
      client.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new DatabaseConnectionError(target, (err as Error).message || String(err), { cause: err });
  }
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const driver: SqlDriver = {
    async query(sql, params) {
      return (await pool.query(sql, params ? [...params] : undefined)).rows;
    },
    async exec(script) {
      await pool.query(script);
    },
    async withSession(fn) {
      const client = await pool.connect();
      let broken = false;
      try {
        return await fn({
          async query(sql, params) {
            return (await client.query(sql, params ? [...params] : undefined)).rows;
          },
          async exec(script) {
            await client.query(script);
          },
        });
      } catch (err) {
        broken = true;
        throw err;
      } finally {
        // A session that failed may hold a lock or an open transaction: do not reuse it.
        client.release(broken ? true : undefined);
      }
    },
  };
  let closed = false;
  return {
    prisma,
    kind: "postgresql",
    target,
    driver,
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

async function openPglite(dataDir: string): Promise<Database> {
  const inMemory = dataDir === "memory://" || dataDir.startsWith("memory://");
  const target = inMemory ? dataDir : path.resolve(dataDir);
  if (!inMemory) {
    try {
      fs.mkdirSync(target, { recursive: true });
      fs.accessSync(target, fs.constants.W_OK);
    } catch (err) {
      throw new DatabaseConnectionError(target, `directory is not writable (${(err as Error).message})`, { cause: err });
    }
  }
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(inMemory ? dataDir : target);
    // PGlite is one session: pinning it once covers every later query (see sessionSettings).
    await pglite.exec(SESSION_SETTINGS_SQL);
  } catch (err) {
    throw new DatabaseConnectionError(target, (err as Error).message || String(err), { cause: err });
  }
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) });
  // PGlite is one connection: a "session" is the whole database, so sessions take turns.
  let queue: Promise<unknown> = Promise.resolve();
  const session: SqlSession = {
    async query(sql, params) {
      return (await pglite.query(sql, params ? [...params] : undefined)).rows as never[];
    },
    async exec(script) {
      await pglite.exec(script);
    },
  };
  const driver: SqlDriver = {
    ...session,
    withSession(fn) {
      const run = queue.then(() => fn(session));
      queue = run.catch(() => undefined);
      return run;
    },
  };
  let closed = false;
  return {
    prisma,
    kind: "pglite",
    target,
    pglite,
    driver,
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
