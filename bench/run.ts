/**
 * `npm run bench`: the package against hand-written `pg` (unnest with JS arrays and with text
 * array literals, COPY text and binary), Prisma and Sequelize, on PostgreSQL and on PGlite, with
 * the same seeded data. Prints a table and writes bench/results.json and bench/RESULTS.md.
 *
 * Environment:
 * - BENCH_SCALE (default 1): multiplies every size (0.05 for a quick try).
 * - BENCH_BACKENDS (default "postgresql,pglite").
 * - BENCH_ONLY (default all): a comma list of sections to run, from ingest, single, sums, tree,
 *   treecost, rss. The others keep their figures from bench/results.json (same scale and chunk
 *   only), and RESULTS.md says when each section was measured.
 * - BENCH_REPEAT (default 3): timed runs of each ingest contender, interleaved.
 * - BENCH_SLOW_REPEAT (default 1): timed runs of Prisma createMany and Sequelize bulkCreate at
 *   each size (minutes each). BENCH_ORMS_LARGE=0 leaves them out at the large size (where they
 *   take 2.5–40 minutes a run on a 2-core machine); nothing is extrapolated.
 * - BENCH_INGEST_KINDS and BENCH_INGEST_SIZES: an ingest slice, for the long ORM runs at 1M (25 minutes
 *   of Prisma createMany on PostgreSQL) without re-running everything else: only the contenders of
 *   these kinds (from unnest, copy, orm, or a contender's name such as "Prisma createMany"; ours always runs, the ratios are taken within the slice)
 *   at these sizes (small, large). Its rows replace those contenders' rows at those sizes and are
 *   marked with the slice's time and load; the other ingest rows keep their figures.
 * - BENCH_RSS_REPEAT (default 3): runs of the NDJSON import at the large size in the peak-RSS section.
 * - BENCH_CHUNK (default: the package's DEFAULT_BATCH_CHUNK_SIZE): rows per statement for every
 *   chunked contender. Ours gets one recordModelUsageBatch call with all rows (it splits them
 *   itself, all in one transaction); the unnest baselines do the same by hand.
 * - BENCH_ADMIN_URL: the server to create the scratch database on.
 * - BENCH_OUT (default bench/): where results.json and RESULTS.md go.
 */
import fs from "node:fs";
import path from "node:path";
import { syncPricesFromConfiguration } from "../src";
import { DEFAULT_BATCH_CHUNK_SIZE, type ModelUsageInput } from "../src/types";
import {
  ingestCopy,
  ingestCopyBinary,
  ingestCopyBinaryHandWritten,
  ingestUnnestLiterals,
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
import { OURS_INGEST, OURS_SINGLE_KEYED, describeMachine, writeReports, type BenchResults, type BackendResults, type IngestKind, type IngestResult, type SectionRun } from "./report";
import { PACKAGE_ROOT } from "../src/schema/migrate";

const SCALE = Number(process.env.BENCH_SCALE ?? "1");
const CHUNK_OVERRIDE = process.env.BENCH_CHUNK ? Number(process.env.BENCH_CHUNK) : undefined;
const CHUNK = CHUNK_OVERRIDE ?? DEFAULT_BATCH_CHUNK_SIZE;
const BACKENDS = (process.env.BENCH_BACKENDS ?? "postgresql,pglite").split(",").map((s) => s.trim());
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? "3"));
const SLOW_REPEAT = Math.max(1, Number(process.env.BENCH_SLOW_REPEAT ?? "1"));
const ORMS_LARGE = process.env.BENCH_ORMS_LARGE !== "0";
/** Kinds (unnest, copy, orm) or contenders' names ("Prisma createMany"). */
const INGEST_SLICE_KINDS = process.env.BENCH_INGEST_KINDS?.split(",").map((s) => s.trim());
const INGEST_SLICE_SIZES = process.env.BENCH_INGEST_SIZES?.split(",").map((s) => s.trim());
for (const size of INGEST_SLICE_SIZES ?? []) if (size !== "small" && size !== "large") throw new Error(`BENCH_INGEST_SIZES: unknown size "${size}" (use small, large)`);
const INGEST_SLICE = INGEST_SLICE_KINDS !== undefined || INGEST_SLICE_SIZES !== undefined;
const RSS_REPEAT = Math.max(1, Number(process.env.BENCH_RSS_REPEAT ?? "3"));
const SECTIONS = ["ingest", "single", "sums", "tree", "treecost", "rss"] as const;
type SectionName = (typeof SECTIONS)[number];
const ONLY = (process.env.BENCH_ONLY ?? SECTIONS.join(",")).split(",").map((s) => s.trim().toLowerCase()) as SectionName[];
for (const name of ONLY) if (!SECTIONS.includes(name)) throw new Error(`BENCH_ONLY: unknown section "${name}" (use ${SECTIONS.join(", ")})`);
const runs = (section: SectionName) => ONLY.includes(section);
const OUT_DIR = process.env.BENCH_OUT ?? path.join(PACKAGE_ROOT, "bench");
const SEED = 20261125;

