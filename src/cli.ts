#!/usr/bin/env node
import fs from "node:fs";
import path from "node:path";
import { SingleBar, Presets } from "cli-progress";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { agentTreeCostReport, costReport, type CostReportGroupBy, type CostReportOptions } from "./costs";
import { isTimeZone, parseIsoDateTime, toInstant, type IsoDateTime } from "./cli/dates";
import { compileWasmForImport, limitHeapGrowthForImport } from "./cli/importHeap";
import { classifyDatabaseTarget, DATABASE_TARGET_FORMS, DEFAULT_DATA_DIR, isPostgresUrl, IMPORT_EMBEDDED_SHARED_BUFFERS_MB, openDatabase, redactUrl, splitReplicaUrls, type Database, type OpenDatabaseOptions } from "./db";
import { seedDemo } from "./demo";
import { PsUsageError, UsageValidationError } from "./errors";
import { recordExternalApiUsage } from "./externalApiUsage";
import { adopt } from "./schema/adopt";
import { doctor } from "./schema/doctor";
import { rebuildRollups, type RebuildRollupsResult } from "./reports/rebuildRollups";
import { prune } from "./ledger/prune";
import { partitionMonthly } from "./schema/partition";
import { migrate, migrationStatus } from "./schema/migrate";
import { importPriceCatalog, readPriceCatalog, type PriceCatalogImportResult } from "./prices/catalog";
import { formatAdoption, formatDoctor } from "./cli/schemaOutput";
import { addBudgetCommands, formatStatuses } from "./cli/budgets";
import { listBudgets } from "./budgets/define";
import { budgetStatus } from "./budgets/status";
import { recordModelUsage } from "./modelUsage";
import { recordNdjson } from "./ndjson";
import { formatReportCsv, formatReportJson, formatReportTable, loadReportNames } from "./reportFormat";
import { startStudio } from "./studio";
import { MODEL_USAGE_ALL_COUNTERS, type TimeBucket } from "./types";

/** A mistake in the command line: printed as one line, no stack trace, exit status 2. */
class UsageError extends PsUsageError {
  constructor(message: string) {
    super("PS_USAGE_CLI", message);
  }
}

/** The package's version, from its package.json (two folders up from dist/src, one from src). */
function packageVersion(): string {
  for (const dir of [path.join(__dirname, "..", ".."), path.join(__dirname, "..")]) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "ps-usage" && pkg.version) return pkg.version;
    } catch {
      // not here: try the next folder
    }
  }
  return "unknown";
}

interface DbOptions {
  db?: string;
  wait?: number;
  /** `--replica`, on the commands that only read (report). */
  replica?: string[];
}

function dbOption(): Option {
  return new Option(
    "-d, --db <url-or-dir>",
    `database: a postgresql:// URL, a PGlite directory, or memory:// (default: $DATABASE_URL, else ./${DEFAULT_DATA_DIR})`,
  );
}

/** Every command that opens a database takes `--wait` (see buildProgram). */
function waitOption(): Option {
  return new Option(
    "--wait <seconds>",
    "embedded database: wait up to this long for another process that has it open (default: fail at once)",
  ).argParser(nonNegativeSeconds("--wait"));
}

/**
 * How a command opens the database: `create` (migrate, main) may create an embedded one,
 * `migrate` (demo) also applies pending migrations first, `existing` (status, report, record,
 * studio) opens only a database that is already there (it never creates an empty directory).
 */
type OpenMode = "create" | "migrate" | "existing";

/** The `--db` value (else DATABASE_URL, else the default directory), refused unless it is a form we open. */
function dbTarget(opts: DbOptions): { value: string; kind: "postgresql" | "memory" | "directory" } {
  const [value, from] = opts.db !== undefined ? [opts.db, "--db"] : process.env.DATABASE_URL ? [process.env.DATABASE_URL, "DATABASE_URL"] : [DEFAULT_DATA_DIR, "--db"];
  const kind = classifyDatabaseTarget(value);
  if (kind === null) throw new UsageError(`${from} "${redactUrl(value)}" is not a database this tool opens: use ${DATABASE_TARGET_FORMS}.`);
  return { value, kind };
}

