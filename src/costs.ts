/**
 * Cost reports: tokens and cost side by side, model usage and external API usage together,
 * priced with the price period in force when each usage row was created, per currency.
 *
 * Everything is computed in the database with `numeric`: usage is summed per (group, price
 * period) first and the sums are multiplied by the period's rates (cost is linear in tokens, so
 * this equals pricing every row). Amounts come back as exact decimal strings, never floats;
 * round them only for display.
 *
 * Cost rules, all rates per million tokens (cost = tokens × rate / 1,000,000); each counter is
 * priced on its own, so a token must be counted in one counter only. First the rates of the
 * usage's service tier are resolved (as PolicySynth's `resolvePriceConfigurationForContext`
 * does), from the period's standard rates S and the tier's rates T (flex*, priority* or fast*;
 * none for standard usage and for tier text this package does not know):
 * - input rate: T.in, else S.in (costInTokensPerMillion).
 * - cached rate: T.cachedIn, else S.cached (costInCachedContextTokensPerMillion), else the input rate.
 * - output rate: T.out, else S.out (costOutTokensPerMillion).
 * - a long-context rate (in, cached, out): with no S.long rate, the resolved base rate above; else,
 *   when the tier scales long context (fast always, flex and priority only with
 *   flexPriorityTokensEnabledOnLongContext) and the standard base rate is not 0,
 *   resolved base × S.long / S.base; else S.long (the standard long-context rate).
 * - a kind's output rate (reasoning, audio, image; this package's own): none set, the output
 *   rate; else, under a tier, S.kind × output rate / S.out (S.out 0: S.kind); else S.kind.
 * Then each counter:
 * - `token_in_count`: the input rate.
 * - `token_in_cached_context_count`: the cached rate.
 * - `token_in_cache_write_count`: input rate × cacheWriteInputCostMultiplier (no multiplier: 1).
 * - `token_out_count`: the output rate.
 * - `token_out_reasoning|audio|image_count`: the kind's rate.
 * - `long_context_token_in_count`: the long-context input rate.
 * - `long_context_token_in_cached_context_count`: the long-context cached rate (whose standard
 *   base is S.cached, else S.in).
 * - `long_context_token_in_cache_write_count`: long-context input rate × cacheWriteInputCostMultiplier.
 * - `long_context_token_out_count`: the long-context output rate.
 * - `long_context_token_out_reasoning|audio|image_count`: the long-context output rate when
 *   S has longContextCostOutTokensPerMillion, else the kind's rate (there are no long-context kind
 *   rates; the long-context surcharge is the more specific price of the two).
 * - Every token cost above × (1 + regionalProcessingMargin / 100) when the usage's
 *   `regional_processing` is set and the period has a margin.
 * - `web_search_count` × costPerThousandWebSearches / 1,000 (no rate: 0), not margined.
 * - External API usage: `call_count` × pricePerUnit.
 * For standard usage these are exactly the rules before tiers existed. Usage with no price period
 * in force at its `created_at` is unpriced: it is reported in rows with `currency: null` and null
 * costs, counted in `unpricedEvents`, never as a silent 0.
 */
import type { Database } from "./db";
import { checkRollupsOption, keyColumnsOf, usageRelationSql } from "./reports/rollups";
import { checkSource, type ModelUsageSource } from "./reports/usageItems";
import { UnknownReferenceError, UsageValidationError, type FieldIssue } from "./errors";
import { Prisma } from "./generated/prisma/client";
import { MAX_INT32, MODEL_USAGE_COUNTERS, type ModelUsageCounter, type TimeBucket, type UsageFilter } from "./types";
import {
  agentTreeCte,
  anyIdSql,
  columnSql,
  checkOptionNames,
  resolveTimeZone,
  timeBucketKeySql,
  validateBucket,
  validateUsageFilter,
} from "./usageSql";
import { readRouted } from "./usageShared";
import { checkBucketStarts } from "./validation";

/** Dimensions a cost report can be grouped by. `modelId` is null on external API usage and `externalApiId` on model usage. */
export type CostReportGroupBy = "userId" | "agentId" | "connectorId" | "modelId" | "externalApiId";

/**
 * Which usage a cost report covers. A `modelId` filter leaves external API usage out, an
 * `externalApiId` filter leaves model usage out; give both to keep some of each.
 */
export interface CostReportFilter extends UsageFilter {
  readonly modelId?: number | readonly number[];
  readonly externalApiId?: number | readonly number[];
}

