#!/usr/bin/env node
import { SingleBar, Presets } from "cli-progress";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { agentTreeCostReport, costReport, type CostReportGroupBy, type CostReportOptions } from "./costs";
import { DEFAULT_DATA_DIR, isPostgresUrl, openDatabase, type Database } from "./db";
import { seedDemo } from "./demo";
import { PsUsageError } from "./errors";
import { recordExternalApiUsage } from "./externalApiUsage";
import { migrate, migrationStatus } from "./migrate";
import { recordModelUsage } from "./modelUsage";
import { recordNdjson } from "./ndjson";
import { formatReportCsv, formatReportJson, formatReportTable, loadReportNames } from "./reportFormat";
import { startStudio } from "./studio";
import { MODEL_USAGE_COUNTERS, type TimeBucket } from "./types";

/** A mistake the user can fix: printed as one line, no stack trace, exit status 1. */
class UserError extends PsUsageError {
  constructor(message: string) {
    super("PS_USAGE_CLI", message);
  }
}

interface DbOptions {
  db?: string;
  wait?: number;
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

async function open(opts: DbOptions, migrateFirst = false): Promise<Database> {
  const target = opts.db ?? process.env.DATABASE_URL;
  if (target && isPostgresUrl(target)) return openDatabase({ url: target, migrate: migrateFirst });
  return openDatabase({ dataDir: target ?? DEFAULT_DATA_DIR, migrate: migrateFirst, lockWaitMs: Math.round((opts.wait ?? 0) * 1000) });
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
      }, true);
    });

  program
    .command("report")
    .description("cost report: tokens and cost side by side, per currency")
    .addOption(dbOption())
    .option("-g, --group-by <dims>", "comma-separated: user, agent, connector, model, api", parseGroupBy)
    .addOption(new Option("-b, --bucket <size>", "time buckets").choices(["hour", "day", "week", "month"]))
    .option("--from <date>", "from this instant, inclusive (ISO 8601, e.g. 2025-06-01)", parseDate("--from"))
    .option("--to <date>", "up to this instant, exclusive (ISO 8601)", parseDate("--to"))
    .option("--user <id>", "only this user's usage", positiveInt("--user"))
    .option("--agent-tree <id>", "an agent and all its sub-agents, one row per agent", positiveInt("--agent-tree"))
    .option("--tz <zone>", "IANA time zone for buckets and dates shown", "UTC")
    .addOption(new Option("--json", "JSON output (exact amounts, counts as strings)").conflicts("csv"))
    .option("--csv", "CSV output (exact amounts, every counter)")
    .action(async (opts: DbOptions & ReportFlags) => {
      await withDb(opts, async (db) => {
        process.stdout.write(await renderReport(db, opts));
      });
    });

  const record = program
    .command("record")
    .description("record one usage event from flags, or many from NDJSON on standard input (--ndjson)")
    .addOption(dbOption())
    .option("--ndjson", "read one JSON object per line from standard input (streamed in batches)")
    .option("--batch-size <n>", "lines per all-or-nothing batch with --ndjson", positiveInt("--batch-size"), 5_000)
    .option("--user <id>", "user id")
    .option("--model <id>", "model id (model usage)")
    .option("--external-api <id>", "external API id (external API usage)")
    .option("--calls <n>", "call count (external API usage)")
    .option("--agent <id>", "agent id")
    .option("--connector <id>", "connector id")
    .option("--at <date>", "when it happened (ISO 8601; default now)", parseDate("--at"))
    .option("--idempotency-key <key>", "a retry with the same key records nothing new (with --ndjson: per batch, so a re-run skips what was recorded)");
  for (const [field] of MODEL_USAGE_COUNTERS) record.option(`--${kebab(field)} <n>`, `${field} (model usage)`);
  record.action(async (opts: DbOptions & Record<string, unknown>) => {
    await withDb(opts, (db) => runRecord(db, opts));
  });

  program
    .command("main")
    .description("the main job (npm start): migrate, fill with demo data when empty, then show cost reports")
    .addOption(dbOption())
    .action(async (opts: DbOptions) => {
      await withDb(opts, (db) => runMain(db));
    });

  // --wait goes wherever --db does: each command that opens a database.
  for (const command of program.commands) {
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

function positiveInt(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
      throw new InvalidArgumentError(`${flag} must be a positive whole number, got "${value}".`);
    }
    return Number(value);
  };
}

function parseDate(flag: string) {
  return (value: string): Date => {
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) throw new InvalidArgumentError(`${flag} must be an ISO 8601 date or instant, got "${value}".`);
    return d;
  };
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

/** A flag's value as the API should see it: a whole number if it is one, else the text (so the error names it). */
function flagNumber(value: unknown): unknown {
  return typeof value === "string" && /^[+-]?\d+$/.test(value) ? Number(value) : value;
}

async function runRecord(db: Database, opts: Record<string, unknown>): Promise<void> {
  if (opts.ndjson) {
    const key = opts.idempotencyKey === undefined ? undefined : String(opts.idempotencyKey);
    const result = await recordNdjson(db, process.stdin, { batchSize: opts.batchSize as number, idempotencyKey: key });
    const skipped = result.skippedLines ? ` ${result.skippedLines} line(s) were already recorded under this key and were skipped.` : "";
    process.stdout.write(
      `Recorded ${result.modelUsage} model usage and ${result.externalApiUsage} external API usage events from ${result.lines} lines.${skipped}\n`,
    );
    return;
  }
  if (opts.user === undefined) throw new UserError("record: give --user and --model (or --external-api and --calls), or --ndjson with input on stdin");
  const common = {
    userId: flagNumber(opts.user),
    ...(opts.agent !== undefined ? { agentId: flagNumber(opts.agent) } : {}),
    ...(opts.connector !== undefined ? { connectorId: flagNumber(opts.connector) } : {}),
    ...(opts.at instanceof Date ? { createdAt: opts.at } : {}),
  };
  const options = opts.idempotencyKey === undefined ? undefined : { idempotencyKey: String(opts.idempotencyKey) };
  const counters = MODEL_USAGE_COUNTERS.filter(([f]) => opts[f] !== undefined);
  let row: object;
  if (opts.externalApi !== undefined) {
    if (opts.model !== undefined || counters.length) throw new UserError("record: --external-api takes --calls, not --model or token counts");
    const input = { ...common, externalApiId: flagNumber(opts.externalApi), callCount: flagNumber(opts.calls) };
    row = await recordExternalApiUsage(db, input as never, options);
  } else {
    if (opts.model === undefined) throw new UserError("record: give --model <id> (or --external-api <id>)");
    if (opts.calls !== undefined) throw new UserError("record: --calls goes with --external-api");
    const input = { ...common, modelId: flagNumber(opts.model), ...Object.fromEntries(counters.map(([f]) => [f, flagNumber(opts[f])])) };
    row = await recordModelUsage(db, input as never, options);
  }
  process.stdout.write(JSON.stringify(row, null, 2) + "\n");
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
  out.write("\nMore: npx ps-usage report --help, npx ps-usage studio\n");
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
  // `ps-usage report | head`: a reader that closes the pipe early is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
