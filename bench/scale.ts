/**
 * The benchmark at scale (issue 12, section 4): a ledger of 3M, 10M and 30M model usage rows
 * generated inside PostgreSQL (bench/scaleData.ts), rollups built by the package's rebuildRollups
 * and checked equal to the ledger, then the reports timed with and without rollups, their results
 * compared, and PolicySynth's own tree walk timed beside them.
 *
 *   npm run bench:scale                      # reads at 3M, 10M, 30M (grows the database in steps)
 *   SCALE_SIZES=3000000 npm run bench:scale  # one size (grows up to it, or measures it again)
 *   SCALE_ONLY=ingest npm run bench:scale    # ingest with and without rollup maintenance (sparse/random and dense/in order)
 *   SCALE_ONLY=prune npm run bench:scale     # prune 30 days at the database's size, with a concurrent inserter
 *   SCALE_ONLY=ingest SCALE_INGEST_AGGREGATOR=1 …  # the same, with the incremental aggregator design as two more contenders
 *   SCALE_SIZES=100000000 …                  # 100M where the disk has room (checked first)
 *
 * The database `ps_usage_bench_scale_ledger` (SCALE_DB) is kept between runs so that the sizes
 * can be grown in steps; SCALE_DROP=1 drops it at the end. Results: bench/scale-results.json
 * (every size measured, merged) and bench/SCALE.md.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Pool } from "pg";
import {
  agentTreeCostReport,
  openDatabase,
  prune,
  rebuildRollups,
  recordModelUsage,
  recordModelUsageBatch,
  setExternalApiPrice,
  setModelPrice,
  sumAgentTreeUsage,
  sumModelUsage,
  type Database,
} from "../src";
import { agentCostsPolicySynthPlain, treePolicySynthPlain } from "./baselines";
import { agentForest, generateEvents, MODEL_PROFILES, toInputs, WINDOW_END } from "./data";
import { createScaleUniverse, growLedger, WINDOW_START, type ScaleUniverse } from "./scaleData";
import { admin, poolTransaction, urlFor, type Backend } from "./setup";
import { median, percentile } from "./stats";
import { MODEL_USAGE_ALL_COUNTERS, type ModelUsageInput } from "../src/types";

const SIZES = (process.env.SCALE_SIZES ?? "3000000,10000000,30000000").split(",").map((s) => Number(s.trim()));
const ONLY = process.env.SCALE_ONLY ?? "reads";
const DB_NAME = process.env.SCALE_DB ?? "ps_usage_bench_scale_ledger";
const RUNS = Number(process.env.SCALE_RUNS ?? "5");
const LEDGER_RUNS = Number(process.env.SCALE_LEDGER_RUNS ?? "3");
/** PolicySynth's walk fetches every usage row of the tree into Node: run it up to this size. */
const WALK_MAX_ROWS = Number(process.env.SCALE_WALK_MAX ?? "10000000");
const OUT_DIR = process.env.SCALE_OUT ?? path.join(__dirname, "..", "..", "..", "bench");
const JSON_FILE = path.join(OUT_DIR, "scale-results.json");
/** Bytes a model usage row takes with its indexes, its share of external API rows and rollups (measured at 3M: see SCALE.md), with a margin. */
const BYTES_PER_ROW_ESTIMATE = 450;

const ROLLUP_TABLES = [
  "ps_model_usage_rollup",
  "ps_external_api_usage_rollup",
  "ps_model_usage_model_rollup",
  "ps_model_usage_agent_day_rollup",
  "ps_external_api_usage_agent_day_rollup",
  "ps_model_usage_agent_month_rollup",
  "ps_external_api_usage_agent_month_rollup",
];
const ROLLUP_SLOT = 15 * 60_000;
const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const load = () => os.loadavg().map((v) => Number(v.toFixed(2)));

interface Timed {
  readonly name: string;
  readonly runsMs: number[];
  readonly medianMs: number;
  readonly loadStart: number[];
  readonly loadEnd: number[];
}
interface ReadResult {
  readonly query: string;
  readonly withRollups: Timed;
  readonly withoutRollups: Timed;
  readonly identical: boolean;
  readonly policySynth?: Timed;
}
interface SizeResult {
  readonly modelRows: number;
  readonly apiRows: number;
  readonly measuredAt: string;
  readonly generate: { readonly seconds: number; readonly rebuildSeconds: number; readonly verifySeconds: number; readonly differencesAfter: number; readonly loadEnd: number[] };
  readonly storage: Record<string, number>;
  readonly rollupRows: { readonly modelUsage: number; readonly externalApiUsage: number; readonly levels?: Record<string, number> };
  readonly reads: ReadResult[];
}
interface IngestResult {
  readonly rows: number;
  readonly chunk: string;
  /** How the rows' created_at are spread (absent: the sparse case, 90 days in random order). */
  readonly arrival?: string;
  readonly withTriggersMs: number[];
  readonly withoutTriggersMs: number[];
  readonly ratio: number;
  /** Rollup rows after one run with triggers on (15-minute, per model, per agent day, per agent month). */
  readonly rollupRows?: Record<string, number>;
  readonly load: number[][];
  readonly measuredAt: string;
  /** SCALE_INGEST_AGGREGATOR=1: the same ingest with the INSERT trigger off, folded afterwards by an aggregator pass. */
  readonly aggregator?: AggregatorResult;
}
/**
 * The incremental aggregator design, measured in the same ABBA rounds as the triggers on and off:
 * the ingest with the rollup INSERT trigger disabled, then the ledger rows above a watermark folded
 * into all six model usage levels, once over all the rows or in passes of `passRows`.
 */
interface AggregatorResult {
  readonly passRows: number;
  /** Ingest alone (trigger off) and the fold of all rows in one pass, per run. */
  readonly onePass: { readonly ingestMs: number[]; readonly foldMs: number[]; readonly cpu: CpuSample[] };
  /** Ingest alone (trigger off) and the folds in passes of passRows (their sum, and each pass), per run. */
  readonly passes: { readonly ingestMs: number[]; readonly foldMs: number[]; readonly passMs: number[][]; readonly cpu: CpuSample[] };
  /** CPU (node + the database's backends) of the ingest with and without triggers, per run, in the same order as withTriggersMs / withoutTriggersMs. */
  readonly cpuWith: CpuSample[];
  readonly cpuWithout: CpuSample[];
  /** rebuildRollups dryRun differences after a warm-up run of each aggregator contender (0: the fold equals the ledger). */
  readonly differencesOnePass: number;
  readonly differencesPasses: number;
}
/** CPU milliseconds of one run: node (user + system) and the database backends serving this database; fold: the fold's share. */
interface CpuSample {
  readonly ingestNodeMs: number;
  readonly ingestDbMs: number;
  readonly foldDbMs?: number;
}
interface ScaleResults {
  sizes: Record<string, SizeResult>;
  /** The sparse case: 200k events over 90 days in random order (~1 event per rollup row). */
  ingest?: IngestResult;
  /** The issue's load with the keys of the scale data (each agent's owner, main model and connector). */
  ingestCorrelated?: IngestResult;
  /** The issue's load: a billion events a month (~385/s), arriving in time order. */
  ingestDense?: IngestResult;
  /** Prunes of 30 days, by the ledger's model usage rows before (a size measured again replaces its entry). */
  prunes?: Record<string, PruneResult>;
}

