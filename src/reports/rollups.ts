/**
 * The usage a sum or cost report reads, as one relation with the ledger's columns plus
 * `event_count` (how many ledger rows a row stands for): the rollups
 * (`ps_model_usage_rollup`, `ps_external_api_usage_rollup`, 15-minute slots kept exact by the
 * triggers of the usage_rollups migration) for every whole slot in the range, and the ledger only
 * where a rollup slot cannot answer:
 *
 * - the edges of the range: `from` and `to` inside a slot (the ledger rows of the part in range);
 * - a slot a time bucket cuts (its first and last instants have different bucket keys: a zone
 *   whose offset is not a multiple of 15 minutes, such as local mean time before 1972);
 * - for cost reports, a slot in which a price period starts (its rows are priced on both sides).
 *
 * A rollup row stands at its slot's start: every row it sums falls in the same bucket (the slot is
 * not cut) and the same price period (none starts inside it), so grouping and pricing it as one
 * row at its slot's start gives what the ledger rows would. Results are the same as reading the
 * ledger alone (`rollups: false`), which tests/rollups.test.ts checks on random data.
 *
 * Two narrower levels (the usage_rollup_levels migration, same triggers) keep reports that do not
 * need every key from reading a row per slot and key, which with many agents is about a row per
 * event (bench/SCALE.md):
 *
 * - per 15-minute slot and model only (`ps_model_usage_model_rollup`), for model usage reports
 *   that neither filter nor group by user, agent or connector; the same slot rules as above;
 * - per UTC day, agent and model or API (`…_agent_day_rollup`), for reports by agent or agent tree
 *   that neither filter nor group by user or connector: a day is read from it when the range holds
 *   all of it and no bucket cuts it; the other days of the range (and the parts of the range's
 *   first and last day) are read from the 15-minute rollups by the rules above (one index range per
 *   cut day and model);
 * - per UTC calendar month, agent and model or API (`…_agent_month_rollup`, the usage_rollup_months
 *   migration), for the same reports: a month is read from it when the range holds all of it and no
 *   bucket cuts it; the other days (the range's part months, and every day of a month a bucket cuts)
 *   go to the daily level and its rules. Over 90 days with 1,000 agents that is one row per month,
 *   agent and model instead of one per day;
 * - per user, UTC day and model or API (`…_user_day_rollup`), and per connector, UTC day and model
 *   or API (`…_connector_day_rollup`, connector 0 for none; the usage_rollup_user_connector
 *   migration), for reports and budgets that filter or group by the user (or the connector) and by
 *   neither of the other two: the daily rules above, by the same code (no month level: a user's
 *   month is 30 rows per model). Their keys start with the user (connector), so one user's days
 *   are one index range however many users there are. Without them such a report read the
 *   full-key 15-minute rollup, about a row per event with many agents (the busiest user's month:
 *   1.9 s at 30M rows, bench/BUDGETS.md).
 *
 * A cost report prices a day or month in which price periods of its model start as a whole at one
 * instant plus a correction read at the next finer level for the shorter side only (see
 * pricedUnitsCte): the finer rows of that side are read once at their own instants and once negated
 * at that instant, so the side's rows are priced by their own periods and taken out of the whole.
 */
import type { FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { MODEL_USAGE_ALL_COUNTERS, type TimeBucket } from "../types";
import { USAGE_ITEMS_AS_LEDGER, type ModelUsageSource } from "./usageItems";
import { isUtcZone, timeBucketKeySql, usageFilterConditions, whereSql, type AnyUsageFilter, type UsageTable } from "../usageSql";

/** The rollup slot, in milliseconds (15 minutes). */
export const ROLLUP_SLOT_MS = 15 * 60 * 1000;
/** The daily level's unit (a UTC day), in milliseconds. */
const DAY_MS = 86_400_000;

/** The UTC month holding `t` (its first instant). */
function floorMonth(t: Date): Date {
  return new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), 1));
}
/** The first UTC month start at or after `t`. */
function ceilMonth(t: Date): Date {
  const m = floorMonth(t);
  return m.getTime() === t.getTime() ? m : new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth() + 1, 1));
}

const SLOT = Prisma.raw("interval '15 minutes'");

/** The ledger's columns each relation row has, by table (then `event_count`). */
const COLUMNS: Readonly<Record<UsageTable, readonly string[]>> = {
  modelUsage: [
    "created_at",
    "user_id",
    "model_id",
    "agent_id",
    "connector_id",
    ...MODEL_USAGE_ALL_COUNTERS.map(([, column]) => column),
    "service_tier",
    "regional_processing",
  ],
  externalApiUsage: ["created_at", "user_id", "external_api_id", "agent_id", "connector_id", "call_count"],
};

