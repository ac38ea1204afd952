/**
 * The threshold check after an unguarded record, in the background: the record call returns once
 * its write committed, and never waits for a cost query.
 *
 * Per Database, records mark their events dirty and at most one check runs at a time; records that
 * arrive while it runs only add to the dirty set, and one follow-up run covers them all. A run reads
 * each dirty (budget, period) once, raises the thresholds crossed (once per budget, period and
 * threshold: the alerts' unique key) and delivers them to `onBudgetAlert`. A failed run keeps its
 * dirty budgets for the next one, reaches no caller and never rejects (nothing for the process to
 * crash on): it is reported to `onBudgetError` (else as a process warning). A run first delivers
 * the alerts an earlier delivery released (a callback that threw). `close()` first lets the checks
 * finish, for at most `budgetChecksTimeoutMs` (see {@link budgetChecksEnded}), so no recorded
 * crossing is left unchecked by a process that closes its Database before exiting.
 */
import type { Database } from "../db";
import { isClosing, owner } from "../db/closing";
import { deliverAlerts, deliverPendingAlerts } from "./alerts";
import type { BudgetEvent } from "./guard";
import { cachedBudgets, markUndelivered, type BudgetScopeRow, reportBudgetFailure, takeUndelivered } from "./registry";
import { UnknownReferenceError } from "../errors";
import { translateDatabaseError } from "../usageShared";
import { budgetsInPeriods, statusOf } from "./status";

interface Checks {
  /** Events recorded since a run last took them. */
  events: (readonly BudgetEvent[])[];
  /** Budget id -> instants (ms) of events its scope may hold, not checked yet. */
  readonly dirty: Map<number, Set<number>>;
  running: Promise<void> | null;
  /** Set by close(): later records start no check. */
  ended: boolean;
  /** Why the last run failed (its budgets stay dirty for the next one); undefined after a good run. */
  lastError: unknown;
}

const checks = new WeakMap<object, Checks>();

function checksOf(db: Database): Checks {
  const key = owner(db);
  let c = checks.get(key);
  if (!c) checks.set(key, (c = { events: [], dirty: new Map(), running: null, ended: false, lastError: undefined }));
  return c;
}

/** Could `row`'s scope hold `event`? (An agent budget: any event with an agent; the read decides.) */
function mayHold(row: BudgetScopeRow, event: BudgetEvent): boolean {
  return (
    row.thresholdCount > 0 &&
    (row.userId === null || row.userId === event.userId) &&
    (row.agentId === null || event.agentId !== null) &&
    (row.connectorId === null || row.connectorId === event.connectorId) &&
    (row.modelId === null || row.modelId === event.modelId) &&
    (row.externalApiId === null || row.externalApiId === event.externalApiId)
  );
}

/** @internal Marks `events` (committed, unguarded) for the background check; returns at once. */
export function scheduleThresholdCheck(db: Database, events: readonly BudgetEvent[]): void {
  const c = checksOf(db);
  if (c.ended || events.length === 0) return;
  c.events.push(events);
  if (c.running === null) c.running = run(owner(db) as Database, c);
}

async function run(db: Database, c: Checks): Promise<void> {
  // Let the recording call return before anything here runs.
  await Promise.resolve();
  try {
    while ((c.events.length > 0 || c.dirty.size > 0) && !isClosing(db)) {
      try {
        await checkDirty(db, c);
        c.lastError = undefined;
      } catch (err) {
        // Kept dirty for the next run (started by the next record, or close()).
        c.lastError = err;
        const error = await translateDatabaseError(db, err, async () => new UnknownReferenceError("a referenced table", null)).catch(() => err);
        reportBudgetFailure(db, { error, alert: null });
        break;
      }
    }
  } finally {
    c.running = null;
  }
}

/** One pass: the dirty budgets' periods, each read once, crossings raised and delivered. */
async function checkDirty(db: Database, c: Checks): Promise<void> {
  if (takeUndelivered(db)) {
    try {
      await deliverPendingAlerts(db);
    } catch (err) {
      markUndelivered(db);
      throw err;
    }
  }
  const budgets = await cachedBudgets(db);
  const batches = c.events;
  c.events = [];
  for (const events of batches) {
    for (const b of budgets) {
      let at: Set<number> | undefined;
      for (const e of events) {
        if (!mayHold(b, e)) continue;
        if (at === undefined && (at = c.dirty.get(b.id)) === undefined) c.dirty.set(b.id, (at = new Set()));
        at.add(e.createdAt.getTime());
      }
    }
  }
  if (c.dirty.size === 0) return;
  const taken = new Map(c.dirty);
  c.dirty.clear();
  try {
    for (const b of await budgetsInPeriods(db.primary.prisma, taken)) {
      if (isClosing(db)) return;
      const { fired } = await statusOf(db, b);
      await deliverAlerts(db, fired);
    }
  } catch (err) {
    // Checked again next time (raising twice is harmless: the alerts' unique key).
    for (const [id, at] of taken) {
      const now = c.dirty.get(id);
      if (now === undefined) c.dirty.set(id, at);
      else for (const t of at) now.add(t);
    }
    throw err;
  }
}

/**
 * Resolves once `db` has no threshold check running or waiting: the crossings of every record
 * call that resolved before are then raised and handed to `onBudgetAlert`. A check that failed
 * (its budgets are checked again by the next one) does not make this throw.
 *
 * @example
 * await recordModelUsage(db, { userId: 42, modelId: 3, tokenInCount: 1000 });
 * await budgetChecksSettled(db); // e.g. in a test, or before reading the alerts table
 */
export async function budgetChecksSettled(db: Database): Promise<void> {
  const c = checksOf(db);
  while (c.running !== null) await c.running;
}

/**
 * @internal For close(): records start no more checks; waits for the running one and its
 * follow-up, at most `timeoutMs`. Past it, close() goes on: the check's query running then is not
 * interrupted (it ends with the database, or within its statement timeout), its undelivered
 * alerts stay in the outbox (delivered by the next Database opened with a callback, or
 * `checkBudgets`), and its unchecked crossings are raised by the next `budgetStatus` or
 * `checkBudgets`. Returns false when it stopped waiting.
 */
export async function budgetChecksEnded(db: Database, timeoutMs = Infinity): Promise<boolean> {
  const c = checksOf(db);
  if (!c.ended && c.running === null && (c.events.length > 0 || c.dirty.size > 0)) c.running = run(owner(db) as Database, c);
  c.ended = true;
  if (c.running === null) return true;
  if (!Number.isFinite(timeoutMs)) {
    await budgetChecksSettled(db);
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([budgetChecksSettled(db).then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
