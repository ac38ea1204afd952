// What --db (and DATABASE_URL, and openDatabase's dataDir) may name, and what happens to a path
// that cannot hold a database: every case ends quickly with a clear error, and nothing is created
// where it should not be.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DatabaseConnectionError, openDatabase } from "../src";
import { spawn } from "node:child_process";
import { CLI, runCli } from "./support/cli";
import { settlesWithin } from "./support/settles";

let scratch: string;
beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-targets-"));
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A fresh empty working directory for one CLI run. */
function workDir(name: string): string {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir);
  return dir;
}

test("--db and DATABASE_URL with another URL scheme: exit 2 naming the accepted forms, nothing created", async () => {
  for (const [args, env, from] of [
    [["status", "--db", "mysql://root@localhost/x"], {}, "--db"],
    [["report", "--db", "http://example.com/db"], {}, "--db"],
    [["migrate", "--db", "sqlite:usage.db"], {}, "--db"],
    [["record", "--user", "1", "--model", "1"], { DATABASE_URL: "mysql://root:hunter2@localhost/x" }, "DATABASE_URL"],
  ] as const) {
    const cwd = workDir(`scheme-${args[0]}-${from}`);
    const r = await runCli(args, { cwd, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${from} "`);
    expect(r.stderr).toContain("use a postgresql:// URL, a directory path (embedded PGlite), or memory://");
    expect(r.stderr).not.toContain("hunter2");
    expect(fs.readdirSync(cwd)).toEqual([]);
  }
});

test("openDatabase refuses a dataDir with a URL scheme, naming dataDir, and creates nothing", async () => {
  const cwd = process.cwd();
  const before = fs.readdirSync(cwd);
  const error = await openDatabase({ dataDir: "mysql://root@localhost/x" }).catch((e) => e);
  expect(error).toBeInstanceOf(DatabaseConnectionError);
  expect(error.message).toContain("dataDir is neither a directory path nor memory://");
  expect(fs.readdirSync(cwd)).toEqual(before);
  const url = await openDatabase({ url: "http://example.com/db" }).catch((e) => e);
  expect(url).toBeInstanceOf(DatabaseConnectionError);
  expect(url.message).toContain("url is not a postgres:// or postgresql:// URL");
});

test("status, report and record on a directory without a database say so, name migrate, and create nothing", async () => {
  const cwd = workDir("no-database");
  fs.mkdirSync(path.join(cwd, "empty"));
  for (const args of [
    ["status", "--db", "missing"],
    ["report", "--db", "empty"],
    ["record", "--db", "missing", "--user", "1", "--model", "1"],
    ["status"],
  ]) {
    const r = await runCli(args, { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no database in this directory; nothing was created");
    expect(r.stderr).toContain("ps-usage migrate");
    expect(fs.readdirSync(cwd).sort()).toEqual(["empty"]);
    expect(fs.readdirSync(path.join(cwd, "empty"))).toEqual([]);
  }
  const error = await openDatabase({ dataDir: path.join(cwd, "missing"), create: false }).catch((e) => e);
  expect(error).toBeInstanceOf(DatabaseConnectionError);
  expect(fs.existsSync(path.join(cwd, "missing"))).toBe(false);
  // migrate creates it; then status opens it.
  expect((await runCli(["migrate", "--db", "missing"], { cwd })).code).toBe(0);
  const status = await runCli(["status", "--db", "missing"], { cwd });
  expect(status.code).toBe(0);
  expect(status.stdout).toContain("Database schema is up to date.");
});

describe("a path that cannot hold a database fails quickly with a DatabaseConnectionError", () => {
  const file = () => {
    const f = path.join(scratch, "a-file");
    fs.writeFileSync(f, "not a directory");
    return f;
  };
  const cases: [string, () => string, RegExp][] = [
    ["a file instead of a directory", file, /not a directory/],
    ["a path under a file", () => path.join(file(), "db"), /a parent is a file, not a directory/],
    ["a name too long", () => path.join(scratch, "x".repeat(300)), /the name is too long/],
  ];
  // Root may write anywhere but /sys and /proc; others cannot write into a mode-555 directory.
  if (process.getuid?.() !== 0) {
    cases.push([
      "an unwritable directory",
      () => {
        const dir = path.join(scratch, "read-only");
        fs.mkdirSync(dir, { recursive: true });
        fs.chmodSync(dir, 0o555);
        return path.join(dir, "db");
      },
      /is not writable: permission denied/,
    ]);
  } else {
    cases.push(["a directory the file system will not let anyone write (/sys)", () => "/sys/ps-usage-x", /permission denied|read-only|refuses/]);
  }

  /** Runs node with `args`; its output, or a failed test (and the process killed) after `ms`: a hang. */
  async function runOrKill(args: string[], ms: number): Promise<{ code: number | null; out: string }> {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
    try {
      const { value } = await settlesWithin(new Promise<number | null>((resolve) => child.once("close", resolve)), ms);
      return { code: value ?? null, out };
    } finally {
      child.kill("SIGKILL");
    }
  }

  // In a process of its own: a synchronous spin would freeze this one, timers and all.
  test("openDatabase({ dataDir: '/proc/x' }) ends with the error (in a process of its own)", async () => {
    const index = path.join(path.dirname(CLI), "index.js");
    const script = `require(${JSON.stringify(index)}).openDatabase({ dataDir: "/proc/ps-usage-x" }).then(() => console.log("opened"), (e) => console.log(e.name + ": " + e.message))`;
    const { out } = await runOrKill(["-e", script], 15_000);
    expect(out).toContain("DatabaseConnectionError: Cannot open database /proc/ps-usage-x: cannot create /proc/ps-usage-x");
  });

  test("--db /proc/x through the CLI: exit 1 with the reason, no spinning", async () => {
    const { code, out } = await runOrKill([CLI, "migrate", "--db", "/proc/ps-usage-x"], 20_000);
    expect(code).toBe(1);
    expect(out).toContain("Cannot open database /proc/ps-usage-x: cannot create /proc/ps-usage-x");
  });

  test.each(cases)("%s", async (_name, dir, reason) => {
    const { error } = await settlesWithin(openDatabase({ dataDir: dir() }), 10_000);
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as Error).message).toMatch(reason);
  });

  test("the checks do not block the event loop: other callbacks run while a bad path is refused", async () => {
    // A host app's timers and I/O go on while the path is checked (the file system calls are async).
    let turns = 0;
    let stop = false;
    const spin = () => {
      turns++;
      if (!stop) setImmediate(spin);
    };
    setImmediate(spin);
    const error = await openDatabase({ dataDir: path.join(file(), "a", "b") }).catch((e) => e);
    stop = true;
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect(turns).toBeGreaterThan(0);
  });
});
