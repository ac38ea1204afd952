// Recording model usage: single rows, batches (one statement per chunk, all or nothing),
// validation that lists every bad field, unknown references, and raw model calls split into
// long context the PolicySynth way.
import fc from "fast-check";
import {
  MAX_INT32,
  MODEL_USAGE_COUNTERS,
  UnknownReferenceError,
  recordModelCall,
  recordModelUsage,
  recordModelUsageBatch,
  type ModelUsageInput,
  type ModelUsageRecord,
} from "../src";
import { createAgent, createConnector, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { issuesOf } from "./support/errors";

let t: TestDatabase;
let modelId: number;
let otherModelId: number;
let agentId: number;
let connectorId: number;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db, "gpt-record");
  otherModelId = await createModel(t.db, "claude-record");
  agentId = await createAgent(t.db);
  connectorId = await createConnector(t.db);
});
afterAll(() => t.dispose());

const rowCount = () => t.db.prisma.psModelUsage.count();


describe("recordModelUsage", () => {
  test("every counter round-trips, and the stored row is returned as a plain record", async () => {
    const counters = Object.fromEntries(MODEL_USAGE_COUNTERS.map(([field], i) => [field, 1000 + i * 7]));
    const createdAt = new Date("2025-03-04T05:06:07.089Z");
    const row = await recordModelUsage(t.db, { userId: 42, modelId, agentId, connectorId, createdAt, ...counters });

    expect(row).toEqual({
      id: row.id,
      userId: 42,
      modelId,
      agentId,
      connectorId,
      createdAt,
      updatedAt: row.updatedAt,
      ...counters,
      // Not given: no web searches, standard tier, no regional processing.
      webSearchCount: 0,
      serviceTier: null,
      regionalProcessing: null,
    });
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
    const stored = await t.db.prisma.psModelUsage.findUniqueOrThrow({ where: { id: row.id } });
    for (const [field] of MODEL_USAGE_COUNTERS) expect(stored[field]).toBe(counters[field]);
    expect(stored.createdAt).toEqual(createdAt);
  });

  test("counters not given are 0, agent and connector null, createdAt the database's now", async () => {
    const before = Date.now();
    const row = await recordModelUsage(t.db, { userId: 5, modelId, tokenOutCount: 12 });
    for (const [field] of MODEL_USAGE_COUNTERS) expect(row[field]).toBe(field === "tokenOutCount" ? 12 : 0);
    expect(row.agentId).toBeNull();
    expect(row.connectorId).toBeNull();
    expect(Math.abs(row.createdAt.getTime() - before)).toBeLessThan(60_000);
  });

  test("the largest INTEGER is accepted and stored exactly", async () => {
    const row = await recordModelUsage(t.db, { userId: MAX_INT32, modelId, tokenInCount: MAX_INT32 });
    expect(row.tokenInCount).toBe(2_147_483_647);
    expect(row.userId).toBe(2_147_483_647);
  });

  test("each event is its own row: two records of the same model and agent are not merged", async () => {
    const a = await recordModelUsage(t.db, { userId: 9, modelId, agentId, tokenInCount: 1 });
    const b = await recordModelUsage(t.db, { userId: 9, modelId, agentId, tokenInCount: 2 });
    expect(b.id).not.toBe(a.id);
    expect([a.tokenInCount, b.tokenInCount]).toEqual([1, 2]);
  });
});

