/**
 * A single usage record as one statement sent to the driver the Database holds (db.direct), not
 * through Prisma's client runtime, which cost about half of each call (bench/RESULTS.md, single
 * records): a named, prepared `INSERT … RETURNING`, and with an idempotency key one statement
 * that claims the key and inserts the row.
 * The texts are fixed per table (every column is always sent), so each connection (PGlite's one
 * session too) prepares them once.
 */
import type { Database } from "../db";
import { DatabaseNotMigratedError } from "../errors";
import { KeyTaken, recordOnce, type StoredKey } from "../usageShared";
import type { UsageTable } from "./references";

/** One column a single record writes: its name, SQL type, and the field of the returned row. */
export type SingleColumn = readonly [column: string, sqlType: string, field: string];

/** What a single-record statement needs to know about its table. */
export interface SingleInsertSpec {
  readonly table: UsageTable;
  /** The column of `ps_usage_idempotency_keys` that points at this table. */
  readonly keyColumn: "model_usage_id" | "external_api_usage_id";
  /** Every column written, in the order of the values; the returned row has `id` and these fields. */
  readonly columns: readonly SingleColumn[];
}

/** A statement of a fixed text, kept prepared under its name on each PostgreSQL connection and on PGlite's session. */
export interface DirectStatement {
  readonly name: string;
  readonly text: string;
}

/** The two statements of a table: without and with an idempotency key. */
export interface SingleInsertStatements {
  readonly table: UsageTable;
  readonly plain: DirectStatement;
  readonly keyed: DirectStatement;
  /** A key row and the row of this table it points at (all null when it points elsewhere). */
  readonly readKey: DirectStatement;
}

/**
 * The statements of `spec`. Keyed, the key row is claimed first with the new row's id taken from
 * the table's sequence (the last parameter; a replay leaves a gap, as a rolled-back insert does),
 * so that key and row are written by one statement; the key row's foreign key to the usage row
 * is checked at the end of the statement, when the row is there. When the key was taken it
 * returns no row and writes nothing: the caller reads the key (a replay is the rare case, and
 * reading the taken key in the same statement cost a third of the statement's time on PGlite).
 */
export function singleInsertStatements(spec: SingleInsertSpec): SingleInsertStatements {
  const columns = spec.columns.map(([column]) => column).join(", ");
  const returning = ["id", ...spec.columns.map(([column, , field]) => `${column} AS "${field}"`)].join(", ");
  // Plain, the columns type the parameters: casts there cost about 15% of the statement on PGlite
  // where it parses and plans every call (unprepared, while a transaction is pending: bench/NOTES.md,
  // single records). Keyed, they are values of a SELECT, which the columns do not type: cast.
  const untyped = spec.columns.map((_, i) => `$${i + 1}`).join(", ");
  const params = spec.columns.map(([, type], i) => `$${i + 1}::${type}`).join(", ");
  const plain = `INSERT INTO ${spec.table} (${columns}) VALUES (${untyped}) RETURNING ${returning}`;
  const n = spec.columns.length;
  const keyed = `WITH new_row AS (SELECT nextval($${n + 3}::regclass)::int AS id),
claimed AS (
  INSERT INTO ps_usage_idempotency_keys (key, user_id, ${spec.keyColumn}) SELECT $${n + 1}::varchar, $${n + 2}::int, id FROM new_row
  ON CONFLICT (key) DO NOTHING RETURNING ${spec.keyColumn} AS id
)
INSERT INTO ${spec.table} (id, ${columns}) SELECT id, ${params} FROM claimed RETURNING ${returning}`;
  const readKey = `SELECT k.user_id AS "keyUserId", k.model_usage_id AS "keyModelUsageId", k.external_api_usage_id AS "keyExternalApiUsageId",
  ${["r.id", ...spec.columns.map(([column, , field]) => `r.${column} AS "${field}"`)].join(", ")}
FROM ps_usage_idempotency_keys k LEFT JOIN ${spec.table} r ON r.id = k.${spec.keyColumn} WHERE k.key = $1`;
  return {
    table: spec.table,
    plain: { name: `ps_usage_insert_${spec.table}`, text: plain },
    keyed: { name: `ps_usage_insert_keyed_${spec.table}`, text: keyed },
    readKey: { name: `ps_usage_read_key_${spec.table}`, text: readKey },
  };
}

