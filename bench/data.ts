/**
 * The benchmark's data: a seeded generator of realistic model-usage events, so every contender
 * and both backends get exactly the same rows.
 *
 * Shape of the data (chosen to look like a PolicySynth deployment, not uniform noise):
 * - 5 models with skewed popularity and per-model token profiles (a reasoning model writes
 *   reasoning tokens, a small model gets short prompts, ...);
 * - an agent tree of 1,000 agents under one root (random parents, so a few levels deep and
 *   uneven) plus 20 small unrelated trees of 10 agents; 5% of events have no agent;
 * - 40 connectors, used by 35% of events; 60 users with Zipf-like activity;
 * - timestamps over 90 days with a working-hours and weekday rhythm;
 * - input tokens log-normal; 2% of calls cross a 128k long-context threshold and then, as in
 *   PolicySynth, all their tokens go to the long_context_* counters.
 */
import { seededRandom } from "../src/random";
import { MODEL_USAGE_COUNTERS, type ModelUsageInput, type ModelUsageCounter } from "../src/types";


/** The counters in table order, as field names. */
export const COUNTER_FIELDS: readonly ModelUsageCounter[] = MODEL_USAGE_COUNTERS.map(([field]) => field);
/** The counters in table order, as column names. */
export const COUNTER_COLUMNS: readonly string[] = MODEL_USAGE_COUNTERS.map(([, column]) => column);

export const TREE_SIZE = 1000;
export const OTHER_TREES = 20;
export const OTHER_TREE_SIZE = 10;
export const CONNECTOR_COUNT = 40;
export const USER_COUNT = 60;
export const DAYS = 90;
/** The generated window ends here (exclusive); fixed so every run makes the same rows. */
export const WINDOW_END = Date.UTC(2026, 9, 1);
export const LONG_CONTEXT_THRESHOLD = 128_000;

interface ModelProfile {
  readonly name: string;
  /** PolicySynth's `configuration.prices` for the model (USD per million tokens). */
  readonly prices: Readonly<Record<string, number | string>>;
  readonly weight: number;
  /** Median input tokens per call (log-normal). */
  readonly medianIn: number;
  readonly medianOut: number;
  readonly reasoning: boolean;
  readonly cacheShare: number;
  readonly audio: boolean;
  readonly image: boolean;
}

export const MODEL_PROFILES: readonly ModelProfile[] = [
  { name: "gpt-4.1", prices: { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 8, costInCachedContextTokensPerMillion: 0.5, longContextCostInTokensPerMillion: 4, longContextCostOutTokensPerMillion: 16, longContextTokenThreshold: LONG_CONTEXT_THRESHOLD }, weight: 0.34, medianIn: 3500, medianOut: 600, reasoning: false, cacheShare: 0.3, audio: false, image: false },
  { name: "claude-sonnet-4", prices: { currency: "USD", costInTokensPerMillion: 3, costOutTokensPerMillion: 15, costInCachedContextTokensPerMillion: 0.3, cacheWriteInputCostMultiplier: 1.25, longContextCostInTokensPerMillion: 6, longContextCostOutTokensPerMillion: 22.5, longContextCostInCachedContextTokensPerMillion: 0.6, longContextTokenThreshold: LONG_CONTEXT_THRESHOLD }, weight: 0.26, medianIn: 6000, medianOut: 900, reasoning: false, cacheShare: 0.5, audio: false, image: false },
  { name: "gpt-4.1-mini", prices: { currency: "USD", costInTokensPerMillion: 0.4, costOutTokensPerMillion: 1.6, costInCachedContextTokensPerMillion: 0.1 }, weight: 0.22, medianIn: 1200, medianOut: 250, reasoning: false, cacheShare: 0.1, audio: false, image: false },
  { name: "o3", prices: { currency: "USD", costInTokensPerMillion: 2, costOutTokensPerMillion: 8, costInCachedContextTokensPerMillion: 0.5 }, weight: 0.12, medianIn: 5000, medianOut: 700, reasoning: true, cacheShare: 0.2, audio: false, image: false },
  { name: "gpt-4o-audio", prices: { currency: "USD", costInTokensPerMillion: 2.5, costOutTokensPerMillion: 10 }, weight: 0.06, medianIn: 900, medianOut: 300, reasoning: false, cacheShare: 0, audio: true, image: true },
];