describe("validation", () => {
  test.each<[string, unknown, RegExp]>([
    ["a float", 1.5, /must be an integer, got 1\.5/],
    ["NaN", NaN, /must be a finite integer, got NaN/],
    ["Infinity", Infinity, /must be a finite integer, got Infinity/],
    ["a numeric string", "12", /must be a number, got string "12"/],
    ["a bigint", 12n, /must be a number, got bigint 12/],
    ["a boolean", true, /must be a number, got boolean true/],
    ["null", null, /must be a number, got null/],
    ["an object", { valueOf: () => 3 }, /must be a number, got an object/],
    ["a negative", -1, /must not be negative, got -1/],
    ["one above INTEGER", MAX_INT32 + 1, /must be at most 2147483647 \(PostgreSQL INTEGER\), got 2147483648/],
  ])("a counter that is %s is rejected with its reason, nothing written", async (_, value, reason) => {
    const before = await rowCount();
    const issues = await issuesOf(recordModelUsage(t.db, { userId: 1, modelId, tokenOutCount: value } as never));
    expect(issues).toEqual([{ field: "tokenOutCount", reason: expect.stringMatching(reason) }]);
    expect(await rowCount()).toBe(before);
  });

  test("ids must be positive integers; userId and modelId are required", async () => {
    expect(await issuesOf(recordModelUsage(t.db, { userId: 0, modelId: -3, agentId: 2.5, connectorId: "7" } as never))).toEqual([
      { field: "modelId", reason: "must be a positive integer, got -3" },
      { field: "userId", reason: "must be a positive integer, got 0" },
      { field: "agentId", reason: "must be an integer, got 2.5" },
      { field: "connectorId", reason: 'must be a number, got string "7"' },
    ]);
    expect(await issuesOf(recordModelUsage(t.db, {} as never))).toEqual([
      { field: "modelId", reason: "is required" },
      { field: "userId", reason: "is required" },
    ]);
  });

  test("every bad field is listed at once, unknown fields with a did-you-mean hint", async () => {
    const issues = await issuesOf(
      recordModelUsage(t.db, { userId: 1, modelId, tokenInCount: -1, tokenOutCount: 0.5, tokenInCont: 5, surprise: 1 } as never),
    );
    expect(issues).toEqual([
      { field: "tokenInCount", reason: "must not be negative, got -1" },
      { field: "tokenOutCount", reason: "must be an integer, got 0.5" },
      { field: "tokenInCont", reason: "is not a field of ModelUsageInput (did you mean tokenInCount?)" },
      { field: "surprise", reason: "is not a field of ModelUsageInput" },
    ]);
    expect((await issuesOf(recordModelUsage(t.db, { userId: 1, modelId, tokenInCont: 5 } as never)))[0].field).toBe("tokenInCont");
  });

  test("createdAt must be a valid Date within years 1-9999", async () => {
    const bad = async (createdAt: unknown) => (await issuesOf(recordModelUsage(t.db, { userId: 1, modelId, createdAt } as never)))[0];
    expect(await bad("2025-01-01")).toEqual({ field: "createdAt", reason: 'must be a Date, got string "2025-01-01"' });
    expect(await bad(new Date("nope"))).toEqual({ field: "createdAt", reason: "must be a valid Date, got Invalid Date" });
    expect(await bad(new Date(Date.UTC(10000, 0, 1)))).toEqual({ field: "createdAt", reason: expect.stringMatching(/between years 1 and 9999/) });
    expect(await bad(1735689600000)).toEqual({ field: "createdAt", reason: "must be a Date, got 1735689600000" });
  });

  test("an input that is not an object, and bad options, are rejected", async () => {
    expect(await issuesOf(recordModelUsage(t.db, null as never))).toEqual([{ field: "input", reason: "must be an object, got null" }]);
    expect(await issuesOf(recordModelUsage(t.db, [] as never))).toEqual([{ field: "input", reason: "must be an object, got an array" }]);
    expect(await issuesOf(recordModelUsage(t.db, { userId: 1, modelId }, { idempotencyKey: "" }))).toEqual([
      { field: "options.idempotencyKey", reason: "must not be empty" },
    ]);
    expect(await issuesOf(recordModelUsage(t.db, { userId: 1, modelId }, { idempotencyKey: "k".repeat(256) }))).toEqual([
      { field: "options.idempotencyKey", reason: "must be at most 255 characters, got 256" },
    ]);
    expect(await issuesOf(recordModelUsage(t.db, { userId: 1, modelId }, { idemKey: "x" } as never))).toEqual([
      { field: "options.idemKey", reason: "is not an option (known: idempotencyKey, enforceBudgets)" },
    ]);
  });

  test("huge strings are cut in messages", async () => {
    const issues = await issuesOf(recordModelUsage(t.db, { userId: 1, modelId, tokenInCount: "x".repeat(1_000_000) } as never));
    expect(issues[0].reason.length).toBeLessThan(100);
  });
});

