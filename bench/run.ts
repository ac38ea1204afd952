/**
 * `npm run bench`: the package against hand-written `pg`, `pg` COPY, Prisma and Sequelize, on
 * PostgreSQL and on PGlite, with the same seeded data. Prints a table and writes
 * bench/results.json and bench/RESULTS.md.
 *
 * Environment:
 * - BENCH_SCALE (default 1): multiplies every size (0.05 for a quick try).
 * - BENCH_BACKENDS (default "postgresql,pglite").
 * - BENCH_CHUNK (default: the package's DEFAULT_BATCH_CHUNK_SIZE): rows per statement for every
 *   chunked contender. Ours gets one recordModelUsageBatch call with all rows (it splits them
 *   itself, all in one transaction); the unnest baseline does the same by hand.
 * - BENCH_CREATEMANY_FULL=1: also run Prisma createMany at the large size instead of
 *   extrapolating it from the small one.
 * - BENCH_ADMIN_URL: the server to create the scratch database on.
 * - BENCH_OUT (default bench/): where results.json and RESULTS.md go.
 */
import path from "node:path";
import { syncPricesFromConfiguration } from "../src";
import { DEFAULT_BATCH_CHUNK_SIZE, type ModelUsageInput } from "../src/types";
import {
  ingestCopy,
  ingestCreateMany,
  ingestSequelize,
  ingestUnnest,
  insertOnePg,
  insertOneSequelize,
  sameSums,
  sumHandWritten,
  sumSequelize,
  HAND_WRITTEN_SUM_SQL,
  treePolicySynthPlain,
  treePolicySynthSequelize,
  agentCostsPolicySynthPlain,
  agentCostsPolicySynthSequelize,
  type SumQuery,
  type SumTable,
  type TreeTotals,
} from "./baselines";
import { expectedTotals, generateEvents, agentForest, toInputs, type EventColumns } from "./data";
import { ours } from "./ours";
import { collectGarbage, human, median, percentile, timed } from "./stats";
import { openPgliteBackend, openPostgresBackend, tableTotals, truncateUsage, type Backend } from "./setup";
import { defineSequelizeModels, type SequelizeModels } from "./sequelizeModel";
import { measureRss, type RssResult } from "./rss";
import { describeMachine, writeReports, type BenchResults, type BackendResults } from "./report";
import { PACKAGE_ROOT } from "../src/schema/migrate";

const SCALE = Number(process.env.BENCH_SCALE ?? "1");
const CHUNK_OVERRIDE = process.env.BENCH_CHUNK ? Number(process.env.BENCH_CHUNK) : undefined;
const CHUNK = CHUNK_OVERRIDE ?? DEFAULT_BATCH_CHUNK_SIZE;
const BACKENDS = (process.env.BENCH_BACKENDS ?? "postgresql,pglite").split(",").map((s) => s.trim());
const CREATEMANY_FULL = process.env.BENCH_CREATEMANY_FULL === "1";
const OUT_DIR = process.env.BENCH_OUT ?? path.join(PACKAGE_ROOT, "bench");
const SEED = 20261125;

const SMALL = Math.max(1000, Math.round(100_000 * SCALE));
const LARGE = Math.max(2000, Math.round(1_000_000 * SCALE));
const SINGLE_CALLS = Math.max(200, Math.round(5000 * Math.min(1, SCALE * 4)));
const SUM_RUNS = 7;
const TREE_RUNS = 3;

