// A database whose own defaults are not UTC / ISO (postgresql.conf written with the host's zone,
// `ALTER DATABASE … SET timezone`, a non-ISO DateStyle): the package pins its sessions, so every
// instant is stored and read back as given, on PostgreSQL and on PGlite, single and batch alike.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { Client } from "pg";
import {
  costReport,
  findModelUsage,
  openDatabase,
  recordModelUsage,
  recordModelUsageBatch,
  setModelPrice,
  sumModelUsage,
  type Database,
} from "../src";
import { createAgent, createModel } from "./support/fixtures";
import { backend, createScratchDatabase } from "./support/testDatabase";

/** East of UTC, west of UTC with DST, a half-hour zone; each with a DateStyle that is not ISO. */
const SETUPS = [
  { timeZone: "Asia/Tokyo", dateStyle: "SQL, DMY" },
  { timeZone: "America/Los_Angeles", dateStyle: "German, DMY" },
  { timeZone: "Asia/Kolkata", dateStyle: "Postgres, YMD" },
] as const;

/** A database (of this project's backend) whose defaults are the setup's; dispose removes it. */
async function openSkewedDatabase(setup: (typeof SETUPS)[number]): Promise<{ db: Database; dispose: () => Promise<void> }> {
  const settings = `SET timezone TO '${setup.timeZone}'`;
  const datestyle = `SET datestyle TO '${setup.dateStyle}'`;
  if (backend === "postgres") {
    const scratch = await createScratchDatabase();
    const c = new Client({ connectionString: scratch.url });
    await c.connect();
    await c.query(`ALTER DATABASE "${scratch.name}" ${settings}`);
    await c.query(`ALTER DATABASE "${scratch.name}" ${datestyle}`);
    await c.end();
    const db = await openDatabase({ url: scratch.url, migrate: true });
    return { db, dispose: async () => (await db.close(), await scratch.drop()) };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-tz-"));
  // PGlite starts in single-user mode, which ignores ALTER DATABASE defaults but reads
  // postgresql.auto.conf: ALTER SYSTEM is how an embedded directory gets such defaults.
  const raw = await PGlite.create(dir);
  await raw.exec(`ALTER SYSTEM ${settings}`);
  await raw.exec(`ALTER SYSTEM ${datestyle}`);
  await raw.close();
  const db = await openDatabase({ dataDir: dir, migrate: true });
  return { db, dispose: async () => (await db.close(), fs.rmSync(dir, { recursive: true, force: true })) };
}

describe.each(SETUPS)("a database whose defaults are TimeZone $timeZone, DateStyle $dateStyle", (setup) => {
  let db: Database;
  let dispose: () => Promise<void>;
  let modelId: number;
  let agentId: number;
  // A price change at an instant that is not midnight anywhere near, and events exactly at it.
  const priceChange = new Date("2026-03-10T10:15:30.250Z");
  const instants = [
    new Date("2026-03-09T23:59:59.999Z"),
    new Date("2026-03-10T00:00:00.000Z"),
    priceChange,
    new Date(priceChange.getTime() - 1),
    new Date("2026-03-10T23:30:00.001Z"),
  ];

  beforeAll(async () => {
    ({ db, dispose } = await openSkewedDatabase(setup));
    modelId = await createModel(db, "m");
    agentId = await createAgent(db);
    await setModelPrice(db, modelId, { currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "2" }, new Date("2026-01-01T00:00:00Z"));
    await setModelPrice(db, modelId, { currency: "USD", costInTokensPerMillion: "1", costOutTokensPerMillion: "1" }, priceChange);
  });
  afterAll(() => dispose());

  test("the database really has those defaults (else this file proves nothing)", async () => {
    const rows = await db.driver.query<{ tz: string }>("SELECT current_setting('timezone') AS tz");
    // Our sessions are pinned; the database default is what pg_db_role_setting holds.
    expect(rows[0].tz).toBe("UTC");
    // The defaults a session that pins nothing would get (RESET goes back to them).
    const defaults = await db.driver.query<{ tz: string; ds: string }>(
      "SELECT reset_val AS tz, (SELECT reset_val FROM pg_settings WHERE name = 'DateStyle') AS ds FROM pg_settings WHERE name = 'TimeZone'",
    );
    expect(defaults[0]).toEqual({ tz: setup.timeZone, ds: setup.dateStyle });
  });

  test("record -> find -> sum -> bucket -> cost: single and batch agree to the millisecond", async () => {
    const singles = [];
    for (const createdAt of instants) singles.push(await recordModelUsage(db, { userId: 1, modelId, agentId, tokenInCount: 1_000_000, createdAt }));
    expect(singles.map((r) => r.createdAt.toISOString())).toEqual(instants.map((d) => d.toISOString()));
    const { ids } = await recordModelUsageBatch(
      db,
      instants.map((createdAt) => ({ userId: 2, modelId, agentId, tokenInCount: 1_000_000, createdAt })),
      { returnIds: true },
    );

    // The stored instants, read as epoch milliseconds (independent of any session's zone).
    const stored = await db.driver.query<{ id: number; ms: string }>(
      "SELECT id, (extract(epoch FROM created_at) * 1000)::bigint::text AS ms FROM ps_model_usage ORDER BY id",
    );
    const byId = new Map(stored.map((r) => [r.id, Number(r.ms)]));
    expect(singles.map((r) => byId.get(r.id))).toEqual(instants.map((d) => d.getTime()));
    expect(ids!.map((id) => byId.get(id))).toEqual(instants.map((d) => d.getTime()));

    for (const userId of [1, 2]) {
      const page = await findModelUsage(db, { userId }, { order: "oldest" });
      expect(page.items.map((r) => r.createdAt.toISOString())).toEqual(
        [...instants].sort((a, b) => a.getTime() - b.getTime()).map((d) => d.toISOString()),
      );
      const fromPrice = await findModelUsage(db, { userId, from: priceChange }, { order: "oldest" });
      expect(fromPrice.items.map((r) => r.createdAt.toISOString())).toEqual([priceChange.toISOString(), "2026-03-10T23:30:00.001Z"]);
    }

    const days = await sumModelUsage(db, { groupBy: ["userId"], bucket: "day" });
    expect(days.map((r) => [r.userId, r.bucketStart.toISOString(), r.events])).toEqual([
      [1, "2026-03-09T00:00:00.000Z", 1n],
      [1, "2026-03-10T00:00:00.000Z", 4n],
      [2, "2026-03-09T00:00:00.000Z", 1n],
      [2, "2026-03-10T00:00:00.000Z", 4n],
    ]);
    const tokyoDays = await sumModelUsage(db, { bucket: "day", timeZone: "Asia/Tokyo" });
    expect(tokyoDays.map((r) => [r.bucketStart.toISOString(), r.events])).toEqual([
      ["2026-03-09T15:00:00.000Z", 8n],
      ["2026-03-10T15:00:00.000Z", 2n],
    ]);

    // Before the change: 3 events per user at 2/M; at and after it: 2 per user at 1/M.
    const report = await costReport(db, { groupBy: "userId" });
    expect(report.rows.map((r) => [r.userId, r.currency, r.cost])).toEqual([
      [1, "USD", "8"],
      [2, "USD", "8"],
    ]);
  });

  test("the default createdAt is the database's now, not shifted by the zone's offset", async () => {
    const before = Date.now();
    const row = await recordModelUsage(db, { userId: 3, modelId });
    const after = Date.now();
    // Generous for clock and round trip, far below any of these zones' offsets (>= 5 h).
    expect(row.createdAt.getTime()).toBeGreaterThan(before - 60_000);
    expect(row.createdAt.getTime()).toBeLessThan(after + 60_000);
    const [found] = (await findModelUsage(db, { userId: 3 })).items;
    expect(found.createdAt.getTime()).toBe(row.createdAt.getTime());
    const { count } = await recordModelUsageBatch(db, [{ userId: 4, modelId }]);
    expect(count).toBe(1);
    const [batchRow] = (await findModelUsage(db, { userId: 4 })).items;
    expect(Math.abs(batchRow.createdAt.getTime() - row.createdAt.getTime())).toBeLessThan(60_000);
  });
});
