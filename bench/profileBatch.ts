/**
 * Where a recordModelUsageBatch call's time goes (issue 12 §4): validation, the reference check's
 * planning, building the chunk statements, and sending them through Prisma's $executeRaw against
 * the same statements through the pg pool directly, and the text-literal unnest baseline, on one
 * PostgreSQL scratch database. `node dist/bench-build/bench/profileBatch.js [rows]`.
 */
import { recordModelUsageBatch } from "../src";
import { MODEL_USAGE_BATCH } from "../src/modelUsage";
import { MODEL_USAGE_INPUT, checkBatch } from "../src/validation";
import { DEFAULT_BATCH_CHUNK_SIZE } from "../src/types";
import { ingestUnnestLiterals } from "./baselines";
import { generateEvents, toInputs } from "./data";
import { openPostgresBackend, truncateUsage } from "./setup";
import { median, timed } from "./stats";

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? "200000");
  const rounds = Number(process.argv[3] ?? "3");
  const backend = await openPostgresBackend();
  try {
    const inputs = toInputs(generateEvents(rows, 20261125, backend.ids.agentIds.length), backend.ids);
    const chunk = DEFAULT_BATCH_CHUNK_SIZE;
    const chunks = Math.ceil(rows / chunk);
    const figures: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    let cpuStart = process.cpuUsage();
    const add = (name: string, ms: number) => {
      (figures[name] ??= []).push(ms);
      const used = process.cpuUsage(cpuStart);
      (cpu[name] ??= []).push((used.user + used.system) / 1000);
    };
    const mark = () => {
      cpuStart = process.cpuUsage();
    };
    for (let round = 0; round < rounds; round++) {
      mark();
      add("validate (checkBatch)", (await timed(async () => checkBatch(inputs, MODEL_USAGE_INPUT, []))).ms);
      mark();
      add("build chunk SQL", (await timed(async () => {
        for (let c = 0; c < chunks; c++) MODEL_USAGE_BATCH.chunkSql(inputs, c * chunk, Math.min(rows, (c + 1) * chunk), false);
      })).ms);
      await truncateUsage(backend);
      await backend.sql("CHECKPOINT");
      mark();
      add("recordModelUsageBatch", (await timed(() => recordModelUsageBatch(backend.db, inputs))).ms);
      await truncateUsage(backend);
      await backend.sql("CHECKPOINT");
      mark();
      add("chunk SQL via Prisma $executeRaw in $transaction", (await timed(() => backend.db.prisma.$transaction(async (tx) => {
        for (let c = 0; c < chunks; c++) await tx.$executeRaw(MODEL_USAGE_BATCH.chunkSql(inputs, c * chunk, Math.min(rows, (c + 1) * chunk), false));
      }, { timeout: 3_600_000 }))).ms);
      await truncateUsage(backend);
      await backend.sql("CHECKPOINT");
      mark();
      add("chunk SQL via pg client (BEGIN/COMMIT)", (await timed(async () => {
        const client = await backend.pool!.connect();
        try {
          await client.query("BEGIN");
          for (let c = 0; c < chunks; c++) {
            const sql = MODEL_USAGE_BATCH.chunkSql(inputs, c * chunk, Math.min(rows, (c + 1) * chunk), false);
            await client.query(sql.text, sql.values as unknown[]);
          }
          await client.query("COMMIT");
        } finally {
          client.release();
        }
      })).ms);
      await truncateUsage(backend);
      await backend.sql("CHECKPOINT");
      mark();
      add("pg unnest (text array literals)", (await timed(() => ingestUnnestLiterals(backend, inputs, chunk))).ms);
    }
    for (const [name, runs] of Object.entries(figures)) {
      console.log(`${name.padEnd(52)} median ${median(runs).toFixed(0).padStart(6)} ms  runs ${runs.map((r) => r.toFixed(0)).join(", ")}; node CPU median ${median(cpu[name]).toFixed(0)} ms`);
    }
  } finally {
    await backend.close();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
