import { costReport, Decimal, readMigrations, type Database } from "../src";
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";

// Each CLI run is a process of its own, so the database must outlive it.
let cliDb: CliDatabase;
let dbArg: string;

beforeAll(async () => {
  cliDb = await createCliDatabase("ps-usage-cli-");
  dbArg = cliDb.arg;
});
afterAll(() => cliDb.drop());

const withDb = <T>(fn: (db: Database) => Promise<T>) => cliDb.withDb(fn);

function expectNoStackTrace(text: string) {
  expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
}

test("--help lists the commands and exits 0", async () => {
  const r = await runCli(["--help"]);
  expect(r.code).toBe(0);
  for (const cmd of ["migrate", "status", "studio", "demo", "report", "record", "main"]) expect(r.stdout).toContain(cmd);
  const report = await runCli(["report", "--help"]);
  expect(report.code).toBe(0);
  for (const flag of ["--group-by", "--bucket", "--from", "--to", "--agent-tree", "--user", "--tz", "--json", "--csv", "--db"]) {
    expect(report.stdout).toContain(flag);
  }
});

test("an unknown command or a bad flag value is a usage error with status 2", async () => {
  const unknown = await runCli(["frobnicate"]);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  const badBucket = await runCli(["report", "--db", dbArg, "--bucket", "fortnight"]);
  expect(badBucket.code).toBe(2);
  expect(badBucket.stderr).toMatch(/fortnight.*(hour, day, week, month|Allowed choices)/s);
  const badDate = await runCli(["report", "--db", dbArg, "--from", "yesterday-ish"]);
  expect(badDate.code).toBe(2);
  expect(badDate.stderr).toContain('--from must be an ISO 8601 date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH:MM]), got "yesterday-ish"');
  const badAt = await runCli(["record", "--db", dbArg, "--user", "1", "--model", "1", "--at", "notadate"]);
  expect(badAt.code).toBe(2);
  expect(badAt.stderr).toContain('--at must be an ISO 8601 date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH:MM]), got "notadate"');
});