interface PruneResult {
  readonly modelRowsBefore: number;
  readonly days: number;
  readonly deleted: number;
  readonly pruneSeconds: number;
  readonly inserts: number;
  readonly insertP50Ms: number;
  readonly insertP99Ms: number;
  readonly insertMaxMs: number;
  readonly sizes: Record<string, { before: number; afterPrune: number; afterVacuum: number; freeAfterVacuum: number }>;
  readonly load: number[][];
  readonly measuredAt: string;
}

function readResults(): ScaleResults {
  return fs.existsSync(JSON_FILE) ? (JSON.parse(fs.readFileSync(JSON_FILE, "utf8")) as ScaleResults) : { sizes: {} };
}

/** JSON with bigints as strings and Dates as ISO text, for comparing results. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

async function exists(): Promise<boolean> {
  const pool = new Pool({ connectionString: urlFor("postgres") });
  try {
    return (await pool.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [DB_NAME])).rowCount === 1;
  } finally {
    await pool.end();
  }
}

async function openScale(): Promise<{ db: Database; pool: Pool; universe: ScaleUniverse }> {
  const fresh = !(await exists());
  if (fresh) await admin(`CREATE DATABASE "${DB_NAME}"`);
  const url = urlFor(DB_NAME);
  const db = await openDatabase({ url, migrate: true, writeTimeoutMs: 3_600_000, reportTimeoutMs: 3_600_000 });
  const pool = new Pool({ connectionString: url, max: 4 });
  pool.on("error", () => undefined);
  await pool.query(`CREATE TABLE IF NOT EXISTS bench_scale_universe (universe jsonb NOT NULL)`);
  const stored = (await pool.query<{ universe: ScaleUniverse }>(`SELECT universe FROM bench_scale_universe`)).rows[0]?.universe;
  if (stored) return { db, pool, universe: stored };
  log("creating models, agents, connectors, APIs and price periods");
  const universe = await createScaleUniverse(pool);
  const dayBefore = new Date(WINDOW_START - 86_400_000);
  for (let m = 0; m < MODEL_PROFILES.length; m++) {
    const { currency, costInTokensPerMillion, costOutTokensPerMillion, ...rest } = MODEL_PROFILES[m].prices as Record<string, string | number>;
    await setModelPrice(db, universe.modelIds[m], { currency: String(currency), costInTokensPerMillion, costOutTokensPerMillion, ...rest } as never, dayBefore);
  }
  // Two price changes inside the window: one on a slot boundary, one 7.5 minutes into a slot
  // (that slot is read from the ledger by priced reports).
  const p0 = MODEL_PROFILES[0].prices as Record<string, string | number>;
  await setModelPrice(db, universe.modelIds[0], { ...p0, costInTokensPerMillion: 1.75 } as never, new Date(WINDOW_START + 45 * 86_400_000 + 7.5 * 60_000));
  const p1 = MODEL_PROFILES[1].prices as Record<string, string | number>;
  await setModelPrice(db, universe.modelIds[1], { ...p1, costOutTokensPerMillion: 12 } as never, new Date(WINDOW_START + 60 * 86_400_000));
  for (const id of universe.externalApiIds) await setExternalApiPrice(db, id, { unitType: "call", pricePerUnit: "0.004", currency: "USD" }, dayBefore);
  await pool.query(`INSERT INTO bench_scale_universe (universe) VALUES ($1)`, [JSON.stringify(universe)]);
  return { db, pool, universe };
}

async function count(pool: Pool, table: string): Promise<number> {
  return Number((await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`)).rows[0].n);
}

/** Free bytes on the file system holding the database's files. */
async function freeBytes(pool: Pool): Promise<number> {
  const dir = (await pool.query<{ d: string }>(`SHOW data_directory`).catch(() => ({ rows: [{ d: "/" }] }))).rows[0].d;
  const stat = fs.statfsSync(fs.existsSync(dir) ? dir : "/");
  return stat.bavail * stat.bsize;
}

async function storage(pool: Pool): Promise<Record<string, number>> {
  const tables = ["ps_model_usage", "ps_external_api_usage", ...ROLLUP_TABLES];
  const out: Record<string, number> = {};
  for (const t of tables) {
    const [row] = (await pool.query<{ heap: string; idx: string }>(`SELECT pg_table_size($1)::text AS heap, pg_indexes_size($1)::text AS idx`, [t])).rows;
    out[`${t} heap`] = Number(row.heap);
    out[`${t} indexes`] = Number(row.idx);
  }
  return out;
}

async function timeRuns<T>(name: string, runs: number, run: () => Promise<T>): Promise<{ timed: Timed; result: T }> {
  const loadStart = load();
  const runsMs: number[] = [];
  let result!: T;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    result = await run();
    runsMs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { timed: { name, runsMs, medianMs: median(runsMs), loadStart, loadEnd: load() }, result };
}

/** The reports of issue 12 §4, each with and without rollups, interleaved, results compared. */
async function measureReads(db: Database, pool: Pool, universe: ScaleUniverse, modelRows: number): Promise<ReadResult[]> {
  const range = { from: new Date(WINDOW_START), to: new Date(WINDOW_END) };
  const root = universe.rootAgentId;
  const queries: [string, (rollups: boolean) => Promise<unknown>][] = [
    ["total", (rollups) => sumModelUsage(db, { rollups })],
    ["by agent", (rollups) => sumModelUsage(db, { groupBy: ["agentId"], rollups })],
    ["by model and day, 90 days, America/New_York", (rollups) => sumModelUsage(db, { where: range, groupBy: ["modelId"], bucket: "day", timeZone: "America/New_York", rollups })],
    ["by model and day, 90 days, Asia/Kolkata (+05:30)", (rollups) => sumModelUsage(db, { where: range, groupBy: ["modelId"], bucket: "day", timeZone: "Asia/Kolkata", rollups })],
    ["1,000-agent tree sums (sumAgentTreeUsage)", (rollups) => sumAgentTreeUsage(db, root, { rollups })],
    ["1,000-agent tree cost report (agentTreeCostReport)", (rollups) => agentTreeCostReport(db, root, { rollups })],
  ];
  const backend = { kind: "postgresql", db, sql: async (text: string, params?: readonly unknown[]) => (await pool.query(text, params ? [...params] : undefined)).rows } as unknown as Backend;
  const out: ReadResult[] = [];
  for (const [query, run] of queries) {
    log(`  ${query}`);
    // Warm-up, and the results compared.
    const a = canonical(await run(true));
    const b = canonical(await run(false));
    const identical = a === b;
    if (!identical) log(`    RESULTS DIFFER with and without rollups`);
    // Interleaved: with, without, with, … so that load from elsewhere falls on both.
    const withMs: number[] = [];
    const withoutMs: number[] = [];
    const loadStart = load();
    for (let i = 0; i < Math.max(RUNS, LEDGER_RUNS); i++) {
      if (i < RUNS) withMs.push((await timeRuns(query, 1, () => run(true))).timed.runsMs[0]);
      if (i < LEDGER_RUNS) withoutMs.push((await timeRuns(query, 1, () => run(false))).timed.runsMs[0]);
    }
    const loadEnd = load();
    const result: ReadResult = {
      query,
      identical,
      withRollups: { name: "rollups", runsMs: withMs, medianMs: median(withMs), loadStart, loadEnd },
      withoutRollups: { name: "ledger alone", runsMs: withoutMs, medianMs: median(withoutMs), loadStart, loadEnd },
      policySynth:
        query.startsWith("1,000-agent") && modelRows <= WALK_MAX_ROWS
          ? (await timeRuns("PolicySynth walk", LEDGER_RUNS, (): Promise<unknown> => (query.includes("cost") ? agentCostsPolicySynthPlain(backend, root) : treePolicySynthPlain(backend, root)))).timed
          : undefined,
    };
    log(`    rollups ${result.withRollups.medianMs.toFixed(1)} ms, ledger ${result.withoutRollups.medianMs.toFixed(1)} ms${result.policySynth ? `, PolicySynth ${result.policySynth.medianMs.toFixed(0)} ms` : ""}, identical ${identical}, load ${loadEnd.join(" ")}`);
    out.push(result);
  }
  return out;
}

