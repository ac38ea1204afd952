/**
 * `ps_external_api_usage`: record external API calls (one row per event, append only) and find
 * them page by page.
 */
import type { Database } from "./db";
import { type BudgetEvent } from "./budgets/guard";
import { recordOne, type SingleRecordSpec } from "./ledger/recordOne";
import { UnknownReferenceError, type FieldIssue } from "./errors";
import { Prisma } from "./generated/prisma/client";
import {
  type BatchRecordOptions,
  type BatchRecordResult,
  type ExternalApiUsageFilter,
  type ExternalApiUsageInput,
  type ExternalApiUsagePageOptions,
  type ExternalApiUsageRecord,
  type FoundExternalApiUsage,
  type RecordOptions,
  type UsagePage,
} from "./types";
import {
  EXTERNAL_API_USAGE_INPUT,
  checkInput,
  checkRecordOptions,
  throwIfIssues,
} from "./validation";
import {
  intArrayLiteral,
  recordBatch,
  type BatchSpec,
  timestampArrayLiteral,
  findUsagePage,
  type FindSpec,
  toAgentRecord,
  toConnectorRecord,
  toExternalApiRecord,
  eventTimes,
  BATCH_EVENT_TIME_SQL,
} from "./usageShared";
import { visibleTo, type Owner } from "./scope/ownership";
import type { References } from "./ledger/references";
import { singleInsertStatements } from "./ledger/singleInsert";

/** Reference columns of `ps_external_api_usage` and the input fields that fill them. */
const EXTERNAL_API_USAGE_REFERENCES: References = [
  ["external_api_id", "externalApiId"],
  ["agent_id", "agentId"],
  ["connector_id", "connectorId"],
];

type PrismaExternalApiUsageRow = Prisma.PsExternalApiUsageGetPayload<object>;

