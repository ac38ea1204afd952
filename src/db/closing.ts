import { DatabaseConnectionError } from "../errors";
import type { PrismaClient } from "../generated/prisma/client";
import type { DirectDriver } from "../db";

/**
 * Which databases `close()` has been called on. A call still running when its database is closed
 * fails because of the close, with whatever error the driver or Prisma gives then (an invalidated
 * transaction, an ended pool); knowing the database is closing lets those be reported as the lost
 * connection they are, and lets a batch stop between chunks instead of starting new statements.
 */
const closing = new WeakSet<object>();

/**
 * Views of a database (`db.primary`, the per-call replica views of db/replicas) -> the database
 * they view: a view closes with it, and its calls are waited for by its `close()`.
 */
const viewed = new WeakMap<object, object>();

/** Makes `view` share `db`'s closing state and in-flight work. */
export function viewOf<T extends object>(view: T, db: object): T {
  viewed.set(view, viewed.get(db) ?? db);
  return view;
}

/** The database `db` is, or views. */
export function owner(db: object): object {
  return viewed.get(db) ?? db;
}

/** Marks `db` as closing (from `close()` on, for good). */
export function markClosing(db: object): void {
  closing.add(owner(db));
}

/** True once `close()` was called on `db` (or on the database it views). */
export function isClosing(db: object): boolean {
  return closing.has(owner(db));
}

const inFlight = new WeakMap<object, Set<Promise<unknown>>>();

/**
 * Registers a batch's statement or transaction running on `db`, so that `close()` lets it end
 * first: a transaction cut off by a disconnect is never rolled back by Prisma (an embedded PGlite
 * then waits for it forever), and a statement whose pool is ended under it never settles. A batch
 * checks {@link isClosing} between chunks, so the wait is one statement at most.
 */
export function trackWork<T>(view: object, work: Promise<T>): Promise<T> {
  const db = owner(view);
  let set = inFlight.get(db);
  if (!set) inFlight.set(db, (set = new Set()));
  const entry: Promise<unknown> = work.then(
    () => set.delete(entry),
    () => set.delete(entry),
  );
  set.add(entry);
  return work;
}

/** Waits until all work registered on `db` has ended (committed, or failed and rolled back). */
export async function workEnded(db: object): Promise<void> {
  const set = inFlight.get(owner(db));
  while (set && set.size > 0) await Promise.allSettled([...set]);
}

/** The error of a call that `close()` cut off, or that came after it. */
export function closedError(target: string, cause?: unknown): DatabaseConnectionError {
  return new DatabaseConnectionError(target, "the database was closed (close() was called)", { cause, lost: true });
}

/**
 * The client a `Database` hands out: every query (model operations and raw SQL) is registered with
 * {@link trackWork}, so `close()` waits for queries already sent (an ended pg pool otherwise
 * leaves them unsettled forever), and a query started after `close()` is refused at once.
 */
export function trackedClient(db: () => { readonly target: string }, prisma: PrismaClient): PrismaClient {
  return prisma.$extends({
    query: {
      $allOperations({ args, query }) {
        const owner = db();
        if (isClosing(owner)) {
          return Promise.reject(closedError(owner.target));
        }
        return trackWork(owner, query(args));
      },
    },
  }) as unknown as PrismaClient;
}

/** {@link trackedClient} for the direct driver: refused after `close()`, waited for by it. */
export function trackedDirect(db: () => { readonly target: string }, direct: DirectDriver): DirectDriver {
  const tracked = <T>(run: () => Promise<T>): Promise<T> => {
    const owner = db();
    if (isClosing(owner)) return Promise.reject(closedError(owner.target));
    return trackWork(owner, run());
  };
  return {
    query: (text, values, name) => tracked(() => direct.query(text, values, name)),
    transaction: (fn) => tracked(() => direct.transaction(fn)),
  };
}
