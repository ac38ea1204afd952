/**
 * Internal SQL builders shared by the sums and the cost report: the WHERE clause of a usage
 * filter, the time-bucket expression in an IANA time zone, and group-by columns. Every value
 * goes in as a bound parameter through `Prisma.sql`; identifiers come only from the fixed
 * whitelists below. Not exported from the package barrel.
 */
import type { Database } from "./db";
import type { FieldIssue } from "./errors";
import { Prisma } from "./generated/prisma/client";
import {
  MODEL_USAGE_ALL_COUNTERS,
  type ExternalApiUsageFilter,
  type ExternalApiUsageGroupBy,
  type ModelUsageFilter,
  type ModelUsageGroupBy,
  type TimeBucket,
} from "./types";
import { MAX_FILTER_IDS, dateProblem, describeValue as describe, idProblem } from "./validation";

/** The two usage tables. */
export type UsageTable = "modelUsage" | "externalApiUsage";

/** Table names by usage table. */
export const USAGE_TABLE_NAMES: Readonly<Record<UsageTable, string>> = {
  modelUsage: "ps_model_usage",
  externalApiUsage: "ps_external_api_usage",
};

/**
 * `ids = ANY(…)` for a list of validated integer ids: the list goes in as one bound `int[]`
 * literal (`{1,2,3}`), not a JS array, which Prisma serializes element by element (as
 * intArrayLiteral's batches: a 1,000-agent tree's ids are bound once per branch that filters by
 * them). The planner sees a constant array either way (an unnamed statement is planned with its
 * parameters; EXPLAIN through Prisma shows it folded).
 */
export function anyIdSql(column: Prisma.Sql, ids: readonly number[]): Prisma.Sql {
  return Prisma.sql`${column} = ANY(${`{${ids.join(",")}}`}::int[])`;
}

/** Group-by field -> column of `ps_model_usage`. The only group columns SQL is built from. */
export const MODEL_USAGE_GROUP_COLUMNS: Readonly<Record<ModelUsageGroupBy, string>> = {
  userId: "user_id",
  agentId: "agent_id",
  connectorId: "connector_id",
  modelId: "model_id",
};

/** Group-by field -> column of `ps_external_api_usage`. */
export const EXTERNAL_API_USAGE_GROUP_COLUMNS: Readonly<Record<ExternalApiUsageGroupBy, string>> = {
  userId: "user_id",
  agentId: "agent_id",
  connectorId: "connector_id",
  externalApiId: "external_api_id",
};

/** Group columns by table. */
export const GROUP_COLUMNS: Readonly<Record<UsageTable, Readonly<Record<string, string>>>> = {
  modelUsage: MODEL_USAGE_GROUP_COLUMNS,
  externalApiUsage: EXTERNAL_API_USAGE_GROUP_COLUMNS,
};

/** The bucket sizes, in the order of their length. */
export const TIME_BUCKETS: readonly TimeBucket[] = ["hour", "day", "week", "month"];

/** Each bucket's `date_trunc` unit and its step for `generate_series`, as fixed SQL text. */
const BUCKET_SQL: Readonly<Record<TimeBucket, { unit: string; step: string }>> = {
  hour: { unit: "'hour'", step: "interval '1 hour'" },
  day: { unit: "'day'", step: "interval '1 day'" },
  week: { unit: "'week'", step: "interval '1 week'" },
  month: { unit: "'month'", step: "interval '1 month'" },
};

/**
 * A bucket's nominal length, to estimate how many buckets a zero-filled range holds (a DST day is
 * 23 or 25 hours, so the estimate is off by at most a few buckets a year).
 */
const BUCKET_NOMINAL_MS: Readonly<Record<Exclude<TimeBucket, "month">, number>> = {
  hour: 3_600_000,
  day: 86_400_000,
  week: 7 * 86_400_000,
};

/**
 * Most rows (buckets × groups) `fillEmptyBuckets` returns; a larger fill is refused before it is
 * run. 100,000 sum rows are about 50 MB of JavaScript objects; a day fill since year 0 (740,000
 * rows) or ten years of hours for a dozen agents is far past it.
 */
export const MAX_FILLED_ROWS = 100_000;

const FILTER_FIELDS: Readonly<Record<UsageTable, readonly string[]>> = {
  modelUsage: ["userId", "agentId", "connectorId", "modelId", "from", "to"],
  externalApiUsage: ["userId", "agentId", "connectorId", "externalApiId", "from", "to"],
};