const LEDGER = { modelUsage: "ps_model_usage", externalApiUsage: "ps_external_api_usage" } as const;
const ROLLUP = { modelUsage: "ps_model_usage_rollup", externalApiUsage: "ps_external_api_usage_rollup" } as const;
/** The narrower levels (see the top of this file); external API usage has no per-model one. */
const MODEL_LEVEL = { modelUsage: "ps_model_usage_model_rollup", externalApiUsage: null } as const;
const AGENT_DAY_LEVEL = { modelUsage: "ps_model_usage_agent_day_rollup", externalApiUsage: "ps_external_api_usage_agent_day_rollup" } as const;
const AGENT_MONTH_LEVEL = { modelUsage: "ps_model_usage_agent_month_rollup", externalApiUsage: "ps_external_api_usage_agent_month_rollup" } as const;
/** The daily levels, each keeping one of the user, agent and connector columns. */
const DAY_LEVELS = {
  agentDay: AGENT_DAY_LEVEL,
  userDay: { modelUsage: "ps_model_usage_user_day_rollup", externalApiUsage: "ps_external_api_usage_user_day_rollup" },
  connectorDay: { modelUsage: "ps_model_usage_connector_day_rollup", externalApiUsage: "ps_external_api_usage_connector_day_rollup" },
} as const;
type DayLevel = keyof typeof DAY_LEVELS;
/** The key columns each narrower level lacks (read back as NULL: the report does not use them). */
const LACKS = {
  model: ["user_id", "agent_id", "connector_id"],
  agentDay: ["user_id", "connector_id"],
  agentMonth: ["user_id", "connector_id"],
  userDay: ["agent_id", "connector_id"],
  connectorDay: ["user_id", "agent_id"],
  full: [],
} as const;

type Level = keyof typeof LACKS;
const PERIODS = {
  modelUsage: { table: "ps_ai_model_price_periods", key: "model_id" },
  externalApiUsage: { table: "ps_external_api_price_periods", key: "external_api_id" },
} as const;

/** A rollup column read back as the ledger's value (see the rollup models in prisma/schema.prisma). */
function rollupColumn(column: string, level: Level = "full"): string {
  if ((LACKS[level] as readonly string[]).includes(column)) return `NULL::integer AS ${column}`;
  switch (column) {
    case "created_at":
      return `r.${level === "agentMonth" ? "month_start" : level === "model" || level === "full" ? "slot_start" : "day_start"} AS created_at`;
    case "agent_id":
    case "connector_id":
      return `NULLIF(r.${column}, 0) AS ${column}`;
    case "service_tier":
    case "regional_processing":
      return `CASE WHEN r.${column} = '' THEN NULL ELSE substr(r.${column}, 2) END AS ${column}`;
    default:
      return `r.${column}`;
  }
}

/**
 * @internal The 15-minute slot holding `column` (SQL text; the column name comes from code), as
 * the triggers of the usage_rollups migration compute it: reports, prune and rebuildRollups must
 * agree with them slot for slot.
 */
export function slotOfSql(column: string): string {
  return `date_bin('15 minutes', ${column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')`;
}

/** @internal The UTC day holding `column` (SQL text), as the triggers of the usage_rollup_levels migration compute it. */
export function dayOfSql(column: string): string {
  return `date_bin('1 day', ${column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')`;
}

/** @internal The UTC calendar month holding `column` (SQL text), as the triggers of the usage_rollup_months migration compute it. */
export function monthOfSql(column: string): string {
  return `date_trunc('month', ${column}, 'UTC')`;
}

/**
 * @internal The (model or API id, slot) pairs in which a price period starts inside the slot (SQL
 * text): reports read those slots from the ledger, and prune keeps their rows. (Days and months
 * in which periods start are priced whole plus a correction instead: see pricedUnitsCte.)
 */
export function pricedCutSlotsSql(table: UsageTable): string {
  const { key, table: periods } = PERIODS[table];
  return `SELECT ${key}, ${slotOfSql("effective_from")} FROM ${periods} WHERE effective_from <> ${slotOfSql("effective_from")}`;
}

