/**
 * The alternatives the package is measured against, each written the way a careful user of that
 * tool would write it. Every contender starts from the same camelCase input objects an
 * application holds, and converts them to its own shape inside the timed region.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { from as copyFrom } from "pg-copy-streams";
import { rowWriter, type BinaryField } from "pg-copy-streams-binary";
import { fn, col, literal, QueryTypes } from "sequelize";
import type { ModelUsageInput } from "../src/types";
import { poolTransaction, type Backend } from "./setup";
import { COUNTER_COLUMNS, COUNTER_FIELDS } from "./data";
import type { SequelizeModels } from "./sequelizeModel";

/** The columns every ingest contender writes, in this order. */
const INSERT_COLUMNS = ["user_id", "model_id", "agent_id", "connector_id", "created_at", ...COUNTER_COLUMNS];

const UNNEST_SQL = `INSERT INTO ps_model_usage (${INSERT_COLUMNS.join(", ")})
SELECT * FROM unnest(${INSERT_COLUMNS.map((c, i) => `$${i + 1}::${c === "created_at" ? "timestamptz" : "int4"}[]`).join(", ")})`;

function* chunks<T>(items: readonly T[], size: number): Generator<readonly T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** Column arrays for one unnest statement. */
function toColumnArrays(chunk: readonly ModelUsageInput[]): unknown[][] {
  const n = chunk.length;
  const userId = new Array<number>(n);
  const modelId = new Array<number>(n);
  const agentId = new Array<number | null>(n);
  const connectorId = new Array<number | null>(n);
  const createdAt = new Array<Date>(n);
  const counters = COUNTER_FIELDS.map(() => new Array<number>(n));
  for (let i = 0; i < n; i++) {
    const row = chunk[i];
    userId[i] = row.userId;
    modelId[i] = row.modelId;
    agentId[i] = row.agentId ?? null;
    connectorId[i] = row.connectorId ?? null;
    createdAt[i] = row.createdAt ?? new Date();
    for (let c = 0; c < COUNTER_FIELDS.length; c++) counters[c][i] = row[COUNTER_FIELDS[c]] ?? 0;
  }
  return [userId, modelId, agentId, connectorId, createdAt, ...counters];
}

/** Hand-written `pg` (or PGlite) unnest insert: one statement per chunk, one transaction in all. */
export async function ingestUnnest(backend: Backend, inputs: readonly ModelUsageInput[], chunkSize: number): Promise<void> {
  if (backend.pool) {
    await poolTransaction(backend.pool, async (client) => {
      for (const chunk of chunks(inputs, chunkSize)) await client.query(UNNEST_SQL, toColumnArrays(chunk));
    });
    return;
  }
  const pglite = backend.db.pglite!;
  await pglite.transaction(async (tx) => {
    for (const chunk of chunks(inputs, chunkSize)) await tx.query(UNNEST_SQL, toColumnArrays(chunk));
  });
}

function copyLine(row: ModelUsageInput): string {
  let line = `${row.userId}\t${row.modelId}\t${row.agentId ?? "\\N"}\t${row.connectorId ?? "\\N"}\t${(row.createdAt ?? new Date()).toISOString()}`;
  for (let c = 0; c < COUNTER_FIELDS.length; c++) line += `\t${row[COUNTER_FIELDS[c]] ?? 0}`;
  return line + "\n";
}

/**
 * A PostgreSQL array literal (`{1,2,NULL}`) of one value per row, built the way the package builds
 * its own (src/usageShared.ts): the parts joined into one string per column.
 */
function arrayLiteral(chunk: readonly ModelUsageInput[], value: (row: ModelUsageInput) => string | number | null): string {
  const parts = new Array<string | number>(chunk.length);
  for (let i = 0; i < chunk.length; i++) {
    const v = value(chunk[i]);
    parts[i] = v === null ? "NULL" : v;
  }
  return `{${parts.join(",")}}`;
}

