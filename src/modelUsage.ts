/**
 * `ps_model_usage`: record model usage (one row per event, append only), record a raw model
 * call the way PolicySynth splits long context, and find usage page by page.
 */
import type { Database } from "./db";
import { UnknownReferenceError, type FieldIssue } from "./errors";
import { Prisma } from "./generated/prisma/client";
import {
  MODEL_USAGE_ALL_COUNTERS,
  MODEL_USAGE_COUNTERS,
  type BatchRecordOptions,
  type BatchRecordResult,
  type FoundModelUsage,
  type ModelCallInput,
  type ModelCallOptions,
  type ModelUsageFilter,
  type ModelUsageCounter,
  type ModelUsageInput,
  type ModelUsagePageOptions,
  type ModelUsageRecord,
  type RecordOptions,
  type UsagePage,
} from "./types";
import {
  MODEL_CALL_INPUT,
  MODEL_USAGE_INPUT,
  checkInput,
  checkModelCallOptions,
  checkRecordOptions,
  storedServiceTier,
  throwIfIssues,
} from "./validation";
import {
  intArrayLiteral,
  textArrayLiteral,
  recordBatch,
  type BatchSpec,
  timestampArrayLiteral,
  findUsagePage,
  type FindSpec,
  toAgentRecord,
  toAiModelRecord,
  toConnectorRecord,
  eventTimes,
  BATCH_EVENT_TIME_SQL,
} from "./usageShared";
import { visibleTo, type Owner } from "./scope/ownership";
import type { References } from "./ledger/references";
import { singleInsertStatements, type SingleColumn } from "./ledger/singleInsert";
import { type BudgetEvent } from "./budgets/guard";
import { recordOne, type SingleRecordSpec } from "./ledger/recordOne";

/** @internal A model usage row (or input, or provider call: `now` when it has no `createdAt`) as the budgets see it. */
export const budgetEvent = (row: { userId: number; agentId?: number | null; connectorId?: number | null; modelId: number; createdAt?: Date }, now = new Date()): BudgetEvent => ({
  userId: row.userId,
  agentId: row.agentId ?? null,
  connectorId: row.connectorId ?? null,
  modelId: row.modelId,
  externalApiId: null,
  createdAt: row.createdAt ?? now,
});

/** Reference columns of `ps_model_usage` and the input fields that fill them. */
const MODEL_USAGE_REFERENCES: References = [
  ["model_id", "modelId"],
  ["agent_id", "agentId"],
  ["connector_id", "connectorId"],
];

type PrismaModelUsageRow = Prisma.PsModelUsageGetPayload<object>;

/** A Prisma row as the package's plain record. */
function toModelUsageRecord(row: PrismaModelUsageRow): ModelUsageRecord {
  return {
    id: row.id,
    userId: row.userId,
    modelId: row.modelId,
    agentId: row.agentId,
    connectorId: row.connectorId,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    tokenInCount: row.tokenInCount,
    tokenInCachedContextCount: row.tokenInCachedContextCount,
    tokenInCacheWriteCount: row.tokenInCacheWriteCount,
    longContextTokenInCount: row.longContextTokenInCount,
    longContextTokenInCachedContextCount: row.longContextTokenInCachedContextCount,
    longContextTokenInCacheWriteCount: row.longContextTokenInCacheWriteCount,
    tokenOutCount: row.tokenOutCount,
    tokenOutReasoningCount: row.tokenOutReasoningCount,
    tokenOutAudioCount: row.tokenOutAudioCount,
    tokenOutImageCount: row.tokenOutImageCount,
    longContextTokenOutCount: row.longContextTokenOutCount,
    longContextTokenOutReasoningCount: row.longContextTokenOutReasoningCount,
    longContextTokenOutAudioCount: row.longContextTokenOutAudioCount,
    longContextTokenOutImageCount: row.longContextTokenOutImageCount,
    webSearchCount: row.webSearchCount,
    serviceTier: row.serviceTier,
    regionalProcessing: row.regionalProcessing,
  };
}


