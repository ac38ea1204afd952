import fs from "node:fs/promises";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import { Client, Pool, type PoolClient } from "pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { DatabaseConnectionError, UsageValidationError, type FieldIssue } from "./errors";
import { migrate } from "./schema/migrate";
import { lockDirectory, type DirectoryLock } from "./db/lock";
import { SESSION_SETTINGS_SQL } from "./db/sessionSettings";
import { pgliteTransactionWithin, trackTransactions } from "./db/pgliteWait";
import { pglitePreparedStatements } from "./db/pglitePrepared";
import { retryDeadlocks } from "./db/retryDeadlocks";
import { markClosing, trackedClient, trackedDirect, workEnded } from "./db/closing";
import { primaryView, ReplicaSet, type Replica } from "./db/replicas";
import { PrismaClient } from "./generated/prisma/client";
import { setAlertCallback, setErrorCallback, type BudgetAlertCallback, type BudgetErrorCallback } from "./budgets/registry";
import { deliverPendingAlerts } from "./budgets/alerts";
import { budgetChecksEnded } from "./budgets/thresholdChecks";

/** Where a database lives: a PostgreSQL server, or an embedded PGlite directory. */
export type DatabaseKind = "postgresql" | "pglite";

/** Options for {@link openDatabase}. Every field is optional. */
export interface OpenDatabaseOptions {
  /** A `postgres://` / `postgresql://` URL. Default: `DATABASE_URL` from the environment. */
  readonly url?: string;
  /**
   * Embedded PGlite directory, used when no URL is given. Default: `.ps-usage` in the working
   * directory. `memory://` keeps the database in memory (gone on close). A value with any other
   * URL scheme (`mysql://…`, `sqlite:…`) is refused rather than taken as a relative path.
   */
  readonly dataDir?: string;
  /**
   * Embedded directory only: create the database when the directory is missing or holds none
   * (no PGlite `PG_VERSION` file). With `false`, such a directory is a
   * {@link DatabaseConnectionError} and nothing is created, for tools that only read or add to an
   * existing database. Default: true.
   */
  readonly create?: boolean;
  /** Apply pending migrations after opening (see {@link migrate}). Default: false. */
  readonly migrate?: boolean;
  /**
   * PostgreSQL streaming replicas (`postgres://` / `postgresql://` URLs) that finds, sums and cost
   * reports read from, one replica per call in turn; writes, migrations and everything that must
   * see a write just made stay on the primary (`url`). A replica's rows may be behind the
   * primary's by its replication lag: read through `db.primary` where that matters. A replica
   * that cannot be reached is skipped for the next; with none reachable the read fails with a
   * {@link DatabaseConnectionError} naming them (it does not fall back to the primary). Each
   * replica gets a pool of `reportPoolSize` connections, pinned like the primary's. Not contacted
   * by `openDatabase` itself. An embedded (PGlite) database has no replicas: giving any is a
   * {@link UsageValidationError} on `replicaUrls`, as is an entry that is not a PostgreSQL URL.
   * Default: `PS_USAGE_REPLICA_URLS` from the environment (comma-separated) when the primary is
   * `DATABASE_URL` from there too; else none.
   */
  readonly replicaUrls?: readonly string[];
  /** Environment to read `DATABASE_URL` (and `PS_USAGE_REPLICA_URLS`) from. Default: `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Maximum connections in the PostgreSQL pool that records (and `db.prisma`) use. Default: 10. */
  readonly poolSize?: number;
  /** Maximum connections in the PostgreSQL pool that finds, sums and reports use (and in each replica's). Default: 4. */
  readonly reportPoolSize?: number;
  /**
   * How long a call may wait for a PostgreSQL connection (a new one, or a free one of a busy
   * pool) before it fails with a {@link DatabaseTimeoutError}. Default: 10,000 ms.
   */
  readonly connectTimeoutMs?: number;
  /**
   * How long one statement of a record call (and of `db.prisma`) may run: the server cancels it
   * after this (`statement_timeout`), and the client gives up waiting for a server that stopped
   * answering a few seconds later. Either way a {@link DatabaseTimeoutError}. Default: 30,000 ms.
   * On an embedded (PGlite) database, which runs one transaction at a time, it bounds instead how
   * long a record or batch (guarded or not) waits for a transaction already running in this process (a
   * `db.prisma.$transaction`, another batch): past it, a {@link DatabaseTimeoutError} of phase
   * `"connect"`, and nothing was written.
   */
  readonly writeTimeoutMs?: number;
  /** The same bound for finds, sums and cost reports, which scan more. Default: 300,000 ms. */
  readonly reportTimeoutMs?: number;
  /**
   * Embedded directory only: how long to wait, in milliseconds, for another process that has the
   * directory open to close it. An embedded (PGlite) database is opened by one process at a
   * time (two would lose each other's writes), so a second opener fails at once with a
   * {@link DatabaseConnectionError} naming the directory and the holder's pid and command line,
   * or, with this option, waits up to this long and then fails the same way. A lock left by a
   * process that died is taken over once it is stale (10 s after its holder stopped refreshing
   * it); when the holder recorded on this host is no longer running, the opener waits for that
   * by itself. If the lock is lost while open (its `<dir>.lock` removed, or this process was
   * suspended for longer than that), the database is closed: later calls fail with
   * {@link DatabaseConnectionError}. Default: 0 (do not wait).
   */
  readonly lockWaitMs?: number;
  /**
   * Embedded database only: PGlite's buffer cache (PostgreSQL's `shared_buffers`), in MB, a whole
   * number from 1 to 1024. PGlite touches all of it when it opens, so it is resident from the
   * start: 128 MB of the about 285 MB an embedded database takes before anything is read. A
   * smaller cache keeps a long import's process smaller (`ps-usage record --ndjson` opens with
   * {@link IMPORT_EMBEDDED_SHARED_BUFFERS_MB}); pages that no longer fit are read back from the
   * directory's files. Default: PGlite's own (128 MB).
   */
  readonly embeddedSharedBuffersMb?: number;
  /**
   * Called with each budget alert (a threshold crossed, see `setBudget`) after the write that
   * raised it has committed, and, once the database is open, with alerts raised meanwhile by
   * processes that had no callback or died before delivering theirs (the alerts table is an
   * outbox). At least once per alert; a callback that throws gets it again a minute later.
   */
  readonly onBudgetAlert?: BudgetAlertCallback;
  /**
   * Called with a budget failure no call can throw: a background threshold check that failed (its
   * budgets are checked again by the next one), or an `onBudgetAlert` callback that threw (the
   * alert stays undelivered and is delivered again). Default: a process warning
   * (`process.emitWarning`, code `PS_USAGE_BUDGET_FAILURE`). Neither crashes the process.
   */
  readonly onBudgetError?: BudgetErrorCallback;
}