/** The unnest statement's parameters as text array literals, one string per column. */
function toArrayLiterals(chunk: readonly ModelUsageInput[]): string[] {
  return [
    arrayLiteral(chunk, (row) => row.userId),
    arrayLiteral(chunk, (row) => row.modelId),
    arrayLiteral(chunk, (row) => row.agentId ?? null),
    arrayLiteral(chunk, (row) => row.connectorId ?? null),
    arrayLiteral(chunk, (row) => (row.createdAt ?? new Date()).toISOString()),
    ...COUNTER_FIELDS.map((field) => arrayLiteral(chunk, (row) => row[field] ?? 0)),
  ];
}

/**
 * The same unnest statement with each column sent as one text array literal (`'{1,2,3}'`, cast by
 * the server: `$1::int4[]`) instead of a JavaScript array that `pg` serializes element by element:
 * what the package itself sends, here through a plain `pg` client (or PGlite) with no validation,
 * no Prisma and no idempotency or reference checks. One statement per chunk, one transaction.
 */
export async function ingestUnnestLiterals(backend: Backend, inputs: readonly ModelUsageInput[], chunkSize: number): Promise<void> {
  if (backend.pool) {
    await poolTransaction(backend.pool, async (client) => {
      for (const chunk of chunks(inputs, chunkSize)) await client.query(UNNEST_SQL, toArrayLiterals(chunk));
    });
    return;
  }
  const pglite = backend.db.pglite!;
  await pglite.transaction(async (tx) => {
    for (const chunk of chunks(inputs, chunkSize)) await tx.query(UNNEST_SQL, toArrayLiterals(chunk));
  });
}

/** `pg` COPY FROM STDIN (pg-copy-streams), text format, streamed in 1,000-line pieces. PostgreSQL only. */
export async function ingestCopy(backend: Backend, inputs: readonly ModelUsageInput[]): Promise<void> {
  const client = await backend.pool!.connect();
  try {
    const stream = client.query(copyFrom(`COPY ps_model_usage (${INSERT_COLUMNS.join(", ")}) FROM STDIN`));
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < inputs.length; i += 1000) {
          let text = "";
          const end = Math.min(inputs.length, i + 1000);
          for (let j = i; j < end; j++) text += copyLine(inputs[j]);
          yield text;
        }
      })(),
    );
    await pipeline(source, stream);
  } finally {
    client.release();
  }
}

/** One row for pg-copy-streams-binary's rowWriter: each field with its PostgreSQL type. */
function binaryRow(row: ModelUsageInput): BinaryField[] {
  const fields: BinaryField[] = [
    { type: "int4", value: row.userId },
    { type: "int4", value: row.modelId },
    { type: "int4", value: row.agentId ?? null },
    { type: "int4", value: row.connectorId ?? null },
    { type: "timestamptz", value: row.createdAt ?? new Date() },
  ];
  for (let c = 0; c < COUNTER_FIELDS.length; c++) fields.push({ type: "int4", value: row[COUNTER_FIELDS[c]] ?? 0 });
  return fields;
}

/**
 * `pg` COPY FROM STDIN in the binary format: pg-copy-streams for the COPY protocol and
 * pg-copy-streams-binary's rowWriter to encode each row (int4 and timestamptz sent as binary, so
 * the server parses no text). PostgreSQL only.
 */
export async function ingestCopyBinary(backend: Backend, inputs: readonly ModelUsageInput[]): Promise<void> {
  const client = await backend.pool!.connect();
  try {
    const stream = client.query(copyFrom(`COPY ps_model_usage (${INSERT_COLUMNS.join(", ")}) FROM STDIN BINARY`));
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < inputs.length; i++) yield binaryRow(inputs[i]);
      })(),
    );
    await pipeline(source, rowWriter(), stream);
  } finally {
    client.release();
  }
}

