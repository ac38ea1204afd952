/**
 * PGlite runs one transaction at a time: a statement or transaction of the package queues behind
 * one already running in this process (an interactive `db.prisma.$transaction`, a guarded write, a
 * batch) for as long as that one lasts. This bounds the queueing, as the pool's wait for a
 * connection is bounded on PostgreSQL.
 */
import type { PGlite, Transaction } from "@electric-sql/pglite";
import { DatabaseTimeoutError } from "../errors";

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
      reject(
        new DatabaseTimeoutError(
          target,
          "connect",
          `another transaction in this process held the embedded database (PGlite runs one at a time) for more than writeTimeoutMs (${waitMs} ms); nothing was written`,
        ),
      );
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
