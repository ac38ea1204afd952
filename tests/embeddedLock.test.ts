// One process per embedded (PGlite) directory. Two processes that open one directory both used
// to succeed and overwrite each other's pages: acknowledged rows vanished, ids were reused and
// the primary-key index disagreed with the table. Now the directory is locked: a second opener
// fails with a DatabaseConnectionError naming the holder's pid and command line, or waits for it
// (lockWaitMs / --wait), and a lock left by a killed process is taken over.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { DatabaseConnectionError, openDatabase, recordModelUsage, serveEmbeddedDatabase, type Database } from "../src";
import { CLI } from "./support/cli";
import { createModel } from "./support/fixtures";
import { backend } from "./support/testDatabase";

// Embedded-directory behaviour does not depend on the server backend: run it once.
const pgliteTest = backend === "pglite" ? test : test.skip;

const CHILD = path.join(__dirname, "support", "embeddedChild.js");

const tempDirs: string[] = [];
afterAll(() => {
  for (const d of tempDirs) {
    fs.rmSync(d, { recursive: true, force: true });
    fs.rmSync(`${d}.lock`, { recursive: true, force: true });
    fs.rmSync(`${d}.lock.holder.json`, { force: true });
  }
});

/** A migrated embedded directory with one model; returns the directory and the model id. */
async function preparedDir(): Promise<{ dir: string; modelId: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-lock-"));
  tempDirs.push(dir);
  const db = await openDatabase({ dataDir: dir, migrate: true });
  try {
    return { dir, modelId: await createModel(db) };
  } finally {
    await db.close();
  }
}

interface Run {
  readonly child: ChildProcess;
  /** Resolves once the child printed its first line (opened, or the open failed). */
  readonly firstLine: Promise<Record<string, unknown>>;
  /** What it printed so far. */
  readonly output: () => string;
  /** Every JSON line it printed, its exit code and its stderr. */
  readonly done: Promise<{ code: number | null; lines: Record<string, unknown>[]; stdout: string; stderr: string }>;
}

function run(args: readonly string[]): Run {
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, DATABASE_URL: "" } });
  let stdout = "";
  let stderr = "";
  let first: (line: Record<string, unknown>) => void = () => undefined;
  const firstLine = new Promise<Record<string, unknown>>((resolve) => (first = resolve));
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
    const nl = stdout.indexOf("\n");
    if (nl >= 0) {
      try {
        first(JSON.parse(stdout.slice(0, nl)));
      } catch {
        first({});
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  child.stdin!.on("error", () => undefined);
  const done = new Promise<{ code: number | null; lines: Record<string, unknown>[]; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => {
      first({});
      const lines = stdout
        .split("\n")
        .filter((l) => l.startsWith("{") && l.endsWith("}"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stdout, stderr });
    }),
  );
  return { child, firstLine, output: () => stdout, done };
}

/** A library child (tests/support/embeddedChild.js). */
function libraryChild(dir: string, modelId: number, rows: number, tokenBase: number, lockWaitMs: number, hold: number | "stdin" | `block:${number}`): Run {
  return run([CHILD, dir, String(modelId), String(rows), String(tokenBase), String(lockWaitMs), String(hold)]);
}

/** `ps-usage record` of one model usage row, as a user would run it. */
function cliRecord(dir: string, modelId: number, tokenInCount: number, extra: readonly string[] = []): Run {
  return run([CLI, "record", "--db", dir, "--user", "1", "--model", String(modelId), "--token-in-count", String(tokenInCount), ...extra]);
}

interface Acknowledged {
  id: number;
  tokenInCount: number;
}