/** `--replica <url>`, repeatable (checked with the database target: see replicaUrls). */
function replicaOption(): Option {
  return new Option(
    "--replica <url>",
    "read from this PostgreSQL streaming replica of the --db primary; repeatable, one replica per report, in turn; " +
      "results may lag the primary by the replication lag (default: $PS_USAGE_REPLICA_URLS, comma-separated, with $DATABASE_URL)",
  ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
}

/**
 * The replicas a read command reads from: `--replica`, else PS_USAGE_REPLICA_URLS when the
 * primary is DATABASE_URL (as openDatabase reads them). Each must be a postgresql:// URL, and an
 * embedded database has none: either mistake is a usage error (exit 2), before anything is opened.
 */
function replicaUrls(opts: DbOptions): string[] {
  const target = dbTarget(opts);
  const fromEnv = opts.replica === undefined && opts.db === undefined && Boolean(process.env.DATABASE_URL);
  const urls = opts.replica ?? (fromEnv ? splitReplicaUrls(process.env.PS_USAGE_REPLICA_URLS) : []);
  const from = opts.replica ? "--replica" : "PS_USAGE_REPLICA_URLS";
  if (urls.length > 0 && target.kind !== "postgresql") {
    throw new UsageError(`${from}: an embedded PGlite database (${redactUrl(target.value)}) has no replicas; replicas go with a postgresql:// --db.`);
  }
  for (const url of urls) {
    if (!isPostgresUrl(url) || !URL.canParse(url)) throw new UsageError(`${from}: "${redactUrl(url)}" is not a postgresql:// URL.`);
  }
  return urls;
}

async function open(opts: DbOptions, mode: OpenMode, embedded?: Pick<OpenDatabaseOptions, "embeddedSharedBuffersMb">): Promise<Database> {
  const { value, kind } = dbTarget(opts);
  // Only the read commands take --replica; the others never route a read, so they open none.
  if (kind === "postgresql") return openDatabase({ url: value, migrate: mode === "migrate", replicaUrls: opts.replica === undefined ? [] : opts.replica });
  return openDatabase({ dataDir: value, migrate: mode === "migrate", create: mode !== "existing", lockWaitMs: Math.round((opts.wait ?? 0) * 1000), ...embedded });
}

async function withDb<T>(opts: DbOptions, fn: (db: Database) => Promise<T>, mode: OpenMode = "existing", embedded?: Pick<OpenDatabaseOptions, "embeddedSharedBuffersMb">): Promise<T> {
  const db = await open(opts, mode, embedded);
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
  if (s.unmanagedTables.length > 0) {
    out.write(
      `The database already holds ${s.unmanagedTables.join(", ")} without a migration history (made by PolicySynth or by hand): ` +
        "`ps-usage migrate` refuses it; take it over with `ps-usage adopt` (`--dry-run` first to see what it does).\n",
    );
  } else if (s.pending.length === 0 && s.failed.length === 0 && s.modified.length === 0) out.write("Database schema is up to date.\n");
}

/** Builds the `ps-usage` command line program. Exported for tests. */
export function buildProgram(): Command {
  const program = new Command("ps-usage")
    .description("Record and report AI model and external API usage (PolicySynth's ps_model_usage and ps_external_api_usage).")
    .showHelpAfterError("(run with --help for usage)")
    .version(packageVersion(), "-V, --version", "print the version of ps-usage")
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
      }, "create");
    });

  program
    .command("status")
    .description("show applied and pending migrations, and which database")
    .addOption(dbOption())
    .action(async (opts: DbOptions) => {
      await withDb(opts, (db) => printStatus(db, process.stdout));
    });

  program
    .command("adopt")
    .description("take over a database that holds PolicySynth's tables without a migration history (adds what is missing, changes no row)")
    .addOption(dbOption())
    .option("--dry-run", "print the differences and the SQL, change nothing")
    .option("--json", "JSON output")
    .option("--lock-timeout <seconds>", "give up if a table lock is not granted this soon (default 10)", lockTimeoutMs)
    .action(async (opts: DbOptions & { dryRun?: boolean; json?: boolean; lockTimeout?: number }) => {
      await withDb(opts, async (db) => {
        const result = await adopt(db, { dryRun: opts.dryRun, lockTimeoutMs: opts.lockTimeout });
        process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : formatAdoption(result));
      }, "create");
    });

  program
    .command("doctor")
    .description("check for rows another writer changed after they were written, rows pointing at nothing, and missing foreign keys (exit 1 when something needs attention)")
    .addOption(dbOption())
    .option("--json", "JSON output")
    .option("--tolerance <seconds>", "count a row as changed only when updated_at is this much later than created_at (default 0)", nonNegativeSeconds("--tolerance"))
    .action(async (opts: DbOptions & { json?: boolean; tolerance?: number }) => {
      await withDb(opts, async (db) => {
        const report = await doctor(db, { toleranceMs: opts.tolerance === undefined ? undefined : Math.round(opts.tolerance * 1000) });
        process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
        if (!report.healthy) commandStatus = 1;
      });
    });

  program
    .command("rebuild-rollups")
    .description("compare the rollups with the ledger slot by slot and rewrite them from it where any differs (exit 1 when a dry run finds a difference)")
    .addOption(dbOption())
    .option("--dry-run", "only compare, change nothing")
    .option("--json", "JSON output")
    .option("--lock-timeout <seconds>", "give up if the write lock on the usage tables is not granted this soon (default 10)", lockTimeoutMs)
    .action(async (opts: DbOptions & { dryRun?: boolean; json?: boolean; lockTimeout?: number }) => {
      await withDb(opts, async (db) => {
        const result = await rebuildRollups(db, { dryRun: opts.dryRun, lockTimeoutMs: opts.lockTimeout });
        process.stdout.write(opts.json ? `${JSON.stringify(result, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}\n` : formatRollupCheck(result, opts.dryRun === true));
        if (opts.dryRun && result.modelUsage.differences + result.externalApiUsage.differences > 0) commandStatus = 1;
      });
    });

  program
    .command("prune")
    .description("delete ledger rows created before a date, once the rollups hold them (sums and cost reports stay the same; finds there return nothing)")
    .addOption(dbOption())
    .requiredOption("--before <date>", "delete rows created before this date or instant (ISO 8601; a date is midnight in --tz), rounded down to 15 minutes", parseDate("--before"))
    .option("--tz <zone>", "IANA time zone of --before without an offset", "UTC")
    .option("--batch-size <n>", "rows deleted per transaction (default 10000)", positiveInt("--batch-size"))
    .option("--dry-run", "count what would be deleted, delete nothing")
    .option("--json", "JSON output")
    .action(async (opts: DbOptions & { before: IsoDateTime; tz: string; batchSize?: number; dryRun?: boolean; json?: boolean }) => {
      checkTimeZone(opts.tz);
      await withDb(opts, async (db) => {
        const result = await prune(db, { before: toInstant(opts.before, opts.tz), batchSize: opts.batchSize, dryRun: opts.dryRun === true });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          return;
        }
        const verb = result.dryRun ? "would delete" : "deleted";
        const lines = [result.modelUsage, result.externalApiUsage].map(
          (t) =>
            `${t.table}: ${verb} ${t.deleted} row(s) created before ${result.before.toISOString()}${t.kept > 0 ? `; kept ${t.kept} in slots where a price period starts` : ""}` +
            (t.droppedPartitions && t.droppedPartitions.length > 0 ? `; ${result.dryRun ? "would drop" : "dropped"} ${t.droppedPartitions.join(", ")}` : ""),
        );
        process.stdout.write(`${lines.join("\n")}\n${result.dryRun ? "Dry run: nothing was deleted.\n" : `Done in ${result.batches} batch(es); the rollups keep the pruned usage.\n`}`);
      });
    });

  program
    .command("partition")
    .description("new PostgreSQL deployments only: partition the (empty) ledger by month with pg_partman, after migrate and before the first record; prune then drops whole months")
    .addOption(dbOption())
    .requiredOption("--monthly", "monthly partitions of created_at (the only layout offered)")
    .option("--start <date>", "first month to create a partition for (default: this month, UTC)", parseDate("--start"))
    .option("--premake <n>", "months created ahead (pg_partman's premake, default 4)", positiveInt("--premake"))
    .option("--lock-timeout <seconds>", "give up if a table lock is not granted this soon (default 10)", lockTimeoutMs)
    .option("--json", "JSON output")
    .action(async (opts: DbOptions & { monthly: boolean; start?: IsoDateTime; premake?: number; lockTimeout?: number; json?: boolean }) => {
      await withDb(opts, async (db) => {
        const result = await partitionMonthly(db, {
          startMonth: opts.start === undefined ? undefined : toInstant(opts.start, "UTC"),
          premake: opts.premake,
          lockTimeoutMs: opts.lockTimeout,
        });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          return;
        }
        const lines = result.tables.map(
          (t) => `${t.table}: ${t.changed ? "partitioned by month" : "already partitioned"} (${t.partitions.length} partitions: ${t.partitions[0]} … ${t.partitions[t.partitions.length - 1]})`,
        );
        process.stdout.write(
          `${lines.join("\n")}\npg_partman ${result.partmanVersion} in schema ${result.partmanSchema}. Run \`SET TimeZone = 'UTC'; SELECT ${result.partmanSchema}.run_maintenance();\` daily to create months ahead; \`ps-usage prune\` drops whole months.\n`,
        );
      });
    });

  program
    .command("studio")
    .description("open Prisma Studio on the database (the embedded one too)")
    .addOption(dbOption())
    .option("-p, --port <port>", "port for Studio's web page", "5555")
    .option("--browser <name>", "browser to open, or none", "none")
    .action(async (opts: DbOptions & { port: string; browser: string }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new UsageError(`--port: not a port number: ${opts.port}`);
      const target = dbTarget(opts);
      await withDb(opts, async (db) => {
        const studio = await startStudio(db, { port, browser: opts.browser, url: target.kind === "postgresql" ? target.value : undefined });
        process.stdout.write(`Prisma Studio on ${studio.studioUrl} for ${db.target}. Press Ctrl-C to stop.\n`);
        const stop = () => void studio.stop();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        await studio.done;
      });
    });

  program
    .command("demo")
    .description("fill the database with a realistic sample: models with prices, APIs, an agent tree, ~100k events over 90 days")
    .addOption(dbOption())
    .option("--events <n>", "usage events to create", positiveInt("--events"), 100_000)
    .option("--days <n>", "days of history, ending now", positiveInt("--days"), 90)
    .option("--seed <n>", "seed of the pseudo-random data", positiveInt("--seed"), 42)
    .action(async (opts: DbOptions & { events: number; days: number; seed: number }) => {
      await withDb(opts, async (db) => {
        const summary = await runDemo(db, opts);
        process.stdout.write(
          `Recorded ${summary.modelUsageEvents} model calls and ${summary.externalApiUsageEvents} external API usage events ` +
            `for ${summary.agentIds.length} agents (root agent #${summary.rootAgentId}) in ${db.target}.\n`,
        );
      }, "migrate");
    });

  program
    .command("report")
    .description("cost report: tokens and cost side by side, per currency")
    .addOption(dbOption())
    .option("-g, --group-by <dims>", "comma-separated: user, agent, connector, model, api", parseGroupBy)
    .addOption(new Option("-b, --bucket <size>", "time buckets").choices(["hour", "day", "week", "month"]))
    .option("--from <date>", "from this date or instant, inclusive (ISO 8601: 2026-09-01 is midnight in --tz; 2026-09-01T08:00Z an instant)", parseDate("--from"))
    .option("--to <date>", "up to this date or instant, exclusive (ISO 8601, as --from)", parseDate("--to"))
    .option("--user <id>", "only this user's usage", positiveInt("--user"))
    .option("--agent-tree <id>", "an agent and all its sub-agents, one row per agent", positiveInt("--agent-tree"))
    .option("--tz <zone>", "IANA time zone for buckets, dates shown and --from/--to without an offset", "UTC")
    .addOption(new Option("--json", "JSON output (exact amounts, counts as strings)").conflicts("csv"))
    .option("--csv", "CSV output (exact amounts, every counter)")
    .addOption(replicaOption())
    .action(async (opts: DbOptions & ReportCommandFlags) => {
      // Every flag is checked before the database is opened: a mistake is exit 2 and opens nothing.
      checkTimeZone(opts.tz);
      const flags: ReportFlags = { ...opts, from: opts.from && toInstant(opts.from, opts.tz), to: opts.to && toInstant(opts.to, opts.tz) };
      const replicas = replicaUrls(opts);
      await withDb({ ...opts, replica: replicas }, async (db) => {
        process.stdout.write(await withFlagNames(REPORT_FLAGS, () => renderReport(db, flags)));
      });
    });

  const record = program
    .command("record")
    .description("record one usage event from flags, or many from NDJSON on standard input (--ndjson)")
    .addOption(dbOption())
    .option("--ndjson", "read one JSON object per line from standard input (streamed in batches)")
    .option("--batch-size <n>", "lines per all-or-nothing batch with --ndjson", positiveInt("--batch-size"), 5_000)
    .option("--user <id>", "user id", integer("--user"))
    .option("--model <id>", "model id (model usage)", integer("--model"))
    .option("--external-api <id>", "external API id (external API usage)", integer("--external-api"))
    .option("--calls <n>", "call count (external API usage)", integer("--calls"))
    .option("--agent <id>", "agent id", integer("--agent"))
    .option("--connector <id>", "connector id", integer("--connector"))
    .option("--at <date>", "when it happened (ISO 8601; without an offset a wall time in --tz; default now)", parseDate("--at"))
    .option("--tz <zone>", "IANA time zone of an --at without an offset", "UTC")
    .option("--idempotency-key <key>", "a retry with the same key records nothing new (with --ndjson: per batch, so a re-run skips what was recorded)")
    .option("--enforce-budgets", "refuse the event (with --ndjson: the batch) when it would take a hard-limit budget past its amount; nothing of it is written");
  for (const [field] of MODEL_USAGE_ALL_COUNTERS) record.option(`--${kebab(field)} <n>`, `${field} (model usage)`, integer(`--${kebab(field)}`));
  record
    .option("--service-tier <tier>", "the service tier the provider applied: flex, priority or fast (model usage; default standard)")
    .option("--regional-processing <region>", "the regional processing the provider applied, e.g. eu (model usage)");
  record.action(async (opts: DbOptions & Record<string, unknown>) => {
    const prepared = prepareRecord(opts);
    // A long import into an embedded database: a smaller buffer cache and WebAssembly compiled
    // once (before PGlite compiles its module) keep the process smaller.
    const embedded = opts.ndjson ? { embeddedSharedBuffersMb: IMPORT_EMBEDDED_SHARED_BUFFERS_MB } : undefined;
    if (opts.ndjson) compileWasmForImport();
    await withDb(opts, (db) => withFlagNames(RECORD_FLAGS, () => prepared(db)), "existing", embedded);
  });

  addBudgetCommands(program.command("budgets"), {
    dbOption,
    withDb: (opts, fn) => withDb(opts, fn),
    withFlagNames: (flags, fn) => withFlagNames(flags, fn),
    parseDate,
    checkTimeZone,
    usageError: (message) => new UsageError(message),
  });

  const prices = program.command("prices").description("price catalogs: import prices from LiteLLM's model_prices_and_context_window.json");
  prices
    .command("import")
    .description("start price periods for the models a LiteLLM-format price catalog names (usage before --effective-from keeps its price)")
    .argument("<file>", "the catalog (JSON), e.g. model_prices_and_context_window.json")
    .addOption(dbOption())
    .option("--effective-from <date>", "when the prices take effect (ISO 8601; without an offset a wall time in --tz; default now)", parseDate("--effective-from"))
    .option("--tz <zone>", "IANA time zone of an --effective-from without an offset", "UTC")
    .option("--map <model=key>", "match a model (id or name) to a catalog key; repeatable", collectMapping)
    .option("--dry-run", "report what would change, write nothing")
    .option("--json", "JSON output")
    .action(async (file: string, opts: DbOptions & { effectiveFrom?: IsoDateTime; tz: string; map?: Record<string, string>; dryRun?: boolean; json?: boolean }) => {
      // The flags and the file are checked before the database is opened: a mistake is exit 2.
      checkTimeZone(opts.tz);
      const effectiveFrom = opts.effectiveFrom && toInstant(opts.effectiveFrom, opts.tz);
      const catalog = await readPriceCatalog(file).catch((err: unknown) => {
        throw err instanceof UsageValidationError ? new UsageError(err.issues.map((i) => i.reason).join("; ")) : err;
      });
      dbTarget(opts);
      await withDb(opts, async (db) => {
        const result = await withFlagNames(PRICE_IMPORT_FLAGS, () =>
          importPriceCatalog(db, catalog, { effectiveFrom, models: opts.map, dryRun: opts.dryRun }),
          { onlyFlagFields: true },
        );
        process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : formatCatalogImport(file, result));
      });
    });

  program
    .command("main")
    .description("the main job (npm start): migrate, fill with demo data when empty, then show cost reports")
    .addOption(dbOption())
    .action(async (opts: DbOptions) => {
      await withDb(opts, (db) => runMain(db), "create");
    });

  // --wait goes wherever --db does: each command that opens a database.
  for (const command of [...program.commands, ...prices.commands]) {
    if (command.options.some((o) => o.long === "--db")) command.addOption(waitOption());
  }
  return program;
}

