// Exactly once when a client times out and retries with the same idempotency key while its first
// attempt is still running (tests/idempotency.test.ts covers repeats and plain concurrent
// callers). The first attempt is held mid-insert by a row lock another session holds on the
// agent it references, so the retry surely overlaps it; then the lock is released, or the first
// attempt's connection is killed.
import { Client } from "pg";
import {
  DatabaseConnectionError,
  openDatabase,
  recordExternalApiUsage,
  recordModelUsage,
  sumExternalApiUsage,
  sumModelUsage,
  type Database,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openScratchPostgres, type ScratchPostgres } from "./support/testDatabase";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a client with a timeout sees: the result, or "timeout" while the call goes on running. */
function withClientTimeout<T>(call: Promise<T>, ms: number): Promise<T | "timeout"> {
  return Promise.race([call, sleep(ms).then(() => "timeout" as const)]);
}

let scratch: ScratchPostgres;
let db: Database;
/** A second Database on the same server: the retry may come from another process. */
let otherProcess: Database;
let admin: Client;
let modelId: number;
let apiId: number;
let agentId: number;

beforeAll(async () => {
  scratch = await openScratchPostgres({ poolSize: 6 });
  ({ db, admin } = scratch);
  otherProcess = await openDatabase({ url: scratch.url, poolSize: 6 });
  modelId = await createModel(db);
  apiId = await createExternalApi(db);
  agentId = await createAgent(db);
});
afterAll(async () => {
  await otherProcess?.close();
  await scratch?.close();
});

/** Holds FOR UPDATE on the agent row: every insert referencing it waits at its foreign key check. */
async function holdAgentLock(): Promise<{ release: () => Promise<void> }> {
  const locker = new Client({ connectionString: scratch.url });
  await locker.connect();
  await locker.query("BEGIN");
  await locker.query("SELECT id FROM ps_agents WHERE id = $1 FOR UPDATE", [agentId]);
  return {
    async release() {
      await locker.query("ROLLBACK");
      await locker.end();
    },
  };
}

