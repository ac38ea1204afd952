// Round trip through the generated client: the relations declared in schema.prisma exist in
// the migrated database with the delete rules PolicySynth's tables have.
import { Prisma } from "../src/generated/prisma/client";
import { backend, openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.dispose());

const prisma = () => t.db.prisma;

/**
 * The delete was refused by the named ON DELETE RESTRICT constraint. @prisma/adapter-pg maps
 * SQLSTATE 23001 to P2003; pglite-prisma-adapter 0.7.2 maps only 23503, so on PGlite it
 * arrives as P2039 (database error) carrying PostgreSQL's own message.
 */
function expectRestrictViolation(error: unknown, constraint: string): void {
  expect(error).toBeInstanceOf(Prisma.PrismaClientKnownRequestError);
  const known = error as Prisma.PrismaClientKnownRequestError;
  expect(known.code).toBe(backend === "postgres" ? "P2003" : "P2039");
  expect(known.message).toContain(constraint);
}

test("a model, an agent tree, a connector and an external API round-trip with their usage", async () => {
  const model = await prisma().psAiModel.create({
    data: { userId: 7, organizationId: 3, name: "gpt-round-trip", configuration: { prices: { costInTokensPerMillion: 2.5, currency: "USD" } } },
  });
  const api = await prisma().psExternalApi.create({
    data: { userId: 7, type: "web-search", priceAdapter: { unitType: "call", pricePerUnit: 0.005, currency: "USD" } },
  });
  const root = await prisma().psAgent.create({ data: { userId: 7, classId: 11, groupId: 21 } });
  const childA = await prisma().psAgent.create({ data: { userId: 7, classId: 12, groupId: 21, parentAgentId: root.id } });
  const childB = await prisma().psAgent.create({ data: { userId: 7, classId: 13, groupId: 21, parentAgentId: root.id } });
  const grandchild = await prisma().psAgent.create({ data: { userId: 7, classId: 14, groupId: 21, parentAgentId: childA.id } });
  const connector = await prisma().psAgentConnector.create({ data: { userId: 7, classId: 31, groupId: 21 } });

  // uuid defaults come from gen_random_uuid() in the database.
  for (const row of [model, api, root, connector]) expect(row.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(new Set([model.uuid, api.uuid, root.uuid, childA.uuid, connector.uuid]).size).toBe(5);

  const modelUsage = await prisma().psModelUsage.create({
    data: {
      userId: 7,
      modelId: model.id,
      agentId: grandchild.id,
      connectorId: connector.id,
      tokenInCount: 1200,
      tokenOutCount: 340,
      tokenInCacheWriteCount: 50,
      longContextTokenOutReasoningCount: 9,
    },
  });
  const apiUsage = await prisma().psExternalApiUsage.create({
    data: { userId: 7, externalApiId: api.id, callCount: 4, agentId: childB.id, connectorId: connector.id },
  });

  const readModelUsage = await prisma().psModelUsage.findUniqueOrThrow({
    where: { id: modelUsage.id },
    include: { model: true, agent: { include: { parentAgent: { include: { parentAgent: true } } } }, connector: true },
  });
  expect(readModelUsage).toMatchObject({
    userId: 7,
    tokenInCount: 1200,
    tokenOutCount: 340,
    tokenInCacheWriteCount: 50,
    longContextTokenOutReasoningCount: 9,
    model: { id: model.id, name: "gpt-round-trip", organizationId: 3 },
    connector: { id: connector.id, classId: 31 },
  });
  expect(readModelUsage.model.configuration).toEqual({ prices: { costInTokensPerMillion: 2.5, currency: "USD" } });
  // grandchild -> childA -> root
  expect(readModelUsage.agent?.id).toBe(grandchild.id);
  expect(readModelUsage.agent?.parentAgent?.id).toBe(childA.id);
  expect(readModelUsage.agent?.parentAgent?.parentAgent).toMatchObject({ id: root.id, parentAgentId: null, classId: 11 });

  const readApiUsage = await prisma().psExternalApiUsage.findUniqueOrThrow({
    where: { id: apiUsage.id },
    include: { externalApi: true, agent: true, connector: true },
  });
  expect(readApiUsage).toMatchObject({
    callCount: 4,
    externalApi: { id: api.id, type: "web-search" },
    agent: { id: childB.id, parentAgentId: root.id },
    connector: { id: connector.id },
  });
  expect(readApiUsage.externalApi.priceAdapter).toEqual({ unitType: "call", pricePerUnit: 0.005, currency: "USD" });

  const tree = await prisma().psAgent.findUniqueOrThrow({
    where: { id: root.id },
    include: { subAgents: { include: { subAgents: true }, orderBy: { id: "asc" } } },
  });
  expect(tree.subAgents.map((a) => a.id)).toEqual([childA.id, childB.id]);
  expect(tree.subAgents[0].subAgents.map((a) => a.id)).toEqual([grandchild.id]);
  expect(tree.subAgents[1].subAgents).toEqual([]);

  // Reverse relations: what each model / API / connector was used for.
  const modelWithUsage = await prisma().psAiModel.findUniqueOrThrow({ where: { id: model.id }, include: { usage: true } });
  expect(modelWithUsage.usage.map((u) => u.id)).toEqual([modelUsage.id]);
  const connectorWithUsage = await prisma().psAgentConnector.findUniqueOrThrow({
    where: { id: connector.id },
    include: { modelUsage: true, externalApiUsage: true },
  });
  expect(connectorWithUsage.modelUsage.map((u) => u.id)).toEqual([modelUsage.id]);
  expect(connectorWithUsage.externalApiUsage.map((u) => u.id)).toEqual([apiUsage.id]);
});

test("every token counter not given defaults to 0, and agent and connector default to null", async () => {
  const model = await prisma().psAiModel.create({ data: { userId: 1, name: "defaults" } });
  const usage = await prisma().psModelUsage.create({ data: { userId: 1, modelId: model.id } });
  const counters = Object.entries(usage).filter(([k]) => k.endsWith("Count"));
  // The seed's 12 counters + PolicySynth's 2 cache-write counters + this package's web searches.
  expect(counters).toHaveLength(15);
  for (const [name, value] of counters) expect([name, value]).toEqual([name, 0]);
  expect(usage.agentId).toBeNull();
  expect(usage.connectorId).toBeNull();
  expect(model.configuration).toEqual({});
});

test("external API usage requires call_count: a create without it is rejected and writes nothing", async () => {
  const api = await prisma().psExternalApi.create({ data: { userId: 1, type: "needs-count" } });
  const before = await prisma().psExternalApiUsage.count();
  await expect(
    // Deliberately ill-typed: this is what a JS caller could send.
    prisma().psExternalApiUsage.create({ data: { userId: 1, externalApiId: api.id } as never }),
  ).rejects.toThrow(/callCount/);
  // The database itself refuses a row without it too (no default, NOT NULL).
  await expect(
    prisma().$executeRaw`INSERT INTO ps_external_api_usage (user_id, external_api_id) VALUES (1, ${api.id})`,
  ).rejects.toThrow(/call_count/);
  expect(await prisma().psExternalApiUsage.count()).toBe(before);
});

test("updatedAt moves forward on update; createdAt stays", async () => {
  const model = await prisma().psAiModel.create({ data: { userId: 1, name: "touch" } });
  const usage = await prisma().psModelUsage.create({ data: { userId: 1, modelId: model.id, tokenInCount: 1 } });
  await new Promise((r) => setTimeout(r, 20));
  const updated = await prisma().psModelUsage.update({ where: { id: usage.id }, data: { tokenInCount: { increment: 5 } } });
  expect(updated.tokenInCount).toBe(6);
  expect(updated.createdAt.getTime()).toBe(usage.createdAt.getTime());
  expect(updated.updatedAt.getTime()).toBeGreaterThan(usage.updatedAt.getTime());
});

describe("ON DELETE rules", () => {
  test("deleting an agent keeps its usage, with agentId set to null, and detaches its sub-agents", async () => {
    const modelId = (await prisma().psAiModel.create({ data: { userId: 1, name: "m" } })).id;
    const apiId = (await prisma().psExternalApi.create({ data: { userId: 1, type: "a" } })).id;
    const agent = await prisma().psAgent.create({ data: { userId: 1, classId: 1, groupId: 1 } });
    const sub = await prisma().psAgent.create({ data: { userId: 1, classId: 1, groupId: 1, parentAgentId: agent.id } });
    const mu = await prisma().psModelUsage.create({ data: { userId: 1, modelId, agentId: agent.id, tokenOutCount: 77 } });
    const au = await prisma().psExternalApiUsage.create({ data: { userId: 1, externalApiId: apiId, agentId: agent.id, callCount: 3 } });

    await prisma().psAgent.delete({ where: { id: agent.id } });

    expect(await prisma().psModelUsage.findUnique({ where: { id: mu.id } })).toMatchObject({ agentId: null, tokenOutCount: 77 });
    expect(await prisma().psExternalApiUsage.findUnique({ where: { id: au.id } })).toMatchObject({ agentId: null, callCount: 3 });
    expect(await prisma().psAgent.findUnique({ where: { id: sub.id } })).toMatchObject({ parentAgentId: null });
  });

  test("deleting a connector keeps its usage, with connectorId set to null", async () => {
    const modelId = (await prisma().psAiModel.create({ data: { userId: 1, name: "m" } })).id;
    const apiId = (await prisma().psExternalApi.create({ data: { userId: 1, type: "a" } })).id;
    const connector = await prisma().psAgentConnector.create({ data: { userId: 1, classId: 1, groupId: 1 } });
    const mu = await prisma().psModelUsage.create({ data: { userId: 1, modelId, connectorId: connector.id, tokenInCount: 5 } });
    const au = await prisma().psExternalApiUsage.create({ data: { userId: 1, externalApiId: apiId, connectorId: connector.id, callCount: 2 } });

    await prisma().psAgentConnector.delete({ where: { id: connector.id } });

    expect(await prisma().psModelUsage.findUnique({ where: { id: mu.id } })).toMatchObject({ connectorId: null, tokenInCount: 5 });
    expect(await prisma().psExternalApiUsage.findUnique({ where: { id: au.id } })).toMatchObject({ connectorId: null, callCount: 2 });
  });

  test("a model with usage cannot be deleted: foreign key error, model and usage still there", async () => {
    const model = await prisma().psAiModel.create({ data: { userId: 1, name: "restricted" } });
    const mu = await prisma().psModelUsage.create({ data: { userId: 1, modelId: model.id, tokenInCount: 10 } });

    const error = await prisma().psAiModel.delete({ where: { id: model.id } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectRestrictViolation(error, "ps_model_usage_model_id_fkey");

    expect(await prisma().psAiModel.findUnique({ where: { id: model.id } })).not.toBeNull();
    expect(await prisma().psModelUsage.findUnique({ where: { id: mu.id } })).toMatchObject({ modelId: model.id, tokenInCount: 10 });
  });

  test("an external API with usage cannot be deleted: foreign key error, API and usage still there", async () => {
    const api = await prisma().psExternalApi.create({ data: { userId: 1, type: "restricted" } });
    const au = await prisma().psExternalApiUsage.create({ data: { userId: 1, externalApiId: api.id, callCount: 8 } });

    const error = await prisma().psExternalApi.delete({ where: { id: api.id } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectRestrictViolation(error, "ps_external_api_usage_external_api_id_fkey");

    expect(await prisma().psExternalApi.findUnique({ where: { id: api.id } })).not.toBeNull();
    expect(await prisma().psExternalApiUsage.findUnique({ where: { id: au.id } })).toMatchObject({ externalApiId: api.id, callCount: 8 });
  });

  test("a model or an external API without usage can be deleted", async () => {
    const model = await prisma().psAiModel.create({ data: { userId: 1, name: "unused" } });
    const api = await prisma().psExternalApi.create({ data: { userId: 1, type: "unused" } });
    await prisma().psAiModel.delete({ where: { id: model.id } });
    await prisma().psExternalApi.delete({ where: { id: api.id } });
    expect(await prisma().psAiModel.findUnique({ where: { id: model.id } })).toBeNull();
    expect(await prisma().psExternalApi.findUnique({ where: { id: api.id } })).toBeNull();
  });

  test("usage pointing at a model that does not exist is rejected with a foreign key error", async () => {
    const error = await prisma().psModelUsage.create({ data: { userId: 1, modelId: 987654 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as Prisma.PrismaClientKnownRequestError).code).toBe("P2003");
  });
});
