/**
 * The server's side of one batch chunk (issue 12 §4): the package's chunk statement against the
 * hand-written text-literal unnest, each run alternately under EXPLAIN ANALYZE in a transaction
 * that is rolled back. `node dist/bench-build/bench/profileChunk.js [rows] [runs]`.
 */
import { MODEL_USAGE_BATCH } from "../src/modelUsage";
import { generateEvents, toInputs, COUNTER_FIELDS, COUNTER_COLUMNS } from "./data";
import { openPostgresBackend } from "./setup";
import { median } from "./stats";

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? "20000");
  const runs = Number(process.argv[3] ?? "9");
  const backend = await openPostgresBackend();
  try {
    const inputs = toInputs(generateEvents(rows, 20261125, backend.ids.agentIds.length), backend.ids);
    const ours = MODEL_USAGE_BATCH.chunkSql(inputs, 0, rows, false);
    const cols = ["user_id", "model_id", "agent_id", "connector_id", "created_at", ...COUNTER_COLUMNS];
    const literal = (f: (i: (typeof inputs)[number]) => unknown) => `{${inputs.map((i) => f(i) ?? "NULL").join(",")}}`;
    const handText = `INSERT INTO ps_model_usage (${cols.join(", ")}) SELECT * FROM unnest(${cols.map((c, i) => `$${i + 1}::${c === "created_at" ? "timestamptz" : "int4"}[]`).join(", ")})`;
    const handValues = [
      literal((i) => i.userId), literal((i) => i.modelId), literal((i) => i.agentId), literal((i) => i.connectorId),
      literal((i) => (i.createdAt ?? new Date()).toISOString()), ...COUNTER_FIELDS.map((f) => literal((i) => i[f] ?? 0)),
    ];
    const client = await backend.pool!.connect();
    const times: Record<string, number[]> = { ours: [], hand: [] };
    try {
      for (let r = 0; r < runs; r++) {
        for (const [name, text, values] of [["ours", ours.text, ours.values], ["hand", handText, handValues]] as const) {
          await client.query("BEGIN");
          const plan = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values as unknown[]);
          await client.query("ROLLBACK");
          const json = plan.rows[0]["QUERY PLAN"][0];
          times[name].push(json["Execution Time"] + json["Planning Time"]);
        }
      }
    } finally {
      client.release();
    }
    for (const [name, t] of Object.entries(times)) console.log(`${name}: median ${median(t).toFixed(1)} ms (runs ${t.map((x) => x.toFixed(0)).join(", ")})`);
  } finally {
    await backend.close();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
