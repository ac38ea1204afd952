/**
 * The scale benchmark's data, generated inside PostgreSQL (INSERT … SELECT over generate_series,
 * no row passes through Node), deterministic: row i of a run is a function of i alone (hashes of
 * i, not random()), so growing 3M → 10M → 30M adds rows i = 3M… and every size holds the rows of
 * the smaller ones.
 *
 * The shape follows bench/data.ts (5 models with skewed popularity and their own token profiles,
 * the agent forest of 1,000 agents under one root plus 20 small trees, 40 connectors, 60 users
 * Zipf-like, 90 days with a working-hours and weekday rhythm in UTC, log-normal tokens, 2%
 * long-context calls), with keys correlated the way a PolicySynth deployment's are, not drawn
 * independently per event: each agent has an owner (Zipf over the 60 users; 90% of its events are
 * its owner's), a main model (75% of its events; the rest drawn by popularity), and a connector
 * or none (35% of agents, always the same one). 5% of events have no agent. External API usage:
 * one row per 10 model usage rows, same agents, 4 APIs, 1 to 5 calls.
 *
 * Used by bench/scale.ts; kept apart so that other benchmarks can fill a database the same way.
 */
import type { Pool, PoolClient } from "pg";
import { agentForest, CONNECTOR_COUNT, DAYS, MODEL_PROFILES, OTHER_TREE_SIZE, OTHER_TREES, TREE_SIZE, USER_COUNT, WINDOW_END } from "./data";

export const WINDOW_START = WINDOW_END - DAYS * 86_400_000;
export const EXTERNAL_API_TYPES = ["search", "scrape", "embedding", "translate"] as const;
/** Model usage rows per external API usage row. */
export const MODEL_ROWS_PER_API_ROW = 10;

/** Ids of the rows usage points at, in generation order (index → id). */
export interface ScaleUniverse {
  readonly modelIds: readonly number[];
  readonly agentIds: readonly number[];
  readonly connectorIds: readonly number[];
  readonly externalApiIds: readonly number[];
  /** The big tree's root. */
  readonly rootAgentId: number;
}

/**
 * Creates the models (with PolicySynth's `configuration.prices`), the agent forest, the
 * connectors and the external APIs with plain SQL; returns their ids.
 */
export async function createScaleUniverse(pool: Pool): Promise<ScaleUniverse> {
  const q = async (text: string, params: unknown[] = []) => (await pool.query<{ id: number }>(text, params)).rows;
  const modelIds: number[] = [];
  for (const m of MODEL_PROFILES) {
    modelIds.push((await q(`INSERT INTO ps_ai_models (user_id, name, configuration) VALUES (1, $1, $2) RETURNING id`, [m.name, JSON.stringify({ prices: m.prices })]))[0].id);
  }
  const agentIds: number[] = [];
  for (const parent of agentForest(1)) {
    agentIds.push((await q(`INSERT INTO ps_agents (user_id, class_id, group_id, parent_agent_id) VALUES (1, 1, 1, $1) RETURNING id`, [parent < 0 ? null : agentIds[parent]]))[0].id);
  }
  const connectorIds = (await q(`INSERT INTO ps_agent_connectors (user_id, class_id, group_id) SELECT 1, 1, 1 FROM generate_series(1, $1) ORDER BY 1 RETURNING id`, [CONNECTOR_COUNT]))
    .map((r) => r.id)
    .sort((a, b) => a - b);
  const externalApiIds: number[] = [];
  for (const type of EXTERNAL_API_TYPES) {
    externalApiIds.push((await q(`INSERT INTO ps_external_apis (user_id, type) VALUES (1, $1) RETURNING id`, [type]))[0].id);
  }
  return { modelIds, agentIds, connectorIds, externalApiIds, rootAgentId: agentIds[0] };
}