const SMALL = Math.max(1000, Math.round(100_000 * SCALE));
const LARGE = Math.max(2000, Math.round(1_000_000 * SCALE));
const SINGLE_CALLS = Math.max(200, Math.round(5000 * Math.min(1, SCALE * 4)));
/** Single-record calls per contender before the next contender's turn (see benchSingle). */
const SINGLE_BLOCK = 100;
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

type IngestName =
  | "ps-usage recordModelUsageBatch"
  | "pg unnest (JS arrays)"
  | "pg unnest (text array literals)"
  | "pg COPY text (pg-copy-streams)"
  | "pg COPY binary (pg-copy-streams-binary)"
  | "pg COPY binary (hand-written encoder)"
  | "Sequelize bulkCreate"
  | "Prisma createMany";

/** Contenders of one kind are compared as a group: the ratio is taken against the strongest. */
const INGEST_KINDS: Record<IngestName, IngestKind> = {
  "ps-usage recordModelUsageBatch": "ours",
  "pg unnest (JS arrays)": "unnest",
  "pg unnest (text array literals)": "unnest",
  "pg COPY text (pg-copy-streams)": "copy",
  "pg COPY binary (pg-copy-streams-binary)": "copy",
  "pg COPY binary (hand-written encoder)": "copy",
  "Sequelize bulkCreate": "orm",
  "Prisma createMany": "orm",
};

const WARM_UP_ROWS = 2000;

/** How one contender writes `inputs`, or undefined where it does not run (PGlite: no COPY, no Sequelize). */
function ingestRunner(name: IngestName, backend: Backend, models: SequelizeModels | undefined, chunk: number | undefined): ((inputs: readonly ModelUsageInput[]) => Promise<void>) | undefined {
  const size = chunk ?? CHUNK;
  switch (name) {
    case "ps-usage recordModelUsageBatch":
      return (inputs) => ours.ingest(backend, inputs, chunk);
    case "pg unnest (JS arrays)":
      return (inputs) => ingestUnnest(backend, inputs, size);
    case "pg unnest (text array literals)":
      return (inputs) => ingestUnnestLiterals(backend, inputs, size);
    case "pg COPY text (pg-copy-streams)":
      return backend.pool ? (inputs) => ingestCopy(backend, inputs) : undefined;
    case "pg COPY binary (pg-copy-streams-binary)":
      return backend.pool ? (inputs) => ingestCopyBinary(backend, inputs) : undefined;
    case "pg COPY binary (hand-written encoder)":
      return backend.pool ? (inputs) => ingestCopyBinaryHandWritten(backend, inputs) : undefined;
    case "Sequelize bulkCreate":
      return models ? (inputs) => ingestSequelize(models, inputs, size) : undefined;
    case "Prisma createMany":
      return (inputs) => ingestCreateMany(backend, inputs, size);
  }
}

/** An empty table and nothing left for the next contender to flush: TRUNCATE, then CHECKPOINT. */
async function freshTable(backend: Backend): Promise<void> {
  await truncateUsage(backend);
  await backend.sql("CHECKPOINT");
}

