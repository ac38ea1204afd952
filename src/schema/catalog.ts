/**
 * @internal
 * What a database holds of the tables the package's migrations create: columns (type,
 * nullability, default), indexes and foreign keys, read from PostgreSQL's catalog in the same
 * canonical text the server prints (`format_type`, `pg_get_expr`, `pg_get_constraintdef`), so
 * two catalogs read from the same server compare as strings.
 */
import type { SqlSession } from "../db";

export interface CatalogColumn {
  readonly table: string;
  readonly column: string;
  /** `format_type`: "integer", "character varying(255)", "timestamp with time zone", ... */
  readonly type: string;
  readonly notNull: boolean;
  /** `pg_get_expr` of the default, or null when the column has none. */
  readonly default: string | null;
}

export interface CatalogIndex {
  readonly table: string;
  readonly name: string;
  readonly columns: readonly string[];
  readonly unique: boolean;
  readonly primary: boolean;
  /** False for an index a failed `CREATE INDEX CONCURRENTLY` left behind. */
  readonly valid: boolean;
}

export interface CatalogForeignKey {
  readonly table: string;
  readonly name: string;
  readonly columns: readonly string[];
  readonly references: string;
  readonly referencedColumns: readonly string[];
  /** `pg_get_constraintdef`, e.g. "FOREIGN KEY (model_id) REFERENCES ps_ai_models(id) ON UPDATE CASCADE ON DELETE RESTRICT". */
  readonly definition: string;
  /** False for a constraint added `NOT VALID` and not validated since (it still checks new rows). */
  readonly validated: boolean;
}

export interface Catalog {
  readonly schema: string;
  readonly tables: ReadonlySet<string>;
  readonly columns: readonly CatalogColumn[];
  readonly indexes: readonly CatalogIndex[];
  readonly foreignKeys: readonly CatalogForeignKey[];
}

/** @internal The schema unqualified names resolve to in this session (`public` unless search_path says otherwise). */
export async function currentSchema(session: SqlSession): Promise<string> {
  const rows = await session.query<{ s: string }>(`SELECT current_schema() AS s`);
  return rows[0].s;
}

/** @internal Reads `tables` (those that exist) of `schema`. */
export async function readCatalog(session: SqlSession, schema: string, tables: readonly string[]): Promise<Catalog> {
  const names = [...tables];
  const [present, columns, indexes, foreignKeys] = [
    await session.query<{ table: string }>(
      `SELECT c.relname AS "table" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2::text[])`,
      [schema, names],
    ),
    await session.query<CatalogColumn>(
      `SELECT c.relname AS "table", a.attname AS "column", format_type(a.atttypid, a.atttypmod) AS "type",
              a.attnotnull AS "notNull", pg_get_expr(d.adbin, d.adrelid) AS "default"
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2::text[])
        ORDER BY c.relname, a.attnum`,
      [schema, names],
    ),
    await session.query<CatalogIndex>(
      `SELECT t.relname AS "table", i.relname AS "name", x.indisunique AS "unique", x.indisprimary AS "primary",
              x.indisvalid AS "valid",
              ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord) AS "columns"
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = $1 AND t.relname = ANY($2::text[])
        ORDER BY t.relname, i.relname`,
      [schema, names],
    ),
    await session.query<CatalogForeignKey & { definition: string }>(
      `SELECT t.relname AS "table", con.conname AS "name", f.relname AS "references", con.convalidated AS "validated",
              ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord) AS "columns",
              ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = f.oid AND a.attnum = k.attnum ORDER BY k.ord) AS "referencedColumns",
              pg_get_constraintdef(con.oid) AS "definition"
         FROM pg_constraint con
         JOIN pg_class t ON t.oid = con.conrelid
         JOIN pg_class f ON f.oid = con.confrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE con.contype = 'f' AND n.nspname = $1 AND t.relname = ANY($2::text[])
        ORDER BY t.relname, con.conname`,
      [schema, names],
    ),
  ];
  return {
    schema,
    tables: new Set(present.map((r) => r.table)),
    columns,
    indexes,
    // pg_get_constraintdef qualifies the referenced table with its schema when that schema is
    // not on the search_path; compare definitions without it.
    foreignKeys: foreignKeys.map((fk) => ({ ...fk, definition: fk.definition.replace(`REFERENCES ${schema}.`, "REFERENCES ") })),
  };
}
