// The migrated catalog, read back from PostgreSQL's own catalog and compared with a definition
// written out here from the contract (seeds + PolicySynth notes), not derived from the
// migration files: a migration that drifts from PolicySynth's tables fails this test.
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.dispose());

// Sequelize's DATE is `timestamp with time zone` with no precision written out; the schema
// uses `@db.Timestamptz` (not `Timestamptz(6)`) so that the catalog text is the same.
const TIMESTAMPTZ = "timestamp with time zone";
const TIMESTAMPS = [
  `created_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
  `updated_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
];
const serialId = (table: string) => `id integer NOT NULL DEFAULT nextval('${table}_id_seq'::regclass)`;
const counter = (name: string) => `${name} integer NOT NULL DEFAULT 0`;

/** The event count and the sums of every model usage rollup level, in table order. */
const MODEL_ROLLUP_SUMS = [
    "event_count bigint NOT NULL",
    "token_in_count bigint NOT NULL",
    "token_in_cached_context_count bigint NOT NULL",
    "token_in_cache_write_count bigint NOT NULL",
    "long_context_token_in_count bigint NOT NULL",
    "long_context_token_in_cached_context_count bigint NOT NULL",
    "long_context_token_in_cache_write_count bigint NOT NULL",
    "token_out_count bigint NOT NULL",
    "token_out_reasoning_count bigint NOT NULL",
    "token_out_audio_count bigint NOT NULL",
    "token_out_image_count bigint NOT NULL",
    "long_context_token_out_count bigint NOT NULL",
    "long_context_token_out_reasoning_count bigint NOT NULL",
    "long_context_token_out_audio_count bigint NOT NULL",
    "long_context_token_out_image_count bigint NOT NULL",
    "web_search_count bigint NOT NULL",
];

