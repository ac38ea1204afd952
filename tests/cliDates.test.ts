// Dates on the command line and in NDJSON: strict ISO 8601; a date or date-time without an
// offset is a wall time in --tz (report and record; default UTC); NDJSON needs an offset.
import { costReport, recordModelUsage, type Database } from "../src";
import { createCliDatabase, runCli, type CliDatabase } from "./support/cli";
import { createModel } from "./support/fixtures";

let cliDb: CliDatabase;
let modelId: number;
const withDb = <T>(fn: (db: Database) => Promise<T>) => cliDb.withDb(fn);

beforeAll(async () => {
  cliDb = await createCliDatabase("ps-usage-cli-dates-");
  modelId = await cliDb.withDb((db) => createModel(db), { migrate: true });
});
afterAll(() => cliDb.drop());

const events = (report: { totals: { modelEvents: string }[] }) => report.totals.reduce((n, t) => n + Number(t.modelEvents), 0);

test("report --tz Europe/Berlin --from 2026-09-01 --to 2026-10-01 covers September in Berlin, midnight to midnight", async () => {
  // 23:30 on Aug 31, 00:30 and 01:30 on Sep 1, 23:30 on Sep 30 and 00:30 on Oct 1, Berlin time (CEST, UTC+2).
  const at = ["2026-08-31T21:30:00Z", "2026-08-31T22:30:00Z", "2026-08-31T23:30:00Z", "2026-09-30T21:30:00Z", "2026-09-30T22:30:00Z"];
  await withDb(async (db) => {
    for (const createdAt of at) await recordModelUsage(db, { userId: 501, modelId, tokenInCount: 1, createdAt: new Date(createdAt) });
  });
  const r = await runCli(["report", "--db", cliDb.arg, "--json", "--user", "501", "--tz", "Europe/Berlin", "--from", "2026-09-01", "--to", "2026-10-01"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const printed = JSON.parse(r.stdout);
  expect(events(printed)).toBe(3);
  const expected = await withDb((db) =>
    costReport(db, { where: { userId: 501, from: new Date("2026-08-31T22:00:00Z"), to: new Date("2026-09-30T22:00:00Z") }, timeZone: "Europe/Berlin" }),
  );
  expect(printed).toEqual(JSON.parse(JSON.stringify(expected, (_k, v) => (typeof v === "bigint" ? v.toString() : v))));
  // With an offset or Z a date-time is an instant whatever --tz says.
  const utc = await runCli(["report", "--db", cliDb.arg, "--json", "--user", "501", "--tz", "Europe/Berlin", "--from", "2026-09-01T00:00Z", "--to", "2026-10-01T02:00+02:00"]);
  expect(utc.code).toBe(0);
  expect(events(JSON.parse(utc.stdout))).toBe(2);
});

test("record --at without an offset is a wall time in --tz: clocks turned forward move it past the gap, turned back take the earlier", async () => {
  const cases = [
    [["--at", "2026-09-01T10:00"], "2026-09-01T10:00:00.000Z"], // default UTC
    [["--at", "2026-09-01T10:00", "--tz", "Europe/Berlin"], "2026-09-01T08:00:00.000Z"],
    [["--at", "2026-03-29T02:30", "--tz", "Europe/Berlin"], "2026-03-29T01:30:00.000Z"], // does not exist: 03:30 CEST
    [["--at", "2026-10-25T02:30", "--tz", "Europe/Berlin"], "2026-10-25T00:30:00.000Z"], // twice: the first, CEST
    [["--at", "2026-09-06", "--tz", "America/Santiago"], "2026-09-06T04:00:00.000Z"], // the day starts at 01:00
    [["--at", "2026-09-01T10:00:00.250-03:00", "--tz", "Europe/Berlin"], "2026-09-01T13:00:00.250Z"],
  ] as const;
  for (const [flags, expected] of cases) {
    const r = await runCli(["record", "--db", cliDb.arg, "--user", "502", "--model", String(modelId), ...flags]);
    expect({ flags, stderr: r.stderr, code: r.code }).toEqual({ flags, stderr: "", code: 0 });
    expect(JSON.parse(r.stdout).createdAt).toBe(expected);
  }
});

test("impossible or non-ISO dates are refused with exit 2, naming the flag, before the database is opened", async () => {
  const before = await withDb((db) => db.prisma.psModelUsage.count());
  for (const [flag, value, reason] of [
    ["--from", "2026-02-30", "2026-02-30 does not exist"],
    ["--to", "2026-13-01", "2026-13-01 does not exist"],
    ["--to", "11/01/2026", "must be an ISO 8601 date"],
    ["--from", "2026-09-01 10:00", "must be an ISO 8601 date"],
    ["--from", "2026-09-01T24:00", "is not a time of day"],
    ["--to", "2026-9-1", "must be an ISO 8601 date"],
  ]) {
    const r = await runCli(["report", "--db", "/nonexistent/ps-usage-never-opened", flag, value]);
    expect({ value, code: r.code }).toEqual({ value, code: 2 });
    expect(r.stderr).toContain(`${flag} `);
    expect(r.stderr).toContain(reason);
  }
  const at = await runCli(["record", "--db", cliDb.arg, "--user", "503", "--model", String(modelId), "--at", "2026-02-29T10:00Z"]);
  expect(at.code).toBe(2);
  expect(at.stderr).toContain("--at 2026-02-29 does not exist");
  const tz = await runCli(["report", "--db", "/nonexistent/ps-usage-never-opened", "--tz", "Europe/Nowhere", "--from", "2026-09-01"]);
  expect(tz.code).toBe(2);
  expect(tz.stderr).toContain('--tz: "Europe/Nowhere" is not an IANA time zone name');
  expect(await withDb((db) => db.prisma.psModelUsage.count())).toBe(before);
});

test("NDJSON createdAt without an offset is refused with its line number; with Z or an offset it is the instant", async () => {
  const line = (createdAt: string) => JSON.stringify({ userId: 504, modelId, tokenInCount: 1, createdAt });
  for (const createdAt of ["2026-09-01T10:00:00", "2026-09-01"]) {
    const r = await runCli(["record", "--db", cliDb.arg, "--ndjson"], { input: [line("2026-09-01T10:00:00Z"), line(createdAt)].join("\n") });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`line 2: createdAt: "${createdAt}" has no time zone; add Z (UTC) or an offset such as +02:00`);
  }
  const impossible = await runCli(["record", "--db", cliDb.arg, "--ndjson"], { input: line("2026-02-30T10:00:00Z") });
  expect(impossible.code).toBe(1);
  expect(impossible.stderr).toContain("line 1: createdAt: 2026-02-30 does not exist");
  expect(await withDb((db) => db.prisma.psModelUsage.count({ where: { userId: 504 } }))).toBe(0);
  const ok = await runCli(["record", "--db", cliDb.arg, "--ndjson"], { input: [line("2026-09-01T10:00:00Z"), line("2026-09-01T12:00:00+02:00")].join("\n") });
  expect(ok.code).toBe(0);
  const rows = await withDb((db) => db.prisma.psModelUsage.findMany({ where: { userId: 504 }, select: { createdAt: true } }));
  expect(rows.map((r) => r.createdAt.toISOString())).toEqual(["2026-09-01T10:00:00.000Z", "2026-09-01T10:00:00.000Z"]);
});
