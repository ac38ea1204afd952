/**
 * Sums of usage: totals, groups, time buckets and an agent's sub-agent tree. Every sum is one SQL
 * statement over the usage table (a single GROUP BY scan) and comes back as an exact `bigint`:
 * an INTEGER counter summed over a few million rows passes 2^53, where Prisma's `aggregate`
 * (which returns `number`) fails with P2023.
 */
import type { Database } from "./db";
import { EVENTS_SQL, checkRollupsOption, keyColumnsOf, usageRelationSql } from "./reports/rollups";
import { checkSource, type ModelUsageSource } from "./reports/usageItems";
import { UnknownReferenceError, UsageValidationError, type FieldIssue } from "./errors";
import { Prisma } from "./generated/prisma/client";
import {
  MAX_INT32,
  MODEL_USAGE_ALL_COUNTERS,
  type ExternalApiUsageFilter,
  type ExternalApiUsageGroupBy,
  type ModelUsageAnyCounter,
  type ModelUsageFilter,
  type ModelUsageGroupBy,
  type TimeBucket,
} from "./types";
import {
  GROUP_COLUMNS,
  USAGE_TABLE_NAMES,
  MAX_FILLED_ROWS,
  bucketSeriesSql,
  checkFilledRange,
  filledBucketCount,
  filledRowsProblem,
  anyIdSql,
  checkOptionNames,
  columnSql,
  modelUsageSumColumnsSql,
  resolveTimeZone,
  agentTreeCte,
  timeBucketKeySql,
  validateBucket,
  validateGroupBy,
  validateUsageFilter,
  type AnyUsageFilter,
  type UsageTable,
} from "./usageSql";
import { readRouted } from "./usageShared";
import { checkBucketStarts, throwIfIssues } from "./validation";

/** Every model usage counter summed (the 14 token counters and `webSearchCount`), and `events`: how many rows were summed. */
export type ModelUsageTotals = { readonly events: bigint } & { readonly [K in ModelUsageAnyCounter]: bigint };

/** External API calls summed (`callCount`), and `events`: how many rows were summed. */
export interface ExternalApiUsageTotals {
  readonly events: bigint;
  readonly callCount: bigint;
}

/** The type of each model usage group key (agent and connector may be null in the data). */
export interface ModelUsageGroupKeys {
  readonly userId: number;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  readonly modelId: number;
}

/** The type of each external API usage group key. */
export interface ExternalApiUsageGroupKeys {
  readonly userId: number;
  readonly agentId: number | null;
  readonly connectorId: number | null;
  readonly externalApiId: number;
}

/** `bucketStart` when a bucket was asked for. */
export type BucketKey<B extends TimeBucket | undefined> = [B] extends [undefined]
  ? unknown
  : [B] extends [TimeBucket]
    ? { readonly bucketStart: Date }
    : { readonly bucketStart?: Date };

/** One row of {@link sumModelUsage}: the group keys asked for, `bucketStart` if bucketed, the sums. */
export type ModelUsageSumRow<
  G extends ModelUsageGroupBy = ModelUsageGroupBy,
  B extends TimeBucket | undefined = TimeBucket | undefined,
> = Pick<ModelUsageGroupKeys, G> & BucketKey<B> & ModelUsageTotals;

/** One row of {@link sumExternalApiUsage}. */
export type ExternalApiUsageSumRow<
  G extends ExternalApiUsageGroupBy = ExternalApiUsageGroupBy,
  B extends TimeBucket | undefined = TimeBucket | undefined,
> = Pick<ExternalApiUsageGroupKeys, G> & BucketKey<B> & ExternalApiUsageTotals;