/** Table, primary-key index and sums, read back after every writer is gone. */
async function readBack(db: Database) {
  return db.driver.withSession(async (s) => {
    const [table] = await s.query<{ n: number; ids: number; sum: number }>(
      "SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, coalesce(sum(token_in_count), 0)::int AS sum FROM ps_model_usage",
    );
    // The same count through the primary-key index only: a table and an index written by two
    // processes disagree.
    await s.exec("SET enable_seqscan = off; SET enable_bitmapscan = off");
    const plan = await s.query<{ "QUERY PLAN": string }>("EXPLAIN SELECT count(id) FROM ps_model_usage WHERE id > 0");
    const [viaIndex] = await s.query<{ n: number }>("SELECT count(id)::int AS n FROM ps_model_usage WHERE id > 0");
    await s.exec("RESET enable_seqscan; RESET enable_bitmapscan");
    const ids = (await s.query<{ id: number; token_in_count: number }>("SELECT id, token_in_count FROM ps_model_usage ORDER BY id")).map((r) => ({
      id: r.id,
      tokenInCount: r.token_in_count,
    }));
    return { ...table, viaIndex: viaIndex.n, plan: plan.map((p) => p["QUERY PLAN"]).join("\n"), rows: ids };
  });
}

/** Opens the directory again (nothing else may hold it), returns its rows' token_in_count in id order, closes. */
async function tokenCountsIn(dir: string): Promise<number[]> {
  const db = await openDatabase({ dataDir: dir });
  try {
    return (await readBack(db)).rows.map((r) => r.tokenInCount);
  } finally {
    await db.close();
  }
}

