/**
 * One peak-RSS measurement, run as a child process by bench/rss.ts:
 *   node --expose-gc dist/bench/rssChild.js <idle|batches|oneCall|ndjson> <postgresql|pglite> <rows> <chunk>
 * Opens a fresh database of its own, does the work, verifies the stored totals, and prints a JSON
 * report as its last line.
 */
import fs from "node:fs";
import { performance } from "node:perf_hooks";
import { agentForest, expectedTotals, generateEvents, toInputs } from "./data";
import { ours } from "./ours";
import { openPgliteBackend, openPostgresBackend, tableTotals } from "./setup";

/**
 * Peak RSS of this process image in KB. /proc/self/status VmHWM belongs to the address space
 * created at exec; getrusage's maxRSS would also carry the parent's peak over the fork.
 */
function peakRssKb(): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/self/status", "utf8"));
    if (match) return Number(match[1]);
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS;
}

async function main(): Promise<void> {
  const [mode, kind, rowsArg, chunkArg] = process.argv.slice(2);
  const rows = Number(rowsArg);
  const chunk = Number(chunkArg);
  if (mode === "ndjson" && !ours.ndjsonImport) {
    process.stdout.write(JSON.stringify({ pending: true, note: "the CLI's NDJSON import has not landed yet" }) + "\n");
    return;
  }
  const backend = kind === "postgresql" ? await openPostgresBackend() : await openPgliteBackend();
  const agentCount = agentForest(1).length;
  const start = performance.now();
  let stored = 0;
  let verified = false;
  try {
    if (mode === "batches") {
      // Events arrive a chunk at a time, as from a queue: only one chunk is ever in memory.
      let tokenIn = 0n;
      for (let done = 0, k = 0; done < rows; done += chunk, k++) {
        const n = Math.min(chunk, rows - done);
        const events = generateEvents(n, 1000 + k, agentCount);
        tokenIn += expectedTotals(events).tokenIn;
        await ours.ingest(backend, toInputs(events, backend.ids));
      }
      const actual = await tableTotals(backend);
      stored = actual.rows;
      verified = actual.rows === rows && actual.tokenIn === tokenIn;
    } else if (mode === "oneCall") {
      // All events in memory first, then one all-or-nothing call: the throughput test's shape.
      const events = generateEvents(rows, 1000, agentCount);
      const expected = expectedTotals(events);
      await ours.ingest(backend, toInputs(events, backend.ids));
      const actual = await tableTotals(backend);
      stored = actual.rows;
      verified = actual.rows === expected.rows && actual.tokenIn === expected.tokenIn;
    } else if (mode === "ndjson") {
      const result = await ours.ndjsonImport!(backend, rows, agentCount);
      stored = result.rows;
      verified = result.verified;
    } else if (mode === "idle") {
      verified = (await tableTotals(backend)).rows === 0;
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await backend.close();
  }
  const seconds = (performance.now() - start) / 1000;
  process.stdout.write(JSON.stringify({ rows: stored, maxRssKb: peakRssKb(), seconds, verified }) + "\n");
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