function log(message: string): void {
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function verifyIngest(backend: Backend, events: EventColumns, rows: number, label: string): Promise<boolean> {
  const expected = expectedTotals(events, rows);
  const actual = await tableTotals(backend);
  const ok = actual.rows === expected.rows && actual.tokenIn === expected.tokenIn;
  if (!ok) {
    throw new Error(
      `${label}: stored ${actual.rows} rows / SUM(token_in_count) ${actual.tokenIn}, generated ${expected.rows} / ${expected.tokenIn}`,
    );
  }
  return ok;
}

type IngestName = "ps-usage recordModelUsageBatch" | "pg unnest (hand-written)" | "pg COPY (pg-copy-streams)" | "Prisma createMany" | "Sequelize bulkCreate";

const WARM_UP_ROWS = 2000;

async function warmUp(name: IngestName, backend: Backend, models: SequelizeModels | undefined, events: EventColumns): Promise<void> {
  const inputs = toInputs(events, backend.ids, events.count - WARM_UP_ROWS, events.count);
  const chunk = Math.min(CHUNK, 500);
  if (name === "ps-usage recordModelUsageBatch") await ours.ingest(backend, inputs, chunk);
  else if (name === "pg unnest (hand-written)") await ingestUnnest(backend, inputs, chunk);
  else if (name === "pg COPY (pg-copy-streams)") await ingestCopy(backend, inputs);
  else if (name === "Sequelize bulkCreate") await ingestSequelize(models!, inputs, chunk);
  else await ingestCreateMany(backend, inputs, chunk);
}

async function benchIngest(backend: Backend, events: EventColumns, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  for (const size of [SMALL, LARGE]) {
    const inputs = toInputs(events, backend.ids, 0, size);
    const contenders: [IngestName, (() => Promise<void>) | undefined][] = [
      ["ps-usage recordModelUsageBatch", () => ours.ingest(backend, inputs, CHUNK_OVERRIDE)],
      ["pg unnest (hand-written)", () => ingestUnnest(backend, inputs, CHUNK)],
      ["pg COPY (pg-copy-streams)", backend.pool ? () => ingestCopy(backend, inputs) : undefined],
      ["Sequelize bulkCreate", models ? () => ingestSequelize(models, inputs, CHUNK) : undefined],
      ["Prisma createMany", size === SMALL || CREATEMANY_FULL ? () => ingestCreateMany(backend, inputs, CHUNK) : undefined],
    ];
    for (const [name, run] of contenders) {
      if (!run) {
        const small = results.ingest.find((r) => r.contender === name && r.rows === SMALL && r.rowsPerSec !== null);
        if (name === "Prisma createMany" && small) {
          results.ingest.push({
            contender: name,
            rows: size,
            ms: null,
            rowsPerSec: small.rowsPerSec,
            verified: false,
            note: `extrapolated from the ${human(SMALL)}-row run (same rows/s); set BENCH_CREATEMANY_FULL=1 to run it`,
          });
        } else {
          results.ingest.push({ contender: name, rows: size, ms: null, rowsPerSec: null, verified: false, note: "n/a on PGlite" });
        }
        continue;
      }
      if (size === SMALL) {
        // Warm-up, not counted: connections, prepared plans, code paths compiled by V8.
        await truncateUsage(backend);
        await warmUp(name, backend, models, events);
      }
      await truncateUsage(backend);
      log(`${backend.kind}: ingest ${human(size)} rows with ${name}`);
      const { ms } = await timed(run);
      const verified = await verifyIngest(backend, events, size, name);
      const rowsPerSec = size / (ms / 1000);
      log(`  ${human(rowsPerSec)} rows/s (${(ms / 1000).toFixed(2)} s), count and SUM(token_in_count) verified`);
      results.ingest.push({ contender: name, rows: size, ms, rowsPerSec, verified, note: "" });
    }
  }
}

async function benchSingle(backend: Backend, events: EventColumns, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  const inputs = toInputs(events, backend.ids, 0, SINGLE_CALLS);
  const contenders: [string, ((row: ModelUsageInput) => Promise<unknown>) | undefined][] = [
    ["ps-usage recordModelUsage", (row) => ours.insertOne(backend, row)],
    [backend.pool ? "pg INSERT … RETURNING *" : "PGlite INSERT … RETURNING *", (row) => insertOnePg(backend, row)],
    ["Sequelize create", models ? (row) => insertOneSequelize(models, row) : undefined],
  ];
  for (const [name, run] of contenders) {
    if (!run) {
      results.single.push({ contender: name, calls: 0, p50Ms: null, p99Ms: null, meanMs: null, note: "n/a on PGlite" });
      continue;
    }
    await truncateUsage(backend);
    log(`${backend.kind}: ${SINGLE_CALLS} single records with ${name}`);
    // A short warm-up (connections, prepared plans, JIT) that is not counted.
    for (let i = 0; i < 50; i++) await run(inputs[i]);
    await truncateUsage(backend);
    collectGarbage();
    const durations: number[] = [];
    for (const row of inputs) {
      const start = performance.now();
      await run(row);
      durations.push(performance.now() - start);
    }
    await verifyIngest(backend, events, SINGLE_CALLS, name);
    const meanMs = durations.reduce((a, b) => a + b, 0) / durations.length;
    const p50Ms = percentile(durations, 50);
    const p99Ms = percentile(durations, 99);
    log(`  p50 ${p50Ms.toFixed(3)} ms, p99 ${p99Ms.toFixed(3)} ms`);
    results.single.push({ contender: name, calls: SINGLE_CALLS, p50Ms, p99Ms, meanMs, note: "" });
  }
}

const SUM_QUERIES: [SumQuery, string][] = [
  ["total", "total (all counters)"],
  ["byAgent", "by agent"],
  ["byModelDay", "by model and day (UTC)"],
];

/** Index of the fastest hand-written candidate (median of 5 after a warm-up); all must agree. */
async function fastestHandWritten(backend: Backend, query: SumQuery, reference: SumTable): Promise<number> {
  const candidates = HAND_WRITTEN_SUM_SQL[query];
  if (candidates.length === 1) return 0;
  const medians: number[] = [];
  for (let v = 0; v < candidates.length; v++) {
    if (!sameSums(await sumHandWritten(backend, query, v), reference)) throw new Error(`hand-written ${query} candidate ${v} disagrees with candidate 0`);
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) runs.push((await timed(() => sumHandWritten(backend, query, v))).ms);
    medians.push(median(runs));
  }
  const best = medians.indexOf(Math.min(...medians));
  log(`  hand-written candidates (ms): ${medians.map((m) => m.toFixed(1)).join(", ")}; using #${best}`);
  return best;
}

