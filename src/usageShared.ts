/**
 * What the model usage and external API usage repositories share: mapping database errors to
 * the package's typed errors, running a chunked batch in one transaction, the opaque page
 * cursor and one page of a find, idempotent single records, and plain DTOs for related rows.
 */
import { setImmediate } from "node:timers/promises";
import type { Database } from "./db";
import { closedError, isClosing } from "./db/closing";
import { replicaView } from "./db/replicas";
import {
  DatabaseConnectionError,
  DatabaseNotMigratedError,
  DatabaseTimeoutError,
  PsUsageError,
  UnknownReferenceError,
  UsageValidationError,
  type FieldIssue,
} from "./errors";
import { Prisma } from "./generated/prisma/client";
import {
  DEFAULT_BATCH_CHUNK_SIZE,
  DEFAULT_EMBEDDED_BATCH_CHUNK_SIZE,
  DEFAULT_PAGE_SIZE,
  type BatchRecordOptions,
  type BatchRecordResult,
  type AgentRecord,
  type AiModelRecord,
  type ConnectorRecord,
  type ExternalApiRecord,
  type PageOptions,
  type UsageFilter,
  type UsageOrder,
  type UsagePage,
} from "./types";
import { visibleTo, type OwnedReferences, type Owner } from "./scope/ownership";
import {
  checkReferences,
  planReferenceCheck,
  REFERENCED_TABLES,
  type ReferenceCheck,
  type ReferenceColumn,
  type References,
  type UsageTable,
} from "./ledger/references";
import { usageFilterConditions, whereSql } from "./usageSql";
import { directStatement, prismaSession, prismaWriteTransaction, writeTransaction, type WriteSession } from "./ledger/writeSession";
import { afterRecord, guardEvents, type BudgetEvent } from "./budgets/guard";
import type { BudgetAlert } from "./budgets/alerts";
import {
  checkBatchYielding,
  checkBatchOptions,
  checkFilter,
  checkPageOptions,
  dateProblem,
  idProblem,
  pageOrder,
  throwIfIssues,
  type InputShape,
} from "./validation";

export { REFERENCED_TABLES, type ReferenceColumn } from "./ledger/references";

interface AdapterCause {
  readonly kind?: string;
  readonly code?: string;
  readonly originalCode?: string;
  readonly originalMessage?: string;
  readonly message?: string;
  readonly constraint?: { readonly index?: string; readonly fields?: readonly string[] };
  readonly table?: string;
  readonly column?: string;
}

/**
 * The driver adapter's description of a failed query, if Prisma kept one; for an error of a
 * statement sent to the driver directly (db.direct: pg's or PGlite's DatabaseError), the same
 * description as @prisma/adapter-pg would have made of it, so both paths map alike.
 */
function adapterCause(err: unknown): AdapterCause | undefined {
  if (!(err instanceof Prisma.PrismaClientKnownRequestError)) return driverCause(err);
  const adapterError = (err.meta as { driverAdapterError?: { cause?: AdapterCause } } | undefined)?.driverAdapterError;
  return adapterError?.cause;
}

/** What the server said (a DatabaseError of pg or PGlite: SQLSTATE `code` and `severity`). */
interface DriverError {
  readonly code: string;
  readonly severity: string;
  readonly message: string;
  readonly constraint?: string;
  readonly column?: string;
}

const DRIVER_KINDS: Readonly<Record<string, string>> = {
  "23503": "ForeignKeyConstraintViolation",
  "23505": "UniqueConstraintViolation",
  "42P01": "TableDoesNotExist",
  "42703": "ColumnNotFound",
};

/** A server error of a direct statement as an {@link AdapterCause} (see @prisma/adapter-pg's mapping). */
function driverCause(err: unknown): AdapterCause | undefined {
  const e = err as Partial<DriverError> | null;
  if (typeof e?.code !== "string" || typeof e.severity !== "string" || typeof e.message !== "string") return undefined;
  return {
    kind: DRIVER_KINDS[e.code],
    originalCode: e.code,
    originalMessage: e.message,
    constraint: e.constraint === undefined ? undefined : { index: e.constraint },
    table: e.code === "42P01" ? /relation "([^"]+)"/.exec(e.message)?.[1] : undefined,
    column: e.code === "42703" ? /^column (.+) does not exist$/.exec(e.message)?.[1]?.replace(/"((?:""|[^"])*)"/g, (_, id: string) => id.replaceAll('""', '"')) : undefined,
  };
}

/** True for a foreign key violation (Prisma P2003, or PostgreSQL 23503 from a raw query). */
export function isForeignKeyViolation(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2003") return true;
  const cause = adapterCause(err);
  return cause?.kind === "ForeignKeyConstraintViolation" || cause?.originalCode === "23503";
}

/** True for a unique violation (Prisma P2002, or PostgreSQL 23505). */
export function isUniqueViolation(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") return true;
  const cause = adapterCause(err);
  return cause?.kind === "UniqueConstraintViolation" || cause?.originalCode === "23505";
}

/** Which reference column a foreign key violation is about, from the constraint's name. */
export function violatedReferenceColumn(err: unknown): ReferenceColumn | null {
  const cause = adapterCause(err);
  const name =
    cause?.constraint?.index ?? /foreign key constraint "([^"]+)"/.exec(cause?.originalMessage ?? (err as Error)?.message ?? "")?.[1];
  if (!name) return null;
  // Longest first: "external_api_id" must not be read as "api_id"-like shorter names.
  for (const column of ["external_api_id", "connector_id", "model_id", "agent_id"] as const) {
    if (name.endsWith(`_${column}_fkey`)) return column;
  }
  return null;
}

const CONNECTION_KINDS = new Set([
  "ConnectionClosed",
  "DatabaseNotReachable",
  "SocketTimeout",
  "TooManyConnections",
  "DatabaseDoesNotExist",
  "AuthenticationFailed",
  "TlsConnectionError",
  "DatabaseAccessDenied",
]);
const CONNECTION_PRISMA_CODES = new Set(["P1001", "P1002", "P1008", "P1017", "P2024"]);

