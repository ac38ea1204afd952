// A database that PolicySynth's Sequelize sync() built and PolicySynth's code filled
// (tests/support/policysynthDatabase.ts), adopted as an operator would adopt it: migrate refuses,
// adopt takes it over, real Prisma Migrate (6.19.3, WebAssembly engine) calls it up to date, every
// public function and CLI command works on it, PolicySynth's own models keep working, and no row
// that existed before is changed.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import {
  adopt,
  agentTreeCostReport,
  costReport,
  Decimal,
  doctor,
  findExternalApiUsage,
  findModelUsage,
  forUser,
  migrate,
  migrationStatus,
  MigrationError,
  MODEL_USAGE_COUNTERS,
  openDatabase,
  readMigrations,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelCall,
  recordModelUsage,
  recordModelUsageBatch,
  recordNdjson,
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  syncPricesFromConfiguration,
  UnknownReferenceError,
  type Database,
} from "../src";
import { runCli } from "./support/cli";
import { ensurePrisma6, prisma6Schema, REPO_SCHEMA, runPrisma6 } from "./support/prismaMigrate";
import { createPolicySynthDatabase, fillAsPolicySynth, openPolicySynthModels, tableChecksums, tableColumns, type PolicySynthFill } from "./support/policysynthDatabase";
import { createScratchDatabase } from "./support/testDatabase";

const [init, ...later] = readMigrations();

let url: string;
let drop: () => Promise<void>;
let fill: PolicySynthFill;
let before: Record<string, string>;
/** The columns PolicySynth made: the later migrations add some (with defaults) to ps_model_usage. */
let columns: Record<string, string[]>;
const checksums = () => tableChecksums(url, { maxIds: fill.maxIds, columns });
let db: Database;
let work: string;