/** A Prisma row as the package's plain record. */
function toExternalApiUsageRecord(row: PrismaExternalApiUsageRow): ExternalApiUsageRecord {
  return {
    id: row.id,
    userId: row.userId,
    externalApiId: row.externalApiId,
    callCount: row.callCount,
    agentId: row.agentId,
    connectorId: row.connectorId,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}


/**
 * Records one external API usage event (`callCount` calls or units of one API): one new row.
 * `callCount` is required (PolicySynth's column has no default); `createdAt` defaults to now,
 * and `updatedAt` is `createdAt` (the row is never updated).
 *
 * Throws {@link UsageValidationError} listing every bad field and {@link UnknownReferenceError}
 * when the external API, agent or connector does not exist; either way nothing is written.
 * `options.idempotencyKey` works as for `recordModelUsage`: the same key again returns the first
 * row; a key used for model usage or by another user is a {@link UsageValidationError}.
 *
 * @example
 * const row = await recordExternalApiUsage(db, { userId: 42, externalApiId: 2, agentId: 7, callCount: 5 });
 * await recordExternalApiUsage(db, { userId: 42, externalApiId: 2, callCount: 1 }, { idempotencyKey: "search-77" });
 */
export async function recordExternalApiUsage(
  db: Database,
  input: ExternalApiUsageInput,
  options?: RecordOptions,
): Promise<ExternalApiUsageRecord> {
  return recordExternalApiUsageAs(db, input, options, null);
}

/**
 * @internal {@link recordExternalApiUsage} for a `forUser` view: with an `owner`, another user's
 * agent or connector is refused (src/scope/ownership.ts).
 */
export async function recordExternalApiUsageAs(
  db: Database,
  input: ExternalApiUsageInput,
  options: RecordOptions | undefined,
  owner: Owner,
): Promise<ExternalApiUsageRecord> {
  const issues: FieldIssue[] = [];
  checkInput(input, EXTERNAL_API_USAGE_INPUT, issues);
  checkRecordOptions(options, issues);
  throwIfIssues(issues);

  const data: Prisma.PsExternalApiUsageUncheckedCreateInput = {
    userId: input.userId,
    externalApiId: input.externalApiId,
    callCount: input.callCount,
    agentId: input.agentId ?? null,
    connectorId: input.connectorId ?? null,
  };
  return recordOne(
    db,
    SINGLE_RECORD,
    {
      input,
      values: () => {
        const times = eventTimes(input.createdAt);
        return [data.userId, data.externalApiId, data.callCount, data.agentId, data.connectorId, times.createdAt, times.updatedAt];
      },
      create: async (client, extra) => toExternalApiUsageRecord(await client.psExternalApiUsage.create({ data: { ...data, ...extra } })),
    },
    options,
    owner,
  );
}

/** The columns a single record writes, in the order of its values. */
const SINGLE_INSERT = singleInsertStatements({
  table: "ps_external_api_usage",
  keyColumn: "external_api_usage_id",
  columns: [
    ["user_id", "int", "userId"],
    ["external_api_id", "int", "externalApiId"],
    ["call_count", "int", "callCount"],
    ["agent_id", "int", "agentId"],
    ["connector_id", "int", "connectorId"],
    ["created_at", "timestamptz", "createdAt"],
    ["updated_at", "timestamptz", "updatedAt"],
  ],
});

/** How a single external API usage record is written (src/ledger/recordOne.ts). */
const SINGLE_RECORD: SingleRecordSpec<PrismaExternalApiUsageRow, ExternalApiUsageRecord> = {
  table: "ps_external_api_usage",
  references: EXTERNAL_API_USAGE_REFERENCES,
  tableLabel: "external API usage",
  statements: SINGLE_INSERT,
  toRecord: toExternalApiUsageRecord,
  budgetEvent: (row) => budgetEvent(row),
};

function batchChunkSql(items: readonly ExternalApiUsageInput[], start: number, end: number, returnIds: boolean): Prisma.Sql {
  const arrays = Prisma.join([
    Prisma.sql`${intArrayLiteral(items, start, end, "userId")}::int[]`,
    Prisma.sql`${intArrayLiteral(items, start, end, "externalApiId")}::int[]`,
    Prisma.sql`${intArrayLiteral(items, start, end, "callCount")}::int[]`,
    Prisma.sql`${intArrayLiteral(items, start, end, "agentId")}::int[]`,
    Prisma.sql`${intArrayLiteral(items, start, end, "connectorId")}::int[]`,
    Prisma.sql`${timestampArrayLiteral(items, start, end)}::timestamptz[]`,
  ]);
  // updated_at is the row's created_at (see BATCH_EVENT_TIME_SQL).
  const insert = Prisma.sql`INSERT INTO ps_external_api_usage (user_id, external_api_id, call_count, agent_id, connector_id, created_at, updated_at)
    SELECT u.user_id, u.external_api_id, u.call_count, u.agent_id, u.connector_id, ${BATCH_EVENT_TIME_SQL}, ${BATCH_EVENT_TIME_SQL}`;
  if (!returnIds) {
    return Prisma.sql`${insert} FROM unnest(${arrays}) AS u(user_id, external_api_id, call_count, agent_id, connector_id, created_at)`;
  }
  // Ordered by position so that ids are handed out, and returned, in input order.
  return Prisma.sql`${insert}
    FROM unnest(${arrays}) WITH ORDINALITY AS u(user_id, external_api_id, call_count, agent_id, connector_id, created_at, ord)
    ORDER BY u.ord RETURNING id`;
}

/**
 * Records many external API usage events at once, all or nothing, as
 * `INSERT … SELECT … FROM unnest(…)` statements of `options.chunkSize` rows (default 20,000) in
 * one transaction. Every item is validated first ({@link UsageValidationError} lists each bad
 * field with its `index`); a missing API, agent or connector is an
 * {@link UnknownReferenceError} naming the table and the first missing id.
 *
 * @example
 * const { count } = await recordExternalApiUsageBatch(db, [
 *   { userId: 42, externalApiId: 2, callCount: 3 },
 *   { userId: 42, externalApiId: 2, agentId: 7, callCount: 1, createdAt: new Date("2025-01-01T12:00:00Z") },
 * ]);
 */
export async function recordExternalApiUsageBatch(
  db: Database,
  inputs: readonly ExternalApiUsageInput[],
  options?: BatchRecordOptions,
): Promise<BatchRecordResult> {
  return recordExternalApiUsageBatchAs(db, inputs, options, null);
}

/** @internal {@link recordExternalApiUsageBatch} for a `forUser` view (see {@link recordExternalApiUsageAs}). */
export async function recordExternalApiUsageBatchAs(
  db: Database,
  inputs: readonly ExternalApiUsageInput[],
  options: BatchRecordOptions | undefined,
  owner: Owner,
): Promise<BatchRecordResult> {
  return recordBatch(db, inputs, options, EXTERNAL_API_USAGE_BATCH, owner);
}

/** An external API usage row as the budgets see it. */
function budgetEvent(row: { userId: number; agentId?: number | null; connectorId?: number | null; externalApiId: number; createdAt?: Date }, now = new Date()): BudgetEvent {
  return {
    userId: row.userId,
    agentId: row.agentId ?? null,
    connectorId: row.connectorId ?? null,
    modelId: null,
    externalApiId: row.externalApiId,
    createdAt: row.createdAt ?? now,
  };
}

/** @internal How a batch of external API usage is validated and written (for {@link recordBatchesTogether}). */
export const EXTERNAL_API_USAGE_BATCH: BatchSpec<ExternalApiUsageInput> = {
  shape: EXTERNAL_API_USAGE_INPUT,
  table: "ps_external_api_usage",
  references: EXTERNAL_API_USAGE_REFERENCES,
  chunkSql: batchChunkSql,
  budgetEvent,
};

/**
 * Finds external API usage rows, one page at a time: filter by user, agent (one or several),
 * connector, external API (one or several) and `createdAt` in `[from, to)`; newest first unless
 * `page.order` is `"oldest"`; keyset paging with `nextCursor` that rows recorded meanwhile never
 * shift; `page.limit` 100 by default, at most 1000; `page.include` adds the related agent,
 * connector and external API. Bad filters or pages throw {@link UsageValidationError}.
 *
 * @example
 * const page = await findExternalApiUsage(db, { userId: 42, externalApiId: 2 }, { limit: 50, include: { externalApi: true } });
 * const next = page.nextCursor ? await findExternalApiUsage(db, { userId: 42, externalApiId: 2 }, { limit: 50, cursor: page.nextCursor }) : null;
 */
export async function findExternalApiUsage(
  db: Database,
  filter: ExternalApiUsageFilter = {},
  page: ExternalApiUsagePageOptions = {},
): Promise<UsagePage<FoundExternalApiUsage>> {
  return findUsagePage(db, FIND_EXTERNAL_API_USAGE, filter, page);
}

/**
 * @internal {@link findExternalApiUsage} for a `forUser` view: an included agent or connector of
 * another user is null (the external API is shared and always included).
 */
export async function findExternalApiUsageAs(
  db: Database,
  filter: ExternalApiUsageFilter,
  page: ExternalApiUsagePageOptions = {},
  owner: Owner,
): Promise<UsagePage<FoundExternalApiUsage>> {
  return findUsagePage(db, FIND_EXTERNAL_API_USAGE, filter, page, owner);
}

type FoundExternalApiUsageRow = PrismaExternalApiUsageRow & {
  agent?: Parameters<typeof toAgentRecord>[0] | null;
  connector?: Parameters<typeof toConnectorRecord>[0] | null;
  externalApi?: Parameters<typeof toExternalApiRecord>[0];
};

const FIND_EXTERNAL_API_USAGE: FindSpec<FoundExternalApiUsageRow, FoundExternalApiUsage> = {
  table: "externalApi",
  idField: "externalApiId",
  includeKeys: ["agent", "connector", "externalApi"],
  findMany: (db, args) =>
    db.reportPrisma.psExternalApiUsage.findMany(args as Prisma.PsExternalApiUsageFindManyArgs) as Promise<FoundExternalApiUsageRow[]>,
  toItem(row, include, owner) {
    const item: FoundExternalApiUsage = toExternalApiUsageRecord(row);
    if (!include.agent && !include.connector && !include.externalApi) return item;
    const agent = visibleTo(row.agent, owner);
    const connector = visibleTo(row.connector, owner);
    return {
      ...item,
      ...(include.agent ? { agent: agent ? toAgentRecord(agent) : null } : {}),
      ...(include.connector ? { connector: connector ? toConnectorRecord(connector) : null } : {}),
      ...(include.externalApi && row.externalApi ? { externalApi: toExternalApiRecord(row.externalApi) } : {}),
    };
  },
};
