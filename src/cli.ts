#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { DEFAULT_DATA_DIR, isPostgresUrl, openDatabase, type Database } from "./db";
import { PsUsageError } from "./errors";
import { migrate, migrationStatus } from "./migrate";
import { startStudio } from "./studio";

/** A mistake the user can fix: printed as one line, no stack trace, exit status 1. */
class UserError extends PsUsageError {
  constructor(message: string) {
    super("PS_USAGE_CLI", message);
  }
}

interface DbOptions {
  db?: string;
}

function dbOption(): Option {
  return new Option(
    "-d, --db <url-or-dir>",
    `database: a postgresql:// URL, a PGlite directory, or memory:// (default: $DATABASE_URL, else ./${DEFAULT_DATA_DIR})`,
  );
}

async function open(opts: DbOptions, migrateFirst = false): Promise<Database> {
  const target = opts.db ?? process.env.DATABASE_URL;
  if (target && isPostgresUrl(target)) return openDatabase({ url: target, migrate: migrateFirst });
  return openDatabase({ dataDir: target ?? DEFAULT_DATA_DIR, migrate: migrateFirst });
}

async function withDb<T>(opts: DbOptions, fn: (db: Database) => Promise<T>, migrateFirst = false): Promise<T> {
  const db = await open(opts, migrateFirst);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function printStatus(db: Database, out: NodeJS.WritableStream): Promise<void> {
  const s = await migrationStatus(db);
  out.write(`Database: ${s.target} (${db.kind === "pglite" ? "embedded PGlite" : "PostgreSQL"})\n`);
  out.write(`Applied migrations (${s.applied.length}):\n`);
  for (const m of s.applied) out.write(`  ${m.name}  ${m.finishedAt?.toISOString() ?? ""}\n`);
  out.write(`Pending migrations (${s.pending.length}):${s.pending.length ? "" : " none"}\n`);
  for (const name of s.pending) out.write(`  ${name}\n`);
  for (const name of s.failed) out.write(`Failed (recorded, not finished): ${name}\n`);
  for (const name of s.modified) out.write(`Modified after it was applied: ${name}\n`);
  for (const name of s.missing) out.write(`Applied but missing on disk: ${name}\n`);
  if (s.pending.length === 0 && s.failed.length === 0 && s.modified.length === 0) out.write("Database schema is up to date.\n");
}

/** Builds the `ps-usage` command line program. Exported for tests. */
export function buildProgram(): Command {
  const program = new Command("ps-usage")
    .description("Record and report AI model and external API usage (PolicySynth's ps_model_usage and ps_external_api_usage).")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();

  program
    .command("migrate")
    .description("apply pending migrations (records them in _prisma_migrations as Prisma Migrate does)")
    .addOption(dbOption())
    .action(async (opts: DbOptions) => {
      await withDb(opts, async (db) => {
        const { applied } = await migrate(db);
        process.stdout.write(
          applied.length ? `Applied ${applied.length} migration(s) to ${db.target}:\n${applied.map((n) => `  ${n}\n`).join("")}` : `No pending migrations: ${db.target} is up to date.\n`,
        );
      });
    });

  program
    .command("status")
    .description("show applied and pending migrations, and which database")
    .addOption(dbOption())
    .action(async (opts: DbOptions) => {
      await withDb(opts, (db) => printStatus(db, process.stdout));
    });

  program
    .command("studio")
    .description("open Prisma Studio on the database (the embedded one too)")
    .addOption(dbOption())
    .option("-p, --port <port>", "port for Studio's web page", "5555")
    .option("--browser <name>", "browser to open, or none", "none")
    .action(async (opts: DbOptions & { port: string; browser: string }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new UserError(`--port: not a port number: ${opts.port}`);
      await withDb(opts, async (db) => {
        const target = opts.db ?? process.env.DATABASE_URL;
        const studio = await startStudio(db, { port, browser: opts.browser, url: target && isPostgresUrl(target) ? target : undefined });
        process.stdout.write(`Prisma Studio on ${studio.studioUrl} for ${db.target}. Press Ctrl-C to stop.\n`);
        const stop = () => void studio.stop();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        await studio.done;
      });
    });

  program
    .command("main")
    .description("the main job (npm start): migrate the database and show its status")
    .addOption(dbOption())
    .action(async (opts: DbOptions) => {
      await withDb(opts, async (db) => {
        const { applied } = await migrate(db);
        process.stdout.write(applied.length ? `Applied ${applied.length} migration(s).\n` : "");
        await printStatus(db, process.stdout);
      });
    });

  return program;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0; usage mistakes with 1.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof PsUsageError) {
      process.stderr.write(`ps-usage: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`ps-usage: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
    if (process.env.PS_USAGE_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`);
    return 1;
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