/** True when the query failed because the database went away, not because of the query. */
export function isConnectionFailure(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientKnownRequestError && CONNECTION_PRISMA_CODES.has(err.code)) return true;
  if (err instanceof Prisma.PrismaClientInitializationError) return true;
  const cause = adapterCause(err);
  if (cause?.kind && CONNECTION_KINDS.has(cause.kind)) return true;
  // 57P01-03: the server is shutting down or killed this backend; class 08: connection exceptions.
  const code = cause?.originalCode ?? cause?.code;
  if (code && (/^57P0[123]$/.test(code) || code.startsWith("08"))) return true;
  const message = (err as Error)?.message ?? "";
  // The last two: a call on a Database after close() (PGlite, or the pg pool ended).
  return /Connection terminated|connection is closed|Client has encountered a connection error|ECONNREFUSED|ECONNRESET|PGlite is closed|Cannot use a pool after calling end/i.test(
    message,
  );
}

/**
 * The bound a call ran into, if it failed on one: the pool's wait for a connection, the server's
 * statement_timeout (SQLSTATE 57014 with that reason; a cancel by an operator is not a timeout),
 * or pg's client-side query timeout on a server that stopped answering.
 */
export function timeoutPhase(err: unknown): DatabaseTimeoutError["phase"] | null {
  if (isLockNotGranted(err)) return "lock";
  const cause = adapterCause(err);
  const message = `${cause?.originalMessage ?? ""} ${(err as Error)?.message ?? ""}`;
  if ((cause?.originalCode ?? cause?.code) === "57014" && /statement timeout/i.test(message)) return "statement";
  if (/canceling statement due to statement timeout/i.test(message)) return "statement";
  if (/Query read timeout/i.test(message)) return "response";
  if (/timeout exceeded when trying to connect|Connection terminated due to connection timeout/i.test(message)) return "connect";
  return null;
}

/**
 * PostgreSQL's lock_not_available (SQLSTATE 55P03): a lock was not granted within the session's
 * lock_timeout. From the adapter (Prisma) or from a raw driver session alike.
 */
export function isLockNotGranted(err: unknown): boolean {
  const cause = adapterCause(err);
  return (cause?.originalCode ?? cause?.code ?? (err as { code?: unknown } | null)?.code) === "55P03";
}

/**
 * A lock not granted in time as the {@link DatabaseTimeoutError} of phase `"lock"` (`detail`: what
 * was waited for; default the server's message), or null for any other error.
 */
export function lockTimeoutError(target: string, err: unknown, detail?: string): DatabaseTimeoutError | null {
  if (!isLockNotGranted(err)) return null;
  return new DatabaseTimeoutError(target, "lock", detail ?? (adapterCause(err)?.originalMessage ?? (err as Error)?.message ?? String(err)).trim(), { cause: err });
}

/**
 * What is missing when a query failed because the schema is not there (a database never
 * migrated, or migrated by an older version): Prisma's P2021/P2022, or PostgreSQL's 42P01/42703
 * from a raw query. Null for any other error.
 */
export function missingSchemaObject(err: unknown): string | null {
  const cause = adapterCause(err);
  const code = cause?.originalCode ?? cause?.code;
  const prismaCode = err instanceof Prisma.PrismaClientKnownRequestError ? err.code : undefined;
  const meta = (err instanceof Prisma.PrismaClientKnownRequestError ? err.meta : undefined) as { table?: unknown; column?: unknown } | undefined;
  if (prismaCode === "P2021" || cause?.kind === "TableDoesNotExist" || code === "42P01") {
    const table = cause?.table ?? (typeof meta?.table === "string" ? meta.table : undefined);
    return table ? `table ${table} does not exist` : "a table does not exist";
  }
  if (prismaCode === "P2022" || cause?.kind === "ColumnNotFound" || code === "42703") {
    const column = cause?.column ?? (typeof meta?.column === "string" ? meta.column : undefined);
    return column ? `column ${column} does not exist` : "a column does not exist";
  }
  return null;
}

/**
 * Turns a database error into the package's typed error: a foreign key violation into
 * {@link UnknownReferenceError} (`resolveReference` names the table and id), a lost connection
 * into {@link DatabaseConnectionError}, a missing table or column into
 * {@link DatabaseNotMigratedError}; anything else is returned as it is.
 */
export async function translateDatabaseError(
  db: Database,
  err: unknown,
  resolveReference: (column: ReferenceColumn | null) => Promise<UnknownReferenceError>,
): Promise<unknown> {
  if (err instanceof PsUsageError) return err;
  const missing = missingSchemaObject(err);
  if (missing !== null) return new DatabaseNotMigratedError(db.target, missing, { cause: err });
  if (isForeignKeyViolation(err)) {
    const resolved = await resolveReference(violatedReferenceColumn(err));
    return new UnknownReferenceError(resolved.table, resolved.id, { cause: err });
  }
  const lock = lockTimeoutError(db.target, err);
  if (lock !== null) return lock;
  const phase = timeoutPhase(err);
  if (phase !== null) {
    const detail = adapterCause(err)?.originalMessage ?? (err as Error)?.message ?? String(err);
    return new DatabaseTimeoutError(db.target, phase, detail.trim(), { cause: err });
  }
  if (isConnectionFailure(err)) {
    const reason = adapterCause(err)?.originalMessage ?? adapterCause(err)?.kind ?? (err as Error)?.message ?? String(err);
    return new DatabaseConnectionError(db.target, reason, { cause: err, lost: true });
  }
  // close() during the call: whatever failed (an invalidated transaction, say) failed because of it.
  if (isClosing(db) && !(err instanceof PsUsageError)) return closedError(db.target, err);
  return err;
}

/** A replica that did not answer at all: the read may go to the next one. */
function unreachable(err: unknown): boolean {
  return err instanceof DatabaseConnectionError || (err instanceof DatabaseTimeoutError && err.phase === "connect");
}

