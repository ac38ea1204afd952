/**
 * This package's side of each comparison, called through its public API exactly as a README user
 * would, and its results put in the same normalized shapes as the baselines' so they can be
 * checked equal.
 */
import { agentTreeCostReport, recordModelUsage, recordModelUsageBatch, sumAgentTreeUsage, sumModelUsage } from "../src";
import { MODEL_USAGE_COUNTERS, type ModelUsageInput } from "../src/types";
import type { SumQuery, SumTable, TreeTotals } from "./baselines";
import type { Backend } from "./setup";

type Sums = { readonly events: bigint } & Record<string, unknown>;

function sumsOf(row: Sums): bigint[] {
  return [row.events, ...MODEL_USAGE_COUNTERS.map(([field]) => row[field] as bigint)];
}

export interface Ours {
  /** One recordModelUsageBatch call with every input (`chunkSize` only when set explicitly). */
  ingest(backend: Backend, inputs: readonly ModelUsageInput[], chunkSize?: number): Promise<void>;
  /** One recordModelUsage call; with `idempotencyKey`, a keyed one. */
  insertOne(backend: Backend, row: ModelUsageInput, idempotencyKey?: string): Promise<unknown>;
  sum(backend: Backend, query: SumQuery): Promise<SumTable>;
  tree(backend: Backend, rootId: number): Promise<TreeTotals>;
  /** The tree's total cost in USD (exact decimal string) and how many agents have priced usage. */
  treeCost(backend: Backend, rootId: number): Promise<{ agents: number; totalCost: string }>;
}

export const ours: Ours = {
  async ingest(backend, inputs, chunkSize) {
    await recordModelUsageBatch(backend.db, inputs, chunkSize === undefined ? undefined : { chunkSize });
  },

  insertOne(backend, row, idempotencyKey) {
    return recordModelUsage(backend.db, row, idempotencyKey === undefined ? undefined : { idempotencyKey });
  },

  async sum(backend, query) {
    const table: SumTable = new Map();
    if (query === "total") {
      for (const row of await sumModelUsage(backend.db, {})) table.set("total", sumsOf(row));
    } else if (query === "byAgent") {
      for (const row of await sumModelUsage(backend.db, { groupBy: ["agentId"] })) table.set(String(row.agentId ?? "null"), sumsOf(row));
    } else {
      for (const row of await sumModelUsage(backend.db, { groupBy: ["modelId"], bucket: "day", timeZone: "UTC" })) {
        table.set(`${row.modelId}|${row.bucketStart.toISOString()}`, sumsOf(row));
      }
    }
    return table;
  },

  async tree(backend, rootId) {
    const usage = await sumAgentTreeUsage(backend.db, rootId);
    const perAgent: SumTable = new Map();
    // PolicySynth's walk only sees agents that have usage rows; compare like with like.
    for (const agent of usage.agents) {
      if (agent.modelUsage.events > 0n) perAgent.set(String(agent.agentId), sumsOf(agent.modelUsage));
    }
    return { perAgent, total: sumsOf(usage.total.modelUsage) };
  },

  async treeCost(backend, rootId) {
    const report = await agentTreeCostReport(backend.db, rootId);
    const usd = report.totals.find((t) => t.currency === "USD");
    const agents = new Set(report.rows.filter((r) => r.currency === "USD" && r.modelEvents > 0n).map((r) => r.agentId)).size;
    return { agents, totalCost: usd?.cost ?? "0" };
  },
};