async function reads(): Promise<void> {
  const { db, pool, universe } = await openScale();
  try {
    for (const size of SIZES) {
      const have = await count(pool, "ps_model_usage");
      const grownFile = path.join(OUT_DIR, `scale-grow-${size}.json`);
      let generate: SizeResult["generate"] = fs.existsSync(grownFile)
        ? (JSON.parse(fs.readFileSync(grownFile, "utf8")) as SizeResult["generate"])
        : { seconds: 0, rebuildSeconds: 0, verifySeconds: 0, differencesAfter: -1, loadEnd: load() };
      if (have < size) {
        const need = (size - have) * BYTES_PER_ROW_ESTIMATE * 1.5;
        const free = await freeBytes(pool);
        if (free < need) throw new Error(`growing to ${size} rows needs about ${(need / 1e9).toFixed(1)} GB, ${(free / 1e9).toFixed(1)} GB free`);
        log(`growing from ${have.toLocaleString("en-US")} to ${size.toLocaleString("en-US")} model usage rows (${(free / 1e9).toFixed(0)} GB free), load ${load().join(" ")}`);
        const t0 = Date.now();
        await growLedger(pool, universe, size, log);
        const seconds = (Date.now() - t0) / 1000;
        log(`  generated in ${seconds.toFixed(0)} s; rebuilding the rollups with rebuildRollups`);
        const t1 = Date.now();
        const rebuilt = await rebuildRollups(db, { lockTimeoutMs: 60_000 });
        const rebuildSeconds = (Date.now() - t1) / 1000;
        log(`  rebuilt (${rebuilt.modelUsage.rows.toLocaleString("en-US")} model rollup rows) in ${rebuildSeconds.toFixed(0)} s; checking rollups = ledger`);
        const t2 = Date.now();
        const check = await rebuildRollups(db, { dryRun: true });
        const verifySeconds = (Date.now() - t2) / 1000;
        const differencesAfter = check.modelUsage.differences + check.externalApiUsage.differences + (check.levels ?? []).reduce((n, l) => n + l.differences, 0);
        if (differencesAfter !== 0) throw new Error(`rollups differ from the ledger after the rebuild: ${differencesAfter}`);
        generate = { seconds, rebuildSeconds, verifySeconds, differencesAfter, loadEnd: load() };
        log(`  rollups = ledger (checked in ${verifySeconds.toFixed(0)} s)`);
      } else if (have > size) {
        log(`the database holds ${have} rows, more than ${size}: measuring it at ${have}`);
      }
      if (ONLY === "grow") {
        log(`grown to ${size}: ${JSON.stringify(generate)}`);
        fs.writeFileSync(path.join(OUT_DIR, `scale-grow-${size}.json`), JSON.stringify(generate) + "\n");
        continue;
      }
      await pool.query(`VACUUM ANALYZE`);
      const modelRows = await count(pool, "ps_model_usage");
      const apiRows = await count(pool, "ps_external_api_usage");
      log(`measuring at ${modelRows.toLocaleString("en-US")} model usage rows, load ${load().join(" ")}`);
      const measured = await measureReads(db, pool, universe, modelRows);
      const all = readResults();
      all.sizes[String(modelRows)] = {
        modelRows,
        apiRows,
        measuredAt: new Date().toISOString(),
        generate,
        storage: await storage(pool),
        rollupRows: {
          modelUsage: await count(pool, "ps_model_usage_rollup"),
          externalApiUsage: await count(pool, "ps_external_api_usage_rollup"),
          levels: Object.fromEntries(await Promise.all(ROLLUP_TABLES.slice(2).map(async (t) => [t, await count(pool, t)] as const))),
        },
        reads: measured,
      };
      writeResults(all);
    }
  } finally {
    await db.close();
    await pool.end();
  }
}

/** The 3M run with the 15-minute rollups alone (the code before the levels), kept for comparison. */
const BEFORE_LEVELS_FILE = path.join(OUT_DIR, "scale-results-15min-only.json");
/** The 3M and 10M runs again with the rollup tables in key order (CLUSTER), kept beside the main ones. */
const CLUSTERED_FILE = path.join(OUT_DIR, "scale-results-clustered.json");

/**
 * Runs with a cost report's priced days and months corrected from the shorter side (branch tree,
 * 2026-12-07 11:00-12:00 UTC) on a machine far busier than the runs above: kept apart, merged in by hand.
 */
const CORRECTION_FILE = path.join(OUT_DIR, "scale-results-correction.json");

/**
 * The three sizes measured again in one session with the code of 2026-12-07 afternoon (the
 * correction and the per-user and per-connector levels), SCALE_OUT elsewhere, SCALE_WALK_MAX=0 at
 * 3M and 10M, SCALE_LEDGER_RUNS=1: kept apart, merged in by hand.
 */
const CURRENT_CODE_FILE = path.join(OUT_DIR, "scale-results-current-code.json");

