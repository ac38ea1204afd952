import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import {
  BudgetExceededError,
  UnknownReferenceError,
  UsageValidationError,
  budgetChecksSettled,
  budgetStatus,
  checkBudgets,
  forUser,
  listBudgets,
  openDatabase,
  recordExternalApiUsage,
  recordModelUsage,
  recordModelUsageBatch,
  removeBudget,
  setBudget,
  setExternalApiPrice,
  setModelPrice,
  type BudgetAlert,
  type Database,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { issuesOf } from "./support/errors";
import { backend, createScratchDatabase, openTestDatabase, type TestDatabase } from "./support/testDatabase";

const JAN = new Date("2025-01-01T00:00:00Z");
/** 1 USD per million input tokens: tokenInCount is micro-dollars. */
const USD = (dollars: number) => dollars * 1_000_000;

async function usageCount(db: Database): Promise<number> {
  return (await db.prisma.psModelUsage.count()) + (await db.prisma.psExternalApiUsage.count());
}

describe("setBudget, listBudgets, removeBudget", () => {
  let t: TestDatabase;
  let agent: number;
  beforeAll(async () => {
    t = await openTestDatabase();
    agent = await createAgent(t.db);
  });
  afterAll(() => t.dispose());

  test("set, replace by name, list, remove", async () => {
    const b = await setBudget(t.db, {
      name: "team",
      scope: { agentId: agent },
      period: "month",
      timeZone: "Europe/Berlin",
      amount: "100.50",
      currency: "usd",
      thresholds: [1, 0.5, "0.8"],
      hardLimit: true,
    });
    expect(b).toMatchObject({ name: "team", scope: { agentId: agent }, period: "month", timeZone: "Europe/Berlin", amount: "100.5", currency: "USD", thresholds: ["0.5", "0.8", "1"], hardLimit: true, from: null, to: null });
    const replaced = await setBudget(t.db, { name: "team", period: { from: JAN, to: new Date("2025-02-01T00:00:00Z") }, amount: 7, currency: "EUR" });
    expect(replaced).toMatchObject({ id: b.id, scope: {}, period: "range", from: JAN, amount: "7", currency: "EUR", thresholds: [], hardLimit: false });
    expect((await listBudgets(t.db)).map((x) => x.name)).toEqual(["team"]);
    expect(await removeBudget(t.db, "team")).toBe(true);
    expect(await removeBudget(t.db, "team")).toBe(false);
    expect(await listBudgets(t.db)).toEqual([]);
  });

  test("bad input names every field and writes nothing", async () => {
    const issues = await issuesOf(
      setBudget(t.db, {
        name: " ",
        scope: { agentId: agent, modelId: 0, colour: 1 } as never,
        period: "year" as never,
        timeZone: "Mars/Olympus",
        amount: "-1",
        currency: "US$",
        thresholds: [0, 0.5, 0.5, 11, "x"],
        hardLimit: "yes" as never,
      }),
    );
    const fields = issues.map((i) => i.field);
    for (const f of ["name", "scope.colour", "scope.modelId", "period", "timeZone", "amount", "currency", "thresholds[0]", "thresholds[2]", "thresholds[3]", "thresholds[4]", "hardLimit"]) {
      expect(fields).toContain(f);
    }
    const range = await issuesOf(setBudget(t.db, { name: "r", period: { from: JAN, to: JAN }, amount: 1, currency: "USD" }));
    expect(range).toEqual([{ field: "period.to", reason: "must be after period.from" }]);
    const zero = await issuesOf(setBudget(t.db, { name: "z", period: "day", amount: 0, currency: "USD" }));
    expect(zero).toEqual([{ field: "amount", reason: "must be greater than 0" }]);
    await expect(setBudget(t.db, { name: "ghost", scope: { connectorId: 999_999 }, period: "day", amount: 1, currency: "USD" })).rejects.toThrow(UnknownReferenceError);
    expect(await t.db.prisma.psUsageBudget.count()).toBe(0);
    await expect(budgetStatus(t.db, "nope")).rejects.toThrow(UsageValidationError);
    await expect(recordModelUsage(t.db, { userId: 1, modelId: 1 }, { enforceBudgets: "yes" as never })).rejects.toThrow(/options.enforceBudgets/);
  });
});

describe("budgetStatus", () => {
  let t: TestDatabase;
  let model: number;
  let eurModel: number;
  let unpricedModel: number;
  let api: number;
  let root: number;
  let child: number;
  let other: number;
  beforeAll(async () => {
    t = await openTestDatabase();
    const db = t.db;
    model = await createModel(db, "usd");
    eurModel = await createModel(db, "eur");
    unpricedModel = await createModel(db, "free");
    api = await createExternalApi(db);
    root = await createAgent(db);
    child = await createAgent(db, root);
    other = await createAgent(db);
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "3" }, JAN);
    await setModelPrice(db, eurModel, { currency: "EUR", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
    await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: "0.001", currency: "USD" }, JAN);
    // Europe/Berlin leaves DST on 2025-10-26: that day runs 22:00Z (25th) to 23:00Z (26th), 25 hours.
    await recordModelUsageBatch(db, [
      { userId: 1, modelId: model, agentId: root, tokenInCount: 100, createdAt: new Date("2025-10-25T21:59:59Z") }, // the 25th in Berlin
      { userId: 1, modelId: model, agentId: root, tokenInCount: 1_000_000, createdAt: new Date("2025-10-25T22:00:00Z") }, // 1 USD
      { userId: 1, modelId: model, agentId: child, tokenOutCount: 333_333, createdAt: new Date("2025-10-26T22:30:00Z") }, // 0.999999 USD
      { userId: 2, modelId: model, agentId: other, tokenInCount: 500_000, createdAt: new Date("2025-10-26T12:00:00Z") }, // 0.5 USD
      { userId: 1, modelId: eurModel, agentId: child, tokenInCount: 2_000_000, createdAt: new Date("2025-10-26T12:00:00Z") }, // 2 EUR
      { userId: 1, modelId: unpricedModel, agentId: root, tokenInCount: 5, createdAt: new Date("2025-10-26T12:00:00Z") },
      { userId: 1, modelId: model, agentId: root, tokenInCount: 7, createdAt: new Date("2025-10-26T23:00:00Z") }, // the 27th
    ]);
    await recordExternalApiUsage(db, { userId: 1, externalApiId: api, agentId: child, callCount: 3, createdAt: new Date("2025-10-26T01:00:00Z") }); // 0.003 USD
  });
  afterAll(() => t.dispose());

  test("a day of 25 hours in the budget's zone, an agent's tree, exact decimals, what it could not count", async () => {
    await setBudget(t.db, { name: "tree-day", scope: { agentId: root }, period: "day", timeZone: "Europe/Berlin", amount: "4", currency: "USD" });
    const s = await budgetStatus(t.db, "tree-day", { at: new Date("2025-10-26T10:00:00Z") });
    expect(s.periodStart).toEqual(new Date("2025-10-25T22:00:00Z"));
    expect(s.periodEnd).toEqual(new Date("2025-10-26T23:00:00Z"));
    expect(s.spent).toBe("2.002999");
    expect(s.remaining).toBe("1.997001");
    expect(s.fractionUsed).toBe("0.50075");
    expect(s.exceeded).toBe(false);
    expect(s.unpricedEvents).toBe(1n);
    expect(s.otherCurrencies).toEqual([{ currency: "EUR", cost: "2" }]);
  });

  test("scopes: a user, a model (no external API usage), an external API, everything", async () => {
    const at = { at: new Date("2025-10-26T10:00:00Z") };
    const base = { period: "day" as const, timeZone: "Europe/Berlin", amount: 1, currency: "USD" };
    await setBudget(t.db, { ...base, name: "user2", scope: { userId: 2 } });
    await setBudget(t.db, { ...base, name: "model", scope: { modelId: model } });
    await setBudget(t.db, { ...base, name: "api", scope: { externalApiId: api } });
    await setBudget(t.db, { ...base, name: "all" });
    expect((await budgetStatus(t.db, "user2", at)).spent).toBe("0.5");
    expect((await budgetStatus(t.db, "model", at)).spent).toBe("2.499999");
    expect((await budgetStatus(t.db, "api", at)).spent).toBe("0.003");
    const all = await budgetStatus(t.db, "all", at);
    expect(all.spent).toBe("2.502999");
    expect(all.exceeded).toBe(true);
    expect(all.remaining).toBe("-1.502999");
  });

  test("by scope: the budget set on that scope and period, as by its name; a bad or unknown scope names the field", async () => {
    const at = { at: new Date("2025-10-26T10:00:00Z") };
    await setBudget(t.db, { name: "tree-month", scope: { agentId: root }, period: "month", amount: "10", currency: "USD" });
    await setBudget(t.db, { name: "user1-tree-day", scope: { userId: 1, agentId: root }, period: "day", timeZone: "Europe/Berlin", amount: "4", currency: "USD" });
    const byScope = await budgetStatus(t.db, { scope: { agentId: root }, period: "month" }, at);
    expect(byScope.budget.name).toBe("tree-month");
    expect(byScope).toEqual(await budgetStatus(t.db, "tree-month", at));
    const userTree = await budgetStatus(t.db, { scope: { userId: 1, agentId: root }, period: "day", timeZone: "Europe/Berlin", currency: "usd" }, at);
    expect([userTree.budget.name, userTree.spent, userTree.fractionUsed]).toEqual(["user1-tree-day", "2.002999", "0.50075"]);
    // Everything: the scope left out or {}.
    await setBudget(t.db, { name: "all", period: "day", timeZone: "Europe/Berlin", amount: 1, currency: "USD" });
    expect((await budgetStatus(t.db, { period: "day", timeZone: "Europe/Berlin", currency: "USD" }, at)).budget.name).toBe("all");
    // No budget on exactly that scope and period (a tree-month budget is not a user's).
    expect(await issuesOf(budgetStatus(t.db, { scope: { userId: 1, agentId: root }, period: "month" }, at))).toEqual([
      { field: "scope", reason: "no budget is set on this scope and period" },
    ]);
    const bad = await issuesOf(budgetStatus(t.db, { scope: { agentId: root, modelId: model, colour: 1 }, period: "year", timeZone: "Mars/Olympus", currency: "US$", name: "x" } as never));
    expect(bad.map((i) => i.field).sort()).toEqual(["currency", "name", "period", "scope.colour", "scope.modelId", "timeZone"]);
    expect(await issuesOf(budgetStatus(t.db, 42 as never))).toEqual([{ field: "budget", reason: "must be a budget's name or { scope, period }, got 42" }]);
  });
});

