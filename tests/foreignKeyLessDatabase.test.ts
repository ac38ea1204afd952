// A database created by PolicySynth's Sequelize sync() has no database default on the usage
// tables' created_at / updated_at and no foreign keys on their reference columns. Every write
// path sets both timestamps itself (an event row is written once: updated_at = created_at), and
// an unknown model, external API, agent or connector is an UnknownReferenceError there too,
// writing nothing, exactly as the foreign keys make it on a database this package migrated.
import { Readable } from "node:stream";
import { Client } from "pg";
import {
  InputLineError,
  UnknownReferenceError,
  UsageValidationError,
  forUser,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelCall,
  recordModelUsage,
  recordModelUsageBatch,
  recordNdjson,
  seedDemo,
  type Database,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { backend, openTestDatabase, type TestDatabase } from "./support/testDatabase";

/** The six reference foreign keys the init migration creates (prisma/migrations/*_init). */
const REFERENCE_FOREIGN_KEYS = [
  ["ps_model_usage", "ps_model_usage_model_id_fkey"],
  ["ps_model_usage", "ps_model_usage_agent_id_fkey"],
  ["ps_model_usage", "ps_model_usage_connector_id_fkey"],
  ["ps_external_api_usage", "ps_external_api_usage_external_api_id_fkey"],
  ["ps_external_api_usage", "ps_external_api_usage_agent_id_fkey"],
  ["ps_external_api_usage", "ps_external_api_usage_connector_id_fkey"],
] as const;

/** Makes a migrated database look like one PolicySynth's sync() created (before its first write). */
async function makePolicySynthLike(db: Database): Promise<void> {
  for (const table of ["ps_model_usage", "ps_external_api_usage"]) {
    await db.prisma.$executeRawUnsafe(`ALTER TABLE ${table} ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT`);
  }
  for (const [table, constraint] of REFERENCE_FOREIGN_KEYS) {
    await db.prisma.$executeRawUnsafe(`ALTER TABLE ${table} DROP CONSTRAINT ${constraint}`);
  }
}

interface Shape {
  t: TestDatabase;
  modelId: number;
  apiId: number;
  agentId: number;
  connectorId: number;
}

async function openShape(policySynthLike: boolean): Promise<Shape> {
  const t = await openTestDatabase();
  if (policySynthLike) await makePolicySynthLike(t.db);
  return {
    t,
    modelId: await createModel(t.db),
    apiId: await createExternalApi(t.db),
    // Owned by user 1, as every user id the paths below record for.
    agentId: await createAgent(t.db),
    connectorId: await createConnector(t.db),
  };
}

/** Rows of both usage tables and idempotency keys: what "nothing written" is checked against. */
async function counts(db: Database): Promise<number[]> {
  return [await db.prisma.psModelUsage.count(), await db.prisma.psExternalApiUsage.count(), await db.prisma.psUsageIdempotencyKey.count()];
}

interface StoredTimes {
  id: number;
  createdAt: string;
  same: boolean;
}

/** A user's rows of one table, by id: created_at at full microsecond precision, and whether updated_at equals it. */
async function storedTimes(db: Database, table: "model" | "api", userId: number): Promise<StoredTimes[]> {
  return table === "model"
    ? db.prisma.$queryRaw<StoredTimes[]>`
        SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "createdAt", created_at = updated_at AS same
        FROM ps_model_usage WHERE user_id = ${userId} ORDER BY id`
    : db.prisma.$queryRaw<StoredTimes[]>`
        SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "createdAt", created_at = updated_at AS same
        FROM ps_external_api_usage WHERE user_id = ${userId} ORDER BY id`;
}

/** The microsecond text of a JS date (milliseconds, so the last three digits are 0). */
const micros = (d: Date) => `${d.toISOString().slice(0, 23)}000Z`;

const GIVEN = new Date("2025-03-04T05:06:07.089Z");
const GIVEN_2 = new Date("2024-02-29T23:59:59.999Z");
const UNKNOWN = { model: 999_001, api: 999_002, agent: 999_003, connector: 999_004 };

describe.each([
  ["a database shaped like PolicySynth's (no timestamp defaults, no reference foreign keys)", true],
  ["a database this package migrated (regression)", false],
])("%s", (_name, policySynthLike) => {
  let s: Shape;
  beforeAll(async () => {
    s = await openShape(policySynthLike);
  });
  afterAll(() => s.t.dispose());

  test("single records of every kind store updated_at = created_at, and a given createdAt exactly", async () => {
    const db = s.t.db;
    const { modelId, apiId, agentId, connectorId } = s;
    const user = 101;
    // Each path once without and once with createdAt; keyed and forUser paths as well.
    const models = [
      await recordModelUsage(db, { userId: user, modelId, tokenInCount: 1 }),
      await recordModelUsage(db, { userId: user, modelId, agentId, connectorId, tokenInCount: 2, createdAt: GIVEN }),
      await recordModelCall(db, { userId: user, modelId, inputTokens: 3, outputTokens: 1, createdAt: GIVEN_2 }),
      await recordModelUsage(db, { userId: user, modelId, tokenInCount: 4 }, { idempotencyKey: `single-m-${policySynthLike}` }),
      await recordModelUsage(db, { userId: user, modelId, tokenInCount: 5, createdAt: GIVEN }, { idempotencyKey: `single-m2-${policySynthLike}` }),
    ];
    const apis = [
      await recordExternalApiUsage(db, { userId: user, externalApiId: apiId, callCount: 1 }),
      await recordExternalApiUsage(db, { userId: user, externalApiId: apiId, callCount: 2, agentId, connectorId, createdAt: GIVEN }),
      await recordExternalApiUsage(db, { userId: user, externalApiId: apiId, callCount: 3 }, { idempotencyKey: `single-a-${policySynthLike}` }),
    ];
    // The forUser views run the ownership check and the insert in one transaction.
    const otherUser = 102;
    const agentOfOther = (await db.prisma.psAgent.create({ data: { userId: otherUser, classId: 1, groupId: 1 } })).id;
    const viewed = [
      await forUser(db, otherUser).recordModelUsage({ modelId, agentId: agentOfOther, tokenInCount: 6 }),
      await forUser(db, otherUser).recordModelUsage({ modelId, agentId: agentOfOther, createdAt: GIVEN_2 }, { idempotencyKey: `view-${policySynthLike}` }),
    ];
    const viewedApi = await forUser(db, otherUser).recordExternalApiUsage({ externalApiId: apiId, callCount: 4, agentId: agentOfOther, createdAt: GIVEN });

    for (const row of [...models, ...apis, ...viewed, viewedApi]) expect(row.updatedAt).toEqual(row.createdAt);
    expect([models[1].createdAt, models[2].createdAt, models[4].createdAt, apis[1].createdAt, viewed[1].createdAt, viewedApi.createdAt]).toEqual([
      GIVEN,
      GIVEN_2,
      GIVEN,
      GIVEN,
      GIVEN_2,
      GIVEN,
    ]);
    // The same in the database, at full precision.
    const storedModels = await storedTimes(db, "model", user);
    expect(storedModels.map((r) => r.same)).toEqual([true, true, true, true, true]);
    expect(storedModels.map((r) => r.createdAt)).toEqual(models.map((r) => micros(r.createdAt)));
    expect((await storedTimes(db, "api", user)).map((r) => [r.createdAt, r.same])).toEqual(apis.map((r) => [micros(r.createdAt), true]));
    expect((await storedTimes(db, "model", otherUser)).map((r) => [r.createdAt, r.same])).toEqual(viewed.map((r) => [micros(r.createdAt), true]));
    expect((await storedTimes(db, "api", otherUser)).map((r) => [r.createdAt, r.same])).toEqual([[micros(GIVEN), true]]);
  });

  test("batches of both kinds (chunked, keyed, with ids, through a view) store updated_at = created_at", async () => {
    const db = s.t.db;
    const { modelId, apiId, agentId, connectorId } = s;
    const user = 201;
    const modelBatch = [
      { userId: user, modelId, tokenInCount: 1 },
      { userId: user, modelId, agentId, tokenInCount: 2, createdAt: GIVEN },
      { userId: user, modelId, connectorId, tokenInCount: 3 },
      { userId: user, modelId, tokenInCount: 4, createdAt: GIVEN_2 },
      { userId: user, modelId, tokenInCount: 5 },
    ];
    // Three chunks of two rows in one transaction.
    const result = await recordModelUsageBatch(db, modelBatch, { chunkSize: 2, returnIds: true });
    expect(result.count).toBe(5);
    expect(await recordModelUsageBatch(db, modelBatch.slice(0, 2), { idempotencyKey: `batch-m-${policySynthLike}` })).toEqual({ count: 2 });
    expect(
      await recordExternalApiUsageBatch(db, [
        { userId: user, externalApiId: apiId, callCount: 1 },
        { userId: user, externalApiId: apiId, callCount: 2, agentId, connectorId, createdAt: GIVEN },
      ]),
    ).toEqual({ count: 2 });
    expect(
      await recordExternalApiUsageBatch(db, [{ userId: user, externalApiId: apiId, callCount: 3, createdAt: GIVEN_2 }], {
        idempotencyKey: `batch-a-${policySynthLike}`,
      }),
    ).toEqual({ count: 1 });
    // A view's batches check ownership in the same transaction.
    const view = forUser(db, user);
    const ownAgent = (await db.prisma.psAgent.create({ data: { userId: user, classId: 1, groupId: 1 } })).id;
    expect(await view.recordModelUsageBatch([{ modelId, agentId: ownAgent, tokenInCount: 6 }, { modelId, createdAt: GIVEN }])).toEqual({ count: 2 });
    expect(await view.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 4, agentId: ownAgent }])).toEqual({ count: 1 });

    const models = await storedTimes(db, "model", user);
    expect(models.every((r) => r.same)).toBe(true);
    expect(models.slice(0, 5).map((r) => r.id)).toEqual(result.ids);
    const first = models.slice(0, 5).map((r) => r.createdAt);
    expect([first[1], first[3]]).toEqual([micros(GIVEN), micros(GIVEN_2)]);
    // Rows without createdAt take the batch's one "now" (its transaction's), as before.
    expect(new Set([first[0], first[2], first[4]]).size).toBe(1);
    expect(models.map((r) => r.createdAt)[6]).toBe(micros(GIVEN));
    expect(models.map((r) => r.createdAt)[8]).toBe(micros(GIVEN));
    expect(models).toHaveLength(9);
    const apis = await storedTimes(db, "api", user);
    expect(apis.map((r) => r.same)).toEqual([true, true, true, true]);
    expect([apis[1].createdAt, apis[2].createdAt]).toEqual([micros(GIVEN), micros(GIVEN_2)]);
  });

  test("an NDJSON import (both kinds in one transaction per batch) stores updated_at = created_at", async () => {
    const db = s.t.db;
    const user = 301;
    const lines = [
      { userId: user, modelId: s.modelId, tokenInCount: 1 },
      { userId: user, externalApiId: s.apiId, callCount: 2, createdAt: "2025-03-04T07:06:07.089+02:00" },
      { userId: user, modelId: s.modelId, agentId: s.agentId, tokenInCount: 3, createdAt: "2024-02-29T23:59:59.999Z" },
      { userId: user, externalApiId: s.apiId, callCount: 4, connectorId: s.connectorId },
      { userId: user, modelId: s.modelId, tokenInCount: 5 },
    ].map((line) => JSON.stringify(line));
    const result = await recordNdjson(db, Readable.from(lines.join("\n")), { batchSize: 3, idempotencyKey: `ndjson-${policySynthLike}` });
    expect(result).toEqual({ lines: 5, modelUsage: 3, externalApiUsage: 2, skippedLines: 0 });
    const models = await storedTimes(db, "model", user);
    expect(models.map((r) => r.same)).toEqual([true, true, true]);
    expect(models[1].createdAt).toBe(micros(GIVEN_2));
    const apis = await storedTimes(db, "api", user);
    expect(apis.map((r) => r.same)).toEqual([true, true]);
    expect(apis[0].createdAt).toBe(micros(GIVEN));
  });

  test("the demo seed stores updated_at = created_at", async () => {
    const db = s.t.db;
    const until = new Date("2025-06-01T00:00:00Z");
    const summary = await seedDemo(db, { events: 200, days: 3, batchSize: 70, until });
    const ids = await db.prisma.psModelUsage.findMany({ where: { modelId: { in: [...summary.modelIds] } }, select: { createdAt: true, updatedAt: true } });
    const apiRows = await db.prisma.psExternalApiUsage.findMany({
      where: { externalApiId: { in: [...summary.externalApiIds] } },
      select: { createdAt: true, updatedAt: true },
    });
    expect(ids.length + apiRows.length).toBe(200);
    for (const row of [...ids, ...apiRows]) {
      expect(row.updatedAt).toEqual(row.createdAt);
      expect(row.createdAt.getTime()).toBeLessThanOrEqual(until.getTime());
    }
  });

  describe("an unknown reference is an UnknownReferenceError naming its table and id; nothing is written", () => {
    type Ref = "model" | "agent" | "connector";
    type ApiRef = "api" | "agent" | "connector";
    const TABLES = { model: "ps_ai_models", api: "ps_external_apis", agent: "ps_agents", connector: "ps_agent_connectors" } as const;
    const badModelFields = (ref: Ref) =>
      ref === "model" ? { modelId: UNKNOWN.model } : ref === "agent" ? { agentId: UNKNOWN.agent } : { connectorId: UNKNOWN.connector };
    const badApiFields = (ref: ApiRef) =>
      ref === "api" ? { externalApiId: UNKNOWN.api } : ref === "agent" ? { agentId: UNKNOWN.agent } : { connectorId: UNKNOWN.connector };

    /** A record path: a good item (user 1, with createdAt) and the bad fields; rejects with its error. */
    const modelPaths: [string, (bad: object) => Promise<unknown>][] = [
      ["recordModelUsage", (bad) => recordModelUsage(s.t.db, { userId: 1, modelId: s.modelId, tokenInCount: 1, ...bad })],
      ["recordModelCall", (bad) => recordModelCall(s.t.db, { userId: 1, modelId: s.modelId, inputTokens: 1, outputTokens: 1, ...bad })],
      ["keyed recordModelUsage", (bad) => recordModelUsage(s.t.db, { userId: 1, modelId: s.modelId, ...bad }, { idempotencyKey: "bad-single" })],
      ["forUser recordModelUsage", (bad) => forUser(s.t.db, 1).recordModelUsage({ modelId: s.modelId, agentId: s.agentId, ...bad })],
      [
        "recordModelUsageBatch (bad item in the second of three chunks)",
        (bad) =>
          recordModelUsageBatch(
            s.t.db,
            [
              { userId: 1, modelId: s.modelId, agentId: s.agentId, connectorId: s.connectorId, createdAt: GIVEN },
              { userId: 1, modelId: s.modelId, tokenInCount: 2, ...bad },
              { userId: 1, modelId: s.modelId },
            ],
            { chunkSize: 1 },
          ),
      ],
      ["keyed recordModelUsageBatch", (bad) => recordModelUsageBatch(s.t.db, [{ userId: 1, modelId: s.modelId }, { userId: 1, modelId: s.modelId, ...bad }], { idempotencyKey: "bad-batch" })],
      ["forUser recordModelUsageBatch", (bad) => forUser(s.t.db, 1).recordModelUsageBatch([{ modelId: s.modelId, connectorId: s.connectorId }, { modelId: s.modelId, ...bad }])],
    ];
    const apiPaths: [string, (bad: object) => Promise<unknown>][] = [
      ["recordExternalApiUsage", (bad) => recordExternalApiUsage(s.t.db, { userId: 1, externalApiId: s.apiId, callCount: 1, ...bad })],
      [
        "keyed recordExternalApiUsage",
        (bad) => recordExternalApiUsage(s.t.db, { userId: 1, externalApiId: s.apiId, callCount: 1, ...bad }, { idempotencyKey: "bad-api" }),
      ],
      ["forUser recordExternalApiUsage", (bad) => forUser(s.t.db, 1).recordExternalApiUsage({ externalApiId: s.apiId, callCount: 1, connectorId: s.connectorId, ...bad })],
      [
        "recordExternalApiUsageBatch",
        (bad) => recordExternalApiUsageBatch(s.t.db, [{ userId: 1, externalApiId: s.apiId, callCount: 1 }, { userId: 1, externalApiId: s.apiId, callCount: 2, ...bad }]),
      ],
      [
        "keyed recordExternalApiUsageBatch",
        (bad) => recordExternalApiUsageBatch(s.t.db, [{ userId: 1, externalApiId: s.apiId, callCount: 2, ...bad }], { idempotencyKey: "bad-api-batch" }),
      ],
      ["forUser recordExternalApiUsageBatch", (bad) => forUser(s.t.db, 1).recordExternalApiUsageBatch([{ externalApiId: s.apiId, callCount: 2, agentId: s.agentId, ...bad }])],
    ];

    const modelCases = modelPaths.flatMap(([path, record]) => (["model", "agent", "connector"] as const).map((ref) => [path, ref, record] as const));
    const apiCases = apiPaths.flatMap(([path, record]) => (["api", "agent", "connector"] as const).map((ref) => [path, ref, record] as const));

    test.each(modelCases)("%s with an unknown %s", async (_path, ref, record) => {
      const before = await counts(s.t.db);
      const error = await record(badModelFields(ref)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnknownReferenceError);
      expect(error).toMatchObject({ code: "PS_USAGE_UNKNOWN_REFERENCE", table: TABLES[ref], id: UNKNOWN[ref] });
      expect(await counts(s.t.db)).toEqual(before);
    });

    test.each(apiCases)("%s with an unknown %s", async (_path, ref, record) => {
      const before = await counts(s.t.db);
      const error = await record(badApiFields(ref)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnknownReferenceError);
      expect(error).toMatchObject({ code: "PS_USAGE_UNKNOWN_REFERENCE", table: TABLES[ref], id: UNKNOWN[ref] });
      expect(await counts(s.t.db)).toEqual(before);
    });

    test.each([
      ["model", { userId: 1, modelId: UNKNOWN.model }, "ps_ai_models"],
      ["external API", { userId: 1, externalApiId: UNKNOWN.api, callCount: 1 }, "ps_external_apis"],
      ["agent (on an API line)", { userId: 1, externalApiId: 0, callCount: 1, agentId: UNKNOWN.agent }, "ps_agents"],
      ["connector (on a model line)", { userId: 1, modelId: 0, connectorId: UNKNOWN.connector }, "ps_agent_connectors"],
    ])("an NDJSON import with an unknown %s names its line; its batch, both kinds, is not written", async (_name, badLine, table) => {
      const fill = (line: Record<string, unknown>) =>
        JSON.stringify({ ...line, ...(line.modelId === 0 ? { modelId: s.modelId } : {}), ...(line.externalApiId === 0 ? { externalApiId: s.apiId } : {}) });
      const lines = [
        fill({ userId: 1, modelId: 0, tokenInCount: 1 }),
        fill({ userId: 1, externalApiId: 0, callCount: 1 }),
        fill({ userId: 1, modelId: 0, tokenInCount: 2 }),
        fill({ userId: 1, externalApiId: 0, callCount: 2 }),
        fill(badLine),
        fill({ userId: 1, modelId: 0, tokenInCount: 3 }),
      ];
      const before = await counts(s.t.db);
      // Batches of four lines: lines 1-4 are recorded, the batch of lines 5-6 is not.
      const error = await recordNdjson(s.t.db, Readable.from(lines.join("\n")), { batchSize: 4 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InputLineError);
      expect(error).toMatchObject({ line: 5, recordedLines: 4 });
      expect((error as InputLineError).message).toContain(table);
      expect((error as InputLineError).cause).toBeInstanceOf(UnknownReferenceError);
      const after = await counts(s.t.db);
      expect(after).toEqual([before[0] + 2, before[1] + 2, before[2]]);
    });

    test("a view refuses another user's agent before it looks for unknown ids, in one check", async () => {
      const bobsAgent = (await s.t.db.prisma.psAgent.create({ data: { userId: 22, classId: 1, groupId: 1 } })).id;
      const before = await counts(s.t.db);
      const error = await forUser(s.t.db, 1)
        .recordModelUsageBatch([{ modelId: UNKNOWN.model }, { modelId: s.modelId, agentId: bobsAgent, connectorId: UNKNOWN.connector }])
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UsageValidationError);
      expect((error as UsageValidationError).issues).toEqual([{ field: "agentId", reason: "belongs to another user (this view is confined to user 1)", index: 1 }]);
      expect(await counts(s.t.db)).toEqual(before);
    });
  });
});

