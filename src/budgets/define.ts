/**
 * Budgets: what they are (scope, period, amount, thresholds, hard limit), and setting, listing
 * and removing them (`ps_usage_budgets`). What was spent is in ./status, alerts in ./alerts,
 * the hard-limit guard in ./guard.
 */
import type { Database } from "../db";
import { UnknownReferenceError, UsageValidationError, type FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { parseCurrency, parseDecimal } from "../prices";
import { checkOptionNames, resolveTimeZone } from "../usageSql";
import { dateProblem, describeValue, idProblem } from "../validation";
import { forgetBudgets } from "./registry";
import { translateDatabaseError } from "../usageShared";
import { closedError, isClosing } from "../db/closing";
import { CONFIGURATION_TRANSACTION_MS, prismaWriteTransaction } from "../ledger/writeSession";

/**
 * @internal Runs a budget call with the package's typed errors: a missing table is
 * DatabaseNotMigratedError, a closed or lost database DatabaseConnectionError, and so on.
 */
export async function typedErrors<T>(db: Database, fn: () => Promise<T>): Promise<T> {
  if (isClosing(db)) throw closedError(db.target);
  try {
    return await fn();
  } catch (err) {
    throw await translateDatabaseError(db, err, async () => new UnknownReferenceError("a referenced table", null));
  }
}

/** A calendar period in the budget's time zone (a week starts on Monday). */
export type BudgetPeriod = "day" | "week" | "month";

/**
 * Whose usage a budget counts: `userId`'s (left out: every user's), narrowed to at most one of an
 * agent with all its sub-agents, a connector, a model or an external API. `{}` is everything.
 */
export interface BudgetScope {
  readonly userId?: number;
  readonly agentId?: number;
  readonly connectorId?: number;
  readonly modelId?: number;
  readonly externalApiId?: number;
}

/** What {@link setBudget} takes. */
export interface BudgetInput {
  /** Names the budget: setting a name again replaces that budget (its alerts stay). */
  readonly name: string;
  readonly scope?: BudgetScope;
  /** `"day"`, `"week"`, `"month"` (in `timeZone`), or a fixed range `{ from, to }` (`to` exclusive). */
  readonly period: BudgetPeriod | { readonly from: Date; readonly to: Date };
  /** IANA zone the calendar periods are cut in. Default `UTC`. */
  readonly timeZone?: string;
  /** The amount per period, a positive decimal (`"50"`, `12.5`). */
  readonly amount: string | number;
  /** Only usage priced in this currency counts (currencies are never converted). */
  readonly currency: string;
  /** Fractions of `amount` (0.5 = 50 %) that raise an alert once per period; each in (0, 10]. Default none. */
  readonly thresholds?: readonly (string | number)[];
  /** Record calls made with `{ enforceBudgets: true }` are refused past `amount`. Default false. */
  readonly hardLimit?: boolean;
}

/** A budget as stored. Amounts and thresholds are exact decimal strings. */
export interface Budget {
  readonly id: number;
  readonly name: string;
  readonly scope: BudgetScope;
  readonly period: BudgetPeriod | "range";
  readonly timeZone: string;
  /** The fixed range of a `"range"` budget, else null. */
  readonly from: Date | null;
  readonly to: Date | null;
  readonly amount: string;
  readonly currency: string;
  readonly thresholds: readonly string[];
  readonly hardLimit: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A `ps_usage_budgets` row as Prisma returns it (not exported from the package; other modules' declarations name it, so it stays in the .d.ts). */
export type BudgetRow = Prisma.PsUsageBudgetGetPayload<object>;

const SCOPE_KEYS = ["userId", "agentId", "connectorId", "modelId", "externalApiId"] as const;
const NARROWING = ["agentId", "connectorId", "modelId", "externalApiId"] as const;
const INPUT_KEYS = ["name", "scope", "period", "timeZone", "amount", "currency", "thresholds", "hardLimit"];
const PERIODS: readonly string[] = ["day", "week", "month"];

/** @internal A stored row as the plain {@link Budget}. */
export function toBudget(row: BudgetRow): Budget {
  const scope: Record<string, number> = {};
  for (const key of SCOPE_KEYS) if (row[key] !== null) scope[key] = row[key] as number;
  return {
    id: row.id,
    name: row.name,
    scope,
    period: row.period as Budget["period"],
    timeZone: row.timeZone,
    from: row.rangeFrom,
    to: row.rangeTo,
    amount: row.amount.toFixed(),
    currency: row.currency,
    thresholds: row.thresholds.map((t) => t.toFixed()),
    hardLimit: row.hardLimit,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/** @internal Checks a budget name (1-255 characters, not blank). */
export function checkName(name: unknown, issues: FieldIssue[], field = "name"): name is string {
  if (typeof name !== "string" || name.trim() === "" || name.length > 255) {
    issues.push({ field, reason: `must be a non-blank string of at most 255 characters, got ${describeValue(name)}` });
    return false;
  }
  return true;
}

/** @internal Checks a budget scope: known fields, ids, at most one narrowing. */
export function checkScope(scope: unknown, issues: FieldIssue[]): BudgetScope {
  if (scope === undefined) return {};
  if (typeof scope !== "object" || scope === null || Array.isArray(scope)) {
    issues.push({ field: "scope", reason: `must be an object such as { agentId: 7 }, got ${describeValue(scope)}` });
    return {};
  }
  const s = scope as Record<string, unknown>;
  for (const key of Object.keys(s)) {
    if (!(SCOPE_KEYS as readonly string[]).includes(key)) issues.push({ field: `scope.${key}`, reason: `is not a scope field (allowed: ${SCOPE_KEYS.join(", ")})` });
  }
  for (const key of SCOPE_KEYS) {
    if (s[key] === undefined) continue;
    const problem = idProblem(s[key]);
    if (problem) issues.push({ field: `scope.${key}`, reason: problem });
  }
  const narrowing = NARROWING.filter((k) => s[k] !== undefined);
  if (narrowing.length > 1) {
    issues.push({ field: `scope.${narrowing[1]}`, reason: `a budget narrows to one of ${NARROWING.join(", ")}; ${narrowing.join(" and ")} are given` });
  }
  return s as BudgetScope;
}

/** @internal Checks a budget's period: a calendar period's name, or a fixed range `{ from, to }`. */
export function checkPeriod(p: unknown, issues: FieldIssue[]): { period: string; rangeFrom: Date | null; rangeTo: Date | null } {
  let period = "";
  let rangeFrom: Date | null = null;
  let rangeTo: Date | null = null;
  if (typeof p === "string" && PERIODS.includes(p)) {
    period = p;
  } else if (typeof p === "object" && p !== null && !Array.isArray(p) && !(p instanceof Date)) {
    const range = p as { from?: unknown; to?: unknown };
    const fromProblem = dateProblem(range.from);
    const toProblem = dateProblem(range.to);
    if (fromProblem) issues.push({ field: "period.from", reason: fromProblem });
    if (toProblem) issues.push({ field: "period.to", reason: toProblem });
    if (!fromProblem && !toProblem) {
      rangeFrom = range.from as Date;
      rangeTo = range.to as Date;
      if (rangeTo.getTime() <= rangeFrom.getTime()) issues.push({ field: "period.to", reason: "must be after period.from" });
    }
    for (const key of Object.keys(range)) if (key !== "from" && key !== "to") issues.push({ field: `period.${key}`, reason: "is not a range field (allowed: from, to)" });
    period = "range";
  } else {
    issues.push({ field: "period", reason: `must be "day", "week", "month" or { from, to }, got ${describeValue(p)}` });
  }
  return { period, rangeFrom, rangeTo };
}

/** The checked input, ready to store. */
interface CheckedBudget {
  readonly data: Omit<Prisma.PsUsageBudgetUncheckedCreateInput, "name">;
  readonly name: string;
}

/** Validates a budget (every field; the time zone against the database's list). */
async function checkBudget(db: Database, input: BudgetInput, issues: FieldIssue[]): Promise<CheckedBudget | null> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    issues.push({ field: "budget", reason: `must be an object, got ${describeValue(input)}` });
    return null;
  }
  checkOptionNames(input, INPUT_KEYS, issues);
  const nameOk = checkName(input.name, issues);
  const scope = checkScope(input.scope, issues);
  const { period, rangeFrom, rangeTo } = checkPeriod(input.period, issues);
  const timeZone = await resolveTimeZone(db, input.timeZone, issues);
  const amount = parseDecimal(input.amount, "amount", issues);
  if (amount !== undefined && new Prisma.Decimal(amount).lte(0)) issues.push({ field: "amount", reason: "must be greater than 0" });
  const currency = parseCurrency(input.currency, "currency", issues);
  const thresholds: string[] = [];
  if (input.thresholds !== undefined) {
    if (!Array.isArray(input.thresholds)) {
      issues.push({ field: "thresholds", reason: `must be an array of fractions such as [0.5, 0.8, 1], got ${describeValue(input.thresholds)}` });
    } else {
      input.thresholds.forEach((t, i) => {
        const field = `thresholds[${i}]`;
        const text = parseDecimal(t, field, issues);
        if (text === undefined) return;
        const d = new Prisma.Decimal(text);
        if (d.lte(0) || d.gt(10)) issues.push({ field, reason: `must be a fraction in (0, 10] (0.8 = 80 %), got ${text}` });
        else if (d.decimalPlaces() > 4) issues.push({ field, reason: "has more than 4 decimal places" });
        else if (thresholds.some((x) => new Prisma.Decimal(x).eq(d))) issues.push({ field, reason: `${text} is given twice` });
        else thresholds.push(d.toFixed());
      });
    }
  }
  if (input.hardLimit !== undefined && typeof input.hardLimit !== "boolean") {
    issues.push({ field: "hardLimit", reason: `must be a boolean, got ${describeValue(input.hardLimit)}` });
  }
  if (issues.length > 0 || !nameOk || amount === undefined || currency === undefined || timeZone === undefined) return null;
  thresholds.sort((a, b) => new Prisma.Decimal(a).cmp(b));
  return {
    name: input.name,
    data: {
      userId: scope.userId ?? null,
      agentId: scope.agentId ?? null,
      connectorId: scope.connectorId ?? null,
      modelId: scope.modelId ?? null,
      externalApiId: scope.externalApiId ?? null,
      period,
      timeZone,
      rangeFrom,
      rangeTo,
      amount,
      currency,
      thresholds,
      hardLimit: input.hardLimit ?? false,
    },
  };
}

/** The scope's agent, connector, model or external API must exist. */
async function checkScopeExists(tx: Prisma.TransactionClient, scope: CheckedBudget["data"]): Promise<void> {
  const checks: [number | null | undefined, string][] = [
    [scope.agentId, "ps_agents"],
    [scope.connectorId, "ps_agent_connectors"],
    [scope.modelId, "ps_ai_models"],
    [scope.externalApiId, "ps_external_apis"],
  ];
  for (const [id, table] of checks) {
    if (id === null || id === undefined) continue;
    const found = await tx.$queryRaw<unknown[]>`SELECT 1 FROM ${Prisma.raw(table)} WHERE id = ${id}`;
    if (found.length === 0) throw new UnknownReferenceError(table, id);
  }
}

/**
 * @internal {@link setBudget}; with an `owner` (a `forUser` view) the budget's `scope.userId` is
 * the owner's, and a name another user's budget has is refused.
 */
export function setBudgetAs(db: Database, input: BudgetInput, owner: number | null): Promise<Budget> {
  return typedErrors(db, () => setChecked(db, input, owner));
}

async function setChecked(db: Database, input: BudgetInput, owner: number | null): Promise<Budget> {
  const issues: FieldIssue[] = [];
  const checked = await checkBudget(db, input, issues);
  if (owner !== null && checked !== null && checked.data.userId !== owner) {
    issues.push({ field: "scope.userId", reason: `must be ${owner} or left out (this view is confined to user ${owner})` });
  }
  if (checked === null || issues.length > 0) throw new UsageValidationError(issues);
  // Waits to start as long as a usage write does (the Database's bound), not Prisma's two seconds.
  const row = await prismaWriteTransaction(
    db,
    async (tx) => {
      await checkScopeExists(tx, checked.data);
      const existing = await tx.psUsageBudget.findUnique({ where: { name: checked.name } });
      if (owner !== null && existing !== null && existing.userId !== owner) {
        throw new UsageValidationError([{ field: "name", reason: "is the name of a budget of another user" }]);
      }
      return tx.psUsageBudget.upsert({
        where: { name: checked.name },
        create: { name: checked.name, ...checked.data },
        update: checked.data,
      });
    },
    CONFIGURATION_TRANSACTION_MS,
  );
  forgetBudgets(db);
  return toBudget(row);
}

/**
 * Creates the budget `input.name`, or replaces it: scope, period (a calendar day, week or month
 * in `timeZone`, or a fixed range), amount and currency, alert thresholds and whether it is a
 * hard limit. The scope's agent, connector, model or external API must exist.
 *
 * Throws {@link UsageValidationError} naming every bad field (name, scope, period, timeZone,
 * amount, currency, thresholds, hardLimit) and {@link UnknownReferenceError} for a scope id that
 * does not exist; either way nothing is written.
 *
 * @example
 * await setBudget(db, { name: "research-agent-daily", scope: { agentId: 7 }, period: "day", timeZone: "Europe/Berlin",
 *   amount: "25", currency: "USD", thresholds: [0.5, 0.8, 1], hardLimit: true });
 */
export function setBudget(db: Database, input: BudgetInput): Promise<Budget> {
  return setBudgetAs(db, input, null);
}

/** @internal {@link listBudgets}, only `owner`'s budgets when given. */
export function listBudgetsAs(db: Database, owner: number | null): Promise<Budget[]> {
  return typedErrors(db, async () => {
    const rows = await db.prisma.psUsageBudget.findMany({ where: owner === null ? {} : { userId: owner }, orderBy: { name: "asc" } });
    return rows.map(toBudget);
  });
}

/**
 * Every budget, by name.
 *
 * @example
 * for (const b of await listBudgets(db)) console.log(b.name, b.period, b.amount, b.currency, b.thresholds);
 */
export function listBudgets(db: Database): Promise<Budget[]> {
  return listBudgetsAs(db, null);
}

/** @internal {@link removeBudget}, only `owner`'s budget when given. */
export async function removeBudgetAs(db: Database, name: string, owner: number | null): Promise<boolean> {
  const issues: FieldIssue[] = [];
  if (!checkName(name, issues)) throw new UsageValidationError(issues);
  const { count } = await typedErrors(db, () => db.prisma.psUsageBudget.deleteMany({ where: owner === null ? { name } : { name, userId: owner } }));
  forgetBudgets(db);
  return count > 0;
}

/**
 * Removes the budget `name` and its alerts; false when there was none.
 *
 * @example
 * await removeBudget(db, "research-agent-daily"); // true
 */
export function removeBudget(db: Database, name: string): Promise<boolean> {
  return removeBudgetAs(db, name, null);
}