/** A uniform number in [0, 1) from the row number `i` and a stream number (SQL text). */
function u(stream: number, of = "i"): string {
  return `((hashint8extended(${of}, ${stream}) >> 11) & 4503599627370495)::float8 / 4503599627370496.0`;
}
/** The same, never 0 (for logarithms). */
function uPos(stream: number): string {
  return `(${u(stream)} * 0.999999 + 0.000001)`;
}
/** A standard normal number (Box-Muller over two streams). */
function normal(stream: number): string {
  return `(sqrt(-2 * ln(${uPos(stream)})) * cos(2 * pi() * ${u(stream + 1)}))`;
}
/** A 0-based index drawn by the cumulative weights `cumulative` from the uniform `x` (SQL text). */
function weighted(x: string, cumulative: readonly number[]): string {
  return `(CASE ${cumulative.slice(0, -1).map((c, k) => `WHEN ${x} < ${c} THEN ${k}`).join(" ")} ELSE ${cumulative.length - 1} END)`;
}
/** Zipf-like user (1..USER_COUNT), P(user ≤ k) ≈ ln(k + 1) / ln(USER_COUNT + 1). */
function zipfUser(x: string): string {
  return `LEAST(${USER_COUNT}, GREATEST(1, floor(exp(${x} * ln(${USER_COUNT + 1})))::int))`;
}
function sqlArray(values: readonly (number | boolean)[]): string {
  return `ARRAY[${values.join(", ")}]`;
}

const MODEL_CUMULATIVE = (() => {
  let acc = 0;
  const c = MODEL_PROFILES.map((m) => (acc += m.weight));
  c[c.length - 1] = 1;
  return c;
})();
const AGENT_COUNT = TREE_SIZE + OTHER_TREES * OTHER_TREE_SIZE;
/** Share of candidate timestamps the working-hours rhythm keeps (mean of `busy` over a week). */
const KEPT_SHARE = ((13 * 1 + 11 * 0.25) / 24) * ((5 + 2 * 0.4) / 7);

/**
 * The event `i` of the model usage stream: agent index (or -1), user, model index, connector index
 * (or -1), created_at, counters. Candidate rows outside the working-hours rhythm are dropped
 * (as bench/data.ts rejects them), so `n` rows need about n / KEPT_SHARE candidates.
 */
function eventsSql(): string {
  const agentOwner = (a: string) => zipfUser(u(101, a));
  const agentModel = (a: string) => weighted(u(102, a), MODEL_CUMULATIVE);
  const agentHasConnector = (a: string) => `(${u(103, a)} < 0.35)`;
  return `
    SELECT i, a,
      (CASE WHEN a < 0 OR ${u(5)} < 0.1 THEN ${zipfUser(u(7))} ELSE ${agentOwner("a::bigint")} END) AS user_id,
      (CASE WHEN a >= 0 AND ${u(6)} < 0.75 THEN ${agentModel("a::bigint")} ELSE ${weighted(u(8), MODEL_CUMULATIVE)} END) AS m,
      (CASE WHEN a >= 0 AND ${agentHasConnector("a::bigint")} THEN a % ${CONNECTOR_COUNT} ELSE -1 END) AS c,
      t
    FROM (
      SELECT i,
        (CASE WHEN ${u(3)} < 0.05 THEN -1 WHEN ${u(3)} < 0.75 THEN floor(${u(4)} * ${TREE_SIZE})::int
              ELSE ${TREE_SIZE} + floor(${u(4)} * ${AGENT_COUNT - TREE_SIZE})::int END) AS a,
        t
      FROM (SELECT i, TIMESTAMPTZ '${new Date(WINDOW_START).toISOString()}' + floor(${u(1)} * ${DAYS * 86_400}::float8 * 1e6) * interval '1 microsecond' AS t
            FROM generate_series($1::bigint, $2::bigint) AS i) AS s
      WHERE ${u(2)} < (CASE WHEN extract(hour FROM t AT TIME ZONE 'UTC') BETWEEN 7 AND 19 THEN 1 ELSE 0.25 END)
                    * (CASE WHEN extract(isodow FROM t AT TIME ZONE 'UTC') >= 6 THEN 0.4 ELSE 1 END)
      LIMIT $3
    ) AS e`;
}

/**
 * One piece of the load: the events of candidates [$1, $2], at most $3 of them, inserted by
 * `insert` (reading `e`); returns how many and the last candidate used.
 */
function pieceSql(insert: string): string {
  return `WITH e AS MATERIALIZED (${eventsSql()}), ins AS (${insert} RETURNING 1)
    SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT max(i) FROM e)::text AS last`;
}