/** Filter fields that take one id or a list of ids. */
const MULTI_ID_FIELDS = new Set(["agentId", "modelId", "externalApiId"]);

/** A filter of either table (the fields of both). */
export type AnyUsageFilter = ModelUsageFilter | ExternalApiUsageFilter;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * Checks a usage filter and appends one issue per bad field to `issues` (fields named
 * `${prefix}.${field}`), with the record/find module's id and date checks. Ids must be positive
 * INTEGERs; a list of ids may be empty (it matches nothing) and holds at most `MAX_FILTER_IDS`; `from` and `to` must be valid Dates with `from < to`; unknown fields are rejected,
 * and so are fields of the other table (`modelId` on an external API filter).
 *
 * @example
 * const issues: FieldIssue[] = [];
 * validateUsageFilter("modelUsage", { agentId: [1, 2], from: new Date("2026-01-01") }, issues);
 * // issues is empty
 */
export function validateUsageFilter(
  table: UsageTable,
  filter: unknown,
  issues: FieldIssue[],
  prefix = "where",
  allowedFields: readonly string[] = FILTER_FIELDS[table],
): void {
  if (filter === undefined) return;
  if (!isPlainObject(filter)) {
    issues.push({ field: prefix, reason: `must be an object, got ${describe(filter)}` });
    return;
  }
  for (const [key, value] of Object.entries(filter)) {
    const field = `${prefix}.${key}`;
    if (!allowedFields.includes(key)) {
      issues.push({ field, reason: `is not a filter field here (allowed: ${allowedFields.join(", ")})` });
      continue;
    }
    if (value === undefined) continue;
    if (key === "from" || key === "to") {
      const reason = dateProblem(value);
      if (reason) issues.push({ field, reason });
      continue;
    }
    if (Array.isArray(value) && MULTI_ID_FIELDS.has(key)) {
      if (value.length > MAX_FILTER_IDS) {
        issues.push({ field, reason: `must list at most ${MAX_FILTER_IDS} ids, got ${value.length}` });
        continue;
      }
      value.forEach((item, i) => {
        const reason = idProblem(item);
        if (reason) issues.push({ field: `${field}[${i}]`, reason });
      });
      continue;
    }
    const reason = idProblem(value);
    if (reason) issues.push({ field, reason });
  }
  const from = filter.from as Date;
  const to = filter.to as Date;
  if (dateProblem(from) === null && dateProblem(to) === null && !(from.getTime() < to.getTime())) {
    issues.push({ field: `${prefix}.to`, reason: `must be later than from (${from.toISOString()}), got ${to.toISOString()}` });
  }
}

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/**
 * `alias.column` (or `column`) as raw SQL. Both come from code, never from input; anything but a
 * plain lower-case identifier throws.
 *
 * @example
 * columnSql("agent_id", "u"); // u.agent_id
 */
export function columnSql(column: string, alias?: string): Prisma.Sql {
  if (!IDENTIFIER.test(column) || (alias !== undefined && !IDENTIFIER.test(alias))) {
    throw new Error(`not a plain SQL identifier: ${alias === undefined ? column : `${alias}.${column}`}`);
  }
  return Prisma.raw(alias === undefined ? column : `${alias}.${column}`);
}

const FILTER_COLUMNS: Readonly<Record<string, string>> = {
  userId: "user_id",
  agentId: "agent_id",
  connectorId: "connector_id",
  modelId: "model_id",
  externalApiId: "external_api_id",
};

/**
 * The conditions of a (validated) usage filter, one `Prisma.Sql` each, with every value bound as
 * a parameter. Column names are qualified with `alias` when given. Join them with
 * {@link whereSql}, or with `Prisma.join(conditions, " AND ")` inside a larger WHERE.
 *
 * @example
 * const conditions = usageFilterConditions({ userId: 7, from: new Date("2026-01-01") }, "u");
 * // [u.user_id = $1, u.created_at >= $2::timestamptz]
 */
export function usageFilterConditions(filter: AnyUsageFilter | undefined, alias?: string): Prisma.Sql[] {
  const conditions: Prisma.Sql[] = [];
  if (!filter) return conditions;
  const record = filter as Readonly<Record<string, unknown>>;
  for (const key of ["userId", "agentId", "connectorId", "modelId", "externalApiId"]) {
    const value = record[key];
    if (value === undefined) continue;
    const column = columnSql(FILTER_COLUMNS[key], alias);
    conditions.push(
      Array.isArray(value)
        ? anyIdSql(column, value as number[])
        : Prisma.sql`${column} = ${value as number}`,
    );
  }
  const createdAt = columnSql("created_at", alias);
  if (filter.from) conditions.push(Prisma.sql`${createdAt} >= ${filter.from}::timestamptz`);
  if (filter.to) conditions.push(Prisma.sql`${createdAt} < ${filter.to}::timestamptz`);
  return conditions;
}

