// Adopting a database that already holds PolicySynth's tables without a migration history.
// Here the tables are made from the init migration's own SQL and then changed the way
// PolicySynth's Sequelize sync() makes them differ (no database defaults on the timestamps, no
// foreign key on model_id / external_api_id, no created_at index, indexes of its own), so the
// same file runs on PGlite and PostgreSQL. tests/adoptPolicySynth.pg.test.ts adopts a database
// that Sequelize itself built.
import { adopt, migrate, migrationStatus, readMigrations, recordModelUsage, recordExternalApiUsage, MigrationError, SchemaMismatchError, UnknownReferenceError, UsageValidationError, type Database } from "../src";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";
import { createCliDatabase, runCli } from "./support/cli";
import { doctor } from "../src";

const [init, ...later] = readMigrations();

let t: TestDatabase;
let db: Database;
beforeEach(async () => {
  t = await openTestDatabase({ migrate: false });
  db = t.db;
});
afterEach(async () => {
  await t.dispose();
});

const sql = (text: string) => db.driver.exec(text);
const one = async <T>(text: string): Promise<T> => (await db.driver.query<T>(text))[0];

/** The init migration's tables, made without history and changed as Sequelize's sync() leaves them. */
async function policySynthLikeTables(): Promise<void> {
  await sql(init.sql);
  await sql(`
    ALTER TABLE ps_model_usage ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
    ALTER TABLE ps_external_api_usage ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
    ALTER TABLE ps_ai_models ALTER COLUMN uuid DROP DEFAULT;
    ALTER TABLE ps_model_usage DROP CONSTRAINT ps_model_usage_model_id_fkey;
    ALTER TABLE ps_external_api_usage DROP CONSTRAINT ps_external_api_usage_external_api_id_fkey;
    DROP INDEX ps_model_usage_created_at_id;
    CREATE INDEX ps_agents_user_id ON ps_agents (user_id);
    INSERT INTO ps_ai_models (uuid, user_id, name) VALUES ('7d0c4d5e-1b7a-4c52-9d0e-111111111111', 1, 'gpt-4o');
    INSERT INTO ps_external_apis (user_id, type) VALUES (1, 'search');
    INSERT INTO ps_model_usage (user_id, created_at, updated_at, model_id, token_in_count, token_out_count)
      VALUES (1, '2026-01-05T10:00:00Z', '2026-01-09T10:00:00Z', 1, 1000, 200),
             (1, '2026-01-06T10:00:00Z', '2026-01-06T10:00:00Z', 42, 5, 5);
    INSERT INTO ps_external_api_usage (user_id, created_at, updated_at, external_api_id, call_count)
      VALUES (1, '2026-01-05T10:00:00Z', '2026-01-05T10:00:00Z', 1, 3);
  `);
}

const SIX = ["ps_ai_models", "ps_external_apis", "ps_agents", "ps_agent_connectors", "ps_model_usage", "ps_external_api_usage"];

/** The columns the six tables have now (later migrations add some, with defaults, to ps_model_usage). */
async function columnsNow(): Promise<Record<string, string[]>> {
  const rows = await db.driver.query<{ t: string; c: string }>(
    `SELECT table_name AS t, column_name AS c FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1::text[]) ORDER BY table_name, ordinal_position`,
    [SIX],
  );
  const out: Record<string, string[]> = {};
  for (const r of rows) (out[r.t] ??= []).push(r.c);
  return out;
}

/** Every row of the six tables (those columns of them), as text in id order: what adoption must never change. */
async function rowsChecksum(columns: Record<string, string[]>): Promise<string> {
  const parts: string[] = [];
  for (const table of SIX) {
    const row = `ROW(${columns[table].map((c) => `t."${c}"`).join(", ")})::text`;
    const r = await one<{ m: string | null }>(`SELECT md5(string_agg(${row}, '|' ORDER BY t.id)) AS m FROM ${table} t`);
    parts.push(`${table}:${r.m}`);
  }
  return parts.join(" ");
}