/** Options shared by both sums. */
export interface SumOptions<G extends string, B extends TimeBucket | undefined> {
  /** Group by these fields, in this order (rows are ordered by them too). None: no grouping. */
  readonly groupBy?: readonly G[];
  /** Also group by the local hour, day, ISO week (Monday) or month the usage happened in. */
  readonly bucket?: B;
  /** The IANA zone buckets are cut in, e.g. `"Europe/Berlin"`. Default `"UTC"`. */
  readonly timeZone?: string;
  /**
   * Return zero rows for buckets without usage (needs `bucket`). The range runs from the bucket
   * holding `where.from` to the bucket holding the last instant before `where.to`; a bound not
   * given is taken from the first or last bucket that has usage. With `groupBy`, every group
   * that has usage somewhere in the range gets every bucket. At most {@link MAX_FILLED_ROWS}
   * rows (buckets × groups); a larger fill is refused with a UsageValidationError.
   */
  readonly fillEmptyBuckets?: boolean;
  /**
   * Read whole 15-minute slots from the rollups and only the rest from the ledger (default
   * true); false reads the ledger alone. Both give the same result (see src/reports/rollups.ts).
   */
  readonly rollups?: boolean;
}

/** Options of {@link sumModelUsage}. */
export interface ModelUsageSumOptions<
  G extends ModelUsageGroupBy = ModelUsageGroupBy,
  B extends TimeBucket | undefined = TimeBucket | undefined,
> extends SumOptions<G, B> {
  readonly where?: ModelUsageFilter;
  /**
   * Read the ledger (`"ledger"`, default) or PolicySynth's per-call `ps_model_usage_item` rows
   * (`"items"`): where PolicySynth keeps running counter rows, the items date each call. Never
   * both, so no call is counted twice (see src/reports/usageItems.ts for how items are read).
   */
  readonly source?: ModelUsageSource;
}

/** Options of {@link sumExternalApiUsage}. */
export interface ExternalApiUsageSumOptions<
  G extends ExternalApiUsageGroupBy = ExternalApiUsageGroupBy,
  B extends TimeBucket | undefined = TimeBucket | undefined,
> extends SumOptions<G, B> {
  readonly where?: ExternalApiUsageFilter;
}

export { MAX_FILLED_ROWS };

const SUM_OPTIONS = ["where", "groupBy", "bucket", "timeZone", "fillEmptyBuckets", "rollups"];
const MODEL_SUM_OPTIONS = [...SUM_OPTIONS, "source"];


/** The usage a sum reads, filtered (see src/reports/rollups.ts), named as the table. */
function relation(table: UsageTable, shape: SumShape, where: AnyUsageFilter | undefined): Prisma.Sql {
  const relationSql = usageRelationSql({
    table,
    where,
    bucket: shape.bucket ? { bucket: shape.bucket, timeZone: shape.timeZone } : undefined,
    rollups: shape.rollups,
    source: shape.source,
    uses: keyColumnsOf(shape.groupBy.map((field) => GROUP_COLUMNS[table][field])),
  });
  return Prisma.sql`${relationSql} AS ${Prisma.raw(USAGE_TABLE_NAMES[table])}`;
}

/** A sum's checked options. */
interface SumShape {
  readonly groupBy: readonly string[];
  readonly bucket?: TimeBucket;
  readonly timeZone: string;
  readonly fill: boolean;
  readonly source?: ModelUsageSource;
  readonly rollups: boolean;
}
const MODEL_SUM_FIELDS = ["events", ...MODEL_USAGE_ALL_COUNTERS.map(([field]) => field)];
const EXTERNAL_API_SUM_FIELDS = ["events", "callCount"];

/**
 * Runs a read where `db` routes reads (a replica, if it has any: see db/replicas), turning a lost
 * connection into DatabaseConnectionError (reads violate no keys). `read` queries `on` only.
 */
function reading<T>(db: Database, read: (on: Database) => Promise<T>): Promise<T> {
  return readRouted(db, read, async () => new UnknownReferenceError("ps_agents", null));
}

function quoted(field: string): Prisma.Sql {
  // Only field names from the whitelists reach here.
  return Prisma.raw(`"${field}"`);
}

