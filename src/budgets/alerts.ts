/**
 * Threshold alerts: raised once per (budget, period, threshold), durably, and delivered.
 *
 * Raising is one statement: `INSERT … ON CONFLICT DO NOTHING RETURNING` into
 * `ps_usage_budget_alerts`, whose unique key (budget, period start, threshold) lets exactly one
 * writer win a crossing, also across processes (a concurrent insert of the same key waits for
 * the first and then inserts nothing). The same statement calls `pg_notify` on the channel
 * {@link BUDGET_ALERT_CHANNEL}, so listeners hear of it when, and only if, its transaction commits.
 *
 * Delivery to an `onBudgetAlert` callback is an outbox: the raising process claims its own new
 * alerts (`claimed_at`) and marks each delivered (`delivered_at`) once its callback returned.
 * Alerts that nobody with a callback raised, or whose process died before marking them (a claim
 * older than {@link ALERT_CLAIM_MS}), are delivered by the next Database opened with a callback,
 * and by each {@link checkBudgets}; one whose callback threw is released at once and delivered
 * again by the next of those or this process's next threshold check. So a callback sees every
 * alert at least once; twice only when its process dies after the callback and before the mark.
 */
import type { Database } from "../db";
import { Prisma } from "../generated/prisma/client";
import { alertCallback, markUndelivered, reportBudgetFailure } from "./registry";
import type { BudgetInPeriod } from "./status";

/** The PostgreSQL notification channel alerts are sent on (payload: the alert as JSON). */
export const BUDGET_ALERT_CHANNEL = "ps_usage_budget_alerts";

/** After this long, a claimed alert that was not marked delivered is delivered again. */
export const ALERT_CLAIM_MS = 60_000;

/** A threshold a budget crossed in one period. Amounts are exact decimal strings. */
export interface BudgetAlert {
  readonly id: number;
  readonly budgetId: number;
  readonly budgetName: string;
  readonly periodStart: Date;
  readonly periodEnd: Date;
  /** The fraction of the amount crossed, e.g. `"0.8"`. */
  readonly threshold: string;
  readonly amount: string;
  readonly currency: string;
  /** What the period's spending was when the crossing was seen. */
  readonly spent: string;
  readonly firedAt: Date;
  /** When a callback was done with it; null while not delivered. */
  readonly deliveredAt: Date | null;
}

type AlertRow = Prisma.PsUsageBudgetAlertGetPayload<object>;

/** @internal A stored alert as the plain {@link BudgetAlert}. */
export function toAlert(row: AlertRow, budgetName: string): BudgetAlert {
  return {
    id: row.id,
    budgetId: row.budgetId,
    budgetName,
    periodStart: row.periodStart,
    periodEnd: row.periodEnd,
    threshold: row.threshold.toFixed(),
    amount: row.amount.toFixed(),
    currency: row.currency,
    spent: row.spent.toFixed(),
    firedAt: row.firedAt,
    deliveredAt: row.deliveredAt,
  };
}

interface RawAlert {
  id: number;
  budget_id: number;
  period_start: Date;
  period_end: Date;
  threshold: string;
  amount: string;
  currency: string;
  spent: string;
  fired_at: Date;
}

/**
 * @internal Raises the thresholds of `budget` that `spent` reached (spent ≥ threshold × amount)
 * and that were not raised yet in this period, on `client` (in the recording transaction when
 * there is one). Returns the alerts this call raised: none when another writer won.
 */
