// What the CLI says: flags by the names the user typed, usage mistakes as exit 2 before anything
// is opened, a replayed idempotency key said out loud, --version, and plurals.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Database } from "../src";
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";
import { createExternalApi, createModel } from "./support/fixtures";

let cliDb: CliDatabase;
let modelId: number;
let apiId: number;
let scratch: string;
const withDb = <T>(fn: (db: Database) => Promise<T>) => cliDb.withDb(fn);
const count = (userId: number) => withDb(async (db) => (await db.prisma.psModelUsage.count({ where: { userId } })) + (await db.prisma.psExternalApiUsage.count({ where: { userId } })));

beforeAll(async () => {
  cliDb = await createCliDatabase("ps-usage-cli-messages-");
  [modelId, apiId] = await cliDb.withDb(async (db) => [await createModel(db), await createExternalApi(db)], { migrate: true });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-cli-messages-cwd-"));
});
afterAll(async () => {
  await cliDb.drop();
  fs.rmSync(scratch, { recursive: true, force: true });
});

test("--version prints the package's version", async () => {
  const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8"));
  for (const flag of ["--version", "-V"]) {
    const r = await runCli([flag]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
  }
});

test("a value that is not a whole number is a usage error (exit 2) naming the flag", async () => {
  for (const [flag, value] of [["--token-in-count", "1e3"], ["--token-in-count", "12.0"], ["--user", "abc"], ["--model", "0x10"], ["--calls", "two"]]) {
    const args = flag === "--calls" ? ["--external-api", String(apiId)] : ["--model", String(modelId)];
    const r = await runCli(["record", "--db", cliDb.arg, "--user", "601", ...args, flag, value]);
    expect({ flag, value, code: r.code }).toEqual({ flag, value, code: 2 });
    expect(r.stderr).toContain(`${flag} must be a whole number, got "${value}"`);
  }
  expect(await count(601)).toBe(0);
});

test("the API's validation errors name the flags the user typed, exit 2", async () => {
  const negative = await runCli(["record", "--db", cliDb.arg, "--user", "602", "--model", String(modelId), "--token-in-count", "-5"]);
  expect(negative.code).toBe(2);
  expect(negative.stderr).toMatch(/^ps-usage: --token-in-count: /);
  expect(negative.stderr).not.toContain("tokenInCount");
  const calls = await runCli(["record", "--db", cliDb.arg, "--user", "602", "--external-api", String(apiId), "--calls", "-1"]);
  expect(calls.code).toBe(2);
  expect(calls.stderr).toMatch(/^ps-usage: --calls: /);
  expect(calls.stderr).not.toContain("callCount");
  const range = await runCli(["report", "--db", cliDb.arg, "--from", "2026-10-01", "--to", "2026-09-01"]);
  expect(range.code).toBe(2);
  expect(range.stderr).toMatch(/^ps-usage: --to: must be later than/);
  expect(range.stderr).not.toContain("where.");
  expect(await count(602)).toBe(0);
});

test("record without usage flags, or --ndjson with single-event flags, complains before opening the database", async () => {
  const none = await runCli(["record", "--db", "never-created"], { cwd: scratch });
  expect(none.code).toBe(2);
  expect(none.stderr).toContain("record: give --user and --model (or --external-api and --calls), or --ndjson");
  const ndjsonUser = await runCli(["record", "--db", "never-created", "--ndjson", "--user", "3"], { cwd: scratch, input: JSON.stringify({ userId: 9, modelId }) });
  expect(ndjsonUser.code).toBe(2);
  expect(ndjsonUser.stderr).toContain("--user cannot be combined with --ndjson");
  expect(fs.readdirSync(scratch)).toEqual([]);
  const onDb = await runCli(["record", "--db", cliDb.arg, "--ndjson", "--user", "3"], { input: JSON.stringify({ userId: 603, modelId }) });
  expect(onDb.code).toBe(2);
  expect(await count(603)).toBe(0);
});

test("a replayed idempotency key says that nothing new was recorded, exit 0", async () => {
  const args = ["record", "--db", cliDb.arg, "--user", "604", "--model", String(modelId), "--idempotency-key", "cli-msg-once"];
  const first = await runCli(args);
  expect(first.code).toBe(0);
  expect(first.stderr).toBe("");
  const again = await runCli(args);
  expect(again.code).toBe(0);
  expect(again.stderr).toContain('Nothing new recorded: key "cli-msg-once" was already used');
  expect(JSON.parse(again.stdout).id).toBe(JSON.parse(first.stdout).id);
  const ndjson = ["record", "--db", cliDb.arg, "--ndjson", "--idempotency-key", "cli-msg-import"];
  const input = JSON.stringify({ userId: 604, modelId });
  expect((await runCli(ndjson, { input })).stdout).toBe("Recorded 1 model usage and 0 external API usage events from 1 line.\n");
  const replay = await runCli(ndjson, { input });
  expect(replay.code).toBe(0);
  expect(replay.stdout).toBe(
    'Nothing new recorded: key "cli-msg-import" was already used for all of it. Recorded 0 model usage and 0 external API usage events from 1 line. Skipped 1 line already recorded under this key.\n',
  );
  expect(await count(604)).toBe(2);
});
