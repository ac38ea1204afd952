/**
 * What a {@link Database} knows about budgets between calls: the budgets themselves, cached for a
 * few seconds so that a record call without `enforceBudgets` costs nothing extra when no budget
 * could be crossed, the `onBudgetAlert` callback it was opened with, and how it reports a
 * background budget failure (`onBudgetError`).
 */
import type { Database } from "../db";
import { Prisma } from "../generated/prisma/client";
import { directStatement } from "../ledger/writeSession";
import type { BudgetAlert } from "./alerts";

/** How long a Database trusts its list of budgets (budgets set through it refresh it at once). */
export const BUDGET_CACHE_MS = 5_000;

const cache = new WeakMap<Database, { readonly at: number; readonly rows: Promise<readonly BudgetScopeRow[]> }>();

/** Forgets the cached budgets of `db` (after it set or removed one). */
export function forgetBudgets(db: Database): void {
  cache.delete(db);
}

/** What the background check needs of a budget to tell whether an event may count toward it. */
export interface BudgetScopeRow {
  readonly id: number;
  readonly thresholdCount: number;
  readonly userId: number | null;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  readonly modelId: number | null;
  readonly externalApiId: number | null;
}

/**
 * The budgets' scopes, at most {@link BUDGET_CACHE_MS} old: one query per Database and period,
 * none in between. A database without the budget table (not migrated to this version) has none.
 * Read on the driver, as the writes that call for it: a batch import never loads Prisma's query
 * compiler (about 50 MB of WASM, bench/RESULTS.md) unless a budget's scope may hold its events.
 */
export function cachedBudgets(db: Database): Promise<readonly BudgetScopeRow[]> {
  const hit = cache.get(db);
  if (hit !== undefined && Date.now() - hit.at < BUDGET_CACHE_MS) return hit.rows;
  const rows = directStatement(db)
    .query<BudgetScopeRow>(
      Prisma.sql`SELECT id, cardinality(thresholds) AS "thresholdCount", user_id AS "userId", agent_id AS "agentId",
        connector_id AS "connectorId", model_id AS "modelId", external_api_id AS "externalApiId" FROM ps_usage_budgets`,
    )
    .catch(() => [] as BudgetScopeRow[]);
  cache.set(db, { at: Date.now(), rows });
  return rows;
}

/** A function given to `openDatabase` as `onBudgetAlert`. */
export type BudgetAlertCallback = (alert: BudgetAlert) => void | Promise<void>;

const callbacks = new WeakMap<Database, BudgetAlertCallback>();

/** @internal Remembers `db`'s callback. */
export function setAlertCallback(db: Database, callback: BudgetAlertCallback): void {
  callbacks.set(db, callback);
}

/** @internal `db`'s callback, if it was opened with one. */
export function alertCallback(db: Database): BudgetAlertCallback | undefined {
  return callbacks.get(db) ?? callbacks.get(db.primary);
}

/**
 * A budget failure no call could throw: a background threshold check that failed (the database
 * gone, a query timed out; `alert` null: its budgets are checked again by the next one), or an
 * `onBudgetAlert` callback that threw for `alert` (the alert stays undelivered in the outbox and is
 * delivered again, see README "Budgets and spend alerts").
 */
export interface BudgetFailure {
  /** The package's typed error where there is one (DatabaseConnectionError, DatabaseTimeoutError, …), else what was thrown. */
  readonly error: unknown;
  readonly alert: BudgetAlert | null;
}

/** A function given to `openDatabase` as `onBudgetError`. */
export type BudgetErrorCallback = (failure: BudgetFailure) => void;

const errorCallbacks = new WeakMap<Database, BudgetErrorCallback>();
const undelivered = new WeakSet<Database>();

/** @internal Remembers `db`'s error callback. */
export function setErrorCallback(db: Database, callback: BudgetErrorCallback): void {
  errorCallbacks.set(db, callback);
}

/**
 * @internal Reports `failure` to `db`'s `onBudgetError`, or without one as a process warning
 * (`PS_USAGE_BUDGET_FAILURE`). Never throws: a throwing callback is ignored.
 */
export function reportBudgetFailure(db: Database, failure: BudgetFailure): void {
  const callback = errorCallbacks.get(db) ?? errorCallbacks.get(db.primary);
  if (callback) {
    try {
      callback(failure);
    } catch {
      // Nothing left to tell.
    }
    return;
  }
  const what = failure.alert ? `delivering budget alert ${failure.alert.id} ("${failure.alert.budgetName}" at ${failure.alert.threshold})` : "a background budget threshold check";
  process.emitWarning(`ps-usage: ${what} failed: ${(failure.error as Error)?.message ?? String(failure.error)}`, { code: "PS_USAGE_BUDGET_FAILURE" });
}

/** @internal Notes that an alert of `db`'s was released undelivered: its next threshold check delivers pending alerts first. */
export function markUndelivered(db: Database): void {
  undelivered.add(db.primary);
}

/** @internal Whether `db` released an alert undelivered since the last call (and forgets it). */
export function takeUndelivered(db: Database): boolean {
  return undelivered.delete(db.primary);
}
