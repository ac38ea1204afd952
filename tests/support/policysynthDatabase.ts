/**
 * A PostgreSQL database as PolicySynth's own data layer builds and fills it, for the adoption
 * tests (issue 10). The Sequelize definitions below are written from the facts of PolicySynth's
 * `agents/src/dbModels` (CitizensFoundation/policy-synth, agents 1.3.x) and
 * ../../../shared/policysynth-notes.md: the same tables, columns, types, nullability, defaults,
 * indexes and the foreign keys its associations make. Nothing here is PolicySynth's code.
 *
 * How PolicySynth builds its schema, which this file repeats step by step:
 * - `initializeModels()` calls every model's `associate()` (associations add foreign keys), then,
 *   with SYNC_DB_FOR_APP=true, its "application-level sync": it creates `ps_model_usage_item`
 *   through the query interface (with database defaults on the timestamps, unlike `sync()`),
 *   adds that table's five indexes by name, and adds the two cache-write counters to
 *   `ps_model_usage` when that table already exists; then `sequelize.sync()` creates every other
 *   table that is missing. On an empty database the counters are therefore added on the second
 *   start, so `createPolicySynthDatabase` starts twice.
 * - A Sequelize default that is a JS value (`DataTypes.NOW`, `DataTypes.UUIDV4`, a function) makes
 *   no database default; a literal (`0`, `CURRENT_TIMESTAMP`) does.
 *
 * Left out, because nothing of this package touches them: PolicySynth's join tables from
 * `belongsToMany` (AgentModels, AgentInputConnectors, AgentOutputConnectors, AgentClassUsers,
 * ...), `ps_agent_audit_logs` and `ps_agent_registries`. Their associations put foreign keys
 * only on the join tables themselves, never on the tables below.
 */
import { DataTypes, Model, Sequelize, type ModelAttributes, type ModelStatic, type Transaction } from "sequelize";
import { Client } from "pg";
import { seededRandom } from "../../src/random";
import { MODEL_USAGE_COUNTERS, type ModelUsageCounter } from "../../src/types";

type AnyModel = ModelStatic<Model>;

/** PolicySynth's models on one Sequelize connection. */
export interface PolicySynthModels {
  readonly sequelize: Sequelize;
  /**
   * `users` and `groups` belong to the host application (Your Priorities). PolicySynth's
   * `User` / `Group` models point at them, and its `sync()` creates them when they are missing,
   * which is how they come to exist here: a minimal host table with the columns PolicySynth
   * reads. Only their `id` matters to the foreign keys into them.
   */
  readonly User: AnyModel;
  readonly Group: AnyModel;
  readonly PsAgentClass: AnyModel;
  readonly PsAgentConnectorClass: AnyModel;
  readonly PsAiModel: AnyModel;
  readonly PsExternalApi: AnyModel;
  readonly PsAgent: AnyModel;
  readonly PsAgentConnector: AnyModel;
  readonly PsModelUsage: AnyModel;
  readonly PsExternalApiUsage: AnyModel;
  readonly PsModelUsageItem: AnyModel;
  close(): Promise<void>;
}

/** Every table the fixture creates, in the order `tableChecksums` reports them. */
export const POLICYSYNTH_TABLES = [
  "users",
  "groups",
  "ps_agent_classes",
  "ps_agent_connector_classes",
  "ps_ai_models",
  "ps_external_apis",
  "ps_agents",
  "ps_agent_connectors",
  "ps_model_usage",
  "ps_external_api_usage",
  "ps_model_usage_item",
] as const;
export type PolicySynthTable = (typeof POLICYSYNTH_TABLES)[number];

/** The two counters PolicySynth adds to ps_model_usage with `addColumn`, not in its model. */
export const CACHE_WRITE_COLUMNS = ["token_in_cache_write_count", "long_context_token_in_cache_write_count"] as const;

export interface PolicySynthModelOptions {
  /**
   * The clock Sequelize stamps `created_at` / `updated_at` (and `increment`'s `updated_at`)
   * with. Default: Sequelize's own (`DataTypes.NOW`), exactly as PolicySynth defines it. A
   * function default is a JS-side default too, so the tables it would create are the same.
   */
  readonly now?: () => Date;
}

/**
 * Connects Sequelize to `url` and defines PolicySynth's models with their associations. Works on
 * any database that has these tables (one this package created, too). Call `close()` when done.
 */
