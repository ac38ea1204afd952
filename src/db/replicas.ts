/**
 * Read replicas: where a find, sum or cost report runs when `openDatabase` was given
 * `replicaUrls`. Each call reads from one replica (in turn), through a pool pinned like the
 * primary's (session settings, `reportTimeoutMs`); writes, transactions, idempotency replays and
 * reference checks never come here: they use `db.prisma` on the primary. The read calls go
 * through `readRouted` (usageShared, beside the error mapping it applies), which gives them a
 * view of the database whose `reportPrisma` and `target` are one replica's.
 *
 * Why not `@prisma/extension-read-replicas` (0.5.0, the Prisma 7 line): it routes model reads
 * (`findMany`, `count`, ...) to a replica picked at random per operation and raw SQL only through
 * `$replica()`. The sums, the cost reports and a find's keyset are raw SQL, and a find page reads
 * its keys and then its rows: per operation, the two could land on replicas at different replay
 * points and drop rows. It also neither skips a replica that is down nor says which one failed.
 * So the routing is per call, here; the model is the extension's (a primary client for writes,
 * replica clients on their own `PrismaPg` adapters).
 */
import type { Pool } from "pg";
import type { Database } from "../db";
import type { PrismaClient } from "../generated/prisma/client";
import { viewOf } from "./closing";

/** One replica: its URL with the password hidden, its pinned pool and the client on it. */
export interface Replica {
  readonly target: string;
  readonly pool: Pool;
  readonly prisma: PrismaClient;
}

/**
 * How long a replica that could not be reached is tried last (after the others, before giving
 * up): the other replicas take its reads meanwhile instead of each call waiting on it first.
 */
export const REPLICA_RETRY_AFTER_MS = 10_000;

/** @internal The replicas of an open database and the state of the round-robin. */
export class ReplicaSet {
  private turn = 0;
  private readonly downUntil = new Map<Replica, number>();
  constructor(readonly replicas: readonly Replica[]) {}

  /** The replicas in the order one call tries them: the next in turn first, those that failed lately last. */
  order(now = Date.now()): Replica[] {
    const start = this.turn++ % this.replicas.length;
    const turn = [...this.replicas.slice(start), ...this.replicas.slice(0, start)];
    const up = (r: Replica) => (this.downUntil.get(r) ?? 0) <= now;
    return [...turn.filter(up), ...turn.filter((r) => !up(r))];
  }

  markDown(replica: Replica, now = Date.now()): void {
    this.downUntil.set(replica, now + REPLICA_RETRY_AFTER_MS);
  }

  markUp(replica: Replica): void {
    this.downUntil.delete(replica);
  }
}

/** Per database and replica, the one view calls on it get (views are plain data). */
const views = new WeakMap<Database, Map<Replica, Database>>();

/** `db` reading from `replica`: its report client is the replica's, its target the replica's. */
export function replicaView(db: Database, replica: Replica): Database {
  let byReplica = views.get(db);
  if (!byReplica) views.set(db, (byReplica = new Map()));
  let view = byReplica.get(replica);
  if (!view) {
    view = viewOf({ ...db, reportPrisma: replica.prisma, target: replica.target, replicaSet: null }, db);
    byReplica.set(replica, view);
  }
  return view;
}

/** `db` with every read on the primary (`db.primary`): the same database, closed with it. */
export function primaryView(db: Database): Database {
  const view = viewOf({ ...db, replicaSet: null, replicas: [] as readonly string[] } as Database, db);
  (view as { primary: Database }).primary = view;
  return view;
}
