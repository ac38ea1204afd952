// Load on PostgreSQL: 8 workers, each with a Database (a pool) of its own, record 10,000 events
// each at the same time, single and batch calls mixed, model and external API usage mixed.
// Some single records carry an idempotency key and are sent three times at once (twice by their
// worker, once by the next worker, as a client retrying through another process would).
// Afterwards the sums per user (= worker) equal, exactly, what the test generated.
import {
  MAX_INT32,
  MODEL_USAGE_COUNTERS,
  openDatabase,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  type Database,
  type ExternalApiUsageInput,
  type ModelUsageCounter,
  type ModelUsageInput,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { createScratchDatabase } from "./support/testDatabase";
import { seededRandom } from "../src/random";

const WORKERS = 8;
const EVENTS_PER_WORKER = 10_000;
const MODEL_EVENTS = 7_000; // of each worker's 10,000; the rest is external API usage
const SINGLE_MODEL = 600;
const KEYED_MODEL = 200;
const SINGLE_API = 300;
const KEYED_API = 100;


type Operation =
  | { kind: "model"; input: ModelUsageInput; key?: string }
  | { kind: "api"; input: ExternalApiUsageInput; key?: string }
  | { kind: "modelBatch"; inputs: ModelUsageInput[]; chunkSize?: number }
  | { kind: "apiBatch"; inputs: ExternalApiUsageInput[]; chunkSize?: number };

interface Refs {
  readonly models: number[];
  readonly apis: number[];
  readonly agents: number[];
  readonly connectors: number[];
}

/** One worker's events, as operations in a shuffled order, and what they must add up to. */
function workerPlan(worker: number, refs: Refs) {
  const random = seededRandom(0x5eed + worker);
  const int = (max: number) => Math.floor(random() * (max + 1));
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)];
  const userId = worker + 1;
  // Mostly realistic counts, a few at the INTEGER limit (their sums need more than 32 bits).
  const count = () => (random() < 0.01 ? MAX_INT32 : random() < 0.3 ? 0 : int(random() < 0.5 ? 5_000 : 200_000));
  const createdAt = () => (random() < 0.5 ? undefined : new Date(Date.UTC(2025, 0, 1) + int(365 * 86_400_000)));

  const modelEvent = (): ModelUsageInput => {
    const input: Record<string, unknown> = { userId, modelId: pick(refs.models) };
    if (random() < 0.7) input.agentId = pick(refs.agents);
    if (random() < 0.3) input.connectorId = pick(refs.connectors);
    const at = createdAt();
    if (at) input.createdAt = at;
    for (const [field] of MODEL_USAGE_COUNTERS) if (random() < 0.6) input[field] = count();
    if (random() < 0.3) input.webSearchCount = int(20);
    return input as ModelUsageInput;
  };
  const apiEvent = (): ExternalApiUsageInput => {
    const at = createdAt();
    return {
      userId,
      externalApiId: pick(refs.apis),
      callCount: count(),
      ...(random() < 0.5 ? { agentId: pick(refs.agents) } : {}),
      ...(at ? { createdAt: at } : {}),
    };
  };

  const modelEvents = Array.from({ length: MODEL_EVENTS }, modelEvent);
  const apiEvents = Array.from({ length: EVENTS_PER_WORKER - MODEL_EVENTS }, apiEvent);

  const operations: Operation[] = [];
  let m = 0;
  for (; m < SINGLE_MODEL; m++) operations.push({ kind: "model", input: modelEvents[m] });
  for (let k = 0; k < KEYED_MODEL; k++, m++) operations.push({ kind: "model", input: modelEvents[m], key: `load-${worker}-model-${k}` });
  while (m < modelEvents.length) {
    const size = 1 + int(1_500);
    // Some batches in small chunks: several statements in one transaction.
    operations.push({ kind: "modelBatch", inputs: modelEvents.slice(m, m + size), chunkSize: random() < 0.3 ? 1 + int(300) : undefined });
    m += size;
  }
  let a = 0;
  for (; a < SINGLE_API; a++) operations.push({ kind: "api", input: apiEvents[a] });
  for (let k = 0; k < KEYED_API; k++, a++) operations.push({ kind: "api", input: apiEvents[a], key: `load-${worker}-api-${k}` });
  while (a < apiEvents.length) {
    const size = 1 + int(1_000);
    operations.push({ kind: "apiBatch", inputs: apiEvents.slice(a, a + size), chunkSize: random() < 0.3 ? 1 + int(200) : undefined });
    a += size;
  }
  for (let i = operations.length - 1; i > 0; i--) {
    const j = int(i);
    [operations[i], operations[j]] = [operations[j], operations[i]];
  }

  const modelTotals = Object.fromEntries(MODEL_USAGE_COUNTERS.map(([field]) => [field, 0n])) as Record<ModelUsageCounter, bigint>;
  let webSearchCount = 0n;
  for (const event of modelEvents) {
    for (const [field] of MODEL_USAGE_COUNTERS) modelTotals[field] += BigInt(event[field] ?? 0);
    webSearchCount += BigInt(event.webSearchCount ?? 0);
  }
  const callCount = apiEvents.reduce((sum, event) => sum + BigInt(event.callCount), 0n);
  return {
    userId,
    operations,
    expectedModel: { userId, events: BigInt(modelEvents.length), ...modelTotals, webSearchCount },
    expectedApi: { userId, events: BigInt(apiEvents.length), callCount },
  };
}

