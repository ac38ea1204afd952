// A write PostgreSQL aborts as a deadlock's victim is run again, once, on every write path: the
// rollup triggers lock rows of several tables per statement, and another transaction can hold
// some of them while waiting for one the write holds. The direct path (plain records, batches)
// retried since 05af378; here the writes that run through Prisma's transaction (a guarded record,
// keyed or not, and a guarded batch) are made a deadlock's victim on purpose.
import { Client } from "pg";
import { rebuildRollups, recordModelUsage, recordModelUsageBatch, sumModelUsage, type Database } from "../src";
import { createAgent, createModel } from "./support/fixtures";
import { openScratchPostgres, waitingStatements, type ScratchPostgres } from "./support/testDatabase";

const AT = new Date("2026-03-02T10:07:00Z");

let scratch: ScratchPostgres;
let db: Database;
let admin: Client;
let modelId: number;
let agentId: number;

beforeAll(async () => {
  scratch = await openScratchPostgres();
  ({ db, admin } = scratch);
  modelId = await createModel(db);
  agentId = await createAgent(db);
});
afterAll(() => scratch?.close());

/**
 * Makes `write` a deadlock's victim: another session inserts a row with the same keys and slot
 * (holding every rollup row the write's triggers will upsert), the write waits for it, then that
 * session inserts a row with the id the write's uncommitted row holds (so it waits for the write).
 * Its deadlock_timeout is longer than the write's session's, so the write's backend finds the
 * cycle first and is the victim. The other session commits once the write waits again.
 */
async function asDeadlockVictim<T>(write: () => Promise<T>): Promise<{ row: T; otherId: number }> {
  const other = new Client({ connectionString: scratch.url });
  await other.connect();
  try {
    await other.query("BEGIN");
    await other.query("SET LOCAL deadlock_timeout = '20s'");
    const pid = (await other.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    const insert = `INSERT INTO ps_model_usage (id, user_id, model_id, agent_id, created_at, updated_at, token_in_count)
      VALUES (COALESCE($4, nextval('ps_model_usage_id_seq')), $1, $2, $3, $5, $5, 7) RETURNING id`;
    await other.query(insert, [1, modelId, agentId, null, AT]);
    const written = write();
    written.catch(() => undefined);
    await waitingStatements(admin, 1, [pid]);
    // The write's row holds the sequence's last value; a second row with that id waits for it.
    const { rows } = await other.query<{ last: string }>("SELECT last_value::text AS last FROM ps_model_usage_id_seq");
    const collide = other.query(insert, [1, modelId, agentId, Number(rows[0].last), AT]);
    collide.catch(() => undefined);
    // The victim rolls back (its row and id go), the colliding insert goes through, and the retry waits again.
    const otherId = (await collide).rows[0].id as number;
    // A write that is not retried has failed by now: commit and show its error.
    await Promise.race([waitingStatements(admin, 1, [pid]), written.then(() => undefined, () => undefined)]);
    await other.query("COMMIT");
    return { row: await written, otherId };
  } finally {
    await other.end();
  }
}

test("a guarded record (enforceBudgets) chosen as a deadlock's victim is written once", async () => {
  const [before] = await sumModelUsage(db, { where: { modelId } });
  const { row, otherId } = await asDeadlockVictim(() =>
    recordModelUsage(db, { userId: 1, modelId, agentId, tokenInCount: 1000, createdAt: AT }, { enforceBudgets: true }),
  );
  expect(row.id).not.toBe(otherId);
  const [after] = await sumModelUsage(db, { where: { modelId } });
  expect(after.events - before.events).toBe(3n); // the other session's first row, its colliding one, the retried record
  expect(after.tokenInCount - before.tokenInCount).toBe(BigInt(7 + 7 + 1000));
  expect((await admin.query("SELECT count(*)::int AS n FROM ps_model_usage WHERE token_in_count = 1000")).rows[0].n).toBe(1);
  expect((await rebuildRollups(db, { dryRun: true })).modelUsage.differences).toBe(0);
});

test("a keyed guarded record chosen as a deadlock's victim is written once, its key with it", async () => {
  const { row } = await asDeadlockVictim(() =>
    recordModelUsage(
      db,
      { userId: 1, modelId, agentId, tokenInCount: 2000, createdAt: AT },
      { idempotencyKey: "deadlock-victim-1", enforceBudgets: true },
    ),
  );
  expect((await admin.query("SELECT count(*)::int AS n FROM ps_model_usage WHERE token_in_count = 2000")).rows[0].n).toBe(1);
  const keys = await admin.query("SELECT model_usage_id FROM ps_usage_idempotency_keys WHERE key = 'deadlock-victim-1'");
  expect(keys.rows).toEqual([{ model_usage_id: row.id }]);
  // The replay returns the stored row.
  expect((await recordModelUsage(db, { userId: 1, modelId, agentId, tokenInCount: 2000, createdAt: AT }, { idempotencyKey: "deadlock-victim-1" })).id).toBe(row.id);
  expect((await rebuildRollups(db, { dryRun: true })).modelUsage.differences).toBe(0);
});

test("a guarded batch (enforceBudgets) chosen as a deadlock's victim is written once", async () => {
  const { row: result } = await asDeadlockVictim(() =>
    recordModelUsageBatch(db, [{ userId: 1, modelId, agentId, tokenInCount: 3000, createdAt: AT }], { enforceBudgets: true }),
  );
  expect(result).toEqual({ count: 1 });
  expect((await admin.query("SELECT count(*)::int AS n FROM ps_model_usage WHERE token_in_count = 3000")).rows[0].n).toBe(1);
  expect((await rebuildRollups(db, { dryRun: true })).modelUsage.differences).toBe(0);
});
