import { migrationStatus, readMigrations } from "../src";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.dispose());

test("a fresh test database is fully migrated", async () => {
  const status = await migrationStatus(t.db);
  expect(status.pending).toEqual([]);
  expect(status.applied.map((m) => m.name)).toEqual(readMigrations().map((m) => m.name));
});