beforeAll(async () => {
  await ensurePrisma6();
  const scratch = await createScratchDatabase();
  url = scratch.url;
  drop = scratch.drop;
  await createPolicySynthDatabase(url);
  fill = await fillAsPolicySynth(url, { seed: 3 });
  columns = await tableColumns(url);
  before = await checksums();
  db = await openDatabase({ url });
  work = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-adopt-ps-"));
}, 600_000);
afterAll(async () => {
  await db?.close();
  await drop?.();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const query = <T>(sql: string) => db.driver.query<T>(sql);

test("migrate refuses PolicySynth's database and changes nothing; status names adopt", async () => {
  await expect(migrate(db)).rejects.toThrow(MigrationError);
  await expect(migrate(db)).rejects.toThrow(/ps-usage adopt/);
  expect(await query(`SELECT to_regclass('_prisma_migrations')::text AS t`)).toEqual([{ t: null }]);
  expect((await migrationStatus(db)).unmanagedTables).toHaveLength(7);
  expect(await checksums()).toEqual(before);
});

test("a dry run lists what adoption adds and keeps, blocks nothing, and changes nothing", async () => {
  const plan = await adopt(db, { dryRun: true });
  const of = (effect: string, kind: string) => plan.differences.filter((d) => d.effect === effect && d.kind === kind).map((d) => `${d.table}.${d.object}`);
  expect(plan.differences.filter((d) => d.effect === "blocks")).toEqual([]);
  expect(of("adds", "missing-index")).toEqual(["ps_model_usage.ps_model_usage_created_at_id", "ps_external_api_usage.ps_external_api_usage_created_at_id"]);
  expect(of("adds", "missing-foreign-key")).toEqual(["ps_model_usage.ps_model_usage_model_id_fkey", "ps_external_api_usage.ps_external_api_usage_external_api_id_fkey"]);
  // Sequelize's defaults live in JavaScript: every timestamp, uuid and JSON default is added.
  expect(of("adds", "missing-default")).toHaveLength(6 * 2 + 4 + 4);
  // PolicySynth's key from parent_agent_id to ps_ai_models is left as it is.
  expect(of("keeps", "other-foreign-key")).toEqual(["ps_agents.ps_agents_parent_agent_id_fkey"]);
  expect(of("keeps", "not-null-column")).toEqual(["ps_ai_models.organization_id", "ps_external_apis.organization_id"]);
  expect(of("keeps", "renamed-index")).toHaveLength(4); // <table>_uuid, the package's <table>_uuid_key
  expect(of("keeps", "extra-index").length).toBeGreaterThan(0);
  expect(plan.orphans.every((o) => o.rows === 0)).toBe(true);
  expect(await query(`SELECT to_regclass('_prisma_migrations')::text AS t`)).toEqual([{ t: null }]);
  expect(await checksums()).toEqual(before);
});

test("adopt takes it over; real Prisma Migrate calls it up to date and sees only PolicySynth's extras", async () => {
  const result = await adopt(db);
  const item = later.find((m) => m.sql.includes('CREATE TABLE "ps_model_usage_item"'))!;
  // PolicySynth's ps_model_usage_item is the package's too: taken over, not created.
  expect(result).toMatchObject({ state: "unmanaged", baselined: [init.name, item.name], migrations: later.filter((m) => m !== item).map((m) => m.name) });
  expect(await checksums()).toEqual(before);

  const status = await runPrisma6(["migrate", "status"], { databaseUrl: url });
  expect({ code: status.code, upToDate: status.stdout.includes("Database schema is up to date!") }).toEqual({ code: 0, upToDate: true });

  // Drift: the database as Prisma introspects it, against schema.prisma.
  const bare = path.join(work, "bare.source.prisma");
  fs.writeFileSync(bare, 'datasource db {\n  provider = "postgresql"\n}\n');
  const pull = await runPrisma6(["db", "pull", "--print"], { databaseUrl: url, schema: bare });
  expect(pull.code).toBe(0);
  const introspected = path.join(work, "introspected.source.prisma");
  fs.writeFileSync(introspected, pull.stdout.slice(pull.stdout.indexOf("datasource db {")));
  const diff = await runPrisma6(
    ["migrate", "diff", "--from-schema-datamodel", prisma6Schema(introspected, work, "introspected.prisma"), "--to-schema-datamodel", prisma6Schema(REPO_SCHEMA, work, "repo.prisma"), "--exit-code"],
    { databaseUrl: url },
  );
  expect(diff.code).toBe(2);
  // What Prisma sees is PolicySynth's own and nothing else: its other tables, its indexes and
  // keys on the four neighbour tables, its uuid index names, NOT NULL organization ids, and its
  // parent_agent_id key to ps_ai_models. The usage tables and the package's tables match exactly.
  const changed = [...diff.stdout.matchAll(/Changed the `([^`]+)` table/g)].map((m) => m[1]).sort();
  expect(changed).toEqual(["ps_agent_classes", "ps_agent_connector_classes", "ps_agent_connectors", "ps_agents", "ps_ai_models", "ps_external_apis"]);
  expect(diff.stdout).toMatch(/\[-\] Removed tables\s+- groups\s+- ps_agent_classes\s+- ps_agent_connector_classes\s+- users\s/);
  const lines = diff.stdout.split("\n").map((l) => l.trim()).filter((l) => /^\[[-+*]\]/.test(l) && !/^\[[-+*]\] (Removed tables|Changed the)/.test(l));
  const kinds = new Set(lines.map((l) => l.replace(/\(.*\)|`[^`]*`/g, "…")));
  expect([...kinds].sort()).toEqual([
    "[*] Altered column … …",
    "[*] Renamed index … to …",
    "[+] Added foreign key on columns …",
    "[-] Removed foreign key on columns …",
    "[-] Removed index on columns …",
  ]);
  expect(lines.filter((l) => l.startsWith("[+]") || l.startsWith("[*] Altered"))).toEqual([
    "[+] Added foreign key on columns (parent_agent_id)",
    "[*] Altered column `organization_id` (changed from Required to Nullable)",
    "[*] Altered column `organization_id` (changed from Required to Nullable)",
  ]);
  expect(diff.stdout).not.toMatch(/ps_model_usage`|ps_external_api_usage`|ps_usage_idempotency_keys|price_periods/);
});

