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
import { budgetsInPeriod, budgetsInPeriods, checkAt, spendingOf, statusOf, type BudgetStatusOptions } from "./status";

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

/** The agents of `events` with their ancestors (a budget on an agent counts its sub-agents' usage): agent -> itself and its ancestors. */
async function ancestorsOf(tx: Prisma.TransactionClient, events: readonly BudgetEvent[]): Promise<Map<number, Set<number>>> {
  const agents = [...new Set(events.flatMap((e) => (e.agentId === null ? [] : [e.agentId])))];
  const result = new Map<number, Set<number>>();
  if (agents.length === 0) return result;
  const rows = await tx.$queryRaw<{ agent: number; id: number }[]>`WITH RECURSIVE anc AS (
      SELECT a.id AS agent, a.id, a.parent_agent_id, ARRAY[a.id] AS path FROM ps_agents a WHERE a.id = ANY(${`{${agents.join(",")}}`}::int[])
      UNION ALL
      SELECT anc.agent, p.id, p.parent_agent_id, anc.path || p.id FROM ps_agents p JOIN anc ON p.id = anc.parent_agent_id
      WHERE p.id <> ALL (anc.path)
    ) SELECT agent, id FROM anc`;
  for (const r of rows) {
    let set = result.get(r.agent);
    if (set === undefined) result.set(r.agent, (set = new Set()));
    set.add(r.id);
  }
  return result;
}

/** Does `row`'s scope hold `event` (its agent's ancestors in `ancestors`)? */
function holds(row: BudgetRow, event: BudgetEvent, ancestors: ReadonlyMap<number, ReadonlySet<number>>): boolean {
  return (
    (row.userId === null || row.userId === event.userId) &&
    (row.agentId === null || (event.agentId !== null && (ancestors.get(event.agentId)?.has(row.agentId) ?? false))) &&
    (row.connectorId === null || row.connectorId === event.connectorId) &&
    (row.modelId === null || row.modelId === event.modelId) &&
    (row.externalApiId === null || row.externalApiId === event.externalApiId) &&
    (row.period !== "range" || (event.createdAt >= row.rangeFrom! && event.createdAt < row.rangeTo!))
  );
}

const intLiteral = (values: readonly (number | null)[]) => `{${values.map((v) => (v === null ? "NULL" : v)).join(",")}}`;

/** The currency each of `events` is priced in at its time (null: no price period in force), one query for all. */
async function eventCurrencies(tx: Prisma.TransactionClient, events: readonly BudgetEvent[]): Promise<(string | null)[]> {
  const distinct = new Map<string, number>();
  const slot = events.map((e) => {
    const key = `${e.modelId}|${e.externalApiId}|${e.createdAt.getTime()}`;
    let i = distinct.get(key);
    if (i === undefined) distinct.set(key, (i = distinct.size));
    return i;
  });
  const firsts: BudgetEvent[] = [];
  events.forEach((e, n) => {
    if (firsts[slot[n]] === undefined) firsts[slot[n]] = e;
  });
  const rows = await tx.$queryRaw<{ i: bigint | number; currency: string | null }[]>`
    SELECT d.i, CASE WHEN d.model_id IS NOT NULL
      THEN (SELECT currency FROM ps_ai_model_price_periods WHERE model_id = d.model_id AND effective_from <= d.at ORDER BY effective_from DESC LIMIT 1)
      ELSE (SELECT currency FROM ps_external_api_price_periods WHERE external_api_id = d.api_id AND effective_from <= d.at ORDER BY effective_from DESC LIMIT 1) END AS currency
    FROM unnest(${intLiteral(firsts.map((e) => e.modelId))}::int[], ${intLiteral(firsts.map((e) => e.externalApiId))}::int[],
                ${`{${firsts.map((e) => e.createdAt.toISOString()).join(",")}}`}::timestamptz[]) WITH ORDINALITY AS d(model_id, api_id, at, i)`;
  const byIndex = new Array<string | null>(firsts.length).fill(null);
  for (const r of rows) byIndex[Number(r.i) - 1] = r.currency;
  return slot.map((i) => byIndex[i]);
}

/**
 * @internal The guard, in the recording transaction `tx` after the events' insert (one record's
 * event, or a whole batch's): refuses them all (throws {@link BudgetExceededError}) when they take
 * a hard-limit budget past its amount in any period, or when one of them in a hard-limit budget's
 * scope cannot be priced in its currency; and raises the thresholds crossed on every budget whose
 * scope holds one of them. Returns those alerts, to be delivered once the transaction has committed.
 *
 * The budgets that hold an event are locked (`FOR UPDATE`, by id) before their spending is read,
 * so guarded writers of one budget take turns.
 */
export async function guardEvents(db: Database, tx: Prisma.TransactionClient, events: readonly BudgetEvent[]): Promise<BudgetAlert[]> {
  if (events.length === 0) return [];
  // Budgets of every user, and of the events' users (not the other users' budgets: there may be many).
  const users = [...new Set(events.map((e) => e.userId))];
  const all = await tx.psUsageBudget.findMany({ where: { OR: [{ userId: null }, { userId: { in: users } }] }, orderBy: { id: "asc" } });
  if (all.length === 0) return [];
  const ancestors = all.some((b) => b.agentId !== null) ? await ancestorsOf(tx, events) : new Map<number, Set<number>>();
  // Budget id -> the instants of its events (each picks a period); for hard limits, the events.
  const instants = new Map<number, Set<number>>();
  const heldByHard = new Set<number>();
  const hardOf = new Map<number, number[]>();
  for (const b of all) {
    for (let i = 0; i < events.length; i++) {
      if (!holds(b, events[i], ancestors)) continue;
      let at = instants.get(b.id);
      if (at === undefined) instants.set(b.id, (at = new Set()));
      at.add(events[i].createdAt.getTime());
      if (b.hardLimit) {
        heldByHard.add(i);
        let list = hardOf.get(b.id);
        if (list === undefined) hardOf.set(b.id, (list = []));
        list.push(i);
      }
    }
  }
  if (instants.size === 0) return [];
  // Guarded writers of a budget take turns from here to their commit.
  await tx.$queryRaw`SELECT id FROM ps_usage_budgets WHERE id = ANY(${`{${[...instants.keys()].join(",")}}`}::int[]) ORDER BY id FOR UPDATE`;
  const budgets = await budgetsInPeriods(tx, instants);
  if (hardOf.size > 0) {
    const held = [...heldByHard];
    const currencies = await eventCurrencies(tx, held.map((i) => events[i]));
    const currencyOf = new Map(held.map((i, n) => [i, currencies[n]]));
    for (const b of budgets) {
      for (const i of hardOf.get(b.row.id) ?? []) {
        const currency = currencyOf.get(i) ?? null;
        if (currency === null) throw new BudgetExceededError(budgetOf(b.row), "unpriced", "0");
        if (currency !== b.row.currency) throw new BudgetExceededError(budgetOf(b.row), "currency", "0");
      }
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

/** @internal {@link guardEvents} for one record's event. */
export function guardEvent(db: Database, tx: Prisma.TransactionClient, event: BudgetEvent): Promise<BudgetAlert[]> {
  return guardEvents(db, tx, [event]);
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