function expectCleanRefusal(outcome: { code: number | null; lines: Record<string, unknown>[]; stderr: string }, dir: string, holderPids: readonly number[]) {
  const text = outcome.lines.length ? String(outcome.lines[0].message) : outcome.stderr;
  if (outcome.lines.length) expect(outcome.lines[0]).toMatchObject({ error: "DatabaseConnectionError", code: "PS_USAGE_CONNECTION" });
  expect(outcome.code).not.toBe(0);
  expect(text).toContain(fs.realpathSync(dir));
  // The holder is named once it has recorded itself; a refusal that lands between its taking the
  // lock and writing its record (a loaded machine can stall it there) says so instead.
  const named = /process (\d+)/.exec(text);
  if (named) expect(holderPids).toContain(Number(named[1]));
  else expect(text).toContain("has not recorded who it is");
  expect(outcome.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
}

pgliteTest("several processes at once on one directory: each succeeds with its rows kept or fails cleanly; table, index and sums agree", async () => {
  const { dir, modelId } = await preparedDir();
  // Library children that wait for the lock, one that does not, and the CLI with and without
  // --wait, all started at the same moment. Each writes rows whose tokenInCount is unique.
  const runs = [
    { kind: "lib", waits: true, run: libraryChild(dir, modelId, 15, 1_000, 90_000, 300) },
    { kind: "lib", waits: true, run: libraryChild(dir, modelId, 15, 2_000, 90_000, 300) },
    { kind: "lib", waits: true, run: libraryChild(dir, modelId, 15, 3_000, 90_000, 300) },
    { kind: "lib", waits: false, run: libraryChild(dir, modelId, 15, 4_000, 0, 300) },
    { kind: "cli", waits: true, run: cliRecord(dir, modelId, 5_000, ["--wait", "90"]) },
    { kind: "cli", waits: false, run: cliRecord(dir, modelId, 6_000) },
  ];
  const outcomes = await Promise.all(runs.map((r) => r.run.done));
  const pids = runs.map((r) => r.run.child.pid!);
  const acknowledged: Acknowledged[] = [];
  let refused = 0;
  outcomes.forEach((o, i) => {
    const { kind, waits } = runs[i];
    if (kind === "lib") {
      const last = o.lines[o.lines.length - 1] ?? {};
      if (o.code === 0) acknowledged.push(...(last.acknowledged as Acknowledged[]));
      else {
        expectCleanRefusal(o, dir, pids);
        refused++;
      }
    } else if (o.code === 0) {
      const row = JSON.parse(o.stdout) as Acknowledged;
      acknowledged.push({ id: row.id, tokenInCount: row.tokenInCount });
    } else {
      expectCleanRefusal(o, dir, pids);
      refused++;
    }
    if (waits) expect({ i, code: o.code, stderr: o.stderr }).toEqual({ i, code: 0, stderr: "" });
  });
  expect(acknowledged.length).toBe(3 * 15 + 1 + (outcomes[3].code === 0 ? 15 : 0) + (outcomes[5].code === 0 ? 1 : 0));
  const db = await openDatabase({ dataDir: dir });
  try {
    const back = await readBack(db);
    expect(back.plan).toMatch(/Index/);
    const want = [...acknowledged].sort((a, b) => a.id - b.id);
    expect({ n: back.n, ids: back.ids, viaIndex: back.viaIndex, sum: back.sum, rows: back.rows }).toEqual({
      n: want.length,
      ids: want.length,
      viaIndex: want.length,
      sum: want.reduce((s, r) => s + r.tokenInCount, 0),
      rows: want,
    });
  } finally {
    await db.close();
  }
  expect(refused).toBe(outcomes.filter((o) => o.code !== 0).length);
});

pgliteTest("a holder that stops answering for longer than the lock's stale time keeps the directory: a waiting opener gets it only once the holder is gone", async () => {
  const { dir, modelId } = await preparedDir();
  // The holder records 3 rows, then its event loop is blocked for 13 s (past LOCK_STALE_MS, so its
  // lock's mtime is not refreshed: a loaded machine or a long synchronous call), then records 3 more.
  const holder = libraryChild(dir, modelId, 3, 100, 0, "block:13000");
  await new Promise<void>((resolve) => holder.child.stdout!.on("data", () => holder.output().includes('"recorded"') && resolve()));
  let holderGone = false;
  const holderDone = holder.done.then((o) => ((holderGone = true), o));
  const db = await openDatabase({ dataDir: dir, lockWaitMs: 60_000 });
  const openedAfterHolder = holderGone;
  try {
    await recordModelUsage(db, { userId: 1, modelId, tokenInCount: 200 });
    const outcome = await holderDone;
    expect({ openedAfterHolder, code: outcome.code, stderr: outcome.stderr }).toEqual({ openedAfterHolder: true, code: 0, stderr: "" });
    expect((outcome.lines[outcome.lines.length - 1].acknowledged as Acknowledged[]).map((r) => r.tokenInCount)).toEqual([100, 101, 102, 103, 104, 105]);
    expect((await readBack(db)).rows.map((r) => r.tokenInCount)).toEqual([100, 101, 102, 103, 104, 105, 200]);
  } finally {
    await db.close();
  }
}, 90_000);

pgliteTest("a second opener is refused at once, naming the directory and the holder's pid and command line", async () => {
  const { dir, modelId } = await preparedDir();
  const holder = libraryChild(dir, modelId, 1, 100, 0, "stdin");
  try {
    expect(await holder.firstLine).toEqual({ opened: holder.child.pid });
    const error = await openDatabase({ dataDir: dir }).then(
      async (db) => {
        await db.close();
        return new Error("opened a directory another process holds");
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    const message = (error as Error).message;
    expect(message).toContain(fs.realpathSync(dir));
    expect(message).toContain(`process ${holder.child.pid} on ${os.hostname()}`);
    expect(message).toContain("embeddedChild.js");
    // The CLI says the same in one line, and writes nothing.
    const cli = await cliRecord(dir, modelId, 7).done;
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`process ${holder.child.pid}`);
    expect(cli.stderr.trim().split("\n")).toHaveLength(1);
  } finally {
    holder.child.stdin!.end("close\n");
    await holder.done;
  }
  expect(await tokenCountsIn(dir)).toEqual([100]);
});

pgliteTest("--wait and lockWaitMs wait for the holder to close, then open; a wait that runs out is the typed error", async () => {
  const { dir, modelId } = await preparedDir();
  const holder = libraryChild(dir, modelId, 2, 10, 0, "stdin");
  try {
    expect(await holder.firstLine).toEqual({ opened: holder.child.pid });
    // Runs out: the holder keeps it open.
    const error = await openDatabase({ dataDir: dir, lockWaitMs: 700 }).then(
      async (db) => {
        await db.close();
        return new Error("opened a directory another process holds");
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as Error).message).toContain(`process ${holder.child.pid}`);
    const outOfTime = await cliRecord(dir, modelId, 20, ["--wait", "0.5"]).done;
    expect(outOfTime.code).toBe(1);
    expect(outOfTime.stderr).toContain(`process ${holder.child.pid}`);
    // Waits long enough: the CLI and the library both get in once the holder closes.
    const waitingCli = cliRecord(dir, modelId, 30, ["--wait", "120"]);
    const waitingLib = openDatabase({ dataDir: dir, lockWaitMs: 120_000 });
    await new Promise((r) => setTimeout(r, 1_000));
    holder.child.stdin!.end("close\n");
    const db = await waitingLib;
    try {
      await db.prisma.psModelUsage.create({ data: { userId: 1, modelId, tokenInCount: 40 } });
    } finally {
      await db.close();
    }
    const cli = await waitingCli.done;
    expect({ code: cli.code, stderr: cli.stderr }).toEqual({ code: 0, stderr: "" });
  } finally {
    holder.child.stdin!.end("close\n");
    await holder.done;
  }
  expect((await tokenCountsIn(dir)).sort()).toEqual([10, 11, 30, 40]);
});

pgliteTest("a lock held by a killed process is taken over, and what it had committed is kept", async () => {
  const { dir, modelId } = await preparedDir();
  const holder = libraryChild(dir, modelId, 3, 500, 0, "stdin");
  const first = await holder.firstLine;
  expect(first).toEqual({ opened: holder.child.pid });
  // Let it finish its three rows (it says so, then waits on stdin), then kill it without a chance
  // to clean up: the lock directory stays behind. (A fixed sleep here was too short on a loaded
  // machine: the rows were not committed yet when it was killed.)
  while (!holder.output().includes('{"recorded":3}')) await new Promise((r) => setTimeout(r, 50));
  holder.child.kill("SIGKILL");
  await holder.done;
  expect(fs.existsSync(`${fs.realpathSync(dir)}.lock`)).toBe(true);
  // No wait asked for: the recorded holder is dead on this host, so the opener waits for its
  // lock to go stale by itself, then takes it over.
  const db = await openDatabase({ dataDir: dir });
  try {
    const back = await readBack(db);
    expect(back.rows.map((r) => r.tokenInCount)).toEqual([500, 501, 502]);
    expect(back.viaIndex).toBe(3);
    await db.prisma.psModelUsage.create({ data: { userId: 1, modelId, tokenInCount: 1 } });
  } finally {
    await db.close();
  }
  // Released on close: the next opener gets in at once.
  const again = await openDatabase({ dataDir: dir });
  await again.close();
  expect(fs.existsSync(`${fs.realpathSync(dir)}.lock`)).toBe(false);
});

pgliteTest("openers that all take over one stale lock at the same moment: never two win, and the lock stays takeable", async () => {
  // proper-lockfile's stale takeover (rmdir, then mkdir) can let two openers both win when one
  // removes the other's fresh lock (node-proper-lockfile#121); lockDirectory then keeps only the
  // one that wrote the holder file last. Without that check, 2 of 30 rounds here had two winners.
  // Nine openers, each with a module registry of its own, as nine processes have: one process's
  // record of its locks is not another's. (Nine: each registers proper-lockfile's exit handlers.)
  type Lock = typeof import("../src/db/lock");
  const openers: Lock["lockDirectory"][] = [];
  for (let i = 0; i < 9; i++) jest.isolateModules(() => openers.push((jest.requireActual("../src/db/lock") as Lock).lockDirectory));
  const winners: number[] = [];
  for (let round = 0; round < 30; round++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-stale-"));
    tempDirs.push(dir);
    fs.mkdirSync(`${dir}.lock`);
    const longAgo = new Date(Date.now() - 60_000);
    fs.utimesSync(`${dir}.lock`, longAgo, longAgo);
    const attempts = await Promise.allSettled(openers.map((lockDirectory) => lockDirectory(dir, { waitMs: 0, onCompromised: () => undefined })));
    const won = attempts.flatMap((a) => (a.status === "fulfilled" ? [a.value] : []));
    // (Each registry has its own DatabaseConnectionError class: compare by name and code.)
    for (const a of attempts) if (a.status === "rejected") expect(a.reason).toMatchObject({ name: "DatabaseConnectionError", code: "PS_USAGE_CONNECTION" });
    winners.push(won.length);
    for (const lock of won) await lock.release();
    // Whatever happened, the directory can be taken again (a lock left by a loser goes stale).
    const after = await openers[0](dir, { waitMs: 15_000, onCompromised: () => undefined });
    await after.release();
  }
  expect(winners.filter((n) => n > 1)).toEqual([]);
  expect(winners.filter((n) => n === 1).length).toBeGreaterThan(0);
});

pgliteTest("a lock lost while held closes the database: later calls are DatabaseConnectionError, the process goes on", async () => {
  const { dir, modelId } = await preparedDir();
  const db = await openDatabase({ dataDir: dir });
  try {
    await db.prisma.psModelUsage.create({ data: { userId: 1, modelId, tokenInCount: 1 } });
    // Someone removes the lock under the holder (another tool, a clean-up script): from then on
    // another process could open the directory, so this one must stop writing.
    fs.rmSync(`${fs.realpathSync(dir)}.lock`, { recursive: true });
    for (let i = 0; i < 100 && !db.pglite!.closed; i++) await new Promise((r) => setTimeout(r, 200));
    expect(db.pglite!.closed).toBe(true);
    await expect(recordModelUsage(db, { userId: 1, modelId })).rejects.toBeInstanceOf(DatabaseConnectionError);
  } finally {
    await db.close();
  }
  // What it wrote before is there, and the directory opens again.
  expect(await tokenCountsIn(dir)).toEqual([1]);
});

pgliteTest("Studio's socket: several clients with prepared and parameterized queries, transactions and reconnects all get their own answers", async () => {
  const db = await openDatabase({ dataDir: "memory://", migrate: true });
  const modelId = await createModel(db);
  const server = await serveEmbeddedDatabase(db);
  const connect = async () => {
    const c = new Client({ connectionString: server.url });
    await c.connect();
    return c;
  };
  let a = await connect();
  let b = await connect();
  try {
    let rows = 0;
    for (let round = 0; round < 12; round++) {
      // The same statement name with different texts on two connections, and unnamed
      // parameterized statements, sent at the same moment.
      const [ra, rb, rc] = await Promise.all([
        a.query({ name: "usage", text: "SELECT count(*)::int AS n, $1::int AS tag FROM ps_model_usage WHERE user_id = $2", values: [round, 1] }),
        b.query({ name: "usage", text: "SELECT $1::text AS who, count(*)::int AS n FROM ps_model_usage", values: [`b${round}`] }),
        b.query("SELECT $1::int + $2::int AS sum", [round, 1000]),
      ]);
      expect(ra.rows).toEqual([{ n: rows, tag: round }]);
      expect(rb.rows).toEqual([{ who: `b${round}`, n: rows }]);
      expect(rc.rows).toEqual([{ sum: round + 1000 }]);
      // A write in a transaction on one connection while the other reads: the reader waits for
      // it and then sees it, never half of it.
      await a.query("BEGIN");
      await a.query("INSERT INTO ps_model_usage (user_id, model_id, token_in_count) VALUES ($1, $2, $3)", [1, modelId, round]);
      const during = b.query({ name: "usage", text: "SELECT $1::text AS who, count(*)::int AS n FROM ps_model_usage", values: ["during"] });
      await a.query("INSERT INTO ps_model_usage (user_id, model_id, token_in_count) VALUES ($1, $2, $3)", [1, modelId, round]);
      await a.query("COMMIT");
      rows += 2;
      expect((await during).rows).toEqual([{ who: "during", n: rows }]);
      // A page reload: one connection goes away (sometimes mid-transaction) and a new one comes.
      if (round % 3 === 1) {
        await b.query("BEGIN");
        await b.query("INSERT INTO ps_model_usage (user_id, model_id) VALUES (1, $1)", [modelId]);
        await b.end();
        b = await connect();
      }
      if (round % 4 === 2) {
        await a.end();
        a = await connect();
      }
    }
    const [{ n }] = (await db.driver.query<{ n: number }>("SELECT count(*)::int AS n FROM ps_model_usage"));
    expect(n).toBe(rows);
  } finally {
    await Promise.allSettled([a.end(), b.end()]);
    await server.stop();
    await db.close();
  }
});

pgliteTest("a served client's DEALLOCATE ALL does not break single records: their statements are prepared again", async () => {
  const db = await openDatabase({ dataDir: "memory://", migrate: true });
  const modelId = await createModel(db);
  const server = await serveEmbeddedDatabase(db);
  const client = new Client({ connectionString: server.url });
  try {
    await client.connect();
    const first = await recordModelUsage(db, { userId: 3, modelId, tokenInCount: 1 }, { idempotencyKey: "dealloc-1" });
    await recordModelUsage(db, { userId: 3, modelId, tokenInCount: 2 });
    expect(await recordModelUsage(db, { userId: 3, modelId, tokenInCount: 9 }, { idempotencyKey: "dealloc-1" })).toEqual(first);
    // PGlite is one session: the client's DEALLOCATE ALL drops the package's statements too.
    await client.query("DEALLOCATE ALL");
    const keyed = await recordModelUsage(db, { userId: 3, modelId, tokenInCount: 3 }, { idempotencyKey: "dealloc-2" });
    const plain = await recordModelUsage(db, { userId: 3, modelId, tokenInCount: 4 });
    expect([keyed.tokenInCount, plain.tokenInCount]).toEqual([3, 4]);
    await client.query("DEALLOCATE ALL");
    // A replay reads the stored row (the key-reading statement, prepared again as well).
    expect(await recordModelUsage(db, { userId: 3, modelId, tokenInCount: 9 }, { idempotencyKey: "dealloc-1" })).toEqual(first);
    const stored = await db.driver.query<{ n: number; tokens: number }>("SELECT count(*)::int AS n, sum(token_in_count)::int AS tokens FROM ps_model_usage");
    expect(stored).toEqual([{ n: 4, tokens: 10 }]);
  } finally {
    await client.end().catch(() => undefined);
    await server.stop();
    await db.close();
  }
});

pgliteTest("while `ps-usage studio` serves a directory, other CLI commands get the lock error naming the studio process", async () => {
  const { dir, modelId } = await preparedDir();
  const port = 20000 + Math.floor(Math.random() * 20000);
  const studio = run([CLI, "studio", "--db", dir, "--port", String(port)]);
  let out = "";
  studio.child.stdout!.on("data", (d: string) => (out += d));
  try {
    for (let i = 0; i < 240 && !out.includes("Prisma Studio on"); i++) await new Promise((r) => setTimeout(r, 250));
    expect(out).toContain("Prisma Studio on");
    const cli = await cliRecord(dir, modelId, 1).done;
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`process ${studio.child.pid}`);
    expect(cli.stderr).toMatch(/cli\.js studio --db/);
  } finally {
    studio.child.kill("SIGTERM");
    await studio.done;
  }
  // Studio closed the database on SIGTERM and let go of the lock.
  const after = await cliRecord(dir, modelId, 2).done;
  expect({ code: after.code, stderr: after.stderr }).toEqual({ code: 0, stderr: "" });
});