/** The agent forest: index 0 is the big tree's root; parents always come before children. */
export function agentForest(seed: number): number[] {
  const random = seededRandom(seed ^ 0x5eed);
  const parents: number[] = [-1];
  for (let i = 1; i < TREE_SIZE; i++) {
    // Bias towards recent agents: trees a few levels deep, with bushy spots, like real runs.
    parents.push(Math.floor(i * Math.sqrt(random())));
  }
  for (let t = 0; t < OTHER_TREES; t++) {
    const root = parents.length;
    parents.push(-1);
    for (let i = 1; i < OTHER_TREE_SIZE; i++) parents.push(root + Math.floor(random() * i));
  }
  return parents;
}

/**
 * A compact, columnar copy of N events: the source every contender converts from. Ids are
 * indexes (model index, agent index or -1, connector index or -1); the harness maps them to the
 * ids the database assigned.
 */
export interface EventColumns {
  readonly count: number;
  readonly userId: Int32Array;
  readonly modelIndex: Int8Array;
  readonly agentIndex: Int32Array;
  readonly connectorIndex: Int32Array;
  readonly createdAtMs: Float64Array;
  readonly counters: readonly Int32Array[];
}

function logNormal(random: () => number, median: number, sigma: number): number {
  // Box-Muller; u1 kept away from 0.
  const u1 = random() * 0.999999 + 0.000001;
  const u2 = random();
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  return median * Math.exp(sigma * z);
}

function pickWeighted(random: () => number, cumulative: readonly number[]): number {
  const r = random();
  for (let i = 0; i < cumulative.length; i++) if (r < cumulative[i]) return i;
  return cumulative.length - 1;
}

