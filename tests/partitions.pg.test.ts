// Monthly partitions (opt-in, new deployments): partitionMonthly turns the migrated, empty ledger
// into tables partitioned by month with pg_partman; recording (single, batch, keyed), sums and cost
// reports give what the same data gives in an unpartitioned database, the rollups stay exact,
// prune drops a whole month (sums over it unchanged, finds over it empty, its keys gone), and it
// refuses, changing nothing, on a database with usage, on PGlite, and for bad options.
//
// pg_partman is Debian's postgresql-<major>-partman: installed here with apt-get when it is missing
// and this runs as root; where that cannot be done, the tests are skipped with the reason.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  PartitionRefusedError,
  UsageValidationError,
  agentTreeCostReport,
  costReport,
  doctor,
  findExternalApiUsage,
  findModelUsage,
  migrationStatus,
  openDatabase,
  partitionMonthly,
  prune,
  rebuildRollups,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  setExternalApiPrice,
  setModelPrice,
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  type Database,
  type ModelUsageInput,
} from "../src";
import { runCli } from "./support/cli";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { ensurePrisma6, prisma6Schema, REPO_SCHEMA, runPrisma6 } from "./support/prismaMigrate";
import { ADMIN_URL, createScratchDatabase, openScratchPostgres, type ScratchPostgres } from "./support/testDatabase";

function psql(sql: string): { ok: boolean; out: string } {
  const r = spawnSync("psql", [ADMIN_URL, "-Atc", sql], { encoding: "utf8", timeout: 30_000 });
  return { ok: r.status === 0, out: (r.stdout ?? "").trim() || (r.stderr ?? r.error?.message ?? "").trim() };
}

