/**
 * A single usage record as one statement sent to the driver the Database holds (db.direct), not
 * through Prisma's client runtime, which cost about half of each call (bench/RESULTS.md, single
 * records): a named, prepared `INSERT … RETURNING`, and with an idempotency key one statement
 * that claims the key, inserts the row and, when the key was taken, reads what it points at.
 * The texts are fixed per table (every column is always sent), so each connection prepares them
 * once.
 */
import type { Database } from "../db";
import type { UsageTable } from "./references";
import type { StoredKey } from "../usageShared";

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

/** A statement of a fixed text, kept prepared under its name on each PostgreSQL connection. */
export interface DirectStatement {
  readonly name: string;
  readonly text: string;
}

/** The two statements of a table: without and with an idempotency key. */
export interface SingleInsertStatements {
  readonly plain: DirectStatement;
  readonly keyed: DirectStatement;
}

/**
 * The statements of `spec`. Keyed, the key row is claimed first with the new row's id taken from
 * the table's sequence (a replay leaves a gap, as a rolled-back insert does), so that key and row
 * are written by one statement; the key row's foreign key to the usage row is checked at the end
 * of the statement, when the row is there. When the key was taken the statement returns the key
 * row and the row it points at (`replay` true) as its snapshot sees them, or nothing at all when
 * the key was committed by a concurrent caller after the statement began: the caller reads it
 * then with a statement of its own.
 */
export function singleInsertStatements(spec: SingleInsertSpec): SingleInsertStatements {
  const columns = spec.columns.map(([column]) => column).join(", ");
  const returning = ["id", ...spec.columns.map(([column, , field]) => `${column} AS "${field}"`)].join(", ");
  const params = spec.columns.map(([, type], i) => `$${i + 1}::${type}`).join(", ");
  const plain = `INSERT INTO ${spec.table} (${columns}) VALUES (${params}) RETURNING ${returning}`;
  const key = `$${spec.columns.length + 1}::varchar`;
  const user = `$${spec.columns.length + 2}::int`;
  const keyed = `WITH new_row AS (SELECT nextval(pg_get_serial_sequence('${spec.table}', 'id'))::int AS id),
claimed AS (
  INSERT INTO ps_usage_idempotency_keys (key, user_id, ${spec.keyColumn}) SELECT ${key}, ${user}, id FROM new_row
  ON CONFLICT (key) DO NOTHING RETURNING ${spec.keyColumn} AS id
),
inserted AS (INSERT INTO ${spec.table} (id, ${columns}) SELECT id, ${params} FROM claimed RETURNING ${returning})
SELECT false AS replay, NULL::int AS "keyUserId", NULL::int AS "keyModelUsageId", NULL::int AS "keyExternalApiUsageId", inserted.* FROM inserted
UNION ALL
SELECT true, k.user_id, k.model_usage_id, k.external_api_usage_id, ${["r.id", ...spec.columns.map(([column]) => `r.${column}`)].join(", ")}
FROM ps_usage_idempotency_keys k LEFT JOIN ${spec.table} r ON r.id = k.${spec.keyColumn}
WHERE k.key = ${key} AND NOT EXISTS (SELECT 1 FROM claimed)`;
  return {
    plain: { name: `ps_usage_insert_${spec.table}`, text: plain },
    keyed: { name: `ps_usage_insert_keyed_${spec.table}`, text: keyed },
  };
}

/** Inserts one row (`values` in the spec's column order) and returns it. */
export async function insertSingle<Row>(db: Database, statements: SingleInsertStatements, values: readonly unknown[]): Promise<Row> {
  const rows = await db.direct.query<Row>(statements.plain.text, values, statements.plain.name);
  return rows[0];
}

/** What a keyed insert found: the row it wrote, the key row (and its row) that was there, or neither. */
export type KeyedInsert<Row> =
  | { readonly inserted: Row }
  | { readonly inserted?: undefined; readonly stored: StoredKey<Row> | null };

type KeyedResultRow = {
  replay: boolean;
  keyUserId: number | null;
  keyModelUsageId: number | null;
  keyExternalApiUsageId: number | null;
  id: number | null;
};

/** Inserts one row with its idempotency key in one statement (see {@link singleInsertStatements}). */
export async function insertSingleKeyed<Row>(
  db: Database,
  statements: SingleInsertStatements,
  values: readonly unknown[],
  key: string,
  userId: number,
): Promise<KeyedInsert<Row>> {
  const [result] = await db.direct.query<KeyedResultRow>(statements.keyed.text, [...values, key, userId], statements.keyed.name);
  if (result === undefined) return { stored: null };
  const { replay, keyUserId, keyModelUsageId, keyExternalApiUsageId, ...row } = result;
  if (!replay) return { inserted: row as Row };
  return {
    stored: {
      userId: keyUserId,
      modelUsageId: keyModelUsageId,
      externalApiUsageId: keyExternalApiUsageId,
      row: row.id === null ? null : (row as Row),
    },
  };
}