/** Options of `close()`. */
export interface CloseOptions {
  /**
   * How long close() waits for the background threshold checks of records already made (and the
   * `onBudgetAlert` calls they make) before it closes anyway. Default {@link DEFAULT_BUDGET_CHECKS_TIMEOUT_MS};
   * `Infinity` waits for them however long they take. What they had not done is not lost: their
   * alerts stay in the outbox and crossings not yet checked are raised by the next
   * `budgetStatus` or `checkBudgets` (README "Budgets and spend alerts").
   */
  readonly budgetChecksTimeoutMs?: number;
}

/** The embedded buffer cache (see {@link OpenDatabaseOptions.embeddedSharedBuffersMb}) of the CLI's NDJSON import. */
export const IMPORT_EMBEDDED_SHARED_BUFFERS_MB = 16;

/** How long close() waits for background threshold checks unless told otherwise. */
export const DEFAULT_BUDGET_CHECKS_TIMEOUT_MS = 30_000;

/** Defaults of the PostgreSQL limits in {@link OpenDatabaseOptions}. */
export const DEFAULT_POOL_LIMITS = {
  poolSize: 10,
  reportPoolSize: 4,
  connectTimeoutMs: 10_000,
  writeTimeoutMs: 30_000,
  reportTimeoutMs: 300_000,
} as const;

/** How much longer than the server's statement_timeout the client waits for any answer. */
const CLIENT_TIMEOUT_GRACE_MS = 5_000;

type PoolLimits = { -readonly [K in keyof typeof DEFAULT_POOL_LIMITS]: number };

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