/**
 * Runs one read call (`read`, which queries `on.reportPrisma` only) where `db` routes reads: on
 * `db` itself without replicas, else on one replica; a replica that cannot be reached (refused,
 * lost, no connection in `connectTimeoutMs`) is left for the next, and when none can be read the
 * call fails with a {@link DatabaseConnectionError} (or, when every replica only timed out
 * connecting, a {@link DatabaseTimeoutError}) naming each replica. It never falls back to the
 * primary on its own: replicas are configured to keep long reports off it (`db.primary` reads
 * there on purpose). Reads write nothing, so running one again on the next replica is safe.
 * Database errors become the package's typed errors, naming the database that was read.
 */
export async function readRouted<T>(
  db: Database,
  read: (on: Database) => Promise<T>,
  resolveReference: (column: ReferenceColumn | null) => Promise<UnknownReferenceError>,
): Promise<T> {
  const set = db.replicaSet;
  if (!set) {
    try {
      return await read(db);
    } catch (err) {
      throw await translateDatabaseError(db, err, resolveReference);
    }
  }
  const failures: { target: string; error: DatabaseConnectionError | DatabaseTimeoutError }[] = [];
  for (const replica of set.order()) {
    const on = replicaView(db, replica);
    try {
      const result = await read(on);
      set.markUp(replica);
      return result;
    } catch (err) {
      const typed = await translateDatabaseError(on, err, resolveReference);
      if (isClosing(db) || !unreachable(typed)) throw typed;
      set.markDown(replica);
      failures.push({ target: replica.target, error: typed as DatabaseConnectionError | DatabaseTimeoutError });
    }
  }
  const targets = failures.map((f) => f.target).join(", ");
  const reasons = failures.map((f) => f.error.message).join("; ");
  const hint = "writes, and reads through db.primary, still use the primary";
  const cause = failures[failures.length - 1]?.error;
  if (failures.every((f) => f.error instanceof DatabaseTimeoutError)) {
    throw new DatabaseTimeoutError(targets, "connect", `no replica gave a connection (${reasons}); ${hint}`, { cause });
  }
  throw new DatabaseConnectionError(targets, `no replica could be read (${reasons}); ${hint}`, { cause, lost: true });
}

/** Distinct non-null ids of one field over a batch. */
export function distinctIds(items: readonly Record<string, unknown>[], field: string): number[] {
  const ids = new Set<number>();
  for (let i = 0; i < items.length; i++) {
    const v = items[i][field];
    if (typeof v === "number") ids.add(v);
  }
  return [...ids];
}

/** The first of `ids` (in the order given) with no row in `table`, or null if all exist. */
export async function firstMissingId(db: Database, table: (typeof REFERENCED_TABLES)[ReferenceColumn], ids: readonly number[]): Promise<number | null> {
  if (ids.length === 0) return null;
  const where = { where: { id: { in: [...ids] } }, select: { id: true as const } };
  let found: { id: number }[];
  switch (table) {
    case "ps_ai_models":
      found = await db.prisma.psAiModel.findMany(where);
      break;
    case "ps_external_apis":
      found = await db.prisma.psExternalApi.findMany(where);
      break;
    case "ps_agents":
      found = await db.prisma.psAgent.findMany(where);
      break;
    case "ps_agent_connectors":
      found = await db.prisma.psAgentConnector.findMany(where);
      break;
  }
  const present = new Set(found.map((row) => row.id));
  return ids.find((id) => !present.has(id)) ?? null;
}

/**
 * After a foreign key violation in a batch: the table and the first id that is missing. When
 * the constraint name did not say which column it was, every reference column is checked.
 */
export async function findMissingReference(
  db: Database,
  items: readonly Record<string, unknown>[],
  columns: readonly (readonly [ReferenceColumn, string])[],
  violated: ReferenceColumn | null,
): Promise<UnknownReferenceError> {
  const candidates = violated ? columns.filter(([column]) => column === violated) : columns;
  for (const [column, field] of candidates) {
    const table = REFERENCED_TABLES[column];
    const missing = await firstMissingId(db, table, distinctIds(items, field));
    if (missing !== null) return new UnknownReferenceError(table, missing);
  }
  // The row was deleted and re-created between the failure and this check: name the table only.
  const table = violated ? REFERENCED_TABLES[violated] : "a referenced table";
  return new UnknownReferenceError(table, null);
}

/** A batch's idempotency key and the batch's one user (null: its items name several users). */
interface BatchKey {
  readonly key: string;
  readonly userId: number | null;
}

/**
 * Runs `chunkCount` statements all or nothing: one statement on its own is already atomic;
 * several run in one transaction. Both go to the driver the Database holds (db.direct), not
 * through Prisma's raw query path, which turns every parameter (a chunk's array literals, some
 * 100 kB each) into JSON and back. With a `batchKey`, the transaction first claims
 * the key in ps_usage_idempotency_keys (a row with neither usage id: a batch's key); when the key
 * is taken it writes nothing and returns null. A concurrent claim of the same key waits for the
 * first transaction: its commit makes this one a replay, its rollback frees the key. `prepare`
 * (a check that must hold at commit) runs in the same transaction before the first chunk.
 */
async function runChunks<T>(
  db: Database,
  chunkCount: number,
  runChunk: (session: WriteSession, chunk: number) => Promise<T>,
  batchKey?: BatchKey,
  prepare?: (session: WriteSession) => Promise<void>,
): Promise<T[] | null> {
  if (batchKey === undefined && prepare === undefined && chunkCount === 0) return [];
  if (isClosing(db)) throw closedError(db.target);
  if (batchKey === undefined && prepare === undefined && chunkCount === 1) return [await runChunk(directStatement(db), 0)];
  return writeTransaction(db, (session) => chunksInTransaction(db, session, chunkCount, runChunk, batchKey, prepare));
}