export function openPolicySynthModels(url: string, options: PolicySynthModelOptions = {}): PolicySynthModels {
  const sequelize = new Sequelize(url, {
    dialect: "postgres",
    logging: false,
    pool: { max: 2, min: 0, idle: 1000 },
    // PolicySynth runs on PostgreSQL's default ISO DateStyle, and node-postgres parses
    // timestamps only in ISO; the test server's scratch databases default to "SQL, DMY" on
    // purpose (for the package's own sessions), so these sessions ask for ISO. Sequelize sets
    // TimeZone itself (+00:00).
    dialectOptions: { options: "-c DateStyle=ISO,MDY" },
  });
  const now = options.now ? () => options.now!() : DataTypes.NOW;
  // Factories, not shared objects: Sequelize writes into each attribute definition it is given.
  const timestamps = () => ({
    created_at: { type: DataTypes.DATE, allowNull: false, defaultValue: now },
    updated_at: { type: DataTypes.DATE, allowNull: false, defaultValue: now },
  });
  const id = () => ({ type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true });
  const int = (allowNull: boolean) => ({ type: DataTypes.INTEGER, allowNull });
  const counter = () => ({ type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });
  const uuid = () => ({ type: DataTypes.UUID, allowNull: false, defaultValue: DataTypes.UUIDV4 });
  const jsonb = () => ({ type: DataTypes.JSONB, allowNull: false });
  const define = (name: string, tableName: string, attributes: ModelAttributes, indexes: { fields: string[]; unique?: boolean }[], timestampsOn = true): AnyModel =>
    sequelize.define(name, attributes, { tableName, indexes, timestamps: timestampsOn, underscored: true });

  // Host tables (see PolicySynthModels.User). `users` keeps its timestamps as plain columns.
  const User = define(
    "User",
    "users",
    { id: id(), name: { type: DataTypes.STRING, allowNull: false }, email: { type: DataTypes.STRING, allowNull: false, unique: true }, ...timestamps() },
    [{ fields: ["email"] }],
    false,
  );
  const Group = define(
    "Group",
    "groups",
    {
      id: id(),
      name: { type: DataTypes.STRING, allowNull: false },
      user_id: int(false),
      community_id: int(false),
      ...timestamps(),
      configuration: jsonb(),
      private_access_configuration: jsonb(),
    },
    [{ fields: ["user_id"] }],
  );

  const PsAgentClass = define(
    "PsAgentClass",
    "ps_agent_classes",
    {
      id: id(),
      uuid: uuid(),
      class_base_id: uuid(),
      user_id: int(false),
      ...timestamps(),
      name: { type: DataTypes.STRING, allowNull: false },
      version: int(false),
      configuration: jsonb(),
      available: { type: DataTypes.BOOLEAN, allowNull: false },
    },
    [{ fields: ["uuid"], unique: true }, { fields: ["class_base_id"] }, { fields: ["class_base_id", "version"] }, { fields: ["user_id"] }],
  );
  const PsAgentConnectorClass = define(
    "PsAgentConnectorClass",
    "ps_agent_connector_classes",
    {
      id: id(),
      uuid: uuid(),
      class_base_id: uuid(),
      user_id: int(false),
      ...timestamps(),
      name: { type: DataTypes.STRING, allowNull: false },
      version: int(false),
      available: { type: DataTypes.BOOLEAN, allowNull: false },
      configuration: jsonb(),
    },
    [
      { fields: ["uuid"], unique: true },
      { fields: ["class_base_id"] },
      { fields: ["class_base_id", "version"] },
      { fields: ["user_id"] },
      { fields: ["name"] },
      { fields: ["version"] },
    ],
  );

  const PsAiModel = define(
    "PsAiModel",
    "ps_ai_models",
    {
      id: id(),
      uuid: uuid(),
      user_id: int(false),
      organization_id: int(false),
      ...timestamps(),
      name: { type: DataTypes.STRING, allowNull: false },
      configuration: jsonb(),
    },
    [{ fields: ["uuid"], unique: true }, { fields: ["user_id"] }, { fields: ["organization_id"] }],
  );
  const PsExternalApi = define(
    "PsExternalApi",
    "ps_external_apis",
    {
      id: id(),
      uuid: uuid(),
      user_id: int(false),
      ...timestamps(),
      organization_id: int(false),
      type: { type: DataTypes.STRING, allowNull: false },
      // camelCase attribute; `underscored` makes the column price_adapter.
      priceAdapter: jsonb(),
    },
    [{ fields: ["uuid"], unique: true }, { fields: ["user_id"] }, { fields: ["organization_id"] }, { fields: ["type"] }],
  );
  const PsAgent = define(
    "PsAgent",
    "ps_agents",
    {
      id: id(),
      uuid: uuid(),
      user_id: int(false),
      ...timestamps(),
      class_id: int(false),
      group_id: int(false),
      configuration: jsonb(),
      parent_agent_id: int(true),
    },
    [{ fields: ["uuid"], unique: true }, { fields: ["user_id"] }, { fields: ["class_id"] }, { fields: ["group_id"] }, { fields: ["parent_agent_id"] }],
  );
  const PsAgentConnector = define(
    "PsAgentConnector",
    "ps_agent_connectors",
    { id: id(), uuid: uuid(), user_id: int(false), ...timestamps(), class_id: int(false), group_id: int(false), configuration: jsonb() },
    [{ fields: ["uuid"], unique: true }, { fields: ["user_id"] }, { fields: ["class_id"] }, { fields: ["group_id"] }],
  );
  // PolicySynth's model has the seed's columns only; the two cache-write counters exist in the
  // table (addColumn) but not in the model, so create/findAll never see them and only a raw
  // `increment` (which passes unknown columns through) writes them.
  const counters: ModelAttributes = {};
  for (const [, column] of MODEL_USAGE_COUNTERS) {
    if (!(CACHE_WRITE_COLUMNS as readonly string[]).includes(column)) counters[column] = counter();
  }
  const PsModelUsage = define(
    "PsModelUsage",
    "ps_model_usage",
    { id: id(), user_id: int(false), ...timestamps(), model_id: int(false), ...counters, agent_id: int(true), connector_id: int(true) },
    [{ fields: ["user_id"] }, { fields: ["model_id"] }, { fields: ["agent_id"] }, { fields: ["connector_id"] }],
  );
  const PsExternalApiUsage = define(
    "PsExternalApiUsage",
    "ps_external_api_usage",
    {
      id: id(),
      user_id: int(false),
      ...timestamps(),
      external_api_id: int(false),
      call_count: int(false), // no default, as in PolicySynth
      agent_id: int(true),
      connector_id: int(true),
    },
    [{ fields: ["user_id"] }, { fields: ["external_api_id"] }, { fields: ["agent_id"] }, { fields: ["connector_id"] }],
  );
  const PsModelUsageItem = define(
    "PsModelUsageItem",
    "ps_model_usage_item",
    { id: id(), user_id: int(false), ...timestamps(), model_id: int(false), agent_id: int(false), connector_id: int(true), data: jsonb() },
    [{ fields: ["user_id"] }, { fields: ["model_id"] }, { fields: ["agent_id"] }, { fields: ["connector_id"] }, { fields: ["created_at"] }],
  );

  // associate(), in the order initializeModels() calls them (PsAgentClass, User, Group,
  // PsExternalApiUsage, PsModelUsage, PsModelUsageItem, PsAgentConnector, PsAgent, PsAgentAuditLog,
  // PsAgentConnectorClass, PsAgentRegistry, PsAiModel, PsExternalApi). Only the associations that
  // put a foreign key on the tables above are repeated. Order matters: when two associations
  // name the same column, Sequelize keeps the first one's reference.
  // PsAgentClass
  PsAgentClass.belongsTo(User, { foreignKey: "user_id", as: "Owner" });
  PsAgentClass.hasMany(PsAgent, { foreignKey: "class_id", as: "Agents" });
  // PsExternalApiUsage
  PsExternalApiUsage.belongsTo(PsAgent, { foreignKey: "agent_id", as: "Agent" });
  PsExternalApiUsage.belongsTo(PsAgentConnector, { foreignKey: "connector_id", as: "Connector" });
  // PsModelUsage and PsModelUsageItem have no associate().
  // PsAgentConnector
  PsAgentConnector.belongsTo(PsAgentConnectorClass, { foreignKey: "class_id", as: "Class" });
  PsAgentConnector.belongsTo(User, { foreignKey: "user_id", as: "User" });
  PsAgentConnector.belongsTo(Group, { foreignKey: "group_id", as: "Group" });
  PsAgentConnector.hasMany(PsExternalApiUsage, { foreignKey: "connector_id", as: "ExternalApiUsage" });
  PsAgentConnector.hasMany(PsModelUsage, { foreignKey: "connector_id", as: "ModelUsage" });
  // PsAgent
  PsAgent.belongsTo(PsAgentClass, { foreignKey: "class_id", as: "Class" });
  PsAgent.belongsTo(User, { foreignKey: "user_id", as: "User" });
  PsAgent.belongsTo(Group, { foreignKey: "group_id", as: "Group" });
  PsAgent.hasMany(PsExternalApiUsage, { foreignKey: "agent_id", as: "ExternalApiUsage" });
  PsAgent.hasMany(PsModelUsage, { foreignKey: "agent_id", as: "ModelUsage" });
  // PolicySynth declares this one on parent_agent_id (as "AiModel") before the sub-agent pair.
  PsAgent.belongsTo(PsAiModel, { foreignKey: "parent_agent_id", as: "AiModel" });
  PsAgent.hasMany(PsAgent, { foreignKey: "parent_agent_id", as: "SubAgents" });
  PsAgent.belongsTo(PsAgent, { foreignKey: "parent_agent_id", as: "ParentAgent" });
  // PsAgentConnectorClass
  PsAgentConnectorClass.belongsTo(User, { foreignKey: "user_id", as: "Owner" });
  PsAgentConnectorClass.hasMany(PsAgentConnector, { foreignKey: "class_id", as: "Connectors" });

  if (options.now) {
    // `timestamps: true` makes Sequelize add attributes `createdAt` / `updatedAt` (fields
    // created_at / updated_at) beside the ones the model declares, and it stamps rows through
    // them: with no default of their own they take Sequelize's clock. A function default (never
    // written to the database) makes them take this one.
    const clock = () => options.now!();
    for (const m of [Group, PsAgentClass, PsAgentConnectorClass, PsAiModel, PsExternalApi, PsAgent, PsAgentConnector, PsModelUsage, PsExternalApiUsage, PsModelUsageItem]) {
      const attributes = m.getAttributes() as Record<string, { defaultValue?: unknown }>;
      attributes.createdAt.defaultValue = clock;
      attributes.updatedAt.defaultValue = clock;
    }
  }

  return {
    sequelize,
    User,
    Group,
    PsAgentClass,
    PsAgentConnectorClass,
    PsAiModel,
    PsExternalApi,
    PsAgent,
    PsAgentConnector,
    PsModelUsage,
    PsExternalApiUsage,
    PsModelUsageItem,
    close: () => sequelize.close(),
  };
}

