// Faults on PostgreSQL: a batch whose connection is killed mid-statement leaves nothing behind
// and the same Database keeps working; a server that stops and restarts under the client gives a
// typed DatabaseConnectionError quickly (no hang) and calls after the restart succeed.
import { Client } from "pg";
import {
  DatabaseConnectionError,
  openDatabase,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  type Database,
  type ModelUsageInput,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { startPrivatePostgres, type PrivatePostgres } from "./support/privatePostgres";
import { settlesWithin } from "./support/settles";
import { lockAgentRow } from "./support/rowLock";
import { openScratchPostgres, type ScratchPostgres } from "./support/testDatabase";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


interface BlockedBackend {
  readonly pid: number;
  /** The transaction id it was given: set only once the transaction has written rows. */
  readonly backendXid: string | null;
}

/** Waits until an INSERT into a usage table on `database` waits for a lock, and returns its backend. */
async function blockedInsert(admin: Client, database: string): Promise<BlockedBackend> {
  for (let attempt = 0; attempt < 600; attempt++) {
    const { rows } = await admin.query<{ pid: number; backend_xid: string | null }>(
      `SELECT pid, backend_xid::text AS backend_xid FROM pg_stat_activity
        WHERE datname = $1 AND wait_event_type = 'Lock' AND state = 'active' AND query ~ 'INSERT INTO ("public"\\.)?"?ps_(model|external_api)_usage'`,
      [database],
    );
    if (rows.length === 1) return { pid: rows[0].pid, backendXid: rows[0].backend_xid };
    await sleep(20);
  }
  throw new Error("no INSERT ever blocked on the lock");
}

async function terminate(admin: Client, pid: number): Promise<void> {
  const { rows } = await admin.query<{ ok: boolean }>("SELECT pg_terminate_backend($1) AS ok", [pid]);
  expect(rows[0].ok).toBe(true);
}

describe("a connection killed mid-statement (pg_terminate_backend)", () => {
  let scratch: ScratchPostgres;
  let db: Database;
  let admin: Client;
  let modelId: number;
  let apiId: number;
  let freeAgent: number;
  let lockedAgent: number;

  beforeAll(async () => {
    scratch = await openScratchPostgres({ poolSize: 4 });
    ({ db, admin } = scratch);
    modelId = await createModel(db);
    apiId = await createExternalApi(db);
    freeAgent = await createAgent(db);
    lockedAgent = await createAgent(db);
  });
  afterAll(() => scratch?.close());

  const rowCounts = async () => ({ model: await db.prisma.psModelUsage.count(), api: await db.prisma.psExternalApiUsage.count() });

  /** `count` model usage rows; the last `lockedTail` reference the agent another session will lock. */
  function modelBatch(count: number, lockedTail: number): ModelUsageInput[] {
    return Array.from({ length: count }, (_, i) => ({
      userId: 1,
      modelId,
      agentId: i >= count - lockedTail ? lockedAgent : freeAgent,
      tokenInCount: i + 1,
      tokenOutCount: 7,
    }));
  }

  test("a one-statement batch killed after inserting its rows (waiting at a foreign key check) writes nothing; the next call works", async () => {
    const before = await rowCounts();
    const lock = await lockAgentRow(scratch.url, lockedAgent);
    try {
      const call = recordModelUsageBatch(db, modelBatch(20_000, 1)).then(
        () => null,
        (e: unknown) => e,
      );
      const backend = await blockedInsert(admin, scratch.name);
      // The statement's transaction has an xid: it has already written its rows to the table.
      expect(backend.backendXid).not.toBeNull();
      await terminate(admin, backend.pid);
      const error = await call;
      expect(error).toBeInstanceOf(DatabaseConnectionError);
      expect((error as DatabaseConnectionError).message).toMatch(/terminating connection due to administrator command/);
    } finally {
      await lock.release();
    }
    expect(await rowCounts()).toEqual(before);
    const row = await recordModelUsage(db, { userId: 1, modelId, tokenInCount: 11 });
    expect(row.tokenInCount).toBe(11);
    expect(await rowCounts()).toEqual({ ...before, model: before.model + 1 });
  });

  test("a batch of five chunks killed in its last chunk rolls back the four chunks already inserted", async () => {
    const before = await rowCounts();
    const [totalBefore] = await sumModelUsage(db);
    const lock = await lockAgentRow(scratch.url, lockedAgent);
    try {
      const call = recordModelUsageBatch(db, modelBatch(25_000, 10), { chunkSize: 5_000 }).then(
        () => null,
        (e: unknown) => e,
      );
      const backend = await blockedInsert(admin, scratch.name);
      expect(backend.backendXid).not.toBeNull();
      await terminate(admin, backend.pid);
      expect(await call).toBeInstanceOf(DatabaseConnectionError);
    } finally {
      await lock.release();
    }
    expect(await rowCounts()).toEqual(before);
    expect(await sumModelUsage(db)).toEqual([totalBefore]);
    // The pool replaced the killed connection: a batch of several chunks works again.
    const { count } = await recordModelUsageBatch(db, modelBatch(12_000, 0), { chunkSize: 5_000 });
    expect(count).toBe(12_000);
    const [total] = await sumModelUsage(db);
    expect(total.events).toBe(totalBefore.events + 12_000n);
    expect(total.tokenInCount).toBe(totalBefore.tokenInCount + (12_000n * 12_001n) / 2n);
  });

  test("an external API batch killed mid-statement writes nothing; the next one works", async () => {
    const before = await rowCounts();
    const lock = await lockAgentRow(scratch.url, lockedAgent);
    const inputs = Array.from({ length: 10_000 }, (_, i) => ({
      userId: 2,
      externalApiId: apiId,
      callCount: 3,
      agentId: i === 9_999 ? lockedAgent : freeAgent,
    }));
    try {
      const call = recordExternalApiUsageBatch(db, inputs).then(
        () => null,
        (e: unknown) => e,
      );
      await terminate(admin, (await blockedInsert(admin, scratch.name)).pid);
      expect(await call).toBeInstanceOf(DatabaseConnectionError);
    } finally {
      await lock.release();
    }
    expect(await rowCounts()).toEqual(before);
    await recordExternalApiUsageBatch(db, inputs);
    const [sum] = await sumExternalApiUsage(db, { where: { userId: 2 } });
    expect(sum).toEqual({ events: 10_000n, callCount: 30_000n });
  });

  test("a keyed record killed mid-insert leaves its key free: the client's retry records exactly once", async () => {
    const lock = await lockAgentRow(scratch.url, lockedAgent);
    const input = { userId: 3, modelId, agentId: lockedAgent, tokenInCount: 500 };
    try {
      const call = recordModelUsage(db, input, { idempotencyKey: "killed-then-retried" }).then(
        () => null,
        (e: unknown) => e,
      );
      await terminate(admin, (await blockedInsert(admin, scratch.name)).pid);
      expect(await call).toBeInstanceOf(DatabaseConnectionError);
    } finally {
      await lock.release();
    }
    expect(await db.prisma.psUsageIdempotencyKey.count({ where: { key: "killed-then-retried" } })).toBe(0);
    const first = await recordModelUsage(db, input, { idempotencyKey: "killed-then-retried" });
    const again = await recordModelUsage(db, input, { idempotencyKey: "killed-then-retried" });
    expect(again).toEqual(first);
    const [sum] = await sumModelUsage(db, { where: { userId: 3 } });
    expect([sum.events, sum.tokenInCount]).toEqual([1n, 500n]);
  });

  test("every connection of the pool terminated while idle: the next calls reconnect and succeed", async () => {
    // Open several pool connections at once so that there is more than one to kill.
    await Promise.all(Array.from({ length: 4 }, (_, i) => recordExternalApiUsage(db, { userId: 4, externalApiId: apiId, callCount: i + 1 })));
    const { rows } = await admin.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
      [scratch.name],
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const { pid } of rows) await terminate(admin, pid);
    // The pool hears of each closed connection on the event loop and drops it.
    await sleep(100);
    const rowsAfter = await Promise.all(
      Array.from({ length: 4 }, () => recordExternalApiUsage(db, { userId: 4, externalApiId: apiId, callCount: 10 })),
    );
    expect(rowsAfter).toHaveLength(4);
    const [sum] = await sumExternalApiUsage(db, { where: { userId: 4 } });
    expect(sum).toEqual({ events: 8n, callCount: 1n + 2n + 3n + 4n + 40n });
  });
});

