/**
 * Taking over a database that already holds PolicySynth's tables (made by its Sequelize
 * `sync()`, or by hand) without a migration history: Prisma's "baselining", done for the user.
 *
 * The expected shape is not a hand-kept list: the first migration's own SQL is run in a
 * throwaway schema of the same server, inside a transaction that is rolled back, and its catalog
 * is compared with the existing tables'. What the package needs and the database lacks is added
 * without touching a row (indexes built concurrently, defaults, foreign keys `NOT VALID`);
 * what would break the package is refused with the list; what PolicySynth has beyond the
 * package (its own indexes and columns) is left alone and reported.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { Database, SqlSession } from "../db";
import { MigrationError, PsUsageError, UsageValidationError, type FieldIssue } from "../errors";
import { checkLockTimeoutMs } from "../db/sessionSettings";
import { checkOptionNames } from "../usageSql";
import { forgetGuardedReferences } from "../ledger/references";
import { isLockNotGranted } from "../usageShared";
import { readCatalog, currentSchema, type Catalog, type CatalogColumn } from "./catalog";
import {
  applyPending,
  CREATE_MIGRATIONS_TABLE,
  readMigrations,
  refuseBrokenHistory,
  statusOn,
  tablesCreatedBy,
  withMigrationLock,
  type MigrateOptions,
  type MigrationFile,
} from "./migrate";

/** How one object of the existing database differs from what the first migration creates. */
export interface SchemaDifference {
  readonly table: string;
  /** The column, index or constraint concerned, when there is one. */
  readonly object?: string;
  readonly kind:
    | "missing-table"
    | "missing-column"
    | "column-type"
    | "nullable-column"
    | "not-null-column"
    | "missing-default"
    | "other-default"
    | "extra-column"
    | "missing-index"
    | "invalid-index"
    | "renamed-index"
    | "extra-index"
    | "missing-primary-key"
    | "missing-foreign-key"
    | "other-foreign-key"
    | "unvalidated-foreign-key";
  /**
   * `blocks`: the package cannot work on it, adoption is refused. `adds`: adoption adds what is
   * missing. `keeps`: left as it is (Prisma Migrate will see it as a difference from the schema).
   */
  readonly effect: "blocks" | "adds" | "keeps";
  readonly detail: string;
}

/** One statement adoption runs, with what it locks. */
export interface AdoptionStep {
  readonly sql: string;
  readonly why: string;
  /** "no write lock" for concurrent index builds and validation; otherwise a short catalog-only lock. */
  readonly locks: string;
}

/** Rows whose reference does not exist (possible where a foreign key was missing). */
export interface OrphanCount {
  readonly table: string;
  readonly column: string;
  readonly references: string;
  readonly rows: number;
  /** Up to 10 of the missing ids, smallest first. */
  readonly sampleIds: readonly number[];
}

/** What {@link adopt} found and did (or, with `dryRun`, would do). */
export interface AdoptionResult {
  readonly target: string;
  /**
   * `unmanaged`: the tables exist without history (what adoption is for). `empty`: none of
   * them exist, so adoption is plain {@link migrate}. `managed`: already migrated or adopted.
   */
  readonly state: "unmanaged" | "empty" | "managed";
  readonly differences: readonly SchemaDifference[];
  /** The statements, in order: concurrent index builds, then one transaction, then validations. */
  readonly steps: readonly AdoptionStep[];
  /** Existing rows that a missing foreign key would reject: kept, and the key is left `NOT VALID`. */
  readonly orphans: readonly OrphanCount[];
  /**
   * Migrations whose tables existed, recorded as applied as `prisma migrate resolve --applied`
   * does (the first one, and a later one such as `ps_model_usage_item`'s when PolicySynth made it).
   */
  readonly baselined: readonly string[];
  /** Migrations applied (or that would be), as `migrate` applies them. */
  readonly migrations: readonly string[];
  /** True when nothing was changed (`dryRun`). */
  readonly dryRun: boolean;
}

export interface AdoptOptions extends MigrateOptions {
  /** Report the plan and its SQL, change nothing. */
  readonly dryRun?: boolean;
  /**
   * How long the one short transaction (defaults, foreign keys, the baseline row) waits for a
   * table lock before giving up, so that adoption never queues the application's writes behind
   * a long transaction. Default 10 s.
   */
  readonly lockTimeoutMs?: number;
}