/** Backends of this database waiting for a lock inside an INSERT, oldest transaction first. */
async function blockedInserts(): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE datname = $1 AND wait_event_type = 'Lock' AND state = 'active' AND query ~ 'INSERT INTO'
      ORDER BY xact_start, pid`,
    [scratch.name],
  );
  return rows.map((r) => r.pid);
}

async function waitForBlockedInserts(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const pids = await blockedInserts();
    if (pids.length >= count) return pids;
    await sleep(20);
  }
  throw new Error(`fewer than ${count} inserts ever waited on the lock`);
}

const keyRows = (key: string) => db.prisma.psUsageIdempotencyKey.findMany({ where: { key } });

test("the first attempt times out on the client but is still running; the retry overlaps it; both get the one row", async () => {
  const input = { userId: 21, modelId, agentId, tokenInCount: 1_000, tokenOutCount: 10 };
  const options = { idempotencyKey: "slow-first-attempt" };
  const lock = await holdAgentLock();
  let first: ReturnType<typeof recordModelUsage>;
  let retry: ReturnType<typeof recordModelUsage>;
  try {
    first = recordModelUsage(db, input, options);
    expect(await withClientTimeout(first, 200)).toBe("timeout");
    await waitForBlockedInserts(1);
    retry = recordModelUsage(db, input, options);
    expect(await withClientTimeout(retry, 200)).toBe("timeout");
    await waitForBlockedInserts(2);
  } finally {
    await lock.release();
  }
  const [firstRow, retryRow] = await Promise.all([first, retry]);
  expect(retryRow).toEqual(firstRow);
  // A late third attempt, after both finished, gets the same row too.
  expect(await recordModelUsage(db, input, options)).toEqual(firstRow);
  const [sum] = await sumModelUsage(db, { where: { userId: 21 } });
  expect([sum.events, sum.tokenInCount, sum.tokenOutCount]).toEqual([1n, 1_000n, 10n]);
  expect(await keyRows("slow-first-attempt")).toEqual([expect.objectContaining({ modelUsageId: firstRow.id, externalApiUsageId: null })]);
});

test("the retry comes from another process (another pool) while the first is still running: one row", async () => {
  const input = { userId: 22, externalApiId: apiId, agentId, callCount: 4 };
  const options = { idempotencyKey: "retry-from-elsewhere" };
  const lock = await holdAgentLock();
  let first: ReturnType<typeof recordExternalApiUsage>;
  let retry: ReturnType<typeof recordExternalApiUsage>;
  try {
    first = recordExternalApiUsage(db, input, options);
    await waitForBlockedInserts(1);
    retry = recordExternalApiUsage(otherProcess, input, options);
    await waitForBlockedInserts(2);
  } finally {
    await lock.release();
  }
  const [firstRow, retryRow] = await Promise.all([first, retry]);
  expect(retryRow).toEqual(firstRow);
  const [sum] = await sumExternalApiUsage(db, { where: { userId: 22 } });
  expect(sum).toEqual({ events: 1n, callCount: 4n });
});

test("the first attempt dies (its connection killed) while the retry waits: the retry records it, once", async () => {
  const input = { userId: 23, modelId, agentId, tokenInCount: 77 };
  const options = { idempotencyKey: "first-attempt-dies" };
  const lock = await holdAgentLock();
  let first: Promise<unknown>;
  let retry: ReturnType<typeof recordModelUsage>;
  try {
    first = recordModelUsage(db, input, options).catch((e: unknown) => e);
    const [firstPid] = await waitForBlockedInserts(1);
    retry = recordModelUsage(db, input, options);
    await waitForBlockedInserts(2);
    await admin.query("SELECT pg_terminate_backend($1)", [firstPid]);
    expect(await first).toBeInstanceOf(DatabaseConnectionError);
  } finally {
    await lock.release();
  }
  const retryRow = await retry;
  expect(retryRow).toMatchObject({ userId: 23, tokenInCount: 77 });
  expect(await keyRows("first-attempt-dies")).toEqual([expect.objectContaining({ modelUsageId: retryRow.id })]);
  const [sum] = await sumModelUsage(db, { where: { userId: 23 } });
  expect([sum.events, sum.tokenInCount]).toEqual([1n, 77n]);
});

test("30 clients, each timing out and retrying twice through both pools while its first attempt is held: 30 rows, every attempt answered with its key's row", async () => {
  const keys = Array.from({ length: 30 }, (_, i) => `held-${i}`);
  const inputs = keys.map((_, i) => ({ userId: 24, modelId, agentId, tokenInCount: i + 1 }));
  const lock = await holdAgentLock();
  const attempts: Promise<{ key: string; id: number }>[] = [];
  try {
    keys.forEach((key, i) => attempts.push(recordModelUsage(db, inputs[i], { idempotencyKey: key }).then((r) => ({ key, id: r.id }))));
    await sleep(100); // the clients' timeout
    keys.forEach((key, i) => attempts.push(recordModelUsage(otherProcess, inputs[i], { idempotencyKey: key }).then((r) => ({ key, id: r.id }))));
    await sleep(100);
    keys.forEach((key, i) => attempts.push(recordModelUsage(db, inputs[i], { idempotencyKey: key }).then((r) => ({ key, id: r.id }))));
  } finally {
    await sleep(100);
    await lock.release();
  }
  const answers = await Promise.all(attempts);
  const idByKey = new Map<string, Set<number>>();
  for (const { key, id } of answers) idByKey.set(key, (idByKey.get(key) ?? new Set()).add(id));
  expect([...idByKey.values()].map((ids) => ids.size)).toEqual(keys.map(() => 1));
  const [sum] = await sumModelUsage(db, { where: { userId: 24 } });
  expect([sum.events, sum.tokenInCount]).toEqual([30n, BigInt((30 * 31) / 2)]);
});
