// A database that exists but was never migrated: every CLI command that reads or writes usage says
// so in one line and names `ps-usage migrate` (exit 1, no Prisma text, no stack or source frame),
// and `migrate` then makes it usable.
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";

let target: CliDatabase;
beforeAll(async () => {
  target = await createCliDatabase("ps-usage-cli-unmigrated-");
  // The database exists (an embedded directory PGlite has initialised, or an empty PostgreSQL
  // database), with none of the package's tables.
  await target.withDb(async () => undefined, { migrate: false });
});
afterAll(() => target.drop());

test.each([
  ["record", ["record", "--user", "1", "--model", "1", "--token-in-count", "5"]],
  ["report", ["report"]],
  ["record --ndjson", ["record", "--ndjson"]],
])("%s on a never-migrated database says so and names ps-usage migrate", async (_name, args) => {
  const input = args.includes("--ndjson") ? `${JSON.stringify({ userId: 1, modelId: 1, tokenInCount: 5 })}\n` : undefined;
  const r = await runCli([...args, "--db", target.arg], { input });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/not migrated/);
  expect(r.stderr).toContain("ps-usage migrate");
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).not.toMatch(/Invalid `|prisma\.|invocation|^\s+at /m);
  expect(r.stdout).toBe("");
});

test("status says the migrations are pending; migrate makes the database usable", async () => {
  const status = await runCli(["status", "--db", target.arg]);
  expect(status.code).toBe(0);
  expect(status.stdout).toContain("Applied migrations (0)");
  expect((await runCli(["migrate", "--db", target.arg])).code).toBe(0);
  const report = await runCli(["report", "--db", target.arg]);
  expect(report.code).toBe(0);
});
