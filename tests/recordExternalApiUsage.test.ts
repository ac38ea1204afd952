// Recording external API usage: single rows and batches, required call_count, validation and
// unknown references, all or nothing.
import fc from "fast-check";
import {
  MAX_INT32,
  UnknownReferenceError,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  type ExternalApiUsageInput,
} from "../src";
import { createAgent, createConnector, createExternalApi } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { issuesOf } from "./support/errors";

let t: TestDatabase;
let apiId: number;
let otherApiId: number;
let agentId: number;
let connectorId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  apiId = await createExternalApi(t.db, "web-search");
  otherApiId = await createExternalApi(t.db, "scraper");
  agentId = await createAgent(t.db);
  connectorId = await createConnector(t.db);
});
afterAll(() => t.dispose());

const rowCount = () => t.db.prisma.psExternalApiUsage.count();


test("a record round-trips every field and returns a plain record", async () => {
  const createdAt = new Date("2025-06-30T23:59:59.500Z");
  const row = await recordExternalApiUsage(t.db, { userId: 8, externalApiId: apiId, agentId, connectorId, callCount: 17, createdAt });
  expect(row).toEqual({ id: row.id, userId: 8, externalApiId: apiId, agentId, connectorId, callCount: 17, createdAt, updatedAt: row.updatedAt });
  const stored = await t.db.prisma.psExternalApiUsage.findUniqueOrThrow({ where: { id: row.id } });
  expect(stored.callCount).toBe(17);
  expect(stored.createdAt).toEqual(createdAt);
});

test("callCount is required (no default), may be 0, and must be an INTEGER", async () => {
  expect(await issuesOf(recordExternalApiUsage(t.db, { userId: 1, externalApiId: apiId } as never))).toEqual([
    { field: "callCount", reason: "is required" },
  ]);
  expect((await recordExternalApiUsage(t.db, { userId: 1, externalApiId: apiId, callCount: 0 })).callCount).toBe(0);
  expect(await issuesOf(recordExternalApiUsage(t.db, { userId: 1, externalApiId: apiId, callCount: MAX_INT32 + 1 }))).toEqual([
    { field: "callCount", reason: "must be at most 2147483647 (PostgreSQL INTEGER), got 2147483648" },
  ]);
});

test("every bad field is listed; unknown fields are rejected; nothing written", async () => {
  const before = await rowCount();
  expect(
    await issuesOf(recordExternalApiUsage(t.db, { userId: -1, externalApiId: "2", callCount: 1.25, callcount: 3, agentId: 0 } as never)),
  ).toEqual([
    { field: "externalApiId", reason: 'must be a number, got string "2"' },
    { field: "userId", reason: "must be a positive integer, got -1" },
    { field: "agentId", reason: "must be a positive integer, got 0" },
    { field: "callCount", reason: "must be an integer, got 1.25" },
    { field: "callcount", reason: "is not a field of ExternalApiUsageInput (did you mean callCount?)" },
  ]);
  expect(await rowCount()).toBe(before);
});

test.each([
  ["external API", { externalApiId: 888_001 }, "ps_external_apis", 888_001],
  ["agent", { agentId: 888_002 }, "ps_agents", 888_002],
  ["connector", { connectorId: 888_003 }, "ps_agent_connectors", 888_003],
] as const)("a missing %s names its table and id, single and batch, nothing written", async (_, bad, table, id) => {
  const before = await rowCount();
  const single = await recordExternalApiUsage(t.db, { userId: 1, externalApiId: apiId, callCount: 1, ...bad }).catch((e: unknown) => e);
  expect(single).toBeInstanceOf(UnknownReferenceError);
  expect(single).toMatchObject({ table, id });
  const batch = await recordExternalApiUsageBatch(t.db, [
    { userId: 1, externalApiId: apiId, callCount: 1 },
    { userId: 1, externalApiId: apiId, callCount: 2, ...bad },
  ]).catch((e: unknown) => e);
  expect(batch).toBeInstanceOf(UnknownReferenceError);
  expect(batch).toMatchObject({ table, id });
  expect(await rowCount()).toBe(before);
});

test("a batch lists bad items by index and writes nothing", async () => {
  const before = await rowCount();
  expect(
    await issuesOf(
      recordExternalApiUsageBatch(t.db, [
        { userId: 1, externalApiId: apiId, callCount: 1 },
        { userId: 1, externalApiId: apiId } as never,
        { userId: 1, externalApiId: apiId, callCount: -2, createdAt: new Date(NaN) },
      ]),
    ),
  ).toEqual([
    { index: 1, field: "callCount", reason: "is required" },
    { index: 2, field: "createdAt", reason: "must be a valid Date, got Invalid Date" },
    { index: 2, field: "callCount", reason: "must not be negative, got -2" },
  ]);
  expect(await rowCount()).toBe(before);
});

test("a late chunk failing rolls back the earlier chunks", async () => {
  const before = await rowCount();
  const inputs: ExternalApiUsageInput[] = Array.from({ length: 1_000 }, () => ({ userId: 2, externalApiId: apiId, callCount: 1 }));
  inputs[999] = { userId: 2, externalApiId: 888_999, callCount: 1 };
  const error = await recordExternalApiUsageBatch(t.db, inputs, { chunkSize: 300 }).catch((e: unknown) => e);
  expect(error).toMatchObject({ table: "ps_external_apis", id: 888_999 });
  expect(await rowCount()).toBe(before);
});

test("property: any valid batch round-trips exactly and the call counts add up", async () => {
  const item = fc.record(
    {
      userId: fc.integer({ min: 1, max: MAX_INT32 }),
      externalApiId: fc.constantFrom(apiId, otherApiId),
      callCount: fc.integer({ min: 0, max: MAX_INT32 }),
      agentId: fc.constantFrom(agentId, null),
      connectorId: fc.constantFrom(connectorId, null),
      createdAt: fc.date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2099-12-31T00:00:00Z"), noInvalidDate: true }),
    },
    { requiredKeys: ["userId", "externalApiId", "callCount"] },
  ) as fc.Arbitrary<ExternalApiUsageInput>;
  await fc.assert(
    fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 30 }), async (inputs) => {
      const { ids, count } = await recordExternalApiUsageBatch(t.db, inputs, { returnIds: true, chunkSize: 7 });
      expect(count).toBe(inputs.length);
      const rows = await t.db.prisma.psExternalApiUsage.findMany({ where: { id: { in: [...ids!] } } });
      const byId = new Map(rows.map((r) => [r.id, r]));
      inputs.forEach((input, i) => {
        const row = byId.get(ids![i])!;
        expect({ ...row, id: undefined, createdAt: undefined, updatedAt: undefined }).toEqual({
          id: undefined,
          createdAt: undefined,
          updatedAt: undefined,
          userId: input.userId,
          externalApiId: input.externalApiId,
          callCount: input.callCount,
          agentId: input.agentId ?? null,
          connectorId: input.connectorId ?? null,
        });
        if (input.createdAt) expect(row.createdAt).toEqual(input.createdAt);
      });
    }),
    { numRuns: 25 },
  );
});