/** @internal Statements on one connection, in a transaction of {@link DirectDriver.transaction}. */
export interface DirectSession {
  query<T = Record<string, unknown>>(text: string, values: readonly unknown[]): Promise<T[]>;
}

/**
 * @internal The driver the Database already holds, without Prisma's client runtime (which costs
 * more than the statement itself for a single record, and turns a batch's parameters into JSON
 * and back): the write pool (pinned sessions, `writeTimeoutMs`) on PostgreSQL, PGlite's own
 * query on PGlite (which waits for a running transaction). A `name` keeps the statement prepared
 * on each PostgreSQL connection and on PGlite's session (the text must be fixed for that name).
 */
export interface DirectDriver {
  query<T = Record<string, unknown>>(text: string, values: readonly unknown[], name?: string): Promise<T[]>;
  /** Runs `fn` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (session: DirectSession) => Promise<T>): Promise<T>;
}

/** An open database: a ready Prisma client and a way to close it. */
export interface Database {
  /** The generated Prisma client, connected through the matching driver adapter. */
  readonly prisma: PrismaClient;
  readonly kind: DatabaseKind;
  /** What was opened: the URL with its password hidden, or the PGlite directory. */
  readonly target: string;
  /**
   * @internal The PGlite instance when `kind` is `pglite`. Left out of the published types (its
   * declarations need Emscripten's): use {@link serveEmbeddedDatabase} to reach it from outside.
   */
  readonly pglite?: PGlite;
  /**
   * @internal The client finds, sums and reports run on: on PostgreSQL a pool of its own with the
   * longer `reportTimeoutMs`; on PGlite the same client as `prisma`.
   */
  readonly reportPrisma: PrismaClient;
  /** @internal */
  readonly driver: SqlDriver;
  /** @internal Single-record writes (see {@link DirectDriver}); tracked for close() like `prisma`. */
  readonly direct: DirectDriver;
  /**
   * @internal How long a write waits for its transaction to start, the `maxWait` of the Prisma
   * transactions the package runs (src/ledger/writeSession.ts): on PostgreSQL `connectTimeoutMs`
   * (the pool's wait for a connection), on PGlite `writeTimeoutMs` (its wait for a transaction
   * already running, as {@link DirectDriver.transaction} waits).
   */
  readonly transactionWaitMs: number;
  /**
   * The same database with every find, sum and report read on the primary: for a read that
   * must see what the caller has just written (a replica may lag). Closing either closes both.
   * Without replicas, the database itself.
   *
   * @example
   * await recordModelUsage(db, { userId: 7, modelId: 3, tokenInCount: 10 });
   * const [now] = await sumModelUsage(db.primary, { where: { userId: 7 } }); // includes it
   */
  readonly primary: Database;
  /** The replicas reads go to (`replicaUrls`, passwords hidden); empty without replicas. */
  readonly replicas: readonly string[];
  /** @internal Where reads are routed (see db/replicas); null when they run on `reportPrisma`. */
  readonly replicaSet: ReplicaSet | null;
  /**
   * Lets the background threshold checks finish (at most `options.budgetChecksTimeoutMs`), then
   * disconnects Prisma and closes the pool or the embedded database.
   */
  close(options?: CloseOptions): Promise<void>;
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

/** What a `--db` / `DATABASE_URL` / `dataDir` value names (see {@link classifyDatabaseTarget}). */
export type DatabaseTarget = "postgresql" | "memory" | "directory";

/** The accepted forms, for messages. */
export const DATABASE_TARGET_FORMS = "a postgresql:// URL, a directory path (embedded PGlite), or memory://";

/**
 * What `value` names: a PostgreSQL URL, an in-memory PGlite database, or a directory; null when it
 * has another URL scheme (`mysql://…`, `http://…`, `sqlite:…`), which would otherwise be taken as
 * a strange relative directory. A Windows drive letter (`C:\data`) is a directory.
 *
 * @example
 * classifyDatabaseTarget("postgresql://postgres@127.0.0.1/usage"); // "postgresql"
 * classifyDatabaseTarget("./usage-db");                           // "directory"
 * classifyDatabaseTarget("mysql://root@localhost/x");             // null
 */
export function classifyDatabaseTarget(value: string): DatabaseTarget | null {
  if (isPostgresUrl(value)) return "postgresql";
  if (value.startsWith("memory://")) return "memory";
  if (/^[a-z]:([\\/]|$)/i.test(value)) return "directory";
  return /^[a-z][a-z0-9+.-]*:/i.test(value) ? null : "directory";
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
  const fromEnv = options.url === undefined && options.dataDir === undefined;
  const url = options.url ?? (fromEnv ? env.DATABASE_URL : undefined);
  const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
  const dataDirKind = url ? null : classifyDatabaseTarget(dataDir);
  if (!url && dataDirKind !== "directory" && dataDirKind !== "memory") {
    throw new DatabaseConnectionError(redactUrl(dataDir), `dataDir is neither a directory path nor memory:// (accepted: ${DATABASE_TARGET_FORMS})`);
  }
  const replicaUrls = checkReplicaUrls(options, env, fromEnv, url);
  if (options.onBudgetAlert !== undefined && typeof options.onBudgetAlert !== "function") {
    throw new UsageValidationError([{ field: "onBudgetAlert", reason: "must be a function" }]);
  }
  if (options.onBudgetError !== undefined && typeof options.onBudgetError !== "function") {
    throw new UsageValidationError([{ field: "onBudgetError", reason: "must be a function" }]);
  }
  const sharedBuffersMb = options.embeddedSharedBuffersMb;
  if (sharedBuffersMb !== undefined && !(Number.isInteger(sharedBuffersMb) && sharedBuffersMb >= 1 && sharedBuffersMb <= 1024)) {
    throw new UsageValidationError([{ field: "embeddedSharedBuffersMb", reason: `must be a whole number of MB from 1 to 1024, got ${String(sharedBuffersMb)}` }]);
  }
  const limits = poolLimits(options);
  const opened = url
    ? await openPostgres(url, limits, replicaUrls)
    : await openPglite(dataDir, options.lockWaitMs ?? 0, options.create ?? true, limits.writeTimeoutMs, sharedBuffersMb);
  const prisma = trackedClient(() => db, opened.prisma);
  const replicas = opened.replicaSet?.replicas.map((r): Replica => ({ ...r, prisma: trackedClient(() => db, r.prisma) }));
  const db = {
    ...opened,
    prisma,
    direct: trackedDirect(() => db, opened.direct),
    reportPrisma: opened.reportPrisma === opened.prisma ? prisma : trackedClient(() => db, opened.reportPrisma),
    replicaSet: replicas ? new ReplicaSet(replicas) : null,
    close: (options?: CloseOptions) => closeDatabase(db, opened, options),
  } as Omit<Database, "primary"> as Database;
  (db as { primary: Database }).primary = db.replicaSet ? primaryView(db) : db;
  if (options.migrate) {
    try {
      await migrate(db);
    } catch (err) {
      await db.close();
      throw err;
    }
  }
  if (options.onBudgetError) setErrorCallback(db, options.onBudgetError);
  if (options.onBudgetAlert) {
    setAlertCallback(db, options.onBudgetAlert);
    // Alerts nobody delivered; a database without the budget tables (not migrated) has none.
    await deliverPendingAlerts(db).catch(() => undefined);
  }
  return db;
}

/**
 * `close()`: lets the background threshold checks of records already made finish (for at most
 * `budgetChecksTimeoutMs`), then marks the database closing, so that calls still running end as a lost
 * connection (a batch between chunks stops and rolls back, writing nothing), lets a running
 * batch's statement or transaction end, then disconnects.
 * A statement already running is not interrupted: a batch that commits before the close resolves
 * with all its rows. Closing again is a no-op; a failure to close is a DatabaseConnectionError.
 */
async function closeDatabase(db: Database, opened: Opened, options?: CloseOptions): Promise<void> {
  const timeoutMs = options?.budgetChecksTimeoutMs ?? DEFAULT_BUDGET_CHECKS_TIMEOUT_MS;
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new UsageValidationError([{ field: "options", reason: "must be an object such as { budgetChecksTimeoutMs: 5000 }" }]);
  }
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new UsageValidationError([{ field: "budgetChecksTimeoutMs", reason: `must be a number of milliseconds, 0 or more (or Infinity), got ${String(timeoutMs)}` }]);
  }
  // Threshold checks of records already made finish first (or for at most timeoutMs), with the pools still open.
  await budgetChecksEnded(db, timeoutMs);
  markClosing(db);
  try {
    await workEnded(db);
    await opened.close();
  } catch (err) {
    throw new DatabaseConnectionError(db.target, `closing failed: ${(err as Error)?.message ?? String(err)}`, { cause: err, lost: true });
  }
}

