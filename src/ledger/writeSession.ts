/**
 * Where a write's statements run: one interface over a transaction of the driver the Database
 * holds (db.direct: batches) and a Prisma transaction (the single records that check their
 * references first), so that the reference check and the batch key claim are written once.
 */
import type { Database, DirectSession } from "../db";
import { closedError, isClosing } from "../db/closing";
import { pgliteWaitDetail } from "../db/pgliteWait";
import { retryDeadlocks } from "../db/retryDeadlocks";
import { DatabaseTimeoutError, type DatabaseConnectionError } from "../errors";
import type { Prisma } from "../generated/prisma/client";

/** Runs statements built with Prisma.sql (values bound, never concatenated) in one session. */
export interface WriteSession {
  query<T = Record<string, unknown>>(sql: Prisma.Sql): Promise<T[]>;
}

/** A Prisma interactive transaction as a {@link WriteSession}. */
export function prismaSession(tx: Prisma.TransactionClient): WriteSession {
  return { query: <T>(sql: Prisma.Sql) => tx.$queryRaw<T[]>(sql) };
}

function directSession(session: DirectSession): WriteSession {
  return { query: <T>(sql: Prisma.Sql) => session.query<T>(sql.text, sql.values) };
}

/** One statement on the driver, outside any transaction (atomic on its own). */
export function directStatement(db: Database): WriteSession {
  return { query: <T>(sql: Prisma.Sql) => db.direct.query<T>(sql.text, sql.values) };
}

/** Runs `fn` in one transaction of the driver the Database holds: all of it or nothing. */
export function writeTransaction<T>(db: Database, fn: (session: WriteSession) => Promise<T>): Promise<T> {
  return db.direct.transaction((session) => fn(directSession(session)));
}

/** A configuration write's (prices, budgets) time limit: a price sync writes all models' periods in one, so more than Prisma's 5 s. */
export const CONFIGURATION_TRANSACTION_MS = 60_000;

/**
 * Runs `fn` in one Prisma interactive transaction (writes that must share it with Prisma queries:
 * the reference check of a single record, the budget guard). A closed Database refuses it as a
 * plain write is; a deadlock's victim, rolled back whole, runs again (src/db/retryDeadlocks.ts).
 * The wait to start it is the Database's `transactionWaitMs`, as a batch's: PGlite runs one
 * transaction at a time, so it waits `writeTimeoutMs` at most for a running one; PostgreSQL's pool
 * `connectTimeoutMs` for a connection. `timeoutMs` bounds the transaction itself. Either bound
 * passed is a {@link DatabaseTimeoutError} (see {@link transactionTimeoutError}), nothing written.
 */
export async function prismaWriteTransaction<T>(db: Database, fn: (tx: Prisma.TransactionClient) => Promise<T>, timeoutMs: number): Promise<T> {
  if (isClosing(db)) throw closedError(db.target);
  try {
    return await retryDeadlocks(() => db.prisma.$transaction(fn, { maxWait: db.transactionWaitMs, timeout: timeoutMs }));
  } catch (err) {
    throw transactionTimeoutError(db, err, timeoutMs) ?? err;
  }
}

/**
 * Prisma's P2028 for one of the two bounds of its interactive transaction, as the package's
 * {@link DatabaseTimeoutError}; null for any other error. Not started within `maxWait` ("Unable to
 * start a transaction in the given time"): phase `"connect"`, as a batch's wait for PGlite or the
 * pool. Run longer than `timeout` ("Transaction already closed: A … cannot be executed on an
 * expired transaction"): phase `"statement"`, as a statement the server cancelled. Either way
 * nothing was written: Prisma rolls an expired transaction back, and its timer waits for a commit
 * already under way rather than cutting it off, so a commit that failed so never began.
 */
function transactionTimeoutError(db: Database, err: unknown, timeoutMs: number): DatabaseTimeoutError | DatabaseConnectionError | null {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (code !== "P2028" || typeof message !== "string") return null;
  // close() was called while it waited or ran: the closed database is the cause, as for any call
  // in flight then (src/db/closing.ts).
  if (isClosing(db)) return closedError(db.target, err);
  if (/Unable to start a transaction in the given time/.test(message)) {
    const detail =
      db.kind === "pglite"
        ? pgliteWaitDetail(db.transactionWaitMs)
        : `the write's transaction did not start within connectTimeoutMs (${db.transactionWaitMs} ms): no connection of the pool (poolSize) was free, or the server did not answer; nothing was written`;
    return new DatabaseTimeoutError(db.target, "connect", detail, { cause: err });
  }
  if (/expired transaction/.test(message)) {
    return new DatabaseTimeoutError(db.target, "statement", `the write's transaction ran longer than its limit (${timeoutMs} ms) and was rolled back; nothing was written`, { cause: err });
  }
  return null;
}