function kebab(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function nonNegativeSeconds(flag: string) {
  return (value: string): number => {
    if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(Number(value))) {
      throw new InvalidArgumentError(`${flag} must be a number of seconds (0 or more), got "${value}".`);
    }
    return Number(value);
  };
}

/**
 * `--lock-timeout <seconds>` as the milliseconds of `lockTimeoutMs`: at least 1, because
 * PostgreSQL reads a lock_timeout of 0 as "wait forever", the opposite of asking not to wait.
 */
function lockTimeoutMs(value: string): number {
  return Math.max(1, Math.round(nonNegativeSeconds("--lock-timeout")(value) * 1000));
}

function positiveInt(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
      throw new InvalidArgumentError(`${flag} must be a positive whole number, got "${value}".`);
    }
    return Number(value);
  };
}

/** A whole number (the API checks its range; its messages are given flag names by withFlagNames). */
function integer(flag: string) {
  return (value: string): number => {
    if (!/^[+-]?\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
      throw new InvalidArgumentError(`${flag} must be a whole number, got "${value}".`);
    }
    return Number(value);
  };
}

/** Strict ISO 8601 (see cli/dates); a wall time without an offset is placed in --tz later. */
export function parseDate(flag: string) {
  return (value: string): IsoDateTime => {
    const parsed = parseIsoDateTime(value);
    if (typeof parsed === "string") throw new InvalidArgumentError(`${flag} ${parsed}.`);
    return parsed;
  };
}

