// Property-based: for random batches, random filters and random groupings, the sums equal what
// the test adds up itself from the inputs it recorded (with BigInt, in UTC buckets).
import fc from "fast-check";
import {
  MAX_INT32,
  MODEL_USAGE_COUNTERS,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  type ExternalApiUsageInput,
  type ModelUsageFilter,
  type ModelUsageGroupBy,
  type ModelUsageInput,
  type TimeBucket,
} from "../src";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let models: number[], agents: number[], connectors: number[], apis: number[];

beforeAll(async () => {
  t = await openTestDatabase();
  models = [await createModel(t.db, "m1"), await createModel(t.db, "m2")];
  agents = [await createAgent(t.db), await createAgent(t.db)];
  connectors = [await createConnector(t.db)];
  apis = [await createExternalApi(t.db, "a"), await createExternalApi(t.db, "b")];
});
afterAll(() => t.dispose());

const RUNS = 25;
const START = Date.UTC(2026, 0, 1);
const END = Date.UTC(2026, 2, 1);
const COUNTERS = MODEL_USAGE_COUNTERS.map(([field]) => field);

const instant = () => fc.integer({ min: START, max: END - 1 }).map((ms) => new Date(ms));
const counter = () => fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: MAX_INT32 }));
const pick = <T>(values: () => readonly T[]) => fc.nat().map((n) => values()[n % values().length]);
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null });

const modelInput = (): fc.Arbitrary<ModelUsageInput> =>
  fc
    .record({
      userId: fc.integer({ min: 1, max: 3 }),
      modelId: pick(() => models),
      agentId: maybe(pick(() => agents)),
      connectorId: maybe(pick(() => connectors)),
      createdAt: instant(),
      counters: fc.tuple(...COUNTERS.map(() => counter())),
    })
    .map(({ counters, ...rest }) => ({ ...rest, ...Object.fromEntries(COUNTERS.map((field, i) => [field, counters[i]])) }));

const filterArb = (): fc.Arbitrary<ModelUsageFilter> =>
  fc
    .record(
      {
        userId: fc.integer({ min: 1, max: 3 }),
        agentId: fc.oneof(pick(() => agents), fc.subarray([0, 1]).map((ix) => ix.map((i) => agents[i]))),
        modelId: pick(() => models),
        bounds: fc.tuple(instant(), instant()),
      },
      { requiredKeys: [] },
    )
    .map(({ bounds, ...rest }) => {
      if (!bounds) return rest;
      const [x, y] = bounds;
      if (x.getTime() === y.getTime()) return { ...rest, from: x };
      return x < y ? { ...rest, from: x, to: y } : { ...rest, from: y, to: x };
    });

function matches(input: ModelUsageInput, where: ModelUsageFilter): boolean {
  const created = (input.createdAt as Date).getTime();
  const oneOf = (value: number | null | undefined, wanted: number | readonly number[] | undefined) =>
    wanted === undefined || (Array.isArray(wanted) ? wanted.includes(value as number) : value === wanted);
  return (
    oneOf(input.userId, where.userId) &&
    oneOf(input.agentId, where.agentId) &&
    oneOf(input.modelId, where.modelId) &&
    (where.from === undefined || created >= where.from.getTime()) &&
    (where.to === undefined || created < where.to.getTime())
  );
}

/** The UTC bucket start, computed without the database. */
function utcBucket(date: Date, bucket: TimeBucket): number {
  const d = new Date(date);
  if (bucket === "month") return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  if (bucket === "hour") return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours());
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  return bucket === "day" ? day : day - ((d.getUTCDay() + 6) % 7) * 86_400_000;
}