function writeResults(results: ScaleResults): void {
  fs.writeFileSync(JSON_FILE, JSON.stringify(results, null, 2) + "\n");
  let md = renderScale(results);
  if (fs.existsSync(BEFORE_LEVELS_FILE)) {
    const before = renderScale(JSON.parse(fs.readFileSync(BEFORE_LEVELS_FILE, "utf8")) as ScaleResults).split("\n").slice(7).join("\n");
    md += `\n# Before the rollup levels (15-minute rollups only, the code of main at 6be9d53)\n\n${before.replace(/^## /gm, "### ")}`;
  }
  if (fs.existsSync(CLUSTERED_FILE)) {
    const again = renderScale(JSON.parse(fs.readFileSync(CLUSTERED_FILE, "utf8")) as ScaleResults).split("\n").slice(7).join("\n");
    md +=
      `\n# Measured again with the rollup tables in slot order\n\n` +
      `The same databases right after the runs above, each rollup table rewritten in key order (\`CLUSTER … USING …_pkey\`: slot, day or month first, ` +
      `as the triggers lay rows out over time and as rebuildRollups now writes them; the runs above read tables rebuilt in hash order). ` +
      `The machine was busier (load 6-7 for most runs against 2.4-4 above): compare the load columns.\n\n${again.replace(/^## /gm, "### ")}`;
  }
  if (fs.existsSync(CURRENT_CODE_FILE)) {
    const again = renderScale(JSON.parse(fs.readFileSync(CURRENT_CODE_FILE, "utf8")) as ScaleResults).split("\n").slice(7).join("\n");
    md +=
      `\n# All three sizes again with the correction and the per-user and per-connector levels (one session)\n\n` +
      `One database grown 0 -> 3M -> 10M -> 30M in one session (13:42-14:36 UTC) with the code of main after the correction and the ` +
      `per-user and per-connector levels; PolicySynth's walk not run, one ledger-alone run per report (SCALE_WALK_MAX=0 at 3M and 10M, ` +
      `SCALE_LEDGER_RUNS=1). Other work ran beside it (load 1.9-4.7, a helper's tests and builds): compare the load columns.\n\n${again.replace(/^## /gm, "### ")}`;
  }
  if (fs.existsSync(CORRECTION_FILE)) {
    const again = renderScale(JSON.parse(fs.readFileSync(CORRECTION_FILE, "utf8")) as ScaleResults).split("\n").slice(7).join("\n");
    md +=
      `\n# With priced days and months corrected from the shorter side (a busier machine)\n\n` +
      `The tree cost report prices a day or month in which price periods start as a whole at one instant plus a correction read at the ` +
      `next finer level for the shorter side only (src/reports/rollups.ts, pricedUnitsCte). The 3M run was measured while the machine was far busier ` +
      `(load 7.5-9.6, a 10M generation beside it; every report, the unchanged ones too, 3-10x slower than in the runs above): compare within its table, not across. ` +
      `The 10M run (load 1.7-2.9) read a database grown from 0 to 10M in one step (the same rows). ` +
      `The before/after comparison of the tree cost report alone, interleaved in one run, is in docs/scale.md.\n\n${again.replace(/^## /gm, "### ")}`;
  }
  fs.writeFileSync(path.join(OUT_DIR, "SCALE.md"), md);
  log(`wrote ${JSON_FILE} and SCALE.md`);
}