test("an unreachable database fails with status 1, names the target without its password, no stack trace", async () => {
  const r = await runCli(["status", "--db", "postgresql://alice:s3cret@127.0.0.1:1/nowhere"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("Cannot open database postgresql://alice:***@127.0.0.1:1/nowhere");
  expect(r.stderr).not.toContain("s3cret");
  expectNoStackTrace(r.stderr);
});

test("migrate applies the migrations once; status lists them", async () => {
  const first = await runCli(["migrate", "--db", dbArg]);
  expect(first.code).toBe(0);
  expect(first.stdout).toContain(`Applied ${readMigrations().length} migration(s)`);
  expect(first.stdout).toContain("20261125083500_init");
  const again = await runCli(["migrate", "--db", dbArg]);
  expect(again.code).toBe(0);
  expect(again.stdout).toContain("No pending migrations");
  const status = await runCli(["status", "--db", dbArg]);
  expect(status.code).toBe(0);
  expect(status.stdout).toContain(`Applied migrations (${readMigrations().length})`);
  expect(status.stdout).toContain("Pending migrations (0): none");
  expect(status.stdout).toContain("Database schema is up to date.");
});

describe("with demo data", () => {
  beforeAll(async () => {
    const r = await runCli(["demo", "--db", dbArg, "--events", "3000", "--days", "30", "--seed", "7"]);
    expect(r.stderr).not.toContain("unexpected");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Recorded \d+ model calls and \d+ external API usage events for 11 agents/);
  });

  test("report --json equals the costReport API on the same database", async () => {
    const r = await runCli(["report", "--db", dbArg, "--json", "--group-by", "model,api"]);
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout);
    const expected = await withDb((db) => costReport(db, { groupBy: ["modelId", "externalApiId"] }));
    expect(printed).toEqual(JSON.parse(JSON.stringify(expected, (_k, v) => (typeof v === "bigint" ? v.toString() : v))));
    expect(printed.totals.map((t: { currency: string }) => t.currency)).toEqual(["EUR", "USD"]);
  });

  test("report --csv rows add up exactly to the totals per currency", async () => {
    // Two processes at once: on an embedded database the second waits for the first (--wait).
    const [csv, json] = await Promise.all([
      runCli(["report", "--db", dbArg, "--wait", "120", "--csv", "--group-by", "agent", "--bucket", "week", "--tz", "Europe/Berlin"]),
      runCli(["report", "--db", dbArg, "--wait", "120", "--json"]),
    ]);
    expect(csv.code).toBe(0);
    const [head, ...lines] = csv.stdout.trim().split("\n");
    const cols = head.split(",");
    expect(cols.slice(0, 3)).toEqual(["bucketStart", "agentId", "currency"]);
    const sums = new Map<string, Decimal>();
    for (const line of lines) {
      const cells = line.split(",");
      const currency = cells[cols.indexOf("currency")];
      sums.set(currency, (sums.get(currency) ?? new Decimal(0)).plus(cells[cols.indexOf("cost")]));
    }
    const totals = JSON.parse(json.stdout).totals as { currency: string; cost: string }[];
    expect(totals.length).toBe(2);
    for (const t of totals) expect(sums.get(t.currency)!.equals(t.cost)).toBe(true);
  });

  test("report as a table names the models and shows a total per currency", async () => {
    const r = await runCli(["report", "--db", dbArg, "--group-by", "model"]);
    expect(r.code).toBe(0);
    for (const name of ["gpt-4.1", "claude-sonnet-4", "mistral-large"]) expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/Total per currency:\n\s+[\d,]+\.\d{2} EUR/);
    const tree = await runCli(["report", "--db", dbArg, "--agent-tree", "1"]);
    expect(tree.code).toBe(0);
    expect(tree.stdout).toContain("Policy research orchestrator (#1)");
    expect(tree.stdout).toContain("└ Solution ranker");
  });

  test("report --agent-tree on an unknown agent fails with status 1 and names it", async () => {
    const r = await runCli(["report", "--db", dbArg, "--agent-tree", "999999"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("999999");
    expect(r.stderr).toContain("ps_agents");
    expectNoStackTrace(r.stderr);
  });
});

describe("record", () => {
  let modelId: number;
  let apiId: number;
  beforeAll(async () => {
    await runCli(["migrate", "--db", dbArg]);
    [modelId, apiId] = await withDb(async (db) => [
      (await db.prisma.psAiModel.create({ data: { userId: 1, name: "cli-model" } })).id,
      (await db.prisma.psExternalApi.create({ data: { userId: 1, type: "cli-api" } })).id,
    ]);
  });
  const count = () => withDb(async (db) => [await db.prisma.psModelUsage.count({ where: { userId: 777 } }), await db.prisma.psExternalApiUsage.count({ where: { userId: 777 } })]);

  test("one model usage event from flags prints the stored row", async () => {
    const r = await runCli(["record", "--db", dbArg, "--user", "777", "--model", String(modelId), "--token-in-count", "1200", "--token-out-reasoning-count", "30", "--at", "2025-03-01T10:00:00Z"]);
    expect(r.code).toBe(0);
    const row = JSON.parse(r.stdout);
    expect(row).toMatchObject({ userId: 777, modelId, tokenInCount: 1200, tokenOutReasoningCount: 30, tokenOutCount: 0, createdAt: "2025-03-01T10:00:00.000Z" });
  });

  test("one external API usage event from flags, idempotent with a key", async () => {
    const args = ["record", "--db", dbArg, "--user", "777", "--external-api", String(apiId), "--calls", "3", "--idempotency-key", "cli-retry-1"];
    const [first, retry] = [await runCli(args), await runCli(args)];
    expect(first.code).toBe(0);
    expect(retry.code).toBe(0);
    expect(JSON.parse(retry.stdout).id).toBe(JSON.parse(first.stdout).id);
    expect((await count())[1]).toBe(1);
  });

  test("a bad flag value names the flag, exits 2 and writes nothing", async () => {
    const before = await count();
    const r = await runCli(["record", "--db", dbArg, "--user", "777", "--model", String(modelId), "--token-in-count", "-5"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--token-in-count");
    expectNoStackTrace(r.stderr);
    const unknownModel = await runCli(["record", "--db", dbArg, "--user", "777", "--model", "424242"]);
    expect(unknownModel.code).toBe(1);
    expect(unknownModel.stderr).toContain("ps_ai_models");
    expect(await count()).toEqual(before);
  });

  test("NDJSON from standard input is recorded in batches", async () => {
    const before = await count();
    const lines = [
      ...Array.from({ length: 25 }, (_, i) => JSON.stringify({ userId: 777, modelId, tokenInCount: i, createdAt: "2025-04-01T00:00:00Z" })),
      "",
      JSON.stringify({ userId: 777, externalApiId: apiId, callCount: 2 }),
      JSON.stringify({ userId: 777, modelId, tokenOutCount: 9 }),
    ];
    const r = await runCli(["record", "--db", dbArg, "--ndjson", "--batch-size", "10"], { input: lines.join("\n") + "\n" });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Recorded 26 model usage and 1 external API usage events from 28 lines.");
    expect(await count()).toEqual([before[0] + 26, before[1] + 1]);
  });

  test("an NDJSON import with --idempotency-key can be run again without counting twice", async () => {
    const before = await count();
    const input = Array.from({ length: 7 }, (_, i) => JSON.stringify({ userId: 777, modelId, tokenInCount: i })).join("\n");
    const args = ["record", "--db", dbArg, "--ndjson", "--batch-size", "3", "--idempotency-key", "cli-import-1"];
    const first = await runCli(args, { input });
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("Recorded 7 model usage and 0 external API usage events from 7 lines.");
    const again = await runCli(args, { input });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("Recorded 0 model usage and 0 external API usage events from 7 lines. Skipped 7 lines already recorded under this key.");
    expect(await count()).toEqual([before[0] + 7, before[1]]);
  });

  test("a bad NDJSON line is named by number and nothing from its batch is written", async () => {
    const before = await count();
    const good = JSON.stringify({ userId: 777, modelId, tokenInCount: 1 });
    // Batches of 3: lines 1-3 are written, line 5 is bad, so lines 4-6 are not.
    const input = [good, good, good, good, JSON.stringify({ userId: 777, modelId, tokenInCount: 1.5 }), good].join("\n");
    const r = await runCli(["record", "--db", dbArg, "--ndjson", "--batch-size", "3"], { input });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("line 5: tokenInCount");
    expect(r.stderr).toContain("3 line(s) before it were recorded");
    expectNoStackTrace(r.stderr);
    expect(await count()).toEqual([before[0] + 3, before[1]]);
    const notJson = await runCli(["record", "--db", dbArg, "--ndjson"], { input: `${good}\n{"userId": 777,\n` });
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toContain("line 2: not valid JSON");
    expect(await count()).toEqual([before[0] + 3, before[1]]);
  });
});

test("studio serves the database to Prisma Studio", async () => {
  const { spawn } = await import("node:child_process");
  const { CLI } = await import("./support/cli");
  // Migrated here too, so that this test does not lean on the migrate test having run first.
  expect((await runCli(["migrate", "--db", dbArg])).code).toBe(0);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(process.execPath, [CLI, "studio", "--db", dbArg, "--port", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    let body = "";
    for (let i = 0; i < 120 && !body; i++) {
      await new Promise((r) => setTimeout(r, 500));
      body = await fetch(`http://127.0.0.1:${port}/bff`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ procedure: "query", query: { sql: "SELECT count(*)::int AS n FROM _prisma_migrations", parameters: [] } }),
      })
        .then((r) => (r.ok ? r.text() : ""))
        .catch(() => "");
    }
    // Studio's answer is [error, rows].
    expect(JSON.parse(body)).toEqual([null, [{ n: readMigrations().length }]]);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("close", r));
  }
});
