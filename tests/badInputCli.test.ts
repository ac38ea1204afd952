// Bad input through the built `ps-usage record --ndjson` (dist/src/cli.js, as a user runs it):
// a sample of the generated bad inputs (tests/support/badInputs.ts) as NDJSON lines after some
// good lines of the same batch, plus invalid JSON, lines that are not objects and huge lines.
// Each run exits 1 with the bad line's number and the field (or missing row) on stderr, no stack
// trace, and nothing from the batch is written.
import type { Database } from "../src";
import { seededRandom } from "../src/random";
import { badInputCases, goodInput, type BadInputCase, type ExistingIds } from "./support/badInputs";
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { backend } from "./support/testDatabase";

// Each run is a process of its own: about 0.2 s on PostgreSQL, 1 s on PGlite (which opens its files each time).
const GENERATED_RUNS = backend === "postgres" ? 100 : 12;

let cliDb: CliDatabase;
let dbArg: string;
let ids: ExistingIds;

const withDb = <T>(fn: (db: Database) => Promise<T>) => cliDb.withDb(fn);

beforeAll(async () => {
  cliDb = await createCliDatabase("ps-usage-bad-cli-");
  dbArg = cliDb.arg;
  ids = await cliDb.withDb(
    async (db) => ({ modelId: await createModel(db), externalApiId: await createExternalApi(db), agentId: await createAgent(db), connectorId: await createConnector(db) }),
    { migrate: true },
  );
});
afterAll(() => cliDb.drop());

const rowCounts = () => withDb(async (db) => [await db.prisma.psModelUsage.count(), await db.prisma.psExternalApiUsage.count()]);