/** Options of {@link costReport}. */
export interface CostReportOptions {
  readonly where?: CostReportFilter;
  /** One dimension or several; rows are per combination of their values. Default: none. */
  readonly groupBy?: CostReportGroupBy | readonly CostReportGroupBy[];
  /** Also group by the start of each hour, day, week (Monday) or month in `timeZone`. */
  readonly bucket?: TimeBucket;
  /** IANA zone the buckets are cut in, e.g. `Europe/Berlin`. Default: `UTC`. */
  readonly timeZone?: string;
  /**
   * Model usage from the ledger (`"ledger"`, default) or from PolicySynth's per-call
   * `ps_model_usage_item` rows (`"items"`), never both; external API usage is always the ledger's.
   */
  readonly source?: ModelUsageSource;
  /**
   * Whole 15-minute slots from the rollups (default true), the ledger only where a slot is cut by
   * the range, a bucket or a price period starting inside it; false reads the ledger alone. Both
   * give the same report (see src/reports/rollups.ts).
   */
  readonly rollups?: boolean;
}

/** Options of {@link agentTreeCostReport}: those of {@link costReport} without an agent filter. */
export interface AgentTreeCostReportOptions extends Omit<CostReportOptions, "where"> {
  readonly where?: Omit<CostReportFilter, "agentId">;
}

/** Summed token counters of model usage (all 14 `ps_model_usage` counters), exact 64-bit sums as in the usage sums. */
export type TokenTotals = { readonly [K in ModelUsageCounter]: bigint };

/** Sums and costs of one currency (null: usage no price period covers). Amounts are exact decimal strings. */
export interface CostAmounts {
  /** The currency of every amount in this row; null for unpriced usage, whose costs are null. */
  readonly currency: string | null;
  /** Model usage rows summed. */
  readonly modelEvents: bigint;
  readonly tokens: TokenTotals;
  /** Web searches of the model usage (`webSearchCount` summed); priced per thousand within `modelCost`. */
  readonly webSearchCount: bigint;
  /** Cost of the model usage (tokens and web searches), e.g. `"12.3456789"`; null when unpriced. */
  readonly modelCost: string | null;
  /** External API usage rows summed. */
  readonly externalApiEvents: bigint;
  /** Sum of their `call_count` (the units priced). */
  readonly externalApiCalls: bigint;
  readonly externalApiCost: string | null;
  /** modelCost + externalApiCost. */
  readonly cost: string | null;
}

/** One row of a cost report: a group (its keys are present only when grouped by them) in one currency. */
export interface CostReportRow extends CostAmounts {
  /** Start of the bucket (an instant; its wall time in `timeZone` is the bucket's start). */
  readonly bucketStart?: Date;
  readonly userId?: number;
  readonly agentId?: number | null;
  readonly connectorId?: number | null;
  readonly modelId?: number | null;
  readonly externalApiId?: number | null;
}

/** A cost report: rows, and totals per currency (currencies are never added together). */
export interface CostReport {
  /** Sorted by bucket, then the group keys in `groupBy` order (nulls last), then currency (unpriced last). */
  readonly rows: readonly CostReportRow[];
  /** One entry per currency over all rows, plus one with `currency: null` if some usage is unpriced. */
  readonly totals: readonly CostAmounts[];
  /** Usage rows (model and external API) no price period covers. */
  readonly unpricedEvents: bigint;
}

/** An agent of the tree an {@link agentTreeCostReport} covers. */
export interface AgentTreeNode {
  readonly agentId: number;
  readonly parentAgentId: number | null;
  /** 0 for the root, 1 for its sub-agents, ... */
  readonly depth: number;
}

/** A cost report over an agent and all its sub-agents: rows per agent, totals for the tree. */
export interface AgentTreeCostReport extends CostReport {
  readonly rootAgentId: number;
  /** The agents of the tree, depth-first: each agent before its sub-agents, siblings by id. */
  readonly agents: readonly AgentTreeNode[];
}

const GROUP_BY: readonly CostReportGroupBy[] = ["userId", "agentId", "connectorId", "modelId", "externalApiId"];
const COLUMN: Record<CostReportGroupBy, string> = {
  userId: "user_id",
  agentId: "agent_id",
  connectorId: "connector_id",
  modelId: "model_id",
  externalApiId: "external_api_id",
};
const FILTER_FIELDS = ["userId", "agentId", "connectorId", "modelId", "externalApiId", "from", "to"] as const;
const OPTION_NAMES = ["where", "groupBy", "bucket", "timeZone", "source", "rollups"] as const;

