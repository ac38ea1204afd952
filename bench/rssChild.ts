/**
 * One peak-RSS measurement, run as a child process by bench/rss.ts:
 *   node dist/bench-build/bench/rssChild.js <idle|batches|oneCall|ndjson|ndjsonV8Default> <postgresql|pglite> <rows> <chunk>
 * Creates a fresh database of its own (migrated, with the referenced rows), then runs the measured
 * work in a process of its own with bench/peakRss.js preloaded: bench/rssWorker.js for the API
 * modes, the CLI (`ps-usage record --ndjson`) for the NDJSON import. Creating a database (PGlite's
 * initdb above all) takes more memory than using one, so it stays out of the measured process.
 * Afterwards it checks the stored row count and SUM(token_in_count), and prints a JSON report.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { agentForest, expectedTotals, generateEvents, toInputs, type IdMap } from "./data";
import { openPgliteBackend, openPostgresBackend, tableTotals, type Backend } from "./setup";

/** The rows and SUM(token_in_count) the worker's events add up to (same seeds as rssWorker.ts). */
function expectedFor(mode: string, rows: number, chunk: number, agentCount: number): { rows: number; tokenIn: bigint } {
  if (mode === "idle") return { rows: 0, tokenIn: 0n };
  if (mode === "oneCall") return expectedTotals(generateEvents(rows, 1000, agentCount));
  let tokenIn = 0n;
  for (let done = 0, k = 0; done < rows; done += chunk, k++) tokenIn += expectedTotals(generateEvents(Math.min(chunk, rows - done), 1000 + k, agentCount)).tokenIn;
  return { rows, tokenIn };
}

/** Writes the batches mode's events as NDJSON to `file`, a chunk at a time. */
async function writeNdjson(file: string, rows: number, chunk: number, agentCount: number, ids: IdMap): Promise<void> {
  const out = fs.createWriteStream(file);
  for (let done = 0, k = 0; done < rows; done += chunk, k++) {
    const events = generateEvents(Math.min(chunk, rows - done), 1000 + k, agentCount);
    const text = toInputs(events, ids).map((input) => JSON.stringify(input)).join("\n") + "\n";
    if (!out.write(text)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

async function main(): Promise<void> {
  const [mode, kind, rowsArg, chunkArg] = process.argv.slice(2);
  const rows = Number(rowsArg);
  const chunk = Number(chunkArg);
  const agentCount = agentForest(1).length;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-bench-"));
  const dataDir = path.join(dir, "pglite");
  let backend: Backend | undefined;
  try {
    backend = kind === "postgresql" ? await openPostgresBackend() : await openPgliteBackend(dataDir);
    const ids = backend.ids;
    const target = backend.url ?? dataDir;
    const idsFile = path.join(dir, "ids.json");
    fs.writeFileSync(idsFile, JSON.stringify(ids));
    const ndjsonFile = path.join(dir, "usage.ndjson");
    const ndjson = mode === "ndjson" || mode === "ndjsonV8Default";
    if (ndjson) await writeNdjson(ndjsonFile, rows, chunk, agentCount, ids);
    // PGlite is one process's database: let go of it while the worker has it.
    if (backend.kind === "pglite") {
      await backend.close();
      backend = undefined;
    }

    const rssFile = path.join(dir, "peak-rss");
    const preload = ["--require", path.join(__dirname, "peakRss.js")];
    // ndjsonV8Default: a growing factor given to node is left alone by the CLI (src/cli/importHeap.ts); 0 is V8's own policy.
    const v8Default = mode === "ndjsonV8Default" ? ["--heap-growing-percent=0"] : [];
    const args = ndjson
      ? [...preload, ...v8Default, path.join(__dirname, "..", "src", "cli.js"), "record", "--ndjson", "--db", target]
      : [...preload, "--expose-gc", path.join(__dirname, "rssWorker.js"), mode, target, String(rows), String(chunk), idsFile];
    const start = performance.now();
    const child = spawn(process.execPath, args, {
      stdio: [ndjson ? fs.openSync(ndjsonFile, "r") : "ignore", "pipe", "inherit"],
      env: { ...process.env, BENCH_PEAK_RSS_FILE: rssFile },
    });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    const [code] = (await once(child, "exit")) as [number | null];
    const seconds = (performance.now() - start) / 1000;
    if (code !== 0) throw new Error(`${mode} exited with ${code}: ${output.trim()}`);

    if (!backend) backend = await openPgliteBackend(dataDir, false);
    const expected = expectedFor(ndjson ? "batches" : mode, rows, chunk, agentCount);
    const actual = await tableTotals(backend);
    const verified = actual.rows === expected.rows && actual.tokenIn === expected.tokenIn;
    process.stdout.write(JSON.stringify({ rows: actual.rows, maxRssKb: Number(fs.readFileSync(rssFile, "utf8")), seconds, verified }) + "\n");
  } finally {
    await backend?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