/**
 * Records one model usage event: one new row (the ledger is append only, so concurrent writers
 * never lose an update). Counters not given are 0; `createdAt` defaults to now, and `updatedAt`
 * is `createdAt` (the row is never updated).
 *
 * Throws {@link UsageValidationError} listing every bad field (non-integers, negatives, values
 * above INTEGER, ids that are not positive, missing or unknown fields, a bad `createdAt`) and
 * {@link UnknownReferenceError} when the model, agent or connector does not exist; either way
 * nothing is written.
 *
 * With `options.idempotencyKey`, the same key again (also from concurrent callers) records
 * nothing and returns the row the first call stored. A key already used for external API usage,
 * or by another user, is a {@link UsageValidationError} on `options.idempotencyKey`.
 *
 * @example
 * const row = await recordModelUsage(db, { userId: 42, modelId: 3, agentId: 7, tokenInCount: 1000, tokenOutCount: 800 });
 * row.tokenInCachedContextCount; // 0
 * await recordModelUsage(db, { userId: 42, modelId: 3, tokenInCount: 5 }, { idempotencyKey: "call-8f2c" });
 */
export async function recordModelUsage(db: Database, input: ModelUsageInput, options?: RecordOptions): Promise<ModelUsageRecord> {
  return recordModelUsageAs(db, input, options, null);
}

/**
 * @internal {@link recordModelUsage} for a `forUser` view: with an `owner`, another user's agent
 * or connector is refused (src/scope/ownership.ts).
 */
export async function recordModelUsageAs(
  db: Database,
  input: ModelUsageInput,
  options: RecordOptions | undefined,
  owner: Owner,
  /** @internal More rows written in the same transaction, after the usage row (a usage item). */
  alsoWrite?: (client: Prisma.TransactionClient, row: ModelUsageRecord) => Promise<void>,
): Promise<ModelUsageRecord> {
  const issues: FieldIssue[] = [];
  checkInput(input, MODEL_USAGE_INPUT, issues);
  checkRecordOptions(options, issues);
  throwIfIssues(issues);

  const data: Prisma.PsModelUsageUncheckedCreateInput = {
    userId: input.userId,
    modelId: input.modelId,
    agentId: input.agentId ?? null,
    connectorId: input.connectorId ?? null,
    serviceTier: storedServiceTier(input.serviceTier),
    regionalProcessing: input.regionalProcessing ?? null,
  };
  for (const [field] of MODEL_USAGE_ALL_COUNTERS) {
    const value = input[field];
    if (value !== undefined) data[field] = value;
  }
  return recordOne(
    db,
    SINGLE_RECORD,
    {
      input,
      values: () => singleValues(data, input.createdAt),
      create: async (client, extra) => toModelUsageRecord(await client.psModelUsage.create({ data: { ...data, ...extra } })),
      alsoWrite,
    },
    options,
    owner,
  );
}

/** Every column a single record writes, in the order of {@link singleValues}. */
const SINGLE_INSERT = singleInsertStatements({
  table: "ps_model_usage",
  keyColumn: "model_usage_id",
  columns: [
    ["user_id", "int", "userId"],
    ["model_id", "int", "modelId"],
    ["agent_id", "int", "agentId"],
    ["connector_id", "int", "connectorId"],
    ["created_at", "timestamptz", "createdAt"],
    ["updated_at", "timestamptz", "updatedAt"],
    ...MODEL_USAGE_ALL_COUNTERS.map(([field, column]): SingleColumn => [column, "int", field]),
    ["service_tier", "varchar", "serviceTier"],
    ["regional_processing", "varchar", "regionalProcessing"],
  ],
});

/** How a single model usage record is written (src/ledger/recordOne.ts). */
const SINGLE_RECORD: SingleRecordSpec<Parameters<typeof toModelUsageRecord>[0], ModelUsageRecord> = {
  table: "ps_model_usage",
  references: MODEL_USAGE_REFERENCES,
  tableLabel: "model usage",
  statements: SINGLE_INSERT,
  toRecord: toModelUsageRecord,
  budgetEvent: (row) => budgetEvent(row),
};

