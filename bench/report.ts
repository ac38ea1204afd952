/** The benchmark's output: the console table, bench/results.json and bench/RESULTS.md. */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Table from "cli-table3";
import { human } from "./stats";
import type { RssResult } from "./rss";
import { PACKAGE_ROOT } from "../src/schema/migrate";

/** Ingest contenders of one kind are compared as a group, against the strongest of the kind. */
export type IngestKind = "ours" | "unnest" | "copy" | "orm";
export interface IngestResult {
  readonly contender: string;
  readonly kind: IngestKind;
  readonly rows: number;
  /** The median run. */
  readonly ms: number | null;
  readonly runsMs: readonly number[];
  readonly rowsPerSec: number | null;
  readonly verified: boolean;
  readonly note: string;
  /** Set when the row comes from an ingest slice (BENCH_INGEST_KINDS / BENCH_INGEST_SIZES). */
  readonly slice?: IngestSlice;
}
/** An ingest slice: some kinds of contender with ours, run apart from the rest of the section. */
export interface IngestSlice {
  readonly kinds: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly loadAverageStart: number[];
  readonly loadAverageEnd: number[];
}
export interface SingleResult {
  readonly contender: string;
  readonly calls: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly meanMs: number | null;
  readonly note: string;
}
export interface SumResult {
  readonly query: string;
  readonly contender: string;
  readonly medianMs: number | null;
  readonly runsMs: readonly number[];
  readonly groups: number;
  readonly verified: boolean;
  readonly note: string;
}
export interface TreeResult {
  readonly contender: string;
  readonly medianMs: number;
  readonly runsMs: readonly number[];
  readonly agents: number;
  readonly verified: boolean;
  readonly note: string;
}
export interface TreeCostResult {
  readonly contender: string;
  readonly medianMs: number;
  readonly runsMs: readonly number[];
  readonly agents: number;
  readonly totalCost: string;
}
export interface BackendResults {
  ingest: IngestResult[];
  single: SingleResult[];
  sums: SumResult[];
  tree: TreeResult[];
  treeCost: TreeCostResult[];
}
export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGb: number;
  readonly os: string;
  readonly loadAverage: number[];
  readonly versions: Record<string, string>;
}
export interface TargetCheck {
  readonly backend: string;
  readonly target: string;
  readonly required: string;
  readonly measured: string;
  readonly met: boolean | null;
}
/** When one section (e.g. "postgresql: ingest") was last measured, and the load then. */
export interface SectionRun {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly loadAverageStart: number[];
  readonly loadAverageEnd: number[];
}
export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  loadAverageEnd: number[];
  config: Record<string, number | boolean>;
  backends: Record<string, BackendResults>;
  rss: RssResult[];
  /** Keyed "<backend>: <section>"; a partial run (BENCH_ONLY) keeps the other sections' entries. */
  sections?: Record<string, SectionRun>;
  targets?: TargetCheck[];
}