test("every read works on it and equals what PolicySynth wrote", async () => {
  const [total] = await sumModelUsage(db);
  for (const [field, ] of MODEL_USAGE_COUNTERS) expect(total[field]).toBe(fill.modelUsage.total[field]);
  expect(total.events).toBe(fill.modelUsage.total.events);
  const byModel = await sumModelUsage(db, { groupBy: ["modelId"] });
  expect(byModel.map((r) => [r.modelId, r.tokenInCount])).toEqual([...fill.modelUsage.byModel].sort((a, b) => a[0] - b[0]).map(([id, t]) => [id, t.tokenInCount]));
  // Per agent, every counter; PolicySynth's rows have no web searches (the column's default).
  const byAgent = await sumModelUsage(db, { groupBy: ["agentId"] });
  expect(new Map(byAgent.map((r) => [r.agentId, [r.events, ...MODEL_USAGE_COUNTERS.map(([field]) => r[field]), r.webSearchCount]]))).toEqual(
    new Map([...fill.modelUsage.byAgent].map(([agentId, t]) => [agentId, [t.events, ...MODEL_USAGE_COUNTERS.map(([field]) => t[field] ?? 0n), 0n]])),
  );
  const [apiTotal] = await sumExternalApiUsage(db);
  expect(apiTotal.callCount).toBe(fill.externalApiUsage.total.callCount);

  const tree = await sumAgentTreeUsage(db, fill.rootAgentId);
  const inTree = new Set(tree.agents.map((a) => a.agentId));
  let tokens = 0n;
  for (const [agentId, t] of fill.modelUsage.byAgent) if (agentId !== null && inTree.has(agentId)) tokens += t.tokenInCount;
  expect(tree.total.modelUsage.tokenInCount).toBe(tokens);
  expect(tree.agents.length).toBeGreaterThan(3);

  const page = await findModelUsage(db, {}, { limit: 1000 });
  expect(page.items.length).toBe(Number(fill.modelUsage.total.events));
  expect((await findExternalApiUsage(db, {}, { limit: 1000 })).items.length).toBe(Number(fill.externalApiUsage.total.events));
});