type Side = "model" | "externalApi";

interface ReportPlan {
  readonly groupBy: readonly CostReportGroupBy[];
  readonly bucket?: TimeBucket;
  readonly timeZone: string;
  readonly where: CostReportFilter;
  readonly sides: readonly Side[];
  readonly source?: ModelUsageSource;
  readonly rollups: boolean;
}

function checkIdValue(value: unknown, field: string, issues: FieldIssue[]): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0 || value > MAX_INT32) {
    issues.push({ field, reason: "must be a positive integer id" });
  }
}

/** `groupBy` as a list: one dimension or several, each of either table, none twice. */
function checkGroupBy(groupBy: unknown, issues: FieldIssue[]): CostReportGroupBy[] {
  if (groupBy === undefined) return [];
  const list: unknown[] = Array.isArray(groupBy) ? groupBy : [groupBy];
  const result: CostReportGroupBy[] = [];
  for (const g of list) {
    if (!GROUP_BY.includes(g as CostReportGroupBy)) {
      issues.push({ field: "groupBy", reason: `${JSON.stringify(g)} is not a group field (allowed: ${GROUP_BY.join(", ")})` });
    } else if (result.includes(g as CostReportGroupBy)) {
      issues.push({ field: "groupBy", reason: `"${String(g)}" is given twice` });
    } else {
      result.push(g as CostReportGroupBy);
    }
  }
  return result;
}

/**
 * Validates the options (everything a caller can get wrong, the time zone against the
 * database's list) and decides which usage tables to read.
 */
async function plan(db: Database, options: CostReportOptions, issues: FieldIssue[]): Promise<ReportPlan> {
  checkOptionNames(options, OPTION_NAMES, issues);
  const opts = (typeof options === "object" && options !== null ? options : {}) as CostReportOptions;
  validateUsageFilter("modelUsage", opts.where, issues, "where", FILTER_FIELDS);
  const where: CostReportFilter = typeof opts.where === "object" && opts.where !== null ? opts.where : {};
  const groupBy = checkGroupBy(opts.groupBy, issues);
  const bucket = validateBucket(opts.bucket, issues);
  const timeZone = (await resolveTimeZone(db, opts.timeZone, issues)) ?? "UTC";
  checkSource(opts.source, issues);
  checkRollupsOption(opts.rollups, issues);
  const hasModel = where.modelId !== undefined;
  const hasApi = where.externalApiId !== undefined;
  const sides: Side[] = hasModel === hasApi ? ["model", "externalApi"] : hasModel ? ["model"] : ["externalApi"];
  return { groupBy, bucket, timeZone, where, sides, source: opts.source, rollups: opts.rollups !== false };
}

const ident = (column: string) => Prisma.raw(`u."${column}"`);

/** The usage one side of the report reads (see src/reports/rollups.ts); `agentTree` restricts agents to the tree. */
function usageRows(side: Side, p: ReportPlan, treeIds: readonly number[] | undefined): Prisma.Sql {
  const agentTree = treeIds !== undefined;
  // The other table's id filter only decides which tables are read (see CostReportFilter).
  const { modelId, externalApiId, ...shared } = p.where;
  return usageRelationSql({
    table: side === "model" ? "modelUsage" : "externalApiUsage",
    where: side === "model" ? { ...shared, modelId } : { ...shared, externalApiId },
    // The ids as a parameter: a constant array the planner hashes and counts (from a subquery,
    // each row scanned the whole array and the planner guessed its size).
    conditions: agentTree ? [anyIdSql(columnSql("agent_id"), treeIds)] : [],
    bucket: p.bucket ? { bucket: p.bucket, timeZone: p.timeZone } : undefined,
    priced: true,
    rollups: p.rollups,
    source: side === "model" ? p.source : undefined,
    uses: keyColumnsOf([...p.groupBy.map((g) => COLUMN[g]), ...(agentTree ? ["agent_id"] : [])]),
  });
}

/** Key column names k0, k1, ... in the order: bucket (if any), then groupBy. */
function keyNames(p: ReportPlan): string[] {
  const n = (p.bucket ? 1 : 0) + p.groupBy.length;
  return Array.from({ length: n }, (_, i) => `k${i}`);
}

