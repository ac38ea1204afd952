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
 */
import type { FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { MODEL_USAGE_ALL_COUNTERS, type TimeBucket } from "../types";
import { USAGE_ITEMS_AS_LEDGER, type ModelUsageSource } from "./usageItems";
import { isUtcZone, timeBucketKeySql, usageFilterConditions, whereSql, type AnyUsageFilter, type UsageTable } from "../usageSql";

/** The rollup slot, in milliseconds (15 minutes). */
export const ROLLUP_SLOT_MS = 15 * 60 * 1000;

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
const PERIODS = {
  modelUsage: { table: "ps_ai_model_price_periods", key: "model_id" },
  externalApiUsage: { table: "ps_external_api_price_periods", key: "external_api_id" },
} as const;

/** A rollup column read back as the ledger's value (see the rollup models in prisma/schema.prisma). */
function rollupColumn(column: string): string {
  switch (column) {
    case "created_at":
      return "r.slot_start AS created_at";
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

/**
 * @internal The (model or API id, slot) pairs in which a price period starts inside the slot (SQL
 * text): reports read those slots from the ledger, and prune keeps their rows.
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
  const from = plan.where?.from?.getTime();
  const to = plan.where?.to?.getTime();
  // Whole slots in range: [first, last); the ledger answers [from, first) and [last, to).
  const first = from === undefined ? undefined : new Date(Math.ceil(from / ROLLUP_SLOT_MS) * ROLLUP_SLOT_MS);
  const last = to === undefined ? undefined : new Date(Math.floor(to / ROLLUP_SLOT_MS) * ROLLUP_SLOT_MS);
  const slotRange: Prisma.Sql[] = [];
  if (first) slotRange.push(Prisma.sql`slot_start >= ${first}::timestamptz`);
  if (last) slotRange.push(Prisma.sql`slot_start < ${last}::timestamptz`);
  const rollupColumns = Prisma.raw([...columns.map(rollupColumn), "r.event_count"].join(", "));

  const branches: Prisma.Sql[] = [];
  const edges: Prisma.Sql[] = [];
  if (first && first.getTime() !== from) edges.push(Prisma.sql`created_at < ${first}::timestamptz`);
  if (last && last.getTime() !== to) edges.push(Prisma.sql`created_at >= ${last}::timestamptz`);
  if (edges.length > 0) {
    const range = usageFilterConditions({ from: plan.where?.from, to: plan.where?.to } as AnyUsageFilter);
    branches.push(Prisma.sql`SELECT ${ledgerColumns} FROM ${ledger} u
      ${whereSql([...ids, ...range, Prisma.sql`(${Prisma.join(edges, " OR ")})`])}`);
  }

  const whole = wholeSlotSql(plan);
  if (whole === null) {
    branches.unshift(Prisma.sql`SELECT ${rollupColumns} FROM ${Prisma.raw(ROLLUP[plan.table])} r ${whereSql([...ids, ...slotRange])}`);
    return Prisma.sql`(${Prisma.join(branches, " UNION ALL ")})`;
  }
  // The slots in range, each marked whole or not once; the rows of the others come from the ledger.
  const rollupAll = Prisma.raw([...columns.map((c) => (c === "created_at" ? "r.slot_start" : `r.${c}`)), "r.event_count"].join(", "));
  branches.unshift(Prisma.sql`SELECT ${rollupColumns} FROM slots r WHERE r.whole`);
  // Whether a slot is whole depends on the slot and the model (or API) alone: the ledger rows of
  // exactly the rollup rows left out are those of the same slot and model.
  const key = Prisma.raw(PERIODS[plan.table].key);
  // Each cut slot's 15 minutes of the ledger through the created_at index, in a nested loop over
  // the (few) cut slots. As a plain join, the planner, unable to tell how many slots are cut,
  // hashed or merged every ledger row the filter allows instead (all of a tree's rows: seconds at
  // 30M rows). OFFSET 0 keeps the subquery from being flattened back into such a join.
  const cutSlot = [Prisma.sql`u.created_at >= c.cut_slot`, Prisma.sql`u.created_at < c.cut_slot + ${SLOT}`, Prisma.sql`u.${key} = c.cut_key`];
  branches.push(Prisma.sql`SELECT ${ledgerColumns}
    FROM (SELECT DISTINCT slot_start AS cut_slot, ${key} AS cut_key FROM slots WHERE NOT whole) c
    CROSS JOIN LATERAL (SELECT * FROM ${ledger} u ${whereSql([...cutSlot, ...ids])} OFFSET 0) u`);
  return Prisma.sql`(WITH slots AS MATERIALIZED (
      SELECT ${rollupAll}, ${whole} AS whole FROM ${Prisma.raw(ROLLUP[plan.table])} r ${whereSql([...ids, ...slotRange])})
    ${Prisma.join(branches, " UNION ALL ")})`;
}

/**
 * The condition that a rollup row's slot is whole for this report (`r.slot_start`, `r.model_id`
 * or `r.external_api_id`), or null when every slot is (a UTC bucket or none, and no prices).
 */
function wholeSlotSql(plan: UsageRelationPlan): Prisma.Sql | null {
  const parts: Prisma.Sql[] = [];
  if (plan.bucket && !isUtcZone(plan.bucket.timeZone)) {
    const key = (t: Prisma.Sql) => timeBucketKeySql(plan.bucket!.bucket, plan.bucket!.timeZone, t).key;
    parts.push(Prisma.sql`${key(Prisma.raw("r.slot_start"))} = ${key(Prisma.sql`r.slot_start + ${SLOT} - interval '1 microsecond'`)}`);
  }
  if (plan.priced) {
    // Periods that start inside a slot are few; NOT IN over them is one hashed lookup per row.
    parts.push(Prisma.sql`(r.${Prisma.raw(PERIODS[plan.table].key)}, r.slot_start) NOT IN (${Prisma.raw(pricedCutSlotsSql(plan.table))})`);
  }
  return parts.length === 0 ? null : Prisma.join(parts, " AND ");
}

/** @internal Checks a `rollups` option (the one place it is checked, for sums and cost reports). */
export function checkRollupsOption(rollups: unknown, issues: FieldIssue[]): void {
  if (rollups !== undefined && typeof rollups !== "boolean") {
    issues.push({ field: "rollups", reason: `must be true (whole slots from the rollups, the default) or false (the ledger alone), got ${JSON.stringify(rollups) ?? String(rollups)}` });
  }
}

/** `COALESCE(sum(event_count), 0)::bigint`: how many ledger rows the relation's rows stand for. */
export const EVENTS_SQL = Prisma.raw("COALESCE(sum(event_count), 0)::bigint");