/** COPY's binary header: signature, flags (no OIDs), header extension length. */
const BINARY_COPY_HEADER = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), Buffer.alloc(8)]);
/** Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC). */
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
const TWO_32 = 2 ** 32;
/** Bytes of one row at most: field count, then a length word and 4 bytes per int4, 8 for the timestamp. */
const BINARY_ROW_BYTES = 2 + INSERT_COLUMNS.length * 4 + (INSERT_COLUMNS.length - 1) * 4 + 8;

/** `rows` in COPY's binary format (header first when `first`), written straight into one Buffer. */
function encodeBinaryRows(inputs: readonly ModelUsageInput[], start: number, end: number, first: boolean): Buffer {
  const buf = Buffer.allocUnsafe((first ? BINARY_COPY_HEADER.length : 0) + (end - start) * BINARY_ROW_BYTES);
  let at = first ? BINARY_COPY_HEADER.copy(buf, 0) : 0;
  const int4 = (value: number | null) => {
    if (value === null) {
      at = buf.writeInt32BE(-1, at);
    } else {
      at = buf.writeInt32BE(4, at);
      at = buf.writeInt32BE(value, at);
    }
  };
  for (let i = start; i < end; i++) {
    const row = inputs[i];
    at = buf.writeInt16BE(INSERT_COLUMNS.length, at);
    int4(row.userId);
    int4(row.modelId);
    int4(row.agentId ?? null);
    int4(row.connectorId ?? null);
    // timestamptz: int64 microseconds since 2000-01-01, as two 32-bit halves (exact in a double).
    const micros = ((row.createdAt ?? new Date()).getTime() - PG_EPOCH_MS) * 1000;
    const high = Math.floor(micros / TWO_32);
    at = buf.writeInt32BE(8, at);
    at = buf.writeInt32BE(high, at);
    at = buf.writeUInt32BE(micros - high * TWO_32, at);
    for (let c = 0; c < COUNTER_FIELDS.length; c++) int4(row[COUNTER_FIELDS[c]] ?? 0);
  }
  return buf.subarray(0, at);
}

/**
 * `pg` COPY FROM STDIN in the binary format with the encoder written by hand: 1,000 rows at a time
 * straight into one Buffer (pg-copy-streams-binary's rowWriter builds each row from small
 * buffers, and measured at half the speed of text COPY here). PostgreSQL only.
 */
export async function ingestCopyBinaryHandWritten(backend: Backend, inputs: readonly ModelUsageInput[]): Promise<void> {
  const client = await backend.pool!.connect();
  try {
    const stream = client.query(copyFrom(`COPY ps_model_usage (${INSERT_COLUMNS.join(", ")}) FROM STDIN BINARY`));
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < inputs.length; i += 1000) yield encodeBinaryRows(inputs, i, Math.min(inputs.length, i + 1000), i === 0);
        // The trailer: a field count of -1.
        yield inputs.length === 0 ? Buffer.concat([BINARY_COPY_HEADER, Buffer.from([0xff, 0xff])]) : Buffer.from([0xff, 0xff]);
      })(),
    );
    await pipeline(source, stream);
  } finally {
    client.release();
  }
}

/** Prisma's `createMany` on the generated client, one call per chunk. */
export async function ingestCreateMany(backend: Backend, inputs: readonly ModelUsageInput[], chunkSize: number): Promise<void> {
  for (const chunk of chunks(inputs, chunkSize)) {
    await backend.db.prisma.psModelUsage.createMany({ data: chunk as ModelUsageInput[] });
  }
}

function toSnakeCase(row: ModelUsageInput): Record<string, unknown> {
  const out: Record<string, unknown> = {
    user_id: row.userId,
    model_id: row.modelId,
    agent_id: row.agentId ?? null,
    connector_id: row.connectorId ?? null,
    created_at: row.createdAt,
  };
  for (let c = 0; c < COUNTER_FIELDS.length; c++) out[COUNTER_COLUMNS[c]] = row[COUNTER_FIELDS[c]] ?? 0;
  return out;
}

