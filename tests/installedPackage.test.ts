// The package as an app gets it: packed with `npm pack`, installed from the tarball into an empty
// app folder, compiled with `tsc --strict` (no skipLibCheck, no @types of its own) and run; the
// README's commands run from that folder. The pack is made from a scratch copy of the checkout
// (node_modules linked), so the suite's own dist/ is never rebuilt under the other test files.
// One pack and one install per run; only in the pglite project (nothing here depends on the
// backend).
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import semver from "semver";
import { freePort } from "./support/ports";

const root = path.resolve(__dirname, "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
const here = process.env.PS_USAGE_TEST_BACKEND === "pglite" ? describe : describe.skip;

interface Run {
  code: number | null;
  out: string;
}

/** Runs a command; npm's own npm_* variables (set when the suite runs under `npm test`) are dropped. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string | undefined> = {}): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("npm_") && k !== "DATABASE_URL"));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: { ...base, PRISMA_HIDE_UPDATE_MESSAGE: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

async function ok(cmd: string, args: string[], cwd: string, env?: Record<string, string | undefined>): Promise<string> {
  const r = await run(cmd, args, cwd, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}:\n${r.out}`);
  return r.out;
}

describe("package.json", () => {
  // `npm ci` warned EBADENGINE while package.json claimed node >=20: every runtime dependency that
  // declares engines must accept every Node version the package accepts, or the README must say
  // why the one that does not is harmless.
  test("engines agree with the runtime dependencies, and the Prisma packages share one version", () => {
    const lock = JSON.parse(fs.readFileSync(path.join(root, "package-lock.json"), "utf8"));
    const ours: string = pkg.engines.node;
    const disagree: string[] = [];
    for (const [where, entry] of Object.entries<{ dev?: boolean; engines?: { node?: string } }>(lock.packages)) {
      if (where === "" || entry.dev || !entry.engines?.node) continue;
      if (!semver.subset(ours, entry.engines.node)) disagree.push(where.replace(/^.*node_modules\//, ""));
    }
    const unexplained = disagree.filter((name) => !readme.includes(`\`${name}\``));
    expect(unexplained).toEqual([]);
    expect(new Set([pkg.dependencies.prisma, pkg.dependencies["@prisma/client"], pkg.dependencies["@prisma/adapter-pg"]]).size).toBe(1);
  });
});

here("the packed package, installed in an app folder", () => {
  let tmp: string;
  let copy: string;
  let app: string;
  let tarball: string;
  const npm = "npm";
  const npx = "npx";

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-pkg-"));
    copy = path.join(tmp, "checkout");
    app = path.join(tmp, "app");
    fs.mkdirSync(copy);
    for (const f of ["package.json", "package-lock.json", "tsconfig.json", "prisma.config.ts", "README.md"]) fs.copyFileSync(path.join(root, f), path.join(copy, f));
    for (const d of ["prisma", "scripts", "data"]) fs.cpSync(path.join(root, d), path.join(copy, d), { recursive: true });
    fs.cpSync(path.join(root, "src"), path.join(copy, "src"), { recursive: true, filter: (s) => !s.startsWith(path.join(root, "src", "generated")) });
    fs.symlinkSync(path.join(root, "node_modules"), path.join(copy, "node_modules"), "dir");
  });

  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  // `npm start` builds first; a second start with nothing changed must not regenerate the client or
  // recompile (it took 8 s of every start). A changed schema or source is built again.
  test("npm run build does nothing when nothing changed, and rebuilds what changed", async () => {
    await ok(npm, ["run", "build"], copy);
    const outputs = [path.join(copy, "dist", "src", "index.js"), path.join(copy, "src", "generated", "prisma", "client.ts")];
    const before = outputs.map((f) => fs.statSync(f).mtimeMs);
    const again = await ok(npm, ["run", "build"], copy);
    expect(again).not.toContain("Generated Prisma Client");
    expect(outputs.map((f) => fs.statSync(f).mtimeMs)).toEqual(before);

    fs.appendFileSync(path.join(copy, "prisma", "schema.prisma"), "\n// changed by the test\n");
    fs.appendFileSync(path.join(copy, "src", "index.ts"), "\nexport const BUILD_PROBE = 1;\n");
    const changed = await ok(npm, ["run", "build"], copy);
    expect(changed).toContain("Generated Prisma Client");
    expect(fs.readFileSync(outputs[0], "utf8")).toContain("BUILD_PROBE");
    // Back to the checkout's files for the pack below (prepack rebuilds in full).
    fs.copyFileSync(path.join(root, "prisma", "schema.prisma"), path.join(copy, "prisma", "schema.prisma"));
    fs.copyFileSync(path.join(root, "src", "index.ts"), path.join(copy, "src", "index.ts"));
  }, 240_000);

  test("npm pack, then npm install of the tarball into an empty app", async () => {
    const packed = await ok(npm, ["pack", "--pack-destination", tmp], copy);
    tarball = path.join(tmp, packed.trim().split("\n").pop()!.trim());
    expect(fs.existsSync(tarball)).toBe(true);
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
    // Dependencies come from the registry (the npm cache first); TypeScript at the checkout's version.
    await ok(npm, ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, `typescript@${pkg.devDependencies.typescript}`], app);
    expect(fs.existsSync(path.join(app, "node_modules", "ps-usage", "dist", "src", "index.d.ts"))).toBe(true);
    // The sample price catalog ships with the package (README: Price catalogs).
    expect(fs.existsSync(path.join(app, "node_modules", "ps-usage", "data", "litellm-sample-2026-11.json"))).toBe(true);
  }, 300_000);

  // The README's API examples, as an app writes them.
  const appSource = `
import {
  openDatabase, recordModelUsage, recordModelUsageBatch, recordExternalApiUsage, findModelUsage, sumModelUsage,
  sumAgentTreeUsage, forUser, costReport, setModelPrice, loadReportNames, formatReportTable, formatReportJson,
  UsageValidationError, PsUsageError, Decimal, rebuildRollups, prune, type Database, type ModelUsageRecord, type RebuildRollupsResult,
} from "ps-usage";

async function main(): Promise<void> {
  const db: Database = await openDatabase({ dataDir: "memory://", migrate: true });
  try {
    const modelId: number = (await db.prisma.psAiModel.create({ data: { userId: 1, name: "gpt-app", configuration: {} } })).id;
    const apiId = (await db.prisma.psExternalApi.create({ data: { userId: 1, type: "search", priceAdapter: {} } })).id;
    const agentId = (await db.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1 } })).id;
    await setModelPrice(db, modelId, { currency: "USD", costInTokensPerMillion: 2.5, costOutTokensPerMillion: "10" }, new Date("2025-01-01T00:00:00Z"));
    const row: ModelUsageRecord = await recordModelUsage(db, { userId: 42, modelId, agentId, tokenInCount: 1000, tokenOutCount: 800 });
    await recordModelUsage(db, { userId: 42, modelId, tokenInCount: 5 }, { idempotencyKey: "call-8f2c" });
    await recordModelUsage(db, { userId: 42, modelId, tokenInCount: 5 }, { idempotencyKey: "call-8f2c" });
    const { count } = await recordModelUsageBatch(db, [{ userId: 42, modelId, tokenInCount: 1000 }, { userId: 42, modelId, agentId, tokenOutCount: 50 }]);
    await recordExternalApiUsage(db, { userId: 42, externalApiId: apiId, agentId, callCount: 5 });
    await forUser(db, 42).recordModelUsage({ modelId, tokenInCount: 100 });
    const page = await findModelUsage(db, { userId: 42 }, { limit: 500 });
    const [total] = await sumModelUsage(db, { where: { userId: 42 } });
    const tree = await sumAgentTreeUsage(db, agentId);
    const report = await costReport(db, { groupBy: ["modelId"] });
    const names = await loadReportNames(db, report.rows);
    const table: string = formatReportTable(report, names, { keys: ["modelId"], timeZone: "UTC" });
    let refused = "";
    try {
      await recordModelUsage(db, { userId: 42, modelId, tokenInCount: -1 });
    } catch (e) {
      if (e instanceof UsageValidationError && e instanceof PsUsageError) refused = e.issues.map((i) => i.field).join(",");
    }
    const sum: Decimal = new Decimal("0.1").plus("0.2");
    const check: RebuildRollupsResult = await rebuildRollups(db, { dryRun: true });
    const pruned = await prune(db, { before: new Date("2025-01-01T00:00:00Z"), dryRun: true });
    console.log(JSON.stringify({
      firstId: typeof row.id, count, rows: page.items.length, events: String(total.events), tokenInCount: String(total.tokenInCount),
      tokenOutCount: String(total.tokenOutCount), treeCalls: String(tree.total.externalApiUsage.callCount), refused, sum: sum.toString(),
      reportJson: formatReportJson(report).length > 0, table: table.includes("gpt-app"),
      rollupDifferences: check.modelUsage.differences + check.externalApiUsage.differences, prunable: pruned.modelUsage.deleted,
    }));
  } finally {
    await db.close();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
`;

  test("its public types compile under tsc --strict without skipLibCheck, and the app runs", async () => {
    fs.writeFileSync(path.join(app, "app.ts"), appSource);
    const tsc = path.join(app, "node_modules", ".bin", "tsc");
    // As on a command line: strict, no tsconfig, no skipLibCheck; node16 resolution reads the
    // package's "exports".
    await ok(tsc, ["--strict", "--target", "es2022", "--module", "node16", "--outDir", "out", "app.ts"], app);
    const result = JSON.parse((await ok(process.execPath, [path.join(app, "out", "app.js")], app)).trim().split("\n").pop()!);
    expect(result).toEqual({
      firstId: "number",
      count: 2,
      rows: 5,
      events: "5",
      tokenInCount: String(1000 + 5 + 1000 + 100),
      tokenOutCount: String(800 + 50),
      treeCalls: "5",
      refused: "tokenInCount",
      sum: "0.3",
      reportJson: true,
      table: true,
      rollupDifferences: 0,
      prunable: 0,
    });
  }, 120_000);

  // The README's commands, from the app folder.
  test("npx ps-usage migrate and status, and npx prisma with the package's config", async () => {
    const dir = path.join(app, "usage-db");
    const migrated = await ok(npx, ["ps-usage", "migrate", "--db", dir], app);
    expect(migrated).toContain(dir);
    const status = await ok(npx, ["ps-usage", "status", "--db", dir], app);
    expect(status).toContain("Pending migrations (0): none");
    expect(status).toContain("Database schema is up to date.");

    const config = "node_modules/ps-usage/prisma.config.ts";
    expect(readme).toContain(`--config ${config}`);
    const validate = await ok(npx, ["prisma", "validate", "--config", config], app);
    expect(validate).toContain("is valid");

    // Without a reachable engine download (as offline), Prisma Migrate names the offline way.
    const hasEngine = fs.readdirSync(path.join(app, "node_modules", "@prisma", "engines")).some((f) => f.startsWith("schema-engine"));
    if (!hasEngine) {
      const deploy = await run(npx, ["prisma", "migrate", "deploy", "--config", config], app, {
        DATABASE_URL: "postgresql://postgres@127.0.0.1:9/usage",
        PRISMA_ENGINES_MIRROR: "http://127.0.0.1:9",
      });
      expect(deploy.code).not.toBe(0);
      expect(deploy.out).toContain("npx ps-usage migrate");
    }
  }, 180_000);

  test("npx ps-usage studio and npx prisma studio --config serve Studio from the app folder", async () => {
    const dir = path.join(app, "usage-db");
    for (const [args, env] of [
      [["ps-usage", "studio", "--db", dir, "--port", "0"], {}],
      [["prisma", "studio", "--config", "node_modules/ps-usage/prisma.config.ts", "--browser", "none", "--port", "0"], { DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/postgres" }],
    ] as const) {
      const port = await freePort();
      const argv = args.map((a) => (a === "0" ? String(port) : a));
      const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("npm_") && k !== "DATABASE_URL"));
      const child = spawn(npx, argv, { cwd: app, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
      let out = "";
      child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
      child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
      try {
        const status = await waitForPage(`http://127.0.0.1:${port}/`, 60_000, () => out);
        expect(status).toBe(200);
      } finally {
        const exited = new Promise((r) => child.once("exit", r));
        process.kill(-child.pid!, "SIGTERM");
        await exited;
      }
    }
  }, 180_000);
});


async function waitForPage(url: string, ms: number, output: () => string): Promise<number> {
  const until = Date.now() + ms;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      http.get(url, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", () => resolve(0));
    });
    if (status) return status;
    if (Date.now() > until) throw new Error(`no page at ${url} after ${ms} ms:\n${output()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
