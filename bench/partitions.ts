/**
 * Monthly partitions (partitionMonthly, pg_partman) against the unpartitioned ledger, in one run:
 *
 * 1. Ingest: `recordModelUsageBatch` of PART_INGEST_ROWS (200,000) rows into each empty ledger,
 *    rollup triggers on, PART_INGEST_REPEAT (3) rounds of ABBA (plain, partitioned, partitioned,
 *    plain), TRUNCATE and CHECKPOINT before each run.
 * 2. Bulk load: PART_ROWS (2,000,000) model usage rows (+10% external API rows) generated in SQL
 *    (bench/scaleData.ts: INSERT … SELECT in 1M-row pieces, triggers and foreign key checks off),
 *    timed in each database, then the rollups built by rebuildRollups.
 * 3. Retention of July (the window is 2026-07-03 to 2026-10-01): `prune --before 2026-08-01` in
 *    each, timed, while one-row inserts run beside it; on-disk size of the ledger (every partition
 *    and index) before, after, and after VACUUM.
 *
 *   flock /tmp/ps-usage-bench.lock npm run bench:partitions
 *
 * Databases: ps_usage_bench_partitions_plain / _parted (PART_DB prefix), dropped at the end
 * unless PART_KEEP=1. Results: bench/partitions-results.json.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Pool } from "pg";
import { openDatabase, partitionMonthly, prune, rebuildRollups, recordModelUsage, recordModelUsageBatch, type Database } from "../src";
import { agentForest, generateEvents, toInputs } from "./data";
import { createScaleUniverse, growLedger, type ScaleUniverse } from "./scaleData";
import { admin, urlFor } from "./setup";
import { median, percentile } from "./stats";

const PREFIX = process.env.PART_DB ?? "ps_usage_bench_partitions";
const ROWS = Number(process.env.PART_ROWS ?? "2000000");
const INGEST_ROWS = Number(process.env.PART_INGEST_ROWS ?? "200000");
const INGEST_REPEAT = Number(process.env.PART_INGEST_REPEAT ?? "3");
const CUTOFF = new Date(Date.UTC(2026, 7, 1));
const OUT = path.join(__dirname, "..", "..", "..", "bench", "partitions-results.json");

const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const load = () => os.loadavg().map((v) => Number(v.toFixed(2)));

interface Side {
  readonly name: "plain" | "partitioned";
  readonly db: Database;
  readonly pool: Pool;
  readonly universe: ScaleUniverse;
}

async function openSide(name: Side["name"]): Promise<Side> {
  const dbName = `${PREFIX}_${name === "plain" ? "plain" : "parted"}`;
  await admin(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await admin(`CREATE DATABASE "${dbName}"`);
  const db = await openDatabase({ url: urlFor(dbName), migrate: true, writeTimeoutMs: 3_600_000, reportTimeoutMs: 3_600_000 });
  // The bench window starts in July 2026; partitions from July, four months ahead of now.
  if (name === "partitioned") await partitionMonthly(db, { startMonth: new Date(Date.UTC(2026, 6, 1)) });
  const pool = new Pool({ connectionString: urlFor(dbName), max: 2 });
  return { name, db, pool, universe: await createScaleUniverse(pool) };
}

async function count(pool: Pool, table: string): Promise<number> {
  return Number((await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`)).rows[0].n);
}

/** Bytes of the ledger tables on disk: every partition (pg_partition_tree lists none for a plain table), its indexes and TOAST. */
async function ledgerBytes(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ b: string }>(
    `SELECT sum(pg_total_relation_size(relid))::text AS b FROM (
       SELECT relid FROM pg_partition_tree('ps_model_usage') UNION SELECT relid FROM pg_partition_tree('ps_external_api_usage')
       UNION SELECT 'ps_model_usage'::regclass UNION SELECT 'ps_external_api_usage'::regclass) t`,
  );
  return Number(rows[0].b);
}

