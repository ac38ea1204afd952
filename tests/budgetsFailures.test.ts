/**
 * When the background budget work fails: a threshold check whose queries fail, an onBudgetAlert
 * callback that throws, a close() that would wait on a check that does not end. None may crash the
 * process or lose an alert, and each failure is observable (onBudgetError, else a process warning).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { jest } from "@jest/globals";
import {
  DatabaseNotMigratedError,
  UsageValidationError,
  budgetChecksSettled,
  openDatabase,
  recordModelUsage,
  setBudget,
  setModelPrice,
  type BudgetAlert,
  type BudgetFailure,
  type Database,
  type OpenDatabaseOptions,
} from "../src";
import { createModel } from "./support/fixtures";
import { backend, createScratchDatabase } from "./support/testDatabase";

const JAN = new Date("2025-01-01T00:00:00Z");
const USD = (dollars: number) => dollars * 1_000_000;
const at = new Date("2025-08-10T10:00:00Z");
/** `p`'s value, or "pending" when it has not settled within `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<"pending">((r) => (timer = setTimeout(() => r("pending"), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A scratch database (a directory on the embedded backend, so it can be opened again). */
async function scratch(): Promise<{ open: (options?: Partial<OpenDatabaseOptions>) => Promise<Database>; dispose: () => Promise<void> }> {
  if (backend === "pglite") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-budget-failures-"));
    return { open: (options = {}) => openDatabase({ dataDir: dir, ...options }), dispose: async () => fs.rmSync(dir, { recursive: true, force: true }) };
  }
  const s = await createScratchDatabase();
  return { open: (options = {}) => openDatabase({ url: s.url, ...options }), dispose: s.drop };
}

let place: Awaited<ReturnType<typeof scratch>>;
let db: Database;
let model: number;
const seen: BudgetAlert[] = [];
const failures: BudgetFailure[] = [];
/** Set: the callback throws this for the next alert, once. */
let failNext: Error | null = null;
/** Set: the callback waits on it (a consumer that never answers). */
let hang: Promise<void> | null = null;
let entered: (() => void) | null = null;
const onBudgetAlert = async (a: BudgetAlert) => {
  if (failNext) {
    const e = failNext;
    failNext = null;
    throw e;
  }
  if (hang) {
    entered?.();
    await hang;
  }
  seen.push(a);
};
const onBudgetError = (f: BudgetFailure) => void failures.push(f);

beforeAll(async () => {
  place = await scratch();
  db = await place.open({ migrate: true, onBudgetAlert, onBudgetError });
  model = await createModel(db, "usd");
  await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
});
afterAll(async () => {
  await db.close({ budgetChecksTimeoutMs: 0 }).catch(() => undefined);
  await place.dispose();
});

const alertRows = (name: string) => db.prisma.psUsageBudgetAlert.findMany({ where: { budget: { name } }, orderBy: { threshold: "asc" } });

test("a check whose queries fail does not reach the record call nor crash the process; it is reported, and the next run raises the crossing", async () => {
  await setBudget(db, { name: "gone", scope: { userId: 601 }, period: "month", amount: "1", currency: "USD", thresholds: [0.5] });
  // The alerts table away: the check's raise fails, as it would with the database gone.
  await db.prisma.$executeRawUnsafe(`ALTER TABLE ps_usage_budget_alerts RENAME TO ps_usage_budget_alerts_away`);
  try {
    await recordModelUsage(db, { userId: 601, modelId: model, tokenInCount: USD(0.7), createdAt: at });
    await budgetChecksSettled(db);
  } finally {
    await db.prisma.$executeRawUnsafe(`ALTER TABLE ps_usage_budget_alerts_away RENAME TO ps_usage_budget_alerts`);
  }
  expect(failures).toHaveLength(1);
  expect(failures[0].alert).toBeNull();
  expect(failures[0].error).toBeInstanceOf(DatabaseNotMigratedError);
  expect(seen).toEqual([]);
  // The budget stayed dirty: the next record's check raises and delivers the crossing.
  await recordModelUsage(db, { userId: 601, modelId: model, tokenInCount: 0, createdAt: at });
  await budgetChecksSettled(db);
  expect(seen.map((a) => [a.budgetName, a.threshold, a.spent])).toEqual([["gone", "0.5", "0.7"]]);
  expect((await alertRows("gone")).map((a) => a.deliveredAt !== null)).toEqual([true]);
  failures.length = 0;
  seen.length = 0;
});

