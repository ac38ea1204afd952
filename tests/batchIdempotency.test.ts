// A batch with an idempotency key is recorded once however often it is retried, and an NDJSON
// import with a key can be run again after a failure without counting anything twice.
import { Readable } from "node:stream";
import {
  InputLineError,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  recordNdjson,
  sumModelUsage,
  type ModelUsageInput,
} from "../src";
import { createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { issuesOf } from "./support/errors";

let t: TestDatabase;
let modelId: number;
let apiId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db);
  apiId = await createExternalApi(t.db);
});
afterAll(() => t.dispose());

const batchOf = (userId: number, n: number): ModelUsageInput[] =>
  Array.from({ length: n }, (_, i) => ({ userId, modelId, tokenInCount: i + 1, tokenOutCount: 2 }));

async function totalsOf(userId: number) {
  const [row] = await sumModelUsage(t.db, { where: { userId } });
  return { events: row.events, tokenInCount: row.tokenInCount };
}


test("the same batch key twice records the batch once; the retry reports a replay", async () => {
  const first = await recordModelUsageBatch(t.db, batchOf(101, 50), { idempotencyKey: "batch-101" });
  const retry = await recordModelUsageBatch(t.db, batchOf(101, 50), { idempotencyKey: "batch-101", returnIds: true });
  expect(first).toEqual({ count: 50 });
  expect(retry).toEqual({ count: 0, ids: [], replayed: true });
  expect(await totalsOf(101)).toEqual({ events: 50n, tokenInCount: 1275n }); // 1 + 2 + … + 50
});

test("concurrent calls with one batch key: exactly one writes, across several chunks", async () => {
  const calls = await Promise.all(
    Array.from({ length: 4 }, () => recordModelUsageBatch(t.db, batchOf(102, 300), { idempotencyKey: "batch-102", chunkSize: 100 })),
  );
  expect(calls.map((c) => c.count).sort((a, b) => a - b)).toEqual([0, 0, 0, 300]);
  expect(calls.filter((c) => c.replayed).length).toBe(3);
  expect(await totalsOf(102)).toEqual({ events: 300n, tokenInCount: 45150n }); // 300 · 301 / 2
});

test("a batch that fails leaves its key free, so the corrected retry records it", async () => {
  const bad = [...batchOf(103, 5), { userId: 103, modelId: 987654, tokenInCount: 1 }];
  await expect(recordModelUsageBatch(t.db, bad, { idempotencyKey: "batch-103" })).rejects.toMatchObject({ table: "ps_ai_models", id: 987654 });
  expect((await totalsOf(103)).events).toBe(0n);
  expect(await recordModelUsageBatch(t.db, batchOf(103, 5), { idempotencyKey: "batch-103" })).toEqual({ count: 5 });
  expect((await totalsOf(103)).events).toBe(5n);
});

test("single-record keys and batch keys never stand for each other", async () => {
  await recordModelUsage(t.db, { userId: 104, modelId, tokenInCount: 1 }, { idempotencyKey: "single-104" });
  expect(await issuesOf(recordModelUsageBatch(t.db, batchOf(104, 2), { idempotencyKey: "single-104" }))).toEqual([
    { field: "options.idempotencyKey", reason: "was already used to record a single event, not a batch" },
  ]);
  await recordExternalApiUsageBatch(t.db, [{ userId: 104, externalApiId: apiId, callCount: 2 }], { idempotencyKey: "batch-104" });
  expect(await issuesOf(recordModelUsage(t.db, { userId: 104, modelId }, { idempotencyKey: "batch-104" }))).toEqual([
    { field: "options.idempotencyKey", reason: "was already used to record a batch" },
  ]);
  expect(await issuesOf(recordModelUsageBatch(t.db, batchOf(104, 1), { idempotencyKey: "" }))).toEqual([
    { field: "options.idempotencyKey", reason: "must not be empty" },
  ]);
  expect((await totalsOf(104)).events).toBe(1n);
});

test("an NDJSON import with a key can be run again after a failure and counts every line once", async () => {
  const lines = Array.from({ length: 10 }, (_, i) => JSON.stringify({ userId: 105, modelId, tokenInCount: 10 + i }));
  const broken = [...lines.slice(0, 7), JSON.stringify({ userId: 105, modelId, tokenInCount: -1 }), ...lines.slice(8)];
  // Batches of 3: lines 1-3 and 4-6 are recorded, the batch of lines 7-9 fails on line 8.
  const failure = await recordNdjson(t.db, Readable.from(broken.join("\n")), { batchSize: 3, idempotencyKey: "import-105" }).catch((e) => e);
  expect(failure).toBeInstanceOf(InputLineError);
  expect(failure).toMatchObject({ line: 8, recordedLines: 6 });
  expect((await totalsOf(105)).events).toBe(6n);

  const rerun = await recordNdjson(t.db, Readable.from(lines.join("\n")), { batchSize: 3, idempotencyKey: "import-105" });
  expect(rerun).toEqual({ lines: 10, modelUsage: 4, externalApiUsage: 0, skippedLines: 6 });
  expect(await totalsOf(105)).toEqual({ events: 10n, tokenInCount: 145n }); // 10 + 11 + … + 19
  const again = await recordNdjson(t.db, Readable.from(lines.join("\n")), { batchSize: 3, idempotencyKey: "import-105" });
  expect(again).toEqual({ lines: 10, modelUsage: 0, externalApiUsage: 0, skippedLines: 10 });
  expect((await totalsOf(105)).events).toBe(10n);
});