/** The key expressions of one side, aliased k0, k1, ... */
function keyExpressions(side: Side, p: ReportPlan): Prisma.Sql[] {
  const keys: Prisma.Sql[] = [];
  // The bucket's key per row; it becomes the bucket's start once grouped (buildQuery).
  if (p.bucket) keys.push(timeBucketKeySql(p.bucket, p.timeZone, Prisma.raw("u.created_at")).key);
  for (const g of p.groupBy) {
    const foreign = (g === "modelId" && side !== "model") || (g === "externalApiId" && side !== "externalApi");
    keys.push(foreign ? Prisma.sql`NULL::integer` : ident(COLUMN[g]));
  }
  return keys.map((k, i) => Prisma.sql`${k} AS ${Prisma.raw(`k${i}`)}`);
}

const COUNTER_COLUMNS = MODEL_USAGE_COUNTERS.map(([, column]) => column);

/**
 * The group's tier's own rate of one kind: null for standard usage, for tier text this package
 * does not know, and for a rate the period lacks.
 */
const tierRate = (kind: "in" | "cached_in" | "out") =>
  `CASE m.service_tier WHEN 'flex' THEN p.flex_tokens_${kind} WHEN 'priority' THEN p.priority_tokens_${kind} WHEN 'fast' THEN p.fast_tokens_${kind} END`;

/**
 * The resolved rates of one group of summed usage `m.*` (one price period `p.*`, one service
 * tier, with or without regional processing) as the LATERAL subquery `r` (see the rules at the
 * top of this file): input, cached and output rates; whether the tier has rates (`tiered`) and
 * scales long context (`scaled`); the margin factor.
 */
const RESOLVED_RATES = Prisma.raw(`CROSS JOIN LATERAL (SELECT
      COALESCE(${tierRate("in")}, p.cost_in_tokens_per_million) AS in_rate,
      COALESCE(${tierRate("cached_in")}, p.cost_in_cached_context_tokens_per_million,
        ${tierRate("in")}, p.cost_in_tokens_per_million) AS cached_rate,
      COALESCE(${tierRate("out")}, p.cost_out_tokens_per_million) AS out_rate,
      m.service_tier IN ('flex', 'priority', 'fast') AS tiered,
      (m.service_tier = 'fast' OR (m.service_tier IN ('flex', 'priority') AND p.flex_priority_tokens_enabled_on_long_context)) AS scaled,
      CASE WHEN m.regional AND p.regional_processing_margin IS NOT NULL
        THEN 1 + p.regional_processing_margin * 0.01 ELSE 1 END AS margin
    ) r`);

/**
 * Cost (per million) of `tokens` at a long-context rate: with no standard long-context rate
 * `standardLong`, the resolved base rate `base`; scaled (and the standard base rate
 * `standardBase` not 0), base × standardLong / standardBase, multiplied out first and divided
 * once: numeric division keeps at least 16 significant digits and at least the dividend's 24
 * decimal places (rates are numeric(24,12)), so the term is exact whenever the quotient has at
 * most 24 decimals and otherwise off by less than 5e-25 per million tokens' price unit (5e-31 of
 * the currency); else standardLong.
 */
function longContextCost(tokens: string, base: string, standardBase: string, standardLong: string): string {
  return `CASE WHEN ${standardLong} IS NULL THEN ${tokens} * ${base}
      WHEN r.scaled AND ${standardBase} <> 0 THEN ${tokens} * ${base} * ${standardLong} / ${standardBase}
      ELSE ${tokens} * ${standardLong} END`;
}

/**
 * Cost (per million) of `tokens` of an output kind whose own standard rate is `kindRate` (see the
 * rules): under a tier scaled like the output rate, multiplied first and divided once as in
 * {@link longContextCost}.
 */
function kindCost(tokens: string, kindRate: string): string {
  return `CASE WHEN ${kindRate} IS NULL THEN ${tokens} * r.out_rate
      WHEN r.tiered AND p.cost_out_tokens_per_million <> 0 THEN ${tokens} * r.out_rate * ${kindRate} / p.cost_out_tokens_per_million
      ELSE ${tokens} * ${kindRate} END`;
}

/** Cost (per million) of long-context `tokens` of an output kind: the long-context output rate if the period has one, else the kind's rate. */
function longContextKindCost(tokens: string, kindRate: string): string {
  return `CASE WHEN p.long_context_cost_out_tokens_per_million IS NULL THEN ${kindCost(tokens, kindRate)}
      ELSE ${longContextOutCost(tokens)} END`;
}