/** Every column, in table order: `name type [NOT NULL] [DEFAULT expr]`. */
const EXPECTED_COLUMNS: Record<string, string[]> = {
  ps_ai_models: [
    serialId("ps_ai_models"),
    "uuid uuid NOT NULL DEFAULT gen_random_uuid()",
    "user_id integer NOT NULL",
    "organization_id integer",
    "name character varying(255) NOT NULL",
    "configuration jsonb NOT NULL DEFAULT '{}'::jsonb",
    ...TIMESTAMPS,
  ],
  ps_external_apis: [
    serialId("ps_external_apis"),
    "uuid uuid NOT NULL DEFAULT gen_random_uuid()",
    "user_id integer NOT NULL",
    "organization_id integer",
    "type character varying(255) NOT NULL",
    "price_adapter jsonb NOT NULL DEFAULT '{}'::jsonb",
    ...TIMESTAMPS,
  ],
  ps_agents: [
    serialId("ps_agents"),
    "uuid uuid NOT NULL DEFAULT gen_random_uuid()",
    "user_id integer NOT NULL",
    "class_id integer NOT NULL",
    "group_id integer NOT NULL",
    "configuration jsonb NOT NULL DEFAULT '{}'::jsonb",
    "parent_agent_id integer",
    ...TIMESTAMPS,
  ],
  ps_agent_connectors: [
    serialId("ps_agent_connectors"),
    "uuid uuid NOT NULL DEFAULT gen_random_uuid()",
    "user_id integer NOT NULL",
    "class_id integer NOT NULL",
    "group_id integer NOT NULL",
    "configuration jsonb NOT NULL DEFAULT '{}'::jsonb",
    ...TIMESTAMPS,
  ],
  ps_model_usage: [
    serialId("ps_model_usage"),
    "user_id integer NOT NULL",
    ...TIMESTAMPS,
    "model_id integer NOT NULL",
    counter("token_in_count"),
    counter("token_in_cached_context_count"),
    counter("token_in_cache_write_count"),
    counter("long_context_token_in_count"),
    counter("long_context_token_in_cached_context_count"),
    counter("long_context_token_in_cache_write_count"),
    counter("token_out_count"),
    counter("token_out_reasoning_count"),
    counter("token_out_audio_count"),
    counter("token_out_image_count"),
    counter("long_context_token_out_count"),
    counter("long_context_token_out_reasoning_count"),
    counter("long_context_token_out_audio_count"),
    counter("long_context_token_out_image_count"),
    "agent_id integer",
    "connector_id integer",
    // Added by ps-usage after PolicySynth's columns (migration 5): PolicySynth's inserts get the defaults.
    "regional_processing character varying(16)",
    "service_tier character varying(16)",
    counter("web_search_count"),
  ],
  ps_external_api_usage: [
    serialId("ps_external_api_usage"),
    "user_id integer NOT NULL",
    ...TIMESTAMPS,
    "external_api_id integer NOT NULL",
    // PolicySynth gives call_count no default: a row must say how many calls it counts.
    "call_count integer NOT NULL",
    "agent_id integer",
    "connector_id integer",
  ],
  // Second migration: ps-usage's own tables.
  ps_usage_idempotency_keys: [
    "key character varying(255) NOT NULL",
    "model_usage_id integer",
    "external_api_usage_id integer",
    `created_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
    // The user a key was used for; no foreign key: users is the host application's table.
    "user_id integer",
  ],
  ps_ai_model_price_periods: [
    serialId("ps_ai_model_price_periods"),
    "model_id integer NOT NULL",
    `effective_from ${TIMESTAMPTZ} NOT NULL`,
    "currency character varying(16) NOT NULL",
    "cost_in_tokens_per_million numeric(24,12) NOT NULL",
    "cost_out_tokens_per_million numeric(24,12) NOT NULL",
    "cost_in_cached_context_tokens_per_million numeric(24,12)",
    "cache_write_input_cost_multiplier numeric(24,12)",
    "long_context_token_threshold integer",
    "long_context_cost_in_tokens_per_million numeric(24,12)",
    "long_context_cost_in_cached_context_tokens_per_million numeric(24,12)",
    "long_context_cost_out_tokens_per_million numeric(24,12)",
    "cost_out_reasoning_tokens_per_million numeric(24,12)",
    "cost_out_audio_tokens_per_million numeric(24,12)",
    "cost_out_image_tokens_per_million numeric(24,12)",
    `created_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
    // Migration 5: PolicySynth's service tiers, regional margin and web searches (ADD COLUMN appends them).
    "cost_per_thousand_web_searches numeric(24,12)",
    "fast_tokens_cached_in numeric(24,12)",
    "fast_tokens_in numeric(24,12)",
    "fast_tokens_out numeric(24,12)",
    "flex_priority_tokens_enabled_on_long_context boolean NOT NULL DEFAULT false",
    "flex_tokens_cached_in numeric(24,12)",
    "flex_tokens_in numeric(24,12)",
    "flex_tokens_out numeric(24,12)",
    "priority_tokens_cached_in numeric(24,12)",
    "priority_tokens_in numeric(24,12)",
    "priority_tokens_out numeric(24,12)",
    "regional_processing_margin numeric(24,12)",
  ],
  // Migration 4: PolicySynth's per-call table, exactly as PolicySynth creates it (no foreign keys).
  ps_model_usage_item: [
    serialId("ps_model_usage_item"),
    "user_id integer NOT NULL",
    ...TIMESTAMPS,
    "model_id integer NOT NULL",
    "agent_id integer NOT NULL",
    "connector_id integer",
    "data jsonb NOT NULL",
  ],
  ps_external_api_price_periods: [
    serialId("ps_external_api_price_periods"),
    "external_api_id integer NOT NULL",
    `effective_from ${TIMESTAMPTZ} NOT NULL`,
    "unit_type character varying(64) NOT NULL",
    "price_per_unit numeric(24,12) NOT NULL",
    "currency character varying(16) NOT NULL",
    `created_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
  ],
  // Migration 6: the rollups (sums per 15-minute slot and key, kept by triggers; no defaults: the
  // triggers write every column).
  ps_model_usage_rollup: [
    `slot_start ${TIMESTAMPTZ} NOT NULL`,
    "user_id integer NOT NULL",
    "model_id integer NOT NULL",
    "agent_id integer NOT NULL",
    "connector_id integer NOT NULL",
    "service_tier character varying(17) NOT NULL",
    "regional_processing character varying(17) NOT NULL",
    ...MODEL_ROLLUP_SUMS,
  ],
  ps_external_api_usage_rollup: [
    `slot_start ${TIMESTAMPTZ} NOT NULL`,
    "user_id integer NOT NULL",
    "external_api_id integer NOT NULL",
    "agent_id integer NOT NULL",
    "connector_id integer NOT NULL",
    "event_count bigint NOT NULL",
    "call_count bigint NOT NULL",
  ],
  // Migration 7: coarser rollup levels (per slot and model; per UTC day and agent), same triggers.
  ps_model_usage_model_rollup: [
    `slot_start ${TIMESTAMPTZ} NOT NULL`,
    "model_id integer NOT NULL",
    "service_tier character varying(17) NOT NULL",
    "regional_processing character varying(17) NOT NULL",
    ...MODEL_ROLLUP_SUMS,
  ],
  ps_model_usage_agent_day_rollup: [
    `day_start ${TIMESTAMPTZ} NOT NULL`,
    "agent_id integer NOT NULL",
    "model_id integer NOT NULL",
    "service_tier character varying(17) NOT NULL",
    "regional_processing character varying(17) NOT NULL",
    ...MODEL_ROLLUP_SUMS,
  ],
  ps_external_api_usage_agent_day_rollup: [
    `day_start ${TIMESTAMPTZ} NOT NULL`,
    "agent_id integer NOT NULL",
    "external_api_id integer NOT NULL",
    "event_count bigint NOT NULL",
    "call_count bigint NOT NULL",
  ],
  // Migration 20261207230000: per UTC month and agent, same triggers.
  ps_model_usage_agent_month_rollup: [
    `month_start ${TIMESTAMPTZ} NOT NULL`,
    "agent_id integer NOT NULL",
    "model_id integer NOT NULL",
    "service_tier character varying(17) NOT NULL",
    "regional_processing character varying(17) NOT NULL",
    ...MODEL_ROLLUP_SUMS,
  ],
  ps_external_api_usage_agent_month_rollup: [
    `month_start ${TIMESTAMPTZ} NOT NULL`,
    "agent_id integer NOT NULL",
    "external_api_id integer NOT NULL",
    "event_count bigint NOT NULL",
    "call_count bigint NOT NULL",
  ],
  // Migration 20261208100000: per user (connector), UTC day and model or API, same triggers.
  ps_model_usage_user_day_rollup: [
    "user_id integer NOT NULL",
    `day_start ${TIMESTAMPTZ} NOT NULL`,
    "model_id integer NOT NULL",
    "service_tier character varying(17) NOT NULL",
    "regional_processing character varying(17) NOT NULL",
    ...MODEL_ROLLUP_SUMS,
  ],
  ps_external_api_usage_user_day_rollup: [
    "user_id integer NOT NULL",
    `day_start ${TIMESTAMPTZ} NOT NULL`,
    "external_api_id integer NOT NULL",
    "event_count bigint NOT NULL",
    "call_count bigint NOT NULL",
  ],
  ps_model_usage_connector_day_rollup: [
    "connector_id integer NOT NULL",
    `day_start ${TIMESTAMPTZ} NOT NULL`,
    "model_id integer NOT NULL",
    "service_tier character varying(17) NOT NULL",
    "regional_processing character varying(17) NOT NULL",
    ...MODEL_ROLLUP_SUMS,
  ],
  ps_external_api_usage_connector_day_rollup: [
    "connector_id integer NOT NULL",
    `day_start ${TIMESTAMPTZ} NOT NULL`,
    "external_api_id integer NOT NULL",
    "event_count bigint NOT NULL",
    "call_count bigint NOT NULL",
  ],
  ps_usage_prune_state: [
    "table_name character varying(64) NOT NULL",
    `pruned_before ${TIMESTAMPTZ} NOT NULL`,
    `pruned_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
  ],
  ps_usage_budgets: [
    serialId("ps_usage_budgets"),
    "name character varying(255) NOT NULL",
    "user_id integer",
    "agent_id integer",
    "connector_id integer",
    "model_id integer",
    "external_api_id integer",
    "period character varying(16) NOT NULL",
    "time_zone character varying(64) NOT NULL",
    `range_from ${TIMESTAMPTZ}`,
    `range_to ${TIMESTAMPTZ}`,
    "amount numeric(24,12) NOT NULL",
    "currency character varying(16) NOT NULL",
    "thresholds numeric(8,4)[]",
    "hard_limit boolean NOT NULL DEFAULT false",
    ...TIMESTAMPS,
  ],
  ps_usage_budget_alerts: [
    serialId("ps_usage_budget_alerts"),
    "budget_id integer NOT NULL",
    `period_start ${TIMESTAMPTZ} NOT NULL`,
    `period_end ${TIMESTAMPTZ} NOT NULL`,
    "threshold numeric(8,4) NOT NULL",
    "amount numeric(24,12) NOT NULL",
    "currency character varying(16) NOT NULL",
    "spent numeric(65,30) NOT NULL",
    `fired_at ${TIMESTAMPTZ} NOT NULL DEFAULT CURRENT_TIMESTAMP`,
    `claimed_at ${TIMESTAMPTZ}`,
    `delivered_at ${TIMESTAMPTZ}`,
  ],
};