/** Adoption refused: the existing tables differ in a way the package cannot work with. Nothing was changed. */
export class SchemaMismatchError extends MigrationError {
  readonly differences: readonly SchemaDifference[];
  constructor(target: string, differences: readonly SchemaDifference[]) {
    super(
      `${target} cannot be adopted: ${differences.length} difference(s) from the tables ps-usage needs would break it. Nothing was changed.\n` +
        differences.map((d) => `  - ${d.detail}`).join("\n"),
    );
    (this as { code: string }).code = "PS_USAGE_SCHEMA_MISMATCH";
    this.differences = differences;
  }
}

/** The two usage tables: the package inserts into them, so their columns must take its inserts. */
const LEDGER_TABLES = new Set(["ps_model_usage", "ps_external_api_usage"]);

/** @internal */
export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** One statement of a migration's SQL and the object it creates. */
interface Statement {
  readonly sql: string;
  readonly kind: "table" | "index" | "foreign-key" | "other";
  readonly table?: string;
  readonly name?: string;
}

/** @internal Splits Prisma's generated SQL (statements end with `;` at a line end; `--` lines are comments). */
export function migrationStatements(file: MigrationFile): Statement[] {
  const text = file.sql
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("--"))
    .join("\n");
  return text
    .split(/;\s*\n/)
    .map((s) => s.trim().replace(/;$/, ""))
    .filter((s) => s.length > 0)
    .map((sql): Statement => {
      let m = /^CREATE TABLE "([^"]+)"/.exec(sql);
      if (m) return { sql, kind: "table", table: m[1], name: m[1] };
      m = /^CREATE (?:UNIQUE )?INDEX "([^"]+)" ON "([^"]+)"/.exec(sql);
      if (m) return { sql, kind: "index", table: m[2], name: m[1] };
      m = /^ALTER TABLE "([^"]+)" ADD CONSTRAINT "([^"]+)" FOREIGN KEY/.exec(sql);
      if (m) return { sql, kind: "foreign-key", table: m[1], name: m[2] };
      return { sql, kind: "other" };
    });
}

/**
 * The catalog `files` create (a migration and those before it), read on this very server: their
 * SQL runs in a throwaway schema inside a transaction that is always rolled back.
 */
async function referenceCatalog(session: SqlSession, files: readonly MigrationFile[], tables: readonly string[]): Promise<Catalog> {
  const schema = `ps_usage_adopt_reference_${randomBytes(6).toString("hex")}`;
  const sql = files
    .flatMap(migrationStatements)
    .filter((s) => !/^CREATE SCHEMA/i.test(s.sql))
    .map((s) => `${s.sql};`)
    .join("\n");
  await session.exec("BEGIN");
  try {
    await session.exec(`CREATE SCHEMA ${quoteIdent(schema)}; SET LOCAL search_path TO ${quoteIdent(schema)};`);
    await session.exec(sql);
    return await readCatalog(session, schema, tables);
  } finally {
    await session.exec("ROLLBACK").catch(() => undefined);
  }
}

const sameDefault = (a: string | null, b: string | null): boolean => {
  const norm = (d: string | null) => (d === null ? null : d.startsWith("nextval(") ? "nextval" : d === "now()" ? "CURRENT_TIMESTAMP" : d);
  return norm(a) === norm(b);
};

