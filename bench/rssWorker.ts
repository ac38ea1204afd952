/**
 * The process whose peak RSS is measured for the in-process ingest modes (bench/rssChild.ts
 * starts it with bench/peakRss.js preloaded):
 *   node rssWorker.js <idle|batches|oneCall> <postgresql-url|pglite-dir> <rows> <chunk> <ids.json>
 * It opens an existing, migrated database with the referenced rows already in it, and records.
 */
import fs from "node:fs";
import { isPostgresUrl, openDatabase, recordModelUsageBatch } from "../src";
import { agentForest, generateEvents, toInputs, type IdMap } from "./data";

async function main(): Promise<void> {
  const [mode, target, rowsArg, chunkArg, idsFile] = process.argv.slice(2);
  const rows = Number(rowsArg);
  const chunk = Number(chunkArg);
  const ids = JSON.parse(fs.readFileSync(idsFile, "utf8")) as IdMap;
  const agentCount = agentForest(1).length;
  const db = await openDatabase(isPostgresUrl(target) ? { url: target } : { dataDir: target });
  try {
    if (mode === "batches") {
      // Events arrive a chunk at a time, as from a queue: only one chunk is ever in memory.
      for (let done = 0, k = 0; done < rows; done += chunk, k++) {
        await recordModelUsageBatch(db, toInputs(generateEvents(Math.min(chunk, rows - done), 1000 + k, agentCount), ids));
      }
    } else if (mode === "oneCall") {
      // All events in memory first, then one all-or-nothing call: the throughput test's shape.
      await recordModelUsageBatch(db, toInputs(generateEvents(rows, 1000, agentCount), ids));
    } else if (mode !== "idle") {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await db.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