async function benchSums(backend: Backend, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  for (const [query, label] of SUM_QUERIES) {
    log(`${backend.kind}: sums ${label}`);
    const reference = await sumHandWritten(backend, query, 0);
    const best = await fastestHandWritten(backend, query, reference);
    const contenders: [string, (() => Promise<SumTable>) | undefined][] = [
      ["ps-usage sumModelUsage", () => ours.sum(backend, query)],
      ["hand-written SQL", () => sumHandWritten(backend, query, best)],
      ["Sequelize findAll + SUM/group", models ? () => sumSequelize(models, query) : undefined],
    ];
    const timings = new Map<string, number[]>();
    const verified = new Map<string, boolean>();
    for (const [name, run] of contenders) {
      if (!run) continue;
      // Warm-up, and the correctness check: the same sums as the hand-written SQL.
      verified.set(name, sameSums(await run(), reference));
      timings.set(name, []);
    }
    // Interleaved runs, so a burst of load from elsewhere hits every contender alike.
    for (let i = 0; i < SUM_RUNS; i++) {
      for (const [name, run] of contenders) {
        if (!run) continue;
        const { ms } = await timed(run);
        timings.get(name)!.push(ms);
      }
    }
    for (const [name, run] of contenders) {
      if (!run) {
        results.sums.push({ query: label, contender: name, medianMs: null, runsMs: [], groups: reference.size, verified: false, note: "n/a on PGlite" });
        continue;
      }
      const runs = timings.get(name)!;
      const ok = verified.get(name)!;
      if (!ok) log(`  WARNING: ${name} returned different sums than the hand-written SQL`);
      log(`  ${name}: median ${median(runs).toFixed(1)} ms${ok ? "" : " (RESULT DIFFERS)"}`);
      const sql = name === "hand-written SQL" && HAND_WRITTEN_SUM_SQL[query].length > 1 ? `fastest of ${HAND_WRITTEN_SUM_SQL[query].length} candidates: ${HAND_WRITTEN_SUM_SQL[query][best].replace(/SELECT (\w+), (.*?) AS day, .*/, "$2")}` : "";
      results.sums.push({ query: label, contender: name, medianMs: median(runs), runsMs: runs, groups: reference.size, verified: ok, note: ok ? sql : "result differs from hand-written SQL" });
    }
  }
}

function sameTree(a: TreeTotals, b: TreeTotals): boolean {
  return sameSums(a.perAgent, b.perAgent) && a.total.every((v, i) => v === b.total[i]);
}

async function benchTree(backend: Backend, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  const rootId = backend.ids.agentIds[0];
  const contenders: [string, () => Promise<TreeTotals>][] = [
    ["ps-usage sumAgentTreeUsage (one recursive query)", () => ours.tree(backend, rootId)],
    [
      models ? "PolicySynth's way (Sequelize: BFS, 1 query per agent, rows summed in JS)" : "PolicySynth's way (PGlite queries: BFS, 1 query per agent, rows summed in JS)",
      models ? () => treePolicySynthSequelize(models, rootId) : () => treePolicySynthPlain(backend, rootId),
    ],
  ];
  log(`${backend.kind}: sub-agent tree totals`);
  const outputs: TreeTotals[] = [];
  for (const [, run] of contenders) outputs.push(await run());
  const ok = sameTree(outputs[0], outputs[1]);
  const agentsWithUsage = outputs[1].perAgent.size;
  const timings = contenders.map(() => [] as number[]);
  for (let i = 0; i < TREE_RUNS; i++) {
    for (let c = 0; c < contenders.length; c++) timings[c].push((await timed(contenders[c][1])).ms);
  }
  contenders.forEach(([name], c) => {
    log(`  ${name}: median ${median(timings[c]).toFixed(1)} ms${ok ? "" : " (RESULTS DIFFER)"}`);
    results.tree.push({ contender: name, medianMs: median(timings[c]), runsMs: timings[c], agents: agentsWithUsage, verified: ok, note: ok ? "" : "per-agent sums differ" });
  });
}