/** Generates `count` events from `seed`. Same seed and count, same events. */
export function generateEvents(count: number, seed: number, agentCount: number): EventColumns {
  const random = seededRandom(seed);
  const counters = COUNTER_FIELDS.map(() => new Int32Array(count));
  const col = (field: ModelUsageCounter) => counters[COUNTER_FIELDS.indexOf(field)];
  const [tin, tinCached, tinCacheWrite, lcIn, lcInCached, lcInCacheWrite, tout, toutReasoning, toutAudio, toutImage, lcOut, lcOutReasoning, lcOutAudio, lcOutImage] = [
    "tokenInCount", "tokenInCachedContextCount", "tokenInCacheWriteCount", "longContextTokenInCount",
    "longContextTokenInCachedContextCount", "longContextTokenInCacheWriteCount", "tokenOutCount",
    "tokenOutReasoningCount", "tokenOutAudioCount", "tokenOutImageCount", "longContextTokenOutCount",
    "longContextTokenOutReasoningCount", "longContextTokenOutAudioCount", "longContextTokenOutImageCount",
  ].map((f) => col(f as ModelUsageCounter));

  let acc = 0;
  const modelCumulative = MODEL_PROFILES.map((m) => (acc += m.weight));
  // Zipf-like users: user k is picked with weight 1/k.
  let userAcc = 0;
  const userWeights = Array.from({ length: USER_COUNT }, (_, k) => 1 / (k + 1));
  const userTotal = userWeights.reduce((a, b) => a + b, 0);
  const userCumulative = userWeights.map((w) => (userAcc += w / userTotal));
  const windowStart = WINDOW_END - DAYS * 86_400_000;

  const userId = new Int32Array(count);
  const modelIndex = new Int8Array(count);
  const agentIndex = new Int32Array(count);
  const connectorIndex = new Int32Array(count);
  const createdAtMs = new Float64Array(count);

  for (let i = 0; i < count; i++) {
    userId[i] = 1 + pickWeighted(random, userCumulative);
    const m = pickWeighted(random, modelCumulative);
    modelIndex[i] = m;
    // 70% of events land in the big tree (the agents doing most work), the rest elsewhere.
    const r = random();
    agentIndex[i] = r < 0.05 ? -1 : r < 0.75 ? Math.floor(random() * TREE_SIZE) : TREE_SIZE + Math.floor(random() * (agentCount - TREE_SIZE));
    connectorIndex[i] = random() < 0.35 ? Math.floor(random() * CONNECTOR_COUNT) : -1;

    // A day, then an hour with a working-day rhythm (weekends and nights are quieter).
    let t: number;
    for (;;) {
      t = windowStart + Math.floor(random() * DAYS * 86_400_000);
      const d = new Date(t);
      const hour = d.getUTCHours();
      const weekday = d.getUTCDay();
      const busy = (hour >= 7 && hour <= 19 ? 1 : 0.25) * (weekday === 0 || weekday === 6 ? 0.4 : 1);
      if (random() < busy) break;
    }
    createdAtMs[i] = t;

    const p = MODEL_PROFILES[m];
    const isLong = random() < 0.02;
    const input = isLong
      ? LONG_CONTEXT_THRESHOLD + Math.floor(random() * 700_000)
      : Math.min(LONG_CONTEXT_THRESHOLD - 1, Math.max(1, Math.round(logNormal(random, p.medianIn, 0.9))));
    const cached = p.cacheShare > 0 && random() < 0.6 ? Math.floor(input * p.cacheShare * random()) : 0;
    const cacheWrite = p.cacheShare > 0 && random() < 0.1 ? Math.floor(input * 0.2 * random()) : 0;
    const out = Math.max(1, Math.round(logNormal(random, p.medianOut, 0.8)));
    const reasoning = p.reasoning ? Math.round(logNormal(random, p.medianOut * 3, 0.7)) : 0;
    const audio = p.audio && random() < 0.5 ? Math.round(logNormal(random, 2000, 0.5)) : 0;
    const image = p.image && random() < 0.2 ? Math.round(logNormal(random, 1500, 0.4)) : 0;
    if (isLong) {
      lcIn[i] = input - cached;
      lcInCached[i] = cached;
      lcInCacheWrite[i] = cacheWrite;
      lcOut[i] = out;
      lcOutReasoning[i] = reasoning;
      lcOutAudio[i] = audio;
      lcOutImage[i] = image;
    } else {
      tin[i] = input - cached;
      tinCached[i] = cached;
      tinCacheWrite[i] = cacheWrite;
      tout[i] = out;
      toutReasoning[i] = reasoning;
      toutAudio[i] = audio;
      toutImage[i] = image;
    }
  }
  return { count, userId, modelIndex, agentIndex, connectorIndex, createdAtMs, counters };
}

/** The database ids of the rows the events point at, in generation order. */
export interface IdMap {
  readonly modelIds: readonly number[];
  readonly agentIds: readonly number[];
  readonly connectorIds: readonly number[];
}

/**
 * Events `from`..`to` as the input objects an application would hand to a record API
 * (camelCase; zero counters left out, as a caller would).
 */
export function toInputs(events: EventColumns, ids: IdMap, from = 0, to = events.count): ModelUsageInput[] {
  const out: ModelUsageInput[] = new Array(to - from);
  for (let i = from; i < to; i++) {
    const input: Record<string, unknown> = {
      userId: events.userId[i],
      modelId: ids.modelIds[events.modelIndex[i]],
      agentId: events.agentIndex[i] < 0 ? null : ids.agentIds[events.agentIndex[i]],
      connectorId: events.connectorIndex[i] < 0 ? null : ids.connectorIds[events.connectorIndex[i]],
      createdAt: new Date(events.createdAtMs[i]),
    };
    for (let c = 0; c < COUNTER_FIELDS.length; c++) {
      const v = events.counters[c][i];
      if (v !== 0) input[COUNTER_FIELDS[c]] = v;
    }
    out[i - from] = input as ModelUsageInput;
  }
  return out;
}

/** What the table must hold after ingesting the events: row count and SUM(token_in_count). */
export function expectedTotals(events: EventColumns, to = events.count): { rows: number; tokenIn: bigint } {
  let tokenIn = 0;
  const col = events.counters[COUNTER_FIELDS.indexOf("tokenInCount")];
  for (let i = 0; i < to; i++) tokenIn += col[i];
  return { rows: to, tokenIn: BigInt(tokenIn) };
}