export async function fireCrossed(client: Prisma.TransactionClient, db: Database, budget: BudgetInPeriod, spent: string): Promise<BudgetAlert[]> {
  const { row, start, end } = budget;
  if (row.thresholds.length === 0 || !new Prisma.Decimal(spent).gte(row.thresholds[0].times(row.amount))) return [];
  // Claimed at once by a process with a callback: it delivers them after the commit.
  const claim = alertCallback(db) ? Prisma.sql`now()` : Prisma.sql`NULL::timestamptz`;
  const raised = await client.$queryRaw<RawAlert[]>`
    WITH raised AS (
      INSERT INTO ps_usage_budget_alerts (budget_id, period_start, period_end, threshold, amount, currency, spent, claimed_at)
      SELECT b.id, ${start}::timestamptz, ${end}::timestamptz, t, b.amount, b.currency, ${spent}::numeric, ${claim}
      FROM ps_usage_budgets b CROSS JOIN LATERAL unnest(b.thresholds) t
      WHERE b.id = ${row.id} AND ${spent}::numeric >= t * b.amount
      ON CONFLICT (budget_id, period_start, threshold) DO NOTHING
      RETURNING id, budget_id, period_start, period_end, threshold, amount, currency, spent, fired_at
    )
    SELECT id, budget_id, period_start, period_end, trim_scale(threshold)::text AS threshold, trim_scale(amount)::text AS amount,
           currency, trim_scale(spent)::text AS spent, fired_at,
           pg_notify(${BUDGET_ALERT_CHANNEL}, json_build_object(
             'id', id, 'budgetId', budget_id, 'budgetName', ${row.name}::text, 'periodStart', period_start, 'periodEnd', period_end,
             'threshold', trim_scale(threshold)::text, 'amount', trim_scale(amount)::text, 'currency', currency,
             'spent', trim_scale(spent)::text, 'firedAt', fired_at)::text)::text AS notified
    FROM raised ORDER BY threshold`;
  return raised.map((r) => ({
    id: r.id,
    budgetId: r.budget_id,
    budgetName: row.name,
    periodStart: r.period_start,
    periodEnd: r.period_end,
    threshold: r.threshold,
    amount: r.amount,
    currency: r.currency,
    spent: r.spent,
    firedAt: r.fired_at,
    deliveredAt: null,
  }));
}

/**
 * @internal Hands `alerts` (raised and claimed by this process, committed) to `db`'s callback,
 * one at a time, and marks each delivered. A callback that throws is reported to `onBudgetError`
 * and its alert released (claim cleared): this process's next threshold check, `checkBudgets`,
 * or the next Database opened with a callback delivers it again (if the release fails too, the
 * claim expires after {@link ALERT_CLAIM_MS}). Never throws: the usage was recorded.
 */
export async function deliverAlerts(db: Database, alerts: readonly BudgetAlert[]): Promise<void> {
  const callback = alertCallback(db);
  if (!callback || alerts.length === 0) return;
  for (const alert of alerts) {
    try {
      await callback(alert);
    } catch (error) {
      reportBudgetFailure(db, { error, alert });
      markUndelivered(db);
      await db.primary.prisma.psUsageBudgetAlert.updateMany({ where: { id: alert.id, deliveredAt: null }, data: { claimedAt: null } }).catch(() => undefined);
      continue;
    }
    try {
      await db.primary.prisma.psUsageBudgetAlert.updateMany({ where: { id: alert.id }, data: { deliveredAt: new Date() } });
    } catch (error) {
      // Delivered, not marked: delivered again once the claim expires (at least once).
      reportBudgetFailure(db, { error, alert });
    }
  }
}

/**
 * @internal Delivers the alerts nobody has delivered (raised without a callback, or claimed by a
 * process that did not finish) to `db`'s callback. `FOR UPDATE SKIP LOCKED` and the claim keep
 * two processes from delivering the same alert at once.
 */
export async function deliverPendingAlerts(db: Database): Promise<number> {
  if (!alertCallback(db)) return 0;
  const stale = new Date(Date.now() - ALERT_CLAIM_MS);
  const claimed = await db.primary.prisma.$queryRaw<{ id: number }[]>`
    UPDATE ps_usage_budget_alerts SET claimed_at = now()
    WHERE id IN (SELECT id FROM ps_usage_budget_alerts
                 WHERE delivered_at IS NULL AND (claimed_at IS NULL OR claimed_at < ${stale}::timestamptz)
                 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
    RETURNING id`;
  if (claimed.length === 0) return 0;
  const rows = await db.primary.prisma.psUsageBudgetAlert.findMany({
    where: { id: { in: claimed.map((c) => c.id) } },
    include: { budget: { select: { name: true } } },
    orderBy: { id: "asc" },
  });
  await deliverAlerts(db, rows.map((r) => toAlert(r, r.budget.name)));
  return rows.length;
}
