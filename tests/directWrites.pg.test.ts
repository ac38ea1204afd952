// Writes sent to the driver directly (issue 12 §4). A keyed single record claims its key and
// writes its row in one statement (no BEGIN … COMMIT round trips); a batch chunk sends only the
// arrays its items fill. What that could break is checked on a real server: the write timeout on
// those statements, a replay that arrives while the first call is still uncommitted, concurrent
// callers on two Databases (two pools) with one key.
import { Client } from "pg";
import {
  DatabaseTimeoutError,
  openDatabase,
  recordExternalApiUsage,
  recordModelUsage,
  recordModelUsageBatch,
  type Database,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { settlesWithin } from "./support/settles";
import { lockAgentRow } from "./support/rowLock";
import { openScratchPostgres, waitingStatements, type ScratchPostgres } from "./support/testDatabase";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let scratch: ScratchPostgres;
let db: Database;
let admin: Client;
let modelId: number;
let apiId: number;
let agentId: number;

beforeAll(async () => {
  scratch = await openScratchPostgres();
  ({ db, admin } = scratch);
  modelId = await createModel(db);
  apiId = await createExternalApi(db);
  agentId = await createAgent(db);
});
afterAll(() => scratch?.close());

/** A session holding `FOR UPDATE` on the agent: an insert naming it waits at its foreign key check. */
const lockAgent = () => lockAgentRow(scratch.url, agentId);

const counts = async () => {
  const { rows } = await admin.query<{ model: number; api: number; keys: number }>(
    `SELECT (SELECT count(*)::int FROM ps_model_usage) AS model, (SELECT count(*)::int FROM ps_external_api_usage) AS api,
            (SELECT count(*)::int FROM ps_usage_idempotency_keys) AS keys`,
  );
  return rows[0];
};

test.each([
  ["model usage", "ps_model_usage", "model_usage_id", () => recordModelUsage(db, { userId: 3, modelId, agentId, tokenInCount: 7 }, { idempotencyKey: "one-statement-model" })],
  ["external API usage", "ps_external_api_usage", "external_api_usage_id", () => recordExternalApiUsage(db, { userId: 3, externalApiId: apiId, agentId, callCount: 2 }, { idempotencyKey: "one-statement-api" })],
])("a keyed %s record is one statement that writes the key and the row", async (_, table, keyColumn, record) => {
  const lock = await lockAgent();
  let call: Promise<unknown> | undefined;
  try {
    call = record();
    // The statement waiting at the row's foreign key check is the one that also claims the key.
    const [waiting] = await waitingStatements(admin, 1);
    expect(waiting).toContain("INSERT INTO ps_usage_idempotency_keys");
    expect(waiting).toContain(`INSERT INTO ${table}`);
  } finally {
    await lock.release();
  }
  const row = (await call) as { id: number; agentId: number | null };
  expect(row.agentId).toBe(agentId);
  // Written by one transaction (xmin) and by its first command (cmin 0 for both: nothing ran
  // before them, and the key was not written by a command of its own).
  const { rows } = await admin.query<{ xmin: string; cmin: string }>(
    `SELECT xmin::text, cmin::text FROM ${table} WHERE id = $1 UNION ALL SELECT xmin::text, cmin::text FROM ps_usage_idempotency_keys WHERE ${keyColumn} = $1`,
    [row.id],
  );
  expect(rows).toHaveLength(2);
  expect(rows[1]).toEqual(rows[0]);
  expect(rows[0].cmin).toBe("0");
});

test("a keyed record stuck behind a lock is cancelled after writeTimeoutMs: typed, neither row nor key written, the key stays free", async () => {
  const bounded = await openDatabase({ url: scratch.url, writeTimeoutMs: 500 });
  try {
    const before = await counts();
    const lock = await lockAgent();
    let stuck: Awaited<ReturnType<typeof settlesWithin>>;
    try {
      stuck = await settlesWithin(recordModelUsage(bounded, { userId: 3, modelId, agentId, tokenInCount: 1 }, { idempotencyKey: "timed-out-key" }), 20_000);
    } finally {
      await lock.release();
    }
    expect(stuck.error).toBeInstanceOf(DatabaseTimeoutError);
    expect((stuck.error as DatabaseTimeoutError).phase).toBe("statement");
    expect(await counts()).toEqual(before);
    const row = await recordModelUsage(bounded, { userId: 3, modelId, agentId, tokenInCount: 1 }, { idempotencyKey: "timed-out-key" });
    expect(row.tokenInCount).toBe(1);
    expect(await counts()).toEqual({ ...before, model: before.model + 1, keys: before.keys + 1 });
  } finally {
    await bounded.close();
  }
});

test("a replay sent while the first call is still uncommitted waits for it and returns its row", async () => {
  const before = await counts();
  const input = { userId: 5, modelId, agentId, tokenInCount: 11 };
  const lock = await lockAgent();
  let first: Promise<{ id: number }>;
  let replay: Promise<{ id: number }>;
  try {
    first = recordModelUsage(db, input, { idempotencyKey: "replay-while-uncommitted" });
    await waitingStatements(admin, 1);
    // The replay's claim of the key waits for the first call's transaction.
    replay = recordModelUsage(db, input, { idempotencyKey: "replay-while-uncommitted" });
    await waitingStatements(admin, 2);
  } finally {
    await lock.release();
  }
  const [a, b] = await Promise.all([first!, replay!]);
  expect(b).toEqual(a);
  expect(await counts()).toEqual({ ...before, model: before.model + 1, keys: before.keys + 1 });
});

test("two Databases (two pools) recording with the same keys at once: one row per key, everyone gets it", async () => {
  const other = await openDatabase({ url: scratch.url });
  try {
    const before = await counts();
    const calls: Promise<{ id: number; tokenInCount: number }>[] = [];
    for (let k = 0; k < 10; k++) {
      for (const on of [db, other, db, other]) {
        calls.push(recordModelUsage(on, { userId: 6, modelId, tokenInCount: k }, { idempotencyKey: `two-pools-${k}` }));
      }
    }
    const rows = await Promise.all(calls);
    for (let k = 0; k < 10; k++) {
      const same = rows.slice(k * 4, k * 4 + 4);
      expect(new Set(same.map((r) => r.id)).size).toBe(1);
      expect(same[0].tokenInCount).toBe(k);
    }
    expect(await counts()).toEqual({ ...before, model: before.model + 10, keys: before.keys + 10 });
  } finally {
    await other.close();
  }
});

test("a batch chunk leaves out the web search, tier and region arrays when none of its items has one", async () => {
  const batch = (extra: object) =>
    recordModelUsageBatch(db, [
      { userId: 7, modelId, agentId, tokenInCount: 1 },
      { userId: 7, modelId, agentId, tokenInCount: 2, ...extra },
    ]);
  for (const [extra, sent] of [
    [{}, []],
    [{ serviceTier: "priority" }, ["service_tier"]],
    [{ webSearchCount: 2, regionalProcessing: "eu" }, ["web_search_count", "regional_processing"]],
  ] as const) {
    const lock = await lockAgent();
    let call: Promise<unknown>;
    try {
      call = batch(extra);
      const [waiting] = await waitingStatements(admin, 1);
      for (const column of ["web_search_count", "service_tier", "regional_processing"]) {
        expect([column, waiting.includes(column)]).toEqual([column, (sent as readonly string[]).includes(column)]);
      }
    } finally {
      await lock.release();
    }
    await call!;
  }
});

test("a batch stuck behind a lock is cancelled after writeTimeoutMs: typed, nothing written, its key free", async () => {
  const bounded = await openDatabase({ url: scratch.url, writeTimeoutMs: 500 });
  try {
    const before = await counts();
    const items = [{ userId: 8, modelId, tokenInCount: 1 }, { userId: 8, modelId, agentId, tokenInCount: 2 }];
    const lock = await lockAgent();
    let stuck: Awaited<ReturnType<typeof settlesWithin>>;
    try {
      stuck = await settlesWithin(recordModelUsageBatch(bounded, items, { chunkSize: 1, idempotencyKey: "batch-timed-out" }), 20_000);
    } finally {
      await lock.release();
    }
    expect(stuck.error).toBeInstanceOf(DatabaseTimeoutError);
    expect((stuck.error as DatabaseTimeoutError).phase).toBe("statement");
    expect(await counts()).toEqual(before);
    expect(await recordModelUsageBatch(bounded, items, { chunkSize: 1, idempotencyKey: "batch-timed-out" })).toEqual({ count: 2 });
    expect(await counts()).toEqual({ ...before, model: before.model + 2, keys: before.keys + 1 });
  } finally {
    await bounded.close();
  }
});
