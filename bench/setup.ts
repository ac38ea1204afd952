/**
 * Opening the two backends the benchmark runs on, each with a fresh migrated database, and
 * creating the rows usage points at (models, the agent forest, connectors).
 */
import { randomBytes } from "node:crypto";
import { Client, Pool, type PoolClient } from "pg";
import { openDatabase, type Database } from "../src";
import { agentForest, CONNECTOR_COUNT, MODEL_PROFILES, type IdMap } from "./data";

/** Where the scratch PostgreSQL databases are created. */
export const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

/** One backend under test: the package's database handle plus plain SQL access to the same data. */
export interface Backend {
  readonly kind: "postgresql" | "pglite";
  readonly db: Database;
  /** Plain parameterized SQL on the same database (a `pg` pool on PostgreSQL, PGlite itself otherwise). */
  sql<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** The scratch database's URL (PostgreSQL only). */
  readonly url?: string;
  /** A `pg` pool of the baselines' own on PostgreSQL; undefined on PGlite. */
  readonly pool?: Pool;
  ids: IdMap;
  close(): Promise<void>;
}

/** Runs one statement on the admin database (CREATE / DROP DATABASE). */
export async function admin(statement: string): Promise<void> {
  const client = new Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** The URL of `database` on the benchmark's server. */
export function urlFor(database: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a scratch PostgreSQL database, migrated, with the baselines' own pool beside it. */
export async function openPostgresBackend(): Promise<Backend> {
  const name = `ps_usage_bench_${process.pid}_${randomBytes(3).toString("hex")}`;
  await admin(`CREATE DATABASE "${name}"`);
  const url = urlFor(name);
  let db: Database;
  try {
    // The package bounds each statement to 30 s by default; a createMany or Sequelize chunk of
    // 20,000 rows on a loaded 2-core machine can take longer, and the bench times, not bounds.
    db = await openDatabase({ url, migrate: true, writeTimeoutMs: 3_600_000 });
  } catch (err) {
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    throw err;
  }
  const pool = new Pool({ connectionString: url, max: 4 });
  pool.on("error", () => undefined);
  const backend: Backend = {
    kind: "postgresql",
    db,
    url,
    pool,
    ids: { modelIds: [], agentIds: [], connectorIds: [] },
    async sql(text, params) {
      return (await pool.query(text, params ? [...params] : undefined)).rows;
    },
    async close() {
      await db.close();
      await pool.end();
      await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
  backend.ids = await createUniverse(backend);
  return backend;
}

/** Opens a PGlite database (in memory unless `dataDir` is given), migrated. */
export async function openPgliteBackend(dataDir = "memory://", createRows = true): Promise<Backend> {
  const db = await openDatabase({ dataDir, migrate: true });
  const pglite = db.pglite!;
  const backend: Backend = {
    kind: "pglite",
    db,
    ids: { modelIds: [], agentIds: [], connectorIds: [] },
    async sql(text, params) {
      return (await pglite.query(text, params ? [...params] : undefined)).rows as never[];
    },
    async close() {
      await db.close();
    },
  };
  if (createRows) backend.ids = await createUniverse(backend);
  return backend;
}

/** Creates the models, the agent forest (parents first) and the connectors; returns their ids. */
async function createUniverse(backend: Backend): Promise<IdMap> {
  const modelIds: number[] = [];
  for (const m of MODEL_PROFILES) {
    const rows = await backend.sql<{ id: number }>(
      `INSERT INTO ps_ai_models (user_id, name, configuration) VALUES (1, $1, $2) RETURNING id`,
      [m.name, JSON.stringify({ prices: m.prices })],
    );
    modelIds.push(rows[0].id);
  }
  const agentIds: number[] = [];
  for (const parent of agentForest(1)) {
    const rows = await backend.sql<{ id: number }>(
      `INSERT INTO ps_agents (user_id, class_id, group_id, parent_agent_id) VALUES (1, 1, 1, $1) RETURNING id`,
      [parent < 0 ? null : agentIds[parent]],
    );
    agentIds.push(rows[0].id);
  }
  const connectorIds: number[] = [];
  for (let i = 0; i < CONNECTOR_COUNT; i++) {
    const rows = await backend.sql<{ id: number }>(
      `INSERT INTO ps_agent_connectors (user_id, class_id, group_id) VALUES (1, 1, 1) RETURNING id`,
    );
    connectorIds.push(rows[0].id);
  }
  return { modelIds, agentIds, connectorIds };
}

/** Empties the usage table (and its idempotency keys) so the next contender starts clean. */
export async function truncateUsage(backend: Backend): Promise<void> {
  await backend.sql(`TRUNCATE ps_model_usage RESTART IDENTITY CASCADE`);
}

/** Row count and SUM(token_in_count) of the usage table, to check an ingest stored everything. */
export async function tableTotals(backend: Backend): Promise<{ rows: number; tokenIn: bigint }> {
  const [row] = await backend.sql<{ rows: string | number; token_in: string | number | null }>(
    `SELECT COUNT(*)::text AS rows, COALESCE(SUM(token_in_count), 0)::text AS token_in FROM ps_model_usage`,
  );
  return { rows: Number(row.rows), tokenIn: BigInt(row.token_in ?? 0) };
}

/** Runs `fn` on one client of `pool` inside BEGIN … COMMIT, rolled back if it throws. */
export async function poolTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
