// Read replicas: finds, sums and cost reports read from PostgreSQL streaming replicas given as
// `replicaUrls` (or `--replica`), writes stay on the primary. The test makes its own pair of
// servers: a private primary (initdb, on a free port) and a hot standby of it (pg_basebackup -R,
// on another), so it changes nothing on the shared server, whose pg_hba.conf may not allow
// replication. With the standby's replay paused, a write on the primary is visible through
// `db.primary` and not through `db`: that is how a read is seen to come from the standby.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import {
  DatabaseConnectionError,
  DatabaseTimeoutError,
  UsageValidationError,
  agentTreeCostReport,
  costReport,
  findExternalApiUsage,
  findModelUsage,
  forUser,
  openDatabase,
  recordExternalApiUsage,
  recordModelUsage,
  recordModelUsageBatch,
  setModelPrice,
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  type Database,
} from "../src";
import { runCli } from "./support/cli";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { freePort } from "./support/ports";
import { standbyPrerequisiteProblem, startPrivatePostgres, startPrivateStandby, type PrivatePostgres } from "./support/privatePostgres";
import { settlesWithin } from "./support/settles";
import { ADMIN_URL, SCRATCH_DATABASE_DEFAULTS } from "./support/testDatabase";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A URL of a port nothing listens on (free a moment ago): a replica that is down. */
async function downUrl(): Promise<string> {
  return `postgresql://postgres@127.0.0.1:${await freePort()}/ps_usage_replicas`;
}