/** The catalog of the six tables (columns with defaults, indexes, constraints) as text. */
async function catalogText(): Promise<string> {
  const r = await one<{ c: string }>(`
    SELECT concat_ws(E'\\n',
      (SELECT string_agg(c.relname || '.' || a.attname || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-'), E'\\n' ORDER BY 1)
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relname LIKE 'ps\\_%' AND c.relkind = 'r'),
      (SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid WHERE c.relname LIKE 'ps\\_%'),
      (SELECT string_agg(conname || convalidated::text, ',' ORDER BY 1) FROM pg_constraint WHERE conrelid::regclass::text LIKE 'ps\\_%'),
      (SELECT coalesce(to_regclass('_prisma_migrations')::text, 'no history'))) AS c`);
  return r.c;
}

test("migrate refuses a database that holds the tables without a history, naming adopt, and changes nothing", async () => {
  await policySynthLikeTables();
  const before = await catalogText();
  const err = await migrate(db).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MigrationError);
  expect((err as Error).message).toContain("already holds ps_agent_connectors, ps_agents, ps_ai_models, ps_external_api_usage, ps_external_apis, ps_model_usage without a migration history");
  expect((err as Error).message).toContain("ps-usage adopt");
  expect(await catalogText()).toBe(before);
  expect(await one<{ t: string | null }>(`SELECT to_regclass('_prisma_migrations')::text AS t`)).toEqual({ t: null });

  const status = await migrationStatus(db);
  expect(status.unmanagedTables).toEqual(["ps_agent_connectors", "ps_agents", "ps_ai_models", "ps_external_api_usage", "ps_external_apis", "ps_model_usage"]);
  expect(status.pending).toEqual([init.name, ...later.map((m) => m.name)]);
});

test("bad options are refused, naming each field, before anything is read or changed", async () => {
  await policySynthLikeTables();
  const before = await catalogText();
  // lock_timeout is spliced into SET LOCAL: anything but a whole number of milliseconds must never reach it.
  const bad = { lockTimeoutMs: "1ms'; DROP TABLE ps_agents; --", dryRun: "yes", lockTimeout: 5 } as unknown as Parameters<typeof adopt>[1];
  const err = await adopt(db, bad).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UsageValidationError);
  const issues = (err as UsageValidationError).issues.map((i) => i.field).sort();
  expect(issues).toEqual(["dryRun", "lockTimeout", "lockTimeoutMs"]);
  expect((err as Error).message).toContain("whole number of milliseconds");
  for (const lockTimeoutMs of [0, -5, 1.5, Number.NaN, 2 ** 31]) {
    const e = await adopt(db, { lockTimeoutMs }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UsageValidationError);
    expect((e as UsageValidationError).issues.map((i) => i.field)).toEqual(["lockTimeoutMs"]);
  }
  expect(await catalogText()).toBe(before);
  expect(await one<{ t: string | null }>(`SELECT to_regclass('_prisma_migrations')::text AS t`)).toEqual({ t: null });
});