/** `ps_model_usage_item`'s indexes as PolicySynth names and adds them. */
const USAGE_ITEM_INDEXES = [["user_id"], ["model_id"], ["agent_id"], ["connector_id"], ["created_at"]];

/** PolicySynth's application-level sync (SYNC_DB_FOR_APP=true), run before `sync()`. */
async function applicationLevelSync(sequelize: Sequelize): Promise<void> {
  const qi = sequelize.getQueryInterface();
  const exists = async (table: string) => {
    try {
      return await qi.describeTable(table);
    } catch {
      return undefined;
    }
  };
  if (!(await exists("ps_model_usage_item"))) {
    await qi.createTable("ps_model_usage_item", {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      user_id: { type: DataTypes.INTEGER, allowNull: false },
      created_at: { type: DataTypes.DATE, allowNull: false, defaultValue: sequelize.literal("CURRENT_TIMESTAMP") },
      updated_at: { type: DataTypes.DATE, allowNull: false, defaultValue: sequelize.literal("CURRENT_TIMESTAMP") },
      model_id: { type: DataTypes.INTEGER, allowNull: false },
      agent_id: { type: DataTypes.INTEGER, allowNull: false },
      connector_id: { type: DataTypes.INTEGER, allowNull: true },
      data: { type: DataTypes.JSONB, allowNull: false },
    });
  }
  const existing = new Set(((await qi.showIndex("ps_model_usage_item")) as { name?: string }[]).map((i) => i.name));
  for (const fields of USAGE_ITEM_INDEXES) {
    const name = `ps_model_usage_item_${fields.join("_")}`;
    if (!existing.has(name)) await qi.addIndex("ps_model_usage_item", fields, { name });
  }
  const usageColumns = await exists("ps_model_usage");
  if (usageColumns) {
    for (const column of CACHE_WRITE_COLUMNS) {
      if (!(column in usageColumns)) {
        await qi.addColumn("ps_model_usage", column, { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });
      }
    }
  }
}