/** A single record's values for {@link SINGLE_INSERT}: counters not given are 0 (the columns' default). */
function singleValues(data: Prisma.PsModelUsageUncheckedCreateInput, createdAt: Date | undefined): unknown[] {
  const times = eventTimes(createdAt);
  const values: unknown[] = [data.userId, data.modelId, data.agentId, data.connectorId, times.createdAt, times.updatedAt];
  for (const [field] of MODEL_USAGE_ALL_COUNTERS) values.push(data[field] ?? 0);
  values.push(data.serviceTier, data.regionalProcessing);
  return values;
}

/** @internal One unnest array of a batch chunk: its column, its array literal and the element type. */
export type ChunkArray = readonly [column: string, literal: string, type: "int" | "timestamptz" | "text"];

/** One column of a batch chunk: its name, its element type and how its array literal is built. */
type ChunkColumn = readonly [column: string, type: ChunkArray[2], literal: (items: readonly ModelUsageInput[], start: number, end: number) => string];

/** `ps_model_usage` columns every batch chunk fills, in the order of the unnest arrays. */
const BATCH_COLUMNS: readonly ChunkColumn[] = [
  ["user_id", "int", (items, start, end) => intArrayLiteral(items, start, end, "userId", 0)],
  ["model_id", "int", (items, start, end) => intArrayLiteral(items, start, end, "modelId", 0)],
  ["agent_id", "int", (items, start, end) => intArrayLiteral(items, start, end, "agentId")],
  ["connector_id", "int", (items, start, end) => intArrayLiteral(items, start, end, "connectorId")],
  ["created_at", "timestamptz", (items, start, end) => timestampArrayLiteral(items, start, end)],
  ...MODEL_USAGE_COUNTERS.map(([field, column]): ChunkColumn => [column, "int", (items, start, end) => intArrayLiteral(items, start, end, field, 0)]),
];

/**
 * Columns a chunk fills only when one of its items gives a value other than the column's default
 * (0, NULL): most usage has no web search, tier or region, and leaving their arrays out of the
 * statement saves the server about a tenth of a chunk's insert (bench/profileChunk.ts).
 */
const OPTIONAL_BATCH_COLUMNS: readonly (readonly [ChunkColumn, (item: ModelUsageInput) => boolean])[] = [
  [["web_search_count", "int", (items, start, end) => intArrayLiteral(items, start, end, "webSearchCount", 0)], (item) => !!item.webSearchCount],
  [
    ["service_tier", "text", (items, start, end) => textArrayLiteral(items, start, end, (item) => storedServiceTier(item.serviceTier))],
    (item) => storedServiceTier(item.serviceTier) !== null,
  ],
  [
    ["regional_processing", "text", (items, start, end) => textArrayLiteral(items, start, end, (item) => item.regionalProcessing ?? null)],
    (item) => item.regionalProcessing != null,
  ],
];

function batchChunkSql(items: readonly ModelUsageInput[], start: number, end: number, returnIds: boolean): Prisma.Sql {
  const columns = [...BATCH_COLUMNS];
  for (const [column, given] of OPTIONAL_BATCH_COLUMNS) {
    for (let i = start; i < end; i++) {
      if (given(items[i])) {
        columns.push(column);
        break;
      }
    }
  }
  return modelUsageInsertSql(
    columns.map(([column, type, literal]): ChunkArray => [column, literal(items, start, end), type]),
    returnIds,
  );
}

/**
 * @internal The one `INSERT … SELECT … FROM unnest(…)` of a batch chunk, from its columns' array
 * literals (`created_at` among them; columns left out take their defaults): also used by
 * `recordProviderUsageBatch`, which builds the literals from its calls without an input object per row.
 */