test("an onBudgetAlert that throws: reported with its alert, which stays undelivered in the outbox and is delivered by the next check", async () => {
  await setBudget(db, { name: "flaky", scope: { userId: 602 }, period: "month", amount: "1", currency: "USD", thresholds: [0.5, 1] });
  failNext = new Error("webhook down");
  await recordModelUsage(db, { userId: 602, modelId: model, tokenInCount: USD(0.6), createdAt: at });
  await budgetChecksSettled(db);
  expect(failures.map((f) => [(f.error as Error).message, f.alert?.threshold])).toEqual([["webhook down", "0.5"]]);
  expect(seen).toEqual([]);
  const stored = await alertRows("flaky");
  expect(stored.map((a) => [a.threshold.toFixed(), a.deliveredAt, a.claimedAt])).toEqual([["0.5", null, null]]);
  // The next record's check delivers it first, then the crossing it makes itself.
  await recordModelUsage(db, { userId: 602, modelId: model, tokenInCount: USD(0.5), createdAt: at });
  await budgetChecksSettled(db);
  expect(seen.map((a) => [a.budgetName, a.threshold])).toEqual([["flaky", "0.5"], ["flaky", "1"]]);
  expect((await alertRows("flaky")).every((a) => a.deliveredAt !== null)).toBe(true);
  // A guarded record's delivery fails the same way, and is delivered by the next check too.
  await setBudget(db, { name: "flaky-guarded", scope: { userId: 603 }, period: "month", amount: "1", currency: "USD", thresholds: [0.5], hardLimit: true });
  failNext = new Error("still down");
  await recordModelUsage(db, { userId: 603, modelId: model, tokenInCount: USD(0.6), createdAt: at }, { enforceBudgets: true });
  expect(failures.map((f) => f.alert?.budgetName)).toEqual(["flaky", "flaky-guarded"]);
  await recordModelUsage(db, { userId: 999, modelId: model, tokenInCount: 1, createdAt: at });
  await budgetChecksSettled(db);
  expect(seen.map((a) => a.budgetName)).toEqual(["flaky", "flaky", "flaky-guarded"]);
  failures.length = 0;
  seen.length = 0;
});

test("without onBudgetError a failure is a process warning", async () => {
  const other = await scratch();
  const quiet = await other.open({ migrate: true, onBudgetAlert: () => Promise.reject(new Error("no consumer")) });
  const warn = jest.spyOn(process, "emitWarning").mockImplementation(() => undefined);
  try {
    const m = await createModel(quiet, "usd");
    await setModelPrice(quiet, m, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
    await setBudget(quiet, { name: "warned", period: "month", amount: "1", currency: "USD", thresholds: [0.5] });
    await recordModelUsage(quiet, { userId: 1, modelId: m, tokenInCount: USD(0.9), createdAt: at });
    await budgetChecksSettled(quiet);
    expect(warn.mock.calls).toEqual([[expect.stringMatching(/delivering budget alert \d+ \("warned" at 0.5\) failed: no consumer/), { code: "PS_USAGE_BUDGET_FAILURE" }]]);
  } finally {
    warn.mockRestore();
    await quiet.close();
    await other.dispose();
  }
});

test("close() stops waiting for a check after budgetChecksTimeoutMs; its alert stays in the outbox and is delivered by the next Database", async () => {
  await expect(db.close({ budgetChecksTimeoutMs: -1 })).rejects.toThrow(UsageValidationError);
  await setBudget(db, { name: "stuck", scope: { userId: 604 }, period: "month", amount: "1", currency: "USD", thresholds: [0.5] });
  let release!: () => void;
  hang = new Promise<void>((r) => (release = r));
  const inCallback = new Promise<void>((r) => (entered = r));
  await recordModelUsage(db, { userId: 604, modelId: model, tokenInCount: USD(0.8), createdAt: at });
  await inCallback;
  // Without a bound close() would wait for the callback forever; with one it goes on.
  expect(await within(db.close({ budgetChecksTimeoutMs: 200 }), 10_000)).not.toBe("pending");
  hang = null;
  db = await place.open({ onBudgetAlert, onBudgetError });
  const stored = await alertRows("stuck");
  expect(stored.map((a) => [a.threshold.toFixed(), a.deliveredAt, a.claimedAt !== null])).toEqual([["0.5", null, true]]);
  expect(seen).toEqual([]);
  // The claim of the process that stopped waiting expires (a minute; aged here): delivered once.
  await db.prisma.psUsageBudgetAlert.updateMany({ where: { budget: { name: "stuck" } }, data: { claimedAt: new Date(Date.now() - 120_000) } });
  await db.close();
  db = await place.open({ onBudgetAlert, onBudgetError });
  expect(seen.map((a) => [a.budgetName, a.threshold, a.spent])).toEqual([["stuck", "0.5", "0.8"]]);
  // The abandoned callback returns after all: marking it fails on the closed database, reported, not thrown.
  release();
  await new Promise((r) => setTimeout(r, 50));
  expect(failures.every((f) => f.alert?.budgetName === "stuck")).toBe(true);
});