// Half-adopted: some foreign keys missing, one added NOT VALID over an orphan row that was there
// before (it checks new rows only). Each reference is refused, whichever way it is guarded.
describe("a database with some reference keys, one NOT VALID over an old orphan row", () => {
  let s: Shape;
  beforeAll(async () => {
    s = await openShape(true);
    await s.t.db.prisma.$executeRaw`
      INSERT INTO ps_model_usage (user_id, model_id, agent_id, created_at, updated_at) VALUES (1, ${s.modelId}, ${UNKNOWN.agent}, now(), now())`;
    await s.t.db.prisma.$executeRawUnsafe(
      "ALTER TABLE ps_model_usage ADD CONSTRAINT ps_model_usage_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES ps_agents(id) NOT VALID",
    );
    await s.t.db.prisma.$executeRawUnsafe(
      "ALTER TABLE ps_external_api_usage ADD CONSTRAINT ps_external_api_usage_external_api_id_fkey FOREIGN KEY (external_api_id) REFERENCES ps_external_apis(id)",
    );
  });
  afterAll(() => s.t.dispose());

  test.each([
    ["model (no key)", { modelId: UNKNOWN.model }, "ps_ai_models", UNKNOWN.model],
    ["agent (NOT VALID key)", { agentId: UNKNOWN.agent }, "ps_agents", UNKNOWN.agent],
    ["connector (no key)", { connectorId: UNKNOWN.connector }, "ps_agent_connectors", UNKNOWN.connector],
  ])("model usage with an unknown %s is refused, single and batch", async (_name, bad, table, id) => {
    const before = await counts(s.t.db);
    await expect(recordModelUsage(s.t.db, { userId: 1, modelId: s.modelId, ...bad })).rejects.toMatchObject({ table, id });
    await expect(recordModelUsageBatch(s.t.db, [{ userId: 1, modelId: s.modelId }, { userId: 1, modelId: s.modelId, ...bad }])).rejects.toMatchObject({ table, id });
    expect(await counts(s.t.db)).toEqual(before);
  });

  test("external API usage with an unknown API (key) or agent (no key) is refused; good rows are written", async () => {
    const before = await counts(s.t.db);
    await expect(recordExternalApiUsage(s.t.db, { userId: 1, externalApiId: UNKNOWN.api, callCount: 1 })).rejects.toMatchObject({ table: "ps_external_apis", id: UNKNOWN.api });
    await expect(
      recordExternalApiUsageBatch(s.t.db, [{ userId: 1, externalApiId: s.apiId, callCount: 1, agentId: UNKNOWN.agent }]),
    ).rejects.toMatchObject({ table: "ps_agents", id: UNKNOWN.agent });
    expect(await counts(s.t.db)).toEqual(before);
    await recordModelUsage(s.t.db, { userId: 1, modelId: s.modelId, agentId: s.agentId, connectorId: s.connectorId });
    expect(await recordExternalApiUsageBatch(s.t.db, [{ userId: 1, externalApiId: s.apiId, callCount: 2, agentId: s.agentId }])).toEqual({ count: 1 });
    expect(await counts(s.t.db)).toEqual([before[0] + 1, before[1] + 1, before[2]]);
  });
});

