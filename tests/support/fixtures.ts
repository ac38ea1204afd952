import type { Database } from "../../src";

/** Rows that usage points at, created through the generated client as a host app would. */
export async function createModel(db: Database, name = "gpt-test", configuration: object = {}): Promise<number> {
  return (await db.prisma.psAiModel.create({ data: { userId: 1, name, configuration } })).id;
}

export async function createExternalApi(db: Database, type = "search", priceAdapter: object = {}): Promise<number> {
  return (await db.prisma.psExternalApi.create({ data: { userId: 1, type, priceAdapter } })).id;
}

export async function createAgent(db: Database, parentAgentId: number | null = null): Promise<number> {
  return (await db.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1, parentAgentId } })).id;
}

export async function createConnector(db: Database): Promise<number> {
  return (await db.prisma.psAgentConnector.create({ data: { userId: 1, classId: 1, groupId: 1 } })).id;
}
