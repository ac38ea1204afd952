import { Client } from "pg";

/** A session that holds `FOR UPDATE` on one agent row until released: inserts referencing that agent block at their foreign key check. */
export async function lockAgentRow(url: string, agentId: number): Promise<{ release: () => Promise<void> }> {
  const client = new Client({ connectionString: url, application_name: "ps-usage-test-locker" });
  // A restarting server closes this session too; that is expected, not a crash.
  client.on("error", () => undefined);
  await client.connect();
  await client.query("BEGIN");
  await client.query("SELECT id FROM ps_agents WHERE id = $1 FOR UPDATE", [agentId]);
  return {
    async release() {
      await client.query("ROLLBACK").catch(() => undefined);
      await client.end().catch(() => undefined);
    },
  };
}