/**
 * @internal The URLs of a `PS_USAGE_REPLICA_URLS` value: comma-separated, blanks around them and
 * empty entries ignored.
 */
export function splitReplicaUrls(value: string | undefined): string[] {
  return (value ?? "").split(",").map((u) => u.trim()).filter((u) => u !== "");
}

/**
 * The replica URLs to open: `options.replicaUrls`, else `PS_USAGE_REPLICA_URLS` when the primary
 * is `DATABASE_URL` (the two describe one deployment; an explicit `url` or `dataDir` ignores
 * both). Every entry must be a PostgreSQL URL that parses, and only a PostgreSQL primary has
 * replicas: anything else is a UsageValidationError naming `replicaUrls` (or the variable).
 */
function checkReplicaUrls(
  options: OpenDatabaseOptions,
  env: Readonly<Record<string, string | undefined>>,
  fromEnv: boolean,
  url: string | undefined,
): string[] {
  const given = options.replicaUrls;
  const envValue = fromEnv ? env.PS_USAGE_REPLICA_URLS : undefined;
  const field = given === undefined && envValue !== undefined ? "PS_USAGE_REPLICA_URLS" : "replicaUrls";
  let list: unknown[];
  if (given !== undefined) {
    if (!Array.isArray(given)) {
      throw new UsageValidationError([{ field, reason: `must be an array of postgresql:// URLs, got ${given === null ? "null" : typeof given}` }]);
    }
    list = [...given];
  } else {
    list = splitReplicaUrls(envValue);
  }
  if (list.length === 0) return [];
  const issues: FieldIssue[] = [];
  // (A url of another scheme is refused by openPostgres, as without replicas.)
  if (!url) {
    issues.push({ field, reason: "an embedded PGlite database has no replicas: give a postgresql:// primary (url) or leave replicas out" });
  }
  list.forEach((value, i) => {
    const at = `${field}[${i}]`;
    if (typeof value !== "string") issues.push({ field: at, reason: `must be a postgresql:// URL, got ${value === null ? "null" : typeof value}` });
    else if (!isPostgresUrl(value)) issues.push({ field: at, reason: `"${redactUrl(value)}" is not a postgres:// or postgresql:// URL` });
    else if (!URL.canParse(value)) issues.push({ field: at, reason: `"${redactUrl(value)}" cannot be parsed as a URL` });
  });
  if (issues.length > 0) throw new UsageValidationError(issues);
  return list as string[];
}