export function modelUsageInsertSql(arrays: readonly ChunkArray[], returnIds: boolean): Prisma.Sql {
  const names = arrays.map(([name]) => name);
  const unnestArrays = Prisma.join(arrays.map(([, literal, type]) => Prisma.sql`${literal}::${Prisma.raw(type)}[]`));
  // updated_at is not an array: it is the row's created_at (see BATCH_EVENT_TIME_SQL).
  const insertColumns = Prisma.raw([...names, "updated_at"].join(", "));
  const selectList = Prisma.join(
    [...names.map((c) => (c === "created_at" ? BATCH_EVENT_TIME_SQL : Prisma.raw(`u.${c}`))), BATCH_EVENT_TIME_SQL],
    ", ",
  );
  const aliases = Prisma.raw(names.join(", "));
  if (!returnIds) {
    return Prisma.sql`INSERT INTO ps_model_usage (${insertColumns}) SELECT ${selectList} FROM unnest(${unnestArrays}) AS u(${aliases})`;
  }
  // Ordered by position so that ids are handed out, and returned, in input order.
  return Prisma.sql`INSERT INTO ps_model_usage (${insertColumns})
    SELECT ${selectList} FROM unnest(${unnestArrays}) WITH ORDINALITY AS u(${aliases}, ord) ORDER BY u.ord
    RETURNING id`;
}

/**
 * Records many model usage events at once, all or nothing. Each chunk of `options.chunkSize`
 * rows (default 20,000) is one `INSERT … SELECT … FROM unnest(…)` statement; a batch of
 * several chunks runs in one transaction. Every item is validated before anything is written:
 * a {@link UsageValidationError} lists every bad field with its item's `index`. A missing
 * model, agent or connector is an {@link UnknownReferenceError} naming the table and the first
 * missing id, and nothing is written.
 *
 * Returns the number of rows written, and with `returnIds: true` their ids in input order.
 *
 * @example
 * const { count } = await recordModelUsageBatch(db, [
 *   { userId: 42, modelId: 3, tokenInCount: 1000, tokenOutCount: 200 },
 *   { userId: 42, modelId: 3, agentId: 7, tokenInCount: 50, createdAt: new Date("2025-01-01T12:00:00Z") },
 * ]);
 * const { ids } = await recordModelUsageBatch(db, inputs, { returnIds: true });
 */
export async function recordModelUsageBatch(
  db: Database,
  inputs: readonly ModelUsageInput[],
  options?: BatchRecordOptions,
): Promise<BatchRecordResult> {
  return recordModelUsageBatchAs(db, inputs, options, null);
}

/** @internal {@link recordModelUsageBatch} for a `forUser` view (see {@link recordModelUsageAs}). */
export async function recordModelUsageBatchAs(
  db: Database,
  inputs: readonly ModelUsageInput[],
  options: BatchRecordOptions | undefined,
  owner: Owner,
): Promise<BatchRecordResult> {
  return recordBatch(db, inputs, options, MODEL_USAGE_BATCH, owner);
}

/** @internal How a batch of model usage is validated and written (for {@link recordBatchesTogether}). */
export const MODEL_USAGE_BATCH: BatchSpec<ModelUsageInput> = {
  shape: MODEL_USAGE_INPUT,
  table: "ps_model_usage",
  references: MODEL_USAGE_REFERENCES,
  chunkSql: batchChunkSql,
  budgetEvent,
};

/**
 * Turns a raw model call into the counters PolicySynth would record: when the call's total input
 * (`inputTokens + cachedInputTokens + cacheWriteInputTokens`) reaches `longContextTokenThreshold`,
 * all of its tokens (input, cached, cache write, output, reasoning, audio, image) go to the
 * `long_context_*` columns; otherwise to the normal ones. A threshold that is absent, null or 0
 * means the model has no long-context pricing. Pure: no validation, no database.
 *
 * @example
 * modelCallToUsage({ userId: 1, modelId: 3, inputTokens: 150_000, outputTokens: 900 }, 128_000);
 * // { userId: 1, modelId: 3, longContextTokenInCount: 150000, longContextTokenOutCount: 900, ...zeros }
 */
