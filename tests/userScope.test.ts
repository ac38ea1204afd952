// The user-scoped view: it records only for its user and reads only its user's rows, whatever
// inputs, filters, cursors or idempotency keys it is given.
import {
  UsageValidationError,
  costReport,
  setModelPrice,
  findModelUsage,
  forUser,
  recordExternalApiUsage,
  recordModelUsage,
  type UserUsageScope,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { issuesOf } from "./support/errors";

let t: TestDatabase;
let modelId: number;
let apiId: number;
let agentId: number;
let alice: UserUsageScope;
let bob: UserUsageScope;
beforeAll(async () => {
  t = await openTestDatabase();
  modelId = await createModel(t.db);
  apiId = await createExternalApi(t.db);
  agentId = await createAgent(t.db);
  alice = forUser(t.db, 11);
  bob = forUser(t.db, 22);
  // Bob's rows, which Alice must never see. The agent is no one's here (user 1's), so the rows
  // go through the unconfined API: a view records only with its own user's agents.
  for (let i = 0; i < 5; i++) await recordModelUsage(t.db, { userId: 22, modelId, agentId, tokenInCount: 1000 + i });
  await bob.recordExternalApiUsage({ externalApiId: apiId, callCount: 9 });
});
afterAll(() => t.dispose());


test("records are made for the scope's user, with userId left out or given as the same id", async () => {
  const a = await alice.recordModelUsage({ modelId, tokenInCount: 1 });
  const b = await alice.recordModelUsage({ userId: 11, modelId, tokenInCount: 2 });
  const c = await alice.recordModelCall({ modelId, inputTokens: 10, outputTokens: 3 }, { longContextTokenThreshold: 5 });
  const d = await alice.recordExternalApiUsage({ externalApiId: apiId, callCount: 4 });
  const batch = await alice.recordModelUsageBatch([{ modelId }, { userId: 11, modelId }], { returnIds: true });
  const apiBatch = await alice.recordExternalApiUsageBatch([{ externalApiId: apiId, callCount: 1 }]);
  expect([a.userId, b.userId, c.userId, d.userId]).toEqual([11, 11, 11, 11]);
  expect(c.longContextTokenInCount).toBe(10);
  expect(apiBatch.count).toBe(1);
  const stored = await t.db.prisma.psModelUsage.findMany({ where: { id: { in: [...batch.ids!] } } });
  expect(stored.map((r) => r.userId)).toEqual([11, 11]);
});

test("recording for another user is rejected on userId, with every other issue and the batch index, nothing written", async () => {
  const before = await t.db.prisma.psModelUsage.count();
  expect(await issuesOf(alice.recordModelUsage({ userId: 22, modelId, tokenInCount: -1 }))).toEqual([
    { field: "userId", reason: "must be 11 (this view is confined to user 11), got 22" },
    { field: "tokenInCount", reason: "must not be negative, got -1" },
  ]);
  expect(await issuesOf(alice.recordModelUsageBatch([{ modelId }, { userId: 22, modelId }, { modelId, userId: "11" } as never]))).toEqual([
    { index: 1, field: "userId", reason: "must be 11 (this view is confined to user 11), got 22" },
    { index: 2, field: "userId", reason: "must be 11 (this view is confined to user 11), got string" },
  ]);
  expect(await issuesOf(alice.recordExternalApiUsage({ userId: 22, externalApiId: apiId, callCount: 1 }))).toEqual([
    { field: "userId", reason: "must be 11 (this view is confined to user 11), got 22" },
  ]);
  expect(await issuesOf(alice.recordModelCall({ userId: 22, modelId, inputTokens: 1, outputTokens: 1 }))).toEqual([
    { field: "userId", reason: "must be 11 (this view is confined to user 11), got 22" },
  ]);
  expect(await t.db.prisma.psModelUsage.count()).toBe(before);
});

test("reads only ever return the scope's rows, whatever the filter or cursor", async () => {
  const all = await findModelUsage(t.db, {}, { limit: 1000 });
  expect(all.items.some((r) => r.userId === 22)).toBe(true);
  const mine = await alice.findModelUsage({}, { limit: 1000 });
  expect(mine.items.length).toBeGreaterThan(0);
  expect(mine.items.every((r) => r.userId === 11)).toBe(true);
  expect((await alice.findModelUsage({ agentId })).items).toEqual([]); // only Bob used that agent
  expect((await alice.findExternalApiUsage()).items.every((r) => r.userId === 11)).toBe(true);
  expect((await alice.findModelUsage({ userId: 11 })).items.length).toBe(mine.items.length);

  // Bob's own cursor, handed to Alice, still only pages through Alice's rows.
  const bobsFirst = await bob.findModelUsage({}, { limit: 2 });
  const viaBobsCursor = await alice.findModelUsage({}, { cursor: bobsFirst.nextCursor!, limit: 1000 });
  expect(viaBobsCursor.items.every((r) => r.userId === 11)).toBe(true);
});

test("a filter naming another user is rejected, not widened", async () => {
  expect(await issuesOf(alice.findModelUsage({ userId: 22 }))).toEqual([
    { field: "filter.userId", reason: "must be 11 or left out (this view is confined to user 11), got 22" },
  ]);
  expect(await issuesOf(alice.findExternalApiUsage({ userId: 22 }))).toHaveLength(1);
  expect(await issuesOf(alice.findModelUsage(null as never))).toEqual([{ field: "filter", reason: "must be an object, got null" }]);
});

test("another user's idempotency key does not hand over their row", async () => {
  const bobs = await recordModelUsage(t.db, { userId: 22, modelId, tokenInCount: 77 }, { idempotencyKey: "bob-call-1" });
  expect(await issuesOf(alice.recordModelUsage({ modelId }, { idempotencyKey: "bob-call-1" }))).toEqual([
    { field: "options.idempotencyKey", reason: "was already used by another user" },
  ]);
  expect((await bob.recordModelUsage({ modelId }, { idempotencyKey: "bob-call-1" })).id).toBe(bobs.id);
});

test("the scope's own user id must be a positive integer", () => {
  expect(() => forUser(t.db, 0)).toThrow(UsageValidationError);
  expect(() => forUser(t.db, "11" as never)).toThrow(/userId: must be a number/);
});

test("sums count only the scope's usage and reject another user's where", async () => {
  const carol = forUser(t.db, 33);
  const carolAgent = await createAgent(t.db, agentId); // a sub-agent of the agent Bob used
  // Several users' usage in one tree of user 1's agents, as the unconfined API may record it.
  await recordModelUsage(t.db, { userId: 33, modelId, agentId: carolAgent, tokenInCount: 40, tokenOutCount: 2 });
  await recordModelUsage(t.db, { userId: 33, modelId, agentId, tokenInCount: 60 });
  await recordExternalApiUsage(t.db, { userId: 33, externalApiId: apiId, agentId, callCount: 5 });

  const [total] = await carol.sumModelUsage();
  expect(total.tokenInCount).toBe(100n);
  expect(total.events).toBe(2n);
  const byUser = await carol.sumModelUsage({ groupBy: ["userId"] });
  expect(byUser.map((r) => r.userId)).toEqual([33]);
  const [api] = await carol.sumExternalApiUsage({ where: { userId: 33 } });
  expect(api.callCount).toBe(5n);

  // Bob recorded 1000..1004 tokens on the root agent; Carol's tree sum sees only her 60 + 40.
  const tree = await carol.sumAgentTreeUsage(agentId);
  expect(tree.total.modelUsage.tokenInCount).toBe(100n);
  expect(tree.total.externalApiUsage.callCount).toBe(5n);
  expect(await issuesOf(carol.sumModelUsage({ where: { userId: 22 } }))).toEqual([
    { field: "where.userId", reason: "must be 33 or left out (this view is confined to user 33), got 22" },
  ]);
  expect(await issuesOf(carol.sumAgentTreeUsage(agentId, { where: { userId: 22 } }))).toHaveLength(1);
});

test("cost reports price only the scope's usage and reject another user's where", async () => {
  const dave = forUser(t.db, 44);
  await setModelPrice(t.db, modelId, { currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "8" }, new Date("2000-01-01T00:00:00Z"));
  await recordModelUsage(t.db, { userId: 44, modelId, agentId, tokenInCount: 500_000, tokenOutCount: 250_000 });

  // Dave's own usage: 0.5M × 2 + 0.25M × 8 = 3 USD; Bob's 5,010 tokens on the same agent are not his.
  const report = await dave.costReport();
  expect(report.totals.map((x) => [x.currency, x.cost])).toEqual([["USD", "3"]]);
  const tree = await dave.agentTreeCostReport(agentId);
  expect(tree.totals.map((x) => [x.currency, x.cost])).toEqual([["USD", "3"]]);
  const everyone = await costReport(t.db);
  expect(everyone.totals[0].modelEvents).toBeGreaterThan(1n);
  expect(await issuesOf(dave.costReport({ where: { userId: 22 } }))).toEqual([
    { field: "where.userId", reason: "must be 44 or left out (this view is confined to user 44), got 22" },
  ]);
});