/** The pool limits of `options`, each a positive integer (a UsageValidationError names a bad one). */
function poolLimits(options: OpenDatabaseOptions): PoolLimits {
  const issues: FieldIssue[] = [];
  const limits = { ...DEFAULT_POOL_LIMITS } as PoolLimits;
  for (const name of Object.keys(DEFAULT_POOL_LIMITS) as (keyof PoolLimits)[]) {
    const value = options[name];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
      issues.push({ field: name, reason: `must be a positive integer, got ${String(value)}` });
    } else {
      limits[name] = value;
    }
  }
  if (issues.length > 0) throw new UsageValidationError(issues);
  return limits;
}

/**
 * A pg Client class whose `connect` also pins the session (`pin`, a SET script) before the pool
 * hands the connection out, so no query ever runs on an unpinned session. (A SET sent from the
 * pool's "connect" event would race the first query and makes pg warn about queued queries.)
 */
function pinnedClientClass(pin: string): typeof Client {
  return class PinnedClient extends Client {
    // Both of pg's forms: a promise, or a callback (the form pg-pool uses).
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    connect(callback?: any): any {
      const pinned = super.connect().then(() => super.query(pin)).then(() => undefined);
      if (!callback) return pinned;
      pinned.then(() => callback(null, this), (err: Error) => callback(err));
      return undefined;
    }
  } as typeof Client;
}