/** One start of a PolicySynth process (SYNC_DB_FOR_APP=true and FORCE_DB_SYNC set). */
async function startPolicySynth(models: PolicySynthModels): Promise<void> {
  await applicationLevelSync(models.sequelize);
  await models.sequelize.sync();
}

/**
 * Builds PolicySynth's schema in the empty database at `url`, as two starts of PolicySynth do
 * (the second adds the cache-write counters to the ps_model_usage the first start's `sync()`
 * made).
 */
export async function createPolicySynthDatabase(url: string): Promise<void> {
  for (let start = 0; start < 2; start++) {
    const models = openPolicySynthModels(url);
    try {
      await startPolicySynth(models);
    } finally {
      await models.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Filling it the way PolicySynth writes
// ---------------------------------------------------------------------------------------------

export type ModelUsageTotals = { events: bigint } & Record<ModelUsageCounter, bigint>;
export interface ExternalApiUsageTotals {
  events: bigint;
  callCount: bigint;
}

/** A running counter row (PolicySynth's findOrCreate + increment), as the fill left it. */
export interface RunningRow {
  readonly id: number;
  readonly agentId: number;
  readonly modelId: number;
  readonly userId: number;
  /** How many calls were added up in it (1 create + increments). */
  readonly calls: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface PolicySynthFill {
  readonly userIds: number[];
  readonly groupIds: number[];
  readonly agentClassIds: number[];
  readonly connectorClassIds: number[];
  readonly modelIds: number[];
  readonly externalApiIds: number[];
  /** Every agent, parents before children. */
  readonly agents: { id: number; parentAgentId: number | null; userId: number }[];
  /** The agent the sub-agent tree hangs from (three levels below it). */
  readonly rootAgentId: number;
  readonly connectorIds: number[];
  readonly runningRows: RunningRow[];
  /** ps_model_usage rows written with a plain `create` (one row per call, older PolicySynth). */
  readonly plainRowIds: number[];
  readonly usageItemIds: number[];
  readonly externalApiUsageIds: number[];
  /** The highest id written per table (for checksums of the rows that existed before). */
  readonly maxIds: Record<PolicySynthTable, number>;
  /** ps_model_usage summed as it should be: per agent (key null: rows without one), per model, in all. */
  readonly modelUsage: { byAgent: Map<number | null, ModelUsageTotals>; byModel: Map<number, ModelUsageTotals>; total: ModelUsageTotals };
  readonly externalApiUsage: {
    byAgent: Map<number | null, ExternalApiUsageTotals>;
    byExternalApi: Map<number, ExternalApiUsageTotals>;
    total: ExternalApiUsageTotals;
  };
  /** The first and last instant written (created_at / updated_at). */
  readonly from: Date;
  readonly until: Date;
}

export interface FillOptions {
  /** Seed of every drawn value (default 10). */
  readonly seed?: number;
  /** Calls per (agent, model) running row (default 6). */
  readonly callsPerRow?: number;
  /** The fill's clock starts here (default 2026-03-02T08:00:00Z) and only moves forward. */
  readonly start?: Date;
}

function zeroTotals(): ModelUsageTotals {
  const t = { events: 0n } as ModelUsageTotals;
  for (const [field] of MODEL_USAGE_COUNTERS) t[field] = 0n;
  return t;
}

const FIELD_OF_COLUMN = new Map<string, ModelUsageCounter>(MODEL_USAGE_COUNTERS.map(([field, column]) => [column, field]));

/** A deterministic v4-shaped UUID from the seeded generator (PolicySynth's are UUIDV4). */
function uuidFrom(random: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16));
  hex[12] = "4";
  hex[16] = "89ab"[Math.floor(random() * 4)];
  const h = hex.join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The ai models the fill creates: PolicySynth's `configuration` with `prices`. */
const MODELS = [
  {
    name: "gpt-4o",
    configuration: {
      type: "text",
      modelSize: "medium",
      provider: "openai",
      model: "gpt-4o",
      active: true,
      prices: { costInTokensPerMillion: 2.5, costOutTokensPerMillion: 10, costInCachedContextTokensPerMillion: 1.25, currency: "USD" },
      maxTokensOut: 16384,
      defaultTemperature: 0.7,
    },
  },
  {
    name: "claude-sonnet-4",
    configuration: {
      type: "text",
      modelSize: "large",
      provider: "anthropic",
      model: "claude-sonnet-4-20250514",
      active: true,
      prices: {
        costInTokensPerMillion: 3,
        costOutTokensPerMillion: 15,
        costInCachedContextTokensPerMillion: 0.3,
        cacheWriteInputCostMultiplier: 1.25,
        longContextTokenThreshold: 200000,
        longContextCostInTokensPerMillion: 6,
        longContextCostInCachedContextTokensPerMillion: 0.6,
        longContextCostOutTokensPerMillion: 22.5,
        currency: "USD",
      },
      maxTokensOut: 64000,
      defaultTemperature: 0.7,
    },
  },
  {
    name: "gemini-2.5-pro",
    configuration: {
      type: "text",
      modelSize: "large",
      provider: "google",
      model: "gemini-2.5-pro",
      active: true,
      prices: {
        costInTokensPerMillion: 1.25,
        costOutTokensPerMillion: 10,
        costInCachedContextTokensPerMillion: 0.31,
        longContextTokenThreshold: 200000,
        longContextCostInTokensPerMillion: 2.5,
        longContextCostInCachedContextTokensPerMillion: 0.625,
        longContextCostOutTokensPerMillion: 15,
        costPerThousandWebSearches: 35,
        flexTokensInPerMillion: 0.625,
        flexTokensOutPerMillion: 5,
        regionalProcessingMargin: 10,
        currency: "USD",
      },
      maxTokensOut: 32000,
      defaultTemperature: 0.7,
    },
  },
  {
    // No cached rate: PolicySynth prices its cached tokens at 0, this package at the input rate.
    name: "o4-mini",
    configuration: {
      type: "reasoning",
      modelSize: "small",
      provider: "openai",
      model: "o4-mini",
      active: true,
      prices: { costInTokensPerMillion: 1.1, costOutTokensPerMillion: 4.4, currency: "USD" },
      maxTokensOut: 100000,
    },
  },
] as const;

const EXTERNAL_APIS = [
  { type: "google_search", priceAdapter: { unitType: "search", pricePerUnit: 0.005, currency: "USD" } },
  { type: "firecrawl_scrape", priceAdapter: { unitType: "page", pricePerUnit: 0.001, currency: "USD", formula: "pages * pricePerUnit" } },
] as const;

/**
 * Writes data into a database `createPolicySynthDatabase` built (or any with PolicySynth's
 * tables), through PolicySynth's models and in PolicySynth's ways: `create` for the catalogue,
 * agents and connectors; one running ps_model_usage row per (model, agent) kept with
 * `findOrCreate` + `increment` in a transaction that also `create`s the call's
 * ps_model_usage_item (so a running row's `updated_at` is after its `created_at`); some plain
 * `create`d usage rows (one per call, as older PolicySynth wrote, with a connector and the
 * reasoning/audio/image counters); and ps_external_api_usage rows. Every value comes from `seed`
 * and a clock that only moves forward from `start`, so two fills with the same options write the
 * same rows. Returns the ids and the totals the rows must sum to.
 */
export async function fillAsPolicySynth(url: string, options: FillOptions = {}): Promise<PolicySynthFill> {
  const random = seededRandom(options.seed ?? 10);
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
  const callsPerRow = options.callsPerRow ?? 6;
  let clock = (options.start ?? new Date("2026-03-02T08:00:00Z")).getTime();
  const from = new Date(clock);
  /** Moves the clock on by 1 minute to `maxMinutes` (whole milliseconds, drawn). */
  const tick = (maxMinutes = 240) => {
    clock += int(60_000, maxMinutes * 60_000);
  };
  const ps = openPolicySynthModels(url, { now: () => new Date(clock) });
  const idOf = (row: Model) => row.get("id") as number;
  try {
    const userIds: number[] = [];
    for (let i = 1; i <= 3; i++) {
      tick(30);
      userIds.push(idOf(await ps.User.create({ name: `Operator ${i}`, email: `operator${i}@example.org` })));
    }
    const groupIds: number[] = [];
    for (let i = 0; i < 2; i++) {
      tick(30);
      groupIds.push(
        idOf(
          await ps.Group.create({
            name: `Policy group ${i + 1}`,
            user_id: userIds[i],
            community_id: 1,
            configuration: { agents: { enabled: true } },
            private_access_configuration: [],
          }),
        ),
      );
    }
    tick(30);
    const agentClassIds = [
      idOf(
        await ps.PsAgentClass.create({
          uuid: uuidFrom(random),
          class_base_id: uuidFrom(random),
          user_id: userIds[0],
          name: "Research agent",
          version: 1,
          configuration: { category: "research", description: "Researches a policy question" },
          available: true,
        }),
      ),
      idOf(
        await ps.PsAgentClass.create({
          uuid: uuidFrom(random),
          class_base_id: uuidFrom(random),
          user_id: userIds[0],
          name: "Web search sub-agent",
          version: 2,
          configuration: { category: "search" },
          available: true,
        }),
      ),
    ];
    const connectorClassIds = [
      idOf(
        await ps.PsAgentConnectorClass.create({
          uuid: uuidFrom(random),
          class_base_id: uuidFrom(random),
          user_id: userIds[0],
          name: "Google Docs",
          version: 1,
          available: true,
          configuration: { classType: "docs" },
        }),
      ),
    ];

    const modelIds: number[] = [];
    for (const m of MODELS) {
      tick(10);
      modelIds.push(idOf(await ps.PsAiModel.create({ uuid: uuidFrom(random), user_id: userIds[0], organization_id: 1, name: m.name, configuration: m.configuration })));
    }
    const externalApiIds: number[] = [];
    for (const a of EXTERNAL_APIS) {
      tick(10);
      externalApiIds.push(idOf(await ps.PsExternalApi.create({ uuid: uuidFrom(random), user_id: userIds[0], organization_id: 1, type: a.type, priceAdapter: a.priceAdapter })));
    }

    // The sub-agent tree: root -> (a, b), a -> (a1), a1 -> (a1x); and a second root of user 2.
    // PolicySynth's sync() points ps_agents.parent_agent_id at ps_ai_models (see associate()),
    // so every parent here (agents 1, 2, 4) must also be a model id (there are four models).
    const agents: { id: number; parentAgentId: number | null; userId: number }[] = [];
    const addAgent = async (parentAgentId: number | null, userId: number, classIndex: number, name: string) => {
      tick(20);
      const row = await ps.PsAgent.create({
        uuid: uuidFrom(random),
        user_id: userId,
        class_id: agentClassIds[classIndex],
        group_id: groupIds[userId === userIds[0] ? 0 : 1],
        configuration: { name, maxTokensOut: 4096 },
        parent_agent_id: parentAgentId,
      });
      agents.push({ id: idOf(row), parentAgentId, userId });
      return idOf(row);
    };
    const rootAgentId = await addAgent(null, userIds[0], 0, "Root research");
    const a = await addAgent(rootAgentId, userIds[0], 1, "Search A");
    await addAgent(rootAgentId, userIds[0], 1, "Search B");
    const a1 = await addAgent(a, userIds[0], 1, "Search A.1");
    await addAgent(a1, userIds[0], 1, "Search A.1.x");
    await addAgent(null, userIds[1], 0, "Second root");

    const connectorIds: number[] = [];
    for (let i = 0; i < 2; i++) {
      tick(10);
      connectorIds.push(
        idOf(
          await ps.PsAgentConnector.create({
            uuid: uuidFrom(random),
            user_id: userIds[i],
            class_id: connectorClassIds[0],
            group_id: groupIds[i],
            configuration: { name: `Docs connector ${i + 1}` },
          }),
        ),
      );
    }

    const byAgent = new Map<number | null, ModelUsageTotals>();
    const byModel = new Map<number, ModelUsageTotals>();
    const total = zeroTotals();
    /** Adds one row's or one call's counters to the expected totals (`newRow`: counts an event). */
    const account = (agentId: number | null, modelId: number, columns: Record<string, number>, newRow: boolean) => {
      if (!byAgent.has(agentId)) byAgent.set(agentId, zeroTotals());
      if (!byModel.has(modelId)) byModel.set(modelId, zeroTotals());
      for (const t of [byAgent.get(agentId)!, byModel.get(modelId)!, total]) {
        if (newRow) t.events += 1n;
        for (const [column, n] of Object.entries(columns)) t[FIELD_OF_COLUMN.get(column)!] += BigInt(n);
      }
    };

    // Running rows: each agent uses two or three of the models; the calls of all pairs interleave
    // in time, as concurrent agents' calls do.
    const pairs: { agentId: number; userId: number; modelIndex: number }[] = [];
    for (const [i, agent] of agents.entries()) {
      const count = 2 + (i % 2);
      for (let k = 0; k < count; k++) pairs.push({ agentId: agent.id, userId: agent.userId, modelIndex: (i + k) % MODELS.length });
    }
    const calls: { agentId: number; userId: number; modelIndex: number }[] = [];
    for (let round = 0; round < callsPerRow; round++) {
      const order = [...pairs];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      calls.push(...order);
    }
    const running = new Map<string, { id: number; agentId: number; modelId: number; userId: number; calls: number; createdAt: Date; updatedAt: Date }>();
    const usageItemIds: number[] = [];
    for (const call of calls) {
      tick(90);
      const model = MODELS[call.modelIndex];
      const modelId = modelIds[call.modelIndex];
      const prices = model.configuration.prices as { longContextTokenThreshold?: number; cacheWriteInputCostMultiplier?: number };
      // A provider's report of one call.
      const longCall = prices.longContextTokenThreshold !== undefined && random() < 0.25;
      const inputTokens = longCall ? int(prices.longContextTokenThreshold!, prices.longContextTokenThreshold! + 60_000) : int(200, 40_000);
      const cachedInTokens = random() < 0.5 ? int(0, Math.floor(inputTokens / 2)) : 0;
      const cacheWriteTokens = prices.cacheWriteInputCostMultiplier !== undefined && random() < 0.5 ? int(100, 5_000) : 0;
      const outputTokens = int(50, 8_000);
      const reasoningTokens = model.configuration.type === "reasoning" ? int(0, outputTokens) : 0;
      // PolicySynth's split: uncached input = input - cached; all-or-nothing long context.
      const isLong = prices.longContextTokenThreshold !== undefined && inputTokens >= prices.longContextTokenThreshold;
      const cols: Record<string, number> = isLong
        ? {
            long_context_token_in_count: inputTokens - cachedInTokens,
            long_context_token_in_cached_context_count: cachedInTokens,
            long_context_token_in_cache_write_count: cacheWriteTokens,
            long_context_token_out_count: outputTokens,
          }
        : {
            token_in_count: inputTokens - cachedInTokens,
            token_in_cached_context_count: cachedInTokens,
            token_in_cache_write_count: cacheWriteTokens,
            token_out_count: outputTokens,
          };
      const key = `${call.agentId}/${modelId}`;
      await ps.sequelize.transaction(async (transaction: Transaction) => {
        // The model has no cache-write attributes: Sequelize would leave them out of the INSERT
        // (with a warning), so a row's first call keeps none of its cache-write tokens and only
        // the increments add them. Leaving them out of `defaults` stores the same and stays quiet.
        const known = Object.fromEntries(Object.entries(cols).filter(([c]) => !(CACHE_WRITE_COLUMNS as readonly string[]).includes(c)));
        const [usage, created] = await ps.PsModelUsage.findOrCreate({
          where: { model_id: modelId, agent_id: call.agentId },
          defaults: { ...known, model_id: modelId, agent_id: call.agentId, user_id: call.userId },
          transaction,
        });
        const stored = created ? known : cols;
        if (!created) await usage.increment(cols, { transaction });
        const r = running.get(key);
        if (r) {
          r.calls++;
          r.updatedAt = new Date(clock);
        } else {
          running.set(key, { id: idOf(usage), agentId: call.agentId, modelId, userId: call.userId, calls: 1, createdAt: new Date(clock), updatedAt: new Date(clock) });
        }
        account(call.agentId, modelId, stored, created);
        const item = await ps.PsModelUsageItem.create(
          {
            user_id: call.userId,
            model_id: modelId,
            agent_id: call.agentId,
            data: {
              accountingVersion: 2,
              provider: model.configuration.provider,
              apiFamily: model.configuration.provider === "openai" ? "responses" : model.configuration.provider,
              model: { id: modelId, name: model.configuration.model, type: model.configuration.type, size: model.configuration.modelSize },
              actor: { userId: call.userId, agentId: call.agentId },
              pricing: { configuredPrices: model.configuration.prices, effectivePrices: model.configuration.prices },
              inferenceType: "standard",
              regionalProcessing: false,
              usageNormalized: {
                tokensIn: inputTokens,
                tokensOut: outputTokens,
                cachedInTokens,
                cacheWriteInputTokens: cacheWriteTokens,
                reasoningTokens,
                audioTokens: 0,
                imageTokens: 0,
                cacheReadInputTokens: cachedInTokens,
              },
              usageRaw: { input_tokens: inputTokens, output_tokens: outputTokens, cached_tokens: cachedInTokens },
              providerMetadata: { builtInTools: { webSearchCallCount: model.configuration.provider === "google" ? int(0, 3) : 0 } },
            },
          },
          { transaction },
        );
        usageItemIds.push(idOf(item));
      });
    }

    // Plain rows, one per call (older PolicySynth, the seed's example): with a connector, the
    // reasoning/audio/image counters, and one without an agent.
    const plainRowIds: number[] = [];
    for (let i = 0; i < 8; i++) {
      tick(180);
      const modelIndex = i % MODELS.length;
      const agentId = i === 7 ? null : agents[i % agents.length].id;
      const userId = agentId === null ? userIds[2] : agents.find((x) => x.id === agentId)!.userId;
      const cols: Record<string, number> = {
        token_in_count: int(100, 20_000),
        token_out_count: int(10, 4_000),
        token_in_cached_context_count: int(0, 1_000),
        token_out_reasoning_count: int(0, 500),
        token_out_audio_count: i % 3 === 0 ? int(1, 300) : 0,
        token_out_image_count: i % 4 === 0 ? int(1, 200) : 0,
        long_context_token_in_count: i === 5 ? int(200_000, 250_000) : 0,
        long_context_token_out_count: i === 5 ? int(100, 2_000) : 0,
        long_context_token_out_reasoning_count: i === 5 ? int(1, 100) : 0,
      };
      const row = await ps.PsModelUsage.create({
        user_id: userId,
        model_id: modelIds[modelIndex],
        agent_id: agentId,
        connector_id: connectorIds[i % connectorIds.length],
        ...cols,
      });
      plainRowIds.push(idOf(row));
      account(agentId, modelIds[modelIndex], cols, true);
    }

    const apiByAgent = new Map<number | null, ExternalApiUsageTotals>();
    const byExternalApi = new Map<number, ExternalApiUsageTotals>();
    const apiTotal: ExternalApiUsageTotals = { events: 0n, callCount: 0n };
    const externalApiUsageIds: number[] = [];
    for (let i = 0; i < 10; i++) {
      tick(120);
      const apiIndex = i % externalApiIds.length;
      const agentId = i === 9 ? null : agents[i % agents.length].id;
      const userId = agentId === null ? userIds[2] : agents.find((x) => x.id === agentId)!.userId;
      const callCount = int(1, 25);
      const row = await ps.PsExternalApiUsage.create({
        user_id: userId,
        external_api_id: externalApiIds[apiIndex],
        call_count: callCount,
        agent_id: agentId,
        connector_id: i % 4 === 0 ? connectorIds[0] : null,
      });
      externalApiUsageIds.push(idOf(row));
      for (const [map, k] of [
        [apiByAgent, agentId],
        [byExternalApi, externalApiIds[apiIndex]],
      ] as const) {
        const m = map as Map<number | null, ExternalApiUsageTotals>;
        if (!m.has(k)) m.set(k, { events: 0n, callCount: 0n });
        m.get(k)!.events += 1n;
        m.get(k)!.callCount += BigInt(callCount);
      }
      apiTotal.events += 1n;
      apiTotal.callCount += BigInt(callCount);
    }

    const last = (ids: number[]) => Math.max(0, ...ids);
    const runningRows = [...running.values()];
    return {
      userIds,
      groupIds,
      agentClassIds,
      connectorClassIds,
      modelIds,
      externalApiIds,
      agents,
      rootAgentId,
      connectorIds,
      runningRows,
      plainRowIds,
      usageItemIds,
      externalApiUsageIds,
      maxIds: {
        users: last(userIds),
        groups: last(groupIds),
        ps_agent_classes: last(agentClassIds),
        ps_agent_connector_classes: last(connectorClassIds),
        ps_ai_models: last(modelIds),
        ps_external_apis: last(externalApiIds),
        ps_agents: last(agents.map((x) => x.id)),
        ps_agent_connectors: last(connectorIds),
        ps_model_usage: last([...runningRows.map((r) => r.id), ...plainRowIds]),
        ps_external_api_usage: last(externalApiUsageIds),
        ps_model_usage_item: last(usageItemIds),
      },
      modelUsage: { byAgent, byModel, total },
      externalApiUsage: { byAgent: apiByAgent, byExternalApi, total: apiTotal },
      from,
      until: new Date(clock),
    };
  } finally {
    await ps.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Checksums
// ---------------------------------------------------------------------------------------------

export interface ChecksumOptions {
  /** Only rows with `id <= maxIds[table]` (e.g. `fill.maxIds`: the rows that existed before). */
  readonly maxIds?: Partial<Record<PolicySynthTable, number>>;
  /** Tables to checksum (default: those of POLICYSYNTH_TABLES that exist). */
  readonly tables?: readonly PolicySynthTable[];
  /**
   * Only these columns per table (default: the whole row), e.g. the columns PolicySynth made, so
   * that columns a migration adds later (with their defaults) do not count as a changed row.
   */
  readonly columns?: Readonly<Record<string, readonly string[]>>;
}

/** The columns each of PolicySynth's tables has now, in order (for `ChecksumOptions.columns`). */
export async function tableColumns(url: string): Promise<Record<string, string[]>> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ table_name: string; column_name: string }>(
      "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ANY($1::text[]) ORDER BY table_name, ordinal_position",
      [[...POLICYSYNTH_TABLES]],
    );
    const columns: Record<string, string[]> = {};
    for (const r of rows) (columns[r.table_name] ??= []).push(r.column_name);
    return columns;
  } finally {
    await client.end();
  }
}

/**
 * md5 of every row of each of PolicySynth's tables, rows in id order, each row as PostgreSQL's
 * text of the whole row (so a changed value, an added column or a dropped row changes it). The
 * session is pinned to UTC and ISO dates first, so the database's or the role's TimeZone /
 * DateStyle never changes the text. A table that does not exist is left out.
 */
export async function tableChecksums(url: string, options: ChecksumOptions = {}): Promise<Record<string, string>> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1");
    const present = await client.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY($1::text[])",
      [options.tables ?? [...POLICYSYNTH_TABLES]],
    );
    const names = new Set(present.rows.map((r) => r.table_name));
    const sums: Record<string, string> = {};
    for (const table of options.tables ?? POLICYSYNTH_TABLES) {
      if (!names.has(table)) continue;
      const maxId = options.maxIds?.[table];
      // `table` is one of the constant names above (checked against the catalog), never input;
      // the column names come from the catalog too.
      const cols = options.columns?.[table];
      const row = cols ? `ROW(${cols.map((c) => `t."${c.replace(/"/g, '""')}"`).join(", ")})::text` : "t::text";
      const result = await client.query<{ sum: string }>(
        `SELECT md5(coalesce(string_agg(${row}, E'\\n' ORDER BY t.id), '')) AS sum FROM "${table}" t WHERE $1::int IS NULL OR t.id <= $1::int`,
        [maxId ?? null],
      );
      sums[table] = result.rows[0].sum;
    }
    return sums;
  } finally {
    await client.end();
  }
}
