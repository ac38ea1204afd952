/**
 * `ps-usage budgets list|set|remove|status|check`: the budget API on the command line, with
 * table, JSON and CSV output as the cost report has.
 */
import Table from "cli-table3";
import { InvalidArgumentError, Option, type Command } from "commander";
import type { Database } from "../db";
import { listBudgets, removeBudget, setBudget, type Budget, type BudgetInput, type BudgetPeriod, type BudgetScope } from "../budgets/define";
import { budgetStatus, type BudgetSelector, type BudgetStatus } from "../budgets/status";
import { checkBudgets } from "../budgets/guard";
import type { BudgetAlert } from "../budgets/alerts";
import { toInstant, type IsoDateTime } from "./dates";

/** What the budget commands borrow from the main program. */
export interface BudgetCommandContext {
  dbOption(): Option;
  withDb<T>(opts: { db?: string }, fn: (db: Database) => Promise<T>): Promise<T>;
  /** Runs `fn`, naming flags instead of API fields in a validation error (a usage error, exit 2). */
  withFlagNames<T>(flags: readonly (readonly [string, string])[], fn: () => Promise<T>): Promise<T>;
  checkTimeZone(zone: string): void;
  /** The argument parser of a date flag (strict ISO 8601). */
  parseDate(flag: string): (value: string) => IsoDateTime;
  usageError(message: string): Error;
}

const SET_FLAGS = [
  ["scope.userId", "--user"],
  ["scope.agentId", "--agent"],
  ["scope.connectorId", "--connector"],
  ["scope.modelId", "--model"],
  ["scope.externalApiId", "--api"],
  ["period.from", "--from"],
  ["period.to", "--to"],
  ["period", "--period"],
  ["timeZone", "--tz"],
  ["amount", "--amount"],
  ["currency", "--currency"],
  ["thresholds", "--thresholds"],
  ["name", "<name>"],
] as const;

/**
 * The API fields `budgets status` names by flag. Not `scope` or `period` as such: a selector that
 * matches no budget is an issue on `scope` whose reason says "scope and period" in words.
 */
const STATUS_FLAGS = [
  ...SET_FLAGS.filter(([field]) => field.startsWith("scope.") || field.startsWith("period.") || ["timeZone", "currency"].includes(field)),
  ["at", "--at"],
] as const;
const NAME_FLAGS = [
  ["name", "<name>"],
  ["at", "--at"],
] as const;