/** CPU milliseconds (user + system) of each database backend serving `database`, by pid, from /proc (the server is on this machine); empty elsewhere. */
function dbBackendCpu(database: string): Map<string, number> {
  const out = new Map<string, number>();
  let pids: string[];
  try {
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.startsWith("postgres: ") || !cmd.includes(` ${database} `)) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(pid, (Number(fields[11]) + Number(fields[12])) * 10); // utime, stime (fields 14 and 15 of stat), CLK_TCK 100
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/**
 * Backend CPU between two samples, per pid (a backend that ended in between is left out rather
 * than subtracted: an undercount of its last moments, not a negative figure).
 */
function cpuSince(before: Map<string, number>, after: Map<string, number>): number {
  let ms = 0;
  for (const [pid, v] of after) ms += v - (before.get(pid) ?? 0);
  return ms;
}

/**
 * The statements an incremental aggregator runs: the model usage INSERT branch of the installed
 * rollup trigger function (ps_model_usage_rollup_apply, all six levels in the trigger's table and
 * key order), each reading the ledger rows with id in ($1, $2] instead of the transition table.
 * Taken from the database, so that it is the trigger's own SQL, whatever migration is installed.
 */
async function aggregatorStatements(pool: Pool): Promise<string[]> {
  const src = (await pool.query<{ prosrc: string }>(`SELECT prosrc FROM pg_proc WHERE proname = 'ps_model_usage_rollup_apply'`)).rows[0].prosrc;
  const start = src.indexOf("TG_OP = 'INSERT' THEN");
  const end = src.indexOf("ELSIF TG_OP = 'DELETE'");
  if (start < 0 || end < start) throw new Error("the INSERT branch of ps_model_usage_rollup_apply was not found");
  const statements = src
    .slice(start + "TG_OP = 'INSERT' THEN".length, end)
    .split(";")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  const folded = statements.map((t) => {
    const parts = t.split("FROM new_rows n GROUP BY");
    if (parts.length !== 2) throw new Error(`expected one read of new_rows in: ${t.slice(0, 120)}`);
    return parts.join("FROM ps_model_usage n WHERE n.id > $1 AND n.id <= $2 GROUP BY");
  });
  if (folded.length !== 6) throw new Error(`expected the six model usage levels, found ${folded.length} statements`);
  return folded;
}

/**
 * One aggregator pass: in one transaction, the watermark row locked, the ledger rows with id in
 * (watermark, horizon] folded into the six levels, the watermark moved to the horizon. The horizon
 * is given (the benchmark has no concurrent writer; see the note in ingest() on what a real one needs).
 */
async function aggregatorPass(pool: Pool, statements: readonly string[], horizon: number): Promise<void> {
  await poolTransaction(pool, async (client) => {
    const watermark = Number((await client.query<{ last_id: string }>(`SELECT last_id::text FROM bench_rollup_watermark WHERE ledger = 'ps_model_usage' FOR UPDATE`)).rows[0].last_id);
    if (horizon > watermark) {
      for (const statement of statements) await client.query(statement, [watermark, horizon]);
      await client.query(`UPDATE bench_rollup_watermark SET last_id = $1 WHERE ledger = 'ps_model_usage'`, [horizon]);
    }
  });
}

/** Events a second at a billion events a month (issue 12): 1e9 / (30 x 86,400). */
const DENSE_RATE = 1e9 / (30 * 86_400);
/** Measure the incremental aggregator design beside the triggers (issue 12: "measure both and choose"). */
const AGGREGATOR = process.env.SCALE_INGEST_AGGREGATOR === "1";

/**
 * Ingest with rollup maintenance against the same ingest with the rollup triggers disabled, in a
 * database of its own, emptied before every run; ABBA order, repeated. Twice: the sparse case
 * (the generated events' own created_at, 90 days in random order: each 15-minute rollup key sees
 * about one event, so maintenance upserts about a rollup row per event) and the issue's load (the
 * same events arriving in time order at a billion a month, ~385 a second: 200,000 events are ~9
 * minutes, so a batch's events share slots, days and months and the upserts compress).
 *
 * SCALE_INGEST_AGGREGATOR=1 adds the other design of issue 12 (an incremental aggregator with a
 * durable watermark) as two more contenders in the same rounds (ABCDDCBA): the ingest with the
 * rollup INSERT trigger disabled, then the ledger rows folded into the six model usage levels by
 * the trigger's own statements (aggregatorStatements), once over all the rows, or in passes of
 * SCALE_INGEST_PASS_ROWS (20,000) as a background aggregator keeping up would; CPU of node and the
 * database's backends beside the wall times. Only what it costs is measured: the benchmark has one
 * writer, so the horizon is simply max(id). A real aggregator would also need a horizon below
 * every id of a transaction still running (ids from a sequence commit out of order), readers that
 * add the ledger rows above the watermark, the UPDATE/DELETE triggers kept, and prune held at the
 * watermark.
 */
async function ingest(): Promise<void> {
  const name = `${DB_NAME}_ingest`;
  await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin(`CREATE DATABASE "${name}"`);
  const url = urlFor(name);
  const db = await openDatabase({ url, migrate: true, writeTimeoutMs: 3_600_000 });
  const pool = new Pool({ connectionString: url, max: 2 });
  try {
    const universe = await createScaleUniverse(pool);
    const rows = Number(process.env.SCALE_INGEST_ROWS ?? "200000");
    const repeat = Number(process.env.SCALE_INGEST_REPEAT ?? "3");
    const sparse = toInputs(generateEvents(rows, 7, agentForest(1).length), universe);
    // The same events in arrival order, one every 1/385 s from a slot boundary inside the window.
    const denseStart = Math.floor((WINDOW_END - 86_400_000) / ROLLUP_SLOT) * ROLLUP_SLOT;
    const dense = sparse.map((input, i) => ({ ...input, createdAt: new Date(denseStart + Math.floor((i * 1000) / DENSE_RATE)) }));
    // The same number of events from the scale data's generator (bench/scaleData.ts: an agent's
    // events mostly its owner's, its main model's and its one connector's, as in a deployment),
    // generated in SQL, read back as inputs, and arriving in time order at the same rate.
    await growLedger(pool, universe, rows);
    const generated = await pool.query<Record<string, number | null>>(`SELECT * FROM ps_model_usage ORDER BY id`);
    const correlated: ModelUsageInput[] = generated.rows.map((r, i) => {
      const input: Record<string, unknown> = { userId: r.user_id, modelId: r.model_id, createdAt: new Date(denseStart + Math.floor((i * 1000) / DENSE_RATE)) };
      if (r.agent_id !== null) input.agentId = r.agent_id;
      if (r.connector_id !== null) input.connectorId = r.connector_id;
      for (const [field, column] of MODEL_USAGE_ALL_COUNTERS) if (r[column]) input[field] = r[column];
      return input as unknown as ModelUsageInput;
    });
    await pool.query(`TRUNCATE ps_model_usage, ps_external_api_usage RESTART IDENTITY CASCADE`);
    const passRows = Number(process.env.SCALE_INGEST_PASS_ROWS ?? "20000");
    const statements = await aggregatorStatements(pool);
    await pool.query(`CREATE TABLE bench_rollup_watermark (ledger text PRIMARY KEY, last_id bigint NOT NULL)`);
    await pool.query(`INSERT INTO bench_rollup_watermark VALUES ('ps_model_usage', 0)`);
    const triggers = async (on: boolean) => {
      for (const t of ["insert", "update", "delete", "truncate"]) {
        await pool.query(`ALTER TABLE ps_model_usage ${on ? "ENABLE" : "DISABLE"} TRIGGER ps_model_usage_rollup_${t}`);
      }
    };
    const all = readResults();
    for (const [key, inputs, arrival] of [
      ["ingestDense", dense, `in time order at ${DENSE_RATE.toFixed(0)} events/s (a billion a month): ${((rows / DENSE_RATE) / 60).toFixed(1)} minutes of events`],
      ["ingestCorrelated", correlated, `in time order at ${DENSE_RATE.toFixed(0)} events/s with the scale data's keys (an agent's owner, main model and connector)`],
      ["ingest", sparse, "over 90 days in random order"],
    ] as const) {
      type Mode = "with" | "without" | "onePass" | "passes";
      interface Run {
        ingestMs: number;
        foldMs?: number;
        passMs?: number[];
        cpu: CpuSample;
      }
      const runOnce = async (mode: Mode): Promise<Run> => {
        const on = mode === "with";
        await triggers(true);
        await pool.query(`TRUNCATE ps_model_usage RESTART IDENTITY CASCADE`);
        await pool.query(`UPDATE bench_rollup_watermark SET last_id = 0`);
        await pool.query(`CHECKPOINT`);
        if (mode === "without") await triggers(false);
        // The aggregator design: only the INSERT trigger off (UPDATE, DELETE and TRUNCATE keep theirs).
        if (mode === "onePass" || mode === "passes") await pool.query(`ALTER TABLE ps_model_usage DISABLE TRIGGER ps_model_usage_rollup_insert`);
        const node0 = process.cpuUsage();
        const db0 = dbBackendCpu(name);
        const t = process.hrtime.bigint();
        await recordModelUsageBatch(db, inputs);
        const ingestMs = Number(process.hrtime.bigint() - t) / 1e6;
        const node1 = process.cpuUsage(node0);
        const db1 = dbBackendCpu(name);
        const cpu: CpuSample = { ingestNodeMs: (node1.user + node1.system) / 1000, ingestDbMs: cpuSince(db0, db1) };
        if ((await count(pool, "ps_model_usage")) !== rows) throw new Error("ingest lost rows");
        if (mode === "with" || mode === "without") {
          if (on && (await count(pool, "ps_model_usage_rollup")) === 0) throw new Error("no rollups with triggers on");
          return { ingestMs, cpu };
        }
        if ((await count(pool, "ps_model_usage_rollup")) !== 0) throw new Error("rollups written with the INSERT trigger off");
        const maxId = Number((await pool.query<{ m: string }>(`SELECT max(id)::text AS m FROM ps_model_usage`)).rows[0].m);
        const step = mode === "onePass" ? maxId : passRows;
        const passMs: number[] = [];
        const f0 = dbBackendCpu(name);
        for (let horizon = Math.min(step, maxId); ; horizon = Math.min(horizon + step, maxId)) {
          const tp = process.hrtime.bigint();
          await aggregatorPass(pool, statements, horizon);
          passMs.push(Number(process.hrtime.bigint() - tp) / 1e6);
          if (horizon >= maxId) break;
        }
        const foldDbMs = cpuSince(f0, dbBackendCpu(name));
        if ((await count(pool, "ps_model_usage_rollup")) === 0) throw new Error("no rollups after the aggregator");
        return { ingestMs, foldMs: passMs.reduce((a, b) => a + b, 0), passMs, cpu: { ...cpu, foldDbMs } };
      };
      log(`ingest ${rows} rows ${arrival}, ${repeat} x ABBA${AGGREGATOR ? ` with the aggregator (one pass; passes of ${passRows})` : ""}, load ${load().join(" ")}`);
      await runOnce("with"); // warm-up
      const rollupRows = Object.fromEntries(
        await Promise.all(["ps_model_usage_rollup", "ps_model_usage_model_rollup", "ps_model_usage_agent_day_rollup", "ps_model_usage_agent_month_rollup", "ps_model_usage_user_day_rollup", "ps_model_usage_connector_day_rollup"].map(async (t) => [t, await count(pool, t)] as const)),
      );
      // The aggregator's rollups checked equal to the ledger after a warm-up run of each (not timed).
      const differences = async () => {
        const check = await rebuildRollups(db, { dryRun: true });
        return check.modelUsage.differences + check.externalApiUsage.differences + (check.levels ?? []).reduce((n, l) => n + l.differences, 0);
      };
      let differencesOnePass = -1;
      let differencesPasses = -1;
      if (AGGREGATOR) {
        await runOnce("onePass");
        differencesOnePass = await differences();
        await runOnce("passes");
        differencesPasses = await differences();
        log(`  aggregator rollups against the ledger: ${differencesOnePass} differences (one pass), ${differencesPasses} (passes of ${passRows})`);
        if (differencesOnePass !== 0 || differencesPasses !== 0) throw new Error("the aggregator's rollups differ from the ledger");
      }
      const withMs: number[] = [];
      const withoutMs: number[] = [];
      const cpuWith: CpuSample[] = [];
      const cpuWithout: CpuSample[] = [];
      const onePass: Run[] = [];
      const passes: Run[] = [];
      const loads: number[][] = [load()];
      // ABBA, or with the aggregator ABCDDCBA: triggers on, off, aggregator in one pass, in passes, and back.
      const order: Mode[] = AGGREGATOR ? ["with", "without", "onePass", "passes", "passes", "onePass", "without", "with"] : ["with", "without", "without", "with"];
      for (let r = 0; r < repeat; r++) {
        for (const mode of order) {
          const run = await runOnce(mode);
          if (mode === "with") {
            withMs.push(run.ingestMs);
            cpuWith.push(run.cpu);
          } else if (mode === "without") {
            withoutMs.push(run.ingestMs);
            cpuWithout.push(run.cpu);
          } else if (mode === "onePass") onePass.push(run);
          else passes.push(run);
        }
        loads.push(load());
        const fmt = (rs: Run[]) => rs.slice(-2).map((x) => `${x.ingestMs.toFixed(0)}+${(x.foldMs ?? 0).toFixed(0)}`).join(", ");
        log(
          `  round ${r + 1}: with ${withMs.slice(-2).map((v) => v.toFixed(0)).join(", ")} ms, without ${withoutMs.slice(-2).map((v) => v.toFixed(0)).join(", ")} ms` +
            (AGGREGATOR ? `, aggregator one pass ${fmt(onePass)} ms, passes ${fmt(passes)} ms` : "") +
            `, load ${load().join(" ")}`,
        );
      }
      await triggers(true);
      const aggregator: AggregatorResult | undefined = AGGREGATOR
        ? {
            passRows,
            onePass: { ingestMs: onePass.map((x) => x.ingestMs), foldMs: onePass.map((x) => x.foldMs!), cpu: onePass.map((x) => x.cpu) },
            passes: { ingestMs: passes.map((x) => x.ingestMs), foldMs: passes.map((x) => x.foldMs!), passMs: passes.map((x) => x.passMs!), cpu: passes.map((x) => x.cpu) },
            cpuWith,
            cpuWithout,
            differencesOnePass,
            differencesPasses,
          }
        : undefined;
      // Throughput ratio: rows/s with maintenance over rows/s without.
      all[key] = { rows, chunk: "recordModelUsageBatch default chunks", arrival, withTriggersMs: withMs, withoutTriggersMs: withoutMs, ratio: median(withoutMs) / median(withMs), rollupRows, load: loads, measuredAt: new Date().toISOString(), ...(aggregator ? { aggregator } : {}) };
      writeResults(all); // after each arrival, so that a run cut short keeps what it measured
    }
  } finally {
    await db.close();
    await pool.end();
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

/** Prune 30 days of the scale database while one-row inserts run beside it; space before and after. */
async function pruneBench(): Promise<void> {
  const { db, pool, universe } = await openScale();
  const writer = await openDatabase({ url: urlFor(DB_NAME), writeTimeoutMs: 60_000 });
  try {
    const modelRowsBefore = await count(pool, "ps_model_usage");
    const tables = ["ps_model_usage", "ps_external_api_usage"];
    const sizes: Record<string, { before: number; afterPrune: number; afterVacuum: number; freeAfterVacuum: number }> = {};
    const sizeOf = async (t: string) => Number((await pool.query<{ s: string }>(`SELECT pg_total_relation_size($1)::text AS s`, [t])).rows[0].s);
    for (const t of tables) sizes[t] = { before: await sizeOf(t), afterPrune: 0, afterVacuum: 0, freeAfterVacuum: 0 };
    const loads = [load()];
    let stop = false;
    const latencies: number[] = [];
    const inserter = (async () => {
      let i = 0;
      while (!stop) {
        const t = process.hrtime.bigint();
        await recordModelUsage(writer, { userId: 1, modelId: universe.modelIds[i % 5], agentId: universe.agentIds[i % 1000], tokenInCount: 100, tokenOutCount: 10 });
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        i++;
      }
    })();
    await new Promise((r) => setTimeout(r, 2000));
    log(`pruning 30 days of ${modelRowsBefore.toLocaleString("en-US")} rows while inserting one row at a time, load ${load().join(" ")}`);
    const t0 = Date.now();
    const result = await prune(db, { before: new Date(WINDOW_START + 30 * 86_400_000) });
    const pruneSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 2000));
    stop = true;
    await inserter;
    loads.push(load());
    for (const t of tables) sizes[t].afterPrune = await sizeOf(t);
    await pool.query(`VACUUM ps_model_usage, ps_external_api_usage`);
    await pool.query(`CREATE EXTENSION IF NOT EXISTS pgstattuple`);
    for (const t of tables) {
      sizes[t].afterVacuum = await sizeOf(t);
      sizes[t].freeAfterVacuum = Number((await pool.query<{ f: string }>(`SELECT free_space::text AS f FROM pgstattuple($1)`, [t])).rows[0].f);
    }
    loads.push(load());
    const all = readResults();
    const measured: PruneResult = {
      modelRowsBefore,
      days: 30,
      deleted: result.modelUsage.deleted + result.externalApiUsage.deleted,
      pruneSeconds,
      inserts: latencies.length,
      insertP50Ms: percentile(latencies, 50),
      insertP99Ms: percentile(latencies, 99),
      insertMaxMs: percentile(latencies, 100),
      sizes,
      load: loads,
      measuredAt: new Date().toISOString(),
    };
    all.prunes = { ...all.prunes, [String(modelRowsBefore)]: measured };
    log(`pruned ${measured.deleted} rows in ${pruneSeconds.toFixed(0)} s; inserts p99 ${measured.insertP99Ms.toFixed(1)} ms, max ${measured.insertMaxMs.toFixed(1)} ms`);
    writeResults(all);
  } finally {
    await writer.close();
    await db.close();
    await pool.end();
  }
}

const fmtMs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);
const mb = (b: number) => `${(b / 1048576).toFixed(0)} MB`;

