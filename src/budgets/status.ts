/**
 * What a budget's scope spent in a period: the cost report's exact total in the budget's
 * currency (rollups for whole 15-minute slots, the ledger for cut ones: src/costs.ts), and the
 * period's boundaries, cut in the budget's time zone by PostgreSQL (DST-correct).
 */
import type { Database } from "../db";
import { UsageValidationError, type FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { costTotalsOn, type CostReportFilter } from "../costs";
import { dateProblem, describeValue } from "../validation";
import { checkOptionNames, resolveTimeZone } from "../usageSql";
import { parseCurrency } from "../prices";
import { checkName, checkPeriod, checkScope, toBudget, typedErrors, type Budget, type BudgetPeriod, type BudgetRow, type BudgetScope } from "./define";
import { deliverAlerts, fireCrossed, toAlert, type BudgetAlert } from "./alerts";

/** The amount a scope spent in one period, and what the budget could not count. */
export interface Spending {
  /** Exact decimal string, in the budget's currency. */
  readonly spent: string;
  /** Usage rows in the scope and period with no price in force at their time (not counted). */
  readonly unpricedEvents: bigint;
  /** Cost of usage in the scope priced in other currencies (not counted, never converted). */
  readonly otherCurrencies: readonly { readonly currency: string; readonly cost: string }[];
}

/** Where a budget stands in the period that holds `at`. */
export interface BudgetStatus extends Spending {
  readonly budget: Budget;
  /** The period: a day, week or month in the budget's zone, or its fixed range (`periodEnd` exclusive). */
  readonly periodStart: Date;
  readonly periodEnd: Date;
  /** amount − spent, exact (negative when over). */
  readonly remaining: string;
  /** spent / amount, rounded to 6 decimal places (`"0.85"`: 85 %). */
  readonly fractionUsed: string;
  /** spent > amount. */
  readonly exceeded: boolean;
  /** Alerts raised in this period, by threshold. */
  readonly alerts: readonly BudgetAlert[];
}

/** A budget's period bounds for the instant `at` (a Date or a timestamptz expression; the row is `b`): as SQL select items. */
export function periodBoundsSql(at: Date | Prisma.Sql): Prisma.Sql {
  // Truncated and stepped in the zone's wall time, then turned back into instants: a day of 23
  // or 25 hours at a DST change, whatever the session's TimeZone.
  const instant = at instanceof Date ? Prisma.sql`${at}::timestamptz` : at;
  const local = Prisma.sql`date_trunc(b.period, ${instant} AT TIME ZONE b.time_zone)`;
  return Prisma.sql`
    CASE WHEN b.period = 'range' THEN b.range_from ELSE ${local} AT TIME ZONE b.time_zone END AS period_start,
    CASE WHEN b.period = 'range' THEN b.range_to ELSE (${local} + ('1 ' || b.period)::interval) AT TIME ZONE b.time_zone END AS period_end`;
}

/** A budget with the bounds of one of its periods. */
export interface BudgetInPeriod {
  readonly row: BudgetRow;
  readonly start: Date;
  readonly end: Date;
}

/** @internal The budgets `where` selects (on `b`), each with its period holding `at`, by id; `lock` takes them FOR UPDATE. */
export async function budgetsInPeriod(client: Prisma.TransactionClient, where: Prisma.Sql, at: Date, lock = false, prefix = Prisma.empty): Promise<BudgetInPeriod[]> {
  const bounds = await client.$queryRaw<{ id: number; period_start: Date; period_end: Date }[]>`
    ${prefix} SELECT b.id, ${periodBoundsSql(at)} FROM ps_usage_budgets b WHERE ${where} ORDER BY b.id ${lock ? Prisma.sql`FOR UPDATE OF b` : Prisma.empty}`;
  return withRows(client, bounds);
}

/**
 * @internal The distinct periods of each budget that hold one of its instants (budget id -> ms
 * since the epoch), in one query, by budget and period.
 */
export async function budgetsInPeriods(client: Prisma.TransactionClient, instants: ReadonlyMap<number, ReadonlySet<number>>): Promise<BudgetInPeriod[]> {
  const ids: number[] = [];
  const ats: string[] = [];
  for (const [id, set] of instants) {
    for (const t of set) {
      ids.push(id);
      ats.push(new Date(t).toISOString());
    }
  }
  if (ids.length === 0) return [];
  const bounds = await client.$queryRaw<{ id: number; period_start: Date; period_end: Date }[]>`
    SELECT DISTINCT b.id, ${periodBoundsSql(Prisma.sql`d.at`)}
    FROM unnest(${ids}::int[], ${ats}::timestamptz[]) AS d(id, at) JOIN ps_usage_budgets b ON b.id = d.id
    ORDER BY b.id, period_start`;
  return withRows(client, bounds);
}

async function withRows(client: Prisma.TransactionClient, bounds: readonly { id: number; period_start: Date; period_end: Date }[]): Promise<BudgetInPeriod[]> {
  if (bounds.length === 0) return [];
  const rows = await client.psUsageBudget.findMany({ where: { id: { in: bounds.map((b) => b.id) } } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return bounds.flatMap((b) => {
    const row = byId.get(b.id);
    return row ? [{ row, start: b.period_start, end: b.period_end }] : [];
  });
}

/** @internal What `row`'s scope spent in [start, end), read on `client` (a transaction sees its own rows). */
export async function spendingOf(client: Prisma.TransactionClient, row: BudgetRow, start: Date, end: Date): Promise<Spending> {
  const where: CostReportFilter = {
    from: start,
    to: end,
    ...(row.userId !== null ? { userId: row.userId } : {}),
    ...(row.connectorId !== null ? { connectorId: row.connectorId } : {}),
    ...(row.modelId !== null ? { modelId: row.modelId } : {}),
    ...(row.externalApiId !== null ? { externalApiId: row.externalApiId } : {}),
  };
  const report = await costTotalsOn(client, where, row.agentId ?? undefined);
  const mine = report.totals.find((t) => t.currency === row.currency);
  return {
    spent: mine?.cost ?? "0",
    unpricedEvents: report.unpricedEvents,
    otherCurrencies: report.totals.flatMap((t) => (t.currency !== null && t.currency !== row.currency ? [{ currency: t.currency, cost: t.cost ?? "0" }] : [])),
  };
}

/** @internal Reads the spending of `budget`, raises the alerts it crossed, and returns its status. */
export async function statusOf(db: Database, budget: BudgetInPeriod): Promise<{ status: BudgetStatus; fired: BudgetAlert[] }> {
  const client = db.primary.reportPrisma;
  const spending = await spendingOf(client, budget.row, budget.start, budget.end);
  const fired = await fireCrossed(db.primary.prisma, db, budget, spending.spent);
  const alerts = await db.primary.prisma.psUsageBudgetAlert.findMany({
    where: { budgetId: budget.row.id, periodStart: budget.start },
    orderBy: { threshold: "asc" },
  });
  const amount = budget.row.amount;
  const spent = new Prisma.Decimal(spending.spent);
  return {
    fired,
    status: {
      budget: toBudget(budget.row),
      periodStart: budget.start,
      periodEnd: budget.end,
      ...spending,
      remaining: amount.minus(spent).toFixed(),
      fractionUsed: spent.div(amount).toDecimalPlaces(6).toFixed(),
      exceeded: spent.gt(amount),
      alerts: alerts.map((a) => toAlert(a, budget.row.name)),
    },
  };
}

/** Options of {@link budgetStatus}. */
export interface BudgetStatusOptions {
  /** The instant whose period is reported. Default: now. */
  readonly at?: Date;
}

/** @internal Checks `at` and returns it (default now). */
export function checkAt(options: BudgetStatusOptions | undefined, issues: FieldIssue[]): Date {
  checkOptionNames(options, ["at"], issues);
  const at = options?.at;
  if (at === undefined) return new Date();
  const problem = dateProblem(at);
  if (problem) issues.push({ field: "at", reason: problem });
  return at;
}

/**
 * Which budget {@link budgetStatus} reports, by what it counts rather than by name: the budget set
 * on exactly this scope and period. `timeZone` (calendar periods) and `currency` narrow the match
 * when several budgets share a scope and period; left out, they match any.
 */
export interface BudgetSelector {
  /** As in {@link BudgetInput}: `userId`, at most one of `agentId` / `connectorId` / `modelId` / `externalApiId`; `{}` or left out: everything. */
  readonly scope?: BudgetScope;
  readonly period: BudgetPeriod | { readonly from: Date; readonly to: Date };
  readonly timeZone?: string;
  readonly currency?: string;
}

const SELECTOR_KEYS = ["scope", "period", "timeZone", "currency"];

/** The budgets (on `b`) a checked selector matches. */
async function selectorWhere(db: Database, selector: unknown, owner: number | null, issues: FieldIssue[]): Promise<Prisma.Sql> {
  if (typeof selector !== "object" || selector === null || Array.isArray(selector)) {
    issues.push({ field: "budget", reason: `must be a budget's name or { scope, period }, got ${describeValue(selector)}` });
    return Prisma.empty;
  }
  const sel = selector as Record<string, unknown>;
  checkOptionNames(sel, SELECTOR_KEYS, issues);
  const scope = checkScope(sel.scope, issues);
  if (owner !== null && scope.userId !== undefined && scope.userId !== owner) {
    issues.push({ field: "scope.userId", reason: `must be ${owner} or left out (this view is confined to user ${owner})` });
  }
  const { period, rangeFrom, rangeTo } = checkPeriod(sel.period, issues);
  const timeZone = sel.timeZone === undefined ? undefined : await resolveTimeZone(db, sel.timeZone, issues);
  const currency = sel.currency === undefined ? undefined : parseCurrency(sel.currency, "currency", issues);
  const userId = owner ?? scope.userId ?? null;
  const same = (column: string, value: number | undefined | null) => Prisma.sql`b.${Prisma.raw(column)} IS NOT DISTINCT FROM ${value ?? null}::int`;
  return Prisma.sql`${same("user_id", userId)} AND ${same("agent_id", scope.agentId)} AND ${same("connector_id", scope.connectorId)}
    AND ${same("model_id", scope.modelId)} AND ${same("external_api_id", scope.externalApiId)} AND b.period = ${period}
    ${period === "range" ? Prisma.sql`AND b.range_from = ${rangeFrom}::timestamptz AND b.range_to = ${rangeTo}::timestamptz` : Prisma.empty}
    ${timeZone !== undefined && period !== "range" ? Prisma.sql`AND b.time_zone = ${timeZone}` : Prisma.empty}
    ${currency !== undefined ? Prisma.sql`AND b.currency = ${currency}` : Prisma.empty}`;
}

/** @internal {@link budgetStatus}; with an `owner`, only that user's budgets exist. */
export async function budgetStatusAs(db: Database, budget: string | BudgetSelector, options: BudgetStatusOptions | undefined, owner: number | null): Promise<BudgetStatus> {
  const issues: FieldIssue[] = [];
  const byName = typeof budget === "string";
  const where = byName
    ? (checkName(budget, issues), Prisma.sql`b.name = ${budget} ${owner === null ? Prisma.empty : Prisma.sql`AND b.user_id = ${owner}`}`)
    : await typedErrors(db, () => selectorWhere(db, budget, owner, issues));
  const at = checkAt(options, issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  return typedErrors(db, async () => {
    const found = await budgetsInPeriod(db.primary.prisma, where, at);
    if (found.length === 0) {
      throw new UsageValidationError([byName ? { field: "name", reason: `no budget is named ${describeValue(budget)}` } : { field: "scope", reason: "no budget is set on this scope and period" }]);
    }
    if (found.length > 1) {
      const names = found.map((b) => JSON.stringify(b.row.name)).join(", ");
      throw new UsageValidationError([{ field: "scope", reason: `${found.length} budgets are set on this scope and period (${names}): give timeZone or currency, or a name` }]);
    }
    const { status, fired } = await statusOf(db, found[0]);
    await deliverAlerts(db, fired);
    return status;
  });
}

/**
 * Where a budget stands in the period holding `options.at` (default now): spent, remaining and
 * the fraction used, exact decimals read from the rollups and the ledger's edge, what it could not
 * count (unpriced usage, other currencies), and the alerts of the period. A threshold crossed by
 * writes the package did not see (PolicySynth's, SQL) is raised here.
 *
 * The budget is named by its name, or by its scope and period (a {@link BudgetSelector}: the
 * budget set on exactly that scope and period).
 *
 * Throws {@link UsageValidationError} for a bad or unknown name, a bad selector (each field
 * named: `scope.*`, `period`, `timeZone`, `currency`), a selector no budget or several budgets
 * match (`scope`), or a bad `at`.
 *
 * @example
 * const s = await budgetStatus(db, "research-agent-daily");
 * console.log(s.spent, s.remaining, s.fractionUsed, s.budget.currency); // "21.5" "3.5" "0.86" USD
 * const t = await budgetStatus(db, { scope: { agentId: 7 }, period: "day", timeZone: "Europe/Berlin" });
 */
export function budgetStatus(db: Database, budget: string | BudgetSelector, options?: BudgetStatusOptions): Promise<BudgetStatus> {
  return budgetStatusAs(db, budget, options, null);
}