/** `items` rotated left by `by`: ABC, BCA, CAB, … */
function rotated<T>(items: readonly T[], by: number): T[] {
  const k = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/**
 * Every contender at both sizes, REPEAT times each, interleaved (the order rotates each round, so
 * a burst of load from elsewhere, or the server's own background work, does not fall on one
 * contender), from an empty table after a CHECKPOINT each time. The ORMs run SLOW_REPEAT times
 * (each run takes minutes). The figure is the median run.
 */
async function benchIngest(backend: Backend, events: EventColumns, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  const startedAt = new Date().toISOString();
  const loadStart = describeMachine().loadAverage;
  const names = (Object.keys(INGEST_KINDS) as IngestName[]).filter(
    (name) => INGEST_SLICE_KINDS === undefined || name === OURS_INGEST || INGEST_SLICE_KINDS.includes(INGEST_KINDS[name]) || INGEST_SLICE_KINDS.includes(name),
  );
  for (const kind of INGEST_SLICE_KINDS ?? []) {
    if (!["unnest", "copy", "orm", ...Object.keys(INGEST_KINDS)].includes(kind)) throw new Error(`BENCH_INGEST_KINDS: unknown "${kind}" (use unnest, copy, orm or a contender's name)`);
  }
  const sizes = [SMALL, LARGE].filter((size, i) => INGEST_SLICE_SIZES === undefined || INGEST_SLICE_SIZES.includes(i === 0 ? "small" : "large"));
  const runnable = names.filter((name) => ingestRunner(name, backend, models, CHUNK_OVERRIDE) !== undefined);
  const previous = results.ingest;
  results.ingest = [];
  for (const name of names.filter((n) => !runnable.includes(n))) {
    for (const size of sizes) {
      results.ingest.push({ contender: name, kind: INGEST_KINDS[name], rows: size, ms: null, runsMs: [], rowsPerSec: null, verified: false, note: "n/a on PGlite" });
    }
  }
  // Warm-up, not counted: connections, prepared plans, code paths compiled by V8.
  for (const name of runnable) {
    await freshTable(backend);
    await ingestRunner(name, backend, models, Math.min(CHUNK, 500))!(toInputs(events, backend.ids, events.count - WARM_UP_ROWS, events.count));
  }
  for (const size of sizes) {
    const inputs = toInputs(events, backend.ids, 0, size);
    const runs = new Map<IngestName, number[]>(runnable.map((name) => [name, []]));
    const repeats = (name: IngestName) => (INGEST_KINDS[name] !== "orm" ? REPEAT : size === LARGE && !ORMS_LARGE ? 0 : Math.min(SLOW_REPEAT, REPEAT));
    for (let round = 0; round < REPEAT; round++) {
      for (const name of rotated(runnable, round)) {
        if (runs.get(name)!.length >= repeats(name)) continue;
        await freshTable(backend);
        log(`${backend.kind}: ingest ${human(size)} rows with ${name} (run ${round + 1})`);
        const { ms } = await timed(() => ingestRunner(name, backend, models, CHUNK_OVERRIDE)!(inputs));
        await verifyIngest(backend, events, size, name);
        runs.get(name)!.push(ms);
        log(`  ${human(size / (ms / 1000))} rows/s (${(ms / 1000).toFixed(2)} s), count and SUM(token_in_count) verified`);
      }
    }
    for (const name of runnable) {
      if (runs.get(name)!.length === 0) {
        results.ingest.push({ contender: name, kind: INGEST_KINDS[name], rows: size, ms: null, runsMs: [], rowsPerSec: null, verified: false, note: "not run (BENCH_ORMS_LARGE=0)" });
        continue;
      }
      const ms = median(runs.get(name)!);
      const note = runs.get(name)!.length < REPEAT ? `${runs.get(name)!.length} run${runs.get(name)!.length === 1 ? "" : "s"} (BENCH_SLOW_REPEAT)` : "";
      results.ingest.push({ contender: name, kind: INGEST_KINDS[name], rows: size, ms, runsMs: runs.get(name)!, rowsPerSec: size / (ms / 1000), verified: true, note });
    }
  }
  if (INGEST_SLICE) {
    // A slice: its rows carry when it ran; ours of the slice is kept beside ours of the full run
    // (the reference of the rows that did not run now), the other contenders' rows are replaced.
    const kinds = (INGEST_SLICE_KINDS ?? ["unnest", "copy", "orm"]).join(",");
    const slice = { kinds, startedAt, finishedAt: new Date().toISOString(), loadAverageStart: loadStart, loadAverageEnd: describeMachine().loadAverage };
    const fresh = results.ingest.map((i) => ({ ...i, slice }));
    const replaced = (old: IngestResult) =>
      sizes.includes(old.rows) && (old.contender === OURS_INGEST ? old.slice?.kinds === kinds : names.includes(old.contender as IngestName));
    results.ingest = [...previous.filter((old) => !replaced(old)), ...fresh];
  }
  const order = Object.keys(INGEST_KINDS);
  results.ingest.sort((a, b) => a.rows - b.rows || Number(a.slice !== undefined) - Number(b.slice !== undefined) || order.indexOf(a.contender) - order.indexOf(b.contender));
}

async function benchSingle(backend: Backend, events: EventColumns, models: SequelizeModels | undefined, results: BackendResults): Promise<void> {
  const inputs = toInputs(events, backend.ids, 0, SINGLE_CALLS);
  let keyed = 0;
  const contenders: [string, ((row: ModelUsageInput) => Promise<unknown>) | undefined][] = [
    ["ps-usage recordModelUsage", (row) => ours.insertOne(backend, row)],
    [OURS_SINGLE_KEYED, (row) => ours.insertOne(backend, row, `bench-key-${keyed++}`)],
    [backend.pool ? "pg INSERT … RETURNING *" : "PGlite INSERT … RETURNING *", (row) => insertOnePg(backend, row)],
    ["Sequelize create", models ? (row) => insertOneSequelize(models, row) : undefined],
  ];
  const runnable = contenders.filter((c): c is [string, (row: ModelUsageInput) => Promise<unknown>] => c[1] !== undefined);
  await truncateUsage(backend);
  // A short warm-up (connections, prepared plans, JIT) that is not counted.
  for (const [, run] of runnable) for (let i = 0; i < 50; i++) await run(inputs[i]);
  await truncateUsage(backend);
  collectGarbage();
  // Interleaved in blocks of SINGLE_BLOCK calls (ABC, ABC, …), so a burst of load from elsewhere
  // falls on every contender alike rather than on the one that happens to run then.
  log(`${backend.kind}: ${SINGLE_CALLS} single records with each of ${runnable.map(([name]) => name).join(", ")}, interleaved`);
  const durations = new Map<string, number[]>(runnable.map(([name]) => [name, []]));
  for (let from = 0; from < inputs.length; from += SINGLE_BLOCK) {
    for (const [name, run] of runnable) {
      const mine = durations.get(name)!;
      for (let i = from; i < Math.min(from + SINGLE_BLOCK, inputs.length); i++) {
        const start = performance.now();
        await run(inputs[i]);
        mine.push(performance.now() - start);
      }
    }
  }
  const expected = expectedTotals(events, SINGLE_CALLS);
  const stored = await tableTotals(backend);
  if (stored.rows !== expected.rows * runnable.length || stored.tokenIn !== expected.tokenIn * BigInt(runnable.length)) {
    throw new Error(`single records: stored ${stored.rows} rows / ${stored.tokenIn}, expected ${runnable.length} × ${expected.rows} / ${expected.tokenIn}`);
  }
  for (const [name, run] of contenders) {
    if (!run) {
      results.single.push({ contender: name, calls: 0, p50Ms: null, p99Ms: null, meanMs: null, note: "n/a on PGlite" });
      continue;
    }
    const mine = durations.get(name)!;
    const meanMs = mine.reduce((a, b) => a + b, 0) / mine.length;
    const p50Ms = percentile(mine, 50);
    const p99Ms = percentile(mine, 99);
    log(`  ${name}: p50 ${p50Ms.toFixed(3)} ms, p99 ${p99Ms.toFixed(3)} ms`);
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

/** When a section was measured, on what load. */
function sectionRun(startedAt: Date, loadStart: number[]): SectionRun {
  return { startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), loadAverageStart: loadStart, loadAverageEnd: describeMachine().loadAverage };
}

async function runBackend(kind: string, events: EventColumns, results: BenchResults): Promise<void> {
  log(`opening ${kind}`);
  const backend = kind === "postgresql" ? await openPostgresBackend() : await openPgliteBackend();
  const models = backend.url ? defineSequelizeModels(backend.url) : undefined;
  const backendResults: BackendResults = results.backends[backend.kind] ?? { ingest: [], single: [], sums: [], tree: [], treeCost: [] };
  results.backends[backend.kind] = backendResults;
  results.sections ??= {};
  const section = async (name: SectionName, run: () => Promise<void>) => {
    if (!runs(name)) return;
    const startedAt = new Date();
    const load = describeMachine().loadAverage;
    await run();
    results.sections![`${backend.kind}: ${name}`] = sectionRun(startedAt, load);
  };
  try {
    if (INGEST_SLICE && runs("ingest")) {
      // A slice keeps the section's date: its rows carry their own.
      await benchIngest(backend, events, models, backendResults);
    } else {
      await section("ingest", async () => {
        backendResults.ingest = [];
        await benchIngest(backend, events, models, backendResults);
      });
    }
    await section("single", async () => {
      backendResults.single = [];
      await benchSingle(backend, events, models, backendResults);
    });
    if (runs("sums") || runs("tree") || runs("treecost")) {
      log(`${backend.kind}: loading ${human(LARGE)} rows for the sums`);
      await truncateUsage(backend);
      await ours.ingest(backend, toInputs(events, backend.ids, 0, LARGE), CHUNK_OVERRIDE);
      await verifyIngest(backend, events, LARGE, "reload");
      await backend.sql("VACUUM ANALYZE ps_model_usage");
    }
    await section("sums", async () => {
      backendResults.sums = [];
      await benchSums(backend, models, backendResults);
    });
    await section("tree", async () => {
      backendResults.tree = [];
      await benchTree(backend, models, backendResults);
    });
    await section("treecost", async () => {
      backendResults.treeCost = [];
      await benchTreeCost(backend, models, backendResults);
    });
  } finally {
    await models?.sequelize.close();
    await backend.close();
  }
}

/**
 * The results a partial run (BENCH_ONLY) adds to: the last results.json, when it was made at the
 * same scale and chunk size. Sections it does not run keep their figures and their dates.
 */
function previousResults(config: BenchResults["config"]): BenchResults | undefined {
  if (ONLY.length === SECTIONS.length) return undefined;
  const file = path.join(OUT_DIR, "results.json");
  if (!fs.existsSync(file)) return undefined;
  const previous = JSON.parse(fs.readFileSync(file, "utf8")) as BenchResults;
  for (const key of ["scale", "chunk", "large", "small"] as const) {
    if (previous.config[key] !== config[key]) {
      throw new Error(`BENCH_ONLY adds to ${file}, which was made with ${key}=${previous.config[key]} (this run: ${config[key]}); run every section or set BENCH_OUT elsewhere`);
    }
  }
  // Ingest figures from before contenders had kinds and repeated runs: one run each.
  const oldKinds: Record<string, IngestKind> = { "ps-usage recordModelUsageBatch": "ours", "pg unnest (hand-written)": "unnest", "pg COPY (pg-copy-streams)": "copy", "Sequelize bulkCreate": "orm", "Prisma createMany": "orm" };
  for (const backend of Object.values(previous.backends)) {
    backend.ingest = backend.ingest.map((i) => ({ ...i, kind: i.kind ?? oldKinds[i.contender] ?? "unnest", runsMs: i.runsMs ?? (i.ms === null ? [] : [i.ms]) }));
  }
  if (!previous.sections) {
    // Written before sections were dated: everything in it is from its one full run.
    previous.sections = {};
    for (const kind of Object.keys(previous.backends)) {
      for (const name of SECTIONS) {
        previous.sections[`${kind}: ${name}`] = { startedAt: previous.startedAt, finishedAt: previous.finishedAt, loadAverageStart: previous.machine.loadAverage, loadAverageEnd: previous.loadAverageEnd };
      }
    }
  }
  return previous;
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const machine = describeMachine();
  log(`scale ${SCALE}: ingest ${human(SMALL)} and ${human(LARGE)} rows, chunk ${CHUNK}, ${SINGLE_CALLS} single calls; sections ${ONLY.join(", ")}; load ${machine.loadAverage.join(" ")}`);
  const agentCount = agentForest(1).length;
  const events = generateEvents(LARGE, SEED, agentCount);
  const config = { scale: SCALE, chunk: CHUNK, small: SMALL, large: LARGE, singleCalls: SINGLE_CALLS, sumRuns: SUM_RUNS, treeRuns: TREE_RUNS, seed: SEED, agents: agentCount, repeat: REPEAT, slowRepeat: SLOW_REPEAT, rssRepeat: RSS_REPEAT };
  const previous = previousResults(config);
  const results: BenchResults = {
    ...(previous ?? { backends: {}, rss: [], sections: {} }),
    startedAt: startedAt.toISOString(),
    finishedAt: "",
    machine,
    loadAverageEnd: [],
    config: { ...previous?.config, ...config },
  };
  if (ONLY.some((name) => name !== "rss")) for (const kind of BACKENDS) await runBackend(kind, events, results);
  if (runs("rss")) {
    const rssStarted = new Date();
    const load = describeMachine().loadAverage;
    const rss: RssResult[] = await measureRss(LARGE, SMALL, CHUNK, RSS_REPEAT, BACKENDS, log);
    results.rss = [...results.rss.filter((r) => !BACKENDS.includes(r.backend)), ...rss];
    results.sections ??= {};
    for (const kind of BACKENDS) results.sections[`${kind}: rss`] = sectionRun(rssStarted, load);
  }
  results.finishedAt = new Date().toISOString();
  results.loadAverageEnd = describeMachine().loadAverage;
  writeReports(results, OUT_DIR, (line) => process.stdout.write(line + "\n"));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
