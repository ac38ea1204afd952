// PolicySynth's own data layer beside this package (issue 10). First: the fixture builds a
// database the way PolicySynth's Sequelize start-up does and fills it the way PolicySynth writes,
// with the catalog that makes such a database different from one `migrate()` builds. Second:
// PolicySynth's models keep working on a database this package created, and the package reads
// what they wrote.
import { Client } from "pg";
import { DatabaseNotMigratedError, MODEL_USAGE_COUNTERS, findModelUsage, migrate, openDatabase, sumExternalApiUsage, sumModelUsage, type Database } from "../src";
import {
  createPolicySynthDatabase,
  fillAsPolicySynth,
  openPolicySynthModels,
  tableChecksums,
  type ModelUsageTotals,
  type PolicySynthFill,
} from "./support/policysynthDatabase";
import { createScratchDatabase } from "./support/testDatabase";

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    // node-postgres reads timestamps only in ISO; the scratch databases default to "SQL, DMY".
    await c.query("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'");
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** `table.column` -> "type NOT NULL DEFAULT …" for the public schema. */
async function columns(url: string): Promise<Map<string, string>> {
  const { rows } = await withClient(url, (c) =>
    c.query<{ name: string; def: string }>(`
      SELECT c.relname || '.' || a.attname AS name,
             format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS def
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
      JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attnum > 0 AND NOT a.attisdropped`),
  );
  return new Map(rows.map((r) => [r.name, r.def]));
}

/** Index names of `table`, sorted. */
async function indexNames(url: string, table: string): Promise<string[]> {
  const { rows } = await withClient(url, (c) => c.query<{ name: string }>(`SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1`, [table]));
  return rows.map((r) => r.name);
}