/** The body of a batch's transaction (see {@link runChunks}): null when its key was already used. */
async function chunksInTransaction<T>(
  db: Database,
  session: WriteSession,
  chunkCount: number,
  runChunk: (session: WriteSession, chunk: number) => Promise<T>,
  batchKey?: BatchKey,
  prepare?: (session: WriteSession) => Promise<void>,
): Promise<T[] | null> {
  if (batchKey !== undefined && !(await claimBatchKey(session, batchKey))) return null;
  if (prepare !== undefined) await prepare(session);
  const results: T[] = [];
  for (let chunk = 0; chunk < chunkCount; chunk++) {
    // A turn of the event loop between statements: on PGlite each one runs on this thread.
    if (chunk > 0) await setImmediate();
    // Closed meanwhile: start no more statements; throwing rolls the batch back.
    if (isClosing(db)) throw closedError(db.target);
    results.push(await runChunk(session, chunk));
  }
  return results;
}

const KEY_OF_ANOTHER_USER = "was already used by another user";

/**
 * Claims a batch's idempotency key together with the batch's user; false when this batch was
 * already recorded with it (a replay). A replay needs the same user: a key stored for another
 * user, or for a batch of several users when this batch has one (and the reverse), is a
 * {@link UsageValidationError}, so that a user never learns of, nor loses usage to, another
 * user's key. A key used for a single record is refused too (after the same user check).
 */
async function claimBatchKey(session: WriteSession, batchKey: BatchKey): Promise<boolean> {
  const { key, userId } = batchKey;
  // A single record's key row can vanish (its usage row deleted) between the conflict and the read.
  for (let attempt = 0; attempt < 3; attempt++) {
    const claimed = await session.query(Prisma.sql`
      INSERT INTO ps_usage_idempotency_keys (key, user_id) VALUES (${key}, ${userId}::int) ON CONFLICT (key) DO NOTHING RETURNING key`);
    if (claimed.length > 0) return true;
    const [stored] = await session.query<{ user_id: number | null; model_usage_id: number | null; external_api_usage_id: number | null; row_user_id: number | null }>(
      Prisma.sql`SELECT k.user_id, k.model_usage_id, k.external_api_usage_id, COALESCE(m.user_id, e.user_id) AS row_user_id
        FROM ps_usage_idempotency_keys k
        LEFT JOIN ps_model_usage m ON m.id = k.model_usage_id
        LEFT JOIN ps_external_api_usage e ON e.id = k.external_api_usage_id
        WHERE k.key = ${key}`,
    );
    if (stored === undefined) continue;
    // Keys of single records stored before user_id existed: their row's user.
    const storedUser = stored.user_id ?? stored.row_user_id ?? null;
    if (storedUser !== userId) throw new UsageValidationError([{ field: "options.idempotencyKey", reason: KEY_OF_ANOTHER_USER }]);
    if (stored.model_usage_id !== null || stored.external_api_usage_id !== null) {
      throw new UsageValidationError([{ field: "options.idempotencyKey", reason: "was already used to record a single event, not a batch" }]);
    }
    return false;
  }
  throw new UsageValidationError([{ field: "options.idempotencyKey", reason: "kept conflicting with a key that then disappeared; retry" }]);
}

/** The one user of a batch's items, or null when they name several (or none). */
function batchUser(inputs: readonly { readonly userId: number }[]): number | null {
  if (inputs.length === 0) return null;
  const first = inputs[0].userId;
  for (let i = 1; i < inputs.length; i++) if (inputs[i].userId !== first) return null;
  return first;
}

/**
 * A PostgreSQL array literal (`{1,2,NULL}`) of one integer field of `items[start..end)`, sent as
 * one bound parameter and cast to `int[]`. The values were validated as integers first, so the
 * text can only hold digits, commas and NULL. A missing value is NULL, or 0 with `missing: 0`
 * (counters default to 0). Literals rather than JS arrays: Prisma serializes an array parameter
 * element by element, about 1,000 ms of CPU per 200k rows against 180 ms for the literal.
 */
export function intArrayLiteral<I>(items: readonly I[], start: number, end: number, field: keyof I, missing: "NULL" | 0 = "NULL"): string {
  const parts = new Array<string | number>(end - start);
  for (let i = start; i < end; i++) {
    const v = items[i][field] as number | null | undefined;
    parts[i - start] = v === undefined || v === null ? missing : v;
  }
  return `{${parts.join(",")}}`;
}

/**
 * A PostgreSQL array literal (`{"flex",NULL}`) of one text value per item of `items[start..end)`,
 * sent as one bound parameter and cast to `text[]`. Every value was validated first to letters,
 * digits, `-` and `_` (service tiers, regional processing codes), so quoting it as it is is
 * exact; quoted, a value spelt `null` stays text. Null: NULL.
 */
export function textArrayLiteral<I>(items: readonly I[], start: number, end: number, value: (item: I) => string | null): string {
  const parts = new Array<string>(end - start);
  for (let i = start; i < end; i++) {
    const v = value(items[i]);
    parts[i - start] = v === null ? "NULL" : `"${v}"`;
  }
  return `{${parts.join(",")}}`;
}

/**
 * An event's `created_at` and `updated_at` as a single record writes them. An event row is
 * written once and never updated by this package, so its `updated_at` is its `created_at`: the
 * caller's `createdAt`, else now (this process's clock, as Prisma's own default was). Every write
 * path sets both itself (the batches with {@link BATCH_EVENT_TIME_SQL}), so it needs no database
 * default (a database PolicySynth's `sync()` created has none), and a row whose `updated_at` moved
 * on was changed by another writer (PolicySynth's `findOrCreate` + `increment`).
 */
export function eventTimes(createdAt: Date | undefined): { createdAt: Date; updatedAt: Date } {
  const at = createdAt ?? new Date();
  return { createdAt: at, updatedAt: at };
}

/**
 * A batch row's `created_at`, and its `updated_at` too (see {@link eventTimes}): the item's
 * `createdAt` from the unnest arrays, else the transaction's `now()` (one instant for the batch).
 */
export const BATCH_EVENT_TIME_SQL = Prisma.raw("COALESCE(u.created_at, now())");