/** Inserts one row (`values` in the spec's column order) and returns it. */
export async function insertSingle<Row>(db: Database, statements: SingleInsertStatements, values: readonly unknown[]): Promise<Row> {
  const rows = await db.direct.query<Row>(statements.plain.text, values, statements.plain.name);
  return rows[0];
}

/**
 * Inserts one row with its idempotency key in one statement (see {@link singleInsertStatements});
 * null when the key was taken: nothing was written.
 */
export async function insertSingleKeyed<Row>(
  db: Database,
  statements: SingleInsertStatements,
  values: readonly unknown[],
  key: string,
  userId: number,
): Promise<Row | null> {
  const sequence = await idSequence(db, statements.table);
  const rows = await db.direct.query<Row>(statements.keyed.text, [...values, key, userId, sequence], statements.keyed.name);
  return rows[0] ?? null;
}

const sequences = new WeakMap<Database, Map<UsageTable, Promise<string>>>();

/**
 * The sequence behind a usage table's `id` (`ps_model_usage_id_seq` on a migrated database; a
 * database PolicySynth created may name it otherwise): asked once per Database and table.
 */
function idSequence(db: Database, table: UsageTable): Promise<string> {
  let known = sequences.get(db);
  if (known === undefined) sequences.set(db, (known = new Map()));
  let sequence = known.get(table);
  if (sequence === undefined) {
    sequence = db.direct.query<{ sequence: string | null }>("SELECT pg_get_serial_sequence($1, 'id') AS sequence", [table]).then(([row]) => {
      if (!row?.sequence) throw new DatabaseNotMigratedError(db.target, `${table}.id has no sequence (a serial or identity column)`);
      return row.sequence;
    });
    known.set(table, sequence);
    sequence.catch(() => known.delete(table));
  }
  return sequence;
}

/**
 * Records one row of a table: `values` in the spec's column order, `toRecord` turning the returned
 * row into the package's DTO; with a `key`, once per key (see {@link recordOnce}).
 */
export async function recordSingle<Row, R extends { readonly userId: number }>(
  db: Database,
  statements: SingleInsertStatements,
  values: readonly unknown[],
  toRecord: (row: Row) => R,
  keyed?: { readonly key: string; readonly userId: number; readonly tableLabel: string },
): Promise<R> {
  if (keyed === undefined) return toRecord(await insertSingle<Row>(db, statements, values));
  const { key, userId, tableLabel } = keyed;
  return recordOnce(
    key,
    userId,
    tableLabel,
    async () => {
      const row = await insertSingleKeyed<Row>(db, statements, values, key, userId);
      return row === null ? new KeyTaken<R>() : toRecord(row);
    },
    () => readStoredKey(db, statements, key, toRecord),
  );
}

/** What `key` points at, with this table's row as a DTO (for {@link recordOnce}); null when it is not there. */
export async function readStoredKey<Row, R>(
  db: Database,
  statements: SingleInsertStatements,
  key: string,
  toRecord: (row: Row) => R,
): Promise<StoredKey<R> | null> {
  const [stored] = await db.direct.query<{ keyUserId: number | null; keyModelUsageId: number | null; keyExternalApiUsageId: number | null; id: number | null }>(
    statements.readKey.text,
    [key],
    statements.readKey.name,
  );
  if (stored === undefined) return null;
  const { keyUserId, keyModelUsageId, keyExternalApiUsageId, ...row } = stored;
  return {
    userId: keyUserId,
    modelUsageId: keyModelUsageId,
    externalApiUsageId: keyExternalApiUsageId,
    row: row.id === null ? null : toRecord(row as Row),
  };
}