/** Checks the options of a sum; throws UsageValidationError listing every bad one. */
async function checkSumOptions(
  db: Database,
  table: UsageTable,
  options: SumOptions<string, TimeBucket | undefined> & { readonly where?: AnyUsageFilter },
): Promise<SumShape> {
  const issues: FieldIssue[] = [];
  checkOptionNames(options, table === "modelUsage" ? MODEL_SUM_OPTIONS : SUM_OPTIONS, issues);
  const source = table === "modelUsage" ? (options as { source?: unknown }).source : undefined;
  if (table === "modelUsage") checkSource(source, issues);
  if (typeof options !== "object" || options === null) throwIfIssues(issues);
  validateUsageFilter(table, options.where, issues);
  const groupBy = validateGroupBy(table, options.groupBy, issues);
  const bucket = validateBucket(options.bucket, issues);
  const fill = options.fillEmptyBuckets;
  if (fill !== undefined && typeof fill !== "boolean") {
    issues.push({ field: "fillEmptyBuckets", reason: `must be true or false, got ${String(fill)}` });
  } else if (fill && options.bucket === undefined) {
    issues.push({ field: "fillEmptyBuckets", reason: "needs a bucket to fill" });
  } else if (fill && bucket && issues.length === 0) {
    checkFilledRange(bucket, options.where, issues);
  }
  checkRollupsOption(options.rollups, issues);
  const timeZone = await resolveTimeZone(db, options.timeZone, issues);
  throwIfIssues(issues);
  return { groupBy, bucket, timeZone: timeZone as string, fill: fill === true, source: source as ModelUsageSource | undefined, rollups: options.rollups !== false };
}

/**
 * The one statement of a sum: `SELECT keys, bucket, count(*), SUM(...) FROM table WHERE ...
 * GROUP BY keys ORDER BY keys`. Bucket keys become start instants only after grouping, once per
 * distinct key (`starts`). With `fill`, the grouped result is joined to the series of bucket keys
 * (and the distinct groups), missing buckets getting zeros; series and data share one key
 * function, so every bucket with usage meets its series row.
 */