describe("thresholds", () => {
  let db: Database;
  let drop: () => Promise<void> = async () => undefined;
  let model: number;
  const seen: BudgetAlert[] = [];
  beforeAll(async () => {
    const onBudgetAlert = (a: BudgetAlert) => void seen.push(a);
    if (backend === "pglite") {
      db = await openDatabase({ dataDir: "memory://", migrate: true, onBudgetAlert });
    } else {
      const scratch = await createScratchDatabase();
      db = await openDatabase({ url: scratch.url, migrate: true, onBudgetAlert });
      drop = scratch.drop;
    }
    model = await createModel(db, "usd");
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
  });
  afterAll(async () => {
    await db.close();
    await drop();
  });

  test("each threshold fires once per period, in order, delivered to the callback; the next period fires again", async () => {
    await setBudget(db, { name: "daily", period: "day", amount: "10", currency: "USD", thresholds: [0.5, 0.8, 1] });
    const day = (d: number, h: number) => new Date(Date.UTC(2025, 5, d, h));
    await recordModelUsage(db, { userId: 1, modelId: model, tokenInCount: USD(4), createdAt: day(1, 1) });
    await budgetChecksSettled(db);
    expect(seen).toEqual([]);
    await recordModelUsage(db, { userId: 1, modelId: model, tokenInCount: USD(4.5), createdAt: day(1, 2) }); // 8.5: 50 % and 80 %
    await budgetChecksSettled(db);
    expect(seen.map((a) => [a.threshold, a.spent])).toEqual([["0.5", "8.5"], ["0.8", "8.5"]]);
    await recordModelUsage(db, { userId: 1, modelId: model, tokenInCount: USD(0.1), createdAt: day(1, 3) });
    await budgetChecksSettled(db);
    expect(seen).toHaveLength(2);
    await recordModelUsage(db, { userId: 1, modelId: model, tokenInCount: USD(20), createdAt: day(2, 3) }); // next day, all three at once
    await budgetChecksSettled(db);
    expect(seen.slice(2).map((a) => [a.threshold, a.periodStart.toISOString()])).toEqual([
      ["0.5", "2025-06-02T00:00:00.000Z"],
      ["0.8", "2025-06-02T00:00:00.000Z"],
      ["1", "2025-06-02T00:00:00.000Z"],
    ]);
    const rows = await db.prisma.psUsageBudgetAlert.findMany();
    expect(rows).toHaveLength(5);
    expect(rows.every((r) => r.deliveredAt !== null)).toBe(true);
    // Status and check raise nothing more.
    expect(await checkBudgets(db, { at: day(2, 4) })).toEqual([]);
    expect((await budgetStatus(db, "daily", { at: day(2, 4) })).alerts.map((a) => a.threshold)).toEqual(["0.5", "0.8", "1"]);
  });
});

