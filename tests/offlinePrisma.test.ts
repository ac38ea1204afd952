import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(__dirname, "..");

function runPrisma(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [require.resolve("prisma/build/index.js", { paths: [root] }), ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stderr += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr, ms: Date.now() - started }));
  });
}

// Prisma downloads its native schema engine on first use of `migrate`/`db`. Where that cannot
// happen (here: a mirror address that refuses connections, as on an offline machine), the user
// must get the offline alternative, quickly, not a bare network error or a hang.
// A machine that already has the engine has nothing to explain: the test is skipped there.
const engineDir = path.join(root, "node_modules", "@prisma", "engines");
const hasEngine = fs.readdirSync(engineDir).some((f) => f.startsWith("schema-engine"));
(hasEngine ? test.skip : test)("prisma migrate without a reachable engine download names ps-usage migrate", async () => {
  const r = await runPrisma(["migrate", "status"], {
    PRISMA_ENGINES_MIRROR: "http://127.0.0.1:9",
    PRISMA_SCHEMA_ENGINE_BINARY: "",
    DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/postgres",
  });
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("npx ps-usage migrate");
  expect(r.stderr).toContain("npx ps-usage status");
  expect(r.ms).toBeLessThan(60_000);
});

test("prisma validate works offline with the package's schema", async () => {
  const r = await runPrisma(["validate"], { PRISMA_SCHEMA_ENGINE_BINARY: path.join(root, "scripts", "no-schema-engine.js") });
  expect(r.stderr).toContain("is valid");
  expect(r.code).toBe(0);
});