/**
 * What report sessions (the report pool, replicas) pin besides the session settings: JIT off.
 * The planner's cost of a report statement (estimates it cannot make well: how many rollup slots
 * are cut, how many rows `agent_id = ANY(tree)` keeps) easily passes the JIT thresholds, and
 * compiling then takes 0.3 to 2 s for a statement that runs in milliseconds to a few hundred
 * (bench/SCALE.md, "JIT"). The write pool keeps the server's setting.
 */
const REPORT_SESSION_PIN = "; SET jit TO off";

/**
 * A pg pool whose every connection is pinned (session settings, statement_timeout) and whose
 * client-side query timeout bounds a wait on a server that stopped answering (no FIN, no RST).
 */
function pinnedPool(url: string, max: number, connectTimeoutMs: number, statementTimeoutMs: number, extraPin = ""): Pool {
  const pin = `${SESSION_SETTINGS_SQL}; SET statement_timeout TO ${statementTimeoutMs}${extraPin}`;
  // TCP keepalive lets a connection to a server that vanished without closing it (a dead host)
  // fail within a minute instead of hanging until the operating system's two-hour default.
  const pool = new Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: connectTimeoutMs,
    query_timeout: statementTimeoutMs + CLIENT_TIMEOUT_GRACE_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    Client: pinnedClientClass(pin),
  });
  // An idle client whose server went away emits 'error' on the pool; without a listener that
  // would crash the process. The next query reconnects or fails with its own error.
  pool.on("error", () => undefined);
  return pool;
}

/**
 * Runs `fn` on a connection of `pool`. While it is out, pg reports a lost connection as an
 * "error" event on it (its query rejects too), which would crash the process without a listener;
 * a connection that failed so, that failed a statement for another reason than the statement
 * (see isStatementError), or whose state `fn` marks broken (a failed ROLLBACK), is closed on
 * release instead of going back to the pool.
 */
async function onPooledClient<T>(pool: Pool, fn: (client: PoolClient, broken: (err: unknown) => void) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failed: Error | undefined;
  const broken = (err: unknown) => {
    failed ??= err instanceof Error ? err : new Error(String(err));
  };
  client.on("error", broken);
  try {
    return await fn(client, broken);
  } catch (err) {
    // pg may hear of a lost connection only after the query failed: do not wait for its event.
    if (!isStatementError(err)) broken(err);
    throw err;
  } finally {
    client.removeListener("error", broken);
    client.release(failed);
  }
}

/**
 * An error the server raised for a statement, after which its connection is fine (a constraint,
 * a statement timeout): not a lost connection (no SQLSTATE), a FATAL error, nor one of the
 * classes for connection failures (08) and shut-downs or terminated backends (57P).
 */
function isStatementError(err: unknown): boolean {
  const { code, severity } = (err ?? {}) as { code?: unknown; severity?: unknown };
  return typeof code === "string" && severity === "ERROR" && !code.startsWith("08") && !code.startsWith("57P");
}

/** A file system error in words, with its code. */
function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOTDIR: "a parent is a file, not a directory",
    ENAMETOOLONG: "the name is too long",
    EACCES: "permission denied",
    EPERM: "permission denied",
    EROFS: "read-only file system",
    ENOENT: "the file system refuses to create it",
    ENOSPC: "no space left",
    ELOOP: "too many symbolic links",
  };
  return code && words[code] ? `${words[code]} (${code})` : (err as Error).message;
}

/** PGlite writes this file when it creates a database in a directory. */
const PGLITE_MARKER = "PG_VERSION";

/**
 * Makes sure `target` is a writable directory, creating it (and missing parents) when `create`,
 * or, without `create`, that it holds a database. Every problem (a file in the way, a parent that
 * is a file, no permission, a name too long, a file system such as /proc that refuses new
 * directories) is a DatabaseConnectionError. The missing directories are made one at a time:
 * Node's recursive mkdir loops forever on some file systems (/proc), and the async calls leave a
 * host application's event loop free.
 */