test("a dry run reports the differences and the SQL, and changes nothing", async () => {
  await policySynthLikeTables();
  const before = await catalogText();
  const plan = await adopt(db, { dryRun: true });
  expect(await catalogText()).toBe(before);

  expect(plan).toMatchObject({ state: "unmanaged", dryRun: true, baselined: [init.name], migrations: later.map((m) => m.name) });
  const byKind = (kind: string) => plan.differences.filter((d) => d.kind === kind).map((d) => `${d.table}.${d.object}:${d.effect}`);
  expect(byKind("missing-default")).toEqual([
    "ps_ai_models.uuid:adds",
    "ps_model_usage.created_at:adds",
    "ps_model_usage.updated_at:adds",
    "ps_external_api_usage.created_at:adds",
    "ps_external_api_usage.updated_at:adds",
  ]);
  expect(byKind("missing-index")).toEqual(["ps_model_usage.ps_model_usage_created_at_id:adds"]);
  expect(byKind("extra-index")).toEqual(["ps_agents.ps_agents_user_id:keeps"]);
  expect(byKind("missing-foreign-key")).toEqual(["ps_model_usage.ps_model_usage_model_id_fkey:adds", "ps_external_api_usage.ps_external_api_usage_external_api_id_fkey:adds"]);
  expect(plan.orphans).toEqual([
    { table: "ps_model_usage", column: "model_id", references: "ps_ai_models", rows: 1, sampleIds: [42] },
    { table: "ps_external_api_usage", column: "external_api_id", references: "ps_external_apis", rows: 0, sampleIds: [] },
  ]);
  const script = plan.steps.map((s) => s.sql).join("\n");
  expect(script).toContain('CREATE INDEX CONCURRENTLY "ps_model_usage_created_at_id" ON "ps_model_usage"("created_at", "id");');
  expect(script).toContain('ALTER TABLE "ps_model_usage" ALTER COLUMN "created_at" SET DEFAULT CURRENT_TIMESTAMP;');
  expect(script).toContain('ADD CONSTRAINT "ps_model_usage_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "ps_ai_models"("id") ON DELETE RESTRICT ON UPDATE CASCADE NOT VALID;');
  // Only the key with no orphans is validated.
  expect(script).toContain('ALTER TABLE "ps_external_api_usage" VALIDATE CONSTRAINT "ps_external_api_usage_external_api_id_fkey";');
  expect(script).not.toContain('VALIDATE CONSTRAINT "ps_model_usage_model_id_fkey"');
});

test("adopt adds what is missing without changing a row, records the baseline as Prisma does, and new rows are protected", async () => {
  await policySynthLikeTables();
  const columns = await columnsNow();
  const rowsBefore = await rowsChecksum(columns);
  const result = await adopt(db);
  expect(result).toMatchObject({ state: "unmanaged", dryRun: false, baselined: [init.name], migrations: later.map((m) => m.name) });
  expect(await rowsChecksum(columns)).toBe(rowsBefore);

  const status = await migrationStatus(db);
  expect({ pending: status.pending, unmanaged: status.unmanagedTables, applied: status.applied.map((m) => m.name) }).toEqual({
    pending: [],
    unmanaged: [],
    applied: [init.name, ...later.map((m) => m.name)],
  });
  // `prisma migrate resolve --applied` writes started = finished and 0 applied steps.
  expect(await one(`SELECT checksum, applied_steps_count, finished_at = started_at AS same, logs FROM _prisma_migrations WHERE migration_name = '${init.name}'`)).toEqual({
    checksum: init.checksum,
    applied_steps_count: 0,
    same: true,
    logs: null,
  });
  expect(await one(`SELECT conname, convalidated FROM pg_constraint WHERE conname = 'ps_model_usage_model_id_fkey'`)).toEqual({ conname: "ps_model_usage_model_id_fkey", convalidated: false });
  expect(await one(`SELECT convalidated FROM pg_constraint WHERE conname = 'ps_external_api_usage_external_api_id_fkey'`)).toEqual({ convalidated: true });
  expect(await one(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'ps_model_usage_created_at_id'::regclass`)).toEqual({ indisvalid: true });
  expect(await one(`SELECT to_regclass('ps_agents_user_id')::text AS kept`)).toEqual({ kept: "ps_agents_user_id" });

  // The package works on it, and the added keys refuse new orphans.
  const row = await recordModelUsage(db, { userId: 1, modelId: 1, tokenInCount: 7 });
  expect(row.updatedAt.getTime()).toBe(row.createdAt.getTime());
  await expect(recordModelUsage(db, { userId: 1, modelId: 999, tokenInCount: 7 })).rejects.toBeInstanceOf(UnknownReferenceError);
  await expect(recordExternalApiUsage(db, { userId: 1, externalApiId: 999, callCount: 1 })).rejects.toBeInstanceOf(UnknownReferenceError);

  // Adopting again, or migrating, finds nothing to do.
  expect(await adopt(db)).toMatchObject({ state: "managed", migrations: [], steps: [] });
  expect(await migrate(db)).toEqual({ applied: [] });
});

test("adopt refuses, changing nothing, when a difference would break the package", async () => {
  await policySynthLikeTables();
  await sql(`
    ALTER TABLE ps_model_usage DROP COLUMN token_in_cache_write_count;
    ALTER TABLE ps_external_api_usage ALTER COLUMN call_count TYPE bigint;
    ALTER TABLE ps_model_usage ADD COLUMN tenant_id integer NOT NULL DEFAULT 1, ADD COLUMN shard integer DEFAULT 0;
    ALTER TABLE ps_model_usage ALTER COLUMN shard SET NOT NULL, ALTER COLUMN shard DROP DEFAULT;`);
  const before = await catalogText();
  const err = await adopt(db).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SchemaMismatchError);
  expect((err as SchemaMismatchError).differences.map((d) => d.detail)).toEqual([
    "column ps_model_usage.token_in_cache_write_count (integer) is missing",
    "column ps_model_usage.shard is NOT NULL without a default: ps-usage's inserts cannot fill it",
    "column ps_external_api_usage.call_count is bigint; ps-usage needs integer",
  ]);
  expect((err as Error).message).toContain("Nothing was changed");
  expect(await catalogText()).toBe(before);
  // A dry run says the same.
  await expect(adopt(db, { dryRun: true })).rejects.toBeInstanceOf(SchemaMismatchError);
});

test("adopt on an empty database is migrate; a missing table is created", async () => {
  expect(await adopt(db)).toMatchObject({ state: "empty", migrations: [init.name, ...later.map((m) => m.name)] });
  await t.dispose();
  t = await openTestDatabase({ migrate: false });
  db = t.db;
  await policySynthLikeTables();
  await sql(`DROP TABLE ps_external_api_usage`);
  const result = await adopt(db);
  expect(result.differences.filter((d) => d.effect !== "keeps").map((d) => d.kind)).toContain("missing-table");
  expect(await one(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'ps_external_api_usage'`)).toEqual({ n: 6 });
  expect((await migrationStatus(db)).pending).toEqual([]);
});