/**
 * `WHERE c1 AND c2 ...`, or nothing when there are no conditions.
 *
 * @example
 * const where = whereSql(usageFilterConditions({ modelId: [1, 2] }));
 * await db.prisma.$queryRaw`SELECT count(*) FROM ps_model_usage ${where}`;
 */
export function whereSql(conditions: readonly Prisma.Sql[]): Prisma.Sql {
  return conditions.length === 0 ? Prisma.empty : Prisma.sql`WHERE ${Prisma.join(conditions, " AND ")}`;
}

/**
 * A time bucket as a group key that is cheap to compute per row, and how to turn a key into the
 * bucket's start instant — applied to the grouped rows only, so a 1M-row sum converts a few
 * hundred keys instead of a million timestamps. In UTC (no DST) the key is the UTC wall date (or
 * hour) and the start is that wall time read as UTC: grouping by the UTC date is the fastest
 * form measured (PostgreSQL 15, 1M rows: 1.27x faster than `date_trunc(…) AT TIME ZONE 'UTC'`
 * per row; the three-argument `date_trunc` with zone "UTC" is slower still). In other zones the
 * key is the three-argument `date_trunc` itself, which keeps the two hours of a fall-back night
 * apart and beats truncating the local wall time and converting back (237 ms against 494 ms); it
 * truncates in local time, so a day across a DST change is 23 or 25 hours and weeks start on
 * Monday. Its value is not always the bucket's first instant, so `start` corrects the few keys
 * at a transition ({@link bucketStartOfKeySql}).
 *
 * @example
 * const { key, start } = timeBucketKeySql("day", "UTC");
 * await db.prisma.$queryRaw`SELECT ${start(Prisma.raw("k"))} AS "bucketStart", n FROM (SELECT ${key} AS k, count(*) AS n FROM ps_model_usage GROUP BY 1) g`;
 */
export function timeBucketKeySql(
  bucket: TimeBucket,
  timeZone: string,
  column: Prisma.Sql = Prisma.raw("created_at"),
): { key: Prisma.Sql; start: (key: Prisma.Sql) => Prisma.Sql } {
  const unit = Prisma.raw(BUCKET_SQL[bucket].unit);
  if (isUtcZone(timeZone)) {
    const wall = Prisma.sql`(${column} AT TIME ZONE 'UTC')`;
    const key =
      bucket === "hour" ? Prisma.sql`date_trunc('hour', ${wall})` : bucket === "day" ? Prisma.sql`${wall}::date` : Prisma.sql`date_trunc(${unit}, ${wall})::date`;
    return { key, start: (k) => Prisma.sql`(${k}::timestamp AT TIME ZONE 'UTC')` };
  }
  return { key: zonedKeySql(bucket, timeZone, column), start: (k) => bucketStartOfKeySql(bucket, timeZone, k) };
}

/**
 * The group key of `t`'s bucket in a zone other than UTC. Days, weeks and months: the
 * three-argument `date_trunc`. Hours: that (the local hour at t's own UTC offset) paired with the
 * local wall hour, because the first alone is not one bucket: Pacific/Chatham falls back from
 * 03:45+13:45 to 02:45+12:45, and both 03:00+13:45 and 02:00+12:45 are 13:15Z. The pair costs a
 * second zone conversion per row (PostgreSQL 15, 1M rows grouped by Berlin hour: 0.8 s -> 1.2-1.7 s);
 * UTC and day/week/month keys are unchanged.
 */
function zonedKeySql(bucket: TimeBucket, timeZone: string, t: Prisma.Sql): Prisma.Sql {
  const unit = Prisma.raw(BUCKET_SQL[bucket].unit);
  const truncated = Prisma.sql`date_trunc(${unit}, ${t}, ${timeZone}::text)`;
  if (bucket !== "hour") return truncated;
  return Prisma.sql`ARRAY[${truncated}, date_trunc('hour', (${t}) AT TIME ZONE ${timeZone}::text) AT TIME ZONE 'UTC']`;
}