async function prepareDirectory(target: string, create: boolean): Promise<void> {
  const fail = (reason: string, err?: unknown): never => {
    throw new DatabaseConnectionError(target, err === undefined ? reason : `${reason}: ${fsReason(err)}`, { cause: err });
  };
  const noDatabase = () => fail("no database in this directory; nothing was created (create one with `ps-usage migrate`, or openDatabase with create: true)");
  // The missing directories, deepest last, and the nearest one that exists.
  const missing: string[] = [];
  let dir = target;
  for (;;) {
    const stat = await fs.stat(dir).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? null : fail(`cannot use ${dir}`, err)));
    if (stat === null) {
      if (!create) noDatabase();
      missing.unshift(dir);
      const parent = path.dirname(dir);
      if (parent === dir) fail(`${dir} does not exist`);
      dir = parent;
      continue;
    }
    if (!stat.isDirectory()) fail(dir === target ? "not a directory" : `${dir} is a file, not a directory`);
    break;
  }
  await fs.access(dir, fs.constants.W_OK).catch((err) => fail(`${dir} is not writable`, err));
  for (const d of missing) {
    await fs.mkdir(d).catch(async (err: NodeJS.ErrnoException) => {
      // Made meanwhile by someone else: fine if it is a directory.
      if (err.code === "EEXIST" && (await fs.stat(d).catch(() => null))?.isDirectory()) return;
      fail(`cannot create ${d}`, err);
    });
  }
  if (!create && !(await fs.stat(path.join(target, PGLITE_MARKER)).catch(() => null))?.isFile()) noDatabase();
}

/** The migrator's client: pinned like the pools' connections, without their statement_timeout. */
const MigrationClient = pinnedClientClass(SESSION_SETTINGS_SQL);

/** What the opener returns before openDatabase wraps its clients (replicas' too) for close(). */
type Opened = Omit<Database, "primary" | "replicas" | "replicaSet"> & {
  readonly replicas: readonly string[];
  readonly replicaSet: { readonly replicas: readonly Replica[] } | null;
};