function sumSql(
  table: UsageTable,
  shape: SumShape,
  where: AnyUsageFilter | undefined,
  sumColumns: Prisma.Sql,
  sumFields: readonly string[],
): Prisma.Sql {
  const columns = GROUP_COLUMNS[table];
  const keys = shape.groupBy.map((field) => Prisma.sql`${columnSql(columns[field])} AS ${quoted(field)}`);
  const bucket = shape.bucket ? timeBucketKeySql(shape.bucket, shape.timeZone) : undefined;
  if (bucket) keys.push(Prisma.sql`${bucket.key} AS "bucketStart"`);
  // Positions, not expressions: the bucket expression carries a bound parameter, and PostgreSQL
  // does not see `$1` in SELECT and `$2` in GROUP BY as the same expression.
  const positions = Prisma.raw(keys.map((_, i) => i + 1).join(", "));
  const grouped = Prisma.sql`SELECT ${Prisma.join([...keys, Prisma.sql`${EVENTS_SQL} AS events`, sumColumns], ", ")}
    FROM ${relation(table, shape, where)}
    ${keys.length > 0 ? Prisma.sql`GROUP BY ${positions}` : Prisma.empty}`;
  if (!bucket || !shape.bucket) {
    // Sorting the grouped rows, not the table: with ORDER BY on the aggregate itself the planner
    // sorts every usage row to group them (a 1M-row disk sort, 1.6x slower on PostgreSQL and 2.5x
    // on PGlite in the benchmark) instead of hashing them into the few groups.
    return keys.length > 0 ? Prisma.sql`WITH sums AS MATERIALIZED (${grouped}) SELECT * FROM sums ORDER BY ${positions}` : grouped;
  }
  const startOf = (k: Prisma.Sql) => bucket.start(k);
  const groupFields = shape.groupBy.map((field) => Prisma.sql`s.${quoted(field)}`);
  if (!shape.fill) {
    return Prisma.sql`WITH raw AS MATERIALIZED (${grouped}),
      starts AS (SELECT k, ${startOf(Prisma.raw("k"))} AS s FROM (SELECT DISTINCT "bucketStart" AS k FROM raw) AS d)
      SELECT ${Prisma.join([...groupFields, Prisma.sql`st.s AS "bucketStart"`, ...sumFields.map((f) => Prisma.sql`s.${quoted(f)}`)], ", ")}
      FROM raw s JOIN starts st ON st.k = s."bucketStart"
      ORDER BY ${positions}`;
  }

  // A bound not given is the first or last bucket with usage: its start is an instant inside it.
  const dataBound = (aggregate: string) =>
    Prisma.sql`(SELECT ${startOf(Prisma.raw("b"))} FROM (SELECT ${Prisma.raw(aggregate)}("bucketStart") AS b FROM raw) AS x)`;
  const first = where?.from ? Prisma.sql`${where.from}::timestamptz` : dataBound("min");
  const last = where?.to ? Prisma.sql`${where.to}::timestamptz - interval '1 microsecond'` : dataBound("max");
  const series = bucketSeriesSql(shape.bucket, shape.timeZone, first, last);
  const zeroFilled = Prisma.join(
    sumFields.map((field) => Prisma.sql`COALESCE(s.${quoted(field)}, 0)::bigint AS ${quoted(field)}`),
    ", ",
  );
  const ctes = Prisma.sql`WITH raw AS MATERIALIZED (${grouped}),
    starts AS (SELECT "bucketKey" AS k, ${startOf(Prisma.raw('"bucketKey"'))} AS s FROM ${series} AS series)`;
  if (shape.groupBy.length === 0) {
    return Prisma.sql`${ctes}
      SELECT st.s AS "bucketStart", ${zeroFilled}
      FROM starts st LEFT JOIN raw s ON s."bucketStart" = st.k
      ORDER BY 1`;
  }
  const groupKeys = Prisma.join(shape.groupBy.map((field) => Prisma.sql`g.${quoted(field)}`), ", ");
  const distinctKeys = Prisma.join(shape.groupBy.map(quoted), ", ");
  // Ids are positive, so 0 stands for NULL and the join stays an equi-join (hashable).
  const sameGroup = shape.groupBy.map(
    (field) => Prisma.sql`COALESCE(s.${quoted(field)}, 0) = COALESCE(g.${quoted(field)}, 0)`,
  );
  return Prisma.sql`${ctes}
    SELECT ${groupKeys}, st.s AS "bucketStart", ${zeroFilled}
    FROM (SELECT DISTINCT ${distinctKeys} FROM raw) AS g CROSS JOIN starts st
    LEFT JOIN raw s ON ${Prisma.join([...sameGroup, Prisma.sql`s."bucketStart" = st.k`], " AND ")}
    ORDER BY ${Prisma.raw(Array.from({ length: shape.groupBy.length + 1 }, (_, i) => i + 1).join(", "))}`;
}

/**
 * Refuses a zero fill that would return more than {@link MAX_FILLED_ROWS} rows (buckets × groups)
 * before running it: one cheap query counts the groups with usage and, for a bound not given, the
 * first or last usage instant. Nothing to check without groups when from and to are both given
 * (checkSumOptions did that).
 */
async function checkFilledRows(
  db: Database,
  table: UsageTable,
  shape: SumShape,
  where: AnyUsageFilter | undefined,
): Promise<void> {
  if (!shape.fill || !shape.bucket) return;
  const grouped = shape.groupBy.length > 0;
  if (!grouped && where?.from && where.to) return;
  const tableName = relation(table, shape, where);
  const [row] = grouped
    ? await db.reportPrisma.$queryRaw<{ groups: bigint; first: Date | null; last: Date | null }[]>`
        SELECT count(*)::bigint AS groups, min(mn) AS first, max(mx) AS last FROM (
          SELECT min(created_at) AS mn, max(created_at) AS mx FROM ${tableName}
          GROUP BY ${Prisma.join(shape.groupBy.map((field) => columnSql(GROUP_COLUMNS[table][field])), ", ")}) AS g`
    : await db.reportPrisma.$queryRaw<{ groups: bigint; first: Date | null; last: Date | null }[]>`
        SELECT 1::bigint AS groups, min(created_at) AS first, max(created_at) AS last FROM ${tableName}`;
  const first = where?.from ?? row.first;
  const last = where?.to ? new Date(where.to.getTime() - 1) : row.last;
  if (!first || !last) return;
  const reason = filledRowsProblem(shape.bucket, filledBucketCount(shape.bucket, first, last), Number(row.groups), grouped);
  if (reason) throw new UsageValidationError([{ field: "fillEmptyBuckets", reason }]);
}