/** The `createdAt` values of `items[start..end)` as a `timestamptz[]` literal (NULL: not given, see {@link BATCH_EVENT_TIME_SQL}). */
export function timestampArrayLiteral(items: readonly { readonly createdAt?: Date }[], start: number, end: number): string {
  const parts = new Array<string>(end - start);
  for (let i = start; i < end; i++) {
    const v = items[i].createdAt;
    parts[i - start] = v === undefined ? "NULL" : v.toISOString();
  }
  return `{${parts.join(",")}}`;
}

/** For a single record: the referenced table and the input's id behind a violated foreign key. */
export function singleReferenceError<I>(input: I, references: References) {
  return async (column: ReferenceColumn | null) => {
    const field = references.find(([c]) => c === column)?.[1];
    if (column === null || field === undefined) return new UnknownReferenceError("a referenced table", null);
    return new UnknownReferenceError(REFERENCED_TABLES[column], ((input as Record<string, unknown>)[field] as number | undefined) ?? null);
  };
}

/** What a batch record needs to know about its table. */
export interface BatchSpec<I> {
  readonly shape: InputShape;
  readonly table: UsageTable;
  readonly references: References;
  /** One `INSERT … SELECT … FROM unnest(…)` for `items[start..end)` (with `RETURNING id` if asked). */
  chunkSql(items: readonly I[], start: number, end: number, returnIds: boolean): Prisma.Sql;
  /** An item as the budgets see it; `now` is its time when it has no `createdAt`. */
  budgetEvent(item: I, now: Date): BudgetEvent;
}

/**
 * A batch record: validates every item, then writes chunks of `options.chunkSize` rows, all or
 * nothing; a missing reference becomes an {@link UnknownReferenceError} naming the table and id
 * (found by the foreign keys, or where the database has none by the batch's one reference check,
 * src/ledger/references.ts). With an `owner` (a `forUser` view), another user's agent or
 * connector is refused by that same check, in the same transaction.
 */
export async function recordBatch<I extends { readonly userId: number } & OwnedReferences>(
  db: Database,
  inputs: readonly I[],
  options: BatchRecordOptions | undefined,
  spec: BatchSpec<I>,
  owner: Owner = null,
): Promise<BatchRecordResult> {
  const plan = await planBatch(db, inputs, options, spec, owner);
  const returnIds = options?.returnIds === true;
  let written: { results: number[][] | null; fired?: BudgetAlert[] };
  try {
    written =
      options?.enforceBudgets === true
        ? await guardedTransaction(db, async (session) => {
            const results = await chunksInTransaction(db, session, plan.chunkCount, plan.runChunk, plan.batchKey, plan.prepare);
            return { results, events: results === null ? [] : [{ inputs, spec }] };
          })
        : { results: await runChunks(db, plan.chunkCount, plan.runChunk, plan.batchKey, plan.prepare) };
  } catch (err) {
    throw await plan.translate(err);
  }
  const { results, fired } = written;
  if (results === null) return returnIds ? { count: 0, ids: [], replayed: true } : { count: 0, replayed: true };
  await afterRecord(db, fired === undefined ? batchEvents([{ inputs, spec }], new Date()) : [], fired);
  return returnIds ? { count: inputs.length, ids: results.flat() } : { count: inputs.length };
}

/** What one or more batches wrote, as the budgets see it: each item with its time (`now` when it gave none). */
function batchEvents(parts: readonly { inputs: readonly unknown[]; spec: BatchSpec<never> }[], now: Date): BudgetEvent[] {
  const events: BudgetEvent[] = [];
  for (const { inputs, spec } of parts) for (const item of inputs) events.push(spec.budgetEvent(item as never, now));
  return events;
}

/**
 * A write made with `enforceBudgets`: `write`'s statements and the budget guard over what it
 * wrote, in one Prisma transaction, so that the guard's refusal rolls the whole write back
 * ({@link guardEvents}). Rows that gave no `createdAt` take the transaction's `now()`, as the
 * insert does. Returns what `write` returned and the alerts the guard raised (to deliver after
 * the commit).
 */
async function guardedTransaction<T>(
  db: Database,
  write: (session: WriteSession) => Promise<{ results: T; events: readonly { inputs: readonly unknown[]; spec: BatchSpec<never> }[] }>,
): Promise<{ results: T; fired: BudgetAlert[] }> {
  return prismaWriteTransaction(
    db,
    async (tx) => {
      const { results, events } = await write(prismaSession(tx));
      if (events.length === 0) return { results, fired: [] };
      const [{ now }] = await tx.$queryRaw<{ now: Date }[]>`SELECT now() AS now`;
      return { results, fired: await guardEvents(db, tx, batchEvents(events, now)) };
    },
    600_000,
  );
}

/** A validated batch: its statements, key and check, and how to name what a failure was about. */
interface BatchPlan {
  readonly count: number;
  readonly chunkCount: number;
  runChunk(session: WriteSession, chunk: number): Promise<number[]>;
  readonly batchKey?: BatchKey;
  readonly prepare?: (session: WriteSession) => Promise<void>;
  translate(err: unknown): Promise<unknown>;
}

/** Validates a batch (every item; nothing is written) and plans its chunk statements. */
async function planBatch<I extends { readonly userId: number } & OwnedReferences>(
  db: Database,
  inputs: readonly I[],
  options: BatchRecordOptions | undefined,
  spec: BatchSpec<I>,
  owner: Owner,
): Promise<BatchPlan> {
  const issues: FieldIssue[] = [];
  checkBatchOptions(options, issues);
  await checkBatchYielding(inputs, spec.shape, issues);
  throwIfIssues(issues);
  const chunkSize = options?.chunkSize ?? (db.kind === "pglite" ? DEFAULT_EMBEDDED_BATCH_CHUNK_SIZE : DEFAULT_BATCH_CHUNK_SIZE);
  const returnIds = options?.returnIds === true;
  const translate = (err: unknown) =>
    translateDatabaseError(db, err, (column) => findMissingReference(db, inputs as unknown as readonly Record<string, unknown>[], spec.references, column));
  let check: ReferenceCheck | null;
  try {
    check = await planReferenceCheck(db, spec.table, spec.references, inputs, owner);
  } catch (err) {
    throw await translate(err);
  }
  return {
    count: inputs.length,
    chunkCount: Math.ceil(inputs.length / chunkSize),
    async runChunk(session, chunk) {
      const start = chunk * chunkSize;
      const rows = await session.query<{ id: number }>(spec.chunkSql(inputs, start, Math.min(start + chunkSize, inputs.length), returnIds));
      return returnIds ? rows.map((row) => row.id) : [];
    },
    batchKey: options?.idempotencyKey === undefined ? undefined : { key: options.idempotencyKey, userId: owner ?? batchUser(inputs) },
    prepare: check === null ? undefined : (session) => checkReferences(session, inputs, check, true),
    translate,
  };
}