test("prices sync from PolicySynth's configuration and costs follow PolicySynth's rules", async () => {
  const synced = await syncPricesFromConfiguration(db);
  expect({ models: synced.modelPeriods.length, apis: synced.externalApiPeriods.length }).toEqual({ models: fill.modelIds.length, apis: fill.externalApiIds.length });

  const models = await query<{ id: number; configuration: { prices: Record<string, number | string | undefined> } }>(`SELECT id, configuration FROM ps_ai_models`);
  const report = await costReport(db, { groupBy: ["modelId"] });
  for (const { id, configuration } of models) {
    const p = configuration.prices as Record<string, number | undefined>;
    const t = fill.modelUsage.byModel.get(id);
    if (!t) continue;
    const rate = (r: number | undefined, fallback?: number) => new Decimal(String(r ?? fallback ?? 0));
    const m = (n: bigint, r: Decimal) => new Decimal(n.toString()).mul(r);
    const input = rate(p.costInTokensPerMillion);
    const output = rate(p.costOutTokensPerMillion);
    const lcIn = rate(p.longContextCostInTokensPerMillion, p.costInTokensPerMillion);
    const lcOut = rate(p.longContextCostOutTokensPerMillion, p.costOutTokensPerMillion);
    const multiplier = rate(p.cacheWriteInputCostMultiplier, 1);
    // PolicySynth: a missing cached rate prices cached tokens at 0 (this package: at the input rate).
    const cached = rate(p.costInCachedContextTokensPerMillion);
    const lcCached = rate(p.longContextCostInCachedContextTokensPerMillion, p.costInCachedContextTokensPerMillion);
    const policySynth = m(t.tokenInCount, input)
      .add(m(t.tokenInCachedContextCount, cached))
      .add(m(t.tokenInCacheWriteCount, input.mul(multiplier)))
      .add(m(t.tokenOutCount + t.tokenOutReasoningCount + t.tokenOutAudioCount + t.tokenOutImageCount, output))
      .add(m(t.longContextTokenInCount, lcIn))
      .add(m(t.longContextTokenInCachedContextCount, lcCached))
      .add(m(t.longContextTokenInCacheWriteCount, lcIn.mul(multiplier)))
      .add(m(t.longContextTokenOutCount + t.longContextTokenOutReasoningCount + t.longContextTokenOutAudioCount + t.longContextTokenOutImageCount, lcOut))
      .div(1_000_000);
    const row = report.rows.find((r) => r.modelId === id)!;
    const expected =
      p.costInCachedContextTokensPerMillion === undefined
        ? policySynth.add(m(t.tokenInCachedContextCount, input).add(m(t.longContextTokenInCachedContextCount, lcIn)).div(1_000_000))
        : policySynth;
    expect(new Decimal(row.modelCost!).eq(expected)).toBe(true);
  }
  const apis = await query<{ id: number; price_adapter: { pricePerUnit: number } }>(`SELECT id, price_adapter FROM ps_external_apis`);
  const apiReport = await costReport(db, { groupBy: ["externalApiId"] });
  for (const { id, price_adapter } of apis) {
    const calls = fill.externalApiUsage.byExternalApi.get(id)?.callCount ?? 0n;
    const row = apiReport.rows.find((r) => r.externalApiId === id);
    if (calls > 0n) expect(new Decimal(row!.externalApiCost!).eq(new Decimal(calls.toString()).mul(String(price_adapter.pricePerUnit)))).toBe(true);
  }
  const tree = await agentTreeCostReport(db, fill.rootAgentId);
  const perAgent = await costReport(db, { groupBy: ["agentId"] });
  const treeIds = new Set(tree.agents.map((a) => a.agentId));
  const sum = perAgent.rows.filter((r) => r.agentId !== null && treeIds.has(r.agentId!)).reduce((s, r) => s.add(r.cost ?? 0), new Decimal(0));
  expect(new Decimal(tree.totals[0].cost!).eq(sum)).toBe(true);
});