test("model usage: the total and every group equal the sums of the recorded inputs", async () => {
  const groupFields: ModelUsageGroupBy[] = ["userId", "agentId", "connectorId", "modelId"];
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(modelInput(), { minLength: 1, maxLength: 15 }), { minLength: 1, maxLength: 3 }),
      filterArb(),
      fc.subarray(groupFields),
      fc.constantFrom<TimeBucket | undefined>(undefined, "hour", "day", "week", "month"),
      async (batches, where, groupBy, bucket) => {
        await t.db.prisma.psModelUsage.deleteMany();
        for (const batch of batches) await recordModelUsageBatch(t.db, batch);
        const inputs = batches.flat();

        // The total, unfiltered and filtered.
        for (const filter of [{}, where]) {
          const chosen = inputs.filter((input) => matches(input, filter));
          const [total] = await sumModelUsage(t.db, { where: filter });
          expect(total.events).toBe(BigInt(chosen.length));
          for (const field of COUNTERS) {
            expect([field, total[field]]).toEqual([field, chosen.reduce((sum, input) => sum + BigInt(input[field] ?? 0), 0n)]);
          }
        }

        // Groups (and buckets), filtered.
        const expected = new Map<string, Record<string, bigint>>();
        for (const input of inputs.filter((i) => matches(i, where))) {
          const key = JSON.stringify([
            ...groupBy.map((field) => input[field] ?? null),
            ...(bucket ? [utcBucket(input.createdAt as Date, bucket)] : []),
          ]);
          const sums = expected.get(key) ?? Object.fromEntries([["events", 0n], ...COUNTERS.map((f) => [f, 0n])]);
          sums.events += 1n;
          for (const field of COUNTERS) sums[field] += BigInt(input[field] ?? 0);
          expected.set(key, sums);
        }
        const rows = await sumModelUsage(t.db, { where, groupBy, bucket });
        const got = new Map<string, Record<string, bigint>>();
        for (const row of rows) {
          const record = row as unknown as Record<string, unknown>;
          const key = JSON.stringify([...groupBy.map((field) => record[field]), ...(bucket ? [(record.bucketStart as Date).getTime()] : [])]);
          expect(got.has(key)).toBe(false);
          got.set(key, Object.fromEntries(["events", ...COUNTERS].map((f) => [f, record[f] as bigint])));
        }
        if (groupBy.length === 0 && !bucket) {
          // One total row even when nothing matches.
          expect(rows).toHaveLength(1);
          if (expected.size === 0) expected.set("[]", Object.fromEntries([["events", 0n], ...COUNTERS.map((f) => [f, 0n])]));
        }
        expect(Object.fromEntries(got)).toEqual(Object.fromEntries(expected));
      },
    ),
    { numRuns: RUNS },
  );
});

test("external API usage: the total and the per-API sums equal the recorded calls", async () => {
  const apiInput = (): fc.Arbitrary<ExternalApiUsageInput> =>
    fc.record({
      userId: fc.integer({ min: 1, max: 3 }),
      externalApiId: pick(() => apis),
      agentId: maybe(pick(() => agents)),
      callCount: counter(),
      createdAt: instant(),
    });
  await fc.assert(
    fc.asyncProperty(fc.array(fc.array(apiInput(), { minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 3 }), async (batches) => {
      await t.db.prisma.psExternalApiUsage.deleteMany();
      for (const batch of batches) await recordExternalApiUsageBatch(t.db, batch);
      const inputs = batches.flat();
      const [total] = await sumExternalApiUsage(t.db);
      expect(total).toEqual({
        events: BigInt(inputs.length),
        callCount: inputs.reduce((sum, i) => sum + BigInt(i.callCount), 0n),
      });
      const perApi = await sumExternalApiUsage(t.db, { groupBy: ["externalApiId"] });
      const expected = apis
        .map((id) => {
          const mine = inputs.filter((i) => i.externalApiId === id);
          return { externalApiId: id, events: BigInt(mine.length), callCount: mine.reduce((s, i) => s + BigInt(i.callCount), 0n) };
        })
        .filter((row) => row.events > 0n);
      expect(perApi).toEqual(expected);
    }),
    { numRuns: RUNS },
  );
});
