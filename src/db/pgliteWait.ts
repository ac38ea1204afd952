/**
 * PGlite runs one transaction at a time: a statement or transaction of the package queues behind
 * one already running in this process (an interactive `db.prisma.$transaction`, a guarded write, a
 * batch) for as long as that one lasts. This bounds the queueing, as the pool's wait for a
 * connection is bounded on PostgreSQL.
 */
import type { PGlite, Transaction } from "@electric-sql/pglite";
import { DatabaseTimeoutError } from "../errors";

/** What a {@link DatabaseTimeoutError} of a write that waited `waitMs` for PGlite says. */
export function pgliteWaitDetail(waitMs: number): string {
  return `another transaction in this process held the embedded database (PGlite runs one at a time) for more than writeTimeoutMs (${waitMs} ms); nothing was written`;
}

/**
 * Runs `fn` in a PGlite transaction once the running one (if any) has ended, waiting at most
 * `waitMs` for that. Past it, a {@link DatabaseTimeoutError} (phase `"connect"`, as a busy pool's
 * wait on PostgreSQL) and nothing is written: PGlite cannot take a queued call back, so when its
 * turn comes the call rolls back an empty transaction instead of running `fn`.
 */
export function pgliteTransactionWithin<T>(pglite: PGlite, target: string, waitMs: number, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let state: "waiting" | "running" | "given up" = "waiting";
    const timer = setTimeout(() => {
      if (state !== "waiting") return;
      state = "given up";
      reject(new DatabaseTimeoutError(target, "connect", pgliteWaitDetail(waitMs)));
    }, waitMs);
    pglite
      .transaction(async (tx) => {
        if (state === "given up") {
          await tx.rollback();
          return undefined as T;
        }
        state = "running";
        clearTimeout(timer);
        return fn(tx);
      })
      // After a timeout the caller has its error already: settling again is a no-op.
      .then(resolve, reject)
      .finally(() => clearTimeout(timer));
  });
}

/**
 * Counts the transactions of `pglite` asked for and not yet ended (Prisma's adapter, the package and
 * any other caller all go through `pglite.transaction`), so that a single statement can tell whether
 * it could be queued behind one. None pending: a plain query waits at most for the plain statements
 * ahead of it, and runs without the BEGIN and COMMIT of {@link pgliteTransactionWithin} (about a
 * tenth of a single record's time on PGlite: bench/NOTES.md).
 */
export function trackTransactions(pglite: PGlite): () => boolean {
  let pending = 0;
  const transaction = pglite.transaction.bind(pglite);
  pglite.transaction = ((fn: Parameters<PGlite["transaction"]>[0]) => {
    pending++;
    return transaction(fn).finally(() => pending--);
  }) as PGlite["transaction"];
  // A transaction begun by a plain "BEGIN" statement is seen by the server's own state. A closed
  // PGlite has none (and its isInTransaction throws a TypeError): the statement then gets PGlite's
  // own "PGlite is closed", which is a DatabaseConnectionError.
  return () => pending > 0 || (!pglite.closed && pglite.isInTransaction());
}