/** INSERT … SELECT of model usage rows from the events `e`. */
function modelUsageInsertSql(universe: ScaleUniverse): string {
  const p = (field: "medianIn" | "medianOut" | "cacheShare" | "reasoning" | "audio" | "image") =>
    sqlArray(MODEL_PROFILES.map((m) => (typeof m[field] === "boolean" ? m[field] : Number(m[field]))));
  const long = `(${u(9)} < 0.02)`;
  return `
    INSERT INTO ps_model_usage (user_id, model_id, agent_id, connector_id, created_at, updated_at,
      token_in_count, token_in_cached_context_count, token_in_cache_write_count, token_out_count, token_out_reasoning_count, token_out_audio_count, token_out_image_count,
      long_context_token_in_count, long_context_token_in_cached_context_count, long_context_token_in_cache_write_count, long_context_token_out_count, long_context_token_out_reasoning_count, long_context_token_out_audio_count, long_context_token_out_image_count,
      web_search_count)
    SELECT user_id, (${sqlArray(universe.modelIds)})[m + 1], CASE WHEN a < 0 THEN NULL ELSE (${sqlArray(universe.agentIds)})[a + 1] END,
      CASE WHEN c < 0 THEN NULL ELSE (${sqlArray(universe.connectorIds)})[c + 1] END, t, t,
      CASE WHEN lc THEN 0 ELSE input - cached END, CASE WHEN lc THEN 0 ELSE cached END, CASE WHEN lc THEN 0 ELSE cache_write END,
      CASE WHEN lc THEN 0 ELSE out END, CASE WHEN lc THEN 0 ELSE reasoning END, CASE WHEN lc THEN 0 ELSE audio END, CASE WHEN lc THEN 0 ELSE image END,
      CASE WHEN lc THEN input - cached ELSE 0 END, CASE WHEN lc THEN cached ELSE 0 END, CASE WHEN lc THEN cache_write ELSE 0 END,
      CASE WHEN lc THEN out ELSE 0 END, CASE WHEN lc THEN reasoning ELSE 0 END, CASE WHEN lc THEN audio ELSE 0 END, CASE WHEN lc THEN image ELSE 0 END,
      web_search
    FROM (
      SELECT user_id, m, a, c, t, lc, input,
        CASE WHEN share > 0 AND ${u(11)} < 0.6 THEN floor(input * share * ${u(12)})::int ELSE 0 END AS cached,
        CASE WHEN share > 0 AND ${u(13)} < 0.1 THEN floor(input * 0.2 * ${u(14)})::int ELSE 0 END AS cache_write,
        GREATEST(1, round(median_out * exp(0.8 * ${normal(15)})))::int AS out,
        CASE WHEN reasons THEN round(median_out * 3 * exp(0.7 * ${normal(17)}))::int ELSE 0 END AS reasoning,
        CASE WHEN has_audio AND ${u(19)} < 0.5 THEN round(2000 * exp(0.5 * ${normal(20)}))::int ELSE 0 END AS audio,
        CASE WHEN has_image AND ${u(22)} < 0.2 THEN round(1500 * exp(0.4 * ${normal(23)}))::int ELSE 0 END AS image,
        CASE WHEN ${u(25)} < 0.03 THEN 1 + floor(${u(26)} * 3)::int ELSE 0 END AS web_search
      FROM (
        SELECT e.*, ${long} AS lc,
          CASE WHEN ${long} THEN 128000 + floor(${u(10)} * 700000)::int
               ELSE LEAST(127999, GREATEST(1, round((${p("medianIn")})[m + 1] * exp(0.9 * ${normal(27)}))))::int END AS input,
          (${p("cacheShare")})[m + 1] AS share, (${p("medianOut")})[m + 1] AS median_out, (${p("reasoning")})[m + 1] AS reasons,
          (${p("audio")})[m + 1] AS has_audio, (${p("image")})[m + 1] AS has_image
        FROM e OFFSET 0
      ) AS x OFFSET 0
    ) AS y`;
}