function packageVersion(name: string): string {
  try {
    const file = path.join(PACKAGE_ROOT, "node_modules", name, "package.json");
    return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function postgresVersion(): string {
  try {
    return execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"], { encoding: "utf8", timeout: 5000 }).trim();
  } catch {
    return "unknown";
  }
}

export function describeMachine(): Machine {
  return {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.cpus().length,
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    loadAverage: os.loadavg().map((v) => Math.round(v * 100) / 100),
    versions: {
      node: process.version,
      postgresql: postgresVersion(),
      prisma: packageVersion("prisma"),
      "@prisma/client": packageVersion("@prisma/client"),
      "@prisma/adapter-pg": packageVersion("@prisma/adapter-pg"),
      "@electric-sql/pglite": packageVersion("@electric-sql/pglite"),
      "pglite-prisma-adapter": packageVersion("pglite-prisma-adapter"),
      pg: packageVersion("pg"),
      "pg-copy-streams": packageVersion("pg-copy-streams"),
      "pg-copy-streams-binary": packageVersion("pg-copy-streams-binary"),
      sequelize: packageVersion("sequelize"),
    },
  };
}

export const OURS_INGEST = "ps-usage recordModelUsageBatch";
const OURS_SINGLE = "ps-usage recordModelUsage";
/** The same call with an idempotency key (a new key each call). */
export const OURS_SINGLE_KEYED = "ps-usage recordModelUsage with idempotencyKey";
const OURS_SUM = "ps-usage sumModelUsage";

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "n/a";
  return `${(a / b).toFixed(2)}×`;
}

/** The fastest contender of `kind` at `rows` (by median rows/s), if any ran. */
function strongest(r: BackendResults, rows: number, kind: IngestKind, slice?: IngestSlice): IngestResult | undefined {
  const ran = r.ingest.filter((i) => i.rows === rows && i.kind === kind && i.rowsPerSec !== null && i.slice?.startedAt === slice?.startedAt);
  return ran.sort((a, b) => b.rowsPerSec! - a.rowsPerSec!)[0];
}

/** Ours in the same run as `i` (the same slice, or the full section's run): ratios are taken within a run. */
function oursOf(r: BackendResults, i: IngestResult): IngestResult | undefined {
  return r.ingest.find((o) => o.rows === i.rows && o.contender === OURS_INGEST && o.slice?.startedAt === i.slice?.startedAt);
}

function sliceNote(slice: IngestSlice | undefined): string {
  if (!slice) return "";
  const hhmm = (iso: string) => iso.slice(11, 16);
  return `slice (BENCH_INGEST_KINDS=${slice.kinds}) ${slice.startedAt.slice(0, 10)} ${hhmm(slice.startedAt)}–${hhmm(slice.finishedAt)} UTC, load ${slice.loadAverageStart[0]} → ${slice.loadAverageEnd[0]}; ratio against ours of the slice`;
}

/** NDJSON import through the CLI: its peak must stay under this at the large size. */
export const NDJSON_PEAK_RSS_TARGET_MB = 256;

/** Checks the issues' targets against the measured figures. */
export function checkTargets(results: BenchResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const [backend, r] of Object.entries(results.backends)) {
    // Ratios within one run: the full section's rows, or one slice's (ours ran in each).
    for (const run of r.ingest.filter((i) => i.contender === OURS_INGEST && i.rowsPerSec)) {
      const rows = run.rows;
      const ours = run.rowsPerSec!;
      const same = r.ingest.filter((i) => i.rows === rows && i.slice?.startedAt === run.slice?.startedAt);
      const strongestOf = (kind: IngestKind) => same.filter((i) => i.kind === kind && i.rowsPerSec !== null).sort((a, b) => b.rowsPerSec! - a.rowsPerSec!)[0];
      const where = run.slice ? ` (slice ${run.slice.startedAt.slice(11, 16)} UTC)` : "";
      const unnest = strongestOf("unnest");
      if (unnest) {
        checks.push({ backend, target: `ingest ${human(rows)}${where}: ours vs the strongest hand-written unnest (${unnest.contender})`, required: "≥ 0.80×", measured: ratio(ours, unnest.rowsPerSec), met: ours / unnest.rowsPerSec! >= 0.8 });
      }
      const createMany = same.find((i) => i.contender === "Prisma createMany");
      if (createMany && !createMany.rowsPerSec) {
        checks.push({ backend, target: `ingest ${human(rows)}${where}: ours vs Prisma createMany`, required: "≥ 15×", measured: `not measured: ${createMany.note}`, met: null });
      }
      if (createMany?.rowsPerSec) {
        checks.push({
          backend,
          target: `ingest ${human(rows)}${where}: ours vs Prisma createMany`,
          required: "≥ 15×",
          measured: ratio(ours, createMany.rowsPerSec) + (createMany.ms === null ? " (createMany extrapolated, not run)" : ""),
          met: ours / createMany.rowsPerSec >= 15,
        });
      }
      const copy = strongestOf("copy");
      if (copy) {
        checks.push({ backend, target: `ingest ${human(rows)}${where}: ours vs the strongest COPY (${copy.contender})`, required: "none (reported)", measured: ratio(ours, copy.rowsPerSec), met: null });
      }
    }
    const raw = r.single.find((s) => s.contender.endsWith("INSERT … RETURNING *"));
    for (const [name, label, required, limit] of [
      [OURS_SINGLE, "single record", "≤ 1.20×", 1.2],
      [OURS_SINGLE_KEYED, "keyed single record (one statement)", "≤ 1.20×", 1.2],
    ] as const) {
      const single = r.single.find((s) => s.contender === name);
      if (single?.p50Ms == null || raw?.p50Ms == null) continue;
      checks.push({ backend, target: `${label}: p50 ours / ${raw.contender}`, required, measured: ratio(single.p50Ms, raw.p50Ms), met: single.p50Ms / raw.p50Ms <= limit });
    }
    for (const query of [...new Set(r.sums.map((s) => s.query))]) {
      const ours = r.sums.find((s) => s.query === query && s.contender === OURS_SUM);
      const hand = r.sums.find((s) => s.query === query && s.contender === "hand-written SQL");
      if (ours?.medianMs != null && hand?.medianMs != null) {
        checks.push({
          backend,
          target: `sum ${query}: ours time / hand-written SQL time`,
          required: "≤ 1.10×",
          measured: ratio(ours.medianMs, hand.medianMs) + (ours.verified ? "" : " (RESULT DIFFERS)"),
          met: ours.medianMs / hand.medianMs <= 1.1 && ours.verified,
        });
      }
    }
  }
  for (const backend of [...new Set(results.rss.map((x) => x.backend))]) {
    const large = Number(results.config.large);
    const peaks = results.rss.filter((x) => x.backend === backend && x.mode === "ndjson" && x.rows === large && x.maxRssMb !== null).map((x) => x.maxRssMb!);
    if (peaks.length === 0) continue;
    const worst = Math.max(...peaks);
    checks.push({
      backend,
      target: `NDJSON import (CLI) of ${human(large)} lines: peak RSS, highest of ${peaks.length} run${peaks.length === 1 ? "" : "s"}`,
      required: `< ${NDJSON_PEAK_RSS_TARGET_MB} MB`,
      measured: `${worst.toFixed(0)} MB`,
      met: worst < NDJSON_PEAK_RSS_TARGET_MB,
    });
  }
  return checks;
}

