/**
 * What a {@link Database} knows about budgets between calls: the budgets themselves, cached for a
 * few seconds so that a record call without `enforceBudgets` costs nothing extra when no budget
 * could be crossed, and the `onBudgetAlert` callback it was opened with.
 */
import type { Database } from "../db";
import type { BudgetRow } from "./define";
import type { BudgetAlert } from "./alerts";

/** How long a Database trusts its list of budgets (budgets set through it refresh it at once). */
export const BUDGET_CACHE_MS = 5_000;

const cache = new WeakMap<Database, { readonly at: number; readonly rows: Promise<readonly BudgetRow[]> }>();

/** Forgets the cached budgets of `db` (after it set or removed one). */
export function forgetBudgets(db: Database): void {
  cache.delete(db);
}

/**
 * The budgets, at most {@link BUDGET_CACHE_MS} old: one query per Database and period, none in
 * between. A database without the budget table (not migrated to this version) has none.
 */
export function cachedBudgets(db: Database): Promise<readonly BudgetRow[]> {
  const hit = cache.get(db);
  if (hit !== undefined && Date.now() - hit.at < BUDGET_CACHE_MS) return hit.rows;
  const rows = db.prisma.psUsageBudget.findMany().catch(() => [] as BudgetRow[]);
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
