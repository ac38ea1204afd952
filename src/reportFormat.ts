import Table from "cli-table3";
import type { AgentTreeCostReport, CostAmounts, CostReport, CostReportRow } from "./costs";
import type { Database } from "./db";
import { UnknownReferenceError } from "./errors";
import { Prisma } from "./generated/prisma/client";
import type { TimeBucket } from "./types";
import { readRouted } from "./usageShared";

/** Display names for the ids in a report (model names, agent names, API types, ...). */
export interface ReportNames {
  readonly modelId: ReadonlyMap<number, string>;
  readonly agentId: ReadonlyMap<number, string>;
  readonly connectorId: ReadonlyMap<number, string>;
  readonly externalApiId: ReadonlyMap<number, string>;
}

const KEYS = ["userId", "agentId", "connectorId", "modelId", "externalApiId"] as const;
type Key = (typeof KEYS)[number];
const KEY_TITLE: Record<Key, string> = { userId: "User", agentId: "Agent", connectorId: "Connector", modelId: "Model", externalApiId: "External API" };

function configName(configuration: unknown): string | undefined {
  const name = (configuration as { name?: unknown } | null)?.name;
  return typeof name === "string" ? name : undefined;
}

/**
 * Looks up the names of the models, agents, connectors and APIs a report mentions (one query each).
 *
 * @example
 * const report = await costReport(db, { groupBy: ["modelId"] });
 * const names = await loadReportNames(db, report.rows);
 * names.modelId.get(3); // "gpt-4.1"
 */
export async function loadReportNames(db: Database, rows: readonly CostReportRow[]): Promise<ReportNames> {
  const ids = (k: Key) => [...new Set(rows.map((r) => r[k]).filter((v): v is number => typeof v === "number"))];
  // Read where the report was (a replica, if any), so a report never needs the primary.
  const [models, agents, connectors, apis] = await readRouted(
    db,
    ({ reportPrisma: p }) =>
      Promise.all([
        p.psAiModel.findMany({ where: { id: { in: ids("modelId") } }, select: { id: true, name: true } }),
        p.psAgent.findMany({ where: { id: { in: ids("agentId") } }, select: { id: true, configuration: true } }),
        p.psAgentConnector.findMany({ where: { id: { in: ids("connectorId") } }, select: { id: true, configuration: true } }),
        p.psExternalApi.findMany({ where: { id: { in: ids("externalApiId") } }, select: { id: true, type: true } }),
      ]),
    async () => new UnknownReferenceError("a referenced table", null),
  );
  return {
    modelId: new Map(models.map((m) => [m.id, m.name])),
    agentId: new Map(agents.map((a) => [a.id, configName(a.configuration) ?? `agent ${a.id}`])),
    connectorId: new Map(connectors.map((c) => [c.id, configName(c.configuration) ?? `connector ${c.id}`])),
    externalApiId: new Map(apis.map((a) => [a.id, a.type])),
  };
}

const IN_COUNTERS = ["tokenInCount", "tokenInCachedContextCount", "tokenInCacheWriteCount", "longContextTokenInCount", "longContextTokenInCachedContextCount", "longContextTokenInCacheWriteCount"] as const;
const OUT_COUNTERS = ["tokenOutCount", "tokenOutReasoningCount", "tokenOutAudioCount", "tokenOutImageCount", "longContextTokenOutCount", "longContextTokenOutReasoningCount", "longContextTokenOutAudioCount", "longContextTokenOutImageCount"] as const;

function sum(a: CostAmounts, keys: readonly (keyof CostAmounts["tokens"])[]): bigint {
  return keys.reduce((s, k) => s + a.tokens[k], 0n);
}

/**
 * Groups digits in thousands: 1234567n -> "1,234,567".
 *
 * @example
 * formatCount(1234567n); // "1,234,567"
 */