const MULTIPLIER = "COALESCE(p.cache_write_input_cost_multiplier, 1)";
const longContextInCost = (tokens: string) =>
  longContextCost(tokens, "r.in_rate", "p.cost_in_tokens_per_million", "p.long_context_cost_in_tokens_per_million");
const longContextOutCost = (tokens: string) =>
  longContextCost(tokens, "r.out_rate", "p.cost_out_tokens_per_million", "p.long_context_cost_out_tokens_per_million");

/**
 * Model cost of summed counters `m.*` at price period `p.*` and resolved rates `r.*` (see the
 * rules at the top of this file): token costs × the margin factor, then web searches.
 */
const MODEL_COST = Prisma.raw(`((
    m.token_in_count * r.in_rate
  + m.token_in_cached_context_count * r.cached_rate
  + m.token_in_cache_write_count * ${MULTIPLIER} * r.in_rate
  + ${longContextInCost("m.long_context_token_in_count")}
  + ${longContextCost(
    "m.long_context_token_in_cached_context_count",
    "r.cached_rate",
    "COALESCE(p.cost_in_cached_context_tokens_per_million, p.cost_in_tokens_per_million)",
    "p.long_context_cost_in_cached_context_tokens_per_million",
  )}
  + ${longContextInCost(`m.long_context_token_in_cache_write_count * ${MULTIPLIER}`)}
  + m.token_out_count * r.out_rate
  + ${kindCost("m.token_out_reasoning_count", "p.cost_out_reasoning_tokens_per_million")}
  + ${kindCost("m.token_out_audio_count", "p.cost_out_audio_tokens_per_million")}
  + ${kindCost("m.token_out_image_count", "p.cost_out_image_tokens_per_million")}
  + ${longContextOutCost("m.long_context_token_out_count")}
  + ${longContextKindCost("m.long_context_token_out_reasoning_count", "p.cost_out_reasoning_tokens_per_million")}
  + ${longContextKindCost("m.long_context_token_out_audio_count", "p.cost_out_audio_tokens_per_million")}
  + ${longContextKindCost("m.long_context_token_out_image_count", "p.cost_out_image_tokens_per_million")}
  ) * r.margin * 0.000001
  + m.web_search_count * COALESCE(p.cost_per_thousand_web_searches, 0) * 0.001)`);
// × 0.000001 and × 0.001 rather than / 1000000 and / 1000: numeric multiplication is exact,
// numeric division rounds. The only divisions are those of derived rates (longContextCost,
// kindCost), each done once after its multiplications.

/**
 * A group whose rows net to no event is left out: with rollups, a unit priced whole at one period
 * and corrected by negated rows (src/reports/rollups.ts) can leave a group of another period with
 * its rows all taken back out (0 events, 0 tokens), which the ledger has no row for (a currency
 * the report must not list). A group of real rows always has events.
 */
const NO_EMPTY_GROUP = Prisma.raw("HAVING sum(u.event_count) <> 0");

function modelBranch(p: ReportPlan, treeIds: readonly number[] | undefined): Prisma.Sql {
  const keys = keyNames(p).map((k) => Prisma.raw(`m.${k}`));
  const sums = Prisma.raw(COUNTER_COLUMNS.map((c) => `sum(u.${c}) AS ${c}`).join(", "));
  const picked = Prisma.raw(COUNTER_COLUMNS.map((c) => `m.${c}`).join(", "));
  const selectKeys = keys.length ? Prisma.sql`${Prisma.join(keys)},` : Prisma.empty;
  const groupKeys = keyNames(p).map((k) => Prisma.raw(k));
  // Grouped by price period, service tier and whether regional processing applied: the rates
  // are resolved once per such group, after summing (cost is linear in tokens).
  return Prisma.sql`
    SELECT ${selectKeys} p.currency, m.events AS model_events, ${picked}, m.web_search_count,
           ${MODEL_COST} AS model_cost,
           0::bigint AS api_events, 0::bigint AS api_calls, 0::numeric AS api_cost
    FROM (
      SELECT ${groupKeys.length ? Prisma.sql`${Prisma.join(groupKeys)},` : Prisma.empty}
             mp.id AS period_id, u.service_tier, u.regional_processing IS NOT NULL AS regional,
             sum(u.event_count) AS events, ${sums}, sum(u.web_search_count) AS web_search_count
      FROM (SELECT ${Prisma.join([...keyExpressions("model", p), Prisma.sql`u.*`])}
            FROM ${usageRows("model", p, treeIds)} u) u
      LEFT JOIN model_periods mp ON mp.model_id = u.model_id
        AND u.created_at >= mp.effective_from AND (mp.valid_to IS NULL OR u.created_at < mp.valid_to)
      GROUP BY ${Prisma.join([...groupKeys, Prisma.sql`mp.id`, Prisma.sql`u.service_tier`, Prisma.sql`u.regional_processing IS NOT NULL`])}
      ${NO_EMPTY_GROUP}
    ) m
    LEFT JOIN ps_ai_model_price_periods p ON p.id = m.period_id
    ${RESOLVED_RATES}`;
}

