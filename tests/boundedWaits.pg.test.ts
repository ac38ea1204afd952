// Bounded waits on PostgreSQL: a server that stops answering (no FIN, no RST: a frozen network
// path), a statement stuck behind a lock, and a call queued behind a busy pool each end in a
// typed DatabaseTimeoutError within the configured bound, and the same Database works afterwards.
import net from "node:net";
import { Client } from "pg";
import {
  DatabaseTimeoutError,
  UsageValidationError,
  forUser,
  openDatabase,
  recordModelUsage,
  recordModelUsageBatch,
  sumModelUsage,
  type Database,
} from "../src";
import { createAgent, createModel } from "./support/fixtures";
import { settlesWithin } from "./support/settles";
import { createScratchDatabase } from "./support/testDatabase";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP proxy to the test server that can freeze: it stops forwarding but closes nothing. */
async function startFreezableProxy(target: URL): Promise<{ url: string; freeze(): void; thaw(): void; close(): Promise<void> }> {
  let frozen = false;
  const pairs: [net.Socket, net.Socket][] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
    client.pipe(upstream);
    upstream.pipe(client);
    pairs.push([client, upstream]);
    if (frozen) client.unpipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(target.toString());
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    freeze() {
      frozen = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
      }
    },
    thaw() {
      // Frozen connections stay dead (their protocol state is lost); new ones flow again.
      frozen = false;
      for (const [client, upstream] of pairs.splice(0)) {
        client.destroy();
        upstream.destroy();
      }
    },
    async close() {
      for (const [client, upstream] of pairs.splice(0)) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let modelId: number;
let agentId: number;
beforeAll(async () => {
  scratch = await createScratchDatabase();
  const db = await openDatabase({ url: scratch.url, migrate: true });
  modelId = await createModel(db, "m");
  agentId = await createAgent(db);
  await recordModelUsage(db, { userId: 1, modelId, tokenInCount: 5 });
  await db.close();
});
afterAll(() => scratch.drop());

describe("a server that stops answering", () => {
  let proxy: Awaited<ReturnType<typeof startFreezableProxy>>;
  let db: Database;
  beforeAll(async () => {
    proxy = await startFreezableProxy(new URL(scratch.url));
    db = await openDatabase({ url: proxy.url, writeTimeoutMs: 1_000, reportTimeoutMs: 2_000, connectTimeoutMs: 1_000 });
  });
  afterAll(async () => {
    await db.close();
    await proxy.close();
  });

  test("a record and a sum each end in a DatabaseTimeoutError, then the Database works again", async () => {
    // Warm both pools so the calls below reuse connections that then freeze mid-call.
    await recordModelUsage(db, { userId: 1, modelId, tokenInCount: 1 });
    await sumModelUsage(db);
    proxy.freeze();
    const write = await settlesWithin(recordModelUsage(db, { userId: 1, modelId, tokenInCount: 1 }), 30_000);
    expect(write.error).toBeInstanceOf(DatabaseTimeoutError);
    expect((write.error as DatabaseTimeoutError).phase).toBe("response");
    const read = await settlesWithin(sumModelUsage(db), 30_000);
    expect(read.error).toBeInstanceOf(DatabaseTimeoutError);
    // The write's bound (1 s + the client's grace) is shorter than the report's (2 s + grace).
    expect(write.ms).toBeLessThan(read.ms + 1_000);
    proxy.thaw();
    const [total] = await sumModelUsage(db);
    expect(total.events).toBeGreaterThanOrEqual(2n);
  });
});

test("a statement stuck behind a row lock is cancelled by the server after writeTimeoutMs: typed, nothing written", async () => {
  const db = await openDatabase({ url: scratch.url, writeTimeoutMs: 500 });
  const locker = new Client({ connectionString: scratch.url });
  await locker.connect();
  try {
    await locker.query("BEGIN");
    await locker.query("SELECT id FROM ps_agents WHERE id = $1 FOR UPDATE", [agentId]);
    const before = (await sumModelUsage(db, { where: { userId: 77 } }))[0].events;
    const stuck = await settlesWithin(recordModelUsage(db, { userId: 77, modelId, agentId, tokenInCount: 1 }), 20_000);
    expect(stuck.error).toBeInstanceOf(DatabaseTimeoutError);
    expect((stuck.error as DatabaseTimeoutError).phase).toBe("statement");
    await locker.query("ROLLBACK");
    expect((await sumModelUsage(db, { where: { userId: 77 } }))[0].events).toBe(before);
    // Same Database, same pool: the next write goes through.
    await recordModelUsage(db, { userId: 77, modelId, agentId, tokenInCount: 1 });
    expect((await sumModelUsage(db, { where: { userId: 77 } }))[0].events).toBe(before + 1n);
  } finally {
    await locker.end();
    await db.close();
  }
});

test("a call queued behind a busy pool ends in a DatabaseTimeoutError after connectTimeoutMs", async () => {
  const db = await openDatabase({ url: scratch.url, poolSize: 1, connectTimeoutMs: 300 });
  try {
    // An interactive transaction holds the pool's only connection for 2 s.
    const holder = db.prisma.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT 1`;
      await sleep(2_000);
    }, { timeout: 10_000 });
    await sleep(100);
    const queued = await settlesWithin(recordModelUsage(db, { userId: 78, modelId, tokenInCount: 1 }), 20_000);
    expect(queued.error).toBeInstanceOf(DatabaseTimeoutError);
    expect((queued.error as DatabaseTimeoutError).phase).toBe("connect");
    await holder;
    await recordModelUsage(db, { userId: 78, modelId, tokenInCount: 1 });
  } finally {
    await db.close();
  }
});

test("records that run in a Prisma transaction (a reference check, enforceBudgets) are bounded as plain ones: busy pool, row lock", async () => {
  const db = await openDatabase({ url: scratch.url, poolSize: 1, connectTimeoutMs: 300, writeTimeoutMs: 500 });
  const count = async () => (await sumModelUsage(db, { where: { userId: 1, agentId } }))[0].events;
  const calls: Record<string, () => Promise<unknown>> = {
    // A view's record naming an agent checks the agent's owner (FOR SHARE) in the insert's transaction.
    checkedRecord: () => forUser(db, 1).recordModelUsage({ modelId, agentId, tokenInCount: 1 }),
    guardedRecord: () => recordModelUsage(db, { userId: 1, modelId, agentId, tokenInCount: 1 }, { enforceBudgets: true }),
    guardedBatch: () => recordModelUsageBatch(db, [{ userId: 1, modelId, agentId, tokenInCount: 1 }], { enforceBudgets: true }),
  };
  const errorOf = async (call: () => Promise<unknown>) => (await settlesWithin(call(), 20_000)).error;
  try {
    const before = await count();
    // An interactive transaction holds the pool's only connection for 2 s.
    const holder = db.prisma.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT 1`;
      await sleep(2_000);
    }, { timeout: 10_000 });
    await sleep(100);
    const queued = await Promise.all(Object.entries(calls).map(async ([name, call]) => [name, await errorOf(call)] as const));
    for (const [name, error] of queued) {
      expect([name, error]).toEqual([name, expect.any(DatabaseTimeoutError)]);
      expect(error).toMatchObject({ phase: "connect" });
    }
    await holder;
    // Another session holds the agent's row FOR UPDATE: the check (or the guard) waits, and the
    // server cancels it after writeTimeoutMs.
    const locker = new Client({ connectionString: scratch.url });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT id FROM ps_agents WHERE id = $1 FOR UPDATE", [agentId]);
      // One at a time: the pool has one connection.
      for (const [name, call] of Object.entries(calls)) {
        const error = await errorOf(call);
        expect([name, error]).toEqual([name, expect.any(DatabaseTimeoutError)]);
        expect(error).toMatchObject({ phase: "statement" });
      }
      await locker.query("ROLLBACK");
    } finally {
      await locker.end();
    }
    expect(await count()).toBe(before);
    for (const call of Object.values(calls)) await call();
    expect(await count()).toBe(before + 3n);
  } finally {
    await db.close();
  }
});