/** Sequelize `bulkCreate` on the seed's model definition, one call per chunk. */
export async function ingestSequelize(models: SequelizeModels, inputs: readonly ModelUsageInput[], chunkSize: number): Promise<void> {
  for (const chunk of chunks(inputs, chunkSize)) {
    await models.PsModelUsage.bulkCreate(chunk.map(toSnakeCase));
  }
}

/** A plain parameterized `pg` INSERT … RETURNING * of one event (the row comes back, as ours does). */
const SINGLE_INSERT_SQL = `INSERT INTO ps_model_usage (${INSERT_COLUMNS.join(", ")})
VALUES (${INSERT_COLUMNS.map((_, i) => `$${i + 1}`).join(", ")}) RETURNING *`;

export async function insertOnePg(backend: Backend, row: ModelUsageInput): Promise<unknown> {
  const params = [row.userId, row.modelId, row.agentId ?? null, row.connectorId ?? null, row.createdAt ?? new Date()];
  for (let c = 0; c < COUNTER_FIELDS.length; c++) params.push(row[COUNTER_FIELDS[c]] ?? 0);
  const rows = await backend.sql(SINGLE_INSERT_SQL, params);
  return rows[0];
}

export async function insertOneSequelize(models: SequelizeModels, row: ModelUsageInput): Promise<unknown> {
  return models.PsModelUsage.create(toSnakeCase(row));
}

// ---------------------------------------------------------------------------------------------
// Sums. Every variant returns the same normalized shape: a map from a group key to the 14
// counter sums as bigint, so the results can be checked equal.

/** Group key -> [number of rows, then the counter sums in table order]. */
export type SumTable = Map<string, bigint[]>;

export type SumQuery = "total" | "byAgent" | "byModelDay";

const SUM_LIST = ["COUNT(*) AS events", ...COUNTER_COLUMNS.map((c) => `SUM(${c}) AS ${c}`)].join(", ");

/**
 * The hand-written SQL for each sum: what a person who knows PostgreSQL would write. Where there
 * is more than one reasonable way (the UTC day), every candidate is timed in a calibration pass
 * and the fastest one is the baseline.
 */
export const HAND_WRITTEN_SUM_SQL: Record<SumQuery, readonly string[]> = {
  total: [`SELECT ${SUM_LIST} FROM ps_model_usage`],
  byAgent: [`SELECT agent_id, ${SUM_LIST} FROM ps_model_usage GROUP BY agent_id`],
  byModelDay: [
    `SELECT model_id, date_trunc('day', created_at, 'UTC') AS day, ${SUM_LIST} FROM ps_model_usage GROUP BY 1, 2`,
    `SELECT model_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day, ${SUM_LIST} FROM ps_model_usage GROUP BY 1, 2`,
    `SELECT model_id, ((created_at AT TIME ZONE 'UTC')::date)::text AS day, ${SUM_LIST} FROM ps_model_usage GROUP BY model_id, (created_at AT TIME ZONE 'UTC')::date`,
  ],
};

function keyOf(query: SumQuery, row: Record<string, unknown>): string {
  if (query === "total") return "total";
  if (query === "byAgent") return String(row.agent_id ?? "null");
  // A timestamptz comes back as a Date; a date as "YYYY-MM-DD", which JS reads as UTC midnight.
  const day = row.day instanceof Date ? row.day : new Date(String(row.day));
  return `${row.model_id}|${day.toISOString()}`;
}

/** Rows with SUM columns (strings from pg, numbers or bigints elsewhere) -> SumTable. */
export function sumTableFromRows(query: SumQuery, rows: readonly Record<string, unknown>[]): SumTable {
  const table: SumTable = new Map();
  for (const row of rows) {
    table.set(
      keyOf(query, row),
      ["events", ...COUNTER_COLUMNS].map((c) => BigInt((row[c] as string | number | bigint | null) ?? 0)),
    );
  }
  return table;
}