/** Every index: `[UNIQUE ]name (columns)`, grouped by table. Sequelize names: `<table>_<column>`. */
const EXPECTED_INDEXES: Record<string, string[]> = {
  ps_ai_models: ["UNIQUE ps_ai_models_pkey (id)", "UNIQUE ps_ai_models_uuid_key (uuid)"],
  ps_external_apis: ["UNIQUE ps_external_apis_pkey (id)", "UNIQUE ps_external_apis_uuid_key (uuid)"],
  ps_agents: ["ps_agents_parent_agent_id (parent_agent_id)", "UNIQUE ps_agents_pkey (id)", "UNIQUE ps_agents_uuid_key (uuid)"],
  ps_model_usage_item: [
    "UNIQUE ps_model_usage_item_pkey (id)",
    "ps_model_usage_item_agent_id (agent_id)",
    "ps_model_usage_item_connector_id (connector_id)",
    "ps_model_usage_item_created_at (created_at)",
    "ps_model_usage_item_model_id (model_id)",
    "ps_model_usage_item_user_id (user_id)",
  ],
  ps_agent_connectors: ["UNIQUE ps_agent_connectors_pkey (id)", "UNIQUE ps_agent_connectors_uuid_key (uuid)"],
  ps_model_usage: [
    "ps_model_usage_agent_id (agent_id)",
    "ps_model_usage_connector_id (connector_id)",
    "ps_model_usage_created_at_id (created_at, id)",
    "ps_model_usage_model_id (model_id)",
    "ps_model_usage_user_id (user_id)",
    "UNIQUE ps_model_usage_pkey (id)",
  ],
  ps_external_api_usage: [
    "ps_external_api_usage_agent_id (agent_id)",
    "ps_external_api_usage_connector_id (connector_id)",
    "ps_external_api_usage_created_at_id (created_at, id)",
    "ps_external_api_usage_external_api_id (external_api_id)",
    "ps_external_api_usage_user_id (user_id)",
    "UNIQUE ps_external_api_usage_pkey (id)",
  ],
  ps_usage_idempotency_keys: [
    "UNIQUE ps_usage_idempotency_keys_external_api_usage_id_key (external_api_usage_id)",
    "UNIQUE ps_usage_idempotency_keys_model_usage_id_key (model_usage_id)",
    "UNIQUE ps_usage_idempotency_keys_pkey (key)",
  ],
  ps_ai_model_price_periods: [
    "UNIQUE ps_ai_model_price_periods_model_id_effective_from (model_id, effective_from)",
    "UNIQUE ps_ai_model_price_periods_pkey (id)",
  ],
  ps_external_api_price_periods: [
    "UNIQUE ps_external_api_price_periods_external_api_id_effective_from (external_api_id, effective_from)",
    "UNIQUE ps_external_api_price_periods_pkey (id)",
  ],
  ps_model_usage_rollup: [
    "ps_model_usage_rollup_agent_id_slot_start (agent_id, slot_start)",
    "UNIQUE ps_model_usage_rollup_pkey (slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing)",
  ],
  ps_external_api_usage_rollup: [
    "ps_external_api_usage_rollup_agent_id_slot_start (agent_id, slot_start)",
    "UNIQUE ps_external_api_usage_rollup_pkey (slot_start, user_id, external_api_id, agent_id, connector_id)",
  ],
  ps_model_usage_model_rollup: ["UNIQUE ps_model_usage_model_rollup_pkey (slot_start, model_id, service_tier, regional_processing)"],
  ps_model_usage_agent_day_rollup: ["UNIQUE ps_model_usage_agent_day_rollup_pkey (day_start, agent_id, model_id, service_tier, regional_processing)"],
  ps_external_api_usage_agent_day_rollup: ["UNIQUE ps_external_api_usage_agent_day_rollup_pkey (day_start, agent_id, external_api_id)"],
  ps_model_usage_agent_month_rollup: ["UNIQUE ps_model_usage_agent_month_rollup_pkey (month_start, agent_id, model_id, service_tier, regional_processing)"],
  ps_external_api_usage_agent_month_rollup: ["UNIQUE ps_external_api_usage_agent_month_rollup_pkey (month_start, agent_id, external_api_id)"],
  ps_model_usage_user_day_rollup: ["UNIQUE ps_model_usage_user_day_rollup_pkey (user_id, day_start, model_id, service_tier, regional_processing)"],
  ps_external_api_usage_user_day_rollup: ["UNIQUE ps_external_api_usage_user_day_rollup_pkey (user_id, day_start, external_api_id)"],
  ps_model_usage_connector_day_rollup: ["UNIQUE ps_model_usage_connector_day_rollup_pkey (connector_id, day_start, model_id, service_tier, regional_processing)"],
  ps_external_api_usage_connector_day_rollup: ["UNIQUE ps_external_api_usage_connector_day_rollup_pkey (connector_id, day_start, external_api_id)"],
  ps_usage_prune_state: ["UNIQUE ps_usage_prune_state_pkey (table_name)"],
  ps_usage_budgets: ["ps_usage_budgets_user_id (user_id)", "UNIQUE ps_usage_budgets_name (name)", "UNIQUE ps_usage_budgets_pkey (id)"],
  ps_usage_budget_alerts: [
    "ps_usage_budget_alerts_delivered_at (delivered_at)",
    "UNIQUE ps_usage_budget_alerts_budget_id_period_start_threshold (budget_id, period_start, threshold)",
    "UNIQUE ps_usage_budget_alerts_pkey (id)",
  ],
};