/** One batch of {@link recordBatchesTogether}: its items, options and table. */
export interface BatchPart<I> {
  readonly inputs: readonly I[];
  readonly options?: Omit<BatchRecordOptions, "returnIds">;
  readonly spec: BatchSpec<I>;
}

/**
 * Several batches (of either table) written in one transaction: all of them or none. Each is
 * validated first, as {@link recordBatch} does; a failure rejects with the
 * index of the batch it was about and its typed error ({@link BatchPartFailure}). Returns each batch's count (0 when its
 * idempotency key had recorded it already). With `enforceBudgets`, the budget guard runs over all
 * of them in the same transaction (a refusal is about the last batch); without it, their events go
 * to the background threshold check, as every record call's do.
 */
export async function recordBatchesTogether(
  db: Database,
  parts: readonly BatchPart<{ readonly userId: number } & OwnedReferences>[],
  options: { readonly enforceBudgets?: boolean } = {},
): Promise<number[]> {
  const plans: BatchPlan[] = [];
  for (const [index, part] of parts.entries()) {
    try {
      plans.push(await planBatch(db, part.inputs, part.options, part.spec, null));
    } catch (error) {
      throw new BatchPartFailure(index, error);
    }
  }
  let running = 0;
  const writeAll = async (session: WriteSession) => {
    const counts: number[] = [];
    for (const [index, plan] of plans.entries()) {
      running = index;
      const done = await chunksInTransaction(db, session, plan.chunkCount, plan.runChunk, plan.batchKey, plan.prepare);
      counts.push(done === null ? 0 : plan.count);
    }
    return counts;
  };
  const recorded = (counts: readonly number[]) => parts.filter((_, i) => counts[i] > 0) as unknown as { inputs: readonly unknown[]; spec: BatchSpec<never> }[];
  try {
    if (isClosing(db)) throw closedError(db.target);
    if (options.enforceBudgets === true) {
      const { results, fired } = await guardedTransaction(db, async (session) => {
        const counts = await writeAll(session);
        return { results: counts, events: recorded(counts) };
      });
      await afterRecord(db, [], fired);
      return results;
    }
    const counts = await writeTransaction(db, writeAll);
    await afterRecord(db, batchEvents(recorded(counts), new Date()));
    return counts;
  } catch (err) {
    // A typed error of a batch's own checks (its key, its references, the budget guard) is about the batch that ran.
    if (err instanceof PsUsageError) throw new BatchPartFailure(running, err);
    // Which batch it was about: the first whose items name what is missing (a rolled-back batch
    // leaves the database as it was, so the check reads what the statements saw).
    for (const [index, plan] of plans.entries()) {
      const error = await plan.translate(err);
      if (!(error instanceof UnknownReferenceError) || error.id !== null || index === plans.length - 1) throw new BatchPartFailure(index, error);
    }
    throw new BatchPartFailure(0, err);
  }
}

/** How {@link recordBatchesTogether} fails: which batch (`part`) and its typed error. Nothing was written. */
export class BatchPartFailure {
  constructor(
    readonly part: number,
    readonly error: unknown,
  ) {}
}

// ---------------------------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------------------------

/** Which find a cursor belongs to. */
export type CursorTable = "model" | "externalApi" | "modelItem";

/**
 * Where a page ended: the last row's `created_at` at full microsecond precision (UTC text
 * `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written by the database itself: a JS Date only holds
 * milliseconds) and its id. The next page starts after `(at, id)` in `(created_at, id)` order,
 * whether or not that row still exists.
 */
interface CursorPosition {
  readonly at: string;
  readonly id: number;
}

interface CursorContent extends CursorPosition {
  readonly table: CursorTable;
  readonly order: UsageOrder;
}