export function formatCount(n: bigint): string {
  return n.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * Rounds an exact decimal string for display only: 2 decimals, 4 below one cent.
 *
 * @example
 * formatMoney("1234.5678", "USD"); // "1,234.57 USD"
 * formatMoney("0.00327", "EUR");   // "0.0033 EUR"
 * formatMoney(null, null);         // "unpriced"
 */
export function formatMoney(amount: string | null, currency: string | null): string {
  if (amount === null || currency === null) return "unpriced";
  const d = new Prisma.Decimal(amount);
  const places = d.abs().lt("0.01") && !d.isZero() ? 4 : 2;
  const [int, frac] = d.toFixed(places).split(".");
  return `${int.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${frac} ${currency}`;
}

function bucketLabel(date: Date, bucket: TimeBucket | undefined, timeZone: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(date);
  const p = (t: string) => parts.find((x) => x.type === t)?.value ?? "";
  if (bucket === "month") return `${p("year")}-${p("month")}`;
  if (bucket === "hour") return `${p("year")}-${p("month")}-${p("day")} ${p("hour")}:${p("minute")}`;
  return `${p("year")}-${p("month")}-${p("day")}`;
}

function keyLabel(row: CostReportRow, key: Key, names: ReportNames): string {
  const id = row[key];
  if (id === null) return key === "modelId" ? "(external API)" : key === "externalApiId" ? "(model)" : "—";
  if (id === undefined) return "";
  if (key === "userId") return `user ${id}`;
  const name = names[key].get(id);
  return name ? `${name} (#${id})` : `#${id}`;
}

/** What a table shows: which keys, and whether rows are buckets. */
export interface TableLayout {
  readonly keys: readonly Key[];
  readonly bucket?: TimeBucket;
  readonly timeZone: string;
  /** For an agent-tree report: indent agents by depth. */
  readonly depthOf?: ReadonlyMap<number, number>;
}

/**
 * The cost report as a terminal table, with totals per currency below it. A "Web searches"
 * column is shown when some usage of the report made web searches.
 *
 * @example
 * const report = await costReport(db, { groupBy: ["modelId"], bucket: "month" });
 * console.log(formatReportTable(report, await loadReportNames(db, report.rows), { keys: ["modelId"], bucket: "month", timeZone: "UTC" }));
 */
export function formatReportTable(report: CostReport, names: ReportNames, layout: TableLayout): string {
  // Model and API usage never share a row: one column shows whichever the row is.
  const merged = layout.keys.includes("modelId") && layout.keys.includes("externalApiId");
  const keys = merged ? layout.keys.filter((k) => k !== "externalApiId") : layout.keys;
  const title = (k: Key) => (merged && k === "modelId" ? "Model or external API" : KEY_TITLE[k]);
  const searches = report.totals.some((t) => t.webSearchCount > 0n);
  const counts = ["Model calls", "Tokens in", "Tokens out", ...(searches ? ["Web searches"] : []), "API calls", "Cost"];
  const head = [...(layout.bucket ? [layout.bucket[0].toUpperCase() + layout.bucket.slice(1)] : []), ...keys.map(title), ...counts];
  const numeric = (i: number) => i >= head.length - counts.length;
  const table = new Table({
    head,
    style: { head: process.stdout.isTTY ? ["cyan"] : [], border: [], compact: true },
    colAligns: head.map((_, i) => (numeric(i) ? "right" : "left")),
  });
  let previous: string[] = [];
  for (const row of report.rows) {
    const labels = [
      ...(layout.bucket && row.bucketStart ? [bucketLabel(row.bucketStart, layout.bucket, layout.timeZone)] : []),
      ...keys.map((k) => {
        const key = merged && k === "modelId" && row.modelId === null ? "externalApiId" : k;
        const label = keyLabel(row, key, names);
        const depth = k === "agentId" && typeof row.agentId === "number" ? layout.depthOf?.get(row.agentId) : undefined;
        return depth ? `${"  ".repeat(depth)}└ ${label}` : label;
      }),
    ];
    // A group with several currencies has a row per currency: name the group once.
    const same = labels.length > 0 && labels.every((l, i) => l === previous[i]);
    previous = labels;
    table.push([
      ...(same ? labels.map(() => "") : labels),
      formatCount(row.modelEvents),
      formatCount(sum(row, IN_COUNTERS)),
      formatCount(sum(row, OUT_COUNTERS)),
      ...(searches ? [formatCount(row.webSearchCount)] : []),
      formatCount(row.externalApiCalls),
      formatMoney(row.cost, row.currency),
    ]);
  }
  const totals = report.totals
    .map((t) => `  ${formatMoney(t.cost, t.currency).padStart(16)}   (models ${formatMoney(t.modelCost, t.currency)}, external APIs ${formatMoney(t.externalApiCost, t.currency)})`)
    .join("\n");
  const unpriced = report.unpricedEvents > 0n ? `\n  ${formatCount(report.unpricedEvents)} usage event(s) have no price in force and are not in the totals.` : "";
  return `${table.toString()}\nTotal per currency:\n${totals || "  (no usage)"}${unpriced}\n`;
}

/**
 * JSON with bigints as strings and dates as ISO 8601.
 *
 * @example
 * fs.writeFileSync("report.json", formatReportJson(await costReport(db)));
 */
export function formatReportJson(report: CostReport | AgentTreeCostReport): string {
  return JSON.stringify(report, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2) + "\n";
}

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? "" : v instanceof Date ? v.toISOString() : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * CSV: one line per row, every counter (the token counters, then `webSearchCount`) and exact
 * amount in its own column.
 *
 * @example
 * const report = await costReport(db, { groupBy: ["agentId"], bucket: "day" });
 * fs.writeFileSync("costs.csv", formatReportCsv(report, { keys: ["agentId"], bucket: "day" }));
 */
export function formatReportCsv(report: CostReport, layout: Pick<TableLayout, "keys" | "bucket">): string {
  const counters = Object.keys(report.rows[0]?.tokens ?? report.totals[0]?.tokens ?? {});
  const head = [
    ...(layout.bucket ? ["bucketStart"] : []),
    ...layout.keys,
    "currency",
    "modelEvents",
    ...counters,
    "webSearchCount",
    "modelCost",
    "externalApiEvents",
    "externalApiCalls",
    "externalApiCost",
    "cost",
  ];
  const lines = [head.join(",")];
  for (const r of report.rows) {
    lines.push(
      [
        ...(layout.bucket ? [r.bucketStart] : []),
        ...layout.keys.map((k) => r[k]),
        r.currency,
        r.modelEvents,
        ...counters.map((c) => r.tokens[c as keyof CostAmounts["tokens"]]),
        r.webSearchCount,
        r.modelCost,
        r.externalApiEvents,
        r.externalApiCalls,
        r.externalApiCost,
        r.cost,
      ]
        .map(csvCell)
        .join(","),
    );
  }
  return lines.join("\n") + "\n";
}
