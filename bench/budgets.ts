/**
 * Budgets at scale (`npm run bench:budgets`): how long budgetStatus takes on a ledger of
 * BENCH_BUDGETS_ROWS model usage rows (default 1M; 3M, 10M, 30M as time allows), against the cost
 * report of the same scope and period in the same run (what it is built on) and that report read
 * from the ledger alone (no rollups); and what a guarded record (`enforceBudgets`) and the
 * threshold check of an unguarded one add over a plain record with no budget.
 *
 * Data: bench/scaleData.ts (generated in PostgreSQL; the database `ps_usage_bench_budgets` is
 * kept between runs so that a size is generated once), rollups rebuilt with rebuildRollups.
 * Run it under the machine-wide lock: `flock /tmp/ps-usage-bench.lock npm run bench:budgets`.
 */
import os from "node:os";
import { Pool } from "pg";
import {
  agentTreeCostReport,
  budgetChecksSettled,
  budgetStatus,
  costReport,
  openDatabase,
  rebuildRollups,
  recordModelUsage,
  recordModelUsageBatch,
  removeBudget,
  setBudget,
  setExternalApiPrice,
  setModelPrice,
  type Database,
} from "../src";
import { MODEL_PROFILES, WINDOW_END } from "./data";
import { createScaleUniverse, growLedger, WINDOW_START, type ScaleUniverse } from "./scaleData";
import { admin, urlFor } from "./setup";

const DB_NAME = process.env.BENCH_BUDGETS_DB ?? "ps_usage_bench_budgets";
const ROWS = Number(process.env.BENCH_BUDGETS_ROWS ?? 1_000_000);
const REPEAT = Number(process.env.BENCH_BUDGETS_REPEAT ?? 7);
/** Set to 0: skip the reports from the ledger alone (tens of seconds each at 10M). */
const LEDGER = process.env.BENCH_BUDGETS_LEDGER !== "0";
/** Events per batch of the guarded-batch measurement. */
const BATCH = Number(process.env.BENCH_BUDGETS_BATCH ?? 1_000);
const RECORDS = Number(process.env.BENCH_BUDGETS_RECORDS ?? 20);
/** Set: generate (or grow) the ledger and stop, timing nothing (so it needs no benchmark lock). */
const GENERATE_ONLY = process.env.BENCH_BUDGETS_GENERATE_ONLY === "1";

const log = (line: string) => process.stderr.write(`${line}\n`);
const load = () => os.loadavg().map((l) => Number(l.toFixed(2)));

