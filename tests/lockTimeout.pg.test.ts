// A lock not granted within the server's lock_timeout (PostgreSQL 55P03) is a DatabaseTimeoutError
// of phase "lock" wherever it happens: on a record, as on rebuildRollups and prune, which map it
// through the same helper (usageShared's lockTimeoutError).
import { Client } from "pg";
import { DatabaseTimeoutError, openDatabase, recordModelUsage, recordModelUsageBatch, type Database } from "../src";
import { createModel } from "./support/fixtures";
import { createScratchDatabase } from "./support/testDatabase";

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let db: Database;
let modelId: number;

beforeAll(async () => {
  scratch = await createScratchDatabase();
  const setup = await openDatabase({ url: scratch.url, migrate: true });
  modelId = await createModel(setup);
  await setup.close();
  // As a DBA may set it for the application's role or database.
  const admin = new Client({ connectionString: scratch.url });
  await admin.connect();
  await admin.query(`ALTER DATABASE "${scratch.name}" SET lock_timeout = '200ms'`);
  await admin.end();
  db = await openDatabase({ url: scratch.url });
});
afterAll(async () => {
  await db?.close();
  await scratch?.drop();
});

test("a record or a batch that cannot get its table lock in lock_timeout is a DatabaseTimeoutError of phase lock, and writes nothing", async () => {
  const holder = new Client({ connectionString: scratch.url });
  await holder.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE ps_model_usage IN ACCESS EXCLUSIVE MODE");
    for (const write of [
      () => recordModelUsage(db, { userId: 1, modelId, tokenInCount: 1 }),
      () => recordModelUsageBatch(db, [{ userId: 1, modelId, tokenInCount: 1 }]),
    ]) {
      const error = await write().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseTimeoutError);
      expect((error as DatabaseTimeoutError).phase).toBe("lock");
      expect((error as DatabaseTimeoutError).message).toMatch(/^No table lock on database .* in time: .*lock timeout/);
    }
  } finally {
    await holder.query("ROLLBACK");
    await holder.end();
  }
  expect(await db.prisma.psModelUsage.count()).toBe(0);
});
