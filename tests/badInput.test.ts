// Bad input through the API, generated (tests/support/badInputs.ts, seeded): every one gets its
// typed error (UsageValidationError naming each bad field with the right reason and batch index,
// or UnknownReferenceError naming the table and id), nothing is written, and the process stays
// healthy: good records work afterwards and the heap does not grow with the number of bad calls.
import v8 from "node:v8";
import vm from "node:vm";
import {
  PsUsageError,
  UnknownReferenceError,
  UsageValidationError,
  recordExternalApiUsage,
  recordExternalApiUsageBatch,
  recordModelUsage,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  type ExternalApiUsageInput,
  type ModelUsageInput,
  type RecordOptions,
} from "../src";
import { seededRandom } from "../src/random";
import { badInputCases, goodInput, type BadInputCase, type ExistingIds, type ExpectedError, type UsageKind } from "./support/badInputs";
import { createAgent, createConnector, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

// 10,000 single inputs and 1,000 batches (each with 1 to 3 bad items) on each backend.
const SINGLE_CASES = 10_000;
const BATCH_CALLS = 1_000;

/** A full collection, so that heap figures are comparable (jest gives no --expose-gc). */
v8.setFlagsFromString("--expose-gc");
const collectGarbage = vm.runInNewContext("gc") as () => void;
const heapUsed = () => {
  collectGarbage();
  return process.memoryUsage().heapUsed;
};

let t: TestDatabase;
let ids: ExistingIds;
beforeAll(async () => {
  t = await openTestDatabase();
  ids = {
    modelId: await createModel(t.db),
    externalApiId: await createExternalApi(t.db),
    agentId: await createAgent(t.db),
    connectorId: await createConnector(t.db),
  };
});
afterAll(() => t.dispose());

const rowCounts = async () => ({
  model: await t.db.prisma.psModelUsage.count(),
  api: await t.db.prisma.psExternalApiUsage.count(),
  keys: await t.db.prisma.psUsageIdempotencyKey.count(),
});

const short = (text: string) => (text.length > 120 ? `${text.slice(0, 120)}…` : text);

function describeError(error: unknown): string {
  if (error instanceof UsageValidationError) return `UsageValidationError ${short(JSON.stringify(error.issues))}`;
  if (error instanceof UnknownReferenceError) return `UnknownReferenceError(${error.table}, ${error.id})`;
  if (error instanceof Error) return `${error.constructor.name}: ${short(error.message)}`;
  return `no error (${short(String(error))})`;
}

/** Why `error` is not the expected one, or null when it is. */
function mismatch(description: string, error: unknown, expected: ExpectedError): string | null {
  const fail = (why: string) => `${short(description)}: ${why}; got ${describeError(error)}`;
  if (!(error instanceof PsUsageError)) return fail("not a PsUsageError");
  if (expected.error === "reference") {
    if (!(error instanceof UnknownReferenceError)) return fail(`expected UnknownReferenceError(${expected.table}, ${expected.id})`);
    if (error.table !== expected.table || error.id !== expected.id) return fail(`expected UnknownReferenceError(${expected.table}, ${expected.id})`);
    return null;
  }
  if (!(error instanceof UsageValidationError)) return fail("expected UsageValidationError");
  const key = (i: { field: string; index?: number }) => `${i.index ?? "-"}|${i.field}`;
  const got = error.issues.map(key).sort();
  const want = expected.issues.map(key).sort();
  if (JSON.stringify(got) !== JSON.stringify(want)) return fail(`expected issues on ${short(JSON.stringify(want))}`);
  for (const issue of expected.issues) {
    const actual = error.issues.find((i) => key(i) === key(issue))!;
    if (!issue.reason.test(actual.reason)) return fail(`reason of ${short(issue.field)} should match ${issue.reason}`);
  }
  if (!/^Invalid usage input: /.test(error.message)) return fail("message does not say what was invalid");
  return null;
}

async function recordOne(c: BadInputCase): Promise<unknown> {
  try {
    if (c.kind === "model") await recordModelUsage(t.db, c.input as ModelUsageInput, c.options as RecordOptions);
    else await recordExternalApiUsage(t.db, c.input as ExternalApiUsageInput, c.options as RecordOptions);
    return "recorded";
  } catch (error) {
    return error;
  }
}

test(`${SINGLE_CASES} generated bad single inputs: each gets its typed error, nothing is written, the heap stays flat`, async () => {
  const before = await rowCounts();
  const mismatches: string[] = [];
  const seen = { validation: 0, reference: 0 };
  let heapAfterWarmUp = 0;
  let n = 0;
  for (const c of badInputCases(20251125, SINGLE_CASES, ids)) {
    const problem = mismatch(`#${n} ${c.kind} ${c.description}`, await recordOne(c), c.expected);
    if (problem) mismatches.push(problem);
    seen[c.expected.error]++;
    if (++n === 1_000) heapAfterWarmUp = heapUsed();
  }
  const heapGrowth = heapUsed() - heapAfterWarmUp;
  if (process.env.PS_USAGE_TEST_VERBOSE) console.log(`bad input: heap grew ${(heapGrowth / 1024).toFixed(0)} KB over ${SINGLE_CASES - 1_000} failed calls`);

  expect(mismatches.slice(0, 20)).toEqual([]);
  expect(n).toBe(SINGLE_CASES);
  // Both kinds of error were really exercised.
  expect(seen.reference).toBeGreaterThan(SINGLE_CASES / 20);
  expect(seen.validation).toBeGreaterThan(SINGLE_CASES / 2);
  expect(await rowCounts()).toEqual(before);
  // Failed calls leave nothing behind: a leak of 4 KB a call would pass this bound. (Under jest
  // the heap grows about 10 MB here; the library alone, outside jest, grew about 1 MB over 18,000
  // failed calls with no trend.)
  expect(heapGrowth).toBeLessThan(36 * 1024 * 1024);

  const good = await recordModelUsage(t.db, { userId: 9_001, modelId: ids.modelId, agentId: ids.agentId, tokenInCount: 12 });
  expect(good.tokenInCount).toBe(12);
  await recordExternalApiUsage(t.db, { userId: 9_001, externalApiId: ids.externalApiId, callCount: 3 });
  expect(await rowCounts()).toEqual({ ...before, model: before.model + 1, api: before.api + 1 });
});

/** A batch of good inputs with some bad ones placed at random positions, and the error it must get. */
function* badBatches(seed: number, calls: number): Generator<{ kind: UsageKind; inputs: unknown[]; expected: ExpectedError; description: string; bad: number }> {
  const random = seededRandom(seed);
  const queues: Record<UsageKind, BadInputCase[]> = { model: [], externalApi: [] };
  const cases = badInputCases(seed + 1, Number.MAX_SAFE_INTEGER, ids);
  for (let call = 0; call < calls; call++) {
    const kind: UsageKind = random() < 0.6 ? "model" : "externalApi";
    const referenceBatch = random() < 0.15;
    const wanted = referenceBatch ? 1 : 1 + Math.floor(random() * 3);
    const picked: BadInputCase[] = [];
    // Take the next cases of this kind: options cases do not apply to a batch; a reference
    // batch has exactly one missing id (which of several the database trips on first is not fixed).
    const fits = (c: BadInputCase) => c.kind === kind && c.options === undefined && (c.expected.error === "reference") === referenceBatch;
    while (picked.length < wanted) {
      const queued = queues[kind].findIndex(fits);
      if (queued >= 0) {
        picked.push(queues[kind].splice(queued, 1)[0]);
        continue;
      }
      const c = cases.next().value as BadInputCase;
      if (fits(c)) picked.push(c);
      else if (c.options === undefined && queues[c.kind].length < 100) queues[c.kind].push(c);
    }
    const size = picked.length + Math.floor(random() * 40);
    const inputs: unknown[] = Array.from({ length: size }, () => goodInput(kind, ids, random));
    const positions = new Set<number>();
    while (positions.size < picked.length) positions.add(Math.floor(random() * size));
    const issues: { field: string; reason: RegExp; index: number }[] = [];
    [...positions].forEach((index, i) => {
      inputs[index] = picked[i].input;
      const expected = picked[i].expected;
      if (expected.error === "validation") for (const issue of expected.issues) issues.push({ ...issue, index });
    });
    const expected: ExpectedError = referenceBatch ? picked[0].expected : { error: "validation", issues };
    const description = `batch of ${size} ${kind}: ${picked.map((c, i) => `[${[...positions][i]}] ${c.description}`).join("; ")}`;
    yield { kind, inputs, expected, description, bad: picked.length };
  }
}

test(`${BATCH_CALLS} batches with bad items among good ones: each fails as a whole with every bad item named by index`, async () => {
  const before = await rowCounts();
  const mismatches: string[] = [];
  let badItems = 0;
  for (const batch of badBatches(777, BATCH_CALLS)) {
    // Small chunks now and then: a failure in any chunk must undo the others.
    const options = batch.inputs.length > 10 && batch.bad === 1 ? { chunkSize: 5 } : undefined;
    const error = await (batch.kind === "model"
      ? recordModelUsageBatch(t.db, batch.inputs as ModelUsageInput[], options)
      : recordExternalApiUsageBatch(t.db, batch.inputs as ExternalApiUsageInput[], options)
    ).then(
      () => "recorded",
      (e: unknown) => e,
    );
    const problem = mismatch(batch.description, error, batch.expected);
    if (problem) mismatches.push(problem);
    badItems += batch.bad;
  }
  expect(mismatches.slice(0, 20)).toEqual([]);
  expect(badItems).toBeGreaterThan(BATCH_CALLS);
  expect(await rowCounts()).toEqual(before);
});

test("a batch that is not an array, or has bad options, is rejected before anything is written", async () => {
  const before = await rowCounts();
  const good = [{ userId: 1, modelId: ids.modelId }];
  const cases: [() => Promise<unknown>, string, RegExp][] = [
    [() => recordModelUsageBatch(t.db, null as never), "inputs", /^must be an array, got null$/],
    [() => recordModelUsageBatch(t.db, { 0: good[0], length: 1 } as never), "inputs", /^must be an array, got an object$/],
    [() => recordExternalApiUsageBatch(t.db, "[]" as never), "inputs", /^must be an array, got string "\[\]"$/],
    [() => recordModelUsageBatch(t.db, good, { chunkSize: 0 }), "options.chunkSize", /^must be a positive integer, got 0$/],
    [() => recordModelUsageBatch(t.db, good, { chunkSize: 1.5 }), "options.chunkSize", /^must be an integer, got 1.5$/],
    [() => recordModelUsageBatch(t.db, good, { chunkSize: NaN }), "options.chunkSize", /^must be a finite integer, got NaN$/],
    [() => recordModelUsageBatch(t.db, good, { returnIds: "yes" } as never), "options.returnIds", /^must be a boolean, got string "yes"$/],
    [() => recordModelUsageBatch(t.db, good, { parallel: true } as never), "options.parallel", /^is not an option/],
  ];
  for (const [call, field, reason] of cases) {
    const error = await call().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageValidationError);
    expect((error as UsageValidationError).issues).toEqual([{ field, reason: expect.stringMatching(reason) }]);
  }
  expect(await rowCounts()).toEqual(before);
});

test("after all the bad input, good records and sums are exact", async () => {
  const before = await rowCounts();
  const { count } = await recordModelUsageBatch(t.db, [
    { userId: 9_002, modelId: ids.modelId, tokenInCount: 2_147_483_647 },
    { userId: 9_002, modelId: ids.modelId, tokenInCount: 2_147_483_647, connectorId: ids.connectorId },
  ]);
  expect(count).toBe(2);
  await recordExternalApiUsageBatch(t.db, [{ userId: 9_002, externalApiId: ids.externalApiId, callCount: 5 }]);
  const [model] = await sumModelUsage(t.db, { where: { userId: 9_002 } });
  expect([model.events, model.tokenInCount]).toEqual([2n, 4_294_967_294n]);
  expect(await sumExternalApiUsage(t.db, { where: { userId: 9_002 } })).toEqual([{ events: 1n, callCount: 5n }]);
  expect(await rowCounts()).toEqual({ ...before, model: before.model + 2, api: before.api + 1 });
});