describe("unknown references", () => {
  test.each([
    ["model", () => ({ userId: 1, modelId: 999_001 }), "ps_ai_models", 999_001],
    ["agent", () => ({ userId: 1, modelId, agentId: 999_002 }), "ps_agents", 999_002],
    ["connector", () => ({ userId: 1, modelId, connectorId: 999_003 }), "ps_agent_connectors", 999_003],
  ] as const)("a missing %s names its table and id, nothing written", async (_, input, table, id) => {
    const before = await rowCount();
    const error = await recordModelUsage(t.db, input()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownReferenceError);
    expect(error).toMatchObject({ table, id, code: "PS_USAGE_UNKNOWN_REFERENCE" });
    expect(await rowCount()).toBe(before);
  });

  test.each([
    ["model", { modelId: 999_101 }, "ps_ai_models", 999_101],
    ["agent", { agentId: 999_102 }, "ps_agents", 999_102],
    ["connector", { connectorId: 999_103 }, "ps_agent_connectors", 999_103],
  ] as const)("a batch with a missing %s names the table and id, nothing written", async (_, bad, table, id) => {
    const before = await rowCount();
    const inputs: ModelUsageInput[] = [
      { userId: 1, modelId, agentId, connectorId, tokenInCount: 1 },
      { userId: 1, modelId, agentId, connectorId, tokenInCount: 2, ...bad },
      { userId: 1, modelId, tokenInCount: 3 },
    ];
    const error = await recordModelUsageBatch(t.db, inputs).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownReferenceError);
    expect(error).toMatchObject({ table, id });
    expect(await rowCount()).toBe(before);
  });
});