function id(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${flag} must be a positive integer id.`);
    return Number(value);
  };
}

/** The scope and period flags, as commander parses them (`budgets set` and `budgets status`). */
interface ScopeAndPeriodFlags {
  period?: BudgetPeriod;
  from?: IsoDateTime;
  to?: IsoDateTime;
  user?: number;
  agent?: number;
  connector?: number;
  model?: number;
  api?: number;
}

const SCOPE_FLAGS = [
  ["userId", "user"],
  ["agentId", "agent"],
  ["connectorId", "connector"],
  ["modelId", "model"],
  ["externalApiId", "api"],
] as const;

/** Adds the scope and period flags (one definition for `set` and `status`, so they read alike). */
function scopeAndPeriodOptions(cmd: Command, ctx: BudgetCommandContext, periodHelp: string): Command {
  return cmd
    .addOption(new Option("--period <period>", periodHelp).choices(["day", "week", "month"]))
    .option("--from <date>", "a fixed range from this date or instant (ISO 8601; without an offset in --tz)", ctx.parseDate("--from"))
    .option("--to <date>", "... up to this one, exclusive", ctx.parseDate("--to"))
    .option("--user <id>", "only this user's usage", id("--user"))
    .option("--agent <id>", "an agent and all its sub-agents", id("--agent"))
    .option("--connector <id>", "a connector", id("--connector"))
    .option("--model <id>", "a model (model usage only)", id("--model"))
    .option("--api <id>", "an external API (external API usage only)", id("--api"));
}

function hasScopeOrPeriod(opts: ScopeAndPeriodFlags): boolean {
  return opts.period !== undefined || opts.from !== undefined || opts.to !== undefined || SCOPE_FLAGS.some(([, flag]) => opts[flag] !== undefined);
}

/** The scope the flags give (`{}`: everything). */
function scopeOf(opts: ScopeAndPeriodFlags): BudgetScope {
  return Object.fromEntries(SCOPE_FLAGS.flatMap(([field, flag]) => (opts[flag] !== undefined ? [[field, opts[flag]]] : [])));
}

/** `--period`, or `--from`/`--to` as instants (wall times in `tz`); exactly one of the two forms. */
function periodOf(opts: ScopeAndPeriodFlags, tz: string, command: string, ctx: BudgetCommandContext): BudgetInput["period"] {
  if ((opts.period === undefined) === (opts.from === undefined && opts.to === undefined)) {
    throw ctx.usageError(`${command}: give --period day|week|month, or --from and --to (not both).`);
  }
  if (opts.period !== undefined) return opts.period;
  // One of the two left out is the API's to name (as --from / --to).
  return {
    from: opts.from === undefined ? (undefined as never) : toInstant(opts.from, tz),
    to: opts.to === undefined ? (undefined as never) : toInstant(opts.to, tz),
  };
}

/** The scope in words: "user 3, agent 7 and sub-agents", "everything". */
export function describeScope(b: Budget): string {
  const s = b.scope;
  const parts = [
    s.userId !== undefined ? `user ${s.userId}` : null,
    s.agentId !== undefined ? `agent ${s.agentId} and sub-agents` : null,
    s.connectorId !== undefined ? `connector ${s.connectorId}` : null,
    s.modelId !== undefined ? `model ${s.modelId}` : null,
    s.externalApiId !== undefined ? `external API ${s.externalApiId}` : null,
  ].filter((p): p is string => p !== null);
  return parts.length ? parts.join(", ") : "everything";
}

function describePeriod(b: Budget): string {
  return b.period === "range" ? `${b.from!.toISOString()} to ${b.to!.toISOString()}` : `${b.period} (${b.timeZone})`;
}

/** JSON with bigints as strings (exact). */
function json(value: unknown): string {
  return `${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`;
}

function csvCell(value: unknown): string {
  const text = value === null || value === undefined ? "" : value instanceof Date ? value.toISOString() : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csv(header: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [header, ...rows].map((r) => r.map(csvCell).join(",")).join("\n") + "\n";
}

/** A table styled as the cost report's (colour only on a terminal). */
function newTable(head: string[], numericFrom: number): Table.Table {
  return new Table({
    head,
    style: { head: process.stdout.isTTY ? ["cyan"] : [], border: [], compact: true },
    colAligns: head.map((_, i) => (i >= numericFrom ? "right" : "left")),
  });
}

/** Budgets as a table, JSON or CSV. */
export function formatBudgets(budgets: readonly Budget[], format: "table" | "json" | "csv"): string {
  if (format === "json") return json(budgets);
  const rows = budgets.map((b) => [b.name, describeScope(b), describePeriod(b), b.amount, b.currency, b.thresholds.join(" "), b.hardLimit ? "yes" : "no"]);
  const header = ["Name", "Scope", "Period", "Amount", "Currency", "Thresholds", "Hard limit"];
  if (format === "csv") return csv(header, rows);
  if (budgets.length === 0) return "No budgets. Set one with `ps-usage budgets set <name> --amount … --currency … --period …`.\n";
  const table = newTable(header, 3);
  table.push(...rows);
  return `${table.toString()}\n`;
}

/** Percent of the amount used, for people: "86.0 %". */
function percent(fraction: string): string {
  return `${(Number(fraction) * 100).toFixed(1)} %`;
}

/** Budget statuses as a table, JSON or CSV. */
export function formatStatuses(statuses: readonly BudgetStatus[], format: "table" | "json" | "csv"): string {
  if (format === "json") return json(statuses);
  const header = ["Name", "Scope", "Period start", "Period end", "Spent", "Amount", "Remaining", "Used", "Currency", "Alerts", "Unpriced events", "Other currencies"];
  const rows = statuses.map((s) => [
    s.budget.name,
    describeScope(s.budget),
    s.periodStart,
    s.periodEnd,
    s.spent,
    s.budget.amount,
    s.remaining,
    format === "csv" ? s.fractionUsed : `${percent(s.fractionUsed)}${s.exceeded ? " OVER" : ""}`,
    s.budget.currency,
    s.alerts.map((a) => a.threshold).join(" "),
    s.unpricedEvents.toString(),
    s.otherCurrencies.map((o) => `${o.cost} ${o.currency}`).join(" "),
  ]);
  if (format === "csv") return csv(header, rows);
  if (statuses.length === 0) return "No budgets.\n";
  const table = newTable(header.slice(0, 10), 4);
  table.push(...rows.map((r) => r.slice(0, 10).map((c) => (c instanceof Date ? c.toISOString().replace(".000Z", "Z") : String(c)))));
  const notes = statuses.flatMap((s) =>
    s.unpricedEvents > 0n || s.otherCurrencies.length > 0
      ? [`  ${s.budget.name}: not counted: ${s.unpricedEvents} unpriced event(s)${s.otherCurrencies.map((o) => `, ${o.cost} ${o.currency}`).join("")}`]
      : [],
  );
  return `${table.toString()}\n${notes.length ? `Not counted (no price, or another currency):\n${notes.join("\n")}\n` : ""}`;
}

function formatAlerts(alerts: readonly BudgetAlert[], format: "table" | "json" | "csv"): string {
  if (format === "json") return json(alerts);
  const header = ["Budget", "Threshold", "Spent", "Amount", "Currency", "Period start"];
  const rows = alerts.map((a) => [a.budgetName, a.threshold, a.spent, a.amount, a.currency, a.periodStart]);
  if (format === "csv") return csv(header, rows);
  return alerts.length === 0 ? "No threshold newly crossed.\n" : rows.map((r) => `Crossed: ${r[0]} at ${Number(r[1]) * 100} % (${r[2]} of ${r[3]} ${r[4]})`).join("\n") + "\n";
}

type Format = { json?: boolean; csv?: boolean };
const formatOf = (f: Format) => (f.json ? "json" : f.csv ? "csv" : "table");
const formatOptions = (cmd: Command) =>
  cmd.addOption(new Option("--json", "JSON output (exact amounts)").conflicts("csv")).option("--csv", "CSV output (exact amounts)");

/** The subcommands of `budgets` (made with `program.command("budgets")`, so they inherit its settings). */
export function addBudgetCommands(budgets: Command, ctx: BudgetCommandContext): Command {
  budgets.description("budgets and spend alerts: list, set, remove, status, check");

  formatOptions(budgets.command("list").description("every budget").addOption(ctx.dbOption())).action(async (opts: { db?: string } & Format) => {
    await ctx.withDb(opts, async (db) => process.stdout.write(formatBudgets(await listBudgets(db), formatOf(opts))));
  });

  scopeAndPeriodOptions(
    budgets
      .command("set")
      .description("create or replace a budget (by name)")
      .argument("<name>", "the budget's name")
      .addOption(ctx.dbOption())
      .requiredOption("--amount <decimal>", "the amount per period, e.g. 25 or 12.50")
      .requiredOption("--currency <code>", "only usage priced in this currency counts, e.g. USD"),
    ctx,
    "a calendar period in --tz (or give --from and --to)",
  )
    .option("--tz <zone>", "IANA time zone the periods are cut in", "UTC")
    .option("--thresholds <fractions>", "alert at these fractions of the amount, comma-separated, e.g. 0.5,0.8,1")
    .option("--hard-limit", "refuse record calls made with enforceBudgets past the amount")
    .option("--json", "print the budget as JSON")
    .action(async (name: string, opts: ScopeAndPeriodFlags & Record<string, unknown> & { db?: string; tz: string }) => {
      ctx.checkTimeZone(opts.tz);
      const input: BudgetInput = {
        name,
        scope: scopeOf(opts),
        period: periodOf(opts, opts.tz, "budgets set", ctx),
        timeZone: opts.tz,
        amount: String(opts.amount),
        currency: String(opts.currency),
        ...(opts.thresholds !== undefined ? { thresholds: String(opts.thresholds).split(",").map((t) => t.trim()) } : {}),
        hardLimit: opts.hardLimit === true,
      };
      await ctx.withDb(opts, async (db) => {
        const b = await ctx.withFlagNames(SET_FLAGS, () => setBudget(db, input));
        process.stdout.write(opts.json ? json(b) : `Budget "${b.name}" (id ${b.id}): ${b.amount} ${b.currency} per ${describePeriod(b)} over ${describeScope(b)}.\n`);
      });
    });

  budgets
    .command("remove")
    .description("remove a budget and its alerts")
    .argument("<name>")
    .addOption(ctx.dbOption())
    .action(async (name: string, opts: { db?: string }) => {
      await ctx.withDb(opts, async (db) => {
        if (!(await removeBudget(db, name))) throw ctx.usageError(`budgets remove: no budget is named "${name}".`);
        process.stdout.write(`Removed budget "${name}".\n`);
      });
    });

  formatOptions(
    scopeAndPeriodOptions(
      budgets
        .command("status")
        .description("spent, remaining and the fraction used in the current period (raises alerts crossed meanwhile); by name, or by scope and period")
        .argument("[name]", "one budget (default: every budget, or the one the scope and period flags select)")
        .addOption(ctx.dbOption())
        .option("--at <date>", "the period holding this instant (ISO 8601, default now)", ctx.parseDate("--at")),
      ctx,
      "instead of a name: the budget set on this calendar period and the scope flags (none: everything; or give --from and --to)",
    )
      // No default: a --tz given with a scope and period also selects the budget's zone.
      .option("--tz <zone>", "IANA time zone of --at, --from and --to without an offset (default UTC); with --period, only a budget cut in this zone")
      .option("--currency <code>", "with --period or --from/--to: only a budget in this currency"),
  ).action(async (name: string | undefined, opts: ScopeAndPeriodFlags & { db?: string; at?: IsoDateTime; tz?: string; currency?: string } & Format) => {
    const tz = opts.tz ?? "UTC";
    ctx.checkTimeZone(tz);
    const at = opts.at && toInstant(opts.at, tz);
    const bySelector = hasScopeOrPeriod(opts) || opts.currency !== undefined;
    if (bySelector && name !== undefined) throw ctx.usageError("budgets status: give a budget's name, or its scope and period flags (not both).");
    const selector: BudgetSelector | undefined = bySelector
      ? {
          scope: scopeOf(opts),
          period: periodOf(opts, tz, "budgets status", ctx),
          ...(opts.tz !== undefined ? { timeZone: opts.tz } : {}),
          ...(opts.currency !== undefined ? { currency: opts.currency } : {}),
        }
      : undefined;
    await ctx.withDb(opts, async (db) => {
      const targets: (string | BudgetSelector)[] = selector ? [selector] : name !== undefined ? [name] : (await listBudgets(db)).map((b) => b.name);
      const statuses: BudgetStatus[] = [];
      for (const t of targets) statuses.push(await ctx.withFlagNames(typeof t === "string" ? NAME_FLAGS : STATUS_FLAGS, () => budgetStatus(db, t, { at })));
      process.stdout.write(formatStatuses(statuses, formatOf(opts)));
    });
  });

  formatOptions(
    budgets
      .command("check")
      .description("raise the thresholds crossed in every budget's current period, also by writes ps-usage did not see (for cron)")
      .addOption(ctx.dbOption()),
  ).action(async (opts: { db?: string } & Format) => {
    await ctx.withDb(opts, async (db) => process.stdout.write(formatAlerts(await checkBudgets(db), formatOf(opts))));
  });

  return budgets;
}