export function renderScale(results: ScaleResults): string {
  const lines: string[] = [
    "# The benchmark at scale",
    "",
    "Generated by `npm run bench:scale` (bench/scale.ts, data from bench/scaleData.ts) from bench/scale-results.json; how it is",
    "measured is described at the top of bench/scale.ts and in bench/NOTES.md. One PostgreSQL 15 server on this 2-core",
    "machine, shared with other work: each figure carries the load average (1, 5, 15 min) at the end of its runs.",
    "Medians of interleaved runs; `identical` says whether the report with rollups equals the report from the ledger alone.",
    "",
  ];
  const sizes = Object.values(results.sizes).sort((a, b) => a.modelRows - b.modelRows);
  for (const s of sizes) {
    const st = s.storage;
    const ledgerBytes = st["ps_model_usage heap"] + st["ps_model_usage indexes"];
    lines.push(
      `## ${s.modelRows.toLocaleString("en-US")} model usage rows (+ ${s.apiRows.toLocaleString("en-US")} external API rows), measured ${s.measuredAt.slice(0, 16)} UTC`,
      "",
      s.generate.seconds > 0
        ? `Grown to this size in ${s.generate.seconds.toFixed(0)} s (triggers off), rollups rebuilt by rebuildRollups in ${s.generate.rebuildSeconds.toFixed(0)} s and checked equal to the ledger (rebuildRollups dryRun: ${s.generate.differencesAfter} differences) in ${s.generate.verifySeconds.toFixed(0)} s.`
        : "Rows generated by an earlier run (the 3M rows: see the last section).",
      "",
      `Storage: model usage ledger ${mb(st["ps_model_usage heap"])} heap + ${mb(st["ps_model_usage indexes"])} indexes (${(st["ps_model_usage heap"] / s.modelRows).toFixed(0)} + ${(st["ps_model_usage indexes"] / s.modelRows).toFixed(0)} = ${(ledgerBytes / s.modelRows).toFixed(0)} bytes an event); ` +
        `model usage rollups ${s.rollupRows.modelUsage.toLocaleString("en-US")} rows, ${mb(st["ps_model_usage_rollup heap"] + st["ps_model_usage_rollup indexes"])} (${(s.modelRows / s.rollupRows.modelUsage).toFixed(1)} events a rollup row, ${((st["ps_model_usage_rollup heap"] + st["ps_model_usage_rollup indexes"]) / s.modelRows).toFixed(0)} bytes an event); ` +
        `external API rollups ${s.rollupRows.externalApiUsage.toLocaleString("en-US")} rows` +
        (s.rollupRows.levels
          ? `; levels: ${Object.entries(s.rollupRows.levels).map(([t, n]) => `${t} ${n.toLocaleString("en-US")} rows, ${mb(st[`${t} heap`] + st[`${t} indexes`])}`).join("; ")}.`
          : " (no levels yet)."),
      "",
      "| report | with rollups | ledger alone | PolicySynth's walk | walk / rollups | walk / ledger | identical | load at end |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const r of s.reads) {
      const ps = r.policySynth;
      lines.push(
        `| ${r.query} | ${fmtMs(r.withRollups.medianMs)} | ${fmtMs(r.withoutRollups.medianMs)} | ${ps ? fmtMs(ps.medianMs) : "not run"} | ${ps ? `${(ps.medianMs / r.withRollups.medianMs).toFixed(1)}x` : ""} | ${ps ? `${(ps.medianMs / r.withoutRollups.medianMs).toFixed(1)}x` : ""} | ${r.identical ? "yes" : "**NO**"} | ${r.withRollups.loadEnd.join(" ")} |`,
      );
    }
    lines.push("");
  }
  if (sizes.length > 1) {
    lines.push("## Flatness (median with rollups, ms)", "", `| report | ${sizes.map((s) => `${(s.modelRows / 1e6).toFixed(0)}M`).join(" | ")} |`, `|---|${sizes.map(() => "---").join("|")}|`);
    for (const q of sizes[0].reads.map((r) => r.query)) {
      lines.push(`| ${q} | ${sizes.map((s) => { const r = s.reads.find((x) => x.query === q); return r ? fmtMs(r.withRollups.medianMs) : ""; }).join(" | ")} |`);
    }
    lines.push("");
  }
  lines.push("## Targets", "");
  for (const s of sizes) {
    const slow = s.reads.filter((r) => r.withRollups.medianMs >= 100);
    lines.push(`- ${(s.modelRows / 1e6).toFixed(0)}M, each report under 100 ms with rollups: ${slow.length === 0 ? "met" : `**missed** by ${slow.map((r) => `${r.query} (${fmtMs(r.withRollups.medianMs)})`).join(", ")}`}; results identical with and without rollups: ${s.reads.every((r) => r.identical) ? "yes" : "**no**"}.`);
    for (const r of s.reads.filter((x) => x.policySynth)) {
      const withR = r.policySynth!.medianMs / r.withRollups.medianMs;
      const without = r.policySynth!.medianMs / r.withoutRollups.medianMs;
      lines.push(`  - ${r.query}: ${withR.toFixed(1)}x PolicySynth's walk with rollups (target 100x: ${withR >= 100 ? "met" : "**missed**"}), ${without.toFixed(1)}x without (target 20x: ${without >= 20 ? "met" : "**missed**"}).`);
    }
  }
  if (sizes.length > 1) {
    const [a, b] = [sizes[0], sizes[sizes.length - 1]];
    lines.push(`- Flat from ${(a.modelRows / 1e6).toFixed(0)}M to ${(b.modelRows / 1e6).toFixed(0)}M (median with rollups, largest / smallest): ${a.reads.map((r) => { const x = b.reads.find((y) => y.query === r.query); return x ? `${r.query} ${(x.withRollups.medianMs / r.withRollups.medianMs).toFixed(2)}x` : ""; }).join("; ")}.`);
  }
  if (results.ingestDense) {
    lines.push(
      `- Ingest with rollup maintenance at least 0.85x the same ingest without, judged at the issue's load (a billion events a month, arriving in time order): ${results.ingestDense.ratio >= 0.85 ? "met" : "**missed**"} (${results.ingestDense.ratio.toFixed(2)}x)` +
        (results.ingestCorrelated ? `; the same load with the scale data's keys (each agent's owner, main model and connector): ${results.ingestCorrelated.ratio >= 0.85 ? "met" : "**missed**"} (${results.ingestCorrelated.ratio.toFixed(2)}x)` : "") +
        (results.ingest ? `; in the sparse case (90 days in random order, about one event per rollup row): ${results.ingest.ratio >= 0.85 ? "met" : "**missed**"} (${results.ingest.ratio.toFixed(2)}x).` : "."),
    );
  } else if (results.ingest) {
    lines.push(`- Ingest with rollup maintenance at least 0.85x the same ingest without: ${results.ingest.ratio >= 0.85 ? "met" : "**missed**"} (${results.ingest.ratio.toFixed(2)}x).`);
  }
  const prunes = Object.values(results.prunes ?? {}).sort((a, b) => a.modelRowsBefore - b.modelRowsBefore);
  for (const p of prunes) lines.push(`- Prune of 30 days at ${p.modelRowsBefore.toLocaleString("en-US")} rows blocking no insert more than 1 s: ${p.insertMaxMs <= 1000 ? "met" : "**missed**"} (slowest ${fmtMs(p.insertMaxMs)}).`);
  lines.push("");
  for (const i of [results.ingestDense, results.ingestCorrelated, results.ingest]) {
    if (!i) continue;
    lines.push(
      `## Ingest with rollup maintenance, ${i.arrival ?? "over 90 days in random order"} (measured ${i.measuredAt.slice(0, 16)} UTC)`,
      "",
      `recordModelUsageBatch of ${i.rows.toLocaleString("en-US")} rows (${i.chunk}), into an emptied table, rollup triggers on and off in ABBA order: ` +
        `with ${fmtMs(median(i.withTriggersMs))} (runs ${i.withTriggersMs.map((v) => v.toFixed(0)).join(", ")} ms), without ${fmtMs(median(i.withoutTriggersMs))} (runs ${i.withoutTriggersMs.map((v) => v.toFixed(0)).join(", ")} ms): ` +
        `**${i.ratio.toFixed(2)}x** the throughput without (target >= 0.85x). Load: ${i.load.map((l) => l.join(" ")).join("; ")}.` +
        (i.rollupRows ? ` Rollup rows the ${i.rows.toLocaleString("en-US")} events make: ${Object.entries(i.rollupRows).map(([t, n]) => `${t} ${n.toLocaleString("en-US")}`).join(", ")}.` : ""),
      "",
    );
    if (i.aggregator) lines.push(...renderAggregator(i, i.aggregator));
  }
  for (const p of prunes) {
    lines.push(
      `## Prune of ${p.days} days at ${p.modelRowsBefore.toLocaleString("en-US")} rows (measured ${p.measuredAt.slice(0, 16)} UTC)`,
      "",
      `${p.deleted.toLocaleString("en-US")} ledger rows deleted in ${p.pruneSeconds.toFixed(0)} s while one-row recordModelUsage calls ran beside it: ${p.inserts.toLocaleString("en-US")} inserts, p50 ${fmtMs(p.insertP50Ms)}, p99 ${fmtMs(p.insertP99Ms)}, max ${fmtMs(p.insertMaxMs)} (target: none blocked more than 1 s). Load: ${p.load.map((l) => l.join(" ")).join("; ")}.`,
      "",
      "| table (with indexes) | before | after prune | after VACUUM | free space inside after VACUUM |",
      "|---|---|---|---|---|",
      ...Object.entries(p.sizes).map(([t, s]) => `| ${t} | ${mb(s.before)} | ${mb(s.afterPrune)} | ${mb(s.afterVacuum)} | ${mb(s.freeAfterVacuum)} (heap) |`),
      "",
    );
  }
  return lines.join("\n");
}