describe("recordModelUsageBatch", () => {
  test("a batch is stored exactly, in input order with returnIds", async () => {
    const inputs: ModelUsageInput[] = [
      { userId: 1, modelId, tokenInCount: 10, tokenOutCount: 20 },
      { userId: 2, modelId: otherModelId, agentId, connectorId, longContextTokenOutImageCount: 7, createdAt: new Date("2024-02-29T23:59:59.999Z") },
      { userId: 3, modelId, agentId: null, connectorId: null, tokenInCacheWriteCount: MAX_INT32 },
    ];
    const result = await recordModelUsageBatch(t.db, inputs, { returnIds: true });
    expect(result.count).toBe(3);
    expect(result.ids).toHaveLength(3);
    const rows = await t.db.prisma.psModelUsage.findMany({ where: { id: { in: [...result.ids!] } } });
    const byId = new Map(rows.map((r) => [r.id, r]));
    inputs.forEach((input, i) => {
      const row = byId.get(result.ids![i])!;
      expect(row.userId).toBe(input.userId);
      expect(row.modelId).toBe(input.modelId);
      expect(row.agentId).toBe(input.agentId ?? null);
      expect(row.connectorId).toBe(input.connectorId ?? null);
      for (const [field] of MODEL_USAGE_COUNTERS) expect(row[field]).toBe(input[field] ?? 0);
    });
    expect(byId.get(result.ids![1])!.createdAt).toEqual(new Date("2024-02-29T23:59:59.999Z"));
    expect(result.ids![0]).toBeLessThan(result.ids![1]);
    expect(result.ids![1]).toBeLessThan(result.ids![2]);
  });

  test("an empty batch writes nothing and returns count 0", async () => {
    expect(await recordModelUsageBatch(t.db, [])).toEqual({ count: 0 });
  });

  test("validation lists every bad field of every bad item with its index, nothing written", async () => {
    const before = await rowCount();
    const issues = await issuesOf(
      recordModelUsageBatch(t.db, [
        { userId: 1, modelId, tokenInCount: 1 },
        { userId: 1, modelId, tokenInCount: -5, tokenOutCount: NaN },
        { userId: 1, modelId, tokenInCount: 1 },
        { modelId, tokenOutCunt: 1 } as never,
        "row" as never,
      ]),
    );
    expect(issues).toEqual([
      { index: 1, field: "tokenInCount", reason: "must not be negative, got -5" },
      { index: 1, field: "tokenOutCount", reason: "must be a finite integer, got NaN" },
      { index: 3, field: "userId", reason: "is required" },
      { index: 3, field: "tokenOutCunt", reason: "is not a field of ModelUsageInput (did you mean tokenOutCount?)" },
      { index: 4, field: "input", reason: 'must be an object, got string "row"' },
    ]);
    expect(await rowCount()).toBe(before);
    expect(await issuesOf(recordModelUsageBatch(t.db, { userId: 1 } as never))).toEqual([
      { field: "inputs", reason: "must be an array, got an object" },
    ]);
    expect(await issuesOf(recordModelUsageBatch(t.db, [], { chunkSize: 0 }))).toEqual([
      { field: "options.chunkSize", reason: "must be a positive integer, got 0" },
    ]);
  });

  test("a batch of several chunks is one transaction: a late chunk's missing agent leaves the table unchanged", async () => {
    const before = await rowCount();
    const inputs: ModelUsageInput[] = Array.from({ length: 2_500 }, (_, i) => ({ userId: 1, modelId, agentId, tokenInCount: i }));
    // Item 2,400 is in the fifth and last chunk of 500: the first four are already inserted when it fails.
    inputs[2_400] = { userId: 1, modelId, agentId: 999_777, tokenInCount: 1 };
    const error = await recordModelUsageBatch(t.db, inputs, { chunkSize: 500 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ table: "ps_agents", id: 999_777 });
    expect(await rowCount()).toBe(before);
  });

  test("a batch of several chunks stores every row once", async () => {
    const before = await rowCount();
    const inputs: ModelUsageInput[] = Array.from({ length: 1_234 }, (_, i) => ({ userId: 77, modelId, tokenOutCount: i + 1 }));
    const result = await recordModelUsageBatch(t.db, inputs, { chunkSize: 100, returnIds: true });
    expect(result.count).toBe(1_234);
    expect(new Set(result.ids).size).toBe(1_234);
    expect(await rowCount()).toBe(before + 1_234);
    const sum = await t.db.prisma.psModelUsage.aggregate({ where: { userId: 77 }, _sum: { tokenOutCount: true } });
    expect(sum._sum.tokenOutCount).toBe((1_234 * 1_235) / 2);
  });

  test("property: any valid batch round-trips exactly", async () => {
    const counter = fc.integer({ min: 0, max: MAX_INT32 });
    const item = fc.record(
      {
        userId: fc.integer({ min: 1, max: MAX_INT32 }),
        modelId: fc.constantFrom(modelId, otherModelId),
        agentId: fc.constantFrom(agentId, null),
        connectorId: fc.constantFrom(connectorId, null),
        createdAt: fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true }),
        ...Object.fromEntries(MODEL_USAGE_COUNTERS.map(([field]) => [field, counter])),
      },
      { requiredKeys: ["userId", "modelId"] },
    ) as fc.Arbitrary<ModelUsageInput>;
    await fc.assert(
      fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 40 }), async (inputs) => {
        const { ids } = await recordModelUsageBatch(t.db, inputs, { returnIds: true, chunkSize: 16 });
        const rows = await t.db.prisma.psModelUsage.findMany({ where: { id: { in: [...ids!] } } });
        const byId = new Map(rows.map((r) => [r.id, r]));
        inputs.forEach((input, i) => {
          const row = byId.get(ids![i])!;
          expect(row.userId).toBe(input.userId);
          expect(row.modelId).toBe(input.modelId);
          expect(row.agentId).toBe(input.agentId ?? null);
          expect(row.connectorId).toBe(input.connectorId ?? null);
          if (input.createdAt) expect(row.createdAt).toEqual(input.createdAt);
          for (const [field] of MODEL_USAGE_COUNTERS) expect(row[field]).toBe(input[field] ?? 0);
        });
      }),
      { numRuns: 25 },
    );
  });
});

