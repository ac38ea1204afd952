import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { openDatabase, type Database } from "../../src";
import { backend, createScratchDatabase } from "./testDatabase";

/** The built binary: `npm test` builds dist/ before jest runs. */
export const CLI = path.resolve(__dirname, "..", "..", "dist", "src", "cli.js");

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `ps-usage <args>` as a user would, with `input` on standard input. */
export function runCli(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...options.env };
    delete env.DATABASE_URL;
    Object.assign(env, options.env);
    const child = spawn(process.execPath, [CLI, ...args], { env, cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/**
 * A database that outlives each CLI process: a scratch PostgreSQL database, or a PGlite
 * directory (PGlite allows one process at a time, so CLI runs and `withDb` take turns).
 */
export interface CliDatabase {
  /** What to pass as `--db`. */
  readonly arg: string;
  /** Opens it in this process for `fn`, then closes it again. */
  withDb<T>(fn: (db: Database) => Promise<T>, options?: { migrate?: boolean }): Promise<T>;
  drop(): Promise<void>;
}

/** Creates an empty database for CLI tests on this jest project's backend. */
export async function createCliDatabase(tmpPrefix: string): Promise<CliDatabase> {
  const pg = backend === "postgres" ? await createScratchDatabase() : null;
  const arg = pg ? pg.url : fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
  return {
    arg,
    async withDb(fn, options) {
      const db = await openDatabase(pg ? { url: arg, migrate: options?.migrate } : { dataDir: arg, migrate: options?.migrate });
      try {
        return await fn(db);
      } finally {
        await db.close();
      }
    },
    drop: pg ? pg.drop : async () => fs.rmSync(arg, { recursive: true, force: true }),
  };
}