/** Every foreign key: `table.column -> table.column ON DELETE x ON UPDATE y`. */
const EXPECTED_FOREIGN_KEYS = [
  // A nullable belongsTo in Sequelize: the parent's deletion detaches, never deletes.
  "ps_agents.parent_agent_id -> ps_agents.id ON DELETE SET NULL ON UPDATE CASCADE (ps_agents_parent_agent_id_fkey)",
  // Usage survives its agent or connector (the reference becomes null)...
  "ps_model_usage.agent_id -> ps_agents.id ON DELETE SET NULL ON UPDATE CASCADE (ps_model_usage_agent_id_fkey)",
  "ps_model_usage.connector_id -> ps_agent_connectors.id ON DELETE SET NULL ON UPDATE CASCADE (ps_model_usage_connector_id_fkey)",
  // ...but a model or an API with usage cannot be deleted: that would lose what was spent.
  "ps_model_usage.model_id -> ps_ai_models.id ON DELETE RESTRICT ON UPDATE CASCADE (ps_model_usage_model_id_fkey)",
  "ps_external_api_usage.agent_id -> ps_agents.id ON DELETE SET NULL ON UPDATE CASCADE (ps_external_api_usage_agent_id_fkey)",
  "ps_external_api_usage.connector_id -> ps_agent_connectors.id ON DELETE SET NULL ON UPDATE CASCADE (ps_external_api_usage_connector_id_fkey)",
  "ps_external_api_usage.external_api_id -> ps_external_apis.id ON DELETE RESTRICT ON UPDATE CASCADE (ps_external_api_usage_external_api_id_fkey)",
  // ps-usage's own tables follow the rows they belong to.
  "ps_usage_idempotency_keys.model_usage_id -> ps_model_usage.id ON DELETE CASCADE ON UPDATE CASCADE (ps_usage_idempotency_keys_model_usage_id_fkey)",
  "ps_usage_idempotency_keys.external_api_usage_id -> ps_external_api_usage.id ON DELETE CASCADE ON UPDATE CASCADE (ps_usage_idempotency_keys_external_api_usage_id_fkey)",
  "ps_ai_model_price_periods.model_id -> ps_ai_models.id ON DELETE CASCADE ON UPDATE CASCADE (ps_ai_model_price_periods_model_id_fkey)",
  "ps_external_api_price_periods.external_api_id -> ps_external_apis.id ON DELETE CASCADE ON UPDATE CASCADE (ps_external_api_price_periods_external_api_id_fkey)",
  "ps_usage_budget_alerts.budget_id -> ps_usage_budgets.id ON DELETE CASCADE ON UPDATE CASCADE (ps_usage_budget_alerts_budget_id_fkey)",
].sort();

