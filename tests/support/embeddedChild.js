// A separate process that writes to one embedded (PGlite) directory, for
// tests/embeddedLock.test.ts.
//   node embeddedChild.js <dataDir> <modelId> <rows> <tokenBase> <lockWaitMs> <hold>
// It opens the directory, prints {"opened":pid}, records <rows> model usage rows one by one
// (tokenInCount tokenBase, tokenBase+1, ...), prints {"recorded":rows}, then keeps the database open for <hold> ms, or,
// when <hold> is "stdin", until a line arrives on stdin, or, when <hold> is "block:<ms>", blocks its
// event loop for <ms> (a process starved of CPU, or in a long synchronous call) and then records
// <rows> more (tokenBase+rows, ...); closes it and prints one JSON line
// with the rows it was acknowledged. A failed open prints {"error":name,"message":...}, exit 2.
require("./tsRegister");
const readline = require("node:readline");
const { openDatabase } = require("../../src/db");
const { recordModelUsage } = require("../../src/modelUsage");

async function main() {
  const [dataDir, modelId, rows, tokenBase, lockWaitMs, hold] = process.argv.slice(2);
  let db;
  try {
    db = await openDatabase({ dataDir, lockWaitMs: Number(lockWaitMs) });
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: err.name, code: err.code, message: err.message })}\n`);
    process.exitCode = 2;
    return;
  }
  process.stdout.write(`${JSON.stringify({ opened: process.pid })}\n`);
  const acknowledged = [];
  try {
    for (let i = 0; i < Number(rows); i++) {
      const row = await recordModelUsage(db, { userId: 1, modelId: Number(modelId), tokenInCount: Number(tokenBase) + i });
      acknowledged.push({ id: row.id, tokenInCount: row.tokenInCount });
    }
    // Its rows are committed: a test may now kill it and expect them kept.
    process.stdout.write(`${JSON.stringify({ recorded: acknowledged.length })}\n`);
    if (hold.startsWith("block:")) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(hold.slice(6)));
      for (let i = 0; i < Number(rows); i++) {
        const row = await recordModelUsage(db, { userId: 1, modelId: Number(modelId), tokenInCount: Number(tokenBase) + Number(rows) + i });
        acknowledged.push({ id: row.id, tokenInCount: row.tokenInCount });
      }
    } else if (hold === "stdin") {
      await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once("line", resolve));
    } else {
      await new Promise((resolve) => setTimeout(resolve, Number(hold)));
    }
  } finally {
    await db.close();
    process.stdin.destroy();
  }
  process.stdout.write(`${JSON.stringify({ acknowledged })}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
