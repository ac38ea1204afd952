// partitionMonthly on a real PostgreSQL server without pg_partman refuses, naming the Debian
// package, and changes nothing. The shared test server has pg_partman (tests/partitions.pg), so the
// test starts a private server (tests/support/privatePostgres) from a copy of this machine's
// installation that lacks pg_partman's files: the same PostgreSQL, without the extension.
import { Client } from "pg";
import { PartitionRefusedError, openDatabase, partitionMonthly, type Database } from "../src";
import { runCli } from "./support/cli";
import { installationWithout, standbyPrerequisiteProblem, startPrivatePostgres, type PartialInstallation, type PrivatePostgres } from "./support/privatePostgres";

const problem = standbyPrerequisiteProblem();
if (problem) console.warn(`partitionsWithoutPartman.pg.test.ts: skipped, no private PostgreSQL server can be started here: ${problem}`);
const withServer = problem ? describe.skip : describe;

withServer("a PostgreSQL server without pg_partman", () => {
  let installation: PartialInstallation | undefined;
  let server: PrivatePostgres | undefined;
  let url: string;
  let db: Database | undefined;

  const query = async (sql: string): Promise<Record<string, unknown>[]> => {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql)).rows;
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    installation = installationWithout(/pg_partman/);
    server = await startPrivatePostgres(installation.binDir);
    const admin = new Client({ connectionString: server.url });
    await admin.connect();
    await admin.query("CREATE DATABASE ps_usage_no_partman");
    await admin.end();
    url = server.url.replace(/\/postgres$/, "/ps_usage_no_partman");
    db = await openDatabase({ url, migrate: true });
  });
  afterAll(async () => {
    await db?.close();
    await server?.remove();
    installation?.remove();
  });

  test("partitionMonthly and ps-usage partition refuse, naming postgresql-<major>-partman; nothing changed", async () => {
    // The premise: this server offers no pg_partman (the shared one does, from the same files).
    expect(await query("SELECT name FROM pg_available_extensions WHERE name = 'pg_partman'")).toEqual([]);
    const [{ major }] = await query("SELECT (current_setting('server_version_num')::int / 10000)::text AS major");

    const refused = await partitionMonthly(db!).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PartitionRefusedError);
    expect(refused).toMatchObject({ reason: "partman-missing", code: "PS_USAGE_PARTITION_REFUSED" });
    expect((refused as Error).message).toContain(`apt-get install postgresql-${major}-partman`);
    expect((refused as Error).message).toContain("Nothing was changed.");

    await db!.close();
    db = undefined;
    const cli = await runCli(["partition", "--monthly", "--db", url]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`apt-get install postgresql-${major}-partman`);

    // Nothing changed: the ledger is a plain table, no partman schema or extension appeared.
    expect(await query("SELECT relkind FROM pg_class WHERE relname IN ('ps_model_usage', 'ps_external_api_usage') ORDER BY relname")).toEqual([
      { relkind: "r" },
      { relkind: "r" },
    ]);
    expect(await query("SELECT nspname FROM pg_namespace WHERE nspname = 'partman' UNION ALL SELECT extname FROM pg_extension WHERE extname = 'pg_partman'")).toEqual([]);
  });
});