function expectCleanFailure(r: { code: number | null; stderr: string; stdout: string }, line: number) {
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^ps-usage: line ${line}: `));
  expect(r.stderr).toContain("nothing from this line's batch was written; 0 line(s) before it were recorded");
  expect(r.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  expect(r.stderr).not.toContain("unexpected error");
  expect(r.stdout).toBe("");
}

/** Good lines of the case's kind, as JSON text with createdAt as a string. */
function goodLines(c: BadInputCase, count: number, random: () => number): string[] {
  return Array.from({ length: count }, () => JSON.stringify(goodInput(c.kind, ids, random)));
}

test(`${GENERATED_RUNS} generated bad lines, each after good lines of its batch: line number and field on stderr, exit 1, nothing written`, async () => {
  const before = await rowCounts();
  const random = seededRandom(99);
  // A spread sample: a few that name missing rows, the rest failing validation.
  const sample: BadInputCase[] = [];
  let references = 0;
  for (const c of badInputCases(4242, 100_000, ids)) {
    if (c.ndjson === null) continue;
    const isReference = c.expected.error === "reference";
    if (isReference && references >= Math.ceil(GENERATED_RUNS / 5)) continue;
    references += isReference ? 1 : 0;
    sample.push(c);
    if (sample.length === GENERATED_RUNS) break;
  }
  for (const c of sample) {
    const goodBefore = Math.floor(random() * 4);
    const lines = [...goodLines(c, goodBefore, random), c.ndjson!, ...goodLines(c, 2, random)];
    const r = await runCli(["record", "--db", dbArg, "--ndjson"], { input: lines.join("\n") + "\n" });
    const context = `${c.kind} ${c.description}\n${r.stderr.slice(0, 500)}`;
    expect([context, r.code]).toEqual([context, 1]);
    expectCleanFailure(r, goodBefore + 1);
    if (c.expected.error === "reference") {
      expect(r.stderr).toContain(`No row with id ${c.expected.id} in ${c.expected.table}`);
    } else {
      for (const issue of c.expected.issues) expect([context, r.stderr.includes(`${issue.field}: `)]).toEqual([context, true]);
    }
  }
  expect(await rowCounts()).toEqual(before);
}, 600_000); // 100 CLI processes one after another: their start-up time follows the machine's load

test("invalid JSON, lines that are not objects, and a line of 5 MB each stop the import at their line", async () => {
  const before = await rowCounts();
  const good = JSON.stringify({ userId: 5, modelId: ids.modelId, tokenInCount: 10 });
  const cases: [string, RegExp][] = [
    ['{"userId": 5, "modelId": 1,', /not valid JSON/],
    [`{"userId": 5, "modelId": ${ids.modelId}, "tokenInCount": NaN}`, /not valid JSON/],
    [`{'userId': 5}`, /not valid JSON/],
    [`${good} trailing`, /not valid JSON/],
    ["[1, 2, 3]", /expected a JSON object/],
    ["42", /expected a JSON object/],
    ["null", /expected a JSON object/],
    ['"DROP TABLE ps_model_usage"', /expected a JSON object/],
    [JSON.stringify({ userId: 5, modelId: ids.modelId, note: "x".repeat(5 * 1024 * 1024) }), /line longer than 65536 characters/],
  ];
  for (const [bad, reason] of cases) {
    const r = await runCli(["record", "--db", dbArg, "--ndjson"], { input: [good, good, bad, good].join("\n") + "\n" });
    expectCleanFailure(r, 3);
    expect(r.stderr).toMatch(reason);
  }
  // A 5 MB line with no newline at all, as the only input.
  const endless = await runCli(["record", "--db", dbArg, "--ndjson"], { input: "x".repeat(5 * 1024 * 1024) });
  expectCleanFailure(endless, 1);
  expect(endless.stderr).toMatch(/line longer than 65536 characters/);
  expect(await rowCounts()).toEqual(before);
});

test("bad values in `record` flags: exit 2 naming the flag (1 for a missing row), the reason on stderr, nothing written", async () => {
  const before = await rowCounts();
  const model = String(ids.modelId);
  const cases: [string[], number, string][] = [
    [["--user", "1", "--model", model, "--token-in-count", "1.5"], 2, '--token-in-count must be a whole number, got "1.5"'],
    [["--user", "1", "--model", model, "--token-in-count", "-5"], 2, "--token-in-count: must not be negative, got -5"],
    [["--user", "0", "--model", model], 2, "--user: must be a positive integer, got 0"],
    [["--user", "abc", "--model", model], 2, '--user must be a whole number, got "abc"'],
    [["--user", "1", "--model", "2147483648"], 2, "--model: must be at most 2147483647 (PostgreSQL INTEGER), got 2147483648"],
    [["--user", "1", "--model", "1999999"], 1, "No row with id 1999999 in ps_ai_models"],
    [["--user", "1", "--external-api", String(ids.externalApiId), "--calls", "1; DROP TABLE ps_external_api_usage"], 2, '--calls must be a whole number, got "1; DROP TABLE ps_external_api_usage"'],
    [["--user", "1", "--model", model, "--idempotency-key", ""], 2, "--idempotency-key: must not be empty"],
  ];
  for (const [flags, code, message] of cases) {
    const r = await runCli(["record", "--db", dbArg, ...flags]);
    expect([flags, r.code]).toEqual([flags, code]);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  }
  expect(await rowCounts()).toEqual(before);
});

test("after the bad runs, a good NDJSON import records every line", async () => {
  const before = await rowCounts();
  const lines = [
    JSON.stringify({ userId: 6, modelId: ids.modelId, agentId: ids.agentId, tokenInCount: 2_147_483_647 }),
    JSON.stringify({ userId: 6, externalApiId: ids.externalApiId, callCount: 4, createdAt: "2025-03-01T10:00:00Z" }),
  ];
  const r = await runCli(["record", "--db", dbArg, "--ndjson"], { input: lines.join("\n") + "\n" });
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("Recorded 1 model usage and 1 external API usage events from 2 lines.");
  expect(await rowCounts()).toEqual([before[0] + 1, before[1] + 1]);
});