describe("hard limits and alerts on one embedded or server database", () => {
  let dir: string | undefined;
  let t: TestDatabase;
  let model: number;
  let eurModel: number;
  let unpricedModel: number;
  let api: number;
  const seen: BudgetAlert[] = [];
  let db: Database;
  const reopen = async (withCallback: boolean): Promise<Database> => {
    const onBudgetAlert = withCallback ? (a: BudgetAlert) => void seen.push(a) : undefined;
    return t.url ? openDatabase({ url: t.url, onBudgetAlert }) : openDatabase({ dataDir: dir, onBudgetAlert });
  };
  beforeAll(async () => {
    if (backend === "pglite") {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-budgets-"));
      const first = await openDatabase({ dataDir: dir, migrate: true });
      t = { db: first, dispose: async () => fs.rmSync(dir!, { recursive: true, force: true }) };
    } else {
      t = await openTestDatabase();
    }
    model = await createModel(t.db, "usd");
    eurModel = await createModel(t.db, "eur");
    unpricedModel = await createModel(t.db, "free");
    api = await createExternalApi(t.db);
    await setModelPrice(t.db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
    await setModelPrice(t.db, eurModel, { currency: "EUR", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
    await setExternalApiPrice(t.db, api, { unitType: "call", pricePerUnit: "0.25", currency: "USD" }, JAN);
    db = t.db;
  });
  afterAll(async () => {
    await db.close();
    await t.dispose();
  });

  test("a guarded record past the limit is refused and writes nothing; up to the limit passes; unguarded passes", async () => {
    const connector = await createConnector(db);
    await setBudget(db, { name: "cap", scope: { connectorId: connector }, period: "month", amount: "1", currency: "USD", hardLimit: true });
    const at = new Date("2025-03-10T10:00:00Z");
    const before = await usageCount(db);
    await recordModelUsage(db, { userId: 1, modelId: model, connectorId: connector, tokenInCount: USD(0.5), createdAt: at }, { enforceBudgets: true });
    await recordExternalApiUsage(db, { userId: 1, externalApiId: api, connectorId: connector, callCount: 2, createdAt: at }, { enforceBudgets: true }); // exactly 1
    const refused = await recordModelUsage(db, { userId: 1, modelId: model, connectorId: connector, tokenInCount: 1, createdAt: at }, { enforceBudgets: true }).catch((e) => e);
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({ code: "PS_USAGE_BUDGET_EXCEEDED", reason: "limit", budgetName: "cap", amount: "1", spent: "1.000001", currency: "USD" });
    const apiRefused = await recordExternalApiUsage(db, { userId: 1, externalApiId: api, connectorId: connector, callCount: 1, createdAt: at }, { enforceBudgets: true, idempotencyKey: "k1" }).catch((e) => e);
    expect(apiRefused).toMatchObject({ reason: "limit", spent: "1.25" });
    expect(await usageCount(db)).toBe(before + 2);
    expect(await db.prisma.psUsageIdempotencyKey.count({ where: { key: "k1" } })).toBe(0);
    // Another connector, another month, or no guard: recorded.
    await recordModelUsage(db, { userId: 1, modelId: model, tokenInCount: USD(5), createdAt: at }, { enforceBudgets: true });
    await recordModelUsage(db, { userId: 1, modelId: model, connectorId: connector, tokenInCount: USD(1), createdAt: new Date("2025-04-01T00:00:00Z") }, { enforceBudgets: true });
    await recordModelUsage(db, { userId: 1, modelId: model, connectorId: connector, tokenInCount: USD(2), createdAt: at });
    expect(await usageCount(db)).toBe(before + 5);
    expect((await budgetStatus(db, "cap", { at })).spent).toBe("3");
    // Over by an unguarded write: every guarded write of the scope is refused.
    await expect(recordModelUsage(db, { userId: 1, modelId: model, connectorId: connector, tokenInCount: 0, createdAt: at }, { enforceBudgets: true })).rejects.toThrow(BudgetExceededError);
  });

  test("unpriced usage and usage in another currency are refused by a hard limit, counted nowhere", async () => {
    const agent = await createAgent(db);
    const sub = await createAgent(db, agent);
    await setBudget(db, { name: "agent-cap", scope: { agentId: agent }, period: "day", amount: "100", currency: "USD", hardLimit: true });
    const before = await usageCount(db);
    await expect(recordModelUsage(db, { userId: 1, modelId: unpricedModel, agentId: sub, tokenInCount: 1 }, { enforceBudgets: true })).rejects.toMatchObject({ reason: "unpriced" });
    await expect(recordModelUsage(db, { userId: 1, modelId: eurModel, agentId: sub, tokenInCount: 1 }, { enforceBudgets: true })).rejects.toMatchObject({ reason: "currency" });
    expect(await usageCount(db)).toBe(before);
    // Outside the budget's scope the guard has nothing to say.
    await recordModelUsage(db, { userId: 1, modelId: unpricedModel, tokenInCount: 1 }, { enforceBudgets: true });
    // The sub-agent's priced usage counts toward its parent's budget.
    await recordModelUsage(db, { userId: 1, modelId: model, agentId: sub, tokenInCount: USD(100) }, { enforceBudgets: true });
    await expect(recordModelUsage(db, { userId: 1, modelId: model, agentId: sub, tokenInCount: 1 }, { enforceBudgets: true })).rejects.toMatchObject({ reason: "limit", spent: "100.000001" });
  });

  test("alerts raised with nobody to deliver them are delivered once by the next Database opened with a callback", async () => {
    await setBudget(db, { name: "outbox", scope: { userId: 77 }, period: { from: JAN, to: new Date("2026-01-01T00:00:00Z") }, amount: "2", currency: "USD", thresholds: [0.5, 1] });
    await recordModelUsage(db, { userId: 77, modelId: model, tokenInCount: USD(1.5), createdAt: new Date("2025-05-05T00:00:00Z") });
    await budgetChecksSettled(db);
    const stored = await db.prisma.psUsageBudgetAlert.findMany({ where: { budget: { name: "outbox" } } });
    expect(stored.map((a) => [a.threshold.toFixed(), a.deliveredAt])).toEqual([["0.5", null]]);
    // The process "dies" here: the alert is committed, no callback saw it.
    await db.close();
    db = await reopen(true);
    expect(seen.map((a) => [a.budgetName, a.threshold, a.spent])).toEqual([["outbox", "0.5", "1.5"]]);
    await db.close();
    db = await reopen(true);
    expect(seen).toHaveLength(1);
    // A delivery claimed by a process that died before marking it is delivered again after the claim expires.
    await db.prisma.psUsageBudgetAlert.updateMany({ where: { budget: { name: "outbox" } }, data: { deliveredAt: null, claimedAt: new Date(Date.now() - 120_000) } });
    await checkBudgets(db);
    expect(seen).toHaveLength(2);
    expect(seen[1].id).toBe(seen[0].id);
  });

  test("writes the package did not see (plain SQL, as PolicySynth's) are caught by budgetStatus and checkBudgets", async () => {
    await setBudget(db, { name: "sql", scope: { userId: 88 }, period: "day", amount: "1", currency: "USD", thresholds: [0.5] });
    await db.prisma.$executeRaw`INSERT INTO ps_model_usage (user_id, model_id, token_in_count, created_at, updated_at) VALUES (88, ${model}, ${USD(0.7)}, now(), now())`;
    const n = seen.length;
    const s = await budgetStatus(db, "sql");
    expect(s.spent).toBe("0.7");
    expect(s.alerts.map((a) => a.threshold)).toEqual(["0.5"]);
    expect(seen.slice(n).map((a) => a.budgetName)).toEqual(["sql"]);
    expect(await checkBudgets(db)).toEqual([]);
  });
});

describe("threshold checks after unguarded records run in the background", () => {
  let dir: string | undefined;
  let url: string | undefined;
  let drop: () => Promise<void> = async () => undefined;
  let model: number;
  const seen: BudgetAlert[] = [];
  /** While closed, the callback waits (a slow alert consumer): the check is held at delivery. */
  let gate: { entered: Promise<void>; enter: () => void; release: () => void; open: Promise<void> } | null = null;
  const hold = () => {
    let enter!: () => void;
    let release!: () => void;
    const entered = new Promise<void>((r) => (enter = r));
    const open = new Promise<void>((r) => (release = r));
    gate = { entered, enter, release, open };
    return gate;
  };
  const onBudgetAlert = async (a: BudgetAlert) => {
    seen.push(a);
    const g = gate;
    if (g) {
      g.enter();
      await g.open;
    }
  };
  const open = () => (url ? openDatabase({ url, onBudgetAlert }) : openDatabase({ dataDir: dir, onBudgetAlert }));
  /** `p`'s value, or "pending" when it has not settled within `ms`. */
  const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<"pending">((r) => setTimeout(() => r("pending"), ms))]);
  let db: Database;
  beforeAll(async () => {
    if (backend === "pglite") {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-budget-checks-"));
      db = await openDatabase({ dataDir: dir, migrate: true, onBudgetAlert });
    } else {
      const scratch = await createScratchDatabase();
      url = scratch.url;
      drop = scratch.drop;
      db = await openDatabase({ url, migrate: true, onBudgetAlert });
    }
    model = await createModel(db, "usd");
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, JAN);
  });
  afterAll(async () => {
    gate?.release();
    await db.close();
    await drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a record resolves while its check is held; records meanwhile coalesce; each crossing is raised and delivered once", async () => {
    await setBudget(db, { name: "held", scope: { userId: 501 }, period: "month", amount: "1", currency: "USD", thresholds: [0.5, 1] });
    const at = new Date("2025-07-10T10:00:00Z");
    const g = hold();
    const first = await within(recordModelUsage(db, { userId: 501, modelId: model, tokenInCount: USD(0.6), createdAt: at }), 10_000);
    expect(first).not.toBe("pending");
    await g.entered; // the check raised 50 % and is handing it to the callback
    // Records while the check runs return at once too.
    for (let i = 0; i < 3; i++) {
      expect(await within(recordModelUsage(db, { userId: 501, modelId: model, tokenInCount: USD(0.2), createdAt: at }), 10_000)).not.toBe("pending");
    }
    const during = await db.prisma.psUsageBudgetAlert.findMany({ where: { budget: { name: "held" } } });
    expect(during.map((a) => [a.threshold.toFixed(), a.spent.toFixed(), a.deliveredAt])).toEqual([["0.5", "0.6", null]]);
    gate = null;
    g.release();
    await budgetChecksSettled(db);
    // The follow-up run saw 1.2: 100 % once.
    expect(seen.filter((a) => a.budgetName === "held").map((a) => [a.threshold, a.spent])).toEqual([["0.5", "0.6"], ["1", "1.2"]]);
    await recordModelUsage(db, { userId: 501, modelId: model, tokenInCount: USD(0.3), createdAt: at });
    await budgetChecksSettled(db);
    const rows = await db.prisma.psUsageBudgetAlert.findMany({ where: { budget: { name: "held" } }, orderBy: { threshold: "asc" } });
    expect(rows.map((a) => [a.threshold.toFixed(), a.deliveredAt !== null])).toEqual([["0.5", true], ["1", true]]);
    expect(seen.filter((a) => a.budgetName === "held")).toHaveLength(2);
  });

  test("close() while a check runs waits for it: the alert is delivered and marked, and no query runs on the closed pool", async () => {
    await setBudget(db, { name: "closing", scope: { userId: 502 }, period: "day", amount: "1", currency: "USD", thresholds: [0.5] });
    const g = hold();
    await recordModelUsage(db, { userId: 502, modelId: model, tokenInCount: USD(0.7), createdAt: new Date("2025-07-11T10:00:00Z") });
    await g.entered;
    const closed = db.close();
    expect(await within(closed, 300)).toBe("pending");
    gate = null;
    g.release();
    await closed;
    db = await open();
    const rows = await db.prisma.psUsageBudgetAlert.findMany({ where: { budget: { name: "closing" } } });
    expect(rows.map((a) => [a.threshold.toFixed(), a.deliveredAt !== null])).toEqual([["0.5", true]]);
    expect(seen.filter((a) => a.budgetName === "closing")).toHaveLength(1);
  });

  (backend === "postgres" ? test : test.skip)("a record does not wait for the check's queries (held by a lock on the budget row in another connection)", async () => {
    const budget = await setBudget(db, { name: "locked", scope: { userId: 503 }, period: "day", amount: "1", currency: "USD", thresholds: [0.5] });
    const other = new Client({ connectionString: url });
    await other.connect();
    try {
      await other.query("BEGIN");
      await other.query("SELECT id FROM ps_usage_budgets WHERE id = $1 FOR UPDATE", [budget.id]);
      const at = new Date("2025-07-12T10:00:00Z");
      expect(await within(recordModelUsage(db, { userId: 503, modelId: model, tokenInCount: USD(0.8), createdAt: at }), 10_000)).not.toBe("pending");
      // The check is waiting for the lock to raise 50 %.
      expect(await within(budgetChecksSettled(db), 300)).toBe("pending");
      expect(await db.prisma.psUsageBudgetAlert.count({ where: { budgetId: budget.id } })).toBe(0);
      await other.query("COMMIT");
      await budgetChecksSettled(db);
      expect(seen.filter((a) => a.budgetName === "locked").map((a) => [a.threshold, a.spent])).toEqual([["0.5", "0.8"]]);
    } finally {
      await other.end();
    }
  });
});