/**
 * The first instant of the local bucket whose key ({@link zonedKeySql}) is `k` (NULL stays
 * NULL). The key's instant is not always that instant: `date_trunc('hour', t, tz)` keeps t's own UTC offset,
 * so in Australia/Lord_Howe (30-minute DST) the hour after spring-forward (02:30+11) gets the key
 * 02:00+11 = 01:30+10:30, inside the previous hour; and a local midnight that happens twice
 * (America/Havana falls back from 01:00 to 00:00) resolves to the later one, after the day has
 * begun. A key that truncates to itself and whose previous microsecond is another bucket is
 * already the start (every bucket but those at a transition); otherwise the start is the earliest
 * instant near k with key k, found on a 1-minute grid over [k - 4 h, k + 2 h] and then to the
 * second (offsets and transitions since 1970 are whole seconds, the largest jump near a bucket
 * start is Antarctica/Casey's 3 h). Meant for grouped keys, not per usage row.
 */
function bucketStartOfKeySql(bucket: TimeBucket, timeZone: string, k: Prisma.Sql): Prisma.Sql {
  const keyOf = (t: Prisma.Sql) => zonedKeySql(bucket, timeZone, t);
  const at = bucket === "hour" ? Prisma.sql`(${k})[1]` : k;
  return Prisma.sql`(CASE WHEN ${keyOf(at)} = ${k} AND ${keyOf(Prisma.sql`${at} - interval '1 microsecond'`)} <> ${k} THEN ${at}
    ELSE (SELECT min(s) FROM
      (SELECT min(g) AS g0 FROM generate_series(${at} - interval '4 hours', ${at} + interval '2 hours', interval '1 minute') AS g
        WHERE ${keyOf(Prisma.raw("g"))} = ${k}) AS m,
      generate_series(m.g0 - interval '59 seconds', m.g0, interval '1 second') AS s
      WHERE ${keyOf(Prisma.raw("s"))} = ${k}) END)`;
}

/** Zone names that are UTC itself (no offset, no DST), lower-cased. */
const UTC_NAMES = new Set(["utc", "etc/utc", "uct", "etc/uct", "universal", "etc/universal", "zulu", "etc/zulu", "gmt", "etc/gmt", "greenwich", "etc/greenwich"]);

/** True for a zone name that is UTC itself (no offset, no DST). */
export function isUtcZone(timeZone: string): boolean {
  return UTC_NAMES.has(timeZone.toLowerCase());
}

/**
 * A one-column set `"bucketKey"` holding the key ({@link timeBucketKeySql}) of every bucket from
 * the one holding `first` to the one holding `last` (both timestamptz SQL), in `timeZone`, for
 * zero-filling: join it to the grouped keys, then turn keys into starts. It is the distinct keys
 * of candidate instants, so it can never disagree with the keys of the data: hours take an
 * instant every 15 minutes (a 30-minute DST change makes 30-minute hours) plus `last`; days,
 * weeks and months take each local date's midnight (a midnight that does not exist resolves into
 * the day anyway, and a skipped day such as Pacific/Apia's 30 Dec 2011 collapses into the next).
 *
 * @example
 * const series = bucketSeriesSql("day", "UTC", Prisma.sql`${from}::timestamptz`, Prisma.sql`${to}::timestamptz`);
 * await db.prisma.$queryRaw`SELECT "bucketKey" FROM ${series} ORDER BY 1`;
 */
export function bucketSeriesSql(bucket: TimeBucket, timeZone: string, first: Prisma.Sql, last: Prisma.Sql): Prisma.Sql {
  const { key } = timeBucketKeySql(bucket, timeZone, Prisma.raw("c"));
  if (bucket === "hour") {
    return Prisma.sql`(SELECT DISTINCT ${key} AS "bucketKey" FROM (
      SELECT generate_series(${first}, ${last}, interval '15 minutes') AS c UNION ALL SELECT ${last}) AS candidates
      WHERE c IS NOT NULL)`;
  }
  const unit = Prisma.raw(BUCKET_SQL[bucket].unit);
  const step = Prisma.raw(BUCKET_SQL[bucket].step);
  const wall = (t: Prisma.Sql) => Prisma.sql`date_trunc(${unit}, (${t}) AT TIME ZONE ${timeZone}::text)`;
  return Prisma.sql`(SELECT DISTINCT ${key} AS "bucketKey" FROM (
      SELECT d AT TIME ZONE ${timeZone}::text AS c FROM generate_series(${wall(first)}, ${wall(last)}, ${step}) AS d) AS candidates)`;
}