function checkTimeZone(zone: string): void {
  if (!isTimeZone(zone)) throw new UsageError(`--tz: "${zone}" is not an IANA time zone name such as Europe/Berlin or UTC.`);
}

/** The API field names a command's flags map to, longest first so `where.to` wins over `to`. */
type FlagNames = readonly (readonly [field: string, flag: string])[];

const REPORT_FLAGS: FlagNames = [
  ["where.userId", "--user"],
  ["where.from", "--from"],
  ["where.to", "--to"],
  ["timeZone", "--tz"],
  ["groupBy", "--group-by"],
  ["bucket", "--bucket"],
  ["agentId", "--agent-tree"],
];

/** Model usage fields given as text flags (`--service-tier flex`). */
const MODEL_PRICING_FLAGS = ["serviceTier", "regionalProcessing"] as const;

const RECORD_FLAGS: FlagNames = [
  ["options.idempotencyKey", "--idempotency-key"],
  ["userId", "--user"],
  ["modelId", "--model"],
  ["externalApiId", "--external-api"],
  ["callCount", "--calls"],
  ["agentId", "--agent"],
  ["connectorId", "--connector"],
  ["createdAt", "--at"],
  ...MODEL_USAGE_ALL_COUNTERS.map(([field]) => [field, `--${kebab(field)}`] as const),
  ...MODEL_PRICING_FLAGS.map((field) => [field, `--${kebab(field)}`] as const),
];