test("the public schema holds exactly the mirrored tables, ps-usage's own tables and _prisma_migrations", async () => {
  const rows = await t.db.prisma.$queryRaw<{ name: string }[]>`
    SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`;
  expect(rows.map((r) => r.name)).toEqual([...Object.keys(EXPECTED_COLUMNS), "_prisma_migrations"].sort());
});

test("every column has the contract's type, nullability and default, in table order", async () => {
  const rows = await t.db.prisma.$queryRaw<{ table_name: string; definition: string }[]>`
    SELECT c.relname::text AS table_name,
           a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
             || COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS definition
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> '_prisma_migrations'
       AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY c.relname, a.attnum`;
  const actual: Record<string, string[]> = {};
  for (const r of rows) (actual[r.table_name] ??= []).push(r.definition);
  expect(actual).toEqual(EXPECTED_COLUMNS);
});

test("every index has the Sequelize-style name and the expected columns, and there are no others", async () => {
  const rows = await t.db.prisma.$queryRaw<{ table_name: string; definition: string }[]>`
    SELECT tc.relname::text AS table_name,
           CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || ic.relname || ' ('
             || (SELECT string_agg(a.attname::text, ', ' ORDER BY k.ord)
                   FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
             || ')' AS definition
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_class tc ON tc.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = tc.relnamespace
     WHERE n.nspname = 'public' AND tc.relname <> '_prisma_migrations'
     ORDER BY tc.relname, 2`;
  const actual: Record<string, string[]> = {};
  for (const r of rows) (actual[r.table_name] ??= []).push(r.definition);
  for (const list of Object.values(actual)) list.sort();
  const expected = Object.fromEntries(Object.entries(EXPECTED_INDEXES).map(([k, v]) => [k, [...v].sort()]));
  expect(actual).toEqual(expected);
});

