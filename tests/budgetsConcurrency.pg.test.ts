import path from "node:path";
import { Client } from "pg";
import { BUDGET_ALERT_CHANNEL, budgetStatus, openDatabase, removeBudget, setBudget, setModelPrice, type Database } from "../src";
import { seededRandom } from "../src/random";
import { createModel } from "./support/fixtures";
import { createScratchDatabase } from "./support/testDatabase";
import { startChild } from "./support/children";

const WORKER = path.join(__dirname, "support", "budgetWorker.js");

interface WorkerResult {
  recorded: number[];
  refused: number[];
  errors: string[];
  alerts: { id: number; threshold: string }[];
  fatal?: string;
}

/** Starts a worker; `ready` once it has opened the database, `go` starts its records. */
function startWorker(url: string, userId: number, modelId: number, costs: readonly number[], batchSize?: number) {
  const child = startChild<WorkerResult>(WORKER, [url, String(userId), String(modelId), costs.join(","), ...(batchSize === undefined ? [] : [String(batchSize)])]);
  const done = child.done.then((o) => {
    if (o.result === undefined) throw new Error(`worker gave no result: ${o.stderr}`);
    return o.result;
  });
  return { ready: child.ready, go: child.go, done };
}

let db: Database;
let url: string;
let drop: () => Promise<void>;
let listener: Client;
const notified: { id: number; threshold: string }[] = [];

beforeAll(async () => {
  const scratch = await createScratchDatabase();
  url = scratch.url;
  drop = scratch.drop;
  db = await openDatabase({ url, migrate: true });
  listener = new Client({ connectionString: url });
  await listener.connect();
  listener.on("notification", (n) => notified.push(JSON.parse(n.payload ?? "{}")));
  await listener.query(`LISTEN ${BUDGET_ALERT_CHANNEL}`);
});
afterAll(async () => {
  await listener.end();
  await db.close();
  await drop();
});

test("8 processes x 25 guarded records race a hard limit: spent never passes it, each refusal was needed, each threshold fires and is delivered once", async () => {
  const model = await createModel(db);
  // 1 USD per million input tokens: a cost of n tokens is n micro-dollars.
  await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, new Date("2020-01-01T00:00:00Z"));
  const LIMIT = 1000; // micro-dollars
  await setBudget(db, { name: "race", period: "day", amount: (LIMIT / 1e6).toFixed(6), currency: "USD", thresholds: [0.5, 0.8, 1], hardLimit: true });
  const random = seededRandom(14);
  // 200 events of 1-20 micro-dollars: about 2,100 asked for, 1,000 allowed. Each worker records
  // for a user of its own, so that its rows go to rollup rows of their own: the budget's lock,
  // not a shared rollup row, is what makes the writers take turns.
  const workers = Array.from({ length: 8 }, (_, i) => startWorker(url, i + 1, model, Array.from({ length: 25 }, () => 1 + Math.floor(random() * 20))));
  await Promise.all(workers.map((w) => w.ready));
  for (const w of workers) w.go();
  const started = Date.now();
  const results = await Promise.all(workers.map((w) => w.done));
  console.log(`200 guarded records by 8 processes: ${Date.now() - started} ms`);
  expect(results.filter((r) => r.fatal)).toEqual([]);
  expect(results.flatMap((r) => r.errors)).toEqual([]);

  const recorded = results.flatMap((r) => r.recorded);
  const refused = results.flatMap((r) => r.refused);
  const spent = recorded.reduce((a, b) => a + b, 0);
  expect(recorded.length + refused.length).toBe(200);
  // Never past the limit, and every refused event would have passed it at the end too.
  expect(spent).toBeLessThanOrEqual(LIMIT);
  expect(refused.length).toBeGreaterThan(0);
  for (const cost of refused) expect(spent + cost).toBeGreaterThan(LIMIT);
  // The ledger holds exactly what the workers were told was recorded.
  expect(await db.prisma.psModelUsage.count()).toBe(recorded.length);
  const status = await budgetStatus(db, "race");
  expect(status.spent).toBe((spent / 1e6).toFixed(6).replace(/\.?0+$/, ""));

  // Each threshold reached is raised once, heard once by LISTEN, and delivered to one callback once.
  const reached = [0.5, 0.8, 1].filter((t) => spent >= t * LIMIT).map(String);
  const rows = await db.prisma.psUsageBudgetAlert.findMany({ orderBy: { threshold: "asc" } });
  expect(rows.map((r) => r.threshold.toFixed())).toEqual(reached);
  expect(rows.every((r) => r.deliveredAt !== null)).toBe(true);
  const delivered = results.flatMap((r) => r.alerts).map((a) => a.threshold).sort();
  expect(delivered).toEqual([...reached].sort());
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(notified.map((n) => n.threshold).sort()).toEqual([...reached].sort());
});

test("6 processes x 8 guarded batches of 3 events race a hard limit: spent never passes it, each refused batch was needed, nothing of it written", async () => {
  // The first test's budget covers everything and is spent: this race is about its own budget only.
  await removeBudget(db, "race");
  const model = await createModel(db, "batch-race");
  await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, new Date("2020-01-01T00:00:00Z"));
  const LIMIT = 1000; // micro-dollars
  await setBudget(db, { name: "batch-race", scope: { modelId: model }, period: "day", amount: (LIMIT / 1e6).toFixed(6), currency: "USD", hardLimit: true });
  const random = seededRandom(41);
  // 48 batches of 3 events of 1-20 micro-dollars: about 1,500 asked for, 1,000 allowed.
  const workers = Array.from({ length: 6 }, (_, i) => startWorker(url, 100 + i, model, Array.from({ length: 24 }, () => 1 + Math.floor(random() * 20)), 3));
  await Promise.all(workers.map((w) => w.ready));
  for (const w of workers) w.go();
  const results = await Promise.all(workers.map((w) => w.done));
  expect(results.filter((r) => r.fatal)).toEqual([]);
  expect(results.flatMap((r) => r.errors)).toEqual([]);
  const recorded = results.flatMap((r) => r.recorded);
  const refused = results.flatMap((r) => r.refused);
  const spent = recorded.reduce((a, b) => a + b, 0);
  expect(recorded.length + refused.length).toBe(48);
  expect(spent).toBeLessThanOrEqual(LIMIT);
  expect(refused.length).toBeGreaterThan(0);
  for (const cost of refused) expect(spent + cost).toBeGreaterThan(LIMIT);
  // All or nothing: 3 rows per recorded batch, none of a refused one.
  expect(await db.prisma.psModelUsage.count({ where: { modelId: model } })).toBe(recorded.length * 3);
  expect((await budgetStatus(db, "batch-race")).spent).toBe((spent / 1e6).toFixed(6).replace(/\.?0+$/, ""));
});