/**
 * Runs `fn`; a validation error of values the user gave as flags becomes a usage error (exit 2)
 * that names the flags (`--to`), not the API's fields (`where.to`), in fields and reasons alike.
 */
async function withFlagNames<T>(flags: FlagNames, fn: () => Promise<T>, options: { onlyFlagFields?: boolean } = {}): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof UsageValidationError)) throw err;
    // With onlyFlagFields, an error about anything else (an input file's content) stays as it is.
    const isFlag = (f: string) => flags.some(([field]) => f === field || f.startsWith(`${field}[`) || f.startsWith(`${field}.`));
    if (options.onlyFlagFields && !err.issues.every((i) => isFlag(i.field))) throw err;
    const rename = (text: string) =>
      flags.reduce((t, [field, flag]) => t.replace(new RegExp(`(?<![\\w.-])${field.replace(".", "\\.")}(?![\\w-])`, "g"), flag), text);
    throw new UsageError(err.issues.map((i) => `${rename(i.field)}: ${rename(i.reason)}`).join("; "));
  }
}

/**
 * Flags of `prices import`. Only these become usage errors: a bad rate in the catalog is a bad
 * input file (exit 1), named by its field.
 */
const PRICE_IMPORT_FLAGS: FlagNames = [
  ["effectiveFrom", "--effective-from"],
  ["models", "--map"],
];