function ms(value: number | null | undefined, digits = 1): string {
  return value == null ? "n/a" : value.toFixed(digits);
}

interface Section {
  readonly title: string;
  readonly head: string[];
  readonly rows: string[][];
}

function sections(results: BenchResults): Section[] {
  const out: Section[] = [];
  for (const [backend, r] of Object.entries(results.backends)) {
    const ingestRows: string[][] = [];
    for (const i of r.ingest) {
      const ours = oursOf(r, i);
      const best = i.kind !== "ours" && strongest(r, i.rows, i.kind, i.slice)?.contender === i.contender && r.ingest.filter((o) => o.rows === i.rows && o.kind === i.kind && o.slice?.startedAt === i.slice?.startedAt).length > 1;
      ingestRows.push([
        human(i.rows),
        i.contender + (best ? " (strongest of its kind)" : ""),
        i.rowsPerSec == null ? "n/a" : human(i.rowsPerSec),
        i.ms == null ? "—" : (i.ms / 1000).toFixed(2),
        i.runsMs.length ? i.runsMs.map((m) => (m / 1000).toFixed(2)).join(", ") : "—",
        ratio(ours?.rowsPerSec, i.rowsPerSec),
        i.ms == null ? "—" : i.verified ? "yes" : "NO",
        [i.note, sliceNote(i.slice)].filter(Boolean).join("; "),
      ]);
    }
    out.push({
      title: `${backend}: bulk ingest (median of the runs; contenders interleaved, TRUNCATE and CHECKPOINT before each run)`,
      head: ["rows", "contender", "rows/s", "seconds", "runs (s)", "ours ÷ this (rows/s)", "verified", "note"],
      rows: ingestRows,
    });
    const oursSingle = r.single.find((s) => s.contender === OURS_SINGLE);
    out.push({
      title: `${backend}: single record latency`,
      head: ["contender", "calls", "p50 ms", "p99 ms", "mean ms", "p50 ours ÷ this", "note"],
      rows: r.single.map((s) => [s.contender, String(s.calls || "n/a"), ms(s.p50Ms, 3), ms(s.p99Ms, 3), ms(s.meanMs, 3), ratio(oursSingle?.p50Ms, s.p50Ms), s.note]),
    });
    out.push({
      title: `${backend}: sums over ${human(Number(results.config.large))} rows (median of ${results.config.sumRuns} runs after a warm-up)`,
      head: ["query", "groups", "contender", "median ms", "ours ÷ this (time)", "same result", "note"],
      rows: r.sums.map((s) => {
        const ours = r.sums.find((o) => o.query === s.query && o.contender === OURS_SUM);
        return [s.query, String(s.groups), s.contender, ms(s.medianMs), ratio(ours?.medianMs, s.medianMs), s.medianMs == null ? "—" : s.verified ? "yes" : "NO", s.note];
      }),
    });
    const oursTree = r.tree[0];
    out.push({
      title: `${backend}: sub-agent tree totals (${results.config.agents} agents in all; the tree under the root has 1,000; median of ${results.config.treeRuns} runs)`,
      head: ["contender", "agents with usage", "median ms", "ours ÷ this (time)", "same result"],
      rows: r.tree.map((t) => [t.contender, String(t.agents), ms(t.medianMs), ratio(oursTree?.medianMs, t.medianMs), t.verified ? "yes" : "NO"]),
    });
    const oursCost = r.treeCost[0];
    if (oursCost) {
      out.push({
        title: `${backend}: sub-agent tree cost (the same tree; prices from configuration.prices; median of ${results.config.treeRuns} runs)`,
        head: ["contender", "agents priced", "median ms", "ours ÷ this (time)", "tree total (USD)"],
        rows: r.treeCost.map((t) => [t.contender, String(t.agents), ms(t.medianMs), ratio(oursCost.medianMs, t.medianMs), t.totalCost]),
      });
    }
  }
  if (results.rss.length > 0) {
    out.push({
      title: "peak RSS (each in a process of its own)",
      head: ["backend", "what", "rows", "peak RSS MB", "seconds", "rows/s", "verified", "note"],
      rows: results.rss.map((x) => [
        x.backend,
        x.label,
        human(x.rows),
        x.maxRssMb == null ? "n/a" : x.maxRssMb.toFixed(0),
        x.seconds == null ? "n/a" : x.seconds.toFixed(1),
        x.seconds == null || x.rows === 0 ? "—" : human(x.rows / x.seconds),
        x.maxRssMb == null ? "—" : x.verified ? "yes" : "NO",
        x.note,
      ]),
    });
  }
  if (results.targets && results.targets.length > 0) {
    out.push({
      title: "targets (issues #4 and #12)",
      head: ["backend", "target", "required", "measured", "met"],
      rows: results.targets.map((t) => [t.backend, t.target, t.required, t.measured, t.met === null ? "n/a" : t.met ? "yes" : "NO"]),
    });
  }
  // A partial run on a fresh BENCH_OUT has no figures for the sections it skipped.
  return out.filter((section) => section.rows.length > 0);
}