describe("the server restarting under the client (a private PostgreSQL server)", () => {
  let server: PrivatePostgres;
  let db: Database;
  let modelId: number;
  let agentId: number;

  beforeAll(async () => {
    server = await startPrivatePostgres();
    db = await openDatabase({ url: server.url, migrate: true, poolSize: 4 });
    modelId = await createModel(db);
    agentId = await createAgent(db);
  });
  afterAll(async () => {
    await db?.close();
    await server?.remove();
  });

  test("a restart while the pool is idle: calls on the same Database succeed afterwards", async () => {
    await Promise.all([1, 2, 3].map((n) => recordModelUsage(db, { userId: 10, modelId, tokenInCount: n })));
    await server.restart();
    await sleep(100);
    await recordModelUsage(db, { userId: 10, modelId, tokenInCount: 4 });
    await recordModelUsageBatch(db, [{ userId: 10, modelId, tokenInCount: 5 }]);
    const [sum] = await sumModelUsage(db, { where: { userId: 10 } });
    expect([sum.events, sum.tokenInCount]).toEqual([5n, 15n]);
  });

  test("while the server is down every kind of call fails fast with DatabaseConnectionError; after it is back they succeed", async () => {
    await recordModelUsage(db, { userId: 11, modelId, tokenInCount: 100 });
    await server.stop();
    try {
      const attempts: (() => Promise<unknown>)[] = [
        () => recordModelUsage(db, { userId: 11, modelId, tokenInCount: 1 }),
        () => recordModelUsage(db, { userId: 11, modelId, tokenInCount: 1 }, { idempotencyKey: "during-outage" }),
        () => recordModelUsageBatch(db, [{ userId: 11, modelId, tokenInCount: 1 }]),
        () => recordModelUsageBatch(db, [{ userId: 11, modelId, tokenInCount: 1 }, { userId: 11, modelId }], { chunkSize: 1 }),
        () => sumModelUsage(db),
      ];
      for (const attempt of attempts) {
        // 10 s is the pool's connect timeout; a refused connection fails at once.
        const outcome = await settlesWithin(attempt(), 10_000);
        expect(outcome.error).toBeInstanceOf(DatabaseConnectionError);
        expect((outcome.error as DatabaseConnectionError).target).toBe(server.url);
        if (process.env.PS_USAGE_TEST_VERBOSE) console.log(`outage: rejected in ${outcome.ms} ms: ${(outcome.error as Error).message}`);
      }
    } finally {
      await server.start();
    }
    await recordModelUsage(db, { userId: 11, modelId, tokenInCount: 20 });
    await recordModelUsage(db, { userId: 11, modelId, tokenInCount: 3 }, { idempotencyKey: "during-outage" });
    await recordModelUsageBatch(db, [{ userId: 11, modelId, tokenInCount: 4 }, { userId: 11, modelId, tokenInCount: 5 }], { chunkSize: 1 });
    const [sum] = await sumModelUsage(db, { where: { userId: 11 } });
    // Only the calls that succeeded are counted: 100 before, 20 + 3 + 4 + 5 after.
    expect([sum.events, sum.tokenInCount]).toEqual([5n, 132n]);
  });

  test("a batch in flight when the server restarts is rejected with DatabaseConnectionError and leaves nothing", async () => {
    const [before] = await sumModelUsage(db);
    const admin = new Client({ connectionString: server.url });
    admin.on("error", () => undefined);
    await admin.connect();
    const lock = await lockAgentRow(server.url, agentId);
    let error: unknown;
    try {
      const inputs = Array.from({ length: 10_000 }, (_, i) => ({ userId: 12, modelId, agentId, tokenInCount: i }));
      const call = recordModelUsageBatch(db, inputs, { chunkSize: 2_500 }).then(
        () => null,
        (e: unknown) => e,
      );
      await blockedInsert(admin, "postgres");
      await server.restart();
      const outcome = await settlesWithin(call, 10_000);
      error = outcome.value;
    } finally {
      await lock.release();
      await admin.end().catch(() => undefined);
    }
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect(await sumModelUsage(db)).toEqual([before]);
    const { count } = await recordModelUsageBatch(db, [{ userId: 12, modelId, agentId, tokenInCount: 9 }]);
    expect(count).toBe(1);
    const [after] = await sumModelUsage(db, { where: { userId: 12 } });
    expect([after.events, after.tokenInCount]).toEqual([1n, 9n]);
  });
});