export async function sumHandWritten(backend: Backend, query: SumQuery, variant = 0): Promise<SumTable> {
  return sumTableFromRows(query, await backend.sql(HAND_WRITTEN_SUM_SQL[query][variant]));
}

export async function sumSequelize(models: SequelizeModels, query: SumQuery): Promise<SumTable> {
  const sums: [ReturnType<typeof fn>, string][] = [[fn("COUNT", literal("*")), "events"], ...COUNTER_COLUMNS.map((c) => [fn("SUM", col(c)), c] as [ReturnType<typeof fn>, string])];
  const M = models.PsModelUsage;
  let rows: object[];
  if (query === "total") rows = await M.findAll({ attributes: sums, raw: true });
  else if (query === "byAgent") rows = await M.findAll({ attributes: ["agent_id", ...sums], group: ["agent_id"], raw: true });
  else
    rows = await M.findAll({
      attributes: ["model_id", [fn("date_trunc", "day", col("created_at"), "UTC"), "day"], ...sums],
      group: ["model_id", "day"],
      raw: true,
    });
  return sumTableFromRows(query, rows as Record<string, unknown>[]);
}

/** True when two sum tables hold the same keys with the same sums. */
export function sameSums(a: SumTable, b: SumTable): boolean {
  if (a.size !== b.size) return false;
  for (const [key, sums] of a) {
    const other = b.get(key);
    if (!other || other.length !== sums.length || sums.some((v, i) => v !== other[i])) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// PolicySynth's sub-agent walk (AgentCostManager.getSubAgentIds + getAgentCosts): breadth-first,
// one query per agent for its children, then every usage row of those agents fetched and summed
// per agent in JavaScript.

/** Per-agent [rows, counter sums] and the tree total. */
export interface TreeTotals {
  readonly perAgent: SumTable;
  readonly total: bigint[];
}

const USAGE_OF_AGENTS_SELECT = `SELECT mu.agent_id, ${COUNTER_COLUMNS.map((c) => `mu.${c}`).join(", ")}
FROM ps_model_usage mu
JOIN ps_ai_models am ON mu.model_id = am.id
JOIN ps_agents a ON mu.agent_id = a.id`;

function sumRowsPerAgent(rows: readonly Record<string, unknown>[]): TreeTotals {
  const perAgentNumbers = new Map<number, number[]>();
  for (const row of rows) {
    const agentId = Number(row.agent_id);
    let acc = perAgentNumbers.get(agentId);
    if (!acc) perAgentNumbers.set(agentId, (acc = [0, ...COUNTER_COLUMNS.map(() => 0)]));
    acc[0] += 1;
    for (let c = 0; c < COUNTER_COLUMNS.length; c++) acc[c + 1] += parseInt(String(row[COUNTER_COLUMNS[c]] ?? "0"), 10);
  }
  const perAgent: SumTable = new Map();
  const total = [0n, ...COUNTER_COLUMNS.map(() => 0n)];
  for (const [agentId, acc] of perAgentNumbers) {
    const sums = acc.map((v) => BigInt(v));
    perAgent.set(String(agentId), sums);
    sums.forEach((v, i) => (total[i] += v));
  }
  return { perAgent, total };
}

/** PolicySynth's getSubAgentIds: breadth-first from the root, one children query per agent. */
async function subAgentIdsBreadthFirst(rootId: number, children: (agentId: number) => Promise<{ id: number }[]>): Promise<number[]> {
  const agentIds: number[] = [];
  const queue: number[] = [rootId];
  const visited = new Set<number>();
  while (queue.length > 0) {
    const current = queue.shift()!;
    if (visited.has(current)) continue;
    visited.add(current);
    agentIds.push(current);
    (await children(current)).forEach((child) => queue.push(child.id));
  }
  return agentIds;
}

/** PolicySynth's way through Sequelize (`sequelize.query` with replacements), as its code does. */
export async function treePolicySynthSequelize(models: SequelizeModels, rootId: number): Promise<TreeTotals> {
  const agentIds = await subAgentIdsBreadthFirst(rootId, (current) =>
    models.sequelize.query<{ id: number }>(`SELECT id FROM ps_agents WHERE parent_agent_id = :current`, {
      replacements: { current },
      type: QueryTypes.SELECT,
    }),
  );
  const rows = await models.sequelize.query<Record<string, unknown>>(`${USAGE_OF_AGENTS_SELECT} WHERE mu.agent_id IN (:agentIds)`, {
    replacements: { agentIds },
    type: QueryTypes.SELECT,
  });
  return sumRowsPerAgent(rows);
}

/** The same algorithm through plain parameterized queries (used on PGlite, where Sequelize can't go). */
export async function treePolicySynthPlain(backend: Backend, rootId: number): Promise<TreeTotals> {
  const agentIds = await subAgentIdsBreadthFirst(rootId, (current) =>
    backend.sql<{ id: number }>(`SELECT id FROM ps_agents WHERE parent_agent_id = $1`, [current]),
  );
  const rows = await backend.sql(`${USAGE_OF_AGENTS_SELECT} WHERE mu.agent_id = ANY($1::int4[])`, [agentIds]);
  return sumRowsPerAgent(rows);
}

// ---------------------------------------------------------------------------------------------
// PolicySynth's AgentCostManager.getAgentCosts, as written there: the breadth-first walk above,
// every usage row with its model's price JSON, a recursive query for the agents' levels, costs
// computed row by row in JavaScript floats, rounded to cents per agent and then summed.

/** The three queries getAgentCosts makes, so the algorithm runs on Sequelize or on PGlite. */
interface AgentCostQueries {
  children(agentId: number): Promise<{ id: number }[]>;
  usageRows(agentIds: readonly number[]): Promise<Record<string, unknown>[]>;
  levels(rootId: number, agentIds: readonly number[]): Promise<{ id: number; level: number }[]>;
}

type Prices = Record<string, number | undefined>;

function calcCostsLikePolicySynth(mu: Record<string, number>, prices: Prices): number {
  const costInNormal = ((mu.token_in_count || 0) * (prices.costInTokensPerMillion || 0)) / 1000000.0;
  const costInCached = ((mu.token_in_cached_context_count || 0) * (prices.costInCachedContextTokensPerMillion || 0)) / 1000000.0;
  const costInLong = ((mu.long_context_token_in_count || 0) * (prices.longContextCostInTokensPerMillion || 0)) / 1000000.0;
  const totalTokenOutNormal =
    (mu.token_out_count || 0) + (mu.token_out_reasoning_count || 0) + (mu.token_out_audio_count || 0) + (mu.token_out_image_count || 0);
  const costOutNormal = (totalTokenOutNormal * (prices.costOutTokensPerMillion || 0)) / 1000000.0;
  const totalTokenOutLong =
    (mu.long_context_token_out_count || 0) +
    (mu.long_context_token_out_reasoning_count || 0) +
    (mu.long_context_token_out_audio_count || 0) +
    (mu.long_context_token_out_image_count || 0);
  const costOutLong = (totalTokenOutLong * (prices.longContextCostOutTokensPerMillion || prices.costOutTokensPerMillion || 0)) / 1000000.0;
  const costInCachedLong =
    ((mu.long_context_token_in_cached_context_count || 0) *
      (prices.longContextCostInCachedContextTokensPerMillion || prices.costInCachedContextTokensPerMillion || 0)) /
    1000000.0;
  return costInNormal + costInCached + costInLong + costOutNormal + costOutLong + costInCachedLong;
}

const PS_COST_COUNTERS = COUNTER_COLUMNS.filter((c) => !c.includes("cache_write"));

const PS_USAGE_ROWS_SELECT = `SELECT mu.agent_id, a.configuration->>'name' as agent_name, am.configuration->'prices' AS price_cfg,
  ${PS_COST_COUNTERS.map((c) => `mu.${c}`).join(", ")}
FROM ps_model_usage mu
JOIN ps_ai_models am ON mu.model_id = am.id
JOIN ps_agents a ON mu.agent_id = a.id`;

/** The total cost of the tree, as the string PolicySynth returns (`toFixed(2)`), and per-agent rows. */
async function agentCostsLikePolicySynth(q: AgentCostQueries, rootId: number): Promise<{ agents: number; totalCost: string }> {
  const agentIds = await subAgentIdsBreadthFirst(rootId, q.children);
  const usageRows = await q.usageRows(agentIds);
  const levels = new Map((await q.levels(rootId, agentIds)).map((row) => [row.id, row.level]));
  const agentCostMap = new Map<number, number>();
  for (const row of usageRows) {
    const mu: Record<string, number> = {};
    for (const c of PS_COST_COUNTERS) mu[c] = parseInt(String(row[c] ?? "0"));
    const prices = (typeof row.price_cfg === "string" ? JSON.parse(row.price_cfg) : row.price_cfg) as Prices;
    const agentId = Number(row.agent_id);
    agentCostMap.set(agentId, (agentCostMap.get(agentId) || 0) + calcCostsLikePolicySynth(mu, prices));
  }
  const agentCosts = Array.from(agentCostMap.entries())
    .map(([agentId, cost]) => ({ agentId, level: levels.get(agentId) ?? -1, cost: parseFloat(cost.toFixed(2)) }))
    .sort((a, b) => a.level - b.level || a.agentId - b.agentId);
  return { agents: agentCosts.length, totalCost: agentCosts.reduce((sum, a) => sum + a.cost, 0).toFixed(2) };
}

const PS_LEVELS_SQL = (ids: string) => `WITH RECURSIVE agent_levels AS (
  SELECT id, parent_agent_id, 0 as level FROM ps_agents WHERE id = :rootAgentId
  UNION ALL
  SELECT a.id, a.parent_agent_id, al.level + 1 FROM ps_agents a JOIN agent_levels al ON a.parent_agent_id = al.id WHERE a.id IN (${ids})
)
SELECT id, level FROM agent_levels WHERE id IN (${ids})`;

export function agentCostsPolicySynthSequelize(models: SequelizeModels, rootId: number): Promise<{ agents: number; totalCost: string }> {
  const s = models.sequelize;
  return agentCostsLikePolicySynth(
    {
      children: (currentAgentId) =>
        s.query<{ id: number }>(`SELECT id FROM ps_agents WHERE parent_agent_id = :currentAgentId`, { replacements: { currentAgentId }, type: QueryTypes.SELECT }),
      usageRows: (agentIds) =>
        s.query<Record<string, unknown>>(`${PS_USAGE_ROWS_SELECT} WHERE mu.agent_id IN (:agentIds)`, { replacements: { agentIds }, type: QueryTypes.SELECT }),
      levels: (rootAgentId, agentIds) =>
        s.query<{ id: number; level: number }>(PS_LEVELS_SQL(":agentIds"), { replacements: { rootAgentId, agentIds }, type: QueryTypes.SELECT }),
    },
    rootId,
  );
}

export function agentCostsPolicySynthPlain(backend: Backend, rootId: number): Promise<{ agents: number; totalCost: string }> {
  return agentCostsLikePolicySynth(
    {
      children: (id) => backend.sql<{ id: number }>(`SELECT id FROM ps_agents WHERE parent_agent_id = $1`, [id]),
      usageRows: (agentIds) => backend.sql(`${PS_USAGE_ROWS_SELECT} WHERE mu.agent_id = ANY($1::int4[])`, [agentIds]),
      levels: (rootAgentId, agentIds) =>
        backend.sql<{ id: number; level: number }>(
          PS_LEVELS_SQL("SELECT unnest($2::int4[])").replace(":rootAgentId", "$1"),
          [rootAgentId, agentIds],
        ),
    },
    rootId,
  );
}