describe("forUser and budgets", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase();
  });
  afterAll(() => t.dispose());

  test("a view sets, lists, reads and removes only its own user's budgets", async () => {
    const alice = forUser(t.db, 1);
    const bob = forUser(t.db, 2);
    const a = await alice.setBudget({ name: "alice-day", period: "day", amount: 5, currency: "USD" });
    expect(a.scope).toEqual({ userId: 1 });
    await setBudget(t.db, { name: "global", period: "day", amount: 5, currency: "USD" });
    expect(await issuesOf(bob.setBudget({ name: "x", scope: { userId: 1 }, period: "day", amount: 5, currency: "USD" }))).toEqual([
      { field: "scope.userId", reason: "must be 2 or left out (this view is confined to user 2)" },
    ]);
    expect(await issuesOf(bob.setBudget({ name: "alice-day", period: "day", amount: 5, currency: "USD" }))).toEqual([
      { field: "name", reason: "is the name of a budget of another user" },
    ]);
    expect((await alice.listBudgets()).map((b) => b.name)).toEqual(["alice-day"]);
    expect(await bob.listBudgets()).toEqual([]);
    await expect(bob.budgetStatus("alice-day")).rejects.toThrow(UsageValidationError);
    await expect(alice.budgetStatus("global")).rejects.toThrow(UsageValidationError);
    expect((await alice.budgetStatus("alice-day")).spent).toBe("0");
    expect((await alice.budgetStatus({ period: "day" })).budget.name).toBe("alice-day");
    expect(await issuesOf(bob.budgetStatus({ period: "day" }))).toEqual([{ field: "scope", reason: "no budget is set on this scope and period" }]);
    expect(await issuesOf(bob.budgetStatus({ scope: { userId: 1 }, period: "day" }))).toEqual([
      { field: "scope.userId", reason: "must be 2 or left out (this view is confined to user 2)" },
    ]);
    expect(await bob.removeBudget("alice-day")).toBe(false);
    expect(await alice.removeBudget("alice-day")).toBe(true);
    expect((await listBudgets(t.db)).map((b) => b.name)).toEqual(["global"]);
  });
});
