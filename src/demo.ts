import type { Database } from "./db";
import { UnknownReferenceError } from "./errors";
import { translateDatabaseError } from "./usageShared";
import { recordExternalApiUsageBatch } from "./externalApiUsage";
import { recordModelUsageBatch } from "./modelUsage";
import { seededRandom } from "./random";
import { setExternalApiPrice, setModelPrice, type ModelPriceInput } from "./prices";
import type { ExternalApiUsageInput, ModelUsageInput } from "./types";
import { setBudget } from "./budgets/define";
import { budgetStatus } from "./budgets/status";
import { Prisma } from "./generated/prisma/client";

/** Options for {@link seedDemo}. */
export interface DemoOptions {
  /** Usage events to create (model calls and external API calls together). Default: 100,000. */
  readonly events?: number;
  /** Days of history, ending at `until`. Default: 90. */
  readonly days?: number;
  /** The end of the period. Default: now. */
  readonly until?: Date;
  /** Seed of the pseudo-random generator: the same seed gives the same data. Default: 42. */
  readonly seed?: number;
  /** Events per batch call. Default: 10,000. */
  readonly batchSize?: number;
  /** Called after each batch with the number of events written so far. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** What {@link seedDemo} created. */
export interface DemoSummary {
  readonly modelIds: readonly number[];
  readonly externalApiIds: readonly number[];
  readonly rootAgentId: number;
  readonly agentIds: readonly number[];
  readonly connectorIds: readonly number[];
  readonly modelUsageEvents: number;
  readonly externalApiUsageEvents: number;
  /** When the one price change in the period takes effect. */
  readonly priceChangeAt: Date;
  /** The demo's budgets (see {@link setDemoBudgets}). */
  readonly budgetNames: readonly string[];
}


interface DemoModel {
  readonly name: string;
  readonly prices: ModelPriceInput;
  /** Relative share of calls. */
  readonly weight: number;
  readonly reasoning?: boolean;
  readonly cacheWrite?: boolean;
  readonly audio?: boolean;
  readonly image?: boolean;
}

// List prices per million tokens, in the shape of PolicySynth's configuration.prices.
const MODELS: readonly DemoModel[] = [
  {
    name: "gpt-4.1",
    weight: 30,
    prices: { currency: "USD", costInTokensPerMillion: "2", costOutTokensPerMillion: "8", costInCachedContextTokensPerMillion: "0.5" },
  },
  {
    name: "claude-sonnet-4",
    weight: 25,
    cacheWrite: true,
    prices: {
      currency: "USD",
      costInTokensPerMillion: "3",
      costOutTokensPerMillion: "15",
      costInCachedContextTokensPerMillion: "0.3",
      cacheWriteInputCostMultiplier: "1.25",
      longContextTokenThreshold: 200000,
      longContextCostInTokensPerMillion: "6",
      longContextCostInCachedContextTokensPerMillion: "0.6",
      longContextCostOutTokensPerMillion: "22.5",
    },
  },
  {
    name: "gemini-2.5-pro",
    weight: 20,
    reasoning: true,
    prices: {
      currency: "USD",
      costInTokensPerMillion: "1.25",
      costOutTokensPerMillion: "10",
      costInCachedContextTokensPerMillion: "0.31",
      longContextTokenThreshold: 200000,
      longContextCostInTokensPerMillion: "2.5",
      longContextCostOutTokensPerMillion: "15",
    },
  },
  {
    name: "o4-mini",
    weight: 15,
    reasoning: true,
    prices: { currency: "USD", costInTokensPerMillion: "1.1", costOutTokensPerMillion: "4.4", costInCachedContextTokensPerMillion: "0.275" },
  },
  {
    name: "gpt-4o-audio",
    weight: 4,
    audio: true,
    image: true,
    prices: {
      currency: "USD",
      costInTokensPerMillion: "2.5",
      costOutTokensPerMillion: "10",
      costOutAudioTokensPerMillion: "80",
      costOutImageTokensPerMillion: "40",
    },
  },
  {
    name: "mistral-large",
    weight: 6,
    prices: { currency: "EUR", costInTokensPerMillion: "1.8", costOutTokensPerMillion: "5.4" },
  },
];

// gpt-4.1's price drop in the middle of the period: usage before it keeps the old price.
const PRICE_CHANGE = { model: "gpt-4.1", costInTokensPerMillion: "1.6", costOutTokensPerMillion: "6.4", costInCachedContextTokensPerMillion: "0.4" };

const EXTERNAL_APIS = [
  { type: "google-search", priceAdapter: { unitType: "search", pricePerUnit: "0.005", currency: "USD" }, weight: 50 },
  { type: "firecrawl-scrape", priceAdapter: { unitType: "page", pricePerUnit: "0.00083", currency: "USD" }, weight: 35 },
  { type: "deepl-translate", priceAdapter: { unitType: "request", pricePerUnit: "0.0025", currency: "EUR" }, weight: 15 },
] as const;

const AGENT_TREE = [
  "Policy research orchestrator",
  ["Problem statement analyst", ["Root cause researcher", "Evidence web searcher"]],
  ["Solution generator", ["Solution ranker", "Pros and cons writer", "Solution evolver"]],
  ["Report writer", ["Citation checker", "Translator"]],
] as const;

function pick<T extends { weight: number }>(items: readonly T[], r: number): number {
  const total = items.reduce((s, i) => s + i.weight, 0);
  let x = r * total;
  for (let i = 0; i < items.length; i++) {
    x -= items[i].weight;
    if (x < 0) return i;
  }
  return items.length - 1;
}

/**
 * Fills the database with a realistic sample, through the batch API: six models with list
 * prices (one price change half-way, one model priced in EUR), three external APIs, an agent
 * tree three levels deep with connectors, five users, and `events` usage events spread over
 * `days` days with a weekly rhythm.
 *
 * @example
 * const summary = await seedDemo(db, { events: 100_000, onProgress: (n, total) => bar.update(n) });
 */
export async function seedDemo(db: Database, options: DemoOptions = {}): Promise<DemoSummary> {
  try {
    return await seedDemoRows(db, options);
  } catch (err) {
    // Its own writes through the Prisma client (models, agents) need the typed errors too.
    throw await translateDatabaseError(db, err, async () => new UnknownReferenceError("a referenced table", null));
  }
}

async function seedDemoRows(db: Database, options: DemoOptions): Promise<DemoSummary> {
  const total = options.events ?? 100_000;
  const days = options.days ?? 90;
  const until = options.until ?? new Date();
  const batchSize = options.batchSize ?? 10_000;
  const rand = seededRandom(options.seed ?? 42);
  const start = new Date(until.getTime() - days * 86_400_000);
  const priceChangeAt = new Date(start.getTime() + Math.floor(days / 2) * 86_400_000);

  const modelIds: number[] = [];
  for (const m of MODELS) {
    const row = await db.prisma.psAiModel.create({ data: { userId: 1, name: m.name, configuration: { prices: { ...m.prices } } } });
    modelIds.push(row.id);
    await setModelPrice(db, row.id, m.prices, start);
  }
  const changed = MODELS.findIndex((m) => m.name === PRICE_CHANGE.model);
  const { model: _name, ...newRates } = PRICE_CHANGE;
  const newPrices: ModelPriceInput = { ...MODELS[changed].prices, ...newRates };
  await setModelPrice(db, modelIds[changed], newPrices, priceChangeAt);
  await db.prisma.psAiModel.update({ where: { id: modelIds[changed] }, data: { configuration: { prices: { ...newPrices } } } });

  const externalApiIds: number[] = [];
  for (const a of EXTERNAL_APIS) {
    const row = await db.prisma.psExternalApi.create({ data: { userId: 1, type: a.type, priceAdapter: a.priceAdapter } });
    externalApiIds.push(row.id);
    await setExternalApiPrice(db, row.id, a.priceAdapter, start);
  }

  const connectorIds: number[] = [];
  for (const name of ["Google Docs", "Discord", "Your Priorities"]) {
    connectorIds.push((await db.prisma.psAgentConnector.create({ data: { userId: 1, classId: 1, groupId: 1, configuration: { name } } })).id);
  }
  const agent = async (name: string, parentAgentId: number | null) =>
    (await db.prisma.psAgent.create({ data: { userId: 1, classId: 1, groupId: 1, parentAgentId, configuration: { name } } })).id;
  const rootAgentId = await agent(AGENT_TREE[0], null);
  const agentIds = [rootAgentId];
  for (const [childName, grandChildren] of AGENT_TREE.slice(1) as unknown as [string, readonly string[]][]) {
    const child = await agent(childName, rootAgentId);
    agentIds.push(child);
    for (const g of grandChildren) agentIds.push(await agent(g, child));
  }

  const users = [1, 2, 3, 4, 5];
  const span = until.getTime() - start.getTime();
  let modelEvents = 0;
  let apiEvents = 0;
  for (let done = 0; done < total; ) {
    const n = Math.min(batchSize, total - done);
    const modelBatch: ModelUsageInput[] = [];
    const apiBatch: ExternalApiUsageInput[] = [];
    for (let i = 0; i < n; i++) {
      // Fewer calls at weekends: redraw a weekend timestamp half of the time.
      let t = start.getTime() + Math.floor(rand() * span);
      const dow = new Date(t).getUTCDay();
      if ((dow === 0 || dow === 6) && rand() < 0.5) t = start.getTime() + Math.floor(rand() * span);
      const createdAt = new Date(t);
      const userId = users[Math.floor(Math.pow(rand(), 1.6) * users.length)];
      const agentId = agentIds[Math.floor(rand() * agentIds.length)];
      const connectorId = rand() < 0.3 ? connectorIds[Math.floor(rand() * connectorIds.length)] : null;
      if (rand() < 0.08) {
        const a = pick(EXTERNAL_APIS, rand());
        apiBatch.push({ userId, externalApiId: externalApiIds[a], callCount: 1 + Math.floor(rand() * 10), agentId, connectorId, createdAt });
        continue;
      }
      const m = MODELS[pick(MODELS, rand())];
      const modelId = modelIds[MODELS.indexOf(m)];
      const input = Math.floor(500 + rand() * rand() * 30_000);
      const cached = rand() < 0.4 ? Math.floor(input * rand() * 0.8) : 0;
      const out = Math.floor(100 + rand() * 2_500);
      const threshold = Number(m.prices.longContextTokenThreshold ?? Infinity);
      const long = rand() < 0.02 && threshold !== Infinity; // a few calls over the long-context threshold
      const longIn = long ? threshold + Math.floor(rand() * 150_000) : 0;
      const cacheWrite = m.cacheWrite && rand() < 0.15 ? Math.floor(input * 0.5) : 0;
      modelBatch.push({
        userId,
        modelId,
        agentId,
        connectorId,
        createdAt,
        tokenInCount: long ? 0 : input - cached,
        tokenInCachedContextCount: long ? 0 : cached,
        tokenInCacheWriteCount: long ? 0 : cacheWrite,
        tokenOutCount: long ? 0 : out,
        tokenOutReasoningCount: m.reasoning && !long ? Math.floor(out * rand() * 3) : 0,
        tokenOutAudioCount: m.audio && rand() < 0.5 ? Math.floor(200 + rand() * 3_000) : 0,
        tokenOutImageCount: m.image && rand() < 0.2 ? Math.floor(1_000 + rand() * 4_000) : 0,
        longContextTokenInCount: longIn,
        longContextTokenOutCount: long ? out * 2 : 0,
        longContextTokenOutReasoningCount: long && m.reasoning ? out * 3 : 0,
      });
    }
    if (modelBatch.length) await recordModelUsageBatch(db, modelBatch);
    if (apiBatch.length) await recordExternalApiUsageBatch(db, apiBatch);
    modelEvents += modelBatch.length;
    apiEvents += apiBatch.length;
    done += n;
    options.onProgress?.(done, total);
  }

  const budgetNames = await setDemoBudgets(db, rootAgentId, until);
  return {
    modelIds,
    externalApiIds,
    rootAgentId,
    agentIds,
    connectorIds,
    modelUsageEvents: modelEvents,
    externalApiUsageEvents: apiEvents,
    priceChangeAt,
    budgetNames,
  };
}

/**
 * The demo's budgets, sized from its own usage in the period holding `until`: the root agent's
 * tree per month at about 92 % of its limit (past the 50 % and 80 % thresholds, a hard limit),
 * user 1 per week at about 60 %, and user 2 per day at about 30 %.
 */
async function setDemoBudgets(db: Database, rootAgentId: number, until: Date): Promise<string[]> {
  const budgets = [
    { name: "demo-agent-tree-month", scope: { agentId: rootAgentId }, period: "month" as const, used: "0.92", hardLimit: true },
    { name: "demo-user-1-week", scope: { userId: 1 }, period: "week" as const, used: "0.6", hardLimit: false },
    { name: "demo-user-2-day", scope: { userId: 2 }, period: "day" as const, used: "0.3", hardLimit: false },
  ];
  const at = new Date(until.getTime() - 1);
  for (const b of budgets) {
    // Measured with a placeholder amount, then set to what makes it `used` full (at least 1 USD).
    await setBudget(db, { name: b.name, scope: b.scope, period: b.period, amount: 1, currency: "USD" });
    const { spent } = await budgetStatus(db, b.name, { at });
    const amount = Prisma.Decimal.max(new Prisma.Decimal(spent).div(b.used).toDecimalPlaces(2, Prisma.Decimal.ROUND_UP), 1);
    await setBudget(db, { name: b.name, scope: b.scope, period: b.period, amount: amount.toFixed(), currency: "USD", thresholds: [0.5, 0.8, 1], hardLimit: b.hardLimit });
  }
  return budgets.map((b) => b.name);
}
