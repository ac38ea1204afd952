// Report sessions run with JIT off: a report statement's planner cost (it cannot tell how many
// rollup slots are cut or how many rows a tree's agent ids keep) passes the JIT thresholds, and
// compiling took 0.3 to 2 s for statements that run in milliseconds (bench/SCALE.md, "JIT").
// The write pool keeps whatever the server or database says.
import { Client } from "pg";
import { openDatabase } from "../src";
import { createScratchDatabase } from "./support/testDatabase";

test("the report pool's sessions have JIT off, even where the database turns it on; the write pool's keep the database's setting", async () => {
  const scratch = await createScratchDatabase();
  const c = new Client({ connectionString: scratch.url });
  await c.connect();
  await c.query(`ALTER DATABASE "${scratch.name}" SET jit TO on`);
  await c.end();
  const db = await openDatabase({ url: scratch.url, migrate: true });
  try {
    const [report] = await db.reportPrisma.$queryRaw<{ jit: string }[]>`SELECT current_setting('jit') AS jit`;
    expect(report.jit).toBe("off");
    const [write] = await db.prisma.$queryRaw<{ jit: string }[]>`SELECT current_setting('jit') AS jit`;
    expect(write.jit).toBe("on");
  } finally {
    await db.close();
    await scratch.drop();
  }
});