/** v2 carries the position; v1 (before it) carried only the id. */
const CURSOR_VERSION = "v2";
const CURSOR_V1 = "v1";
/** The position text, exactly as {@link POSITION_SQL} writes it. */
const POSITION_TEXT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z$/;
/** A row's position as text, whatever the session's TimeZone and DateStyle. */
const POSITION_SQL = Prisma.raw(`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);

/** The SQL table of a find. */
const FIND_TABLES: Readonly<Record<CursorTable, Prisma.Sql>> = {
  model: Prisma.raw("ps_model_usage"),
  externalApi: Prisma.raw("ps_external_api_usage"),
  modelItem: Prisma.raw("ps_model_usage_item"),
};

/** The letter a cursor names its find by, and the find's name for messages. */
const CURSOR_FINDS: Readonly<Record<CursorTable, { letter: string; finder: string }>> = {
  model: { letter: "m", finder: "findModelUsage" },
  externalApi: { letter: "e", finder: "findExternalApiUsage" },
  modelItem: { letter: "i", finder: "findModelUsageItems" },
};

/** An opaque cursor: `v2.` and base64url of a small JSON document. */
export function encodeCursor(content: CursorContent): string {
  const json = JSON.stringify({ t: CURSOR_FINDS[content.table].letter, o: content.order === "newest" ? "n" : "o", at: content.at, id: content.id });
  return `${CURSOR_VERSION}.${Buffer.from(json, "utf8").toString("base64url")}`;
}

/** True when `at` is position text of a real instant in years 1..9999 (the range dates are checked against). */
function isPosition(at: unknown): at is string {
  if (typeof at !== "string" || !POSITION_TEXT.test(at)) return false;
  const ms = `${at.slice(0, 23)}Z`;
  const date = new Date(ms);
  // Round-trips only when every field was in range (no 2026-02-30 rolled into March).
  return dateProblem(date) === null && date.toISOString() === ms;
}

/** What a cursor holds: the position (v2), or only the row id (v1), for the same find and order. */
export type DecodedCursor = CursorPosition | { readonly at?: undefined; readonly id: number };

/**
 * Reads a cursor made by {@link encodeCursor} (or by the previous version, which held only the
 * id) for the same find and order; anything else (a cursor of another find, of the other order,
 * an id outside INTEGER, a position that is not an instant in years 1..9999, or any other
 * string) is a validation issue on `page.cursor`.
 */
export function decodeCursor(cursor: string, table: CursorTable, order: UsageOrder, issues: FieldIssue[]): DecodedCursor | null {
  const finder = CURSOR_FINDS[table].finder;
  const bad = (reason: string) => {
    issues.push({ field: "page.cursor", reason });
    return null;
  };
  const dot = cursor.indexOf(".");
  const version = dot < 0 ? "" : cursor.slice(0, dot);
  if (cursor.length > 300 || (version !== CURSOR_VERSION && version !== CURSOR_V1) || !/^[A-Za-z0-9_-]+$/.test(cursor.slice(dot + 1))) {
    return bad(`is not a cursor returned by ${finder}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor.slice(dot + 1), "base64url").toString("utf8"));
  } catch {
    return bad(`is not a cursor returned by ${finder}`);
  }
  const { t, o, at, id } = (parsed ?? {}) as { t?: unknown; o?: unknown; at?: unknown; id?: unknown };
  const made = Object.values(CURSOR_FINDS).find((f) => f.letter === t);
  if (made === undefined || (o !== "n" && o !== "o") || idProblem(id) !== null || (version === CURSOR_VERSION && !isPosition(at))) {
    return bad(`is not a cursor returned by ${finder}`);
  }
  if (made.finder !== finder) return bad(`is a cursor of ${made.finder}, not of ${finder}`);
  const cursorOrder: UsageOrder = o === "n" ? "newest" : "oldest";
  if (cursorOrder !== order) return bad(`was made for order "${cursorOrder}", not "${order}"`);
  return version === CURSOR_VERSION ? { at: at as string, id: id as number } : { id: id as number };
}

// ---------------------------------------------------------------------------------------------
// Find (one page)
// ---------------------------------------------------------------------------------------------

/** What a find needs to know about its table. */
export interface FindSpec<Row extends { readonly id: number }, Item> {
  readonly table: CursorTable;
  readonly idField: "modelId" | "externalApiId";
  /** The relations `page.include` may name. */
  readonly includeKeys: readonly string[];
  /** The table's `findMany` (here: the rows of one page, by id, with their relations). */
  findMany(
    db: Database,
    args: {
      where: { id: { in: number[] } };
      include: Record<string, boolean>;
    },
  ): Promise<Row[]>;
  /**
   * A row (with the relations asked for) as the DTO the find returns; with an `owner` (a
   * `forUser` view), another user's agent or connector is null (see {@link visibleTo}).
   */
  toItem(row: Row, include: Readonly<Record<string, boolean>>, owner: Owner): Item;
}

/**
 * The position of a v1 cursor's row; a v1 cursor cannot go on once its row is gone (it never
 * held the position), which is what v2 fixed.
 */
async function v1Position(db: Database, table: CursorTable, id: number): Promise<CursorPosition> {
  const rows = await db.reportPrisma.$queryRaw<{ at: string }[]>`SELECT ${POSITION_SQL} AS at FROM ${FIND_TABLES[table]} WHERE id = ${id}`;
  if (rows.length === 0) {
    throw new UsageValidationError([
      { field: "page.cursor", reason: "is a cursor of an earlier version whose row no longer exists; start again without a cursor" },
    ]);
  }
  return { at: rows[0].at, id };
}

/**
 * One page of a find: checks the filter and page, then reads the ids and positions of `limit + 1`
 * rows in `(created_at, id)` order after the cursor's position with a keyset condition
 * (`(created_at, id) < (at, id)` for newest first), in SQL at full microsecond precision, and
 * then those rows (with the relations asked for) through Prisma. The cursor needs only its
 * position, so it keeps working when its row, or any other, is deleted between pages. Both reads
 * run where `db` routes reads, on one replica (see db/replicas): keys from one replica and rows
 * from another, further behind, would drop rows from the page.
 */
export async function findUsagePage<Row extends { readonly id: number }, Item>(
  db: Database,
  spec: FindSpec<Row, Item>,
  filter: UsageFilter,
  page: PageOptions & { readonly include?: Readonly<Record<string, boolean | undefined>> },
  owner: Owner = null,
): Promise<UsagePage<Item>> {
  const issues: FieldIssue[] = [];
  checkFilter(filter, spec.idField, issues);
  checkPageOptions(page, spec.includeKeys, issues);
  throwIfIssues(issues);
  const order = pageOrder(page.order);
  const decoded = page.cursor === undefined ? null : decodeCursor(page.cursor, spec.table, order, issues);
  throwIfIssues(issues);

  const limit = page.limit ?? DEFAULT_PAGE_SIZE;
  const include = Object.fromEntries(spec.includeKeys.map((k) => [k, page.include?.[k] === true]));
  const onePage = async (db: Database): Promise<UsagePage<Item>> => {
    const after = decoded === null ? null : decoded.at === undefined ? await v1Position(db, spec.table, decoded.id) : decoded;
    const conditions = usageFilterConditions(filter);
    const direction = Prisma.raw(order === "newest" ? "DESC" : "ASC");
    if (after !== null) {
      conditions.push(
        order === "newest"
          ? Prisma.sql`(created_at, id) < (${after.at}::timestamptz, ${after.id}::int)`
          : Prisma.sql`(created_at, id) > (${after.at}::timestamptz, ${after.id}::int)`,
      );
    }
    // The position text is made for the page's rows only: in the inner query it would be made
    // for every matching row before the top-N sort (twice the time of the whole query).
    const keys = await db.reportPrisma.$queryRaw<{ id: number; at: string }[]>`
      SELECT id, ${POSITION_SQL} AS at FROM (
        SELECT id, created_at FROM ${FIND_TABLES[spec.table]} ${whereSql(conditions)}
        ORDER BY created_at ${direction}, id ${direction} LIMIT ${limit + 1}
      ) page ORDER BY created_at ${direction}, id ${direction}`;
    const more = keys.length > limit;
    const pageKeys = more ? keys.slice(0, limit) : keys;
    const rows = pageKeys.length === 0 ? [] : await spec.findMany(db, { where: { id: { in: pageKeys.map((k) => k.id) } }, include });
    // In the keyset's order; a row deleted between the two reads is simply not there.
    const byId = new Map(rows.map((row) => [row.id, row]));
    const pageRows = pageKeys.flatMap((k) => byId.get(k.id) ?? []);
    const last = pageKeys[pageKeys.length - 1];
    return {
      items: pageRows.map((row) => spec.toItem(row, include, owner)),
      nextCursor: more && last ? encodeCursor({ table: spec.table, order, at: last.at, id: last.id }) : null,
    };
  };
  return readRouted(db, onePage, async () => new UnknownReferenceError("a referenced table", null));
}

