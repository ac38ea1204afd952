import {
  UnknownReferenceError,
  UsageValidationError,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  sumAgentTreeUsage,
  type AgentTreeUsage,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

// The tree:        root
//                 /    \
//                a      b
//               / \      \
//             a1   a2     b1
//             |
//            a1x            (depth 3)
// plus `other`, not in it, with a child of its own.
let t: TestDatabase;
let root: number, a: number, b: number, a1: number, a2: number, a1x: number, b1: number, other: number, otherChild: number;
let model1: number, model2: number, api1: number, api2: number;

/** [agentId, parentAgentId, depth, model events, tokenInCount, tokenOutCount, API events, callCount] per agent. */
function flat(tree: AgentTreeUsage) {
  return tree.agents.map((r) => [
    r.agentId,
    r.parentAgentId,
    r.depth,
    r.modelUsage.events,
    r.modelUsage.tokenInCount,
    r.modelUsage.tokenOutCount,
    r.externalApiUsage.events,
    r.externalApiUsage.callCount,
  ]);
}

beforeAll(async () => {
  t = await openTestDatabase();
  const db = t.db;
  model1 = await createModel(db, "m1");
  model2 = await createModel(db, "m2");
  api1 = await createExternalApi(db, "search");
  api2 = await createExternalApi(db, "scrape");
  root = await createAgent(db);
  a = await createAgent(db, root);
  b = await createAgent(db, root);
  a1 = await createAgent(db, a);
  a2 = await createAgent(db, a);
  a1x = await createAgent(db, a1);
  b1 = await createAgent(db, b);
  other = await createAgent(db);
  otherChild = await createAgent(db, other);

  const jan = new Date("2026-01-10T12:00:00Z");
  const feb = new Date("2026-02-10T12:00:00Z");
  // Distinct powers of ten per agent, so a sum shows whose usage it holds.
  await recordModelUsageBatch(db, [
    { userId: 1, modelId: model1, agentId: root, tokenInCount: 1, tokenOutCount: 1, createdAt: jan },
    { userId: 1, modelId: model1, agentId: a, tokenInCount: 10, createdAt: jan },
    { userId: 1, modelId: model2, agentId: a, tokenInCount: 10, createdAt: feb },
    { userId: 1, modelId: model1, agentId: a1, tokenInCount: 100, createdAt: jan },
    { userId: 2, modelId: model1, agentId: a1x, tokenInCount: 1_000, tokenOutCount: 7, createdAt: jan },
    { userId: 1, modelId: model2, agentId: a1x, tokenInCount: 1_000, createdAt: feb },
    { userId: 1, modelId: model1, agentId: b1, tokenInCount: 10_000, createdAt: feb },
    // Not in the tree: no agent, another tree.
    { userId: 1, modelId: model1, agentId: null, tokenInCount: 100_000, createdAt: jan },
    { userId: 1, modelId: model1, agentId: other, tokenInCount: 1_000_000, createdAt: jan },
    { userId: 1, modelId: model1, agentId: otherChild, tokenInCount: 1_000_000, createdAt: jan },
  ]);
  await recordExternalApiUsageBatch(db, [
    { userId: 1, externalApiId: api1, agentId: a2, callCount: 3, createdAt: jan },
    { userId: 1, externalApiId: api2, agentId: a2, callCount: 4, createdAt: feb },
    { userId: 2, externalApiId: api1, agentId: b, callCount: 2_147_483_647, createdAt: jan },
    { userId: 1, externalApiId: api1, agentId: other, callCount: 50, createdAt: jan },
  ]);
});
afterAll(() => t.dispose());

test("a tree of depth 3 with branches: each agent's own usage, depth first, and the total", async () => {
  const tree = await sumAgentTreeUsage(t.db, root);
  expect(tree.rootAgentId).toBe(root);
  expect(flat(tree)).toEqual([
    [root, null, 0, 1n, 1n, 1n, 0n, 0n],
    [a, root, 1, 2n, 20n, 0n, 0n, 0n],
    [a1, a, 2, 1n, 100n, 0n, 0n, 0n],
    [a1x, a1, 3, 2n, 2_000n, 7n, 0n, 0n],
    [a2, a, 2, 0n, 0n, 0n, 2n, 7n],
    [b, root, 1, 0n, 0n, 0n, 1n, 2_147_483_647n],
    [b1, b, 2, 1n, 10_000n, 0n, 0n, 0n],
  ]);
  expect(tree.total.modelUsage.events).toBe(7n);
  expect(tree.total.modelUsage.tokenInCount).toBe(12_121n);
  expect(tree.total.modelUsage.tokenOutCount).toBe(8n);
  expect(tree.total.modelUsage.longContextTokenInCount).toBe(0n);
  expect(tree.total.externalApiUsage).toEqual({ events: 3n, callCount: 2_147_483_654n });
});

test("a subtree starts at the agent asked for, at depth 0", async () => {
  const tree = await sumAgentTreeUsage(t.db, a);
  expect(flat(tree).map(([id, parent, depth]) => [id, parent, depth])).toEqual([
    [a, root, 0],
    [a1, a, 1],
    [a1x, a1, 2],
    [a2, a, 1],
  ]);
  expect(tree.total.modelUsage.tokenInCount).toBe(2_120n);
  expect(await sumAgentTreeUsage(t.db, b1).then(flat)).toEqual([[b1, b, 0, 1n, 10_000n, 0n, 0n, 0n]]);
});

test("the filter narrows the usage, not the tree", async () => {
  const january = await sumAgentTreeUsage(t.db, root, {
    where: { from: new Date("2026-01-01T00:00:00Z"), to: new Date("2026-02-01T00:00:00Z") },
  });
  expect(flat(january)).toEqual([
    [root, null, 0, 1n, 1n, 1n, 0n, 0n],
    [a, root, 1, 1n, 10n, 0n, 0n, 0n],
    [a1, a, 2, 1n, 100n, 0n, 0n, 0n],
    [a1x, a1, 3, 1n, 1_000n, 7n, 0n, 0n],
    [a2, a, 2, 0n, 0n, 0n, 1n, 3n],
    [b, root, 1, 0n, 0n, 0n, 1n, 2_147_483_647n],
    [b1, b, 2, 0n, 0n, 0n, 0n, 0n],
  ]);
  const user2 = await sumAgentTreeUsage(t.db, root, { where: { userId: 2 } });
  expect(user2.total.modelUsage.tokenInCount).toBe(1_000n);
  expect(user2.total.externalApiUsage.callCount).toBe(2_147_483_647n);
  expect(user2.agents).toHaveLength(7);
  // modelId narrows model usage only, externalApiId API usage only.
  const narrowed = await sumAgentTreeUsage(t.db, root, { where: { modelId: [model2], externalApiId: api2 } });
  expect(narrowed.total.modelUsage).toMatchObject({ events: 2n, tokenInCount: 1_010n });
  expect(narrowed.total.externalApiUsage).toEqual({ events: 1n, callCount: 4n });
});

describe("bad data and bad input", () => {
  test("a cycle through the root ends: every agent once", async () => {
    await t.db.prisma.$executeRaw`UPDATE ps_agents SET parent_agent_id = ${a1x} WHERE id = ${root}`;
    try {
      const fromRoot = await sumAgentTreeUsage(t.db, root);
      expect(flat(fromRoot).map(([id, parent, depth]) => [id, parent, depth])).toEqual([
        [root, a1x, 0],
        [a, root, 1],
        [a1, a, 2],
        [a1x, a1, 3],
        [a2, a, 2],
        [b, root, 1],
        [b1, b, 2],
      ]);
      expect(fromRoot.total.modelUsage.tokenInCount).toBe(12_121n);
      // Entered elsewhere, the walk goes round the cycle once, stopping where it began.
      const fromA1 = await sumAgentTreeUsage(t.db, a1);
      expect(flat(fromA1).map(([id, , depth]) => [id, depth])).toEqual([
        [a1, 0],
        [a1x, 1],
        [root, 2],
        [a, 3],
        [a2, 4],
        [b, 3],
        [b1, 4],
      ]);
      expect(fromA1.total.modelUsage.tokenInCount).toBe(12_121n);
    } finally {
      await t.db.prisma.$executeRaw`UPDATE ps_agents SET parent_agent_id = NULL WHERE id = ${root}`;
    }
  });

  test("an agent that is its own parent, and a two-agent loop, end too", async () => {
    const selfParent = await createAgent(t.db);
    await t.db.prisma.$executeRaw`UPDATE ps_agents SET parent_agent_id = id WHERE id = ${selfParent}`;
    expect(flat(await sumAgentTreeUsage(t.db, selfParent)).map(([id, parent, depth]) => [id, parent, depth])).toEqual([
      [selfParent, selfParent, 0],
    ]);
    const x = await createAgent(t.db);
    const y = await createAgent(t.db, x);
    await t.db.prisma.$executeRaw`UPDATE ps_agents SET parent_agent_id = ${y} WHERE id = ${x}`;
    expect(flat(await sumAgentTreeUsage(t.db, y)).map(([id, parent, depth]) => [id, parent, depth])).toEqual([
      [y, x, 0],
      [x, y, 1],
    ]);
  });

  test("an unknown root agent is an UnknownReferenceError naming ps_agents", async () => {
    const error = await sumAgentTreeUsage(t.db, 987_654).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UnknownReferenceError);
    expect(error).toMatchObject({ table: "ps_agents", id: 987_654 });
  });

  test("a bad id or filter is a UsageValidationError naming the field", async () => {
    const fields = async (run: () => Promise<unknown>) => {
      const error = await run().catch((err: unknown) => err);
      expect(error).toBeInstanceOf(UsageValidationError);
      return (error as UsageValidationError).issues.map((i) => i.field);
    };
    expect(await fields(() => sumAgentTreeUsage(t.db, 0))).toEqual(["agentId"]);
    expect(await fields(() => sumAgentTreeUsage(t.db, "1" as never))).toEqual(["agentId"]);
    expect(await fields(() => sumAgentTreeUsage(t.db, root, { where: { agentId: a } } as never))).toEqual(["where.agentId"]);
    expect(
      await fields(() => sumAgentTreeUsage(t.db, root, { where: { from: new Date("2026-02-01"), to: new Date("2026-01-01"), modelId: [-1] } })),
    ).toEqual(["where.modelId[0]", "where.to"]);
  });
});