/** What a report reads: the filter, and what must be whole in a rollup slot. */
export interface UsageRelationPlan {
  readonly table: UsageTable;
  /** The usage filter (ids, `from`, `to`), already validated. */
  readonly where?: AnyUsageFilter;
  /** Extra conditions on the ledger's column names, unqualified (e.g. `agent_id = ANY(…)`). */
  readonly conditions?: readonly Prisma.Sql[];
  /** The time bucket the report groups by, and its zone: a slot it cuts is read from the ledger. */
  readonly bucket?: { readonly bucket: TimeBucket; readonly timeZone: string };
  /** The report prices the rows: a slot a price period starts inside is read from the ledger. */
  readonly priced?: boolean;
  /** false: the ledger alone (what the rollups must equal). */
  readonly rollups: boolean;
  /** Model usage from PolicySynth's items instead of the ledger (no rollups: see src/reports/usageItems.ts). */
  readonly source?: ModelUsageSource;
  /**
   * The key columns the report reads from the relation (groups by or selects) besides the model
   * or API id, created_at, the counters and the tier and region, e.g. `["agent_id"]`; `conditions`
   * may reference only these. Undefined: all of them. A narrower level is read when it has them all.
   */
  readonly uses?: readonly ("user_id" | "agent_id" | "connector_id")[];
}

type KeyColumn = NonNullable<UsageRelationPlan["uses"]>[number];

/** @internal The user, agent and connector columns among `columns` (a report's group columns), for {@link UsageRelationPlan.uses}. */
export function keyColumnsOf(columns: readonly string[]): KeyColumn[] {
  return columns.filter((c): c is KeyColumn => c === "user_id" || c === "agent_id" || c === "connector_id");
}

/**
 * The narrowest level that has every key column the plan filters or groups by: the 15-minute
 * rollup for two or more of user, agent and connector, the daily level of the one used, the
 * per-model level (the agent's daily level for external API usage, which has no per-model one)
 * for none.
 */
function levelOf(plan: UsageRelationPlan): "model" | DayLevel | "full" {
  const where = (plan.where ?? {}) as Readonly<Record<string, unknown>>;
  const uses = new Set<string>(plan.uses ?? ["user_id", "agent_id", "connector_id"]);
  if (where.userId !== undefined) uses.add("user_id");
  if (where.agentId !== undefined) uses.add("agent_id");
  if (where.connectorId !== undefined) uses.add("connector_id");
  const used = (["user_id", "agent_id", "connector_id"] as const).filter((c) => uses.has(c));
  if (used.length > 1) return "full";
  if (used[0] === "user_id") return "userDay";
  if (used[0] === "connector_id") return "connectorDay";
  if (used[0] === "agent_id" || MODEL_LEVEL[plan.table] === null) return "agentDay";
  return "model";
}

/**
 * The relation a report reads (`FROM ${usageRelationSql(plan)} AS u`): the ledger's columns of
 * {@link COLUMNS} and `event_count`, restricted to the filter. Rollups for whole slots, the ledger
 * for the rest, as described at the top of this file.
 *
 * @example
 * await db.reportPrisma.$queryRaw`SELECT sum(event_count) FROM ${usageRelationSql({ table: "modelUsage", rollups: true })} AS u`;
 */