async function openPostgres(url: string, limits: PoolLimits, replicaUrls: readonly string[]): Promise<Opened> {
  const target = redactUrl(url);
  if (!isPostgresUrl(url)) {
    throw new DatabaseConnectionError(target, `url is not a postgres:// or postgresql:// URL (accepted: ${DATABASE_TARGET_FORMS})`);
  }
  try {
    new URL(url);
  } catch {
    throw new DatabaseConnectionError(target, "the URL cannot be parsed");
  }
  const pool = pinnedPool(url, limits.poolSize, limits.connectTimeoutMs, limits.writeTimeoutMs);
  const reportPool = pinnedPool(url, limits.reportPoolSize, limits.connectTimeoutMs, limits.reportTimeoutMs, REPORT_SESSION_PIN);
  try {
    const client = await pool.connect();
    try {
      await client.query("SELECT 1");
    } finally {
      client.release();
    }
  } catch (err) {
    await Promise.all([pool.end(), reportPool.end()]).catch(() => undefined);
    throw new DatabaseConnectionError(target, (err as Error).message || String(err), { cause: err });
  }
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const reportPrisma = new PrismaClient({ adapter: new PrismaPg(reportPool) });
  // A replica reads as the primary's report pool does: pinned sessions, the report timeout.
  const replicas = replicaUrls.map((replicaUrl): Replica => {
    const replicaPool = pinnedPool(replicaUrl, limits.reportPoolSize, limits.connectTimeoutMs, limits.reportTimeoutMs, REPORT_SESSION_PIN);
    return { target: redactUrl(replicaUrl), pool: replicaPool, prisma: new PrismaClient({ adapter: new PrismaPg(replicaPool) }) };
  });

  const driver: SqlDriver = {
    async query(sql, params) {
      return (await reportPool.query(sql, params ? [...params] : undefined)).rows;
    },
    async exec(script) {
      await reportPool.query(script);
    },
    // A session of its own, outside both pools and without their timeouts: the migrator holds an
    // advisory lock and may build indexes on large tables for longer than any call should take.
    async withSession(fn) {
      const client = new MigrationClient({ connectionString: url, connectionTimeoutMillis: limits.connectTimeoutMs, keepAlive: true });
      client.on("error", () => undefined);
      await client.connect();
      try {
        return await fn({
          async query(sql, params) {
            return (await client.query(sql, params ? [...params] : undefined)).rows;
          },
          async exec(script) {
            await client.query(script);
          },
        });
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
  const direct: DirectDriver = {
    query(text, values, name) {
      return retryDeadlocks(() => onPooledClient(pool, async (client) => (await client.query({ name, text, values: [...values] })).rows));
    },
    transaction(fn) {
      return retryDeadlocks(() => onPooledClient(pool, async (client, broken) => {
        await client.query("BEGIN");
        try {
          const result = await fn({ query: async (text, values) => (await client.query(text, [...values])).rows });
          await client.query("COMMIT");
          return result;
        } catch (err) {
          await client.query("ROLLBACK").catch(broken);
          throw err;
        }
      }));
    },
  };
  let closed = false;
  return {
    prisma,
    reportPrisma,
    direct,
    transactionWaitMs: limits.connectTimeoutMs,
    kind: "postgresql",
    target,
    driver,
    replicas: replicas.map((r) => r.target),
    replicaSet: replicas.length > 0 ? { replicas } : null,
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([prisma.$disconnect(), reportPrisma.$disconnect(), ...replicas.map((r) => r.prisma.$disconnect())]);
      await Promise.all([pool.end(), reportPool.end(), ...replicas.map((r) => r.pool.end())]);
    },
  };
}

async function openPglite(dataDir: string, lockWaitMs: number, create: boolean, writeTimeoutMs: number, sharedBuffersMb: number | undefined): Promise<Opened> {
  const inMemory = dataDir === "memory://" || dataDir.startsWith("memory://");
  const target = inMemory ? dataDir : path.resolve(dataDir);
  if (!inMemory) await prepareDirectory(target, create);
  // One process per directory (see db/lock): taken before PGlite reads a page of it.
  let opened: PGlite | undefined;
  const lock: DirectoryLock | undefined = inMemory
    ? undefined
    : await lockDirectory(target, {
        waitMs: lockWaitMs,
        // Lost while open: stop writing rather than crash the host process with a throw from a
        // timer. Later calls see "PGlite is closed", a DatabaseConnectionError.
        onCompromised: () => void opened?.close().catch(() => undefined),
      });
  let pglite: PGlite;
  try {
    // PGlite's start parameters are its command line: its defaults, then the cache size.
    const startParams = sharedBuffersMb === undefined ? undefined : [...PGlite.defaultStartParams, "-c", `shared_buffers=${sharedBuffersMb}MB`];
    pglite = opened = await PGlite.create(inMemory ? dataDir : target, startParams === undefined ? undefined : { startParams });
    // PGlite is one session: pinning it once covers every later query (see sessionSettings).
    await pglite.exec(SESSION_SETTINGS_SQL);
  } catch (err) {
    await opened?.close().catch(() => undefined);
    await lock?.release();
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
  // While a transaction is pending or running, a single statement too runs in a transaction of its
  // own: PGlite's plain query would queue behind it without a bound and cannot be taken back (see
  // db/pgliteWait); with none, it runs as it is.
  const transactionPending = trackTransactions(pglite);
  // A named statement is prepared once on PGlite's session too (see db/pglitePrepared), outside
  // transactions, where a vanished one can be prepared again and retried.
  const prepared = pglitePreparedStatements(pglite);
  const direct: DirectDriver = {
    async query(text, values, name) {
      if (!transactionPending()) return name === undefined ? ((await pglite.query(text, [...values])).rows as never[]) : prepared(name, text, values);
      return pgliteTransactionWithin(pglite, target, writeTimeoutMs, async (tx) => (await tx.query(text, [...values])).rows as never[]);
    },
    transaction(fn) {
      return pgliteTransactionWithin(pglite, target, writeTimeoutMs, (tx) => fn({ query: async (text, values) => (await tx.query(text, [...values])).rows as never[] }));
    },
  };
  let closed = false;
  return {
    prisma,
    reportPrisma: prisma,
    direct,
    transactionWaitMs: writeTimeoutMs,
    kind: "pglite",
    target,
    pglite,
    driver,
    replicas: [],
    replicaSet: null,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await prisma.$disconnect();
        if (!pglite.closed) await pglite.close();
      } finally {
        // Only once PGlite has written and closed the directory may another process open it.
        await lock?.release();
      }
    },
  };
}
