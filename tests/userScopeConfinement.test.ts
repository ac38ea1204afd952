// One user's view stays one user's: another user's batch keys, agents and connectors are
// refused or hidden, while models and external APIs are a shared catalogue; and an input is read
// the same way by the scoped and the plain functions.
import {
  findExternalApiUsage,
  findModelUsage,
  forUser,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelCall,
  recordModelUsage,
  recordModelUsageBatch,
  type Database,
  type ModelUsageInput,
  type UserUsageScope,
} from "../src";
import { createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { issuesOf } from "./support/errors";

const ALICE = 11;
const BOB = 22;

let t: TestDatabase;
let modelId: number;
let apiId: number;
let bobsModelId: number;
let bobsApiId: number;
let alicesAgent: number;
let alicesConnector: number;
let bobsAgent: number;
let bobsConnector: number;
let alice: UserUsageScope;
let bob: UserUsageScope;

const agentOf = async (db: Database, userId: number) => (await db.prisma.psAgent.create({ data: { userId, classId: 1, groupId: 1 } })).id;
const connectorOf = async (db: Database, userId: number) =>
  (await db.prisma.psAgentConnector.create({ data: { userId, classId: 1, groupId: 1 } })).id;

beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db); // the admins' (user 1) catalogue
  apiId = await createExternalApi(t.db);
  bobsModelId = (await t.db.prisma.psAiModel.create({ data: { userId: BOB, organizationId: 5, name: "bob-model" } })).id;
  bobsApiId = (await t.db.prisma.psExternalApi.create({ data: { userId: BOB, organizationId: 5, type: "bob-search" } })).id;
  alicesAgent = await agentOf(t.db, ALICE);
  alicesConnector = await connectorOf(t.db, ALICE);
  bobsAgent = await agentOf(t.db, BOB);
  bobsConnector = await connectorOf(t.db, BOB);
  alice = forUser(t.db, ALICE);
  bob = forUser(t.db, BOB);
});
afterAll(() => t.dispose());

async function rowCounts() {
  return [await t.db.prisma.psModelUsage.count(), await t.db.prisma.psExternalApiUsage.count()];
}

const OTHER_USER_KEY = [{ field: "options.idempotencyKey", reason: "was already used by another user" }];

test("a batch key another user already used (batch or single record) is refused, not reported as a replay", async () => {
  await bob.recordModelUsageBatch([{ modelId, tokenInCount: 5 }], { idempotencyKey: "bob-batch" });
  await bob.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 5 }], { idempotencyKey: "bob-api-batch" });
  await bob.recordModelUsage({ modelId, tokenInCount: 6 }, { idempotencyKey: "bob-single" });
  await bob.recordExternalApiUsage({ externalApiId: apiId, callCount: 6 }, { idempotencyKey: "bob-api-single" });
  const before = await rowCounts();

  for (const key of ["bob-batch", "bob-api-batch", "bob-single", "bob-api-single"]) {
    expect(await issuesOf(alice.recordModelUsageBatch([{ modelId, tokenInCount: 1 }], { idempotencyKey: key }))).toEqual(OTHER_USER_KEY);
    expect(await issuesOf(alice.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 1 }], { idempotencyKey: key }))).toEqual(
      OTHER_USER_KEY,
    );
    // The plain functions with Alice's items are refused the same way.
    expect(await issuesOf(recordModelUsageBatch(t.db, [{ userId: ALICE, modelId }], { idempotencyKey: key }))).toEqual(OTHER_USER_KEY);
  }
  // A single record with Bob's batch key: the user is checked before the kind of key.
  expect(await issuesOf(alice.recordModelUsage({ modelId }, { idempotencyKey: "bob-batch" }))).toEqual(OTHER_USER_KEY);
  expect(await issuesOf(alice.recordExternalApiUsage({ externalApiId: apiId, callCount: 1 }, { idempotencyKey: "bob-api-batch" }))).toEqual(
    OTHER_USER_KEY,
  );
  expect(await rowCounts()).toEqual(before);

  // Bob's own retries are still replays, and a single key is still not a batch key for Bob.
  expect(await bob.recordModelUsageBatch([{ modelId, tokenInCount: 5 }], { idempotencyKey: "bob-batch" })).toEqual({ count: 0, replayed: true });
  expect(await bob.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 5 }], { idempotencyKey: "bob-api-batch" })).toEqual({
    count: 0,
    replayed: true,
  });
  expect(await issuesOf(bob.recordModelUsageBatch([{ modelId }], { idempotencyKey: "bob-single" }))).toEqual([
    { field: "options.idempotencyKey", reason: "was already used to record a single event, not a batch" },
  ]);
  expect(await rowCounts()).toEqual(before);
});