describe("replicaUrls where there can be no replica", () => {
  test("an embedded database refuses replicaUrls (UsageValidationError on replicaUrls) and creates nothing", async () => {
    const dir = path.join(os.tmpdir(), `ps-usage-no-replicas-${process.pid}`);
    for (const dataDir of [dir, "memory://"]) {
      const error = await openDatabase({ dataDir, replicaUrls: [ADMIN_URL] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UsageValidationError);
      expect((error as UsageValidationError).issues).toEqual([{ field: "replicaUrls", reason: expect.stringContaining("embedded PGlite database has no replicas") }]);
    }
    expect(fs.existsSync(dir)).toBe(false);
  });

  test("each bad entry is named by its position, passwords hidden, before any connection is tried", async () => {
    // Nothing listens on port 1: had the list passed, this would be a DatabaseConnectionError.
    const url = "postgresql://postgres@127.0.0.1:1/none";
    const error = await openDatabase({ url, replicaUrls: ["mysql://root:s3cret@db/x", "postgresql://u:pw0rd@[oops/x", 7 as never, ADMIN_URL] }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UsageValidationError);
    expect((error as UsageValidationError).issues.map((i) => i.field)).toEqual(["replicaUrls[0]", "replicaUrls[1]", "replicaUrls[2]"]);
    expect((error as Error).message).not.toMatch(/s3cret|pw0rd/);
    const notAList = await openDatabase({ url, replicaUrls: ADMIN_URL as never }).catch((e: unknown) => e);
    expect((notAList as UsageValidationError).issues).toEqual([{ field: "replicaUrls", reason: "must be an array of postgresql:// URLs, got string" }]);
  });

  test("PS_USAGE_REPLICA_URLS goes with DATABASE_URL: checked the same way, ignored for an explicit url", async () => {
    const bad = await openDatabase({ env: { DATABASE_URL: "postgresql://postgres@127.0.0.1:1/none", PS_USAGE_REPLICA_URLS: " , sqlite:usage.db" } }).catch(
      (e: unknown) => e,
    );
    expect((bad as UsageValidationError).issues).toEqual([{ field: "PS_USAGE_REPLICA_URLS[0]", reason: '"sqlite:usage.db" is not a postgres:// or postgresql:// URL' }]);
    // No DATABASE_URL: the default embedded directory, which has no replicas (and is not created).
    const defaultDir = path.resolve(".ps-usage");
    const existed = fs.existsSync(defaultDir);
    const embedded = await openDatabase({ env: { PS_USAGE_REPLICA_URLS: ADMIN_URL } }).catch((e: unknown) => e);
    expect((embedded as UsageValidationError).issues.map((i) => i.field)).toEqual(["PS_USAGE_REPLICA_URLS"]);
    expect(fs.existsSync(defaultDir)).toBe(existed);
    const db = await openDatabase({ url: ADMIN_URL, env: { PS_USAGE_REPLICA_URLS: "not a url" } });
    // No replicas: reads run on the primary, which db.primary is too.
    expect([db.replicas, db.replicaSet]).toEqual([[], null]);
    expect(db.primary).toBe(db);
    await db.close();
  });

  test("a replica that accepts connections and never answers: DatabaseTimeoutError (connect) naming it, after connectTimeoutMs", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `postgresql://postgres@127.0.0.1:${(silent.address() as net.AddressInfo).port}/usage`;
    const db = await openDatabase({ url: ADMIN_URL, replicaUrls: [url], connectTimeoutMs: 300 });
    try {
      const outcome = await settlesWithin(sumModelUsage(db), 5_000);
      expect(outcome.error).toBeInstanceOf(DatabaseTimeoutError);
      expect(outcome.error).toMatchObject({ target: url, phase: "connect" });
      expect((outcome.error as Error).message).toContain("no replica gave a connection");
      expect(outcome.ms).toBeGreaterThanOrEqual(250);
    } finally {
      await db.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test("CLI: --replica with an embedded database, or not a postgresql:// URL, is a usage error (exit 2)", async () => {
    const [embedded, notPostgres, fromEnv] = await Promise.all([
      runCli(["report", "--db", "memory://", "--replica", ADMIN_URL]),
      runCli(["report", "--db", ADMIN_URL, "--replica", "mysql://root:s3cret@db/x"]),
      runCli(["report"], { env: { DATABASE_URL: ADMIN_URL, PS_USAGE_REPLICA_URLS: "nope" } }),
    ]);
    expect(embedded.code).toBe(2);
    expect(embedded.stderr).toContain("--replica: an embedded PGlite database (memory://) has no replicas");
    expect(notPostgres.code).toBe(2);
    expect(notPostgres.stderr).toContain('--replica: "mysql://root:***@db/x" is not a postgresql:// URL.');
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain('PS_USAGE_REPLICA_URLS: "nope" is not a postgresql:// URL.');
  });
});

const problem = standbyPrerequisiteProblem();
if (problem) console.warn(`readReplicas.pg.test.ts: the streaming standby tests are skipped: ${problem}`);
const withStandby = problem ? describe.skip : describe;

withStandby("a hot standby of a private primary", () => {
  const DATABASE = "ps_usage_replicas";
  let primary: PrivatePostgres;
  let standby: PrivatePostgres;
  let primaryUrl: string;
  let standbyUrl: string;
  let primaryAdmin: Client;
  let db: Database;
  const others: Database[] = [];
  let modelId: number;
  let apiId: number;
  let rootAgent: number;
  let childAgent: number;

  const inDatabase = (server: PrivatePostgres) => server.url.replace(/\/postgres$/, `/${DATABASE}`);

  async function onStandby<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const c = new Client({ connectionString: standbyUrl });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  /** Waits until the standby has replayed everything the primary has written so far. */
  async function caughtUp(): Promise<number> {
    const started = Date.now();
    const { rows } = await primaryAdmin.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn");
    await onStandby(async (c) => {
      for (;;) {
        const r = await c.query<{ done: boolean }>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done", [rows[0].lsn]);
        if (r.rows[0].done) return;
        if (Date.now() - started > 20_000) throw new Error(`the standby did not replay up to ${rows[0].lsn} in 20 s`);
        await sleep(20);
      }
    });
    return Date.now() - started;
  }

  /** Runs `fn` with the standby's replay paused: what the primary writes meanwhile is not on the standby. */
  async function withReplayPaused<T>(fn: () => Promise<T>): Promise<T> {
    await onStandby(async (c) => {
      await c.query("SELECT pg_wal_replay_pause()");
      while ((await c.query<{ state: string }>("SELECT pg_get_wal_replay_pause_state() AS state")).rows[0].state !== "paused") await sleep(10);
    });
    try {
      return await fn();
    } finally {
      await onStandby((c) => c.query("SELECT pg_wal_replay_resume()"));
    }
  }

  beforeAll(async () => {
    const started = Date.now();
    primary = await startPrivatePostgres();
    primaryAdmin = new Client({ connectionString: primary.url });
    await primaryAdmin.connect();
    await primaryAdmin.query(`CREATE DATABASE ${DATABASE}`);
    // Defaults the package's pinned sessions must override, on the standby too (they replicate).
    for (const [setting, value] of Object.entries(SCRATCH_DATABASE_DEFAULTS)) await primaryAdmin.query(`ALTER DATABASE ${DATABASE} SET ${setting} TO '${value}'`);
    const primaryReady = Date.now();
    standby = await startPrivateStandby(primary);
    const standbyReady = Date.now();
    await primaryAdmin.end();
    primaryAdmin = new Client({ connectionString: inDatabase(primary) });
    await primaryAdmin.connect();
    primaryUrl = inDatabase(primary);
    standbyUrl = inDatabase(standby);
    db = await openDatabase({ url: primaryUrl, replicaUrls: [standbyUrl], migrate: true });
    modelId = await createModel(db, "gpt-replica");
    apiId = await createExternalApi(db, "search");
    rootAgent = await createAgent(db);
    childAgent = await createAgent(db, rootAgent);
    await setModelPrice(db, modelId, { currency: "USD", costInTokensPerMillion: "2.5", costOutTokensPerMillion: "10" }, new Date("2026-01-01T00:00:00Z"));
    await recordModelUsageBatch(db, [
      { userId: 1, modelId, agentId: rootAgent, tokenInCount: 1000, tokenOutCount: 100, createdAt: new Date("2026-03-01T10:00:00Z") },
      { userId: 1, modelId, agentId: childAgent, tokenInCount: 2000, tokenOutCount: 200, createdAt: new Date("2026-03-02T23:30:00Z") },
      { userId: 2, modelId, agentId: childAgent, tokenInCount: 3000, tokenOutCount: 300, createdAt: new Date("2026-03-03T12:00:00Z") },
    ]);
    await recordExternalApiUsage(db, { userId: 1, externalApiId: apiId, agentId: rootAgent, callCount: 4, createdAt: new Date("2026-03-01T11:00:00Z") });
    const replayMs = await caughtUp();
    console.log(
      `readReplicas: primary (initdb + start) ${primaryReady - started} ms, standby (pg_basebackup + start) ${standbyReady - primaryReady} ms, ` +
        `migrate + seed + replay ${Date.now() - standbyReady} ms (replay wait ${replayMs} ms)`,
    );
  });

  afterAll(async () => {
    await Promise.all([db, ...others].map((d) => d?.close().catch(() => undefined)));
    await primaryAdmin?.end().catch(() => undefined);
    await standby?.remove();
    await primary?.remove();
  });

  test("writes go to the primary: the standby refuses a write, the Database records while the standby's replay is paused", async () => {
    await expect(onStandby((c) => c.query("INSERT INTO ps_model_usage DEFAULT VALUES"))).rejects.toThrow(/read-only transaction/);
    const [before] = await sumModelUsage(db.primary, { where: { userId: 5 } });
    await withReplayPaused(async () => {
      const one = await recordModelUsage(db, { userId: 5, modelId, tokenInCount: 1 }, { idempotencyKey: "replica-key" });
      // The replay of a key reads the row it recorded on the primary (the standby has not got it).
      const again = await recordModelUsage(db, { userId: 5, modelId, tokenInCount: 1 }, { idempotencyKey: "replica-key" });
      expect(again.id).toBe(one.id);
      await recordModelUsageBatch(db, [{ userId: 5, modelId, tokenInCount: 2 }, { userId: 5, modelId, agentId: rootAgent, tokenInCount: 3 }]);
      await forUser(db, 5).recordModelUsage({ modelId, tokenInCount: 4 });
      const [during] = await sumModelUsage(db.primary, { where: { userId: 5 } });
      expect([during.events - before.events, during.tokenInCount - before.tokenInCount]).toEqual([4n, 10n]);
    });
    await caughtUp();
    const [after] = await sumModelUsage(db, { where: { userId: 5 } });
    expect([after.events - before.events, after.tokenInCount - before.tokenInCount]).toEqual([4n, 10n]);
  });

  test("finds, sums and cost reports read the standby (stale while its replay is paused), db.primary the primary", async () => {
    const user = 3;
    const at = new Date("2026-03-04T08:00:00Z");
    await withReplayPaused(async () => {
      const row = await recordModelUsage(db, { userId: user, modelId, agentId: childAgent, tokenInCount: 7000, createdAt: at });
      const [replicaSum] = await sumModelUsage(db, { where: { userId: user } });
      const [primarySum] = await sumModelUsage(db.primary, { where: { userId: user } });
      expect([replicaSum.events, primarySum.events, primarySum.tokenInCount]).toEqual([0n, 1n, 7000n]);
      expect((await findModelUsage(db, { userId: user })).items).toEqual([]);
      expect((await findModelUsage(db.primary, { userId: user })).items.map((i) => i.id)).toEqual([row.id]);
      expect((await costReport(db, { where: { userId: user } })).totals).toEqual([]);
      expect((await costReport(db.primary, { where: { userId: user } })).totals).toMatchObject([{ currency: "USD", cost: "0.0175" }]);
      const tree = await sumAgentTreeUsage(db, rootAgent, { where: { userId: user } });
      const primaryTree = await sumAgentTreeUsage(db.primary, rootAgent, { where: { userId: user } });
      expect([tree.total.modelUsage.events, primaryTree.total.modelUsage.events]).toEqual([0n, 1n]);
      const costTree = await agentTreeCostReport(db, rootAgent, { where: { userId: user } });
      expect(costTree.totals).toEqual([]);
      // forUser views route the same way.
      const [scoped] = await forUser(db, user).sumModelUsage();
      const [scopedPrimary] = await forUser(db.primary, user).sumModelUsage();
      expect([scoped.events, scopedPrimary.events]).toEqual([0n, 1n]);
      expect((await forUser(db, user).findModelUsage()).items).toEqual([]);
    });
    await caughtUp();
    const [caught] = await sumModelUsage(db, { where: { userId: user } });
    expect([caught.events, caught.tokenInCount]).toEqual([1n, 7000n]);
  });

  test("a replica's sessions are pinned like the primary's (UTC, ISO dates) whatever its database defaults", async () => {
    const [replica] = db.replicaSet!.replicas;
    expect(replica.target).toBe(standbyUrl);
    const [session] = await replica.prisma.$queryRaw<{ zone: string; style: string; standby: boolean }[]>`
      SELECT current_setting('TimeZone') AS zone, current_setting('DateStyle') AS style, pg_is_in_recovery() AS standby`;
    expect(session).toEqual({ zone: "UTC", style: "ISO, MDY", standby: true });
    // The database's own default, replicated from the primary, is another zone.
    const defaults = await onStandby((c) => c.query<{ zone: string }>("SELECT current_setting('TimeZone') AS zone"));
    expect(defaults.rows[0].zone).toBe(SCRATCH_DATABASE_DEFAULTS.timezone);
  });

  test("once caught up, every routed read equals the primary's", async () => {
    await caughtUp();
    const reads: [string, (on: Database) => Promise<unknown>][] = [
      ["sumModelUsage", (on) => sumModelUsage(on, { groupBy: ["userId", "agentId"], bucket: "day", timeZone: "Europe/Berlin" })],
      ["sumModelUsage filled", (on) => sumModelUsage(on, { bucket: "day", timeZone: "America/New_York", fillEmptyBuckets: true, where: { from: new Date("2026-03-01T00:00:00Z") } })],
      ["sumExternalApiUsage", (on) => sumExternalApiUsage(on, { groupBy: ["externalApiId"] })],
      ["sumAgentTreeUsage", (on) => sumAgentTreeUsage(on, rootAgent)],
      ["findModelUsage", (on) => findModelUsage(on, {}, { limit: 3, include: { model: true, agent: true } })],
      ["findExternalApiUsage", (on) => findExternalApiUsage(on, {}, { include: { externalApi: true } })],
      ["costReport", (on) => costReport(on, { groupBy: ["modelId", "userId"], bucket: "month", timeZone: "Europe/Berlin" })],
      ["agentTreeCostReport", (on) => agentTreeCostReport(on, rootAgent, { groupBy: "modelId" })],
    ];
    for (const [name, read] of reads) {
      const [fromReplica, fromPrimary] = [await read(db), await read(db.primary)];
      expect([name, fromReplica]).toEqual([name, fromPrimary]);
    }
    // The next page of a find: its cursor works on whichever side reads it.
    const first = await findModelUsage(db, {}, { limit: 2 });
    const next = await findModelUsage(db, {}, { limit: 2, cursor: first.nextCursor! });
    expect(next).toEqual(await findModelUsage(db.primary, {}, { limit: 2, cursor: first.nextCursor! }));
    expect(next.items.length).toBeGreaterThan(0);
  });

  test("a replica that is down: reads fail with DatabaseConnectionError naming it (no silent fallback); writes and db.primary go on; another replica takes its reads", async () => {
    const down = await downUrl();
    const lonely = await openDatabase({ url: primaryUrl, replicaUrls: [down] });
    others.push(lonely);
    expect(lonely.replicas).toEqual([down]);
    const reads: (() => Promise<unknown>)[] = [() => sumModelUsage(lonely), () => findModelUsage(lonely), () => costReport(lonely)];
    for (const read of reads) {
      const outcome = await settlesWithin(read(), 10_000);
      expect(outcome.error).toBeInstanceOf(DatabaseConnectionError);
      expect(outcome.error).toMatchObject({ target: down, lost: true });
      expect((outcome.error as Error).message).toContain("no replica could be read");
      expect((outcome.error as Error).message).toContain("db.primary");
    }
    const written = await recordModelUsage(lonely, { userId: 6, modelId, tokenInCount: 60 });
    expect((await findModelUsage(lonely.primary, { userId: 6 })).items.map((i) => i.id)).toEqual([written.id]);

    await caughtUp();
    const pair = await openDatabase({ url: primaryUrl, replicaUrls: [down, standbyUrl] });
    others.push(pair);
    const expected = await sumModelUsage(db.primary, { groupBy: ["userId"] });
    // Round-robin: every other call starts with the dead replica, and is read from the standby.
    for (let i = 0; i < 4; i++) expect(await sumModelUsage(pair, { groupBy: ["userId"] })).toEqual(expected);
  });

  test("CLI: report --replica reads the standby; PS_USAGE_REPLICA_URLS with DATABASE_URL too", async () => {
    await caughtUp();
    // The table: the names of models and agents are read where the report is.
    const args = ["report", "--group-by", "model,agent", "--bucket", "month", "--tz", "Europe/Berlin"];
    const [fromPrimary, fromStandby] = await Promise.all([runCli([...args, "--db", primaryUrl]), runCli([...args, "--db", primaryUrl, "--replica", standbyUrl])]);
    expect(fromPrimary.code).toBe(0);
    expect(fromPrimary.stdout).toContain("gpt-replica");
    expect(fromStandby).toEqual(fromPrimary);
    // Seen to come from the standby: with its replay paused, a new row is in the primary's report only.
    await withReplayPaused(async () => {
      await recordModelUsage(db, { userId: 8, modelId, agentId: rootAgent, tokenInCount: 1_000_000, createdAt: new Date("2026-03-05T00:00:00Z") });
      const [stale, fresh] = await Promise.all([
        runCli(["report", "--json", "--user", "8", "--db", primaryUrl, "--replica", standbyUrl]),
        runCli(["report", "--json", "--user", "8", "--db", primaryUrl]),
      ]);
      expect(JSON.parse(stale.stdout).totals).toEqual([]);
      expect(JSON.parse(fresh.stdout).totals).toMatchObject([{ currency: "USD", cost: "2.5" }]);
    });
    const down = await downUrl();
    // With --db the variable is ignored: it goes with DATABASE_URL only.
    const [env, explicit] = await Promise.all([
      runCli(["report", "--json"], { env: { DATABASE_URL: primaryUrl, PS_USAGE_REPLICA_URLS: down } }),
      runCli(["report", "--json", "--db", primaryUrl], { env: { DATABASE_URL: primaryUrl, PS_USAGE_REPLICA_URLS: down } }),
    ]);
    expect(env.code).toBe(1);
    expect(env.stderr).toContain(`no replica could be read (Lost the connection to database ${down}`);
    expect(explicit.code).toBe(0);
  });

  test("the standby stopped under an open Database: its reads fail with DatabaseConnectionError naming it, writes go on, and reads come back with it", async () => {
    await caughtUp();
    expect((await sumModelUsage(db))[0].events).toBeGreaterThan(0n); // the pool holds standby connections now
    await standby.stop();
    try {
      const outcome = await settlesWithin(sumModelUsage(db), 10_000);
      expect(outcome.error).toBeInstanceOf(DatabaseConnectionError);
      expect(outcome.error).toMatchObject({ target: standbyUrl, lost: true });
      await recordModelUsage(db, { userId: 9, modelId, tokenInCount: 9 });
      const [onPrimary] = await sumModelUsage(db.primary, { where: { userId: 9 } });
      expect(onPrimary.events).toBe(1n);
    } finally {
      await standby.start();
    }
    await caughtUp();
    const [back] = await sumModelUsage(db, { where: { userId: 9 } });
    expect(back.events).toBe(1n);
  });
});