/** Foreign keys of `table`: constraint name -> definition. */
async function foreignKeys(url: string, table: string): Promise<Record<string, string>> {
  const { rows } = await withClient(url, (c) =>
    c.query<{ name: string; def: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE contype = 'f' AND conrelid = $1::regclass ORDER BY 1`,
      [`public.${table}`],
    ),
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.def]));
}

/** The counters of a sum row that are not zero, for readable comparisons. */
function tokens(t: Partial<ModelUsageTotals>): Record<string, bigint> {
  return Object.fromEntries(MODEL_USAGE_COUNTERS.map(([field]) => [field, t[field] ?? 0n] as const).filter(([, v]) => v !== 0n));
}

describe("a database built and filled the way PolicySynth does", () => {
  let url: string;
  let drop: () => Promise<void>;
  let fill: PolicySynthFill;
  beforeAll(async () => {
    const scratch = await createScratchDatabase();
    url = scratch.url;
    drop = scratch.drop;
    await createPolicySynthDatabase(url);
    fill = await fillAsPolicySynth(url);
  });
  afterAll(() => drop?.());

  test("has PolicySynth's columns: no database default on the timestamps, counters default 0, cache-write counters added last", async () => {
    const cols = await columns(url);
    expect(cols.get("ps_model_usage.created_at")).toBe("timestamp with time zone NOT NULL");
    expect(cols.get("ps_model_usage.updated_at")).toBe("timestamp with time zone NOT NULL");
    expect(cols.get("ps_external_api_usage.created_at")).toBe("timestamp with time zone NOT NULL");
    expect(cols.get("ps_model_usage.token_in_count")).toBe("integer NOT NULL DEFAULT 0");
    expect(cols.get("ps_model_usage.token_in_cache_write_count")).toBe("integer NOT NULL DEFAULT 0");
    expect(cols.get("ps_external_api_usage.call_count")).toBe("integer NOT NULL");
    // UUIDV4 and the JSON columns are filled by Sequelize, not the database.
    expect(cols.get("ps_ai_models.uuid")).toBe("uuid NOT NULL");
    expect(cols.get("ps_ai_models.configuration")).toBe("jsonb NOT NULL");
    expect(cols.get("ps_ai_models.organization_id")).toBe("integer NOT NULL");
    expect(cols.get("ps_external_apis.price_adapter")).toBe("jsonb NOT NULL");
    expect(cols.get("ps_ai_models.name")).toBe("character varying(255) NOT NULL");
    // The usage item table comes from the query interface, with database defaults.
    expect(cols.get("ps_model_usage_item.created_at")).toBe("timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP");
    expect(cols.get("ps_model_usage_item.agent_id")).toBe("integer NOT NULL");

    const { rows } = await withClient(url, (c) =>
      c.query<{ attname: string }>(`SELECT attname FROM pg_attribute WHERE attrelid = 'ps_model_usage'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`),
    );
    expect(rows.map((r) => r.attname).slice(-4)).toEqual(["agent_id", "connector_id", "token_in_cache_write_count", "long_context_token_in_cache_write_count"]);
  });

  test("has Sequelize's index names and the foreign keys PolicySynth's associations make", async () => {
    expect(await indexNames(url, "ps_model_usage")).toEqual([
      "ps_model_usage_agent_id",
      "ps_model_usage_connector_id",
      "ps_model_usage_model_id",
      "ps_model_usage_pkey",
      "ps_model_usage_user_id",
    ]);
    expect(await indexNames(url, "ps_ai_models")).toEqual(["ps_ai_models_organization_id", "ps_ai_models_pkey", "ps_ai_models_user_id", "ps_ai_models_uuid"]);
    expect(await indexNames(url, "ps_agents")).toEqual([
      "ps_agents_class_id",
      "ps_agents_group_id",
      "ps_agents_parent_agent_id",
      "ps_agents_pkey",
      "ps_agents_user_id",
      "ps_agents_uuid",
    ]);
    expect(await indexNames(url, "ps_model_usage_item")).toEqual([
      "ps_model_usage_item_agent_id",
      "ps_model_usage_item_connector_id",
      "ps_model_usage_item_created_at",
      "ps_model_usage_item_model_id",
      "ps_model_usage_item_pkey",
      "ps_model_usage_item_user_id",
    ]);

    // No foreign key on model_id / external_api_id (ps_model_usage has no associate()).
    expect(await foreignKeys(url, "ps_model_usage")).toEqual({
      ps_model_usage_agent_id_fkey: "FOREIGN KEY (agent_id) REFERENCES ps_agents(id) ON UPDATE CASCADE ON DELETE SET NULL",
      ps_model_usage_connector_id_fkey: "FOREIGN KEY (connector_id) REFERENCES ps_agent_connectors(id) ON UPDATE CASCADE ON DELETE SET NULL",
    });
    expect(await foreignKeys(url, "ps_external_api_usage")).toEqual({
      ps_external_api_usage_agent_id_fkey: "FOREIGN KEY (agent_id) REFERENCES ps_agents(id) ON UPDATE CASCADE ON DELETE SET NULL",
      ps_external_api_usage_connector_id_fkey: "FOREIGN KEY (connector_id) REFERENCES ps_agent_connectors(id) ON UPDATE CASCADE ON DELETE SET NULL",
    });
    expect(await foreignKeys(url, "ps_model_usage_item")).toEqual({});
    // PsAgent declares belongsTo(PsAiModel) on parent_agent_id before its sub-agent pair, and
    // Sequelize keeps the first reference: the sub-agent tree's column points at ps_ai_models.
    // (The first association on class_id is PsAgentClass.hasMany, hence ON DELETE CASCADE.)
    expect(await foreignKeys(url, "ps_agents")).toEqual({
      ps_agents_class_id_fkey: "FOREIGN KEY (class_id) REFERENCES ps_agent_classes(id) ON UPDATE CASCADE ON DELETE CASCADE",
      ps_agents_group_id_fkey: "FOREIGN KEY (group_id) REFERENCES groups(id) ON UPDATE CASCADE",
      ps_agents_parent_agent_id_fkey: "FOREIGN KEY (parent_agent_id) REFERENCES ps_ai_models(id) ON UPDATE CASCADE ON DELETE SET NULL",
      ps_agents_user_id_fkey: "FOREIGN KEY (user_id) REFERENCES users(id) ON UPDATE CASCADE",
    });
    expect(await foreignKeys(url, "ps_ai_models")).toEqual({});
    // So in such a database a sub-agent can only hang under an agent whose id is also a model's
    // id (the fill's tree does, with parents 1, 2 and 4 and four models).
    const ps = openPolicySynthModels(url);
    try {
      const lastAgent = fill.agents[fill.agents.length - 1];
      expect(lastAgent.id).toBeGreaterThan(Math.max(...fill.modelIds));
      await expect(
        ps.PsAgent.create({ user_id: fill.userIds[0], class_id: fill.agentClassIds[0], group_id: fill.groupIds[0], configuration: {}, parent_agent_id: lastAgent.id }),
      ).rejects.toThrow('violates foreign key constraint "ps_agents_parent_agent_id_fkey"');
    } finally {
      await ps.close();
    }
  });

  test("holds running rows (one per model and agent, updated after created) and plain rows that sum to the fill's totals", async () => {
    expect(fill.runningRows).toHaveLength(15);
    for (const r of fill.runningRows) {
      expect(r.calls).toBe(6);
      expect(r.updatedAt.getTime()).toBeGreaterThan(r.createdAt.getTime());
    }
    const { rows } = await withClient(url, (c) =>
      c.query<{ id: number; agent_id: number; model_id: number; created_at: Date; updated_at: Date }>(
        `SELECT id, agent_id, model_id, created_at, updated_at FROM ps_model_usage WHERE id = ANY($1::int[]) ORDER BY id`,
        [fill.runningRows.map((r) => r.id)],
      ),
    );
    expect(rows.map((r) => ({ id: r.id, agentId: r.agent_id, modelId: r.model_id, createdAt: r.created_at, updatedAt: r.updated_at }))).toEqual(
      fill.runningRows.map(({ id, agentId, modelId, createdAt, updatedAt }) => ({ id, agentId, modelId, createdAt, updatedAt })),
    );
    expect(fill.plainRowIds).toHaveLength(8);
    expect(fill.usageItemIds).toHaveLength(90); // one per call of a running row
    expect(fill.modelUsage.total.events).toBe(23n);
    expect(fill.modelUsage.total.tokenInCacheWriteCount).toBeGreaterThan(0n);
    expect(fill.modelUsage.total.longContextTokenInCacheWriteCount).toBeGreaterThan(0n);
    expect(fill.modelUsage.total.longContextTokenInCount).toBeGreaterThan(0n);
    expect(fill.externalApiUsage.total).toEqual({ events: 10n, callCount: expect.any(BigInt) });

    // The package's own sums over this (not adopted) database: external API usage read from the
    // ledger alone agrees with the fill; with the rollups (the default) the sums name a rollup
    // table (the 15-minute one or a level the report reads), which only migrating after adoption adds; model usage sums web_search_count too, a
    // column only adoption adds, so they name it (tests/adoptPolicySynth.pg.test.ts compares them
    // with the fill after adoption, per agent too).
    const db = await openDatabase({ url });
    try {
      const perApi = await sumExternalApiUsage(db, { groupBy: ["externalApiId"], rollups: false });
      expect(new Map(perApi.map((r) => [r.externalApiId, { events: r.events, callCount: r.callCount }]))).toEqual(fill.externalApiUsage.byExternalApi);
      const noRollups = await sumExternalApiUsage(db, { groupBy: ["externalApiId"] }).catch((e: unknown) => e);
      expect(noRollups).toBeInstanceOf(DatabaseNotMigratedError);
      expect((noRollups as Error).message).toMatch(/table ps_external_api_usage(_agent_day|_agent_month)?_rollup does not exist/);
      const notAdopted = await sumModelUsage(db, { groupBy: ["agentId"] }).catch((e: unknown) => e);
      expect(notAdopted).toBeInstanceOf(DatabaseNotMigratedError);
      expect((notAdopted as Error).message).toMatch(/table ps_model_usage(_model|_agent_day|_agent_month)?_rollup does not exist/);
      expect((notAdopted as Error).message).toContain("ps-usage adopt");
    } finally {
      await db.close();
    }
  });

  test("checksums cover every table and do not depend on the session's TimeZone or DateStyle", async () => {
    const first = await tableChecksums(url);
    expect(Object.keys(first)).toHaveLength(11);
    // Another zone and date style for new sessions of this database: the text of a timestamptz
    // would change, the checksums must not.
    await withClient(url, async (c) => {
      const { rows } = await c.query<{ db: string }>("SELECT current_database() AS db");
      await c.query(`ALTER DATABASE "${rows[0].db}" SET timezone TO 'Asia/Kathmandu'`);
      await c.query(`ALTER DATABASE "${rows[0].db}" SET datestyle TO 'German, DMY'`);
    });
    expect(await tableChecksums(url)).toEqual(first);
    // Limiting to the rows that existed changes nothing here, and a changed row is seen.
    expect(await tableChecksums(url, { maxIds: fill.maxIds })).toEqual(first);
    await withClient(url, (c) => c.query(`UPDATE ps_model_usage SET token_out_count = token_out_count + 1 WHERE id = $1`, [fill.plainRowIds[0]]));
    const changed = await tableChecksums(url);
    expect(Object.entries(changed).filter(([t, sum]) => first[t] !== sum).map(([t]) => t)).toEqual(["ps_model_usage"]);
  });

  test("a second fill with the same seed writes the same rows", async () => {
    const again = await createScratchDatabase();
    try {
      await createPolicySynthDatabase(again.url);
      const second = await fillAsPolicySynth(again.url);
      expect(second.maxIds).toEqual(fill.maxIds);
      expect(second.modelUsage.total).toEqual(fill.modelUsage.total);
      // Same rows, except the one the previous test changed.
      const a = await tableChecksums(url);
      const b = await tableChecksums(again.url);
      expect(Object.keys(b).filter((t) => a[t] !== b[t])).toEqual(["ps_model_usage"]);
    } finally {
      await again.drop();
    }
  });
});

describe("PolicySynth's models on a database this package created", () => {
  let url: string;
  let drop: () => Promise<void>;
  let db: Database;
  beforeAll(async () => {
    const scratch = await createScratchDatabase();
    url = scratch.url;
    drop = scratch.drop;
    db = await openDatabase({ url });
    await migrate(db);
  });
  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  test("create, findAll, findOrCreate + increment and external API usage work, and the package reads them back", async () => {
    let clock = Date.parse("2026-05-04T09:00:00.000Z");
    const ps = openPolicySynthModels(url, { now: () => new Date(clock) });
    try {
      // No users / groups / class tables here: the package has no foreign keys to them.
      const model = await ps.PsAiModel.create({
        user_id: 1,
        organization_id: 1,
        name: "gpt-4o",
        configuration: { provider: "openai", prices: { costInTokensPerMillion: 2.5, costOutTokensPerMillion: 10, currency: "USD" } },
      });
      const api = await ps.PsExternalApi.create({ user_id: 1, organization_id: 1, type: "google_search", priceAdapter: { unitType: "search", pricePerUnit: 0.005, currency: "USD" } });
      const root = await ps.PsAgent.create({ user_id: 1, class_id: 1, group_id: 1, configuration: {} });
      const modelId = model.get("id") as number;
      const rootId = root.get("id") as number;
      const child = await ps.PsAgent.create({ user_id: 1, class_id: 1, group_id: 1, configuration: {}, parent_agent_id: rootId });
      const childId = child.get("id") as number;
      expect((await ps.PsAgent.findAll({ where: { parent_agent_id: rootId } })).map((a) => a.get("id"))).toEqual([childId]);

      // One running row per (model, agent): findOrCreate, then increment, as PolicySynth does.
      const calls = [
        { token_in_count: 1000, token_out_count: 200, token_in_cached_context_count: 300, token_in_cache_write_count: 50 },
        { token_in_count: 500, token_out_count: 100, token_in_cached_context_count: 0, token_in_cache_write_count: 70 },
        { token_in_count: 250, token_out_count: 40, token_in_cached_context_count: 10, token_in_cache_write_count: 0 },
      ];
      let runningId = 0;
      const warn = jest.spyOn(console, "warn").mockImplementation(() => {});
      for (const call of calls) {
        clock += 3_600_000;
        await ps.sequelize.transaction(async (transaction) => {
          const [usage, created] = await ps.PsModelUsage.findOrCreate({
            where: { model_id: modelId, agent_id: childId },
            defaults: { ...call, user_id: 7, model_id: modelId, agent_id: childId },
            transaction,
          });
          if (!created) await usage.increment(call, { transaction });
          runningId = usage.get("id") as number;
        });
      }
      const warnings = new Set(warn.mock.calls.map((c) => String(c[0])));
      warn.mockRestore();
      expect([...warnings]).toEqual(["(sequelize) Warning: Unknown attributes (token_in_cache_write_count) passed to defaults option of findOrCreate"]);
      const plain = await ps.PsModelUsage.create({ user_id: 7, model_id: modelId, agent_id: rootId, token_in_count: 42, token_out_count: 8, token_out_reasoning_count: 5 });
      clock += 60_000;
      await ps.PsExternalApiUsage.create({ user_id: 7, external_api_id: api.get("id"), call_count: 3, agent_id: childId });

      const found = await ps.PsModelUsage.findAll({ where: { model_id: modelId }, order: [["id", "ASC"]] });
      expect(found.map((r) => [r.get("id"), r.get("token_in_count"), r.get("token_out_count")])).toEqual([
        [runningId, 1750, 340],
        [plain.get("id"), 42, 8],
      ]);

      // The package sees the running row as PolicySynth left it, and sums it right.
      const page = await findModelUsage(db, { agentId: childId });
      expect(page.items).toHaveLength(1);
      expect(page.items[0]).toMatchObject({
        id: runningId,
        userId: 7,
        modelId,
        tokenInCount: 1750,
        tokenInCachedContextCount: 310, // the first call's 300 came with the create
        // PolicySynth's model has no cache-write attribute: Sequelize leaves the first call's 50 out
        // of the INSERT; only increment (raw column names) writes the column.
        tokenInCacheWriteCount: 70,
        tokenOutCount: 340,
        createdAt: new Date("2026-05-04T10:00:00.000Z"),
        updatedAt: new Date("2026-05-04T12:00:00.000Z"),
      });
      const perAgent = await sumModelUsage(db, { groupBy: ["agentId"] });
      expect(perAgent.map((r) => ({ agentId: r.agentId, events: r.events, ...tokens(r) }))).toEqual(
        expect.arrayContaining([
          { agentId: childId, events: 1n, tokenInCount: 1750n, tokenInCachedContextCount: 310n, tokenInCacheWriteCount: 70n, tokenOutCount: 340n },
          { agentId: rootId, events: 1n, tokenInCount: 42n, tokenOutCount: 8n, tokenOutReasoningCount: 5n },
        ]),
      );
      expect(perAgent).toHaveLength(2);
      const [apiTotal] = await sumExternalApiUsage(db, { where: { agentId: childId } });
      expect(apiTotal).toEqual({ events: 1n, callCount: 3n });

      // Current PolicySynth writes one ps_model_usage_item per call in the same transaction as
      // its increment: the package's schema has that table, exactly as PolicySynth makes it.
      const item = await ps.PsModelUsageItem.create({ user_id: 7, model_id: modelId, agent_id: childId, data: { accountingVersion: 1 } });
      expect((await ps.PsModelUsageItem.findAll({ where: { id: item.get("id") } })).map((r) => r.get("data"))).toEqual([{ accountingVersion: 1 }]);
    } finally {
      await ps.close();
    }
  });

  test("a PolicySynth start-up (application-level sync + sync()) there adds its own tables and indexes and changes nothing else", async () => {
    const shared = ["ps_ai_models", "ps_external_apis", "ps_agents", "ps_agent_connectors", "ps_model_usage", "ps_external_api_usage"];
    const before = new Map(await Promise.all(shared.map(async (t) => [t, await indexNames(url, t)] as const)));
    const columnsBefore = await columns(url);
    const keysBefore = await foreignKeys(url, "ps_model_usage");

    await createPolicySynthDatabase(url);

    const added: Record<string, string[]> = {};
    for (const t of shared) added[t] = (await indexNames(url, t)).filter((i) => !before.get(t)!.includes(i));
    // sync() adds every index of a model whose name is missing, so the uuid columns get a second
    // unique index beside Prisma's `*_uuid_key`.
    expect(added).toEqual({
      ps_ai_models: ["ps_ai_models_organization_id", "ps_ai_models_user_id", "ps_ai_models_uuid"],
      ps_external_apis: ["ps_external_apis_organization_id", "ps_external_apis_type", "ps_external_apis_user_id", "ps_external_apis_uuid"],
      ps_agents: ["ps_agents_class_id", "ps_agents_group_id", "ps_agents_user_id", "ps_agents_uuid"],
      ps_agent_connectors: ["ps_agent_connectors_class_id", "ps_agent_connectors_group_id", "ps_agent_connectors_user_id", "ps_agent_connectors_uuid"],
      ps_model_usage: [],
      ps_external_api_usage: [],
    });
    const columnsAfter = await columns(url);
    for (const [name, def] of columnsBefore) expect([name, columnsAfter.get(name)]).toEqual([name, def]);
    expect([...columnsAfter.keys()].filter((c) => !columnsBefore.has(c)).map((c) => c.split(".")[0])).toEqual(
      expect.not.arrayContaining(shared),
    );
    expect(await foreignKeys(url, "ps_model_usage")).toEqual(keysBefore);
    expect(await migrate(db)).toEqual({ applied: [] });
  });
});