/** The aggregator design beside the triggers, for one arrival: wall and CPU medians, throughput over the ingest without maintenance. */
function renderAggregator(i: IngestResult, a: AggregatorResult): string[] {
  const W = median(i.withTriggersMs);
  const N = median(i.withoutTriggersMs);
  const cpuTotal = (c: CpuSample) => c.ingestNodeMs + c.ingestDbMs + (c.foldDbMs ?? 0);
  const cpu = (cs: CpuSample[]) => (cs.length && cs.every((c) => c.ingestDbMs > 0) ? fmtMs(median(cs.map(cpuTotal))) : "n/a");
  const cpuFold = (cs: CpuSample[]) => (cs.length && cs.every((c) => c.foldDbMs !== undefined && c.ingestDbMs > 0) ? fmtMs(median(cs.map((c) => c.foldDbMs!))) : "n/a");
  const row = (label: string, r: { ingestMs: number[]; foldMs: number[]; cpu: CpuSample[] }) => {
    const total = median(r.ingestMs.map((v, k) => v + r.foldMs[k]));
    return `| ${label} | ${fmtMs(median(r.ingestMs))} (${(N / median(r.ingestMs)).toFixed(2)}x) | ${fmtMs(median(r.foldMs))} (runs ${r.foldMs.map((v) => v.toFixed(0)).join(", ")} ms) | ${fmtMs(total)} | **${(N / total).toFixed(2)}x** | ${(W / total).toFixed(2)}x | ${cpu(r.cpu)} (fold ${cpuFold(r.cpu)}) |`;
  };
  const perPass = a.passes.passMs.flat();
  return [
    `Beside them in the same rounds (ABCDDCBA: triggers on, off, aggregator in one pass, aggregator in passes, and back), the incremental aggregator design: the same ingest with the rollup INSERT trigger disabled, ` +
      `then the ledger rows above a watermark folded into the six model usage levels by the trigger's own statements reading the ledger by id range, the watermark row moved in the same transaction. ` +
      `Its rollups checked equal to the ledger (rebuildRollups dryRun) after a warm-up run of each: ${a.differencesOnePass} and ${a.differencesPasses} differences. ` +
      `Medians of ${a.onePass.ingestMs.length} runs each; throughput as above, over the ingest without maintenance (${fmtMs(N)}); CPU is node's plus the database backends' (user + system, from /proc), not the server's background processes.`,
    "",
    "| contender | ingest (throughput / without) | fold | ingest + fold | throughput / without | throughput / triggers on | CPU |",
    "|---|---|---|---|---|---|---|",
    `| triggers on | ${fmtMs(W)} (${(N / W).toFixed(2)}x) | in the ingest | ${fmtMs(W)} | **${(N / W).toFixed(2)}x** | 1.00x | ${cpu(a.cpuWith)} |`,
    `| triggers off (no rollups) | ${fmtMs(N)} | none | ${fmtMs(N)} | 1.00x | ${(W / N).toFixed(2)}x | ${cpu(a.cpuWithout)} |`,
    row("aggregator, one pass over all rows", a.onePass),
    row(`aggregator, ${Math.ceil(i.rows / a.passRows)} passes of ${a.passRows.toLocaleString("en-US")} rows`, a.passes),
    "",
    `A pass of ${a.passRows.toLocaleString("en-US")} rows: median ${fmtMs(median(perPass))}, max ${fmtMs(Math.max(...perPass))} (${perPass.length} passes).`,
    "",
  ];
}

async function main(): Promise<void> {
  log(`scale bench: ${ONLY}, sizes ${SIZES.join(", ")}, load ${load().join(" ")}`);
  if (ONLY === "reads" || ONLY === "grow") await reads();
  else if (ONLY === "ingest") await ingest();
  else if (ONLY === "prune") await pruneBench();
  else if (ONLY === "render") writeResults(readResults());
  else throw new Error(`SCALE_ONLY must be reads, ingest, prune or render, got ${ONLY}`);
  if (process.env.SCALE_DROP === "1") await admin(`DROP DATABASE IF EXISTS "${DB_NAME}" WITH (FORCE)`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