async function countNulls(session: SqlSession, table: string, column: string): Promise<number> {
  const rows = await session.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${quoteIdent(table)} WHERE ${quoteIdent(column)} IS NULL`);
  return Number(rows[0].n);
}

/** @internal Rows of `table` whose `column` points at no row of `references`. */
export async function countOrphans(session: SqlSession, table: string, column: string, references: string, referencedColumn: string): Promise<OrphanCount> {
  const rows = await session.query<{ n: string; ids: number[] | null }>(
    `SELECT count(*)::text AS n, (array_agg(DISTINCT c.${quoteIdent(column)} ORDER BY c.${quoteIdent(column)}))[1:10] AS ids
       FROM ${quoteIdent(table)} c
      WHERE c.${quoteIdent(column)} IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM ${quoteIdent(references)} r WHERE r.${quoteIdent(referencedColumn)} = c.${quoteIdent(column)})`,
  );
  return { table, column, references, rows: Number(rows[0].n), sampleIds: (rows[0].ids ?? []).map(Number) };
}

/** `VALIDATE CONSTRAINT` of a foreign key whose existing rows all point somewhere. */
function validateStep(table: string, name: string, column: string): AdoptionStep {
  return {
    sql: `ALTER TABLE ${quoteIdent(table)} VALIDATE CONSTRAINT ${quoteIdent(name)};`,
    why: `check the existing rows of ${table}.${column}`,
    locks: "no write lock (SHARE UPDATE EXCLUSIVE); one scan of the table",
  };
}

interface Plan {
  differences: SchemaDifference[];
  /** CREATE INDEX CONCURRENTLY (and DROP of invalid leftovers), each on its own. */
  concurrent: AdoptionStep[];
  /** One short transaction. */
  transactional: AdoptionStep[];
  /** ALTER TABLE ... VALIDATE CONSTRAINT, each on its own. */
  validations: AdoptionStep[];
  orphans: OrphanCount[];
}

/** Compares the existing tables with the reference and plans what adoption adds. */
async function planAdoption(session: SqlSession, upTo: readonly MigrationFile[]): Promise<Plan> {
  const init = upTo[upTo.length - 1];
  const statements = migrationStatements(init);
  const tables = tablesCreatedBy(init);
  const reference = await referenceCatalog(session, upTo, tables);
  const actual = await readCatalog(session, await currentSchema(session), tables);
  const plan: Plan = { differences: [], concurrent: [], transactional: [], validations: [], orphans: [] };
  const diff = (d: SchemaDifference) => plan.differences.push(d);
  const catalogOnly = "a short ACCESS EXCLUSIVE lock (catalog only, no rewrite)";

  for (const table of tables) {
    if (!actual.tables.has(table)) {
      diff({ table, kind: "missing-table", effect: "adds", detail: `table ${table} does not exist: it is created as the migration creates it` });
      for (const s of statements) {
        if (s.table === table) plan.transactional.push({ sql: `${s.sql};`, why: `create ${s.name} of the missing table ${table}`, locks: "none (a new table)" });
      }
      continue;
    }
    const mine = (cols: readonly CatalogColumn[]) => new Map(cols.filter((c) => c.table === table).map((c) => [c.column, c]));
    const want = mine(reference.columns);
    const have = mine(actual.columns);
    for (const [name, w] of want) {
      const h = have.get(name);
      const at = `${table}.${name}`;
      if (!h) {
        diff({ table, object: name, kind: "missing-column", effect: "blocks", detail: `column ${at} (${w.type}) is missing` });
        continue;
      }
      if (h.type !== w.type) {
        diff({ table, object: name, kind: "column-type", effect: "blocks", detail: `column ${at} is ${h.type}; ps-usage needs ${w.type}` });
        continue;
      }
      if (w.notNull && !h.notNull) {
        const nulls = await countNulls(session, table, name);
        diff({
          table,
          object: name,
          kind: "nullable-column",
          effect: nulls > 0 ? "blocks" : "keeps",
          detail:
            nulls > 0
              ? `column ${at} holds NULL in ${nulls} row(s); ps-usage reads it as NOT NULL`
              : `column ${at} allows NULL (ps-usage declares it NOT NULL; it holds no NULL, and is left as it is)`,
        });
      }
      if (!w.notNull && h.notNull) {
        diff({
          table,
          object: name,
          kind: "not-null-column",
          effect: LEDGER_TABLES.has(table) ? "blocks" : "keeps",
          detail: `column ${at} is NOT NULL; ps-usage lets it be NULL${LEDGER_TABLES.has(table) ? " and records usage without it" : ""}`,
        });
      }
      if (!sameDefault(w.default, h.default)) {
        if (h.default === null && w.default !== null && !w.default.startsWith("nextval(")) {
          diff({ table, object: name, kind: "missing-default", effect: "adds", detail: `column ${at} has no default: DEFAULT ${w.default} is added` });
          plan.transactional.push({
            sql: `ALTER TABLE ${quoteIdent(table)} ALTER COLUMN ${quoteIdent(name)} SET DEFAULT ${w.default};`,
            why: `the default the migration gives ${at}`,
            locks: catalogOnly,
          });
        } else if (w.default !== null && w.default.startsWith("nextval(")) {
          diff({ table, object: name, kind: "missing-default", effect: "blocks", detail: `column ${at} is not an identity/serial column (no nextval default)` });
        } else {
          diff({ table, object: name, kind: "other-default", effect: "keeps", detail: `column ${at} has DEFAULT ${h.default ?? "none"} (the migration's is ${w.default ?? "none"}); left as it is` });
        }
      }
    }
    for (const [name, h] of have) {
      if (want.has(name)) continue;
      const blocks = h.notNull && h.default === null && LEDGER_TABLES.has(table);
      diff({
        table,
        object: name,
        kind: "extra-column",
        effect: blocks ? "blocks" : "keeps",
        detail: blocks
          ? `column ${table}.${name} is NOT NULL without a default: ps-usage's inserts cannot fill it`
          : `column ${table}.${name} is not in ps-usage's schema; left as it is`,
      });
    }

    const haveIndexes = actual.indexes.filter((i) => i.table === table);
    const sameColumns = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((c, i) => c === b[i]);
    for (const w of reference.indexes.filter((i) => i.table === table)) {
      if (w.primary) {
        if (!haveIndexes.some((h) => (h.primary || h.unique) && sameColumns(h.columns, w.columns))) {
          diff({ table, object: w.name, kind: "missing-primary-key", effect: "blocks", detail: `${table} has no primary key on (${w.columns.join(", ")})` });
        }
        continue;
      }
      const byName = haveIndexes.find((h) => h.name === w.name);
      const sql = statements.find((s) => s.kind === "index" && s.name === w.name)!.sql;
      const concurrently = sql.replace(/^CREATE (UNIQUE )?INDEX /, "CREATE $1INDEX CONCURRENTLY ") + ";";
      if (byName && sameColumns(byName.columns, w.columns) && byName.unique === w.unique) {
        if (!byName.valid) {
          diff({ table, object: w.name, kind: "invalid-index", effect: "adds", detail: `index ${w.name} is INVALID (an interrupted concurrent build): it is built again` });
          plan.concurrent.push({ sql: `DROP INDEX CONCURRENTLY ${quoteIdent(w.name)};`, why: `remove the invalid ${w.name}`, locks: "no write lock" });
          plan.concurrent.push({ sql: concurrently, why: `build ${w.name} again`, locks: "no write lock (CONCURRENTLY)" });
        }
        continue;
      }
      const other = haveIndexes.find((h) => h.valid && sameColumns(h.columns, w.columns) && h.unique === w.unique);
      if (other) {
        diff({ table, object: w.name, kind: "renamed-index", effect: "keeps", detail: `index ${w.name} exists as ${other.name}; left as it is (Prisma sees a renamed index)` });
        continue;
      }
      diff({ table, object: w.name, kind: "missing-index", effect: "adds", detail: `index ${w.name} on ${table} (${w.columns.join(", ")}) is missing: built CONCURRENTLY` });
      plan.concurrent.push({ sql: concurrently, why: `the migration's index ${w.name}`, locks: "no write lock (CONCURRENTLY); takes one scan of the table" });
    }
    for (const h of haveIndexes) {
      if (reference.indexes.some((w) => w.table === table && (w.name === h.name || (sameColumns(w.columns, h.columns) && w.unique === h.unique)))) continue;
      diff({ table, object: h.name, kind: "extra-index", effect: "keeps", detail: `index ${h.name} on ${table} (${h.columns.join(", ")}) is not in ps-usage's schema; left as it is` });
    }

    for (const w of reference.foreignKeys.filter((f) => f.table === table)) {
      const onColumns = actual.foreignKeys.filter((f) => f.table === table && sameColumns(f.columns, w.columns));
      const h = onColumns.find((f) => f.references === w.references);
      const column = w.columns[0];
      const elsewhere = h ? undefined : (onColumns[0] ?? actual.foreignKeys.find((f) => f.table === table && f.name === w.name));
      if (elsewhere) {
        // PolicySynth's sync() gives ps_agents.parent_agent_id a key to ps_ai_models (its first
        // association on that column wins). Replacing it would change what PolicySynth enforces.
        diff({
          table,
          object: elsewhere.name,
          kind: "other-foreign-key",
          effect: "keeps",
          detail: `${table}.${elsewhere.columns.join(", ")} has foreign key ${elsewhere.name} "${elsewhere.definition}" where ps-usage's schema has "${w.definition}"; left as it is, and no second key is added`,
        });
        continue;
      }
      if (!h) {
        const orphans = await countOrphans(session, table, column, w.references, w.referencedColumns[0]);
        plan.orphans.push(orphans);
        diff({
          table,
          object: w.name,
          kind: "missing-foreign-key",
          effect: "adds",
          detail:
            `foreign key ${w.name} (${table}.${column} -> ${w.references}) is missing: added NOT VALID, so it checks new rows` +
            (orphans.rows > 0 ? `; ${orphans.rows} existing row(s) point at no ${w.references} row and are kept, so it stays NOT VALID` : ", then validated"),
        });
        const sql = statements.find((s) => s.kind === "foreign-key" && s.name === w.name)!.sql;
        plan.transactional.push({ sql: `${sql} NOT VALID;`, why: `protect new rows of ${table}.${column}`, locks: "a short SHARE ROW EXCLUSIVE lock on both tables (catalog only)" });
        if (orphans.rows === 0) plan.validations.push(validateStep(table, w.name, column));
        continue;
      }
      if (h.definition !== w.definition) {
        diff({ table, object: h.name, kind: "other-foreign-key", effect: "keeps", detail: `foreign key ${h.name} is "${h.definition}" (the migration's: "${w.definition}"); left as it is` });
      }
      if (!h.validated) {
        const orphans = await countOrphans(session, table, column, w.references, w.referencedColumns[0]);
        plan.orphans.push(orphans);
        diff({
          table,
          object: h.name,
          kind: "unvalidated-foreign-key",
          effect: orphans.rows === 0 ? "adds" : "keeps",
          detail: `foreign key ${h.name} is NOT VALID` + (orphans.rows === 0 ? ": validated" : `; ${orphans.rows} row(s) point at no ${w.references} row, so it stays so`),
        });
        if (orphans.rows === 0) plan.validations.push(validateStep(table, h.name, column));
      }
    }
  }
  return plan;
}