// ---------------------------------------------------------------------------------------------
// Related rows as plain DTOs
// ---------------------------------------------------------------------------------------------

interface AgentRow {
  id: number;
  uuid: string;
  userId: number;
  classId: number;
  groupId: number;
  parentAgentId: number | null;
  configuration: unknown;
  createdAt: Date;
  updatedAt: Date;
}

export function toAgentRecord(row: AgentRow): AgentRecord {
  return {
    id: row.id,
    uuid: row.uuid,
    userId: row.userId,
    classId: row.classId,
    groupId: row.groupId,
    parentAgentId: row.parentAgentId,
    configuration: row.configuration,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export function toConnectorRecord(row: Omit<AgentRow, "parentAgentId">): ConnectorRecord {
  return {
    id: row.id,
    uuid: row.uuid,
    userId: row.userId,
    classId: row.classId,
    groupId: row.groupId,
    configuration: row.configuration,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export function toAiModelRecord(row: {
  id: number;
  uuid: string;
  userId: number;
  organizationId: number | null;
  name: string;
  configuration: unknown;
  createdAt: Date;
  updatedAt: Date;
}): AiModelRecord {
  return {
    id: row.id,
    uuid: row.uuid,
    userId: row.userId,
    organizationId: row.organizationId,
    name: row.name,
    configuration: row.configuration,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export function toExternalApiRecord(row: {
  id: number;
  uuid: string;
  userId: number;
  organizationId: number | null;
  type: string;
  priceAdapter: unknown;
  createdAt: Date;
  updatedAt: Date;
}): ExternalApiRecord {
  return {
    id: row.id,
    uuid: row.uuid,
    userId: row.userId,
    organizationId: row.organizationId,
    type: row.type,
    priceAdapter: row.priceAdapter,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

// ---------------------------------------------------------------------------------------------
// Idempotent single records
// ---------------------------------------------------------------------------------------------

/** What an idempotency key row points at. */
export interface StoredKey<R> {
  /** The key row's user (null for keys stored before the column existed, or a mixed batch). */
  readonly userId: number | null;
  readonly modelUsageId: number | null;
  readonly externalApiUsageId: number | null;
  /** The row the key points at, in this call's table, or null when it points at the other table. */
  readonly row: R | null;
}

/** What a keyed create returns instead of a row when the key was taken: it wrote nothing. */
export class KeyTaken<R> {
  // Only to tell a KeyTaken<R> from an R by type.
  declare private readonly row?: R;
}

/**
 * Records once per idempotency key. `create` inserts the usage row together with its key row,
 * all or nothing (one statement, or a Prisma nested create in one transaction); when the key is
 * already taken (possibly by a concurrent caller whose transaction has just committed) it returns
 * {@link KeyTaken} (a unique violation of the key counts as one), and the row the key points at,
 * read by `readKey`, is returned instead. A key taken by another user
 * (checked first, for a batch's key too), or by the other usage table or a batch, is a
 * {@link UsageValidationError} on `options.idempotencyKey`. `create` stores `userId` on the key row.
 */
export async function recordOnce<R extends { readonly userId: number }>(
  key: string,
  userId: number,
  tableLabel: string,
  create: () => Promise<R | KeyTaken<R>>,
  readKey: () => Promise<StoredKey<R> | null>,
): Promise<R> {
  // A key row can vanish between the conflict and the read (its usage row deleted): try again.
  for (let attempt = 0; attempt < 3; attempt++) {
    let created: R | KeyTaken<R>;
    try {
      created = await create();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      created = new KeyTaken<R>();
    }
    if (!(created instanceof KeyTaken)) return created;
    const stored = await readKey();
    if (stored === null) continue;
    // A batch's key without a user is a batch of several users (or older than user_id).
    const batchKey = stored.modelUsageId === null && stored.externalApiUsageId === null;
    const storedUser = stored.userId ?? stored.row?.userId ?? null;
    if ((storedUser !== null || batchKey) && storedUser !== userId) {
      throw new UsageValidationError([{ field: "options.idempotencyKey", reason: KEY_OF_ANOTHER_USER }]);
    }
    if (batchKey) {
      throw new UsageValidationError([{ field: "options.idempotencyKey", reason: "was already used to record a batch" }]);
    }
    if (stored.row === null) {
      throw new UsageValidationError([
        { field: "options.idempotencyKey", reason: `was already used to record ${tableLabel === "model usage" ? "external API usage" : "model usage"}` },
      ]);
    }
    if (stored.row.userId !== userId) throw new UsageValidationError([{ field: "options.idempotencyKey", reason: KEY_OF_ANOTHER_USER }]);
    return stored.row;
  }
  throw new UsageValidationError([{ field: "options.idempotencyKey", reason: "kept conflicting with a key that then disappeared; retry" }]);
}