/**
 * Group-by fields checked against the table's whitelist: unknown names and repeats become issues
 * (field `groupBy`). Returns the fields in the order given.
 *
 * @example
 * validateGroupBy("modelUsage", ["agentId", "modelId"], issues); // ["agentId", "modelId"]
 */
export function validateGroupBy(table: UsageTable, groupBy: unknown, issues: FieldIssue[]): string[] {
  if (groupBy === undefined) return [];
  if (!Array.isArray(groupBy)) {
    issues.push({ field: "groupBy", reason: `must be an array of field names, got ${describe(groupBy)}` });
    return [];
  }
  const allowed = Object.keys(GROUP_COLUMNS[table]);
  const seen = new Set<string>();
  for (const name of groupBy) {
    if (typeof name !== "string" || !allowed.includes(name)) {
      issues.push({ field: "groupBy", reason: `${describe(name)} is not a group field (allowed: ${allowed.join(", ")})` });
    } else if (seen.has(name)) {
      issues.push({ field: "groupBy", reason: `"${name}" is given twice` });
    } else {
      seen.add(name);
    }
  }
  return [...seen];
}

/**
 * The bucket name checked against {@link TIME_BUCKETS} (field `bucket`).
 *
 * @example
 * validateBucket("week", issues); // "week"
 */
export function validateBucket(bucket: unknown, issues: FieldIssue[]): TimeBucket | undefined {
  if (bucket === undefined) return undefined;
  if (typeof bucket === "string" && (TIME_BUCKETS as readonly string[]).includes(bucket)) return bucket as TimeBucket;
  issues.push({ field: "bucket", reason: `${describe(bucket)} is not a bucket (allowed: ${TIME_BUCKETS.join(", ")})` });
  return undefined;
}

/**
 * About how many buckets lie from the one holding `first` to the one holding `last` (exact for
 * months, within a few per year for DST days and hours), for the zero-fill limit.
 *
 * @example
 * filledBucketCount("day", new Date("2026-01-01"), new Date("2026-01-31T12:00:00Z")); // 31
 */
export function filledBucketCount(bucket: TimeBucket, first: Date, last: Date): number {
  if (last.getTime() < first.getTime()) return 0;
  if (bucket === "month") {
    return (last.getUTCFullYear() - first.getUTCFullYear()) * 12 + last.getUTCMonth() - first.getUTCMonth() + 1;
  }
  return Math.floor((last.getTime() - first.getTime()) / BUCKET_NOMINAL_MS[bucket]) + 1;
}

/**
 * The issue (field `fillEmptyBuckets`) for a zero fill of `buckets` × `groups` rows when that is
 * more than {@link MAX_FILLED_ROWS}, saying how to narrow it; else null.
 *
 * @example
 * filledRowsProblem("hour", 87_661, 12, false); // "would return about 1,051,932 rows (...)..."
 */
export function filledRowsProblem(bucket: TimeBucket, buckets: number, groups: number, grouped: boolean): string | null {
  const rows = buckets * groups;
  if (rows <= MAX_FILLED_ROWS) return null;
  const n = (x: number) => x.toLocaleString("en-US");
  const shape = grouped ? `${n(buckets)} ${bucket} buckets × ${n(groups)} groups` : `${n(buckets)} ${bucket} buckets`;
  return (
    `would return about ${n(rows)} rows (${shape}), more than the limit of ${n(MAX_FILLED_ROWS)}; ` +
    `narrow it: a shorter where.from..where.to range, a coarser bucket, fewer groups (groupBy or where), or no fillEmptyBuckets`
  );
}

/**
 * Refuses, before any query, a zero fill whose explicit from..to range alone holds more than
 * {@link MAX_FILLED_ROWS} buckets (field `fillEmptyBuckets`). Ranges taken from the data and the
 * group count are checked by the sum itself, with a query.
 *
 * @example
 * checkFilledRange("hour", { from: new Date("2026-01-01"), to: new Date("2026-01-02") }, issues); // fine: 24
 */
export function checkFilledRange(bucket: TimeBucket, filter: AnyUsageFilter | undefined, issues: FieldIssue[]): void {
  if (!(filter?.from instanceof Date) || !(filter.to instanceof Date)) return;
  const buckets = filledBucketCount(bucket, filter.from, new Date(filter.to.getTime() - 1));
  const reason = filledRowsProblem(bucket, buckets, 1, false);
  if (reason) issues.push({ field: "fillEmptyBuckets", reason });
}

/**
 * Time zone names each database knows, lower-cased -> its own spelling; read once per client
 * reads go to (the primary's, or a replica's: a call routed to a replica never needs the primary).
 */