/**
 * Takes over a database that already holds PolicySynth's tables without a migration history:
 * compares them with what the first migration creates, refuses with a
 * {@link SchemaMismatchError} (changing nothing) when a difference would break the package,
 * and otherwise adds what is missing without changing a row, records the first migration as
 * applied exactly as `prisma migrate resolve --applied` does, and applies the later migrations.
 * PolicySynth's own indexes and columns stay. On an empty database it is {@link migrate}; on a
 * migrated or adopted one it applies what is pending.
 *
 * Locks: missing indexes are built `CONCURRENTLY` (writes go on); defaults and `NOT VALID`
 * foreign keys are catalog-only changes in one short transaction that waits at most
 * `lockTimeoutMs` for its locks; validation takes no write lock.
 *
 * @example
 * const plan = await adopt(db, { dryRun: true });   // differences, steps and their SQL
 * const done = await adopt(db);                      // { baselined: ["20261125083500_init", …], migrations: [...] }
 */
export async function adopt(db: Database, options: AdoptOptions = {}): Promise<AdoptionResult> {
  const files = readMigrations(options.migrationsDir);
  if (files.length === 0) throw new MigrationError(`No migrations to adopt with in ${options.migrationsDir ?? "the package"}.`);
  // Checked before anything is read: lockTimeoutMs is spliced into SET LOCAL below.
  const issues: FieldIssue[] = [];
  checkOptionNames(options, ["dryRun", "lockTimeoutMs", "migrationsDir"], issues);
  if (options.dryRun !== undefined && typeof options.dryRun !== "boolean") issues.push({ field: "dryRun", reason: `must be true or false, got ${JSON.stringify(options.dryRun)}` });
  const lockTimeoutMs = checkLockTimeoutMs(options.lockTimeoutMs, 10_000, issues);
  if (issues.length > 0) throw new UsageValidationError(issues);
  const dryRun = options.dryRun === true;
  return db.driver.withSession((session) =>
    withMigrationLock(session, async () => {
      const status = await statusOn(session, db.target, files);
      refuseBrokenHistory(db.target, status);
      if (status.unmanagedTables.length === 0) {
        const state = status.pending.includes(files[0].name) ? "empty" : "managed";
        const migrations = dryRun ? [...status.pending] : await applyPending(session, db.target, files, status.pending);
        if (migrations.length > 0 && !dryRun) forgetGuardedReferences(db);
        return { target: db.target, state, differences: [], steps: [], orphans: [], baselined: [], migrations, dryRun };
      }

      // Every pending migration whose tables exist is taken over; the others are applied. All
      // plans are made (and any blocking difference refused) before anything changes.
      const plans = new Map<string, Plan>();
      const unmanaged = new Set(status.unmanagedTables);
      for (const name of status.pending) {
        const index = files.findIndex((f) => f.name === name);
        if (tablesCreatedBy(files[index]).some((t) => unmanaged.has(t))) plans.set(name, await planAdoption(session, files.slice(0, index + 1)));
      }
      const all = [...plans.values()];
      const blocking = all.flatMap((p) => p.differences.filter((d) => d.effect === "blocks"));
      if (blocking.length > 0) throw new SchemaMismatchError(db.target, blocking);

      const steps: AdoptionStep[] = [];
      for (const name of status.pending) {
        const plan = plans.get(name);
        if (!plan) {
          steps.push({ sql: `-- apply migration ${name}`, why: "as migrate does", locks: "as its SQL takes" });
          continue;
        }
        const file = files.find((f) => f.name === name)!;
        steps.push(
          ...plan.concurrent,
          { sql: `BEGIN; SET LOCAL lock_timeout = '${lockTimeoutMs}ms';`, why: "one transaction for the catalog changes and the baseline", locks: "none" },
          ...plan.transactional,
          { sql: CREATE_MIGRATIONS_TABLE, why: "Prisma Migrate's history table, if missing", locks: "none" },
          {
            sql: `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count) VALUES ('<uuid>', '${file.checksum}', now(), '${file.name}', NULL, NULL, now(), 0);`,
            why: `record ${file.name} as applied, as \`prisma migrate resolve --applied\` does`,
            locks: "none",
          },
          { sql: "COMMIT;", why: "", locks: "none" },
          ...plan.validations,
        );
      }
      const baselined = status.pending.filter((n) => plans.has(n));
      const result = {
        target: db.target,
        state: "unmanaged" as const,
        differences: all.flatMap((p) => p.differences),
        steps,
        orphans: all.flatMap((p) => p.orphans),
        baselined,
      };
      if (dryRun) return { ...result, migrations: status.pending.filter((n) => !plans.has(n)), dryRun };

      const migrations: string[] = [];
      for (const name of status.pending) {
        const plan = plans.get(name);
        if (!plan) {
          migrations.push(...(await applyPending(session, db.target, files, [name])));
          continue;
        }
        await takeOver(session, db, files.find((f) => f.name === name)!, plan, lockTimeoutMs);
      }
      return { ...result, migrations, dryRun };
    }),
  );
}