/**
 * Sums model usage: every token counter and `webSearchCount` as an exact `bigint`, plus `events` (rows summed),
 * optionally grouped by user, agent, connector and/or model and by a time bucket in an IANA time
 * zone. Without `groupBy` and `bucket` it returns exactly one total row (zeros when nothing
 * matches). Buckets without usage are absent unless `fillEmptyBuckets`. Rows are ordered by the
 * group keys in the order given (nulls last), then by bucket. `bucketStart` is the instant the
 * local bucket starts (a day across a DST change is 23 or 25 hours; weeks start on Monday).
 *
 * @throws UsageValidationError for an unknown group field, bucket, time zone or option, a bad
 * filter id or date, `from` not before `to`, or a zero fill of more than {@link MAX_FILLED_ROWS} rows.
 *
 * @example
 * const [total] = await sumModelUsage(db, { where: { userId: 7 } });
 * console.log(total.tokenInCount, total.events); // 123456n 42n
 *
 * const perAgentPerDay = await sumModelUsage(db, {
 *   where: { from: new Date("2026-03-01T00:00:00Z"), to: new Date("2026-04-01T00:00:00Z") },
 *   groupBy: ["agentId"],
 *   bucket: "day",
 *   timeZone: "Europe/Berlin",
 * });
 * // [{ agentId: 3, bucketStart: 2026-02-28T23:00:00.000Z, events: 5n, tokenInCount: 900n, ... }, ...]
 */
export async function sumModelUsage<G extends ModelUsageGroupBy = never, B extends TimeBucket | undefined = undefined>(
  db: Database,
  options: ModelUsageSumOptions<G, B> = {},
): Promise<ModelUsageSumRow<G, B>[]> {
  return reading(db, async (on) => {
    const shape = await checkSumOptions(on, "modelUsage", options);
    await checkFilledRows(on, "modelUsage", shape, options.where);
    const rows = await on.reportPrisma.$queryRaw<ModelUsageSumRow<G, B>[]>(
      sumSql("modelUsage", shape, options.where, modelUsageSumColumnsSql(), MODEL_SUM_FIELDS),
    );
    if (shape.bucket) checkBucketStarts(rows, shape.timeZone);
    return rows;
  });
}

/**
 * Sums external API usage: `callCount` as an exact `bigint` and `events` (rows summed),
 * optionally grouped by user, agent, connector and/or external API and by a time bucket; the
 * same rules as {@link sumModelUsage}.
 *
 * @example
 * const perApi = await sumExternalApiUsage(db, { groupBy: ["externalApiId"], where: { agentId: [3, 4] } });
 * // [{ externalApiId: 1, events: 12n, callCount: 40n }, { externalApiId: 2, events: 1n, callCount: 1n }]
 *
 * const monthly = await sumExternalApiUsage(db, { bucket: "month", timeZone: "America/New_York" });
 */
export async function sumExternalApiUsage<
  G extends ExternalApiUsageGroupBy = never,
  B extends TimeBucket | undefined = undefined,
