// A view's ownership check of agents and connectors holds at commit: an agent handed to another
// user while a record is being written is refused, because the check locks the agent's row in
// the insert's transaction. Needs a second connection, so PostgreSQL only.
import { Client } from "pg";
import { forUser, UsageValidationError } from "../src";
import { createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

const ALICE = 11;
const BOB = 22;

let t: TestDatabase;
let modelId: number;
let other: Client;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db);
  other = new Client({ connectionString: t.url });
  await other.connect();
});
afterAll(async () => {
  await other.end();
  await t.dispose();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (at most ~10 s) until a backend of this database waits for a row lock; false if none did. */
async function someoneWaitsForALock(): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await other.query(
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
    );
    if (rows.length > 0) return true;
    await sleep(50);
  }
  return false;
}

async function usageRows(): Promise<number> {
  return t.db.prisma.psModelUsage.count();
}

test.each([
  ["a single record", (agentId: number) => forUser(t.db, ALICE).recordModelUsage({ modelId, agentId, tokenInCount: 1 }), undefined],
  [
    "a batch",
    (agentId: number) => forUser(t.db, ALICE).recordModelUsageBatch([{ modelId }, { modelId, agentId }], { chunkSize: 1 }),
    1,
  ],
])("%s with an agent handed to another user meanwhile is refused once the hand-over commits", async (_name, record, index) => {
  const agentId = (await t.db.prisma.psAgent.create({ data: { userId: ALICE, classId: 1, groupId: 1 } })).id;
  const before = await usageRows();
  await other.query("BEGIN");
  await other.query("UPDATE ps_agents SET user_id = $1 WHERE id = $2", [BOB, agentId]);
  const outcome = record(agentId).then(
    () => null,
    (e: unknown) => e,
  );
  // The check waits for the hand-over (without the lock it would pass and write at once).
  const waited = await someoneWaitsForALock();
  await other.query("COMMIT");
  const error = await outcome;
  expect(waited).toBe(true);
  expect(error).toBeInstanceOf(UsageValidationError);
  expect((error as UsageValidationError).issues).toEqual([
    { field: "agentId", reason: `belongs to another user (this view is confined to user ${ALICE})`, ...(index === undefined ? {} : { index }) },
  ]);
  expect(await usageRows()).toBe(before);
});

test("two users racing with one batch key: one records, the other is refused, never a replay", async () => {
  const key = "race-key";
  const outcomes = await Promise.all(
    [ALICE, BOB, ALICE, BOB].map((user) =>
      forUser(t.db, user)
        .recordModelUsageBatch([{ modelId, tokenInCount: user }], { idempotencyKey: key })
        .then(
          (r) => ({ user, result: r as object }),
          (e: UsageValidationError) => ({ user, result: e.issues as object }),
        ),
    ),
  );
  const stored = await t.db.prisma.psUsageIdempotencyKey.findUniqueOrThrow({ where: { key } });
  const winner = stored.userId;
  const loser = winner === ALICE ? BOB : ALICE;
  // The winner's two calls: one records, one replays; the loser's two are refused.
  expect(outcomes.filter((o) => o.user === winner).map((o) => o.result)).toEqual(
    expect.arrayContaining([{ count: 1 }, { count: 0, replayed: true }]),
  );
  for (const o of outcomes.filter((o) => o.user === loser)) {
    expect(o.result).toEqual([{ field: "options.idempotencyKey", reason: "was already used by another user" }]);
  }
  expect(await t.db.prisma.psModelUsage.count({ where: { userId: loser } })).toBe(0);
  expect(await t.db.prisma.psModelUsage.count({ where: { userId: winner! } })).toBe(1);
});