test("a batch key stores its one user; a mixed-user batch replays only as a mixed-user batch", async () => {
  // An unscoped batch of Alice's items only is Alice's: her scoped retry is a replay.
  await recordModelUsageBatch(t.db, [{ userId: ALICE, modelId }, { userId: ALICE, modelId }], { idempotencyKey: "alice-plain" });
  expect(await alice.recordModelUsageBatch([{ modelId }], { idempotencyKey: "alice-plain" })).toEqual({ count: 0, replayed: true });
  expect(await issuesOf(bob.recordModelUsageBatch([{ modelId }], { idempotencyKey: "alice-plain" }))).toEqual(OTHER_USER_KEY);

  const mixed: ModelUsageInput[] = [
    { userId: ALICE, modelId },
    { userId: BOB, modelId },
  ];
  expect(await recordModelUsageBatch(t.db, mixed, { idempotencyKey: "mixed" })).toEqual({ count: 2 });
  expect(await recordModelUsageBatch(t.db, mixed, { idempotencyKey: "mixed" })).toEqual({ count: 0, replayed: true });
  const before = await rowCounts();
  expect(await issuesOf(alice.recordModelUsageBatch([{ modelId }], { idempotencyKey: "mixed" }))).toEqual(OTHER_USER_KEY);
  expect(await issuesOf(bob.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 1 }], { idempotencyKey: "mixed" }))).toEqual(
    OTHER_USER_KEY,
  );
  expect(await rowCounts()).toEqual(before);
  // An empty batch of a view is the view's user's too.
  expect(await alice.recordModelUsageBatch([], { idempotencyKey: "alice-empty" })).toEqual({ count: 0 });
  expect(await alice.recordModelUsageBatch([], { idempotencyKey: "alice-empty" })).toEqual({ count: 0, replayed: true });
  expect(await issuesOf(bob.recordModelUsageBatch([], { idempotencyKey: "alice-empty" }))).toEqual(OTHER_USER_KEY);
  const stored = await t.db.prisma.psUsageIdempotencyKey.findMany({ where: { key: { in: ["alice-plain", "mixed", "bob-batch", "alice-empty"] } } });
  expect(Object.fromEntries(stored.map((k) => [k.key, k.userId]))).toEqual({ "alice-plain": ALICE, mixed: null, "bob-batch": BOB, "alice-empty": ALICE });
});

test("include through forUser hides another user's agent and connector (ids kept); models and APIs are shared", async () => {
  // Usage of Alice's that points at Bob's agent and connector (the unconfined API allows it, as
  // PolicySynth data may), and at Bob's model and API.
  const created = new Date("2031-01-01T00:00:00Z");
  await recordModelUsage(t.db, { userId: ALICE, modelId: bobsModelId, agentId: bobsAgent, connectorId: bobsConnector, createdAt: created });
  await recordExternalApiUsage(t.db, { userId: ALICE, externalApiId: bobsApiId, agentId: bobsAgent, connectorId: bobsConnector, callCount: 1, createdAt: created });
  await alice.recordModelUsage({ modelId, agentId: alicesAgent, connectorId: alicesConnector, createdAt: new Date("2030-01-01T00:00:00Z") });

  const page = await alice.findModelUsage({}, { limit: 2, include: { agent: true, connector: true, model: true } });
  const [foreign, own] = page.items;
  expect(foreign).toMatchObject({ userId: ALICE, agentId: bobsAgent, connectorId: bobsConnector, agent: null, connector: null });
  expect(foreign.model).toMatchObject({ id: bobsModelId, userId: BOB, organizationId: 5, name: "bob-model" });
  expect(own.agent).toMatchObject({ id: alicesAgent, userId: ALICE });
  expect(own.connector).toMatchObject({ id: alicesConnector, userId: ALICE });

  const apiPage = await alice.findExternalApiUsage({}, { limit: 1, include: { agent: true, connector: true, externalApi: true } });
  expect(apiPage.items[0]).toMatchObject({ agentId: bobsAgent, connectorId: bobsConnector, agent: null, connector: null });
  expect(apiPage.items[0].externalApi).toMatchObject({ id: bobsApiId, userId: BOB, type: "bob-search" });

  // The plain functions are not confined: they include every related row.
  const plain = await findModelUsage(t.db, { userId: ALICE }, { limit: 1, include: { agent: true, connector: true } });
  expect(plain.items[0].agent).toMatchObject({ id: bobsAgent, userId: BOB });
  expect(plain.items[0].connector).toMatchObject({ id: bobsConnector, userId: BOB });
  const plainApi = await findExternalApiUsage(t.db, { userId: ALICE }, { limit: 1, include: { agent: true } });
  expect(plainApi.items[0].agent).toMatchObject({ id: bobsAgent });
});

