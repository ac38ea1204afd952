// ps-usage budgets: set, list, status (table, JSON, CSV), check, remove; mistakes named by flag.
import type { Database } from "../src";
import { recordModelUsage, setModelPrice } from "../src";
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";
import { createAgent, createModel } from "./support/fixtures";

let cliDb: CliDatabase;
let modelId: number;
let agentId: number;
const withDb = <T>(fn: (db: Database) => Promise<T>) => cliDb.withDb(fn);

beforeAll(async () => {
  cliDb = await createCliDatabase("ps-usage-cli-budgets-");
  [modelId, agentId] = await cliDb.withDb(async (db) => {
    const model = await createModel(db);
    const agent = await createAgent(db);
    await setModelPrice(db, model, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, new Date("2026-01-01T00:00:00Z"));
    // 3 USD on 2026-03-10 (Berlin), under agent `agent`.
    await recordModelUsage(db, { userId: 5, modelId: model, agentId: agent, tokenInCount: 3_000_000, createdAt: new Date("2026-03-10T08:00:00Z") });
    return [model, agent];
  }, { migrate: true });
});
afterAll(() => cliDb.drop());

test("set, list, status as table, JSON and CSV, check, remove", async () => {
  const db = ["--db", cliDb.arg];
  const set = await runCli(["budgets", "set", "agent-day", ...db, "--agent", String(agentId), "--period", "day", "--tz", "Europe/Berlin", "--amount", "4", "--currency", "usd", "--thresholds", "0.5,0.8,1", "--hard-limit"]);
  expect(set).toMatchObject({ code: 0, stderr: "" });
  expect(set.stdout).toBe(`Budget "agent-day" (id 1): 4 USD per day (Europe/Berlin) over agent ${agentId} and sub-agents.\n`);
  const list = await runCli(["budgets", "list", ...db, "--json"]);
  expect(JSON.parse(list.stdout)).toMatchObject([{ name: "agent-day", amount: "4", currency: "USD", thresholds: ["0.5", "0.8", "1"], hardLimit: true }]);
  const at = ["--at", "2026-03-10T12:00", "--tz", "Europe/Berlin"];
  const json = await runCli(["budgets", "status", "agent-day", ...db, ...at, "--json"]);
  expect(json.code).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject([
    { spent: "3", remaining: "1", fractionUsed: "0.75", exceeded: false, periodStart: "2026-03-09T23:00:00.000Z", periodEnd: "2026-03-10T23:00:00.000Z", unpricedEvents: "0" },
  ]);
  const csv = await runCli(["budgets", "status", ...db, ...at, "--csv"]);
  expect(csv.stdout.split("\n")[1]).toBe(`agent-day,agent ${agentId} and sub-agents,2026-03-09T23:00:00.000Z,2026-03-10T23:00:00.000Z,3,4,1,0.75,USD,0.5,0,`);
  const table = await runCli(["budgets", "status", ...db, ...at]);
  expect(table.stdout).toContain("75.0 %");
  // The status above raised 50 %; check finds nothing new.
  expect((await runCli(["budgets", "check", ...db])).stdout).toBe("No threshold newly crossed.\n");
  expect(await runCli(["budgets", "remove", "agent-day", ...db])).toMatchObject({ code: 0, stdout: 'Removed budget "agent-day".\n' });
  expect(await runCli(["budgets", "remove", "agent-day", ...db])).toMatchObject({ code: 2, stderr: 'ps-usage: budgets remove: no budget is named "agent-day".\n' });
});

test("mistakes are usage errors (exit 2) naming the flags; nothing is written", async () => {
  const db = ["--db", cliDb.arg];
  const bad = await runCli(["budgets", "set", "x", ...db, "--period", "day", "--amount", "-1", "--currency", "US$", "--thresholds", "0.5,11", "--model", String(modelId), "--agent", String(agentId)]);
  expect(bad.code).toBe(2);
  for (const flag of ["--amount", "--currency", "--thresholds[1]", "--model"]) expect(bad.stderr).toContain(`${flag}:`);
  const neither = await runCli(["budgets", "set", "x", ...db, "--amount", "1", "--currency", "USD"]);
  expect(neither).toMatchObject({ code: 2, stderr: "ps-usage: budgets set: give --period day|week|month, or --from and --to (not both).\n" });
  const zone = await runCli(["budgets", "set", "x", ...db, "--period", "day", "--amount", "1", "--currency", "USD", "--tz", "Mars/Base"]);
  expect(zone.code).toBe(2);
  expect(await withDb((d) => d.prisma.psUsageBudget.count())).toBe(0);
});

