/**
 * The references of a usage row (model or external API, agent, connector) on any database. On a
 * database this package migrated, foreign keys refuse an unknown id; a database PolicySynth's
 * Sequelize `sync()` created has none on `model_id` / `external_api_id` (and maybe none on
 * `agent_id` / `connector_id`). The package learns once per {@link Database} which of the six
 * reference foreign keys exist, relies on those, and checks the others itself in the write's
 * transaction, together with a `forUser` view's ownership check: one query per record or batch.
 */
import type { Database } from "../db";
import { UnknownReferenceError } from "../errors";
import { retryDeadlocks } from "../db/retryDeadlocks";
import { Prisma } from "../generated/prisma/client";
import { directStatement, prismaSession, prismaWriteTransaction, type WriteSession } from "./writeSession";
import { namesAgentOrConnector, refuseOthersReferences, type OwnedReferences, type Owner } from "../scope/ownership";

/** A usage column that references another table, and that table. */
export const REFERENCED_TABLES = {
  model_id: "ps_ai_models",
  external_api_id: "ps_external_apis",
  agent_id: "ps_agents",
  connector_id: "ps_agent_connectors",
} as const;

export type ReferenceColumn = keyof typeof REFERENCED_TABLES;

/** The two usage tables. */
export type UsageTable = "ps_model_usage" | "ps_external_api_usage";

/** A usage table's reference columns and the input fields that fill them, in the order errors are looked for. */
export type References = readonly (readonly [ReferenceColumn, string])[];

/** What the catalog says about a database's usage tables. */
interface Catalog {
  /** Both usage tables exist (a database not migrated yet is asked again at its next write). */
  readonly tables: boolean;
  /** `<table>.<column>` of each reference that a foreign key guards. */
  readonly guarded: ReadonlySet<string>;
}

const catalogs = new WeakMap<Database, Promise<Catalog>>();

/**
 * Which reference columns of the usage tables a foreign key to the right table guards: one
 * catalog query at a database's first write, then cached on it. A `NOT VALID` foreign key
 * counts: it is not checked against old rows, but it checks every new one.
 */
async function catalogOf(db: Database): Promise<Catalog> {
  let catalog = catalogs.get(db);
  if (catalog === undefined) {
    catalog = readCatalog(db);
    catalogs.set(db, catalog);
    catalog.then(
      (read) => {
        if (!read.tables) catalogs.delete(db);
      },
      () => catalogs.delete(db),
    );
  }
  return catalog;
}

/** Forgets what the package learnt about `db`'s foreign keys (after a change of its schema). */
export function forgetGuardedReferences(db: Database): void {
  catalogs.delete(db);
}

async function readCatalog(db: Database): Promise<Catalog> {
  // The tables as the inserts name them: resolved through the session's search_path. Read on the
  // driver, as the writes it serves: a batch import never loads Prisma's query compiler (bench/RESULTS.md).
  const rows = await directStatement(db).query<{ tables: boolean; keys: string[] }>(Prisma.sql`
    SELECT to_regclass('ps_model_usage') IS NOT NULL AND to_regclass('ps_external_api_usage') IS NOT NULL AS tables,
      ARRAY(
        SELECT rel.relname || '.' || att.attname || '>' || ref.relname
        FROM pg_constraint con
        JOIN pg_class rel ON rel.oid = con.conrelid
        JOIN pg_class ref ON ref.oid = con.confrelid
        JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1]
        WHERE con.contype = 'f' AND cardinality(con.conkey) = 1
          AND con.conrelid IN (to_regclass('ps_model_usage'), to_regclass('ps_external_api_usage'))
      ) AS keys`);
  const guarded = new Set<string>();
  for (const key of rows[0].keys) {
    const [reference, referenced] = key.split(">");
    const column = reference.slice(reference.indexOf(".") + 1) as ReferenceColumn;
    if (REFERENCED_TABLES[column] === referenced) guarded.add(reference);
  }
  return { tables: rows[0].tables, guarded };
}

/** What one record or batch checks in its transaction before it inserts (see {@link checkReferences}). */
export interface ReferenceCheck {
  /** The references without a foreign key that the items name: their existence is checked. */
  readonly unguarded: References;
  /** A `forUser` view's user when the items name an agent or connector (ownership), else null. */
  readonly owner: Owner;
}

function namesAny(items: readonly object[], field: string): boolean {
  for (let i = 0; i < items.length; i++) {
    const v = (items[i] as Record<string, unknown>)[field];
    if (v !== undefined && v !== null) return true;
  }
  return false;
}

/**
 * What a write of `items` into `table` must check itself: the references it names that no
 * foreign key guards, and a view's ownership. Null when there is nothing to check, so the write
 * runs as it is (no transaction, no extra round trip).
 */