/** Runs a worker's operations one after another; keyed records go out three times at once. */
async function runWorker(own: Database, neighbour: Database, operations: readonly Operation[]): Promise<number> {
  let calls = 0;
  for (const op of operations) {
    switch (op.kind) {
      case "model":
        if (op.key === undefined) {
          await recordModelUsage(own, op.input);
          calls++;
        } else {
          const options = { idempotencyKey: op.key };
          const rows = await Promise.all([own, own, neighbour].map((db) => recordModelUsage(db, op.input, options)));
          expect(new Set(rows.map((r) => r.id)).size).toBe(1);
          calls += 3;
        }
        break;
      case "api":
        if (op.key === undefined) {
          await recordExternalApiUsage(own, op.input);
          calls++;
        } else {
          const options = { idempotencyKey: op.key };
          const rows = await Promise.all([own, own, neighbour].map((db) => recordExternalApiUsage(db, op.input, options)));
          expect(new Set(rows.map((r) => r.id)).size).toBe(1);
          calls += 3;
        }
        break;
      case "modelBatch":
        expect((await recordModelUsageBatch(own, op.inputs, op.chunkSize ? { chunkSize: op.chunkSize } : undefined)).count).toBe(op.inputs.length);
        calls++;
        break;
      case "apiBatch":
        expect((await recordExternalApiUsageBatch(own, op.inputs, op.chunkSize ? { chunkSize: op.chunkSize } : undefined)).count).toBe(op.inputs.length);
        calls++;
        break;
    }
  }
  return calls;
}

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let setup: Database;
const workers: Database[] = [];

beforeAll(async () => {
  scratch = await createScratchDatabase();
  setup = await openDatabase({ url: scratch.url, migrate: true });
  for (let w = 0; w < WORKERS; w++) workers.push(await openDatabase({ url: scratch.url, poolSize: 3 }));
});
afterAll(async () => {
  for (const db of workers) await db.close();
  await setup?.close();
  await scratch?.drop();
});

test(`${WORKERS} concurrent workers x ${EVENTS_PER_WORKER} events, single and batch mixed: the sums per user are exactly what was sent`, async () => {
  const refs: Refs = { models: [], apis: [], agents: [], connectors: [] };
  for (let i = 0; i < 4; i++) refs.models.push(await createModel(setup, `model-${i}`));
  for (let i = 0; i < 3; i++) refs.apis.push(await createExternalApi(setup, `api-${i}`));
  for (let i = 0; i < 6; i++) refs.agents.push(await createAgent(setup));
  for (let i = 0; i < 2; i++) refs.connectors.push(await createConnector(setup));
  const plans = Array.from({ length: WORKERS }, (_, w) => workerPlan(w, refs));

  const started = Date.now();
  const calls = await Promise.all(plans.map((plan, w) => runWorker(workers[w], workers[(w + 1) % WORKERS], plan.operations)));
  const seconds = (Date.now() - started) / 1000;
  if (process.env.PS_USAGE_TEST_VERBOSE) {
    const total = calls.reduce((s, c) => s + c, 0);
    console.log(`load: ${WORKERS * EVENTS_PER_WORKER} events in ${total} calls, ${seconds.toFixed(1)} s, ${Math.round((WORKERS * EVENTS_PER_WORKER) / seconds)} events/s`);
  }

  const modelSums = await sumModelUsage(setup, { groupBy: ["userId"] });
  expect(modelSums).toEqual(plans.map((plan) => plan.expectedModel));
  const apiSums = await sumExternalApiUsage(setup, { groupBy: ["userId"] });
  expect(apiSums).toEqual(plans.map((plan) => plan.expectedApi));

  expect(await setup.prisma.psModelUsage.count()).toBe(WORKERS * MODEL_EVENTS);
  expect(await setup.prisma.psExternalApiUsage.count()).toBe(WORKERS * (EVENTS_PER_WORKER - MODEL_EVENTS));
  // One key row per keyed event, each pointing at one row of its worker.
  expect(await setup.prisma.psUsageIdempotencyKey.count({ where: { modelUsageId: { not: null } } })).toBe(WORKERS * KEYED_MODEL);
  expect(await setup.prisma.psUsageIdempotencyKey.count({ where: { externalApiUsageId: { not: null } } })).toBe(WORKERS * KEYED_API);
});