function partmanOrWhyNot(): string | undefined {
  const has = () => psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'");
  let found = has();
  if (!found.ok) return `cannot ask the server at ${ADMIN_URL} for its extensions: ${found.out}`;
  if (found.out === "1") return undefined;
  const major = psql("SELECT current_setting('server_version_num')::int / 10000").out;
  const pkg = `postgresql-${major}-partman`;
  if (process.getuid?.() !== 0) return `pg_partman is missing and installing it needs root (apt-get install ${pkg})`;
  const r = spawnSync("sh", ["-c", `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkg}`], { encoding: "utf8", timeout: 900_000 });
  found = has();
  if (r.status !== 0 || found.out !== "1") return `pg_partman is missing and apt-get install ${pkg} failed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  return undefined;
}

const onPostgres = process.env.PS_USAGE_TEST_BACKEND === "postgres";
const whyNot = onPostgres ? partmanOrWhyNot() : "PostgreSQL only";
if (whyNot && onPostgres) console.warn(`partitions.pg.test.ts skipped: ${whyNot}`);
const withPartman = whyNot ? describe.skip : describe;

const SEP = Date.UTC(2026, 8, 1);
const OCT = Date.UTC(2026, 9, 1);
const HOUR = 3_600_000;

withPartman("a ledger partitioned by month", () => {
  let parted: ScratchPostgres;
  let plain: ScratchPostgres;
  const ids = new Map<Database, { models: number[]; agents: number[]; api: number }>();

  /** The same reference rows, prices and usage in `db` (ids come out the same in both databases). */
  async function fill(db: Database): Promise<void> {
    const models = [await createModel(db, "a"), await createModel(db, "b")];
    const root = await createAgent(db);
    const agents = [root, await createAgent(db, root), await createAgent(db, root)];
    const api = await createExternalApi(db, "search");
    ids.set(db, { models, agents, api });
    await setModelPrice(db, models[0], { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 8 }, new Date(SEP - 86_400_000));
    // A price change on a slot boundary in October (priced from the rollups), one inside a slot in November (row by row).
    await setModelPrice(db, models[0], { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 9 }, new Date(OCT + 10 * 24 * HOUR));
    await setModelPrice(db, models[0], { currency: "USD", costInTokensPerMillion: 4, costOutTokensPerMillion: 9 }, new Date(OCT + 40 * 24 * HOUR + 5 * 60_000));
    await setModelPrice(db, models[1], { currency: "EUR", costInTokensPerMillion: 1, costOutTokensPerMillion: 1 }, new Date(SEP - 86_400_000));
    await setExternalApiPrice(db, api, { unitType: "call", pricePerUnit: "0.003", currency: "USD" }, new Date(SEP - 86_400_000));
    const inputs: ModelUsageInput[] = [];
    for (let i = 0; i < 80 * 24; i++) {
      // One call every hour for 80 days from September 1 (into November), 7 minutes past it.
      inputs.push({ userId: 1 + (i % 2), modelId: models[i % 2], agentId: agents[i % 3], createdAt: new Date(SEP + i * HOUR + 7 * 60_000), tokenInCount: 100 + i, tokenOutCount: 10 + (i % 7) });
    }
    await recordModelUsageBatch(db, inputs);
    await recordExternalApiUsageBatch(db, Array.from({ length: 900 }, (_, i) => ({ userId: 1, externalApiId: api, agentId: agents[i % 3], callCount: 1 + (i % 4), createdAt: new Date(SEP + i * 2 * HOUR) })));
    for (const [i, at] of [SEP + 3 * HOUR, OCT + 5 * HOUR, OCT + 45 * 24 * HOUR].entries()) {
      await recordModelUsage(db, { userId: 3, modelId: models[0], agentId: agents[1], tokenInCount: 1000 + i, createdAt: new Date(at) });
      const keyed = { userId: 3, modelId: models[1], tokenInCount: 50 + i, tokenOutCount: 5, createdAt: new Date(at + 60_000) };
      const first = await recordModelUsage(db, keyed, { idempotencyKey: `key-${i}` });
      expect((await recordModelUsage(db, keyed, { idempotencyKey: `key-${i}` })).id).toBe(first.id);
      await recordExternalApiUsage(db, { userId: 3, externalApiId: api, callCount: 2, createdAt: new Date(at) }, { idempotencyKey: `api-key-${i}` });
    }
  }

  /** Everything the reports say about September to November, in several shapes. */
  async function reports(db: Database) {
    const { agents } = ids.get(db)!;
    const where = { from: new Date(SEP), to: new Date(SEP + 90 * 24 * HOUR) };
    return {
      total: await sumModelUsage(db, { where }),
      byAgentDay: await sumModelUsage(db, { where, groupBy: ["agentId"], bucket: "day", timeZone: "Europe/Berlin" }),
      byUserModelHour: await sumModelUsage(db, { where, groupBy: ["userId", "modelId"], bucket: "month", timeZone: "Asia/Kathmandu" }),
      api: await sumExternalApiUsage(db, { where, groupBy: ["agentId"], bucket: "week", timeZone: "America/New_York" }),
      tree: await sumAgentTreeUsage(db, agents[0], { where }),
      costs: await costReport(db, { where, groupBy: ["modelId", "externalApiId"], bucket: "day", timeZone: "America/St_Johns" }),
      treeCosts: await agentTreeCostReport(db, agents[0], { bucket: "month" }),
    };
  }

  beforeAll(async () => {
    [parted, plain] = [await openScratchPostgres(), await openScratchPostgres()];
  }, 120_000);
  afterAll(async () => {
    await parted?.close();
    await plain?.close();
  });

  test("partitionMonthly partitions the empty ledger; migrate status (ours and Prisma's) still says up to date", async () => {
    const result = await partitionMonthly(parted.db, { startMonth: new Date(SEP + 12 * 86_400_000), premake: 2 });
    expect(result.partmanVersion).toMatch(/^\d+\.\d+/);
    for (const [i, table] of (["ps_model_usage", "ps_external_api_usage"] as const).entries()) {
      expect(result.tables[i]).toMatchObject({ table, changed: true });
      // From the start month to two months ahead of this one, and the default partition.
      expect(result.tables[i].partitions.slice(0, 3)).toEqual([`${table}_p2026_09`, `${table}_p2026_10`, `${table}_p2026_11`]);
      expect(result.tables[i].partitions.at(-1)).toBe(`${table}_default`);
    }
    const { rows: keys } = await parted.admin.query<{ table: string; kind: string; pkey: string }>(
      `SELECT c.relname AS table, c.relkind::text AS kind, pg_get_constraintdef(k.oid) AS pkey
         FROM pg_class c JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'p'
        WHERE c.relname IN ('ps_model_usage', 'ps_external_api_usage') ORDER BY 1`,
    );
    expect(keys).toEqual([
      { table: "ps_external_api_usage", kind: "p", pkey: "PRIMARY KEY (id, created_at)" },
      { table: "ps_model_usage", kind: "p", pkey: "PRIMARY KEY (id, created_at)" },
    ]);
    // The rollup triggers (4 each) and the keys' delete trigger are on the partitioned tables.
    const { rows: triggers } = await parted.admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid IN ('ps_model_usage'::regclass, 'ps_external_api_usage'::regclass) AND NOT tgisinternal`,
    );
    expect(triggers[0].n).toBe(10);
    // Again: nothing to do.
    expect((await partitionMonthly(parted.db)).tables.map((t) => t.changed)).toEqual([false, false]);

    expect(await migrationStatus(parted.db)).toMatchObject({ pending: [], failed: [], modified: [], missing: [] });
    expect((await doctor(parted.db)).healthy).toBe(true);
    await ensurePrisma6();
    const status = await runPrisma6(["migrate", "status"], { databaseUrl: parted.url });
    expect({ code: status.code, upToDate: status.stdout.includes("Database schema is up to date!") }).toEqual({ code: 0, upToDate: true });
    // Prisma's drift check (the database against schema.prisma) does see the changed layout: the
    // composite primary key and the idempotency keys' foreign keys it no longer has.
    // Introspected (db pull from a schema with no models, as tests/drift.pg.test.ts does) and
    // compared with schema.prisma by Prisma's own differ.
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-partitions-"));
    let diff;
    try {
      const bare = path.join(work, "bare.source.prisma");
      fs.writeFileSync(bare, 'datasource db {\n  provider = "postgresql"\n}\n');
      const pull = await runPrisma6(["db", "pull", "--print"], { databaseUrl: parted.url, schema: bare });
      expect({ code: pull.code, stderr: pull.code === 0 ? "" : pull.stderr }).toEqual({ code: 0, stderr: "" });
      const introspected = path.join(work, "introspected.source.prisma");
      fs.writeFileSync(introspected, pull.stdout.slice(pull.stdout.indexOf("datasource db {")));
      diff = await runPrisma6(
        ["migrate", "diff", "--from-schema-datamodel", prisma6Schema(introspected, work, "introspected.prisma"), "--to-schema-datamodel", prisma6Schema(REPO_SCHEMA, work, "repo.prisma"), "--exit-code"],
        { databaseUrl: parted.url },
      );
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    expect({ code: diff.code, stderr: diff.code === 2 ? "" : diff.stderr }).toEqual({ code: 2, stderr: "" });
    // Only the keys: the partitions themselves are not introspected as tables.
    for (const table of ["ps_model_usage", "ps_external_api_usage"]) {
      expect(diff.stdout).toMatch(new RegExp(`Changed the \`${table}\` table\\s+\\[-\\] Dropped the primary key on columns \\(id, created_at\\)\\s+\\[\\+\\] Added primary key on columns \\(id\\)`));
    }
    expect(diff.stdout).toMatch(/Changed the `ps_usage_idempotency_keys` table\s+\[\+\] Added foreign key on columns \(model_usage_id\)\s+\[\+\] Added foreign key on columns \(external_api_usage_id\)/);
    expect(diff.stdout).not.toMatch(/_p2026_|_default/);
  }, 600_000);

  test("the same usage gives the same sums and cost reports as an unpartitioned database, and exact rollups", async () => {
    await fill(parted.db);
    await fill(plain.db);
    const { rows } = await parted.admin.query<{ partition: string; n: number }>(
      `SELECT tableoid::regclass::text AS partition, count(*)::int AS n FROM ps_model_usage GROUP BY 1 ORDER BY 1`,
    );
    expect(rows.map((r) => r.partition)).toEqual(["ps_model_usage_p2026_09", "ps_model_usage_p2026_10", "ps_model_usage_p2026_11"]);
    expect(await reports(parted.db)).toEqual(await reports(plain.db));
    const check = await rebuildRollups(parted.db, { dryRun: true });
    expect([check.modelUsage.differences, check.externalApiUsage.differences]).toEqual([0, 0]);
  });

  test("prune drops September whole: sums over it unchanged, finds over it empty, its keys gone, rollups exact", async () => {
    const before = await reports(parted.db);
    const cutoff = new Date(OCT);
    const dry = await prune(parted.db, { before: cutoff, dryRun: true });
    expect(dry.modelUsage).toMatchObject({ deleted: 30 * 24 + 2, kept: 0, droppedPartitions: ["ps_model_usage_p2026_09"] });
    const cliDry = await runCli(["prune", "--before", "2026-10-01", "--dry-run", "--db", parted.url]);
    expect({ code: cliDry.code, stderr: cliDry.stderr }).toEqual({ code: 0, stderr: "" });
    expect(cliDry.stdout).toContain(`ps_model_usage: would delete ${30 * 24 + 2} row(s) created before 2026-10-01T00:00:00.000Z; would drop ps_model_usage_p2026_09`);
    const done = await prune(parted.db, { before: cutoff });
    expect(done.modelUsage).toEqual({ table: "ps_model_usage", deleted: 30 * 24 + 2, kept: 0, droppedPartitions: ["ps_model_usage_p2026_09"] });
    expect(done.externalApiUsage).toMatchObject({ deleted: 360 + 1, droppedPartitions: ["ps_external_api_usage_p2026_09"] });
    const { rows } = await parted.admin.query<{ m: string | null; a: string | null }>(
      `SELECT to_regclass('ps_model_usage_p2026_09')::text AS m, to_regclass('ps_external_api_usage_p2026_09')::text AS a`,
    );
    expect(rows[0]).toEqual({ m: null, a: null });
    // The unpartitioned database prunes the same rows by deleting them: every report agrees.
    const plainDone = await prune(plain.db, { before: cutoff });
    expect(plainDone.modelUsage).toEqual({ table: "ps_model_usage", deleted: 30 * 24 + 2, kept: 0 });
    const after = await reports(parted.db);
    expect(after).toEqual(before);
    expect(after).toEqual(await reports(plain.db));
    expect((await findModelUsage(parted.db, { to: cutoff })).items).toEqual([]);
    expect((await findExternalApiUsage(parted.db, { to: cutoff })).items).toEqual([]);
    const check = await rebuildRollups(parted.db, { dryRun: true });
    expect(check.modelUsage).toMatchObject({ differences: 0, prunedBefore: cutoff });
    expect(check.externalApiUsage.differences).toBe(0);
    // September's keys went with its partition (a replay records again); October's stay.
    const { rows: keys } = await parted.admin.query<{ key: string }>(`SELECT key FROM ps_usage_idempotency_keys ORDER BY key`);
    expect(keys.map((k) => k.key)).toEqual(["api-key-1", "api-key-2", "key-1", "key-2"]);
    const { models } = ids.get(parted.db)!;
    const replay = await recordModelUsage(parted.db, { userId: 3, modelId: models[1], tokenInCount: 50, tokenOutCount: 5, createdAt: new Date(SEP + 3 * HOUR + 60_000) }, { idempotencyKey: "key-0" });
    expect(replay.tokenInCount).toBe(50);
    // A row deleted by hand takes its key along (the trigger that stands in for the foreign key's cascade).
    const october = await recordModelUsage(parted.db, { userId: 4, modelId: models[0], tokenInCount: 1, createdAt: new Date(OCT + HOUR) }, { idempotencyKey: "delete-me" });
    await parted.admin.query(`DELETE FROM ps_model_usage WHERE id = $1`, [october.id]);
    expect((await parted.admin.query(`SELECT 1 FROM ps_usage_idempotency_keys WHERE key = 'delete-me'`)).rowCount).toBe(0);
  });

  test("a database the application's role migrated, partitioned by a superuser: the role still records and prunes", async () => {
    const role = `ps_usage_part_app_${process.pid}`;
    const scratch = await createScratchDatabase();
    const roleUrl = new URL(scratch.url);
    roleUrl.username = role;
    expect(psql(`CREATE ROLE ${role} LOGIN`).ok).toBe(true);
    expect(psql(`ALTER DATABASE "${scratch.name}" OWNER TO ${role}`).ok).toBe(true);
    const app = await openDatabase({ url: roleUrl.toString(), migrate: true });
    const superuser = await openDatabase({ url: scratch.url });
    try {
      await partitionMonthly(superuser, { startMonth: new Date(SEP), premake: 1 });
      const model = await createModel(app, "m");
      await recordModelUsageBatch(app, [{ userId: 1, modelId: model, tokenInCount: 7, createdAt: new Date(SEP + HOUR) }, { userId: 1, modelId: model, tokenInCount: 9, createdAt: new Date(OCT + HOUR) }]);
      const pruned = await prune(app, { before: new Date(OCT) });
      expect(pruned.modelUsage).toMatchObject({ deleted: 1, droppedPartitions: ["ps_model_usage_p2026_09"] });
      expect((await sumModelUsage(app, {}))[0]).toMatchObject({ events: 2n, tokenInCount: 16n });
      const owners = await superuser.prisma.$queryRawUnsafe<{ owner: string }[]>(
        `SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname LIKE 'ps_model_usage%' AND relkind IN ('r', 'p')`,
      );
      expect(owners).toEqual([{ owner: role }]);
    } finally {
      await app.close();
      await superuser.close();
      await scratch.drop();
      psql(`DROP ROLE IF EXISTS ${role}`);
    }
  }, 120_000);

  test("refusals change nothing: a database with usage, PGlite, bad options; the CLI partitions a new database", async () => {
    const refused = await partitionMonthly(plain.db).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PartitionRefusedError);
    expect(refused).toMatchObject({ code: "PS_USAGE_PARTITION_REFUSED", reason: "not-empty" });
    expect((refused as Error).message).toContain("ps_model_usage");
    const { rows } = await plain.admin.query<{ kind: string; ext: number }>(
      `SELECT relkind::text AS kind, (SELECT count(*)::int FROM pg_extension WHERE extname = 'pg_partman') AS ext FROM pg_class WHERE relname = 'ps_model_usage'`,
    );
    expect(rows[0]).toEqual({ kind: "r", ext: 0 });

    const embedded = await openDatabase({ dataDir: "memory://", migrate: true });
    try {
      await expect(partitionMonthly(embedded)).rejects.toMatchObject({ name: "PartitionRefusedError", reason: "pglite" });
    } finally {
      await embedded.close();
    }

    const bad = await partitionMonthly(parted.db, { premake: 0, startMonth: "2026-09" as unknown as Date, monthly: true } as never).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(UsageValidationError);
    expect((bad as UsageValidationError).issues.map((i) => i.field).sort()).toEqual(["monthly", "premake", "startMonth"]);

    const fresh = await openScratchPostgres();
    try {
      const cli = await runCli(["partition", "--monthly", "--start", "2026-09-01", "--premake", "1", "--db", fresh.url]);
      expect({ code: cli.code, stderr: cli.stderr }).toEqual({ code: 0, stderr: "" });
      expect(cli.stdout).toContain("ps_model_usage: partitioned by month");
      expect(cli.stdout).toContain("run_maintenance()");
      const again = await runCli(["partition", "--monthly", "--db", fresh.url]);
      expect(again.stdout).toContain("ps_model_usage: already partitioned");
      const noLayout = await runCli(["partition", "--db", fresh.url]);
      expect(noLayout.code).toBe(2);
    } finally {
      await fresh.close();
    }
  }, 120_000);
});