/** INSERT … SELECT of external API usage rows (a stream of its own: stream numbers 201+). */
function externalApiUsageInsertSql(universe: ScaleUniverse): string {
  const apiCumulative = [0.5, 0.75, 0.95, 1];
  return `
    INSERT INTO ps_external_api_usage (user_id, external_api_id, agent_id, connector_id, created_at, updated_at, call_count)
    SELECT user_id, (${sqlArray(universe.externalApiIds)})[${weighted(u(201), apiCumulative)} + 1],
      CASE WHEN a < 0 THEN NULL ELSE (${sqlArray(universe.agentIds)})[a + 1] END,
      CASE WHEN c < 0 THEN NULL ELSE (${sqlArray(universe.connectorIds)})[c + 1] END, t, t, 1 + floor(${u(202)} * 5)::int
    FROM e`;
}

/** How many rows a table holds from this generator: the next candidate number is kept in a table of its own. */
async function nextCandidate(client: PoolClient, stream: string): Promise<{ candidate: number; rows: number }> {
  await client.query(`CREATE TABLE IF NOT EXISTS bench_scale_progress (stream text PRIMARY KEY, next_candidate bigint NOT NULL, rows bigint NOT NULL)`);
  const { rows } = await client.query<{ next_candidate: string; rows: string }>(`SELECT next_candidate, rows FROM bench_scale_progress WHERE stream = $1`, [stream]);
  // The API stream's candidates start far from the model stream's, so its rows are not copies of theirs.
  return rows.length === 0 ? { candidate: stream === "api" ? 1e12 : 0, rows: 0 } : { candidate: Number(rows[0].next_candidate), rows: Number(rows[0].rows) };
}

/**
 * Grows the ledger to `targetModelRows` model usage rows (and a tenth as many external API rows),
 * with every trigger off for the load (`session_replication_role = replica`: the rollup triggers
 * and the foreign key checks; the ids come from the universe, so they are valid). The rollups are
 * NOT maintained: rebuild them afterwards (bench/scale.ts calls the package's rebuildRollups).
 * Inserts in pieces of `piece` rows, one transaction each, and reports progress.
 */
export async function growLedger(
  pool: Pool,
  universe: ScaleUniverse,
  targetModelRows: number,
  log: (line: string) => void = () => undefined,
  piece = 1_000_000,
): Promise<{ modelRows: number; apiRows: number }> {
  const client = await pool.connect();
  try {
    await client.query(`SET session_replication_role = replica`);
    await client.query(`SET statement_timeout = 0`);
    const result = { modelRows: 0, apiRows: 0 };
    for (const [stream, sql, target] of [
      ["model", pieceSql(modelUsageInsertSql(universe)), targetModelRows],
      ["api", pieceSql(externalApiUsageInsertSql(universe)), Math.floor(targetModelRows / MODEL_ROWS_PER_API_ROW)],
    ] as const) {
      let { candidate, rows } = await nextCandidate(client, stream);
      while (rows < target) {
        const want = Math.min(piece, target - rows);
        // Enough candidates for `want` kept rows with a margin; LIMIT stops at `want`.
        const span = Math.ceil((want / KEPT_SHARE) * 1.1) + 1000;
        const started = Date.now();
        await client.query("BEGIN");
        const { rows: done } = await client.query<{ inserted: number; last: string }>(sql, [candidate, candidate + span - 1, want]);
        const inserted = done[0].inserted;
        if (inserted !== want) throw new Error(`${stream}: ${inserted} rows from ${span} candidates, wanted ${want}`);
        candidate = Number(done[0].last) + 1;
        rows += inserted;
        await client.query(
          `INSERT INTO bench_scale_progress (stream, next_candidate, rows) VALUES ($1, $2, $3)
           ON CONFLICT (stream) DO UPDATE SET next_candidate = EXCLUDED.next_candidate, rows = EXCLUDED.rows`,
          [stream, candidate, rows],
        );
        await client.query("COMMIT");
        log(`  ${stream}: ${rows.toLocaleString("en-US")} rows (${inserted.toLocaleString("en-US")} in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
      }
      if (stream === "model") result.modelRows = rows;
      else result.apiRows = rows;
    }
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    await client.query(`RESET session_replication_role`).catch(() => undefined);
    client.release();
  }
}