// Where the foreign key is missing, the package's own check locks the referenced rows as a
// foreign key check does, so a delete committed meanwhile cannot leave an orphan. Needs a second
// connection, so PostgreSQL only.
(backend === "postgres" ? describe : describe.skip)("on PostgreSQL, a reference deleted while a record is being written", () => {
  let s: Shape;
  let other: Client;
  beforeAll(async () => {
    s = await openShape(true);
    other = new Client({ connectionString: s.t.url });
    await other.connect();
  });
  afterAll(async () => {
    await other.end();
    await s.t.dispose();
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

  test.each([
    ["a single record", (modelId: number) => recordModelUsage(s.t.db, { userId: 1, modelId, tokenInCount: 1 })],
    ["a batch", (modelId: number) => recordModelUsageBatch(s.t.db, [{ userId: 1, modelId: s.modelId }, { userId: 1, modelId }], { chunkSize: 1 })],
  ])("%s waits for the delete and is refused once it commits", async (_name, record) => {
    const modelId = await createModel(s.t.db, "deleted meanwhile");
    const before = await counts(s.t.db);
    await other.query("BEGIN");
    await other.query("DELETE FROM ps_ai_models WHERE id = $1", [modelId]);
    const outcome = record(modelId).then(
      () => null,
      (e: unknown) => e,
    );
    // Without the lock the check would read the row as still there and write an orphan.
    const waited = await someoneWaitsForALock();
    await other.query("COMMIT");
    const error = await outcome;
    expect(waited).toBe(true);
    expect(error).toBeInstanceOf(UnknownReferenceError);
    expect(error).toMatchObject({ table: "ps_ai_models", id: modelId });
    expect(await counts(s.t.db)).toEqual(before);
  });
});