export function usageRelationSql(plan: UsageRelationPlan): Prisma.Sql {
  const columns = COLUMNS[plan.table];
  const ledger = Prisma.raw(LEDGER[plan.table]);
  const ids = [...usageFilterConditions({ ...plan.where, from: undefined, to: undefined } as AnyUsageFilter), ...(plan.conditions ?? [])];
  const ledgerColumns = Prisma.raw([...columns.map((c) => `u.${c}`), "1::bigint AS event_count"].join(", "));
  if (plan.table === "modelUsage" && plan.source === "items") {
    return Prisma.sql`(SELECT ${ledgerColumns} FROM ${USAGE_ITEMS_AS_LEDGER} u ${whereSql([...usageFilterConditions(plan.where), ...(plan.conditions ?? [])])})`;
  }
  if (!plan.rollups) {
    return Prisma.sql`(SELECT ${ledgerColumns} FROM ${ledger} u ${whereSql([...usageFilterConditions(plan.where), ...(plan.conditions ?? [])])})`;
  }
  const level = levelOf(plan);
  const from = plan.where?.from?.getTime();
  const to = plan.where?.to?.getTime();
  // Whole slots in range: [first, last); the ledger answers [from, first) and [last, to).
  const first = from === undefined ? undefined : new Date(Math.ceil(from / ROLLUP_SLOT_MS) * ROLLUP_SLOT_MS);
  const last = to === undefined ? undefined : new Date(Math.floor(to / ROLLUP_SLOT_MS) * ROLLUP_SLOT_MS);
  const branches: Prisma.Sql[] = [];
  const edges: Prisma.Sql[] = [];
  if (first && first.getTime() !== from) edges.push(Prisma.sql`created_at < ${first}::timestamptz`);
  if (last && last.getTime() !== to) edges.push(Prisma.sql`created_at >= ${last}::timestamptz`);
  if (edges.length > 0) {
    const range = usageFilterConditions({ from: plan.where?.from, to: plan.where?.to } as AnyUsageFilter);
    branches.push(Prisma.sql`SELECT ${ledgerColumns} FROM ${ledger} u
      ${whereSql([...ids, ...range, Prisma.sql`(${Prisma.join(edges, " OR ")})`])}`);
  }
  const slotRange = (lo: Date | undefined, hi: Date | undefined): Prisma.Sql[] => [
    ...(lo ? [Prisma.sql`slot_start >= ${lo}::timestamptz`] : []),
    ...(hi ? [Prisma.sql`slot_start < ${hi}::timestamptz`] : []),
  ];
  if (level === "model" || level === "full") {
    const table = Prisma.raw(level === "model" ? MODEL_LEVEL[plan.table]! : ROLLUP[plan.table]);
    return slotLevelSql(plan, level, Prisma.sql`SELECT * FROM ${table} r ${whereSql([...ids, ...slotRange(first, last)])}`, [], branches);
  }

  // Whole days in range: [firstDay, lastDay); the 15-minute level answers the rest of [first, last).
  const firstDay = first === undefined ? undefined : new Date(Math.ceil(first.getTime() / DAY_MS) * DAY_MS);
  const lastDay = last === undefined ? undefined : new Date(Math.floor(last.getTime() / DAY_MS) * DAY_MS);
  const dayRange = (lo: Date | undefined, hi: Date | undefined): Prisma.Sql[] => [
    ...(lo ? [Prisma.sql`day_start >= ${lo}::timestamptz`] : []),
    ...(hi ? [Prisma.sql`day_start < ${hi}::timestamptz`] : []),
  ];
  const dayLevel = Prisma.raw(DAY_LEVELS[level][plan.table]);
  // Whole months in [firstDay, lastDay): [firstMonth, lastMonth); the daily level answers the rest.
  // Only the agent has a month level: the user's and the connector's days are all read by day.
  const firstMonth = firstDay && ceilMonth(firstDay);
  const lastMonth = lastDay && floorMonth(lastDay);
  const ctes: Prisma.Sql[] = [];
  const daySources: Prisma.Sql[] = [];
  // Each day source carries `cut_ref`: the instant its cut month is priced whole at, for the
  // days that correct such a month (null for the others).
  const noRef = Prisma.raw("NULL::timestamptz AS cut_ref");
  let negated = false;
  if (level !== "agentDay" || (firstMonth && lastMonth && firstMonth >= lastMonth)) {
    daySources.push(Prisma.sql`SELECT *, ${noRef} FROM ${dayLevel} r ${whereSql([...ids, ...dayRange(firstDay, lastDay)])}`);
  } else {
    const monthRange = [
      ...(firstMonth ? [Prisma.sql`month_start >= ${firstMonth}::timestamptz`] : []),
      ...(lastMonth ? [Prisma.sql`month_start < ${lastMonth}::timestamptz`] : []),
    ];
    const months = splitUnits(plan, "agentMonth", "month", Prisma.sql`SELECT * FROM ${Prisma.raw(AGENT_MONTH_LEVEL[plan.table])} r ${whereSql([...ids, ...monthRange])}`);
    ctes.push(...months.ctes);
    branches.unshift(months.whole);
    if (firstDay && firstMonth && firstDay < firstMonth) daySources.push(Prisma.sql`SELECT *, ${noRef} FROM ${dayLevel} r ${whereSql([...ids, ...dayRange(firstDay, firstMonth)])}`);
    if (lastDay && lastMonth && lastMonth < lastDay) daySources.push(Prisma.sql`SELECT *, ${noRef} FROM ${dayLevel} r ${whereSql([...ids, ...dayRange(lastMonth, lastDay)])}`);
    if (months.cut) {
      // The days [lo, hi) of each cut month and model (one index range of the daily level each),
      // and where the month is priced whole at ref, the same days negated at ref (below).
      daySources.push(Prisma.sql`SELECT r.*, c.ref AS cut_ref ${finerRows(plan, months.cut, dayLevel, "day_start", ids)(false)}`);
      negated = true;
    }
  }
  // The days read once (`day_rows`, materialized when read more than once): the whole days, the
  // cut days, the bucket's cuts and the negated corrections all come from it. Read from the daily
  // level by each, a cut month's days were scanned three times (about 90 of 345 ms of the 10M
  // benchmark's tree cost report, EXPLAIN ANALYZE).
  if (daySources.length > 0) ctes.push(Prisma.sql`day_rows AS (${Prisma.join(daySources, " UNION ALL ")})`);
  if (negated) branches.push(negatedRows(plan.table, level, Prisma.sql`FROM day_rows r WHERE r.cut_ref IS NOT NULL`, "r.cut_ref"));
  const days = daySources.length === 0 ? { ctes: [] as Prisma.Sql[], whole: null, cut: null } : splitUnits(plan, level, "day", Prisma.sql`SELECT * FROM day_rows r`);
  ctes.push(...days.ctes);
  if (days.whole) branches.unshift(days.whole);
  // The slots of [first, last) outside the whole-day range, and of every cut day (by model or API).
  const mid1 = firstDay && last && last < firstDay ? last : firstDay;
  const mid2 = lastDay && mid1 && mid1 > lastDay ? mid1 : lastDay;
  const full = Prisma.raw(ROLLUP[plan.table]);
  const slotSources: Prisma.Sql[] = [];
  if (mid1) slotSources.push(Prisma.sql`SELECT * FROM ${full} r ${whereSql([...ids, ...slotRange(first, mid1)])}`);
  if (mid2) slotSources.push(Prisma.sql`SELECT * FROM ${full} r ${whereSql([...ids, ...slotRange(mid2, last)])}`);
  if (days.cut) {
    // One index range of the slot level per cut day and model, in a nested loop (as for the
    // ledger below): the slots [lo, hi), and where the day is priced whole at ref, negated at ref.
    const finer = finerRows(plan, days.cut, full, "slot_start", ids);
    slotSources.push(Prisma.sql`SELECT r.* ${finer(false)}`);
    branches.push(negatedRows(plan.table, "full", finer(true)));
  }
  if (slotSources.length === 0) return Prisma.sql`(${withCtes(ctes)} ${Prisma.join(branches, " UNION ALL ")})`;
  return slotLevelSql(plan, "full", Prisma.join(slotSources, " UNION ALL "), ctes, branches);
}