async function main(): Promise<void> {
  const sides = [await openSide("plain"), await openSide("partitioned")];
  const results: Record<string, unknown> = { rows: ROWS, ingestRows: INGEST_ROWS, measuredAt: new Date().toISOString(), cpus: os.cpus().length };
  try {
    // 1. Ingest through the package, triggers on, into the empty ledgers.
    const inputs = sides.map((s) => toInputs(generateEvents(INGEST_ROWS, 7, agentForest(1).length), s.universe));
    const runOnce = async (i: number): Promise<number> => {
      const s = sides[i];
      await s.pool.query(`TRUNCATE ps_model_usage RESTART IDENTITY CASCADE`);
      await s.pool.query(`CHECKPOINT`);
      const t = process.hrtime.bigint();
      await recordModelUsageBatch(s.db, inputs[i]);
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if ((await count(s.pool, "ps_model_usage")) !== INGEST_ROWS) throw new Error(`${s.name}: ingest lost rows`);
      return ms;
    };
    log(`ingest ${INGEST_ROWS} rows, ${INGEST_REPEAT} x ABBA, load ${load().join(" ")}`);
    await runOnce(0);
    await runOnce(1);
    const ingestMs: number[][] = [[], []];
    const ingestLoad: number[][] = [load()];
    for (let r = 0; r < INGEST_REPEAT; r++) {
      for (const i of [0, 1, 1, 0]) ingestMs[i].push(await runOnce(i));
      ingestLoad.push(load());
      log(`  round ${r + 1}: plain ${ingestMs[0].slice(-2).map((v) => v.toFixed(0)).join(", ")} ms, partitioned ${ingestMs[1].slice(-2).map((v) => v.toFixed(0)).join(", ")} ms, load ${load().join(" ")}`);
    }
    results.ingest = {
      plainMs: ingestMs[0],
      partitionedMs: ingestMs[1],
      plainRowsPerSecond: INGEST_ROWS / (median(ingestMs[0]) / 1000),
      partitionedRowsPerSecond: INGEST_ROWS / (median(ingestMs[1]) / 1000),
      ratio: median(ingestMs[0]) / median(ingestMs[1]),
      load: ingestLoad,
    };
    for (const s of sides) await s.pool.query(`TRUNCATE ps_model_usage, ps_external_api_usage RESTART IDENTITY CASCADE`);

    // 2. Bulk load in SQL, then rollups.
    const bulk: Record<string, unknown> = {};
    for (const s of sides) {
      const l0 = load();
      const t = Date.now();
      const grown = await growLedger(s.pool, s.universe, ROWS, (line) => log(`${s.name}${line}`));
      const seconds = (Date.now() - t) / 1000;
      const r0 = Date.now();
      await rebuildRollups(s.db, { lockTimeoutMs: 60_000 });
      bulk[s.name] = { ...grown, seconds, rowsPerSecond: (grown.modelRows + grown.apiRows) / seconds, rollupSeconds: (Date.now() - r0) / 1000, load: [l0, load()] };
      log(`${s.name}: ${grown.modelRows + grown.apiRows} rows in ${seconds.toFixed(1)} s, rollups in ${((Date.now() - r0) / 1000).toFixed(1)} s`);
    }
    results.bulkLoad = bulk;

    // 3. Retention of July, with one-row inserts beside it.
    const retention: Record<string, unknown> = {};
    for (const s of sides) {
      await s.pool.query(`VACUUM ANALYZE ps_model_usage, ps_external_api_usage`);
      await s.pool.query(`CHECKPOINT`);
      const before = await ledgerBytes(s.pool);
      const rowsBefore = await count(s.pool, "ps_model_usage");
      const writer = await openDatabase({ url: urlFor(`${PREFIX}_${s.name === "plain" ? "plain" : "parted"}`), writeTimeoutMs: 60_000 });
      let stop = false;
      const latencies: number[] = [];
      const inserter = (async () => {
        for (let i = 0; !stop; i++) {
          const t = process.hrtime.bigint();
          await recordModelUsage(writer, { userId: 1, modelId: s.universe.modelIds[i % 5], agentId: s.universe.agentIds[i % 1000], tokenInCount: 100, tokenOutCount: 10 });
          latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        }
      })();
      await new Promise((r) => setTimeout(r, 1000));
      const l0 = load();
      log(`${s.name}: pruning before ${CUTOFF.toISOString().slice(0, 10)} of ${rowsBefore} rows (${(before / 1e6).toFixed(0)} MB), load ${l0.join(" ")}`);
      const t = Date.now();
      const result = await prune(s.db, { before: CUTOFF });
      const seconds = (Date.now() - t) / 1000;
      await new Promise((r) => setTimeout(r, 1000));
      stop = true;
      await inserter;
      await writer.close();
      const afterPrune = await ledgerBytes(s.pool);
      await s.pool.query(`VACUUM ps_model_usage, ps_external_api_usage`);
      const afterVacuum = await ledgerBytes(s.pool);
      retention[s.name] = {
        rowsBefore,
        deleted: result.modelUsage.deleted + result.externalApiUsage.deleted,
        droppedPartitions: [...(result.modelUsage.droppedPartitions ?? []), ...(result.externalApiUsage.droppedPartitions ?? [])],
        seconds,
        bytes: { before, afterPrune, afterVacuum },
        inserts: latencies.length,
        insertP50Ms: percentile(latencies, 50),
        insertP99Ms: percentile(latencies, 99),
        insertMaxMs: percentile(latencies, 100),
        load: [l0, load()],
      };
      log(`${s.name}: ${JSON.stringify(retention[s.name])}`);
    }
    results.retention = retention;
    fs.writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);
    log(`wrote ${OUT}`);
  } finally {
    for (const s of sides) {
      await s.db.close();
      await s.pool.end();
      if (process.env.PART_KEEP !== "1") await admin(`DROP DATABASE IF EXISTS "${PREFIX}_${s.name === "plain" ? "plain" : "parted"}" WITH (FORCE)`);
    }
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
