// NDJSON that interleaves model and external API lines (a log's normal shape) is written in as
// few batches as the same lines sorted by kind: a batch holds both kinds side by side.
import { Readable } from "node:stream";
import { InputLineError, recordNdjson, type NdjsonResult } from "../src";
import { createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let modelId: number;
let apiId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db);
  apiId = await createExternalApi(t.db);
});
afterAll(() => t.dispose());

const modelLine = (userId: number, i: number) => JSON.stringify({ userId, modelId, tokenInCount: i });
const apiLine = (userId: number, calls: number) => JSON.stringify({ userId, externalApiId: apiId, callCount: calls });
const interleaved = (userId: number, n: number) => Array.from({ length: n }, (_, i) => (i % 2 === 0 ? modelLine(userId, i) : apiLine(userId, i)));

async function counts(userId: number) {
  return [await t.db.prisma.psModelUsage.count({ where: { userId } }), await t.db.prisma.psExternalApiUsage.count({ where: { userId } })];
}

test("40 alternating lines in batches of 10 take 4 batches, as sorted lines do", async () => {
  const progress: NdjsonResult[] = [];
  const lines = interleaved(701, 40);
  const result = await recordNdjson(t.db, Readable.from(lines.join("\n")), { batchSize: 10, onBatch: (p) => progress.push(p) });
  expect(result).toEqual({ lines: 40, modelUsage: 20, externalApiUsage: 20, skippedLines: 0 });
  expect(progress.map((p) => [p.modelUsage, p.externalApiUsage])).toEqual([[5, 5], [10, 10], [15, 15], [20, 20]]);
  const sorted: NdjsonResult[] = [];
  await recordNdjson(t.db, Readable.from([...lines.filter((_, i) => i % 2 === 0), ...lines.filter((_, i) => i % 2 === 1)].join("\n")), {
    batchSize: 10,
    onBatch: (p) => sorted.push(p),
  });
  expect(sorted.length).toBe(progress.length);
  expect(await counts(701)).toEqual([40, 40]);
});

test("a bad API line writes nothing of its batch, neither kind; a re-run with the key records each line exactly once", async () => {
  const lines = interleaved(702, 30);
  // Batches of 10 lines: 1-10 recorded; in 11-20 line 14 (API) is bad: none of 11-20 is written.
  const broken = [...lines.slice(0, 13), apiLine(702, -1), ...lines.slice(14)];
  const failure = await recordNdjson(t.db, Readable.from(broken.join("\n")), { batchSize: 10, idempotencyKey: "mixed-702" }).catch((e) => e);
  expect(failure).toBeInstanceOf(InputLineError);
  expect(failure).toMatchObject({ line: 14, recordedLines: 10 });
  expect(failure.message).toContain("line 14: callCount");
  expect(await counts(702)).toEqual([5, 5]);

  const rerun = await recordNdjson(t.db, Readable.from(lines.join("\n")), { batchSize: 10, idempotencyKey: "mixed-702" });
  expect(rerun).toEqual({ lines: 30, modelUsage: 10, externalApiUsage: 10, skippedLines: 10 });
  expect(await counts(702)).toEqual([15, 15]);
  const again = await recordNdjson(t.db, Readable.from(lines.join("\n")), { batchSize: 10, idempotencyKey: "mixed-702" });
  expect(again).toEqual({ lines: 30, modelUsage: 0, externalApiUsage: 0, skippedLines: 30 });
  expect(await counts(702)).toEqual([15, 15]);
});

test("an unknown external API (found only by the database) rolls back the batch's model lines too, and names its line", async () => {
  const lines = interleaved(704, 20);
  // Line 16 is an API line whose API does not exist: the foreign key fails after the batch's
  // model lines were inserted in the same transaction.
  const broken = [...lines.slice(0, 15), JSON.stringify({ userId: 704, externalApiId: 999_999, callCount: 1 }), ...lines.slice(16)];
  const failure = await recordNdjson(t.db, Readable.from(broken.join("\n")), { batchSize: 10 }).catch((e) => e);
  expect(failure).toBeInstanceOf(InputLineError);
  expect(failure).toMatchObject({ line: 16, recordedLines: 10 });
  expect(failure.message).toContain("ps_external_apis");
  expect(await counts(704)).toEqual([5, 5]);
  // And an unknown model in a batch whose API lines are fine.
  const badModel = [...lines.slice(0, 12), JSON.stringify({ userId: 704, modelId: 999_999, tokenInCount: 1 }), ...lines.slice(13)];
  const modelFailure = await recordNdjson(t.db, Readable.from(badModel.join("\n")), { batchSize: 10 }).catch((e) => e);
  expect(modelFailure).toMatchObject({ line: 13, recordedLines: 10 });
  expect(modelFailure.message).toContain("ps_ai_models");
  expect(await counts(704)).toEqual([10, 10]);
});

test("a bad model line writes nothing of its batch; the batches before it stay", async () => {
  const lines = interleaved(703, 20);
  const broken = [...lines.slice(0, 14), modelLine(703, -3), ...lines.slice(15)];
  const failure = await recordNdjson(t.db, Readable.from(broken.join("\n")), { batchSize: 10 }).catch((e) => e);
  expect(failure).toMatchObject({ line: 15, recordedLines: 10 });
  expect(await counts(703)).toEqual([5, 5]);
});