/**
 * `FROM <cut> c CROSS JOIN LATERAL (<the finer level's rows of c's model in [c.lo, c.hi)>) r`, of
 * every cut unit or (`corrected`) of those priced whole at `c.ref` only.
 */
function finerRows(plan: UsageRelationPlan, cut: string, finer: Prisma.Sql, start: string, ids: readonly Prisma.Sql[]): (corrected: boolean) => Prisma.Sql {
  const key = PERIODS[plan.table].key;
  const conditions = [Prisma.raw(`r.${start} >= c.lo`), Prisma.raw(`r.${start} < c.hi`), Prisma.raw(`r.${key} = c.cut_key`), ...ids];
  return (corrected) => Prisma.sql`FROM ${Prisma.raw(corrected ? `(SELECT * FROM ${cut} WHERE ref IS NOT NULL)` : cut)} c
    CROSS JOIN LATERAL (SELECT * FROM ${finer} r ${whereSql(conditions)} OFFSET 0) r`;
}

/** Each level's unit: its start column, the next unit's start after `t`, and the unit holding a column. */
const UNITS = {
  slot: { start: "slot_start", end: (t: Prisma.Sql) => Prisma.sql`${t} + ${SLOT}`, unitOf: slotOfSql },
  // 24 hours, not '1 day': a timestamptz plus '1 day' keeps the session zone's wall clock (23 or 25 hours at DST).
  day: { start: "day_start", end: (t: Prisma.Sql) => Prisma.sql`${t} + interval '24 hours'`, unitOf: dayOfSql },
  // A month's length depends on the month: added in UTC, whatever the session's time zone.
  month: { start: "month_start", end: (t: Prisma.Sql) => Prisma.sql`((${t}) AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC'`, unitOf: monthOfSql },
} as const;

function withCtes(ctes: readonly Prisma.Sql[]): Prisma.Sql {
  return ctes.length === 0 ? Prisma.empty : Prisma.sql`WITH ${Prisma.join(ctes, ", ")}`;
}

/** The key and time columns of the relation (every other column is a counter, negated in a correction row). */
const NOT_COUNTERS = new Set(["created_at", "user_id", "model_id", "external_api_id", "agent_id", "connector_id", "service_tier", "regional_processing"]);