export async function planReferenceCheck(
  db: Database,
  table: UsageTable,
  references: References,
  items: readonly OwnedReferences[],
  owner: Owner,
): Promise<ReferenceCheck | null> {
  const { tables, guarded } = await catalogOf(db);
  // Not migrated: the insert itself fails with DatabaseNotMigratedError naming its table.
  const unguarded = tables ? references.filter(([column, field]) => !guarded.has(`${table}.${column}`) && namesAny(items, field)) : [];
  const ownership = owner !== null && namesAgentOrConnector(items) ? owner : null;
  return unguarded.length === 0 && ownership === null ? null : { unguarded, owner: ownership };
}

/** The distinct ids of one field as an `int[]` literal (validated integers: digits and commas only). */
function idsLiteral(items: readonly object[], field: string): string {
  const ids = new Set<number>();
  for (let i = 0; i < items.length; i++) {
    const v = (items[i] as Record<string, unknown>)[field];
    if (typeof v === "number") ids.add(v);
  }
  return `{${[...ids].join(",")}}`;
}

const FIELDS: Record<ReferenceColumn, string> = { model_id: "modelId", external_api_id: "externalApiId", agent_id: "agentId", connector_id: "connectorId" };

/**
 * Runs a {@link ReferenceCheck} in the write's transaction, before the insert, in one query over
 * the tables it needs. It locks the rows it reads as a foreign key check does (`FOR KEY SHARE`),
 * so a referenced row cannot be deleted between the check and the commit; a view's agents and
 * connectors `FOR SHARE`, so they cannot change hands either. Another user's agent or connector
 * is a {@link UsageValidationError} (see {@link refuseOthersReferences}), checked first as
 * before; then the first unknown id, in the references' order and then the items' order, is an
 * {@link UnknownReferenceError} naming its table and id, as the foreign key path names it.
 */
export async function checkReferences(
  session: WriteSession,
  items: readonly OwnedReferences[],
  check: ReferenceCheck,
  batch: boolean,
): Promise<void> {
  const columns = new Set<ReferenceColumn>(check.unguarded.map(([column]) => column));
  if (check.owner !== null) {
    columns.add("agent_id");
    columns.add("connector_id");
  }
  const reads: { column: ReferenceColumn; ids: string; lock: string }[] = [];
  for (const column of columns) {
    const ids = idsLiteral(items, FIELDS[column]);
    if (ids === "{}") continue;
    const owned = check.owner !== null && (column === "agent_id" || column === "connector_id");
    reads.push({ column, ids, lock: owned ? "FOR SHARE" : "FOR KEY SHARE" });
  }
  if (reads.length === 0) return;
  const ctes = Prisma.join(
    reads.map(
      (read, i) =>
        Prisma.sql`${Prisma.raw(`r${i}`)} AS (SELECT id, user_id FROM ${Prisma.raw(REFERENCED_TABLES[read.column])} WHERE id = ANY(${read.ids}::int[]) ${Prisma.raw(read.lock)})`,
    ),
    ", ",
  );
  const selects = Prisma.join(
    reads.map((_, i) => Prisma.sql`SELECT ${i}::int AS read, id, user_id FROM ${Prisma.raw(`r${i}`)}`),
    " UNION ALL ",
  );
  const rows = await session.query<{ read: number; id: number; user_id: number }>(Prisma.sql`WITH ${ctes} ${selects}`);
  const found = new Map<ReferenceColumn, Map<number, number>>(reads.map((read) => [read.column, new Map()]));
  for (const row of rows) found.get(reads[row.read].column)!.set(row.id, row.user_id);

  const none = new Map<number, number>();
  if (check.owner !== null) {
    refuseOthersReferences(items, { agents: found.get("agent_id") ?? none, connectors: found.get("connector_id") ?? none }, check.owner, batch);
  }
  for (const [column, field] of check.unguarded) {
    const present = found.get(column) ?? none;
    for (let i = 0; i < items.length; i++) {
      const id = (items[i] as Record<string, unknown>)[field];
      if (typeof id === "number" && !present.has(id)) throw new UnknownReferenceError(REFERENCED_TABLES[column], id);
    }
  }
}

/**
 * Runs one single-record write of `input` into `table`. When it has something to check (see
 * {@link planReferenceCheck}), the check and the write run in one transaction; otherwise the
 * write runs as it is.
 */
export async function writeChecked<T>(
  db: Database,
  table: UsageTable,
  references: References,
  input: OwnedReferences,
  owner: Owner,
  write: (client: Prisma.TransactionClient) => Promise<T>,
  /** Run `write` in a transaction even with nothing to check (it writes more than one row). */
  transaction = false,
): Promise<T> {
  const check = await planReferenceCheck(db, table, references, [input], owner);
  if (check === null && !transaction) return retryDeadlocks(() => write(db.prisma));
  return prismaWriteTransaction(
    db,
    async (tx) => {
      if (check !== null) await checkReferences(prismaSession(tx), [input], check, false);
      return write(tx);
    },
    60_000,
  );
}
