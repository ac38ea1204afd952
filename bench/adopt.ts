/**
 * `npm run bench:adopt`: how long adopting a large PolicySynth database takes, and whether the
 * application's writes stall meanwhile. A writer inserts one row at a time into ps_model_usage
 * (as PolicySynth does) for the whole run; its latencies are measured while `adopt` runs and,
 * as the baseline in the same run, while a plain `CREATE INDEX` (without CONCURRENTLY) builds
 * the same index on a copy of the same table.
 *
 * BENCH_ADOPT_ROWS (default 1,000,000): rows in ps_model_usage. BENCH_ADMIN_URL: the server.
 */
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { adopt, openDatabase, readMigrations } from "../src";
import { PACKAGE_ROOT } from "../src/schema/migrate";
import { admin, urlFor } from "./setup";

const ROWS = Number(process.env.BENCH_ADOPT_ROWS ?? "1000000");



/** The init migration's tables as PolicySynth's sync() leaves them, and ROWS usage rows. */
async function policySynthDatabase(url: string, table: string): Promise<void> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(readMigrations()[0].sql);
    await c.query(`
      ALTER TABLE ps_model_usage ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
      ALTER TABLE ps_model_usage DROP CONSTRAINT ps_model_usage_model_id_fkey;
      ALTER TABLE ps_external_api_usage DROP CONSTRAINT ps_external_api_usage_external_api_id_fkey;
      DROP INDEX ps_model_usage_created_at_id; DROP INDEX ps_external_api_usage_created_at_id;
      INSERT INTO ps_ai_models (user_id, name) SELECT 1, 'model ' || g FROM generate_series(1, 20) g;
      INSERT INTO ps_agents (user_id, class_id, group_id) SELECT 1, 1, 1 FROM generate_series(1, 200) g;`);
    await c.query(
      `INSERT INTO ${table} (user_id, created_at, updated_at, model_id, agent_id, token_in_count, token_out_count)
       SELECT 1 + g % 7, t, t, 1 + g % 20, 1 + g % 200, 1000 + g % 5000, 100 + g % 700
         FROM generate_series(1, $1::int) g, LATERAL (SELECT timestamptz '2025-01-01' + g * interval '20 seconds' AS t) s`,
      [ROWS],
    );
    await c.query(`VACUUM ANALYZE`);
  } finally {
    await c.end();
  }
}

/** Inserts one row at a time until stopped; returns each insert's latency in ms with when it started. */
function startWriter(url: string): { stop(): Promise<{ at: number; ms: number }[]> } {
  const samples: { at: number; ms: number }[] = [];
  let running = true;
  const done = (async () => {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      while (running) {
        const at = performance.now();
        await c.query(`INSERT INTO ps_model_usage (user_id, created_at, updated_at, model_id, agent_id, token_in_count) VALUES (1, now(), now(), 1, 1, 10)`);
        samples.push({ at, ms: performance.now() - at });
        await new Promise((r) => setTimeout(r, 2));
      }
    } finally {
      await c.end();
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return samples;
    },
  };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
};

async function measure(label: string, url: string, work: () => Promise<void>): Promise<Record<string, number | string>> {
  const writer = startWriter(url);
  await new Promise((r) => setTimeout(r, 1000)); // the writer's own pace before the work starts
  const started = performance.now();
  await work();
  const ended = performance.now();
  await new Promise((r) => setTimeout(r, 500));
  const samples = await writer.stop();
  const before = samples.filter((s) => s.at < started).map((s) => s.ms);
  const during = samples.filter((s) => s.at >= started && s.at < ended).map((s) => s.ms);
  return {
    what: label,
    seconds: Number(((ended - started) / 1000).toFixed(2)),
    insertsDuring: during.length,
    p50BeforeMs: Number(quantile(before, 0.5).toFixed(2)),
    p50DuringMs: Number(quantile(during, 0.5).toFixed(2)),
    p99DuringMs: Number(quantile(during, 0.99).toFixed(2)),
    maxDuringMs: Number(Math.max(0, ...during).toFixed(1)),
  };
}

async function main(): Promise<void> {
  const name = `ps_usage_bench_adopt_${process.pid}`;
  await admin(`CREATE DATABASE "${name}"`);
  const url = urlFor(name);
  try {
    console.log(`Building a PolicySynth-shaped database with ${ROWS.toLocaleString("en")} ps_model_usage rows ...`);
    await policySynthDatabase(url, "ps_model_usage");
    const c = new Client({ connectionString: url });
    await c.connect();
    // The baseline: the same index built without CONCURRENTLY, on a copy of the table.
    await c.query(`CREATE TABLE ps_model_usage_copy (LIKE ps_model_usage INCLUDING ALL); INSERT INTO ps_model_usage_copy SELECT * FROM ps_model_usage`);
    await c.query(`VACUUM ANALYZE ps_model_usage_copy`);
    await c.end();
    const rows: Record<string, number | string>[] = [];
    rows.push(
      await measure("plain CREATE INDEX (created_at, id), writer on the same table", url, async () => {
        const b = new Client({ connectionString: url });
        await b.connect();
        // Swap the tables so the writer writes to the one being indexed.
        await b.query(`ALTER TABLE ps_model_usage RENAME TO ps_model_usage_real; ALTER TABLE ps_model_usage_copy RENAME TO ps_model_usage`);
        try {
          await b.query(`CREATE INDEX copy_created_at_id ON ps_model_usage (created_at, id)`);
        } finally {
          await b.query(`DROP INDEX copy_created_at_id; ALTER TABLE ps_model_usage RENAME TO ps_model_usage_copy; ALTER TABLE ps_model_usage_real RENAME TO ps_model_usage`);
          await b.end();
        }
      }),
    );
    const db = await openDatabase({ url });
    try {
      rows.push(
        await measure("ps-usage adopt (2 indexes CONCURRENTLY, defaults, 2 keys NOT VALID + VALIDATE, baseline, later migrations)", url, async () => {
          await adopt(db);
        }),
      );
    } finally {
      await db.close();
    }
    const lines = [
      `# Adopting a large PolicySynth database (${new Date().toISOString().slice(0, 16)}Z, ${ROWS.toLocaleString("en")} rows)`,
      "",
      "A writer inserts one row at a time into ps_model_usage throughout; latencies of its inserts that started while the work ran.",
      "",
      "| work | seconds | inserts meanwhile | insert p50 before (ms) | p50 during | p99 during | max during |",
      "|---|---|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.what} | ${r.seconds} | ${r.insertsDuring} | ${r.p50BeforeMs} | ${r.p50DuringMs} | ${r.p99DuringMs} | ${r.maxDuringMs} |`),
      "",
    ];
    console.log(lines.join("\n"));
    fs.writeFileSync(path.join(PACKAGE_ROOT, "bench", "ADOPT.md"), lines.join("\n"));
  } finally {
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
