/**
 * Where a write's statements run: one interface over a transaction of the driver the Database
 * holds (db.direct: batches) and a Prisma transaction (the single records that check their
 * references first), so that the reference check and the batch key claim are written once.
 */
import type { Database, DirectSession } from "../db";
import { closedError, isClosing } from "../db/closing";
import { retryDeadlocks } from "../db/retryDeadlocks";
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

/**
 * Runs `fn` in one Prisma interactive transaction (writes that must share it with Prisma queries:
 * the reference check of a single record, the budget guard). A closed Database refuses it as a
 * plain write is; a deadlock's victim, rolled back whole, runs again (src/db/retryDeadlocks.ts).
 * PGlite runs one transaction at a time, so it waits up to a minute for a running one, as a batch
 * would; `timeoutMs` bounds the transaction itself.
 */
export async function prismaWriteTransaction<T>(db: Database, fn: (tx: Prisma.TransactionClient) => Promise<T>, timeoutMs: number): Promise<T> {
  if (isClosing(db)) throw closedError(db.target);
  return retryDeadlocks(() => db.prisma.$transaction(fn, { maxWait: 60_000, timeout: timeoutMs }));
}