function apiBranch(p: ReportPlan, treeIds: readonly number[] | undefined): Prisma.Sql {
  const keys = keyNames(p).map((k) => Prisma.raw(`a.${k}`));
  const zeros = Prisma.raw(COUNTER_COLUMNS.map((c) => `0::bigint AS ${c}`).join(", "));
  const selectKeys = keys.length ? Prisma.sql`${Prisma.join(keys)},` : Prisma.empty;
  const groupKeys = keyNames(p).map((k) => Prisma.raw(k));
  return Prisma.sql`
    SELECT ${selectKeys} p.currency, 0::bigint AS model_events, ${zeros}, 0::bigint AS web_search_count, 0::numeric AS model_cost,
           a.events AS api_events, a.calls AS api_calls, a.calls * p.price_per_unit AS api_cost
    FROM (
      SELECT ${groupKeys.length ? Prisma.sql`${Prisma.join(groupKeys)},` : Prisma.empty}
             ap.id AS period_id, sum(u.event_count) AS events, sum(u.call_count) AS calls
      FROM (SELECT ${Prisma.join([...keyExpressions("externalApi", p), Prisma.sql`u.*`])}
            FROM ${usageRows("externalApi", p, treeIds)} u) u
      LEFT JOIN api_periods ap ON ap.external_api_id = u.external_api_id
        AND u.created_at >= ap.effective_from AND (ap.valid_to IS NULL OR u.created_at < ap.valid_to)
      GROUP BY ${Prisma.join([...groupKeys, Prisma.sql`ap.id`])}
      ${NO_EMPTY_GROUP}
    ) a
    LEFT JOIN ps_external_api_price_periods p ON p.id = a.period_id`;
}


interface RawRow {
  readonly [key: string]: unknown;
  readonly is_total: number;
  readonly currency: string | null;
  readonly model_events: bigint;
  readonly model_cost: string | null;
  readonly api_events: bigint;
  readonly api_calls: bigint;
  readonly api_cost: string | null;
  readonly cost: string | null;
}

function buildQuery(p: ReportPlan, treeIds?: readonly number[]): Prisma.Sql {
  const keys = keyNames(p).map((k) => Prisma.raw(k));
  const branches: Prisma.Sql[] = [];
  if (p.sides.includes("model")) branches.push(modelBranch(p, treeIds));
  if (p.sides.includes("externalApi")) branches.push(apiBranch(p, treeIds));
  const sums = Prisma.raw(COUNTER_COLUMNS.map((c) => `sum(${c})::bigint AS ${c}`).join(", "));
  // With keys, one statement gives the rows and the per-currency totals (GROUPING SETS); without
  // keys the rows are the totals.
  const grouping = keys.length
    ? Prisma.sql`GROUPING SETS ((${Prisma.join([...keys, Prisma.raw("currency")])}), (currency))`
    : Prisma.sql`currency`;
  const isTotal = keys.length ? Prisma.sql`(GROUPING(${Prisma.join(keys)}) <> 0)` : Prisma.sql`TRUE`;
  const order = [Prisma.raw("is_total"), ...keys.map((k) => Prisma.sql`${k} NULLS LAST`), Prisma.raw("currency NULLS LAST")];
  // The bucket key (k0) turned into its start instant on the grouped rows only; ORDER BY k0 then
  // sorts these starts, in the same order as the keys.
  const outputKeys = keys.map((k, i) =>
    i === 0 && p.bucket ? Prisma.sql`${timeBucketKeySql(p.bucket, p.timeZone).start(k)} AS k0` : k,
  );
  const money = (expr: string) => Prisma.raw(`CASE WHEN currency IS NULL THEN NULL ELSE trim_scale(${expr})::text END`);
  return Prisma.sql`
    WITH model_periods AS (
      SELECT id, model_id, effective_from,
             LEAD(effective_from) OVER (PARTITION BY model_id ORDER BY effective_from) AS valid_to
      FROM ps_ai_model_price_periods
    ),
    api_periods AS (
      SELECT id, external_api_id, effective_from,
             LEAD(effective_from) OVER (PARTITION BY external_api_id ORDER BY effective_from) AS valid_to
      FROM ps_external_api_price_periods
    ),
    combined AS (${Prisma.join(branches, " UNION ALL ")})
    SELECT ${keys.length ? Prisma.sql`${Prisma.join(outputKeys)},` : Prisma.empty}
           currency, ${isTotal} AS is_total,
           sum(model_events)::bigint AS model_events, ${sums}, sum(web_search_count)::bigint AS web_search_count,
           ${money("sum(model_cost)")} AS model_cost,
           sum(api_events)::bigint AS api_events, sum(api_calls)::bigint AS api_calls,
           ${money("sum(api_cost)")} AS api_cost,
           ${money("sum(model_cost) + sum(api_cost)")} AS cost
    FROM combined
    GROUP BY ${grouping}
    ORDER BY ${Prisma.join(order)}`;
}