test("primary keys are on id (key for idempotency keys, the slot and key columns for rollups)", async () => {
  const rows = await t.db.prisma.$queryRaw<{ definition: string }[]>`
    SELECT con.conrelid::regclass::text || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid) AS definition
      FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
     WHERE n.nspname = 'public' AND con.contype = 'p' AND con.conrelid::regclass::text <> '_prisma_migrations'
     ORDER BY 1`;
  const KEYS: Record<string, string> = {
    ps_usage_idempotency_keys: "key",
    ps_model_usage_rollup: "slot_start, user_id, model_id, agent_id, connector_id, service_tier, regional_processing",
    ps_external_api_usage_rollup: "slot_start, user_id, external_api_id, agent_id, connector_id",
    ps_model_usage_model_rollup: "slot_start, model_id, service_tier, regional_processing",
    ps_model_usage_agent_day_rollup: "day_start, agent_id, model_id, service_tier, regional_processing",
    ps_external_api_usage_agent_day_rollup: "day_start, agent_id, external_api_id",
    ps_model_usage_agent_month_rollup: "month_start, agent_id, model_id, service_tier, regional_processing",
    ps_external_api_usage_agent_month_rollup: "month_start, agent_id, external_api_id",
    ps_model_usage_user_day_rollup: "user_id, day_start, model_id, service_tier, regional_processing",
    ps_external_api_usage_user_day_rollup: "user_id, day_start, external_api_id",
    ps_model_usage_connector_day_rollup: "connector_id, day_start, model_id, service_tier, regional_processing",
    ps_external_api_usage_connector_day_rollup: "connector_id, day_start, external_api_id",
    ps_usage_prune_state: "table_name",
  };
  const expected = Object.keys(EXPECTED_COLUMNS)
    .map((table) => `${table} ${table}_pkey PRIMARY KEY (${KEYS[table] ?? "id"})`)
    .sort();
  expect(rows.map((r) => r.definition)).toEqual(expected);
});