async function benchTreeCost(backend: Backend, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  const rootId = backend.ids.agentIds[0];
  await syncPricesFromConfiguration(backend.db);
  const contenders: [string, () => Promise<{ agents: number; totalCost: string }>][] = [
    ["ps-usage agentTreeCostReport (one SQL statement, exact decimals)", () => ours.treeCost(backend, rootId)],
    [
      models ? "PolicySynth getAgentCosts (Sequelize: BFS, rows priced in JS floats, cents per agent)" : "PolicySynth getAgentCosts (PGlite queries: BFS, rows priced in JS floats, cents per agent)",
      models ? () => agentCostsPolicySynthSequelize(models, rootId) : () => agentCostsPolicySynthPlain(backend, rootId),
    ],
  ];
  log(`${backend.kind}: sub-agent tree cost`);
  const outputs: { agents: number; totalCost: string }[] = [];
  for (const [, run] of contenders) outputs.push(await run());
  const timings = contenders.map(() => [] as number[]);
  for (let i = 0; i < TREE_RUNS; i++) {
    for (let c = 0; c < contenders.length; c++) timings[c].push((await timed(contenders[c][1])).ms);
  }
  contenders.forEach(([name], c) => {
    log(`  ${name}: median ${median(timings[c]).toFixed(1)} ms, total ${outputs[c].totalCost} USD`);
    results.treeCost.push({ contender: name, medianMs: median(timings[c]), runsMs: timings[c], agents: outputs[c].agents, totalCost: outputs[c].totalCost });
  });
}

async function runBackend(kind: string, events: EventColumns, results: BenchResults): Promise<void> {
  log(`opening ${kind}`);
  const backend = kind === "postgresql" ? await openPostgresBackend() : await openPgliteBackend();
  const models = backend.url ? defineSequelizeModels(backend.url) : undefined;
  const backendResults: BackendResults = { ingest: [], single: [], sums: [], tree: [], treeCost: [] };
  results.backends[backend.kind] = backendResults;
  try {
    await benchIngest(backend, events, models, backendResults);
    await benchSingle(backend, events, models, backendResults);
    log(`${backend.kind}: loading ${human(LARGE)} rows for the sums`);
    await truncateUsage(backend);
    await ours.ingest(backend, toInputs(events, backend.ids, 0, LARGE), CHUNK_OVERRIDE);
    await verifyIngest(backend, events, LARGE, "reload");
    await backend.sql("VACUUM ANALYZE ps_model_usage");
    await benchSums(backend, models, backendResults);
    await benchTree(backend, models, backendResults);
    await benchTreeCost(backend, models, backendResults);
  } finally {
    await models?.sequelize.close();
    await backend.close();
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const machine = describeMachine();
  log(`scale ${SCALE}: ingest ${human(SMALL)} and ${human(LARGE)} rows, chunk ${CHUNK}, ${SINGLE_CALLS} single calls; load ${machine.loadAverage.join(" ")}`);
  const agentCount = agentForest(1).length;
  const events = generateEvents(LARGE, SEED, agentCount);
  const results: BenchResults = {
    startedAt: startedAt.toISOString(),
    finishedAt: "",
    machine,
    loadAverageEnd: [],
    config: { scale: SCALE, chunk: CHUNK, small: SMALL, large: LARGE, singleCalls: SINGLE_CALLS, sumRuns: SUM_RUNS, treeRuns: TREE_RUNS, seed: SEED, agents: agentCount, createManyFull: CREATEMANY_FULL },
    backends: {},
    rss: [],
  };
  for (const kind of BACKENDS) await runBackend(kind, events, results);
  const rss: RssResult[] = await measureRss(LARGE, SMALL, CHUNK, BACKENDS, log);
  results.rss.push(...rss);
  results.finishedAt = new Date().toISOString();
  results.loadAverageEnd = describeMachine().loadAverage;
  writeReports(results, OUT_DIR, (line) => process.stdout.write(line + "\n"));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