test("recording through forUser with another user's agent or connector is refused, naming the field, nothing written", async () => {
  const before = await rowCounts();
  const reason = `belongs to another user (this view is confined to user ${ALICE})`;
  expect(await issuesOf(alice.recordModelUsage({ modelId, agentId: bobsAgent }))).toEqual([{ field: "agentId", reason }]);
  expect(await issuesOf(alice.recordModelUsage({ modelId, agentId: alicesAgent, connectorId: bobsConnector }, { idempotencyKey: "a-1" }))).toEqual([
    { field: "connectorId", reason },
  ]);
  expect(await issuesOf(alice.recordModelCall({ modelId, agentId: bobsAgent, connectorId: bobsConnector, inputTokens: 1, outputTokens: 1 }))).toEqual([
    { field: "agentId", reason },
    { field: "connectorId", reason },
  ]);
  expect(await issuesOf(alice.recordExternalApiUsage({ externalApiId: apiId, connectorId: bobsConnector, callCount: 1 }))).toEqual([
    { field: "connectorId", reason },
  ]);
  expect(
    await issuesOf(
      alice.recordModelUsageBatch(
        [{ modelId, agentId: alicesAgent }, { modelId, agentId: bobsAgent }, { modelId, connectorId: alicesConnector }, { modelId, agentId: bobsAgent, connectorId: bobsConnector }],
        { idempotencyKey: "a-batch", chunkSize: 2 },
      ),
    ),
  ).toEqual([
    { index: 1, field: "agentId", reason },
    { index: 3, field: "agentId", reason },
    { index: 3, field: "connectorId", reason },
  ]);
  expect(
    await issuesOf(alice.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 1 }, { externalApiId: apiId, callCount: 1, connectorId: bobsConnector }])),
  ).toEqual([{ index: 1, field: "connectorId", reason }]);
  expect(await rowCounts()).toEqual(before);
  // A refused batch leaves its key free.
  expect(await t.db.prisma.psUsageIdempotencyKey.count({ where: { key: { in: ["a-1", "a-batch"] } } })).toBe(0);

  // Alice's own agent and connector, and anyone's model or API (a shared catalogue), are fine.
  const ok = await alice.recordModelUsage({ modelId: bobsModelId, agentId: alicesAgent, connectorId: alicesConnector }, { idempotencyKey: "a-1" });
  expect(ok).toMatchObject({ userId: ALICE, modelId: bobsModelId, agentId: alicesAgent, connectorId: alicesConnector });
  // The checked write keeps its idempotency: the same key again returns the first row.
  const again = await alice.recordModelUsage({ modelId: bobsModelId, agentId: alicesAgent, connectorId: alicesConnector }, { idempotencyKey: "a-1" });
  expect(again.id).toBe(ok.id);
  expect(await alice.recordExternalApiUsageBatch([{ externalApiId: bobsApiId, callCount: 2, agentId: alicesAgent }], { idempotencyKey: "a-batch" })).toEqual({
    count: 1,
  });
  // Bob may use his own; the unconfined API checks no ownership.
  expect((await bob.recordModelUsage({ modelId, agentId: bobsAgent, connectorId: bobsConnector })).agentId).toBe(bobsAgent);
  expect((await recordModelUsage(t.db, { userId: ALICE, modelId, agentId: bobsAgent })).agentId).toBe(bobsAgent);
  // A missing agent is still an UnknownReferenceError, not an ownership issue.
  await expect(alice.recordModelUsage({ modelId, agentId: 999_999 })).rejects.toMatchObject({ table: "ps_agents", id: 999_999 });
  await expect(alice.recordModelUsageBatch([{ modelId, agentId: 999_999 }])).rejects.toMatchObject({ table: "ps_agents", id: 999_999 });
});