test("every write path works on it, stamps both timestamps, and refuses unknown references", async () => {
  const [modelId] = fill.modelIds;
  const [apiId] = fill.externalApiIds;
  const agentId = fill.rootAgentId;
  const userId = fill.userIds[0];
  const single = await recordModelUsage(db, { userId, modelId, agentId, tokenInCount: 10, createdAt: new Date("2026-06-01T00:00:00Z") });
  const batch = await recordModelUsageBatch(db, [{ userId, modelId, agentId, tokenInCount: 20 }, { userId, modelId, tokenOutCount: 5 }]);
  const apiBatch = await recordExternalApiUsageBatch(db, [{ userId, externalApiId: apiId, agentId, callCount: 2 }]);
  await recordExternalApiUsage(db, { userId, externalApiId: apiId, callCount: 1 }, { idempotencyKey: "adopted-1" });
  await recordModelCall(db, { userId, modelId, agentId, inputTokens: 300_000, outputTokens: 10 });
  await recordNdjson(db, Readable.from([`{"userId":${userId},"modelId":${modelId},"tokenInCount":3}\n{"userId":${userId},"externalApiId":${apiId},"callCount":4}\n`]));
  await forUser(db, userId).recordModelUsage({ modelId, tokenInCount: 1 });
  expect(batch.count + apiBatch.count).toBe(3);
  const stamped = await query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ps_model_usage WHERE id > ${fill.maxIds.ps_model_usage} AND updated_at <> created_at`,
  );
  expect(stamped).toEqual([{ n: 0 }]);
  expect(single.createdAt.toISOString()).toBe("2026-06-01T00:00:00.000Z");

  for (const bad of [
    () => recordModelUsage(db, { userId, modelId: 9999, tokenInCount: 1 }),
    () => recordModelUsageBatch(db, [{ userId, modelId, tokenInCount: 1 }, { userId, modelId: 9999, tokenInCount: 1 }]),
    () => recordExternalApiUsage(db, { userId, externalApiId: 9999, callCount: 1 }),
    () => recordExternalApiUsageBatch(db, [{ userId, externalApiId: 9999, callCount: 1 }]),
    () => recordModelUsage(db, { userId, modelId, agentId: 9999, tokenInCount: 1 }),
    () => recordModelUsage(db, { userId, modelId, connectorId: 9999, tokenInCount: 1 }),
  ]) {
    await expect(bad()).rejects.toBeInstanceOf(UnknownReferenceError);
  }
});

test("the CLI works on it", async () => {
  const record = await runCli(["record", "--db", url, "--user", String(fill.userIds[0]), "--model", String(fill.modelIds[1]), "--token-in-count", "5"]);
  expect(record.code).toBe(0);
  const ndjson = await runCli(["record", "--ndjson", "--db", url], { input: `{"userId":${fill.userIds[0]},"modelId":${fill.modelIds[1]},"tokenInCount":7}\n` });
  expect(ndjson.code).toBe(0);
  const report = await runCli(["report", "--group-by", "model", "--json", "--db", url]);
  expect(report.code).toBe(0);
  expect(JSON.parse(report.stdout).rows.length).toBeGreaterThanOrEqual(fill.modelIds.length);
  expect((await runCli(["status", "--db", url])).stdout).toContain("Database schema is up to date.");
  // PolicySynth's running rows are rows changed after they were written: doctor says so (exit 1).
  const checked = await runCli(["doctor", "--db", url]);
  expect(checked.code).toBe(1);
  expect(checked.stdout).toContain(`ps_model_usage: ${fill.runningRows.length} row(s) were changed after they were written`);
});

test("PolicySynth's own models keep working, and doctor finds the event row its findOrCreate grew", async () => {
  const ps = openPolicySynthModels(url);
  try {
    // A (model, agent) pair only this package has written: PolicySynth's findOrCreate picks our row.
    const [{ modelId, agentId }] = await db.prisma.$queryRaw<{ modelId: number; agentId: number }[]>`
      SELECT m.id AS "modelId", a.id AS "agentId" FROM ps_ai_models m CROSS JOIN ps_agents a
       WHERE NOT EXISTS (SELECT 1 FROM ps_model_usage u WHERE u.model_id = m.id AND u.agent_id = a.id)
       ORDER BY m.id DESC, a.id DESC LIMIT 1`;
    const ours = await recordModelUsage(db, { userId: fill.userIds[0], modelId, agentId, tokenInCount: 100, createdAt: new Date("2026-01-01T00:00:00Z") });
    const [row, created] = await ps.PsModelUsage.findOrCreate({ where: { model_id: modelId, agent_id: agentId }, defaults: { user_id: fill.userIds[0], token_in_count: 0, token_out_count: 0 } });
    expect({ created, id: row.get("id") }).toEqual({ created: false, id: ours.id });
    await row.increment({ token_in_count: 50 });
    const made = await ps.PsModelUsage.create({ user_id: fill.userIds[0], model_id: modelId, agent_id: null, token_in_count: 1, token_out_count: 1 });
    expect((await ps.PsModelUsage.findAll({ where: { id: made.get("id") } })).length).toBe(1);

    const report = await doctor(db);
    expect(report.changedRows[0].rows).toBe(fill.runningRows.length + 1);
    const [again] = await findModelUsage(db, { modelId, agentId, from: new Date("2026-01-01T00:00:00Z"), to: new Date("2026-01-01T00:00:01Z") }).then((p) => p.items);
    expect(again.tokenInCount).toBe(150); // the later 50 tokens are dated 1 January
  } finally {
    await ps.close();
  }
});

test("no row that existed before adoption was changed", async () => {
  expect(await checksums()).toEqual(before);
});
