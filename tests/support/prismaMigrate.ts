// Real Prisma Migrate for the compatibility and drift tests. Prisma 7's native schema engine
// cannot be downloaded on the build machines, so this runs Prisma 6.19.3 with its
// WebAssembly schema engine (`engine: "js"`) talking to PostgreSQL through @prisma/adapter-pg.
// It lives in tests/prisma-migrate-compat, a package of its own (its `prisma` bin would clash
// with Prisma 7's in the root package), installed on first use.
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const COMPAT_DIR = path.resolve(__dirname, "..", "prisma-migrate-compat");
const PRISMA_CLI = path.join(COMPAT_DIR, "node_modules", "prisma", "build", "index.js");
const INSTALLED_MARKER = path.join(COMPAT_DIR, "node_modules", ".ps-usage-installed");
const INSTALL_LOCK = path.join(COMPAT_DIR, ".install-lock");

export const REPO_SCHEMA = path.resolve(__dirname, "..", "..", "prisma", "schema.prisma");
export const REPO_MIGRATIONS = path.resolve(__dirname, "..", "..", "prisma", "migrations");

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout: number }) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(file, args, { ...options, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) + (error && typeof error.code !== "number" ? String(error) : "") });
    });
  });
}

/**
 * Installs the pinned Prisma 6 package (`npm ci`, from its committed lock file) unless it is
 * there already. Test files running at once take turns through a lock directory.
 */
export async function ensurePrisma6(): Promise<void> {
  if (fs.existsSync(INSTALLED_MARKER)) return;
  for (;;) {
    try {
      fs.mkdirSync(INSTALL_LOCK);
      break;
    } catch {
      if (fs.existsSync(INSTALLED_MARKER)) return;
      // A lock left by a killed run: npm ci never takes this long.
      const lock = fs.statSync(INSTALL_LOCK, { throwIfNoEntry: false });
      if (lock && Date.now() - lock.mtimeMs > 10 * 60_000) fs.rmSync(INSTALL_LOCK, { recursive: true, force: true });
      await sleep(500);
    }
  }
  try {
    if (fs.existsSync(INSTALLED_MARKER)) return;
    // --ignore-scripts: the engines' postinstall would try to download the native engine.
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const result = await run(npm, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: COMPAT_DIR,
      timeout: 600_000,
    });
    if (result.code !== 0) throw new Error(`npm ci in ${COMPAT_DIR} failed:\n${result.stdout}\n${result.stderr}`);
    fs.writeFileSync(INSTALLED_MARKER, "");
  } finally {
    fs.rmSync(INSTALL_LOCK, { recursive: true, force: true });
  }
}

/** A temporary directory for one Prisma run; removed by the returned function. */
function scratchDir(): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-prisma6-"));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A copy of a Prisma 7 schema that Prisma 6 accepts: Prisma 6 requires a `url` in the
 * datasource block (Prisma 7 forbids it); with a driver adapter its value is not used.
 */
export function prisma6Schema(source: string, intoDir: string, name = "schema.prisma"): string {
  const text = fs.readFileSync(source, "utf8");
  const target = path.join(intoDir, name);
  if (/^\s*url\s*=/m.test(text)) {
    fs.writeFileSync(target, text);
    return target;
  }
  const withUrl = text.replace(/^(\s*provider\s*=\s*"(?:postgresql|postgres)")/m, '$1\n  url = env("DATABASE_URL")');
  if (withUrl === text) throw new Error(`no postgresql datasource provider line in ${source}`);
  fs.writeFileSync(target, withUrl);
  return target;
}

export interface PrismaRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the Prisma 6 CLI (`args`, e.g. `["migrate", "deploy"]`) against `databaseUrl`, with
 * `schema` (default: the repository's) and `migrationsDir` (default: the repository's).
 * Extra schema files named in `args` must be made with {@link prisma6Schema} first.
 */
export async function runPrisma6(
  args: string[],
  options: { databaseUrl: string; schema?: string; migrationsDir?: string },
): Promise<PrismaRun> {
  await ensurePrisma6();
  const scratch = scratchDir();
  try {
    const schema = prisma6Schema(options.schema ?? REPO_SCHEMA, scratch.dir);
    // Prisma 6 insists on resolving native engine paths even when it uses none of them.
    const noEngine = path.join(scratch.dir, "no-engine");
    fs.writeFileSync(noEngine, "");
    fs.chmodSync(noEngine, 0o755);
    return await run(process.execPath, [PRISMA_CLI, ...args], {
      cwd: COMPAT_DIR, // where prisma.config.js is
      timeout: 180_000,
      env: {
        ...process.env,
        DATABASE_URL: options.databaseUrl,
        PS_COMPAT_SCHEMA: schema,
        PS_COMPAT_MIGRATIONS: options.migrationsDir ?? REPO_MIGRATIONS,
        PRISMA_QUERY_ENGINE_LIBRARY: noEngine,
        PRISMA_SCHEMA_ENGINE_BINARY: noEngine,
        PRISMA_HIDE_UPDATE_MESSAGE: "1",
        CHECKPOINT_DISABLE: "1",
        NO_COLOR: "1",
        FORCE_COLOR: "0",
      },
    });
  } finally {
    scratch.remove();
  }
}

/** The text of a run for a failure message. */
export function describeRun(r: PrismaRun): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}