/**
 * The correction rows that take a cut unit's finer rows (`from`: rows `r` of a rollup level with
 * their cut unit `c`) back out of the whole unit priced at `c.ref`: the relation's columns,
 * counters negated, placed at `c.ref`, and summed per key there (see {@link splitUnits}). Summed,
 * half a month of daily rows becomes one row per agent and model (13,384 rows to 1,000 in the
 * 3M benchmark's tree cost report), which the report then groups and prices.
 */
function negatedRows(table: UsageTable, level: Level, from: Prisma.Sql, ref = "c.ref"): Prisma.Sql {
  const columns = COLUMNS[table];
  const lacks = LACKS[level] as readonly string[];
  // Summed per the level's own key columns, plain columns with statistics (grouped by the
  // relation's expressions, the planner guessed a group a row), then read as the relation.
  const keys = columns.filter((c) => c !== "created_at" && NOT_COUNTERS.has(c) && !lacks.includes(c));
  const counters = [...columns.filter((c) => !NOT_COUNTERS.has(c)), "event_count"];
  // bigint, as the other branches' counters (sum of bigint is numeric).
  const sums = counters.map((c) => `(-sum(r.${c}))::bigint AS ${c}`);
  const relation = [...columns.map((c) => (c === "created_at" ? "r.ref AS created_at" : rollupColumn(c, level))), "r.event_count"];
  return Prisma.sql`SELECT ${Prisma.raw(relation.join(", "))} FROM (
    SELECT ${Prisma.raw([`${ref} AS ref`, ...keys.map((k) => `r.${k}`), ...sums].join(", "))} ${from}
    GROUP BY ${Prisma.raw([ref, ...keys.map((k) => `r.${k}`)].join(", "))}) r`;
}

/**
 * The (model or API id, unit) pairs of a month or day level in which price periods start (SQL:
 * the CTE `<unit>_priced`), and how such a unit is read. Cost is linear in the counters, so a unit
 * with periods starting at s1 <= … <= sk inside it is read whole, priced at one instant `ref`, plus
 * a correction for the side of it a period other than ref's covers: its rows at the finer level
 * in [lo, hi), once at their own instants (priced by their own periods) and once negated at ref.
 * The side is the shorter one: [unit start, sk) with ref = sk, or [s1, unit end) with ref = the
 * unit's start; so a correction reads at most half the unit at the finer level, and a period
 * starting 7.5 minutes into a day reads one slot of it, not 96 (bench/SCALE.md). A unit with no
 * usage of its model before sk (`correct` false: asked of a finer level that has the model without
 * the agent; a slot or day holding a start counts as before it) needs no correction: all of its rows
 * come at or after sk, and it is priced at sk (a model's first period usually starts inside the
 * unit of its first use, before any of it).
 */
function pricedUnitsCte(table: UsageTable, unit: "day" | "month"): Prisma.Sql {
  const { key: k, table: periods } = PERIODS[table];
  const { unitOf, end } = UNITS[unit];
  const finer = UNITS[unit === "month" ? "day" : "slot"];
  const check = table === "modelUsage" ? { table: MODEL_LEVEL.modelUsage, start: "slot_start" } : { table: AGENT_DAY_LEVEL.externalApiUsage, start: "day_start" };
  const ceilFiner = (t: string) => `CASE WHEN ${finer.unitOf(t)} = ${t} THEN ${t} ELSE ${finer.end(Prisma.raw(finer.unitOf(t))).sql} END`;
  const unitEnd = end(Prisma.raw("s.u")).sql;
  return Prisma.raw(`${unit}_priced AS MATERIALIZED (
      SELECT s.key, s.u, s.correct,
        CASE WHEN NOT s.correct OR s.after THEN s.last_start ELSE s.u END AS ref,
        CASE WHEN s.after THEN s.u ELSE ${finer.unitOf("s.first_start")} END AS lo,
        CASE WHEN s.after THEN ${ceilFiner("s.last_start")} ELSE ${unitEnd} END AS hi
      FROM (
        SELECT key, u, min(effective_from) AS first_start, max(effective_from) AS last_start, bool_or(used_before) AS correct,
          max(effective_from) - u <= ${end(Prisma.raw("u")).sql} - min(effective_from) AS after
        FROM (
          SELECT p.${k} AS key, ${unitOf("p.effective_from")} AS u, p.effective_from,
            EXISTS (SELECT 1 FROM ${check.table} f WHERE f.${k} = p.${k} AND f.${check.start} >= ${unitOf("p.effective_from")} AND f.${check.start} < p.effective_from) AS used_before
          FROM ${periods} p WHERE p.effective_from <> ${unitOf("p.effective_from")}) s
        GROUP BY key, u) s)`);
}