test("record --enforce-budgets refuses an event, and with --ndjson a batch, past a hard limit (exit 1, nothing of it written)", async () => {
  const db = ["--db", cliDb.arg];
  const set = await runCli(["budgets", "set", "user-cap", ...db, "--user", "7", "--period", "month", "--amount", "2", "--currency", "USD", "--hard-limit"]);
  expect(set.code).toBe(0);
  const count = () => withDb((d) => d.prisma.psModelUsage.count({ where: { userId: 7 } }));
  const at = ["--at", "2026-03-10T12:00:00Z"];
  const event = ["record", ...db, "--user", "7", "--model", String(modelId), ...at];
  expect(await runCli([...event, "--token-in-count", "1500000", "--enforce-budgets"])).toMatchObject({ code: 0 });
  const refused = await runCli([...event, "--token-in-count", "600000", "--enforce-budgets"]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('Refused by budget "user-cap"');
  expect(await count()).toBe(1);
  const line = (tokens: number) => JSON.stringify({ userId: 7, modelId, tokenInCount: tokens, createdAt: "2026-03-10T12:00:00Z" });
  const input = `${line(300_000)}\n${line(300_000)}\n`;
  const batch = await runCli(["record", ...db, "--ndjson", "--enforce-budgets"], { input });
  expect(batch.code).toBe(1);
  expect(batch.stderr).toContain("over the limit of 2");
  expect(await count()).toBe(1);
  // Without the flag the same lines are recorded.
  expect(await runCli(["record", ...db, "--ndjson"], { input })).toMatchObject({ code: 0 });
  expect(await count()).toBe(3);
});

// Each CLI run opens the database in a process of its own (seconds on PGlite): few runs, a long timeout.
test("status by scope and period (the flags of set): table, JSON and CSV; mistakes named by flag", async () => {
  const db = ["--db", cliDb.arg];
  const at = ["--at", "2026-03-10T12:00", "--tz", "Europe/Berlin"];
  const agentDay = ["--agent", String(agentId), "--period", "day"];
  expect(await runCli(["budgets", "set", "by-scope", ...db, ...agentDay, "--tz", "Europe/Berlin", "--amount", "6", "--currency", "USD"])).toMatchObject({ code: 0 });

  const json = await runCli(["budgets", "status", ...db, ...agentDay, ...at, "--json"]);
  expect(json).toMatchObject({ code: 0, stderr: "" });
  expect(JSON.parse(json.stdout)).toMatchObject([
    { budget: { name: "by-scope" }, spent: "3", remaining: "3", fractionUsed: "0.5", periodStart: "2026-03-09T23:00:00.000Z", periodEnd: "2026-03-10T23:00:00.000Z" },
  ]);
  // Without --tz any zone matches (--at is then UTC); --currency narrows, in any case.
  const csv = await runCli(["budgets", "status", ...db, ...agentDay, "--at", "2026-03-10T12:00Z", "--currency", "usd", "--csv"]);
  expect(csv.stdout.split("\n").slice(1)).toEqual([`by-scope,agent ${agentId} and sub-agents,2026-03-09T23:00:00.000Z,2026-03-10T23:00:00.000Z,3,6,3,0.5,USD,,0,`, ""]);
  const table = await runCli(["budgets", "status", ...db, ...agentDay, ...at]);
  expect(table.code).toBe(0);
  expect(table.stdout).toMatch(/by-scope.*50\.0 %/);

  const usage = async (args: string[]) => {
    const r = await runCli(["budgets", "status", ...db, ...args]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    return r.stderr;
  };
  // Refused before the database is opened.
  expect(await usage(["--agent", String(agentId)])).toBe("ps-usage: budgets status: give --period day|week|month, or --from and --to (not both).\n");
  expect(await usage(["by-scope", ...agentDay])).toBe("ps-usage: budgets status: give a budget's name, or its scope and period flags (not both).\n");
  // Refused by the API, named by flag.
  expect(await usage([...agentDay, "--tz", "Asia/Tokyo"])).toBe("ps-usage: scope: no budget is set on this scope and period\n");
  const bad = await usage(["--agent", String(agentId), "--model", String(modelId), "--from", "2026-04-01", "--to", "2026-03-01", "--currency", "US$"]);
  for (const flag of ["--model:", "--to: must be after --from", "--currency:"]) expect(bad).toContain(flag);
  // Two budgets on one scope and period: the flags that tell them apart are named.
  expect(await runCli(["budgets", "set", "by-scope-eur", ...db, ...agentDay, "--amount", "5", "--currency", "EUR"])).toMatchObject({ code: 0 });
  expect(await usage(agentDay)).toContain('2 budgets are set on this scope and period ("by-scope", "by-scope-eur"): give --tz or --currency, or a name');
}, 300_000);