describe("recordModelCall", () => {
  const call = () => ({
    userId: 3,
    modelId,
    agentId,
    inputTokens: 90_000,
    cachedInputTokens: 8_000,
    cacheWriteInputTokens: 2_000,
    outputTokens: 1_500,
    reasoningTokens: 700,
    audioTokens: 30,
    imageTokens: 4,
  });
  const normal = (row: ModelUsageRecord) => [row.tokenInCount, row.tokenInCachedContextCount, row.tokenInCacheWriteCount, row.tokenOutCount, row.tokenOutReasoningCount, row.tokenOutAudioCount, row.tokenOutImageCount];
  const long = (row: ModelUsageRecord) => [row.longContextTokenInCount, row.longContextTokenInCachedContextCount, row.longContextTokenInCacheWriteCount, row.longContextTokenOutCount, row.longContextTokenOutReasoningCount, row.longContextTokenOutAudioCount, row.longContextTokenOutImageCount];
  const all = [90_000, 8_000, 2_000, 1_500, 700, 30, 4];
  const zeros = [0, 0, 0, 0, 0, 0, 0];

  test("below the threshold (total input 100,000 < 100,001): normal columns", async () => {
    const row = await recordModelCall(t.db, call(), { longContextTokenThreshold: 100_001 });
    expect(normal(row)).toEqual(all);
    expect(long(row)).toEqual(zeros);
  });

  test("at the threshold (input + cached + cache write = 100,000): every token is long context", async () => {
    const row = await recordModelCall(t.db, call(), { longContextTokenThreshold: 100_000 });
    expect(normal(row)).toEqual(zeros);
    expect(long(row)).toEqual(all);
  });

  test("above the threshold: long context", async () => {
    const row = await recordModelCall(t.db, call(), { longContextTokenThreshold: 50_000 });
    expect(long(row)).toEqual(all);
    expect(normal(row)).toEqual(zeros);
  });

  test("cached and cache-write tokens count toward the threshold", async () => {
    // 90,000 uncached tokens alone are below 95,000; with the cached ones the call reaches it.
    const row = await recordModelCall(t.db, call(), { longContextTokenThreshold: 95_000 });
    expect(row.longContextTokenInCount).toBe(90_000);
  });

  test("no threshold (absent, null or 0) never means long context", async () => {
    for (const options of [undefined, { longContextTokenThreshold: null }, { longContextTokenThreshold: 0 }]) {
      const row = await recordModelCall(t.db, call(), options);
      expect(normal(row)).toEqual(all);
    }
  });

  test("a raw call is validated with its own field names; an idempotency key applies", async () => {
    expect(
      await issuesOf(recordModelCall(t.db, { userId: 3, modelId, inputTokens: -1, tokenInCount: 5 } as never, { longContextTokenThreshold: -2 })),
    ).toEqual([
      { field: "inputTokens", reason: "must not be negative, got -1" },
      { field: "outputTokens", reason: "is required" },
      { field: "tokenInCount", reason: "is not a field of ModelCallInput" },
      { field: "options.longContextTokenThreshold", reason: "must not be negative, got -2" },
    ]);
    const first = await recordModelCall(t.db, call(), { idempotencyKey: "raw-call-1" });
    const again = await recordModelCall(t.db, call(), { idempotencyKey: "raw-call-1" });
    expect(again).toEqual(first);
  });
});
