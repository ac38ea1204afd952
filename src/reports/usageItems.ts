/**
 * PolicySynth's per-call `ps_model_usage_item` rows read as ledger rows, so that sums and cost
 * reports can count calls where PolicySynth keeps only running counter rows in `ps_model_usage`
 * (one row per model and agent, dated at its first call) and the per-call detail, correctly
 * dated, in items. A report reads either the ledger or the items, never both, so no call is
 * counted twice.
 *
 * Items this package wrote (`recordProviderUsage` with `item`) carry the exact counters of their
 * ledger row in `data.psUsage.counters`, which are used as they are. PolicySynth's own items are
 * read as PolicySynth counts them: `usageNormalized.tokensIn` is the whole input (cache reads
 * `cachedInTokens` / `cacheReadInputTokens` and cache writes `cacheWriteInputTokens` included),
 * `tokensOut` the whole output (reasoning, audio and image included, priced at the output rate
 * as PolicySynth prices them); a call whose whole input reaches the
 * `longContextTokenThreshold` of the prices in its item goes to the long-context counters, all or
 * nothing; web searches are `providerMetadata.builtInTools.webSearchCallCount`; the tier is
 * `pricing.inferenceType` (Anthropic's `priority` is priced as `fast`, as PolicySynth does).
 */
import type { FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";
import { MODEL_USAGE_COUNTERS } from "../types";

/** Where model usage is read from: the ledger (`ps_model_usage`, default) or PolicySynth's items. */
export type ModelUsageSource = "ledger" | "items";

export const MODEL_USAGE_SOURCES: readonly ModelUsageSource[] = ["ledger", "items"];

const num = (path: string) => `NULLIF(i.data #>> '{${path}}', '')::numeric`;

/** A PolicySynth item's count at `path`, as a whole non-negative number (0 when absent or not a number). */
const count = (path: string) =>
  `COALESCE(CASE WHEN jsonb_typeof(i.data #> '{${path}}') = 'number' THEN GREATEST(round(${num(path)}), 0) END, 0)`;

/** The counter of this package's own item (`psUsage.counters`), else PolicySynth's derived value. */
const own = (field: string, derived: string) =>
  `COALESCE(CASE WHEN jsonb_typeof(i.data #> '{psUsage,counters,${field}}') = 'number' THEN ${num(`psUsage,counters,${field}`)} END, ${derived})::integer`;

const DERIVED: Record<string, string> = {
  tokenInCount: "CASE WHEN x.long THEN 0 ELSE x.ordinary END",
  tokenInCachedContextCount: "CASE WHEN x.long THEN 0 ELSE x.cached END",
  tokenInCacheWriteCount: "CASE WHEN x.long THEN 0 ELSE x.cache_write END",
  longContextTokenInCount: "CASE WHEN x.long THEN x.ordinary ELSE 0 END",
  longContextTokenInCachedContextCount: "CASE WHEN x.long THEN x.cached ELSE 0 END",
  longContextTokenInCacheWriteCount: "CASE WHEN x.long THEN x.cache_write ELSE 0 END",
  tokenOutCount: "CASE WHEN x.long THEN 0 ELSE x.output END",
  longContextTokenOutCount: "CASE WHEN x.long THEN x.output ELSE 0 END",
};

const counterColumns = MODEL_USAGE_COUNTERS.map(([field, column]) => `${own(field, DERIVED[field] ?? "0")} AS ${column}`).join(",\n    ");

/**
 * @internal The items as a relation with the ledger's columns (`id`, `user_id`, `created_at`, `updated_at`,
 * `model_id`, `agent_id`, `connector_id`, the 14 counters, `web_search_count`, `service_tier`,
 * `regional_processing`), for `FROM (...) AS ps_model_usage`.
 */
export const USAGE_ITEMS_AS_LEDGER = Prisma.raw(`(
  SELECT i.id, i.user_id, i.created_at, i.updated_at, i.model_id, i.agent_id, i.connector_id,
    ${counterColumns},
    COALESCE(CASE WHEN jsonb_typeof(i.data #> '{psUsage,counters,webSearchCount}') = 'number' THEN ${num("psUsage,counters,webSearchCount")} END,
             ${count("providerMetadata,builtInTools,webSearchCallCount")}, 0)::integer AS web_search_count,
    CASE WHEN i.data ? 'psUsage' THEN i.data #>> '{psUsage,serviceTier}'
         ELSE CASE lower(i.data #>> '{pricing,inferenceType}')
           WHEN 'flex' THEN 'flex'
           WHEN 'priority' THEN CASE WHEN lower(i.data ->> 'provider') = 'anthropic' THEN 'fast' ELSE 'priority' END
           WHEN 'fast' THEN CASE WHEN lower(i.data ->> 'provider') LIKE 'openai%' THEN 'priority' ELSE 'fast' END
         END END AS service_tier,
    CASE jsonb_typeof(i.data #> '{pricing,regionalProcessing}')
      WHEN 'string' THEN NULLIF(i.data #>> '{pricing,regionalProcessing}', '')
      WHEN 'boolean' THEN CASE WHEN (i.data #>> '{pricing,regionalProcessing}')::boolean THEN 'eu' END
    END AS regional_processing
  FROM ps_model_usage_item i
  CROSS JOIN LATERAL (
    SELECT GREATEST(t.total - t.cached - t.cache_write, 0) AS ordinary, t.cached, t.cache_write, t.output,
           COALESCE(t.threshold > 0 AND t.total >= t.threshold, false) AS long
    FROM (SELECT ${count("usageNormalized,tokensIn")} AS total,
                 GREATEST(${count("usageNormalized,cachedInTokens")}, ${count("usageNormalized,cacheReadInputTokens")}) AS cached,
                 ${count("usageNormalized,cacheWriteInputTokens")} AS cache_write,
                 ${count("usageNormalized,tokensOut")} AS output,
                 COALESCE(${num("pricing,effectivePrices,longContextTokenThreshold")}, ${num("pricing,configuredPrices,longContextTokenThreshold")},
                          ${num("pricing,longContextTokenThreshold")}) AS threshold) t
  ) x
)`);

/** @internal Checks a `source` option (the one place it is checked, for sums and cost reports). */
export function checkSource(source: unknown, issues: FieldIssue[]): void {
  if (source !== undefined && !MODEL_USAGE_SOURCES.includes(source as ModelUsageSource)) {
    issues.push({ field: "source", reason: `must be "ledger" or "items", got ${JSON.stringify(source)}` });
  }
}