/** A bigint column as bigint (the adapters return PostgreSQL bigint as JS bigint; be safe with numbers and text too). */
function toBigInt(v: unknown): bigint {
  return typeof v === "bigint" ? v : BigInt(String(v ?? 0));
}

function toAmounts(r: RawRow): CostAmounts {
  const tokens = {} as Record<ModelUsageCounter, bigint>;
  for (const [field, column] of MODEL_USAGE_COUNTERS) tokens[field] = toBigInt(r[column]);
  return {
    currency: r.currency,
    modelEvents: toBigInt(r.model_events),
    tokens,
    webSearchCount: toBigInt(r.web_search_count),
    modelCost: r.model_cost,
    externalApiEvents: toBigInt(r.api_events),
    externalApiCalls: toBigInt(r.api_calls),
    externalApiCost: r.api_cost,
    cost: r.cost,
  };
}

/**
 * Runs a report's reads where `db` routes reads (one replica for the whole report, if it has
 * any: see db/replicas); a lost connection becomes a DatabaseConnectionError.
 */
function read<T>(db: Database, fn: (on: Database) => Promise<T>): Promise<T> {
  return readRouted(db, fn, async () => new UnknownReferenceError("ps_agents", null));
}

/** Runs the report's one statement on `on` (a database or replica view already routed). */
function runReport(on: Database, p: ReportPlan, treeIds?: readonly number[]): Promise<CostReport> {
  return runReportOn(on.reportPrisma, p, treeIds);
}

/**
 * @internal The totals (per currency) of the usage `where` selects, and with `rootAgentId` only
 * that agent's tree, run on `client`: a transaction's client sees its own uncommitted rows (the
 * budget guard). `where` must be valid already (ids, dates); read from the rollups.
 */
export async function costTotalsOn(client: Prisma.TransactionClient, where: CostReportFilter, rootAgentId?: number): Promise<CostReport> {
  const hasModel = where.modelId !== undefined;
  const hasApi = where.externalApiId !== undefined;
  const sides: Side[] = hasModel === hasApi ? ["model", "externalApi"] : hasModel ? ["model"] : ["externalApi"];
  const treeIds =
    rootAgentId === undefined
      ? undefined
      : (await client.$queryRaw<{ id: number }[]>`WITH RECURSIVE ${agentTreeCte(rootAgentId)} SELECT id FROM tree`).map((a) => a.id);
  return runReportOn(client, { groupBy: [], timeZone: "UTC", where, sides, rollups: true }, treeIds);
}

async function runReportOn(client: Prisma.TransactionClient, p: ReportPlan, treeIds?: readonly number[]): Promise<CostReport> {
  const raw = await client.$queryRaw<RawRow[]>(buildQuery(p, treeIds));
  const names = keyNames(p);
  const rows: CostReportRow[] = [];
  const totals: CostAmounts[] = [];
  for (const r of raw) {
    const amounts = toAmounts(r);
    if (names.length === 0 || r.is_total) {
      totals.push(amounts);
      if (names.length > 0) continue;
    }
    const keys: Record<string, unknown> = {};
    let i = 0;
    if (p.bucket) keys.bucketStart = r[names[i++]];
    for (const g of p.groupBy) keys[g] = r[names[i++]];
    rows.push({ ...keys, ...amounts } as CostReportRow);
  }
  if (p.bucket) checkBucketStarts(rows, p.timeZone);
  const unpriced = totals.find((t) => t.currency === null);
  return { rows, totals, unpricedEvents: unpriced ? unpriced.modelEvents + unpriced.externalApiEvents : 0n };
}