>(db: Database, options: ExternalApiUsageSumOptions<G, B> = {}): Promise<ExternalApiUsageSumRow<G, B>[]> {
  return reading(db, async (on) => {
    const shape = await checkSumOptions(on, "externalApiUsage", options);
    await checkFilledRows(on, "externalApiUsage", shape, options.where);
    const rows = await on.reportPrisma.$queryRaw<ExternalApiUsageSumRow<G, B>[]>(
      sumSql(
        "externalApiUsage",
        shape,
        options.where,
        Prisma.sql`COALESCE(SUM(call_count), 0)::bigint AS "callCount"`,
        EXTERNAL_API_SUM_FIELDS,
      ),
    );
    if (shape.bucket) checkBucketStarts(rows, shape.timeZone);
    return rows;
  });
}

/**
 * Which usage an agent tree sum covers. The agents come from the tree, so there is no `agentId`;
 * `modelId` narrows the model usage and `externalApiId` the external API usage.
 */
export interface AgentTreeUsageFilter {
  readonly userId?: number;
  readonly connectorId?: number;
  readonly modelId?: number | readonly number[];
  readonly externalApiId?: number | readonly number[];
  readonly from?: Date;
  readonly to?: Date;
}

/** Options of {@link sumAgentTreeUsage}. */
export interface AgentTreeUsageOptions {
  readonly where?: AgentTreeUsageFilter;
  /** Model usage from the ledger (default) or from `ps_model_usage_item` (see {@link ModelUsageSumOptions.source}). */
  readonly source?: ModelUsageSource;
  /** Whole slots from the rollups (default true; see {@link SumOptions.rollups}). */
  readonly rollups?: boolean;
}

/** One agent of the tree with its own usage (not its sub-agents'). */
export interface AgentTreeUsageRow {
  readonly agentId: number;
  readonly parentAgentId: number | null;
  /** 0 for the root, 1 for its sub-agents, and so on. */
  readonly depth: number;
  readonly modelUsage: ModelUsageTotals;
  readonly externalApiUsage: ExternalApiUsageTotals;
}

/** An agent tree's usage: one row per agent, and the whole tree's total. */
export interface AgentTreeUsage {
  readonly rootAgentId: number;
  /** Depth-first: each agent before its sub-agents, siblings by id. */
  readonly agents: readonly AgentTreeUsageRow[];
  readonly total: {
    readonly modelUsage: ModelUsageTotals;
    readonly externalApiUsage: ExternalApiUsageTotals;
  };
}

const TREE_FILTER_FIELDS = ["userId", "connectorId", "modelId", "externalApiId", "from", "to"];

type TreeSqlRow = { agentId: number; parentAgentId: number | null; depth: number; apiEvents: bigint; callCount: bigint } & Record<
  string,
  unknown
>;

function zeroModelTotals(): Record<string, bigint> {
  return Object.fromEntries(MODEL_SUM_FIELDS.map((field) => [field, 0n]));
}

/**
 * Sums the usage of an agent and all its sub-agents (via `parent_agent_id`, any depth) in one
 * recursive query: a row per agent with its own model usage and external API calls, and the
 * tree's total. Bad data with a cycle (`a -> b -> a`, or an agent its own parent) cannot hang it:
 * each path stops at an agent it has already visited, so every agent is counted once. `where`
 * narrows the usage (time range, user, connector, model, API), not the tree.
 *
 * @throws UnknownReferenceError when the root agent does not exist.
 * @throws UsageValidationError for a bad agent id or filter.
 *
 * @example
 * const tree = await sumAgentTreeUsage(db, 3, { where: { from: new Date("2026-03-01T00:00:00Z") } });
 * for (const a of tree.agents) console.log("  ".repeat(a.depth), a.agentId, a.modelUsage.tokenOutCount);
 * console.log(tree.total.modelUsage.tokenInCount, tree.total.externalApiUsage.callCount);
 */
