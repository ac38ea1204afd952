// A separate process racing other workers for a budget's last remaining amount, for
// tests/budgetsConcurrency.pg.test.ts.
//   node budgetWorker.js <postgres url> <userId> <modelId> <costs as comma-separated micro-dollars> [batch size]
// It opens the database with an onBudgetAlert callback, prints "ready", waits for a line on
// stdin (so that every worker starts at once), records one guarded model usage event per cost,
// all at the same time over its pool (with a batch size: one guarded recordModelUsageBatch per that
// many costs, and a batch's costs are reported together as their sum), and prints one JSON line:
// which costs were recorded and refused, other errors, and the alerts its callback received.
require("./tsRegister");
const readline = require("node:readline");
const { openDatabase } = require("../../src/db");
const { recordModelUsage, recordModelUsageBatch } = require("../../src/modelUsage");
const { BudgetExceededError } = require("../../src/errors");

async function main() {
  const [url, userId, modelId, costsText, batchText] = process.argv.slice(2);
  const costs = costsText.split(",").map(Number);
  const batchSize = batchText === undefined ? 0 : Number(batchText);
  const batches = [];
  if (batchSize > 0) for (let i = 0; i < costs.length; i += batchSize) batches.push(costs.slice(i, i + batchSize));
  const alerts = [];
  const db = await openDatabase({ url, poolSize: 4, connectTimeoutMs: 300_000, onBudgetAlert: (a) => void alerts.push({ id: a.id, threshold: a.threshold }) });
  try {
    process.stdout.write("ready\n");
    await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once("line", resolve));
    const recorded = [];
    const refused = [];
    const errors = [];
    const outcome = (cost) => [
      () => recorded.push(cost),
      (err) => (err instanceof BudgetExceededError && err.reason === "limit" ? refused.push(cost) : errors.push(String(err && err.message))),
    ];
    const event = (cost) => ({ userId: Number(userId), modelId: Number(modelId), tokenInCount: cost });
    await Promise.all(
      batchSize > 0
        ? batches.map((b) => recordModelUsageBatch(db, b.map(event), { enforceBudgets: true }).then(...outcome(b.reduce((x, y) => x + y, 0))))
        : costs.map((cost) => recordModelUsage(db, event(cost), { enforceBudgets: true }).then(...outcome(cost))),
    );
    process.stdout.write(`${JSON.stringify({ recorded, refused, errors, alerts })}\n`);
  } finally {
    await db.close();
    process.stdin.destroy();
  }
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(err && err.stack) })}\n`);
  process.exitCode = 1;
});