/**
 * Tokens and cost of model and external API usage, grouped like the usage sums, per currency.
 * Each usage row is priced with the price period in force at its `created_at` (see
 * `setModelPrice`); the whole report is one SQL statement with exact `numeric` arithmetic.
 * Amounts are exact decimal strings (`"0.0123"`): add them with a decimal type, round only to
 * show them. Usage no price period covers is reported with `currency: null` and null costs, and
 * counted in `unpricedEvents`.
 *
 * Throws {@link UsageValidationError} for unknown options or filter fields, bad ids or dates, an
 * unknown `groupBy` or `bucket`, or a time zone the database does not know.
 *
 * @example
 * const report = await costReport(db, {
 *   where: { from: new Date("2025-06-01"), to: new Date("2025-07-01") },
 *   groupBy: ["agentId", "modelId"],
 *   bucket: "day",
 *   timeZone: "Europe/Berlin",
 * });
 * for (const row of report.rows) console.log(row.bucketStart, row.agentId, row.modelId, row.currency, row.cost);
 * console.log(report.totals); // [{ currency: "EUR", cost: "3.2", ... }, { currency: "USD", cost: "41.0075", ... }]
 */
export async function costReport(db: Database, options: CostReportOptions = {}): Promise<CostReport> {
  return read(db, async (on) => {
    const issues: FieldIssue[] = [];
    const p = await plan(on, options, issues);
    if (issues.length > 0) throw new UsageValidationError(issues);
    return runReport(on, p);
  });
}

/**
 * The cost report of an agent and all its sub-agents (found with one recursive query over
 * `parent_agent_id`; a cycle in the parent links is walked once). Rows are per agent (plus any
 * other `groupBy` and `bucket`), totals are per currency over the whole tree, and `agents` lists
 * the tree with each agent's depth.
 *
 * Rows come in the order of `agents` (agent by agent), then as in {@link costReport}.
 *
 * Throws {@link UnknownReferenceError} when the agent does not exist and
 * {@link UsageValidationError} for bad options (as {@link costReport}; `where.agentId` is not allowed).
 *
 * @example
 * const tree = await agentTreeCostReport(db, rootAgentId, { groupBy: "modelId" });
 * for (const row of tree.rows) console.log(row.agentId, row.modelId, row.currency, row.cost);
 * console.log(tree.totals); // the whole tree, per currency
 */
export async function agentTreeCostReport(
  db: Database,
  agentId: number,
  options: AgentTreeCostReportOptions = {},
): Promise<AgentTreeCostReport> {
  const issues: FieldIssue[] = [];
  checkIdValue(agentId, "agentId", issues);
  if (options?.where && (options.where as CostReportFilter).agentId !== undefined) {
    issues.push({ field: "where.agentId", reason: "is not allowed: the tree is given by agentId" });
  }
  const requested = options?.groupBy === undefined ? [] : Array.isArray(options.groupBy) ? options.groupBy : [options.groupBy];
  const groupBy = requested.includes("agentId") ? requested : ["agentId" as const, ...requested];
  return read(db, async (on) => {
    // A copy per attempt: a read that moves to the next replica must not list an issue twice.
    const all = [...issues];
    const p = await plan(on, { ...options, groupBy }, all);
    if (all.length > 0) throw new UsageValidationError(all);
    // The tree and its report from one replica: the agents the rows are sorted by are the rows'.
    const agents = await on.reportPrisma.$queryRaw<{ id: number; parent_agent_id: number | null; depth: number }[]>`
      WITH RECURSIVE ${agentTreeCte(agentId)}
      SELECT id, parent_agent_id, depth FROM tree ORDER BY path`;
    if (agents.length === 0) throw new UnknownReferenceError("ps_agents", agentId);
    const report = await runReport(on, p, agents.map((a) => a.id));
    // Rows in tree order; the sort is stable, so within an agent they keep the report's order.
    const position = new Map(agents.map((a, i) => [a.id, i]));
    const rows = [...report.rows].sort((x, y) => (position.get(x.agentId as number) ?? 0) - (position.get(y.agentId as number) ?? 0));
    return {
      rootAgentId: agentId,
      agents: agents.map((a) => ({ agentId: a.id, parentAgentId: a.parent_agent_id, depth: Number(a.depth) })),
      ...report,
      rows,
    };
  });
}