/**
 * Splits the rows of a rollup level (`source`: `SELECT * FROM <level> r …`, units of `unit`) into
 * the whole units' rows (`whole`: the ledger's columns and `event_count`) and the cut units (`cut`:
 * the name of a CTE with `cut_start`, `cut_key` (model or API id), `lo`, `hi` and `ref`; null when
 * no unit can be cut): the caller reads each cut unit's finer rows in [lo, hi) and, where `ref` is
 * not null, the same rows negated at `ref` (a unit priced whole at ref, see {@link pricedUnitsCte}).
 * A unit a bucket cuts is read at the finer level whole (lo, hi: the unit; ref null), as is a
 * 15-minute slot a price period starts inside (from the ledger). Whether a unit is whole depends on
 * the unit and the model (or API) alone, so it is decided once per distinct unit start (a bucket's
 * cuts: a few thousand slots in 90 days, however many rows) and per price period starting inside a
 * unit, then looked up by hash per row; deciding it per row took 0.3-10 s at 3M rows (bench/SCALE.md).
 */
function splitUnits(plan: UsageRelationPlan, level: Level, unit: keyof typeof UNITS, source: Prisma.Sql): { ctes: Prisma.Sql[]; whole: Prisma.Sql; cut: string | null } {
  const { start, end } = UNITS[unit];
  const startColumn = Prisma.raw(`r.${start}`);
  const k = PERIODS[plan.table].key;
  const key = Prisma.raw(`r.${k}`);
  const ctes: Prisma.Sql[] = [];
  const cutConditions: Prisma.Sql[] = [];
  const cut = `${unit}_cut`;
  // A UTC day or coarser bucket never cuts a UTC slot or day, nor a UTC month bucket a UTC month;
  // a UTC hour cuts every day, and any bucket but a month every month.
  const uncut = unit === "month" ? ["month"] : unit === "day" ? ["day", "week", "month"] : ["hour", "day", "week", "month"];
  const utcWhole = isUtcZone(plan.bucket?.timeZone ?? "UTC") && uncut.includes(plan.bucket?.bucket ?? "day");
  if (plan.bucket && !utcWhole) {
    const bucketKey = (t: Prisma.Sql) => timeBucketKeySql(plan.bucket!.bucket, plan.bucket!.timeZone, t).key;
    ctes.push(Prisma.sql`${Prisma.raw(`${unit}_bucket_cut`)} AS MATERIALIZED (
      SELECT u FROM (SELECT DISTINCT ${startColumn} AS u FROM (${source}) r) d
      WHERE ${bucketKey(Prisma.raw("d.u"))} <> ${bucketKey(Prisma.sql`(${end(Prisma.raw("d.u"))} - interval '1 microsecond')`)})`);
    cutConditions.push(Prisma.sql`${startColumn} IN (SELECT u FROM ${Prisma.raw(`${unit}_bucket_cut`)})`);
  }
  const columns = Prisma.raw([...COLUMNS[plan.table].map((c) => rollupColumn(c, level)), "r.event_count"].join(", "));
  if (plan.priced && unit !== "slot") {
    // Units in which periods start: whole at ref, corrected at the finer level (pricedUnitsCte).
    ctes.push(pricedUnitsCte(plan.table, unit));
    const join = Prisma.raw(`LEFT JOIN ${unit}_priced pr ON pr.key = r.${k} AND pr.u = r.${start}`);
    const placed = Prisma.raw(
      [...COLUMNS[plan.table].map((c) => (c === "created_at" ? `COALESCE(pr.ref, r.${start}) AS created_at` : rollupColumn(c, level))), "r.event_count"].join(", "),
    );
    const bucketCut = cutConditions.length > 0 ? cutConditions[0] : Prisma.sql`FALSE`;
    ctes.push(Prisma.sql`${Prisma.raw(cut)} AS MATERIALIZED (
      SELECT DISTINCT ${startColumn} AS cut_start, ${key} AS cut_key,
        CASE WHEN ${bucketCut} THEN ${startColumn} ELSE pr.lo END AS lo,
        CASE WHEN ${bucketCut} THEN ${end(startColumn)} ELSE pr.hi END AS hi,
        CASE WHEN ${bucketCut} THEN NULL ELSE pr.ref END AS ref
      FROM (${source}) r ${join} WHERE ${bucketCut} OR pr.correct)`);
    return { ctes, whole: Prisma.sql`SELECT ${placed} FROM (${source}) r ${join} ${cutConditions.length > 0 ? Prisma.sql`WHERE NOT (${bucketCut})` : Prisma.empty}`, cut };
  }
  if (plan.priced) {
    // Periods that start inside a slot are few: one hashed lookup per row.
    cutConditions.push(Prisma.sql`(${key}, ${startColumn}) IN (${Prisma.raw(pricedCutSlotsSql(plan.table))})`);
  }
  if (cutConditions.length === 0) return { ctes, whole: Prisma.sql`SELECT ${columns} FROM (${source}) r`, cut: null };
  const isCut = Prisma.join(cutConditions, " OR ");
  ctes.push(Prisma.sql`${Prisma.raw(cut)} AS MATERIALIZED (SELECT DISTINCT ${startColumn} AS cut_start, ${key} AS cut_key,
    ${startColumn} AS lo, ${end(startColumn)} AS hi, NULL::timestamptz AS ref FROM (${source}) r WHERE ${isCut})`);
  return { ctes, whole: Prisma.sql`SELECT ${columns} FROM (${source}) r WHERE NOT (${isCut})`, cut };
}