export function modelCallToUsage(call: ModelCallInput, longContextTokenThreshold?: number | null): ModelUsageInput {
  return {
    userId: call.userId,
    modelId: call.modelId,
    ...(call.agentId !== undefined ? { agentId: call.agentId } : {}),
    ...(call.connectorId !== undefined ? { connectorId: call.connectorId } : {}),
    ...(call.createdAt !== undefined ? { createdAt: call.createdAt } : {}),
    ...modelCallTokensToCounters(call, longContextTokenThreshold),
    ...(call.webSearchCount !== undefined ? { webSearchCount: call.webSearchCount } : {}),
    ...(call.serviceTier !== undefined ? { serviceTier: call.serviceTier } : {}),
    ...(call.regionalProcessing !== undefined ? { regionalProcessing: call.regionalProcessing } : {}),
  };
}

/** The token fields of a {@link ModelCallInput}. */
type ModelCallTokens = Pick<
  ModelCallInput,
  "inputTokens" | "cachedInputTokens" | "cacheWriteInputTokens" | "outputTokens" | "reasoningTokens" | "audioTokens" | "imageTokens"
>;

/**
 * @internal PolicySynth's long-context rule, the one place it is written: a call is long context
 * when its whole input (plain, cached and cache-written tokens) reaches the threshold; a threshold
 * that is absent, null or 0 means the model has none.
 */
export function isLongContextCall(input: number, cached: number, cacheWrite: number, threshold: number | null | undefined): boolean {
  return !!threshold && input + cached + cacheWrite >= threshold;
}

/**
 * @internal The long-context split of {@link modelCallToUsage} on the token fields alone (also
 * used by `providerUsageToModelUsage`): the seven counters of the side the call falls on.
 */
export function modelCallTokensToCounters(
  call: ModelCallTokens,
  longContextTokenThreshold?: number | null,
): { readonly [K in ModelUsageCounter]?: number } {
  const input = call.inputTokens;
  const cached = call.cachedInputTokens ?? 0;
  const cacheWrite = call.cacheWriteInputTokens ?? 0;
  const longContext = isLongContextCall(input, cached, cacheWrite, longContextTokenThreshold);
  const out = call.outputTokens;
  const reasoning = call.reasoningTokens ?? 0;
  const audio = call.audioTokens ?? 0;
  const image = call.imageTokens ?? 0;
  if (longContext) {
    return {
      longContextTokenInCount: input,
      longContextTokenInCachedContextCount: cached,
      longContextTokenInCacheWriteCount: cacheWrite,
      longContextTokenOutCount: out,
      longContextTokenOutReasoningCount: reasoning,
      longContextTokenOutAudioCount: audio,
      longContextTokenOutImageCount: image,
    };
  }
  return {
    tokenInCount: input,
    tokenInCachedContextCount: cached,
    tokenInCacheWriteCount: cacheWrite,
    tokenOutCount: out,
    tokenOutReasoningCount: reasoning,
    tokenOutAudioCount: audio,
    tokenOutImageCount: image,
  };
}

/**
 * Records one raw model call the PolicySynth way (see {@link modelCallToUsage}): with the
 * model's `longContextTokenThreshold`, a call whose total input reaches it is recorded entirely
 * in the `long_context_*` columns. Validation, errors and `idempotencyKey` are as for
 * {@link recordModelUsage}; field names in errors are the call's (`inputTokens`, ...).
 *
 * @example
 * await recordModelCall(
 *   db,
 *   { userId: 42, modelId: 3, agentId: 7, inputTokens: 180_000, cachedInputTokens: 20_000, outputTokens: 1_200 },
 *   { longContextTokenThreshold: 200_000, idempotencyKey: "req-1" },
 * ); // 200,000 input tokens reach the threshold: stored as long context
 */
export async function recordModelCall(db: Database, call: ModelCallInput, options?: ModelCallOptions): Promise<ModelUsageRecord> {
  return recordModelCallAs(db, call, options, null);
}