async function open(): Promise<{ db: Database; pool: Pool; universe: ScaleUniverse }> {
  const pool0 = new Pool({ connectionString: urlFor("postgres") });
  const exists = (await pool0.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [DB_NAME])).rowCount === 1;
  await pool0.end();
  if (!exists) await admin(`CREATE DATABASE "${DB_NAME}"`);
  const url = urlFor(DB_NAME);
  const db = await openDatabase({ url, migrate: true, writeTimeoutMs: 3_600_000, reportTimeoutMs: 3_600_000 });
  const pool = new Pool({ connectionString: url, max: 2 });
  pool.on("error", () => undefined);
  await pool.query(`CREATE TABLE IF NOT EXISTS bench_scale_universe (universe jsonb NOT NULL)`);
  const stored = (await pool.query<{ universe: ScaleUniverse }>(`SELECT universe FROM bench_scale_universe`)).rows[0]?.universe;
  if (stored) return { db, pool, universe: stored };
  const universe = await createScaleUniverse(pool);
  const dayBefore = new Date(WINDOW_START - 86_400_000);
  for (let m = 0; m < MODEL_PROFILES.length; m++) {
    const { currency, costInTokensPerMillion, costOutTokensPerMillion, ...rest } = MODEL_PROFILES[m].prices as Record<string, string | number>;
    await setModelPrice(db, universe.modelIds[m], { currency: String(currency), costInTokensPerMillion, costOutTokensPerMillion, ...rest } as never, dayBefore);
  }
  for (const id of universe.externalApiIds) await setExternalApiPrice(db, id, { unitType: "call", pricePerUnit: "0.004", currency: "USD" }, dayBefore);
  await pool.query(`INSERT INTO bench_scale_universe (universe) VALUES ($1)`, [JSON.stringify(universe)]);
  return { db, pool, universe };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const { db, pool, universe } = await open();
  try {
    const have = Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ps_model_usage`)).rows[0].n);
    if (have < ROWS) {
      log(`growing the ledger from ${have} to ${ROWS} model usage rows, load ${load().join(" ")}`);
      const t0 = Date.now();
      await growLedger(pool, universe, ROWS, log);
      log(`  generated in ${((Date.now() - t0) / 1000).toFixed(0)} s; rebuilding the rollups`);
      const t1 = Date.now();
      await rebuildRollups(db, { lockTimeoutMs: 60_000 });
      log(`  rebuilt in ${((Date.now() - t1) / 1000).toFixed(0)} s`);
    }
    if (GENERATE_ONLY) {
      await pool.query(`VACUUM ANALYZE`);
      return;
    }
    const rows = Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ps_model_usage`)).rows[0].n);
    const apiRows = Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ps_external_api_usage`)).rows[0].n);
    // Bench records of earlier runs are removed; the generated ledger stays.
    await pool.query(`DELETE FROM ps_model_usage WHERE user_id = 9999`);
    for (const b of await db.prisma.psUsageBudget.findMany()) await removeBudget(db, b.name);
    await pool.query(`ANALYZE`);
    const at = new Date(WINDOW_END - 1);
    const month = { from: new Date(Date.UTC(2026, 8, 1)), to: new Date(WINDOW_END) };
    console.log(`budgets benchmark: ${rows.toLocaleString("en-US")} model usage rows, ${apiRows.toLocaleString("en-US")} external API usage rows; load ${load().join(" ")}`);

    // budgetStatus against the cost report of the same scope and period (its base), and the same
    // report from the ledger alone. Repeated REPEAT times, interleaved; medians.
    const root = universe.rootAgentId;
    // The connector with the most September events (read from the per-connector level, untimed).
    const busiest = await pool.query<{ id: number }>(
      `SELECT connector_id AS id FROM ps_model_usage_connector_day_rollup WHERE connector_id <> 0 AND day_start >= $1 AND day_start < $2 GROUP BY 1 ORDER BY sum(event_count) DESC LIMIT 1`,
      [month.from, month.to],
    );
    const connectorId = busiest.rows[0]?.id;
    const cases = [
      { name: "everything, month", scope: {}, period: "month" as const, report: (r: boolean) => costReport(db, { where: month, rollups: r }) },
      { name: "agent tree (1,000 agents), month", scope: { agentId: root }, period: "month" as const, report: (r: boolean) => agentTreeCostReport(db, root, { where: month, rollups: r }) },
      { name: "user 1, month", scope: { userId: 1 }, period: "month" as const, report: (r: boolean) => costReport(db, { where: { ...month, userId: 1 }, rollups: r }) },
      ...(connectorId === undefined
        ? []
        : [{ name: `connector ${connectorId} (the busiest), month`, scope: { connectorId }, period: "month" as const, report: (r: boolean) => costReport(db, { where: { ...month, connectorId }, rollups: r }) }]),
      { name: "model 1, day Europe/Berlin", scope: { modelId: universe.modelIds[0] }, period: "day" as const, timeZone: "Europe/Berlin", at: new Date(Date.UTC(2026, 8, 30, 12)),
        report: (r: boolean) => costReport(db, { where: { from: new Date(Date.UTC(2026, 8, 29, 22)), to: new Date(Date.UTC(2026, 8, 30, 22)), modelId: universe.modelIds[0] }, rollups: r }) },
    ];
    for (const c of cases) {
      await setBudget(db, { name: `bench ${c.name}`, scope: c.scope, period: c.period, timeZone: c.timeZone ?? "UTC", amount: "1000000", currency: "USD", thresholds: [0.99] });
    }
    for (const c of cases) {
      const status: number[] = [];
      const report: number[] = [];
      const ledger: number[] = [];
      let spent = "";
      let reported = "";
      for (let i = 0; i < REPEAT; i++) {
        status.push(await time(async () => (spent = (await budgetStatus(db, `bench ${c.name}`, { at: c.at ?? at })).spent)));
        report.push(await time(async () => (reported = (await c.report(true)).totals.find((t) => t.currency === "USD")?.cost ?? "0")));
        if (LEDGER) ledger.push(await time(() => c.report(false)));
      }
      if (spent !== reported) throw new Error(`${c.name}: budgetStatus spent ${spent}, the cost report ${reported}`);
      const byScope = await budgetStatus(db, { scope: c.scope, period: c.period, timeZone: c.timeZone ?? "UTC" }, { at: c.at ?? at });
      if (byScope.spent !== spent) throw new Error(`${c.name}: budgetStatus by scope spent ${byScope.spent}, by name ${spent}`);
      const [s, r, l] = [median(status), median(report), LEDGER ? median(ledger) : NaN];
      console.log(
        `budgetStatus ${c.name}: ${s.toFixed(1)} ms (spent ${spent} USD); costReport with rollups ${r.toFixed(1)} ms (${(s / r).toFixed(2)}x); ` +
          `${LEDGER ? `from the ledger alone ${l.toFixed(1)} ms (${(s / l).toFixed(2)}x)` : "from the ledger alone: skipped (BENCH_BUDGETS_LEDGER=0)"}; load ${load().join(" ")}`,
      );
    }

    // What recording costs: plain records with no budget, against plain records under a budget
    // with no thresholds (the cached check only), guarded records under a hard limit on a small
    // scope (the recording user, per day) and on a large one (the 1,000-agent tree, per month), and
    // plain records under a threshold budget on the tree (checked in the background; the wait
    // for those checks to settle is timed apart). RECORDS each,
    // in interleaved rounds of 5; medians.
    const agentInTree = universe.agentIds[500];
    const event = { userId: 9999, modelId: universe.modelIds[0], agentId: agentInTree, tokenInCount: 10, tokenOutCount: 5, createdAt: at };
    for (const c of cases) await removeBudget(db, `bench ${c.name}`);
    const runs: Record<string, number[]> = {
      plain: [],
      cachedCheck: [],
      guardedSmall: [],
      guardedTree: [],
      thresholdTree: [],
      thresholdTreeSettled: [],
      batchPlain: [],
      batchGuardedTree: [],
    };
    const batch = Array.from({ length: BATCH }, (_, i) => ({ ...event, agentId: universe.agentIds[i % 1000], tokenInCount: 10 + (i % 7) }));
    const base = { currency: "USD", amount: "1000000000" };
    for (let round = 0; round < RECORDS / 5; round++) {
      const five = async (name: string, options?: { enforceBudgets: true }) => {
        for (let i = 0; i < 5; i++) runs[name].push(await time(() => recordModelUsage(db, event, options)));
      };
      await five("plain");
      await setBudget(db, { ...base, name: "bench cap", scope: { agentId: root }, period: "month", hardLimit: true });
      await five("cachedCheck");
      await five("guardedTree", { enforceBudgets: true });
      await setBudget(db, { ...base, name: "bench cap", scope: { userId: 9999 }, period: "day", hardLimit: true });
      await five("guardedSmall", { enforceBudgets: true });
      await setBudget(db, { ...base, name: "bench cap", scope: { agentId: root }, period: "month", thresholds: [0.99] });
      await five("thresholdTree");
      // A batch of BATCH events in the tree, guarded by a hard limit on it, against the same batch unguarded with no budget.
      await setBudget(db, { ...base, name: "bench cap", scope: { agentId: root }, period: "month", hardLimit: true });
      runs.batchGuardedTree.push(await time(() => recordModelUsageBatch(db, batch, { enforceBudgets: true })));
      await removeBudget(db, "bench cap");
      runs.batchPlain.push(await time(() => recordModelUsageBatch(db, batch)));
      // The background checks those five records started, to the last one: off the record path.
      runs.thresholdTreeSettled.push(await time(() => budgetChecksSettled(db)));
      await removeBudget(db, "bench cap");
    }
    const m = (name: string) => median(runs[name]);
    const ratio = (name: string) => `${m(name).toFixed(2)} ms (${(m(name) / m("plain")).toFixed(2)}x)`;
    console.log(
      `record, no budget: ${m("plain").toFixed(2)} ms median; under a hard-limit budget, unguarded (cached check only): ${ratio("cachedCheck")}; ` +
        `guarded, budget of the recording user per day: ${ratio("guardedSmall")}; guarded, budget of the 1,000-agent tree per month: ${ratio("guardedTree")}; ` +
        `unguarded under a threshold budget on the tree (checked in the background): ${ratio("thresholdTree")}, ` +
        `then its background checks settled in ${m("thresholdTreeSettled").toFixed(1)} ms per 5 records; ${RECORDS} each; ` +
        `batch of ${BATCH} events in the tree, no budget: ${m("batchPlain").toFixed(1)} ms; guarded by a hard limit on the tree: ${m("batchGuardedTree").toFixed(1)} ms ` +
        `(${(m("batchGuardedTree") / m("batchPlain")).toFixed(2)}x, ${runs.batchPlain.length} each); load ${load().join(" ")}`,
    );
    await pool.query(`DELETE FROM ps_model_usage WHERE user_id = 9999`);
  } finally {
    await pool.end();
    await db.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
