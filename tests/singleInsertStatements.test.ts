// The statements of a single record (src/ledger/singleInsert.ts). The plain insert leaves its
// parameters to the columns' types: PGlite parses and plans every call, and the casts cost about
// 15% of the statement there (bench/NOTES.md). The keyed one must cast: its values are a SELECT's.
import { singleInsertStatements } from "../src/ledger/singleInsert";
import { recordModelUsage, findModelUsage } from "../src";
import { createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

const spec = {
  table: "ps_model_usage",
  keyColumn: "model_usage_id",
  columns: [
    ["user_id", "int", "userId"],
    ["created_at", "timestamptz", "createdAt"],
    ["service_tier", "varchar", "serviceTier"],
  ],
} as const;

test("the plain insert's parameters are untyped (the columns type them); the keyed one casts them", () => {
  const statements = singleInsertStatements(spec);
  expect(statements.plain.text).toContain("VALUES ($1, $2, $3) RETURNING");
  expect(statements.plain.text).not.toMatch(/\$\d+::/);
  expect(statements.keyed.text).toContain("$1::int, $2::timestamptz, $3::varchar");
});

describe("on a database", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase();
  });
  afterAll(() => t.dispose());

  test("a plain record stores the same values as before: times, nulls, text and counters", async () => {
    const modelId = await createModel(t.db);
    const at = new Date("2026-05-06T07:08:09.123Z");
    const row = await recordModelUsage(t.db, { userId: 4, modelId, createdAt: at, tokenInCount: 2_000_000_000, serviceTier: "flex" });
    expect(row).toMatchObject({ userId: 4, modelId, agentId: null, connectorId: null, createdAt: at, updatedAt: at, tokenInCount: 2_000_000_000, tokenOutCount: 0, serviceTier: "flex", regionalProcessing: null });
    const [stored] = (await findModelUsage(t.db.primary, { userId: 4 })).items;
    expect(stored).toEqual(row);
  });
});
