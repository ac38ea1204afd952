// Sums past 2^53, where a JS number can no longer hold every integer. An INTEGER counter is at
// most 2^31 - 1, so it takes 2^22 + 1 = 4,194,305 rows at the maximum to get there. They are
// inserted by one generate_series statement (the record API is not what is tested here); on PGlite
// that alone takes about a minute.
import { MAX_INT32, sumAgentTreeUsage, sumModelUsage } from "../src";
import { createAgent, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

const ROWS = 4_194_305;
const ROOT_ROWS = 2_097_152; // the even-numbered rows
const CHILD_ROWS = ROWS - ROOT_ROWS;
const TWO_POW_53 = 2n ** 53n;

let t: TestDatabase;
let root: number, child: number;

beforeAll(async () => {
  // Millions of rows in one INSERT: longer than the 30 s a write may run by default on a busy machine.
  t = await openTestDatabase({ writeTimeoutMs: 600_000 });
  const model = await createModel(t.db);
  root = await createAgent(t.db);
  child = await createAgent(t.db, root);
  await t.db.prisma.$executeRaw`
    INSERT INTO ps_model_usage (user_id, model_id, agent_id, token_in_count, long_context_token_out_image_count, created_at)
    SELECT 1, ${model}, CASE WHEN g % 2 = 0 THEN ${root}::int ELSE ${child}::int END, ${MAX_INT32}, ${MAX_INT32 - 1},
      '2026-05-01T12:00:00Z'::timestamptz
    FROM generate_series(1, ${ROWS}::int) AS g`;
}, 600_000);
afterAll(() => t.dispose());

test("a total past 2^53 is exact, for the first and the last counter", async () => {
  const [total] = await sumModelUsage(t.db);
  expect(total.events).toBe(BigInt(ROWS));
  expect(total.tokenInCount).toBe(BigInt(ROWS) * BigInt(MAX_INT32));
  expect(total.tokenInCount).toBe(9_007_201_398_030_335n);
  expect(total.tokenInCount > TWO_POW_53).toBe(true);
  // The same value as a double is off by one: only a bigint carries it.
  expect(BigInt(Number(total.tokenInCount))).not.toBe(total.tokenInCount);
  expect(total.longContextTokenOutImageCount).toBe(BigInt(ROWS) * BigInt(MAX_INT32 - 1));
  expect(total.tokenOutCount).toBe(0n);
}, 600_000);

test("grouped and bucketed sums are exact too", async () => {
  const rows = await sumModelUsage(t.db, { groupBy: ["userId"], bucket: "day", timeZone: "Europe/Berlin" });
  expect(rows.map((r) => [r.userId, r.bucketStart.toISOString(), r.events, r.tokenInCount])).toEqual([
    [1, "2026-04-30T22:00:00.000Z", BigInt(ROWS), 9_007_201_398_030_335n],
  ]);
}, 600_000);

test("the agent tree total, added from per-agent sums, is exact past 2^53", async () => {
  const tree = await sumAgentTreeUsage(t.db, root);
  expect(tree.agents.map((a) => [a.agentId, a.modelUsage.events, a.modelUsage.tokenInCount])).toEqual([
    [root, BigInt(ROOT_ROWS), BigInt(ROOT_ROWS) * BigInt(MAX_INT32)],
    [child, BigInt(CHILD_ROWS), BigInt(CHILD_ROWS) * BigInt(MAX_INT32)],
  ]);
  expect(tree.total.modelUsage.tokenInCount).toBe(9_007_201_398_030_335n);
}, 600_000);
