/**
 * Peak RSS, each measurement in a process of its own (bench/rssChild.ts sets up the database and
 * starts the measured process) so one measurement's heap never inflates another's. The measured
 * process reports its VmHWM at exit (the peak of its own address space; getrusage's maxRSS would
 * inherit the parent's peak over the fork).
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface RssResult {
  readonly label: string;
  readonly backend: string;
  readonly mode: string;
  readonly rows: number;
  readonly maxRssMb: number | null;
  readonly seconds: number | null;
  readonly verified: boolean;
  readonly note: string;
}

/** What the child prints as its last line. */
export interface RssChildReport {
  readonly rows: number;
  readonly maxRssKb: number;
  readonly seconds: number;
  readonly verified: boolean;
  readonly note?: string;
}

/** Modes of the child: see rssChild.ts. */
const MODES: [string, string][] = [
  ["idle", "node + the package loaded, database opened, nothing recorded (the floor)"],
  ["batches", "events generated a chunk at a time, one recordModelUsageBatch call per chunk"],
  ["oneCall", "all events built in memory, then one recordModelUsageBatch call"],
  ["ndjson", "NDJSON file streamed into `ps-usage record --ndjson` (the CLI process measured)"],
  ["ndjsonV8Default", "the same CLI import with V8's default heap growth (`node --heap-growing-percent=0`), for comparison"],
];

/**
 * The streamed modes run at both sizes: memory that stays put while the rows grow tenfold is
 * what "bounded" means.
 */
export async function measureRss(large: number, small: number, chunk: number, ndjsonRepeat: number, backends: readonly string[], log: (m: string) => void): Promise<RssResult[]> {
  const results: RssResult[] = [];
  const child = path.join(__dirname, "rssChild.js");
  const plan: [string, string, number][] = [];
  for (const [mode, label] of MODES) {
    if (mode === "idle") plan.push([mode, label, 0]);
    else if (mode === "oneCall" || mode === "ndjsonV8Default") plan.push([mode, label, large]);
    else if (mode === "ndjson") {
      // The import's peak varies from run to run (when V8 collects): the target is checked on the highest.
      plan.push([mode, label, small]);
      for (let i = 0; i < ndjsonRepeat; i++) plan.push([mode, label, large]);
    } else plan.push([mode, label, small], [mode, label, large]);
  }
  for (const backend of backends) {
    for (const [mode, label, rows] of plan) {
      log(`rss: ${backend} ${mode} (${rows} rows)`);
      try {
        const { stdout } = await run(process.execPath, [child, mode, backend, String(rows), String(chunk)], {
          maxBuffer: 16 * 1024 * 1024,
          timeout: 15 * 60_000,
        });
        const last = stdout.trim().split("\n").pop() ?? "{}";
        const report = JSON.parse(last) as RssChildReport & { pending?: boolean };
        if (report.pending) {
          results.push({ label, backend, mode, rows, maxRssMb: null, seconds: null, verified: false, note: `pending: ${report.note ?? ""}` });
          log(`  pending: ${report.note}`);
          continue;
        }
        const maxRssMb = report.maxRssKb / 1024;
        log(`  peak RSS ${maxRssMb.toFixed(0)} MB in ${report.seconds.toFixed(1)} s${report.verified ? ", totals verified" : ""}`);
        results.push({ label, backend, mode, rows: report.rows, maxRssMb, seconds: report.seconds, verified: report.verified, note: report.note ?? "" });
      } catch (err) {
        const message = (err as Error).message.split("\n").slice(0, 3).join(" ");
        log(`  failed: ${message}`);
        results.push({ label, backend, mode, rows, maxRssMb: null, seconds: null, verified: false, note: `failed: ${message}` });
      }
    }
  }
  return results;
}
