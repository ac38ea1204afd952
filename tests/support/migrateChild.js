// A separate process that migrates one database, for tests/migrateProcesses.pg.test.ts.
//   node migrateChild.js <postgres url> [migrationsDir]
// It opens the database, prints "ready", waits for a line on stdin (so that several children
// start migrating at the same moment), migrates, and prints one JSON line with the result.
// Exit code: 0 applied (or nothing to apply), 2 MigrationError, 1 anything else.
require("./tsRegister");
const readline = require("node:readline");
// The modules themselves rather than the barrel: this child needs only the foundation.
const { openDatabase } = require("../../src/db");
const { migrate } = require("../../src/schema/migrate");
const { MigrationError } = require("../../src/errors");

async function main() {
  const [url, migrationsDir] = process.argv.slice(2);
  const db = await openDatabase({ url, poolSize: 2 });
  try {
    process.stdout.write("ready\n");
    await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once("line", resolve));
    const result = await migrate(db, migrationsDir ? { migrationsDir } : {});
    process.stdout.write(`${JSON.stringify({ applied: result.applied })}\n`);
  } catch (err) {
    const migrationError = err instanceof MigrationError;
    process.stdout.write(`${JSON.stringify({ error: err.name, migration: err.migration, message: err.message })}\n`);
    process.exitCode = migrationError ? 2 : 1;
  } finally {
    await db.close();
    process.stdin.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