const zoneNames = new WeakMap<object, Promise<Map<string, string>>>();

function knownZones(db: Database): Promise<Map<string, string>> {
  const client = db.reportPrisma;
  let names = zoneNames.get(client);
  if (!names) {
    names = client
      .$queryRaw<{ name: string }[]>`SELECT name FROM pg_timezone_names`
      .then((rows) => new Map(rows.map((r) => [r.name.toLowerCase(), r.name])));
    // A failed read (e.g. the server was down) is not cached.
    names.catch(() => zoneNames.delete(client));
    zoneNames.set(client, names);
  }
  return names;
}

/** Longest zone name accepted; real IANA names are under 40 characters. */
const MAX_ZONE_LENGTH = 64;

/**
 * The IANA time zone the database will compute in, checked against the database's own
 * `pg_timezone_names` (the list PostgreSQL actually uses, which differs between builds and from
 * Node's `Intl` list); matching ignores case and returns the database's spelling. POSIX offset
 * strings such as `UTC+3` or `<+05>-5`, which PostgreSQL would also accept, are refused.
 * An unknown zone adds an issue for field `timeZone` and returns undefined. `"UTC"` needs no lookup.
 *
 * @example
 * const zone = await resolveTimeZone(db, "europe/berlin", issues); // "Europe/Berlin"
 */
export async function resolveTimeZone(db: Database, timeZone: unknown, issues: FieldIssue[]): Promise<string | undefined> {
  if (timeZone === undefined || timeZone === "UTC") return "UTC";
  if (typeof timeZone !== "string" || timeZone.length === 0 || timeZone.length > MAX_ZONE_LENGTH) {
    issues.push({ field: "timeZone", reason: `must be an IANA time zone name such as "Europe/Berlin", got ${describe(timeZone)}` });
    return undefined;
  }
  const name = (await knownZones(db)).get(timeZone.toLowerCase());
  if (name === undefined) {
    issues.push({ field: "timeZone", reason: `${describe(timeZone)} is not a time zone this database knows` });
  }
  return name;
}

/**
 * Unknown option names (typos such as `groupby`) as issues, so they are not silently ignored.
 *
 * @example
 * checkOptionNames({ groupby: [] }, ["where", "groupBy"], issues); // issue for field "groupby"
 */
export function checkOptionNames(options: unknown, allowed: readonly string[], issues: FieldIssue[]): void {
  if (options === undefined) return;
  if (!isPlainObject(options)) {
    issues.push({ field: "options", reason: `must be an object, got ${describe(options)}` });
    return;
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) issues.push({ field: key, reason: `is not an option here (allowed: ${allowed.join(", ")})` });
  }
}

/**
 * `COALESCE(SUM(col), 0)::bigint AS "field"` for every model usage counter (the 14 token counters
 * and `webSearchCount`): exact 64-bit sums (the adapters return PostgreSQL bigint as JS bigint).
 *
 * @example
 * await db.prisma.$queryRaw`SELECT ${modelUsageSumColumnsSql()} FROM ps_model_usage`;
 */
export function modelUsageSumColumnsSql(alias?: string): Prisma.Sql {
  return Prisma.join(
    MODEL_USAGE_ALL_COUNTERS.map(([field, column]) => Prisma.sql`COALESCE(SUM(${columnSql(column, alias)}), 0)::bigint AS ${Prisma.raw(`"${field}"`)}`),
    ", ",
  );
}

/**
 * The recursive CTE `tree(id, parent_agent_id, depth, path)`: an agent and all its sub-agents via
 * `parent_agent_id`, at any depth, in one query. `path` holds the ids from the root; an agent
 * already on the path is not entered again, so a cycle in bad data ends the walk instead of
 * looping. Order by `path` for depth-first order (each agent before its sub-agents).
 *
 * @example
 * await db.prisma.$queryRaw`WITH RECURSIVE ${agentTreeCte(7)} SELECT id, depth FROM tree ORDER BY path`;
 */
export function agentTreeCte(rootAgentId: number): Prisma.Sql {
  return Prisma.sql`tree AS (
      SELECT a.id, a.parent_agent_id, 0 AS depth, ARRAY[a.id] AS path
      FROM ps_agents a WHERE a.id = ${rootAgentId}
      UNION ALL
      SELECT c.id, c.parent_agent_id, t.depth + 1, t.path || c.id
      FROM ps_agents c JOIN tree t ON c.parent_agent_id = t.id
      WHERE c.id <> ALL (t.path)
    )`;
}