test("an index left INVALID by an interrupted concurrent build is built again", async () => {
  await policySynthLikeTables();
  // What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
  await sql(`CREATE INDEX ps_model_usage_created_at_id ON ps_model_usage (created_at, id);
             UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ps_model_usage_created_at_id'::regclass`);
  const plan = await adopt(db, { dryRun: true });
  expect(plan.differences.filter((d) => d.kind === "invalid-index").map((d) => d.object)).toEqual(["ps_model_usage_created_at_id"]);
  await adopt(db);
  expect(await one(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'ps_model_usage_created_at_id'::regclass`)).toEqual({ indisvalid: true });
});

test("doctor reports rows changed after they were written, orphans and missing keys, before and after adoption", async () => {
  await policySynthLikeTables();
  const before = await doctor(db);
  expect(before.healthy).toBe(false);
  expect(before.migrations.unmanagedTables).toHaveLength(6);
  // Row 1 was written on 5 January and grown on the 9th (updated_at moved): 1,200 tokens dated the 5th.
  expect(before.changedRows).toEqual([
    { table: "ps_model_usage", rows: 1, sampleIds: [1], earliestCreatedAt: new Date("2026-01-05T10:00:00Z"), units: "1200" },
    { table: "ps_external_api_usage", rows: 0, sampleIds: [], earliestCreatedAt: null, units: "0" },
  ]);
  expect(before.missingForeignKeys).toEqual(["ps_model_usage_model_id_fkey", "ps_external_api_usage_external_api_id_fkey"]);
  expect(before.orphans.map((o) => [o.table, o.column, o.rows, o.sampleIds])).toEqual([
    ["ps_model_usage", "model_id", 1, [42]],
    ["ps_external_api_usage", "external_api_id", 0, []],
  ]);
  // A tolerance above the 4 days skips it.
  expect((await doctor(db, { toleranceMs: 5 * 86_400_000 })).changedRows[0].rows).toBe(0);

  await adopt(db);
  const after = await doctor(db);
  expect({ missing: after.missingForeignKeys, unvalidated: after.unvalidatedForeignKeys, pending: after.migrations.pending }).toEqual({
    missing: [],
    unvalidated: ["ps_model_usage_model_id_fkey"],
    pending: [],
  });
  // The package's own rows are written with updated_at = created_at: never reported.
  await recordModelUsage(db, { userId: 1, modelId: 1, tokenInCount: 5, createdAt: new Date("2025-03-01T00:00:00Z") });
  expect((await doctor(db)).changedRows[0]).toMatchObject({ rows: 1, sampleIds: [1] });
});

test("ps-usage migrate refuses, adopt --dry-run shows the SQL, adopt takes it over, doctor exits 1 on findings", async () => {
  const target = await createCliDatabase("ps-usage-adopt-cli-");
  try {
    await target.withDb(async (other) => {
      const prev = db;
      db = other;
      try {
        await policySynthLikeTables();
      } finally {
        db = prev;
      }
    }, { migrate: false });
    const refused = await runCli(["migrate", "--db", target.arg]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("ps-usage adopt");
    const status = await runCli(["status", "--db", target.arg]);
    expect(status.stdout).toContain("without a migration history");
    expect(status.stdout).not.toContain("up to date");

    const dry = await runCli(["adopt", "--dry-run", "--db", target.arg]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('CREATE INDEX CONCURRENTLY "ps_model_usage_created_at_id"');
    expect(dry.stdout).toContain("nothing was changed");
    expect(dry.stdout).toContain("1 row(s) of ps_model_usage have a model_id with no ps_ai_models row (e.g. 42)");
    expect((await runCli(["status", "--db", target.arg])).stdout).toContain("without a migration history");

    const done = await runCli(["adopt", "--db", target.arg]);
    expect(done.code).toBe(0);
    expect(done.stdout).toContain(`Recorded ${init.name} as applied`);
    expect((await runCli(["status", "--db", target.arg])).stdout).toContain("Database schema is up to date.");

    const checked = await runCli(["doctor", "--db", target.arg]);
    expect(checked.code).toBe(1);
    expect(checked.stdout).toContain("ps_model_usage: 1 row(s) were changed after they were written");
    const json = await runCli(["doctor", "--json", "--db", target.arg]);
    expect(JSON.parse(json.stdout)).toMatchObject({ healthy: false, unvalidatedForeignKeys: ["ps_model_usage_model_id_fkey"] });
  } finally {
    await target.drop();
  }
});

test("a later migration whose table PolicySynth already made (ps_model_usage_item) is taken over too", async () => {
  await migrate(db);
  // As a database adopted before the package mirrored ps_model_usage_item, where PolicySynth's
  // start-up had created it: the table is there, its migration is not recorded.
  const item = later.find((m) => m.sql.includes('CREATE TABLE "ps_model_usage_item"'))!;
  await sql(`DELETE FROM _prisma_migrations WHERE migration_name = '${item.name}'`);
  await sql(`INSERT INTO ps_model_usage_item (user_id, model_id, agent_id, data) VALUES (1, 1, 1, '{"accountingVersion": 1}')`);
  const err = await migrate(db).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MigrationError);
  expect((err as Error).message).toContain("already holds ps_model_usage_item without a migration history");
  expect((await migrationStatus(db)).unmanagedTables).toEqual(["ps_model_usage_item"]);

  const result = await adopt(db);
  expect(result).toMatchObject({ state: "unmanaged", baselined: [item.name], migrations: [] });
  expect(result.differences).toEqual([]);
  expect((await migrationStatus(db)).pending).toEqual([]);
  expect(await one(`SELECT count(*)::int AS n FROM ps_model_usage_item`)).toEqual({ n: 1 });
});
