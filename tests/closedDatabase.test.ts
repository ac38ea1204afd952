// A call on a Database after close() is a typed DatabaseConnectionError naming the database,
// on both backends, refused before it reaches the driver (PGlite would say "PGlite is closed", an
// ended pg pool "Cannot use a pool after calling end"), not a plain Error.
import {
  DatabaseConnectionError,
  findModelUsage,
  openDatabase,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  setBudget,
  budgetStatus,
  listBudgets,
} from "../src";
import { createExternalApi, createModel } from "./support/fixtures";
import { backend, createScratchDatabase } from "./support/testDatabase";

test("every record, find and sum on a closed Database rejects with DatabaseConnectionError", async () => {
  const scratch = backend === "postgres" ? await createScratchDatabase() : null;
  const db = await openDatabase(scratch ? { url: scratch.url, migrate: true } : { dataDir: "memory://", migrate: true });
  try {
    const modelId = await createModel(db);
    const externalApiId = await createExternalApi(db);
    await recordModelUsage(db, { userId: 1, modelId, tokenInCount: 1 });
    await db.close();
    const calls: [string, () => Promise<unknown>][] = [
      ["recordModelUsage", () => recordModelUsage(db, { userId: 1, modelId })],
      ["recordModelUsage with a key", () => recordModelUsage(db, { userId: 1, modelId }, { idempotencyKey: "after-close" })],
      ["recordModelUsageBatch", () => recordModelUsageBatch(db, [{ userId: 1, modelId }])],
      ["recordModelUsageBatch in chunks", () => recordModelUsageBatch(db, [{ userId: 1, modelId }, { userId: 1, modelId }], { chunkSize: 1 })],
      ["recordExternalApiUsage", () => recordExternalApiUsage(db, { userId: 1, externalApiId, callCount: 1 })],
      ["recordExternalApiUsageBatch", () => recordExternalApiUsageBatch(db, [{ userId: 1, externalApiId, callCount: 1 }])],
      ["findModelUsage", () => findModelUsage(db)],
      ["sumModelUsage", () => sumModelUsage(db)],
      ["sumExternalApiUsage", () => sumExternalApiUsage(db)],
      ["setBudget", () => setBudget(db, { name: "b", period: "day", amount: 1, currency: "USD" })],
      ["listBudgets", () => listBudgets(db)],
      ["budgetStatus", () => budgetStatus(db, "b")],
      ["recordModelUsage with enforceBudgets", () => recordModelUsage(db, { userId: 1, modelId }, { enforceBudgets: true })],
    ];
    for (const [name, call] of calls) {
      const error = await call().then(
        () => new Error(`${name} succeeded on a closed database`),
        (e: unknown) => e,
      );
      expect([name, error]).toEqual([name, expect.any(DatabaseConnectionError)]);
      expect((error as DatabaseConnectionError).target).toBe(db.target);
      expect((error as DatabaseConnectionError).lost).toBe(true);
      expect((error as DatabaseConnectionError).message).toContain(`Lost the connection to database ${db.target}`);
      expect((error as DatabaseConnectionError).message).toMatch(/the database was closed \(close\(\) was called\)/);
    }
  } finally {
    await db.close();
    await scratch?.drop();
  }
});