/** `--map "GPT-4o=gpt-4o"`, repeatable. Split at the last `=`: a model name may hold one, LiteLLM's keys do not. */
function collectMapping(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const at = value.lastIndexOf("=");
  if (at <= 0 || at === value.length - 1) throw new InvalidArgumentError(`--map must be <model id or name>=<catalog key>, got "${value}".`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/** The human-readable summary of a price catalog import. */
function formatCatalogImport(file: string, r: PriceCatalogImportResult): string {
  const lines: string[] = [];
  const model = (m: { modelId: number; name: string }) => `#${m.modelId} ${m.name}`;
  lines.push(`Price catalog ${file}, effective from ${r.effectiveFrom.toISOString()}${r.dryRun ? " (dry run: nothing written)" : ""}.`);
  lines.push(`${r.dryRun ? "Would start" : "Started"} ${plural(r.created.length, "price period")}${r.created.length ? ":" : "."}`);
  for (const c of r.created) {
    const p = c.price;
    lines.push(
      `  ${model(c)} <- ${c.catalogKey}: in ${p.costInTokensPerMillion}, out ${p.costOutTokensPerMillion}` +
        `${p.costInCachedContextTokensPerMillion != null ? `, cached ${p.costInCachedContextTokensPerMillion}` : ""} ${p.currency}/M tokens` +
        `${c.periodId !== null ? ` (period ${c.periodId})` : ""}${c.replaced ? ", replacing the period that started then" : ""}`,
    );
  }
  if (r.unchanged.length) lines.push(`Unchanged (the period in force has these prices): ${r.unchanged.map((m) => `${model(m)} <- ${m.catalogKey}`).join(", ")}`);
  for (const u of r.unpriced) lines.push(`Not priced: ${model(u)} <- ${u.catalogKey}: ${u.reason}`);
  if (r.modelsWithoutEntry.length) lines.push(`Models the catalog does not name (prices left as they are): ${r.modelsWithoutEntry.map(model).join(", ")}`);
  lines.push(`Catalog entries no model matched: ${r.entriesWithoutModel}`);
  if (r.unknownFields.length) {
    lines.push("Fields not imported:");
    for (const u of r.unknownFields) lines.push(`  ${u.catalogKey}: ${u.field}: ${u.reason}`);
  }
  return `${lines.join("\n")}\n`;
}

const GROUP_ALIASES: Record<string, CostReportGroupBy> = {
  user: "userId",
  userid: "userId",
  agent: "agentId",
  agentid: "agentId",
  connector: "connectorId",
  connectorid: "connectorId",
  model: "modelId",
  modelid: "modelId",
  api: "externalApiId",
  "external-api": "externalApiId",
  externalapi: "externalApiId",
  externalapiid: "externalApiId",
};

function parseGroupBy(value: string): CostReportGroupBy[] {
  const dims = value.split(",").map((d) => d.trim().toLowerCase()).filter(Boolean);
  const bad = dims.filter((d) => !GROUP_ALIASES[d]);
  if (bad.length || dims.length === 0) {
    throw new InvalidArgumentError(`unknown dimension "${bad.join(", ") || value}"; use user, agent, connector, model, api.`);
  }
  return [...new Set(dims.map((d) => GROUP_ALIASES[d]))];
}

interface ReportCommandFlags extends Omit<ReportFlags, "from" | "to"> {
  from?: IsoDateTime;
  to?: IsoDateTime;
}

interface ReportFlags {
  groupBy?: CostReportGroupBy[];
  bucket?: TimeBucket;
  from?: Date;
  to?: Date;
  user?: number;
  agentTree?: number;
  tz: string;
  json?: boolean;
  csv?: boolean;
}

async function renderReport(db: Database, flags: ReportFlags): Promise<string> {
  const options: CostReportOptions = {
    where: { userId: flags.user, from: flags.from, to: flags.to },
    groupBy: flags.groupBy,
    bucket: flags.bucket,
    timeZone: flags.tz,
  };
  const tree = flags.agentTree === undefined ? undefined : await agentTreeCostReport(db, flags.agentTree, options);
  const report = tree ?? (await costReport(db, options));
  const keys = tree ? ["agentId" as const, ...(flags.groupBy ?? []).filter((k) => k !== "agentId")] : (flags.groupBy ?? []);
  if (flags.json) return formatReportJson(report);
  if (flags.csv) return formatReportCsv(report, { keys, bucket: flags.bucket });
  const names = await loadReportNames(db, report.rows);
  return formatReportTable(report, names, {
    keys,
    bucket: flags.bucket,
    timeZone: flags.tz,
    depthOf: tree ? new Map(tree.agents.map((a) => [a.agentId, a.depth])) : undefined,
  });
}

async function runDemo(db: Database, opts: { events?: number; days?: number; seed?: number }) {
  const bar = new SingleBar(
    { format: "Recording demo usage [{bar}] {percentage}% | {value}/{total} events | {duration}s", stream: process.stderr, hideCursor: true },
    Presets.shades_classic,
  );
  const total = opts.events ?? 100_000;
  bar.start(total, 0);
  try {
    return await seedDemo(db, { events: total, days: opts.days, seed: opts.seed, onProgress: (done) => bar.update(done) });
  } finally {
    bar.stop();
  }
}

/** The flags that describe one event: with --ndjson each line gives its own. */
const SINGLE_RECORD_FLAGS = [
  "user",
  "model",
  "externalApi",
  "calls",
  "agent",
  "connector",
  "at",
  ...MODEL_USAGE_ALL_COUNTERS.map(([f]) => f),
  ...MODEL_PRICING_FLAGS,
];

/**
 * Checks the record flags (exit 2 before the database is opened) and returns what to run on it.
 * With --ndjson every line names its own user and event, so the single-event flags are refused
 * rather than silently ignored.
 */
function prepareRecord(opts: Record<string, unknown>): (db: Database) => Promise<void> {
  const key = opts.idempotencyKey === undefined ? undefined : String(opts.idempotencyKey);
  const given = SINGLE_RECORD_FLAGS.filter((f) => opts[f] !== undefined).map((f) => `--${kebab(f)}`);
  if (opts.ndjson) {
    if (given.length) throw new UsageError(`record --ndjson: ${given.join(", ")} cannot be combined with --ndjson (each line gives its own userId and fields).`);
    dbTarget(opts as DbOptions);
    return async (db) => {
      limitHeapGrowthForImport();
      const result = await recordNdjson(db, process.stdin, { batchSize: opts.batchSize as number, idempotencyKey: key, enforceBudgets: opts.enforceBudgets === true });
      const skipped = result.skippedLines ? ` Skipped ${plural(result.skippedLines, "line")} already recorded under this key.` : "";
      const none = result.skippedLines && result.modelUsage + result.externalApiUsage === 0 ? `Nothing new recorded: key "${key}" was already used for all of it. ` : "";
      process.stdout.write(
        `${none}Recorded ${result.modelUsage} model usage and ${result.externalApiUsage} external API usage events from ${plural(result.lines, "line")}.${skipped}\n`,
      );
    };
  }
  if (given.length === 0) throw new UsageError("record: give --user and --model (or --external-api and --calls), or --ndjson with input on standard input.");
  if (opts.user === undefined) throw new UsageError("record: --user is required (the user the usage is recorded for).");
  checkTimeZone(opts.tz as string);
  const common = {
    userId: opts.user,
    ...(opts.agent !== undefined ? { agentId: opts.agent } : {}),
    ...(opts.connector !== undefined ? { connectorId: opts.connector } : {}),
    ...(opts.at !== undefined ? { createdAt: toInstant(opts.at as IsoDateTime, opts.tz as string) } : {}),
  };
  const options = key === undefined && !opts.enforceBudgets ? undefined : { ...(key === undefined ? {} : { idempotencyKey: key }), ...(opts.enforceBudgets ? { enforceBudgets: true } : {}) };
  const counters = [...MODEL_USAGE_ALL_COUNTERS.map(([f]) => f), ...MODEL_PRICING_FLAGS].filter((f) => opts[f] !== undefined);
  let write: (db: Database) => Promise<object>;
  if (opts.externalApi !== undefined) {
    if (opts.model !== undefined || counters.length) throw new UsageError("record: --external-api takes --calls, not --model, token counts or model pricing flags.");
    const input = { ...common, externalApiId: opts.externalApi, callCount: opts.calls };
    write = (db) => recordExternalApiUsage(db, input as never, options);
  } else {
    if (opts.model === undefined) throw new UsageError("record: give --model <id> (or --external-api <id>).");
    if (opts.calls !== undefined) throw new UsageError("record: --calls goes with --external-api.");
    const input = { ...common, modelId: opts.model, ...Object.fromEntries(counters.map((f) => [f, opts[f]])) };
    write = (db) => recordModelUsage(db, input as never, options);
  }
  dbTarget(opts as DbOptions);
  return async (db) => {
    // Said, not just done: a retry with a used key returns the first row and records nothing.
    const used = key !== undefined && (await db.prisma.psUsageIdempotencyKey.findUnique({ where: { key }, select: { key: true } })) !== null;
    const row = await write(db);
    if (used) process.stderr.write(`Nothing new recorded: key "${key}" was already used; this is the row it recorded.\n`);
    process.stdout.write(JSON.stringify(row, null, 2) + "\n");
  };
}

/** "1 line", "2 lines". */
function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function runMain(db: Database): Promise<void> {
  const out = process.stdout;
  const { applied } = await migrate(db);
  out.write(`Database: ${db.target} (${db.kind === "pglite" ? "embedded PGlite" : "PostgreSQL"})${applied.length ? `, applied ${applied.length} migration(s)` : ", up to date"}\n`);
  const [models, apis] = await Promise.all([db.prisma.psModelUsage.count(), db.prisma.psExternalApiUsage.count()]);
  if (models + apis === 0) {
    out.write("The database is empty: recording the demo sample (ps-usage demo).\n");
    const started = Date.now();
    const summary = await runDemo(db, {});
    const seconds = (Date.now() - started) / 1000;
    out.write(
      `Recorded ${summary.modelUsageEvents + summary.externalApiUsageEvents} events in ${seconds.toFixed(1)} s ` +
        `(${Math.round((summary.modelUsageEvents + summary.externalApiUsageEvents) / seconds)} events/s through the batch API).\n`,
    );
  } else {
    out.write(`${models} model usage and ${apis} external API usage rows already recorded.\n`);
  }
  const last = await db.prisma.psModelUsage.aggregate({ _max: { createdAt: true } });
  const to = new Date((last._max.createdAt ?? new Date()).getTime() + 1);
  const from = new Date(to.getTime() - 90 * 86_400_000);
  const range = { from: from.toISOString().slice(0, 10), to: to.toISOString().slice(0, 10) };
  out.write(`\nCost by model, ${range.from} to ${range.to} (priced at the prices in force when each call happened):\n`);
  out.write(await renderReport(db, { groupBy: ["modelId", "externalApiId"], from, to, tz: "UTC" }));
  const root = await db.prisma.psAgent.findFirst({ where: { parentAgentId: null }, orderBy: { id: "asc" } });
  if (root) {
    out.write(`\nCost of agent #${root.id} and its sub-agents:\n`);
    out.write(await renderReport(db, { agentTree: root.id, from, to, tz: "UTC" }));
  }
  out.write("\nCost per month:\n");
  out.write(await renderReport(db, { bucket: "month", from, to, tz: "UTC" }));
  const budgets = await listBudgets(db);
  if (budgets.length > 0) {
    const at = new Date(to.getTime() - 1);
    out.write(`\nBudgets, in the periods holding ${at.toISOString().slice(0, 10)} (ps-usage budgets status):\n`);
    const statuses = [];
    for (const b of budgets) statuses.push(await budgetStatus(db, b.name, { at }));
    out.write(formatStatuses(statuses, "table"));
  }
  out.write("\nMore: npx ps-usage report --help, npx ps-usage budgets --help, npx ps-usage studio\n");
}

/** What rebuild-rollups found and did, as lines of text. */
function formatRollupCheck(result: RebuildRollupsResult, dryRun: boolean): string {
  const lines: string[] = [];
  for (const check of [result.modelUsage, result.externalApiUsage]) {
    lines.push(`${check.table}: ${check.rows} rows, ${check.differences === 0 ? "equal to the ledger" : `${check.differences} slot(s) and key(s) differed from the ledger`}`);
    for (const d of check.samples) {
      const id = d.modelId !== undefined ? `model ${d.modelId}` : `API ${d.externalApiId}`;
      lines.push(`  ${d.slotStart.toISOString()} user ${d.userId} ${id} agent ${d.agentId ?? "-"} connector ${d.connectorId ?? "-"}: ledger ${d.ledgerEvents} events, rollup ${d.rollupEvents}`);
    }
  }
  for (const level of result.levels) {
    lines.push(`${level.table}: ${level.rows} rows, ${level.differences === 0 ? "equal to the 15-minute rollups" : `${level.differences} key(s) differed from the 15-minute rollups`}`);
  }
  const differences = result.modelUsage.differences + result.externalApiUsage.differences + result.levels.reduce((n, l) => n + l.differences, 0);
  lines.push(differences === 0 ? "Nothing to rebuild." : dryRun ? "Dry run: nothing changed; run without --dry-run to rebuild." : "Rebuilt from the ledger.");
  return `${lines.join("\n")}\n`;
}

/** A command that succeeded but reports a finding (doctor) sets this to 1. */
let commandStatus = 0;

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  commandStatus = 0;
  try {
    await program.parseAsync([...argv], { from: "user" });
    return commandStatus;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0; usage mistakes with 1.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof PsUsageError) {
      process.stderr.write(`ps-usage: ${err.message}\n`);
      return err instanceof UsageError ? 2 : 1;
    }
    process.stderr.write(`ps-usage: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
    if (process.env.PS_USAGE_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`);
    return 1;
  }
}

if (require.main === module) {
  // `ps-usage report | head`: a reader that closes the pipe early is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