function markdownTable(section: Section): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return [`| ${section.head.map(esc).join(" | ")} |`, `|${section.head.map(() => "---").join("|")}|`, ...section.rows.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n");
}

/** Prints the tables and writes results.json and RESULTS.md into `outDir`. */
export function writeReports(results: BenchResults, outDir: string, print: (line: string) => void): void {
  results.targets = checkTargets(results);
  for (const section of sections(results)) {
    print(`\n${section.title}`);
    const table = new Table({ head: section.head, style: { head: [], border: [] } });
    table.push(...section.rows);
    print(table.toString());
  }
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");

  const m = results.machine;
  const notesFile = path.join(outDir, "NOTES.md");
  const notes = fs.existsSync(notesFile) ? fs.readFileSync(notesFile, "utf8") : "";
  const md = [
    "# ps-usage benchmark results",
    "",
    "Generated by `npm run bench` (bench/run.ts); raw figures in `bench/results.json`. Do not edit by hand:",
    "the commentary comes from `bench/NOTES.md`.",
    "",
    `- Date: ${results.startedAt} → ${results.finishedAt}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB RAM, ${m.os}`,
    `- Load average (1, 5, 15 min) at start: ${m.loadAverage.join(", ")}; at end: ${results.loadAverageEnd.join(", ")}`,
    `- Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `- Config: ${Object.entries(results.config).map(([k, v]) => `${k}=${v}`).join(", ")}`,
    ...(results.sections
      ? [
          "- Sections, when each was last measured (a partial run, `BENCH_ONLY`, keeps the others' figures):",
          ...Object.entries(results.sections)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([name, run]) => `  - ${name}: ${run.startedAt} → ${run.finishedAt}, load ${run.loadAverageStart.join(", ")} → ${run.loadAverageEnd.join(", ")}`),
        ]
      : []),
    "",
    ...sections(results).flatMap((s) => [`## ${s.title}`, "", markdownTable(s), ""]),
    notes,
  ].join("\n");
  fs.writeFileSync(path.join(outDir, "RESULTS.md"), md);
  print(`\nwrote ${path.join(outDir, "results.json")} and ${path.join(outDir, "RESULTS.md")}`);
}
