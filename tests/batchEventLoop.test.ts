// A large batch must not freeze the host's event loop: on the embedded database every statement
// runs on the caller's thread (PGlite is WebAssembly in-process), so a batch yields between its
// chunks; it stays all or nothing.
import { recordModelUsageBatch, type ModelUsageInput } from "../src";
import { createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let modelId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db, "m");
});
afterAll(() => t.dispose());

/** Runs `work` while a 5 ms interval timer ticks; returns the longest gap between ticks and the total time. */
async function watchEventLoop(work: () => Promise<unknown>): Promise<{ longestGapMs: number; totalMs: number; ticks: number }> {
  let last = performance.now();
  let longestGapMs = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
    ticks++;
  }, 5);
  const started = performance.now();
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  const end = performance.now();
  return { longestGapMs: Math.max(longestGapMs, end - last), totalMs: end - started, ticks };
}

test("a 200k-row batch lets timers run between its chunks: no stretch blocks the loop for a large part of the batch", async () => {
  const inputs: ModelUsageInput[] = Array.from({ length: 200_000 }, (_, i) => ({ userId: 1 + (i % 7), modelId, tokenInCount: i % 1000 }));
  const watched = await watchEventLoop(() => recordModelUsageBatch(t.db, inputs));
  if (process.env.PS_USAGE_TEST_VERBOSE) console.log(watched);
  expect(await t.db.prisma.psModelUsage.count()).toBe(200_000);
  // Today's measure is relative, not a speed target: the loop ran many times during the batch
  // and no single stretch took more than a tenth of it (a batch that never yields blocks it all).
  expect(watched.ticks).toBeGreaterThan(20);
  expect(watched.longestGapMs).toBeLessThan(watched.totalMs / 10);
});

test("all or nothing still: a bad reference in the last chunk leaves no row of the batch", async () => {
  const before = await t.db.prisma.psModelUsage.count();
  const inputs: ModelUsageInput[] = Array.from({ length: 50_000 }, () => ({ userId: 9, modelId, tokenInCount: 1 }));
  inputs[49_999] = { userId: 9, modelId: 999_999, tokenInCount: 1 };
  await expect(recordModelUsageBatch(t.db, inputs)).rejects.toThrow(/ps_ai_models/);
  expect(await t.db.prisma.psModelUsage.count()).toBe(before);
});
