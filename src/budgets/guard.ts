/**
 * Budgets at record time: the hard-limit guard of a record call made with
 * `{ enforceBudgets: true }`, and the threshold check after an unguarded one.
 *
 * The guard runs in the recording transaction, after the insert: it locks the budgets whose scope
 * the event falls in (`SELECT … FOR UPDATE`, by id, so guarded writers of one budget take turns),
 * then reads each one's spending for the event's period, which includes the event itself and
 * every guarded write that committed before the lock was granted (each statement of a READ
 * COMMITTED transaction sees what committed before it started). Past a hard limit it throws
 * {@link BudgetExceededError} and the transaction, insert included, rolls back. So among guarded
 * writers, a period's spending never exceeds the amount, however many processes race.
 */
import type { Database } from "../db";
import { BudgetExceededError, UsageValidationError, type FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { deliverAlerts, deliverPendingAlerts, fireCrossed, type BudgetAlert } from "./alerts";
import { typedErrors, type BudgetRow } from "./define";
import { scheduleThresholdCheck } from "./thresholdChecks";
import { budgetsInPeriod, checkAt, spendingOf, statusOf, type BudgetStatusOptions } from "./status";

/** A usage event as the budgets see it. */
export interface BudgetEvent {
  readonly userId: number;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  /** Model usage: its model; external API usage: null. */
  readonly modelId: number | null;
  readonly externalApiId: number | null;
  readonly createdAt: Date;
}

/** The budgets (on `b`) whose scope holds `event` at its time; the agent's ancestors are `anc`. */
function matchesEvent(event: BudgetEvent): Prisma.Sql {
  return Prisma.sql`(b.user_id IS NULL OR b.user_id = ${event.userId})
    AND (b.agent_id IS NULL OR b.agent_id IN (SELECT id FROM anc))
    AND (b.connector_id IS NULL OR b.connector_id = ${event.connectorId}::int)
    AND (b.model_id IS NULL OR b.model_id = ${event.modelId}::int)
    AND (b.external_api_id IS NULL OR b.external_api_id = ${event.externalApiId}::int)
    AND (b.period <> 'range' OR (${event.createdAt}::timestamptz >= b.range_from AND ${event.createdAt}::timestamptz < b.range_to))`;
}

/** The event's agent and its ancestors (a budget on an agent counts its sub-agents' usage). */
function ancestorsCte(agentId: number | null): Prisma.Sql {
  return Prisma.sql`WITH RECURSIVE anc AS (
      SELECT a.id, a.parent_agent_id, ARRAY[a.id] AS path FROM ps_agents a WHERE a.id = ${agentId}::int
      UNION ALL
      SELECT p.id, p.parent_agent_id, anc.path || p.id FROM ps_agents p JOIN anc ON p.id = anc.parent_agent_id
      WHERE p.id <> ALL (anc.path)
    )`;
}

/** The currency the event is priced in at its time, or null when no price period is in force. */
async function eventCurrency(tx: Prisma.TransactionClient, event: BudgetEvent): Promise<string | null> {
  const rows =
    event.modelId !== null
      ? await tx.$queryRaw<{ currency: string }[]>`SELECT currency FROM ps_ai_model_price_periods
          WHERE model_id = ${event.modelId} AND effective_from <= ${event.createdAt}::timestamptz ORDER BY effective_from DESC LIMIT 1`
      : await tx.$queryRaw<{ currency: string }[]>`SELECT currency FROM ps_external_api_price_periods
          WHERE external_api_id = ${event.externalApiId} AND effective_from <= ${event.createdAt}::timestamptz ORDER BY effective_from DESC LIMIT 1`;
  return rows[0]?.currency ?? null;
}

/**
 * @internal The guard, in the recording transaction `tx` after the event's insert: refuses the
 * event (throws {@link BudgetExceededError}) when it takes a hard-limit budget past its amount or
 * cannot be priced in its currency, and raises the thresholds it crossed on every budget whose
 * scope holds it. Returns those alerts, to be delivered once the transaction has committed.
 */
export async function guardEvent(db: Database, tx: Prisma.TransactionClient, event: BudgetEvent): Promise<BudgetAlert[]> {
  const budgets = await budgetsInPeriod(tx, matchesEvent(event), event.createdAt, true, ancestorsCte(event.agentId));
  if (budgets.length === 0) return [];
  const hard = budgets.filter((b) => b.row.hardLimit);
  if (hard.length > 0) {
    const currency = await eventCurrency(tx, event);
    for (const b of hard) {
      if (currency === null) throw new BudgetExceededError(budgetOf(b.row), "unpriced", "0");
      if (currency !== b.row.currency) throw new BudgetExceededError(budgetOf(b.row), "currency", "0");
    }
  }
  // The cost query runs on a write session, which keeps the server's JIT setting; its misestimated
  // cost passes the JIT thresholds as the reports' do (see REPORT_SESSION_PIN in db.ts), and
  // compiling would take longer than the query: off for this transaction only.
  await tx.$executeRaw`SET LOCAL jit = off`;
  const fired: BudgetAlert[] = [];
  for (const b of budgets) {
    const { spent } = await spendingOf(tx, b.row, b.start, b.end);
    if (b.row.hardLimit && new Prisma.Decimal(spent).gt(b.row.amount)) throw new BudgetExceededError(budgetOf(b.row), "limit", spent);
    fired.push(...(await fireCrossed(tx, db, b, spent)));
  }
  return fired;
}

function budgetOf(row: BudgetRow) {
  return { id: row.id, name: row.name, amount: row.amount.toFixed(), currency: row.currency };
}

/**
 * @internal After a record call committed. A guarded call delivers the alerts its transaction
 * raised; an unguarded one marks its events for the background threshold check
 * (budgets/thresholdChecks) and returns at once. It never throws: the usage is recorded.
 */
export async function afterRecord(db: Database, events: readonly BudgetEvent[], fired?: readonly BudgetAlert[]): Promise<void> {
  if (fired !== undefined) await deliverAlerts(db, fired);
  else scheduleThresholdCheck(db, events);
}

/**
 * Checks every budget's current period (or the one holding `options.at`) and raises the
 * thresholds crossed, also by writes the package did not see (PolicySynth's, SQL), then delivers
 * undelivered alerts to the `onBudgetAlert` callback. Returns the alerts this call raised.
 *
 * @example
 * const raised = await checkBudgets(db); // e.g. from a cron job: `ps-usage budgets check`
 * for (const a of raised) console.log(a.budgetName, a.threshold, a.spent);
 */
export async function checkBudgets(db: Database, options?: BudgetStatusOptions): Promise<BudgetAlert[]> {
  const issues: FieldIssue[] = [];
  const at = checkAt(options, issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  return typedErrors(db, async () => {
    const raised: BudgetAlert[] = [];
    for (const b of await budgetsInPeriod(db.primary.prisma, Prisma.sql`TRUE`, at)) {
      const { fired } = await statusOf(db, b);
      raised.push(...fired);
      await deliverAlerts(db, fired);
    }
    await deliverPendingAlerts(db);
    return raised;
  });
}