export async function sumAgentTreeUsage(db: Database, agentId: number, options: AgentTreeUsageOptions = {}): Promise<AgentTreeUsage> {
  const issues: FieldIssue[] = [];
  if (typeof agentId !== "number" || !Number.isInteger(agentId) || agentId < 1 || agentId > MAX_INT32) {
    issues.push({ field: "agentId", reason: `must be a positive integer id, got ${String(agentId)}` });
  }
  checkOptionNames(options, ["where", "source", "rollups"], issues);
  if (typeof options !== "object" || options === null) throwIfIssues(issues);
  validateUsageFilter("modelUsage", options.where, issues, "where", TREE_FILTER_FIELDS);
  checkSource(options.source, issues);
  checkRollupsOption(options.rollups, issues);
  throwIfIssues(issues);

  const { modelId, externalApiId, ...common } = options.where ?? {};
  const rollups = options.rollups !== false;
  // The tree's ids are collected first and the usage summed for agent_id = ANY(them), passed as a
  // parameter: joined to the recursive walk instead, the scan could not run in parallel (7.5x
  // PolicySynth's own walk against 19x measured at 10M rows), and from a subquery the array was
  // scanned whole for every row and its size guessed (bench/SCALE.md).
  const uses = ["agent_id"] as const;
  const modelSums = Prisma.join(
    MODEL_SUM_FIELDS.map((field) => Prisma.sql`COALESCE(m.${quoted(field)}, 0)::bigint AS ${quoted(field)}`),
    ", ",
  );
  const rows = await reading(db, async (on) => {
    const tree = await on.reportPrisma.$queryRaw<{ id: number }[]>`WITH RECURSIVE ${agentTreeCte(agentId)} SELECT id FROM tree`;
    if (tree.length === 0) return [];
    const inTree = anyIdSql(columnSql("agent_id"), tree.map((a) => a.id));
    const modelRows = usageRelationSql({ table: "modelUsage", where: { ...common, modelId }, conditions: [inTree], rollups, source: options.source, uses });
    const apiRows = usageRelationSql({ table: "externalApiUsage", where: { ...common, externalApiId }, conditions: [inTree], rollups, uses });
    // The walk again, for the rows' order and depths (agents only; one added since the first walk shows no usage).
    return on.reportPrisma.$queryRaw<TreeSqlRow[]>`
    WITH RECURSIVE ${agentTreeCte(agentId)},
    model AS (
      SELECT agent_id, ${EVENTS_SQL} AS events, ${modelUsageSumColumnsSql()}
      FROM ${modelRows} AS ps_model_usage GROUP BY agent_id
    ),
    api AS (
      SELECT agent_id, ${EVENTS_SQL} AS events, COALESCE(SUM(call_count), 0)::bigint AS "callCount"
      FROM ${apiRows} AS ps_external_api_usage GROUP BY agent_id
    )
    SELECT t.id AS "agentId", t.parent_agent_id AS "parentAgentId", t.depth, ${modelSums},
      COALESCE(x.events, 0)::bigint AS "apiEvents", COALESCE(x."callCount", 0)::bigint AS "callCount"
    FROM tree t LEFT JOIN model m ON m.agent_id = t.id LEFT JOIN api x ON x.agent_id = t.id
    ORDER BY t.path`;
  });
  if (rows.length === 0) throw new UnknownReferenceError("ps_agents", agentId);

  const modelTotal = zeroModelTotals();
  const apiTotal = { events: 0n, callCount: 0n };
  const agents = rows.map((row): AgentTreeUsageRow => {
    const modelUsage: Record<string, bigint> = {};
    for (const field of MODEL_SUM_FIELDS) {
      const value = row[field] as bigint;
      modelUsage[field] = value;
      modelTotal[field] += value;
    }
    apiTotal.events += row.apiEvents;
    apiTotal.callCount += row.callCount;
    return {
      agentId: row.agentId,
      parentAgentId: row.parentAgentId,
      depth: row.depth,
      modelUsage: modelUsage as ModelUsageTotals,
      externalApiUsage: { events: row.apiEvents, callCount: row.callCount },
    };
  });
  return {
    rootAgentId: agentId,
    agents,
    total: { modelUsage: modelTotal as ModelUsageTotals, externalApiUsage: apiTotal },
  };
}