test("a record's transaction that runs past its limit (a minute) is rolled back: a DatabaseTimeoutError, nothing written", async () => {
  // A statement may wait longer than the record's transaction may last: the lock below outlasts the latter.
  const db = await openDatabase({ url: scratch.url, writeTimeoutMs: 120_000 });
  const locker = new Client({ connectionString: scratch.url });
  await locker.connect();
  try {
    const before = (await sumModelUsage(db, { where: { userId: 1, agentId } }))[0].events;
    await locker.query("BEGIN");
    await locker.query("SELECT id FROM ps_agents WHERE id = $1 FOR UPDATE", [agentId]);
    // The view's ownership check waits for the agent's row past Prisma's timeout of the transaction.
    const record = settlesWithin(forUser(db, 1).recordModelUsage({ modelId, agentId, tokenInCount: 1 }), 100_000);
    await sleep(61_000);
    await locker.query("ROLLBACK");
    const { error } = await record;
    expect(error).toBeInstanceOf(DatabaseTimeoutError);
    expect(error).toMatchObject({ phase: "statement", code: "PS_USAGE_TIMEOUT" });
    expect((error as Error).message).toMatch(/ran longer than its limit \(60000 ms\).*nothing was written/);
    expect((await sumModelUsage(db, { where: { userId: 1, agentId } }))[0].events).toBe(before);
    await forUser(db, 1).recordModelUsage({ modelId, agentId, tokenInCount: 1 });
    expect((await sumModelUsage(db, { where: { userId: 1, agentId } }))[0].events).toBe(before + 1n);
  } finally {
    await locker.end();
    await db.close();
  }
});

test("pool limits are options, checked", async () => {
  await expect(openDatabase({ url: scratch.url, poolSize: 0 })).rejects.toThrow(UsageValidationError);
  await expect(openDatabase({ url: scratch.url, reportTimeoutMs: 1.5 })).rejects.toThrow(/reportTimeoutMs: must be a positive integer/);
});