/** An input as a class instance: its fields are getters on the prototype, none is an own property. */
class UsageEvent {
  readonly #fields: Record<string, number | Date | undefined>;
  constructor(fields: Record<string, number | Date | undefined>) {
    this.#fields = fields;
  }
  get userId() {
    return this.#fields.userId as number;
  }
  get modelId() {
    return this.#fields.modelId as number;
  }
  get agentId() {
    return this.#fields.agentId as number | undefined;
  }
  get tokenInCount() {
    return this.#fields.tokenInCount as number | undefined;
  }
  get createdAt() {
    return this.#fields.createdAt as Date | undefined;
  }
}

/** A record without its id and timestamps, to compare rows recorded by two calls. */
const content = <R extends { id: number; updatedAt: Date }>({ id: _id, updatedAt: _u, ...rest }: R) => rest;

test("an input is read the same way by forUser and the plain functions (inherited fields and getters count)", async () => {
  const createdAt = new Date("2029-05-05T05:05:05.005Z");
  const fields = { modelId, agentId: alicesAgent, tokenInCount: 321, createdAt };
  // Class instances with getters.
  const plainRow = await recordModelUsage(t.db, new UsageEvent({ ...fields, userId: ALICE }) as unknown as ModelUsageInput);
  const scopedRow = await alice.recordModelUsage(new UsageEvent(fields) as never);
  expect(content(scopedRow)).toEqual(content(plainRow));
  expect(scopedRow).toMatchObject({ userId: ALICE, modelId, agentId: alicesAgent, tokenInCount: 321, createdAt });

  // Objects whose fields come from a prototype (Object.create).
  const proto = { modelId, tokenInCount: 7, createdAt };
  const plainInherited = await recordModelUsage(t.db, Object.assign(Object.create(proto), { userId: ALICE }));
  const scopedInherited = await alice.recordModelUsage(Object.create(proto));
  expect(content(scopedInherited)).toEqual(content(plainInherited));
  expect(scopedInherited.tokenInCount).toBe(7);

  // Batches and the other table, with returnIds to read back the rows.
  const plainBatch = await recordModelUsageBatch(t.db, [new UsageEvent({ ...fields, userId: ALICE }) as unknown as ModelUsageInput], { returnIds: true });
  const scopedBatch = await alice.recordModelUsageBatch([new UsageEvent(fields) as never, Object.create(proto)], { returnIds: true });
  const rows = await t.db.prisma.psModelUsage.findMany({ where: { id: { in: [...plainBatch.ids!, ...scopedBatch.ids!] } }, orderBy: { id: "asc" } });
  expect(rows.map((r) => [r.userId, r.tokenInCount, r.agentId, r.createdAt.toISOString()])).toEqual([
    [ALICE, 321, alicesAgent, createdAt.toISOString()],
    [ALICE, 321, alicesAgent, createdAt.toISOString()],
    [ALICE, 7, null, createdAt.toISOString()],
  ]);
  const apiProto = { externalApiId: apiId, callCount: 4, createdAt };
  const plainApi = await recordExternalApiUsage(t.db, Object.assign(Object.create(apiProto), { userId: ALICE }));
  const scopedApi = await alice.recordExternalApiUsage(Object.create(apiProto));
  expect(content(scopedApi)).toEqual(content(plainApi));
  const call = Object.create({ modelId, inputTokens: 9, outputTokens: 2 });
  expect((await alice.recordModelCall(call)).tokenInCount).toBe(9);

  // Unknown fields are found the same way too, inherited or own.
  const typo = Object.create({ modelId, tokenInCont: 1 });
  expect(await issuesOf(alice.recordModelUsage(typo))).toEqual(await issuesOf(recordModelUsage(t.db, Object.assign(Object.create(typo), { userId: ALICE }))));
});