/** @internal {@link recordModelCall} for a `forUser` view (see {@link recordModelUsageAs}). */
export async function recordModelCallAs(
  db: Database,
  call: ModelCallInput,
  options: ModelCallOptions | undefined,
  owner: Owner,
): Promise<ModelUsageRecord> {
  const issues: FieldIssue[] = [];
  checkInput(call, MODEL_CALL_INPUT, issues);
  checkModelCallOptions(options, issues);
  throwIfIssues(issues);
  const usage = modelCallToUsage(call, options?.longContextTokenThreshold);
  return recordModelUsageAs(
    db,
    usage,
    options?.idempotencyKey === undefined && options?.enforceBudgets === undefined
      ? undefined
      : { ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }), ...(options.enforceBudgets === undefined ? {} : { enforceBudgets: options.enforceBudgets }) },
    owner,
  );
}

/**
 * Finds model usage rows, one page at a time. Filter by user, agent (one id or several),
 * connector, model (one or several) and a `createdAt` range `[from, to)`; fields combine with
 * AND. Newest first unless `page.order` is `"oldest"`, by `(createdAt, id)`.
 *
 * Paging is by keyset: pass `nextCursor` back as `page.cursor` for the next page. Rows recorded
 * while you page never shift a page (a row is never returned twice nor skipped because of
 * them). `page.limit` defaults to 100 and may be at most 1000. `page.include` adds the related
 * agent, connector and model as plain records.
 *
 * Throws {@link UsageValidationError} for a bad filter or page (ids, dates, `from` not before
 * `to`, unknown fields, a limit above 1000, a cursor this function did not make).
 *
 * @example
 * let page = await findModelUsage(db, { userId: 42, agentId: [7, 8], from: new Date("2025-01-01") }, { limit: 500 });
 * while (page.nextCursor) {
 *   page = await findModelUsage(db, { userId: 42, agentId: [7, 8], from: new Date("2025-01-01") }, { limit: 500, cursor: page.nextCursor });
 * }
 * const withModel = await findModelUsage(db, { modelId: 3 }, { include: { model: true } });
 * withModel.items[0]?.model?.name;
 */
export async function findModelUsage(
  db: Database,
  filter: ModelUsageFilter = {},
  page: ModelUsagePageOptions = {},
): Promise<UsagePage<FoundModelUsage>> {
  return findUsagePage(db, FIND_MODEL_USAGE, filter, page);
}

/**
 * @internal {@link findModelUsage} for a `forUser` view: an included agent or connector of
 * another user is null (the model is shared and always included).
 */
export async function findModelUsageAs(
  db: Database,
  filter: ModelUsageFilter,
  page: ModelUsagePageOptions = {},
  owner: Owner,
): Promise<UsagePage<FoundModelUsage>> {
  return findUsagePage(db, FIND_MODEL_USAGE, filter, page, owner);
}

type FoundModelUsageRow = Parameters<typeof toModelUsageRecord>[0] & {
  agent?: Parameters<typeof toAgentRecord>[0] | null;
  connector?: Parameters<typeof toConnectorRecord>[0] | null;
  model?: Parameters<typeof toAiModelRecord>[0];
};

const FIND_MODEL_USAGE: FindSpec<FoundModelUsageRow, FoundModelUsage> = {
  table: "model",
  idField: "modelId",
  includeKeys: ["agent", "connector", "model"],
  findMany: (db, args) => db.reportPrisma.psModelUsage.findMany(args as Prisma.PsModelUsageFindManyArgs) as Promise<FoundModelUsageRow[]>,
  toItem(row, include, owner) {
    const item: FoundModelUsage = toModelUsageRecord(row);
    if (!include.agent && !include.connector && !include.model) return item;
    const agent = visibleTo(row.agent, owner);
    const connector = visibleTo(row.connector, owner);
    return {
      ...item,
      ...(include.agent ? { agent: agent ? toAgentRecord(agent) : null } : {}),
      ...(include.connector ? { connector: connector ? toConnectorRecord(connector) : null } : {}),
      ...(include.model && row.model ? { model: toAiModelRecord(row.model) } : {}),
    };
  },
};