test("every foreign key points at the expected table with the expected ON DELETE / ON UPDATE actions", async () => {
  const rows = await t.db.prisma.$queryRaw<{ definition: string }[]>`
    SELECT src.relname || '.' || sa.attname || ' -> ' || dst.relname || '.' || da.attname
             || ' ON DELETE ' || (CASE con.confdeltype::text WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT'
                  WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END)
             || ' ON UPDATE ' || (CASE con.confupdtype::text WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT'
                  WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END)
             || ' (' || con.conname || ')' AS definition
      FROM pg_constraint con
      JOIN pg_namespace n ON n.oid = con.connamespace
      JOIN pg_class src ON src.oid = con.conrelid
      JOIN pg_class dst ON dst.oid = con.confrelid
      JOIN pg_attribute sa ON sa.attrelid = con.conrelid AND sa.attnum = con.conkey[1]
      JOIN pg_attribute da ON da.attrelid = con.confrelid AND da.attnum = con.confkey[1]
     WHERE n.nspname = 'public' AND con.contype = 'f' AND cardinality(con.conkey) = 1
     ORDER BY 1`;
  expect(rows.map((r) => r.definition)).toEqual(EXPECTED_FOREIGN_KEYS);
  // No composite foreign keys hide behind the single-column query above.
  const [{ n }] = await t.db.prisma.$queryRaw<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_constraint con JOIN pg_namespace ns ON ns.oid = con.connamespace
     WHERE ns.nspname = 'public' AND con.contype = 'f'`;
  expect(n).toBe(EXPECTED_FOREIGN_KEYS.length);
});

test("no check constraints, and no triggers but the rollups' own on the two usage tables", async () => {
  const [{ checks }] = await t.db.prisma.$queryRaw<{ checks: number }[]>`
    SELECT count(*)::int AS checks FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
     WHERE n.nspname = 'public' AND con.contype = 'c'`;
  expect(checks).toBe(0);
  const triggers = await t.db.prisma.$queryRaw<{ definition: string }[]>`
    SELECT c.relname || ' ' || tg.tgname || ' ' || p.proname AS definition
      FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_proc p ON p.oid = tg.tgfoid
     WHERE n.nspname = 'public' AND NOT tg.tgisinternal ORDER BY 1`;
  expect(triggers.map((r) => r.definition)).toEqual(
    ["ps_external_api_usage", "ps_model_usage"].flatMap((table) =>
      ["delete", "insert", "truncate", "update"].map((op) => `${table} ${table}_rollup_${op} ${table}_rollup_apply`),
    ),
  );
});