/** Runs one migration's adoption plan and records it as applied. */
async function takeOver(session: SqlSession, db: Database, file: MigrationFile, plan: Plan, lockTimeoutMs: number): Promise<void> {
  for (const step of plan.concurrent) await runStep(session, db.target, step);
  await session.exec("BEGIN");
  try {
    await session.exec(`SET LOCAL lock_timeout = '${lockTimeoutMs}ms'`);
    for (const step of plan.transactional) await session.exec(step.sql);
    await session.exec(CREATE_MIGRATIONS_TABLE);
    await session.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
       VALUES ($1, $2, now(), $3, NULL, NULL, now(), 0)`,
      [randomUUID(), file.checksum, file.name],
    );
    await session.exec("COMMIT");
  } catch (err) {
    await session.exec("ROLLBACK").catch(() => undefined);
    const why = isLockNotGranted(err) ? `a table lock was not granted within ${lockTimeoutMs} ms (a long transaction holds the table; retry when it is done, or raise lockTimeoutMs)` : (err as Error).message;
    throw new MigrationError(`Adopting ${db.target} failed and its transaction was rolled back: ${why}. Indexes built concurrently before it stay; running adopt again continues.`, file.name, { cause: err });
  }
  // The foreign keys just added guard new rows: the record functions rely on them from now on.
  forgetGuardedReferences(db);
  for (const step of plan.validations) await runStep(session, db.target, step);
}

async function runStep(session: SqlSession, target: string, step: AdoptionStep): Promise<void> {
  try {
    await session.exec(step.sql);
  } catch (err) {
    if (err instanceof PsUsageError) throw err;
    throw new MigrationError(`Adopting ${target} failed at \`${step.sql}\` (${step.why}): ${(err as Error).message}. Nothing after it was run; running adopt again continues.`, undefined, { cause: err });
  }
}