/**
 * The relation from rows of a 15-minute level (`source`: `SELECT * FROM <level> r …`), whole slots
 * from it and cut slots from the ledger, after `ctes` and with `branches` (ledger edges, days) beside.
 */
function slotLevelSql(plan: UsageRelationPlan, level: Level, source: Prisma.Sql, ctes: readonly Prisma.Sql[], branches: readonly Prisma.Sql[]): Prisma.Sql {
  const columns = COLUMNS[plan.table];
  const ledger = Prisma.raw(LEDGER[plan.table]);
  const ids = [...usageFilterConditions({ ...plan.where, from: undefined, to: undefined } as AnyUsageFilter), ...(plan.conditions ?? [])];
  const ledgerColumns = Prisma.raw([...columns.map((c) => `u.${c}`), "1::bigint AS event_count"].join(", "));
  const slots = splitUnits(plan, level, "slot", source);
  if (!slots.cut) return Prisma.sql`(${withCtes([...ctes, ...slots.ctes])} ${Prisma.join([slots.whole, ...branches], " UNION ALL ")})`;
  // The ledger rows of exactly the rollup rows left out are those of the same slot and model.
  const key = Prisma.raw(PERIODS[plan.table].key);
  // Each cut slot's 15 minutes of the ledger through the created_at index, in a nested loop over
  // the (few) cut slots. As a plain join, the planner, unable to tell how many slots are cut,
  // hashed or merged every ledger row the filter allows instead (all of a tree's rows: seconds at
  // 30M rows). OFFSET 0 keeps the subquery from being flattened back into such a join.
  // `+ 0`: the model (or API) is matched on the 15 minutes' rows, not through its own index,
  // which the planner ANDed in bitmaps (all of a model's rows: 36 ms of a 480 ms tree cost report at 3M).
  const cutSlot = [Prisma.sql`u.created_at >= c.cut_start`, Prisma.sql`u.created_at < c.cut_start + ${SLOT}`, Prisma.sql`u.${key} + 0 = c.cut_key`];
  const cut = Prisma.sql`SELECT ${ledgerColumns}
    FROM ${Prisma.raw(slots.cut)} c
    CROSS JOIN LATERAL (SELECT * FROM ${ledger} u ${whereSql([...cutSlot, ...ids])} OFFSET 0) u`;
  return Prisma.sql`(${withCtes([...ctes, ...slots.ctes])}
    ${Prisma.join([slots.whole, cut, ...branches], " UNION ALL ")})`;
}

/** @internal Checks a `rollups` option (the one place it is checked, for sums and cost reports). */
export function checkRollupsOption(rollups: unknown, issues: FieldIssue[]): void {
  if (rollups !== undefined && typeof rollups !== "boolean") {
    issues.push({ field: "rollups", reason: `must be true (whole slots from the rollups, the default) or false (the ledger alone), got ${JSON.stringify(rollups) ?? String(rollups)}` });
  }
}

/** `COALESCE(sum(event_count), 0)::bigint`: how many ledger rows the relation's rows stand for. */
export const EVENTS_SQL = Prisma.raw("COALESCE(sum(event_count), 0)::bigint");
