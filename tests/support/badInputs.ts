// A seeded generator of bad usage inputs, each with the typed error it must get: wrong types,
// negatives, values above INTEGER, NaN and infinities, fractions, huge strings, SQL text, unknown
// fields, missing required fields, bad dates, non-objects, and ids that exist nowhere. Used by
// the API test (tests/badInput.test.ts) and, as NDJSON lines, by the CLI test.
import { MAX_INT32, MODEL_USAGE_COUNTERS } from "../../src";
import { seededRandom } from "../../src/random";

export type UsageKind = "model" | "externalApi";

/** One issue the validation must report: the field (and batch index) named, the reason matched. */
export interface ExpectedIssue {
  readonly field: string;
  readonly reason: RegExp;
  readonly index?: number;
}

export type ExpectedError =
  | { readonly error: "validation"; readonly issues: readonly ExpectedIssue[] }
  | { readonly error: "reference"; readonly table: string; readonly id: number };

/** A bad single input for recordModelUsage / recordExternalApiUsage. */
export interface BadInputCase {
  readonly kind: UsageKind;
  /** What was done to a good input, for failure messages. */
  readonly description: string;
  readonly input: unknown;
  readonly options?: unknown;
  readonly expected: ExpectedError;
  /**
   * The input as one NDJSON line (`createdAt` as an ISO string), or null when JSON cannot say it
   * (NaN, undefined, bigint, a Date object as such, ...) or the line would change its kind.
   */
  readonly ndjson: string | null;
}

/** Ids that exist in the database the cases are run against. */
export interface ExistingIds {
  readonly modelId: number;
  readonly externalApiId: number;
  readonly agentId: number;
  readonly connectorId: number;
}


/** One megabyte of text, shared by every case that needs a huge string. */
export const HUGE_STRING = "x".repeat(1 << 20);
const SQL_TEXTS = [
  "1; DROP TABLE ps_model_usage; --",
  "' OR '1'='1",
  "0) UNION SELECT * FROM ps_usage_idempotency_keys --",
  "$1",
  "{1,2,3}",
  "NULL",
];

const R = {
  number: /^must be a number, got /,
  negative: /^must not be negative, got -/,
  positive: /^must be a positive integer, got /,
  overflow: new RegExp(`^must be at most ${MAX_INT32} \\(PostgreSQL INTEGER\\), got `),
  fraction: /^must be an integer, got /,
  finite: /^must be a finite integer, got /,
  required: /^is required$/,
  date: /^must be a Date, got /,
  invalidDate: /^must be a valid Date, got Invalid Date$/,
  dateRange: /^must be between years 1 and 9999, got /,
  object: /^must be an object, got /,
  unknownModelField: /^is not a field of ModelUsageInput/,
  unknownApiField: /^is not a field of ExternalApiUsageInput/,
};

/** A bad value, the reason it must get, and whether JSON can carry it unchanged. */
interface BadValue {
  readonly value: unknown;
  readonly reason: RegExp;
  readonly label: string;
}

type Pick = <T>(items: readonly T[]) => T;

/** Values that are not numbers at all. */
function wrongType(pick: Pick, random: () => number): BadValue {
  const options: [unknown, string][] = [
    [String(Math.floor(random() * 1000)), "numeric string"],
    ["", "empty string"],
    [pick(SQL_TEXTS), "SQL text"],
    [HUGE_STRING, "1 MB string"],
    [true, "boolean"],
    [false, "boolean"],
    [[], "empty array"],
    [[Math.floor(random() * 10)], "array of a number"],
    [{}, "empty object"],
    [{ value: 5 }, "object"],
    [{ valueOf: () => 5 }, "object with valueOf"],
    [BigInt(Math.floor(random() * 1e6)), "bigint"],
    [new Date(0), "Date"],
    [() => 5, "function"],
    [Symbol("n"), "symbol"],
  ];
  const [value, label] = pick(options);
  return { value, reason: R.number, label };
}

/** Numbers that are not an INTEGER at all: fractions, NaN, infinities. */
function badNumber(pick: Pick, random: () => number): BadValue {
  const which = Math.floor(random() * 6);
  if (which === 0) return { value: NaN, reason: R.finite, label: "NaN" };
  if (which === 1) return { value: pick([Infinity, -Infinity]), reason: R.finite, label: "infinity" };
  if (which === 2) return { value: 0.5 + Math.floor(random() * 1000), reason: R.fraction, label: "fraction" };
  if (which === 3) return { value: MAX_INT32 + 0.5, reason: R.fraction, label: "fraction at the limit" };
  if (which === 4) return { value: random() * 1e-9 + 1e-12, reason: R.fraction, label: "tiny fraction" };
  return { value: -1.25, reason: R.fraction, label: "negative fraction" };
}

function overflow(pick: Pick, random: () => number): BadValue {
  const value = pick([MAX_INT32 + 1, 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER, 1e20, 1.7e308, MAX_INT32 + 1 + Math.floor(random() * 1e9)]);
  return { value, reason: R.overflow, label: "above INTEGER" };
}

/** A bad counter value (0..MAX_INT32 expected). */
function badCount(pick: Pick, random: () => number): BadValue {
  const which = Math.floor(random() * 4);
  if (which === 0) return { value: -1 - Math.floor(random() * 1e9), reason: R.negative, label: "negative" };
  if (which === 1) return overflow(pick, random);
  if (which === 2) return badNumber(pick, random);
  // null is not a counter either (a counter is omitted, or a number).
  return random() < 0.15 ? { value: null, reason: R.number, label: "null" } : wrongType(pick, random);
}

/** A bad id value (1..MAX_INT32 expected). `nullable`: null is allowed there. */
function badId(pick: Pick, random: () => number, nullable: boolean): BadValue {
  const which = Math.floor(random() * 4);
  if (which === 0) return { value: -Math.floor(random() * 1e6), reason: R.positive, label: "zero or negative" };
  if (which === 1) return overflow(pick, random);
  if (which === 2) return badNumber(pick, random);
  if (!nullable && random() < 0.15) return { value: null, reason: R.number, label: "null" };
  return wrongType(pick, random);
}

function badDate(pick: Pick, random: () => number): BadValue {
  const which = Math.floor(random() * 4);
  if (which === 0) return { value: new Date(NaN), reason: R.invalidDate, label: "Invalid Date" };
  if (which === 1) {
    return { value: pick([new Date(-62198755200001), new Date(8.64e15), new Date(253402300800000)]), reason: R.dateRange, label: "year out of range" };
  }
  if (which === 2) {
    const [value, label] = pick<[unknown, string]>([
      ["2025-01-01T00:00:00Z", "ISO string"],
      [1735689600000, "epoch number"],
      [null, "null"],
      [{}, "object"],
      [[2025, 1, 1], "array"],
      [pick(SQL_TEXTS), "SQL text"],
    ]);
    return { value, reason: R.date, label };
  }
  const other = wrongType(pick, random);
  // A Date is the one "wrong type" that is right here.
  return other.label === "Date" ? { value: "tomorrow", reason: R.date, label: "word" } : { ...other, reason: R.date };
}

const MODEL_FIELDS = ["userId", "modelId", "agentId", "connectorId", "createdAt", ...MODEL_USAGE_COUNTERS.map(([f]) => f)];
const API_FIELDS = ["userId", "externalApiId", "agentId", "connectorId", "createdAt", "callCount"];

const UNKNOWN_FIELD_NAMES = [
  "tokenInCounts",
  "tokeninCount",
  "userid",
  "model_id",
  "token_in_count",
  "user_id",
  "cost",
  "id",
  "updatedAt",
  "constructor",
  "toString",
  "hasOwnProperty",
  "__proto__",
  "'; DROP TABLE ps_model_usage; --",
  "",
  " ",
  "🔑",
  "x".repeat(10_000),
];

/** A good input of this kind, with some optional fields present. */
export function goodInput(kind: UsageKind, ids: ExistingIds, random: () => number): Record<string, unknown> {
  const input: Record<string, unknown> = { userId: 1 + Math.floor(random() * 50) };
  if (kind === "model") {
    input.modelId = ids.modelId;
    for (const [field] of MODEL_USAGE_COUNTERS) if (random() < 0.4) input[field] = Math.floor(random() * 100_000);
  } else {
    input.externalApiId = ids.externalApiId;
    input.callCount = Math.floor(random() * 100);
  }
  if (random() < 0.5) input.agentId = ids.agentId;
  if (random() < 0.3) input.connectorId = ids.connectorId;
  if (random() < 0.3) input.createdAt = new Date(Date.UTC(2025, 0, 1) + Math.floor(random() * 3e10));
  return input;
}

/** The NDJSON line for an input, or null when JSON cannot carry it unchanged. */
export function ndjsonLine(kind: UsageKind, input: unknown): string | null {
  if (!isJsonFaithful(input)) return null;
  // A line's kind is read from `externalApiId`: without it an API line would be model usage.
  if (typeof input === "object" && input !== null && !Array.isArray(input)) {
    if (("externalApiId" in input) !== (kind === "externalApi")) return null;
    // The CLI reads a createdAt string as a date: "2025-01-01" is bad for the API, good on a line.
    const createdAt = (input as Record<string, unknown>).createdAt;
    if (typeof createdAt === "string" && !Number.isNaN(new Date(createdAt).getTime())) return null;
  }
  const line = JSON.stringify(input);
  return line.length <= 60_000 ? line : null;
}

function isJsonFaithful(value: unknown): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value) && !Object.is(value, -0);
    case "object":
      if (value === null) return true;
      if (value instanceof Date) return !Number.isNaN(value.getTime());
      if (Array.isArray(value)) return value.every(isJsonFaithful);
      if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return false;
      return Object.values(value).every(isJsonFaithful);
    default:
      return false;
  }
}

/** Sets an own enumerable property, `__proto__` included. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The kinds of field each input field is, for choosing bad values. */
function badValueFor(kind: UsageKind, field: string, pick: Pick, random: () => number): BadValue {
  if (field === "createdAt") return badDate(pick, random);
  if (field === "agentId" || field === "connectorId") return badId(pick, random, true);
  if (field === "userId" || field === "modelId" || field === "externalApiId") return badId(pick, random, false);
  return badCount(pick, random);
}

/**
 * `count` bad single inputs, generated lazily from `seed` (huge strings are shared, so memory
 * stays flat). About one in ten names an id that does not exist (UnknownReferenceError); the rest
 * must fail validation naming every bad field.
 */
export function* badInputCases(seed: number, count: number, ids: ExistingIds): Generator<BadInputCase> {
  const random = seededRandom(seed);
  const pick: Pick = (items) => items[Math.floor(random() * items.length)];
  for (let n = 0; n < count; n++) {
    const kind: UsageKind = random() < 0.6 ? "model" : "externalApi";
    const fields = kind === "model" ? MODEL_FIELDS : API_FIELDS;
    const unknownReason = kind === "model" ? R.unknownModelField : R.unknownApiField;
    const input = goodInput(kind, ids, random);
    const roll = random();

    if (roll < 0.1) {
      // An id that exists nowhere (far above the few rows the test creates).
      const missing = pick([1_000_000 + Math.floor(random() * 1e6), MAX_INT32]);
      const column = pick(kind === "model" ? ["modelId", "agentId", "connectorId"] : ["externalApiId", "agentId", "connectorId"]);
      input[column] = missing;
      const table = { modelId: "ps_ai_models", externalApiId: "ps_external_apis", agentId: "ps_agents", connectorId: "ps_agent_connectors" }[column]!;
      yield { kind, description: `${column} ${missing} does not exist`, input, expected: { error: "reference", table, id: missing }, ndjson: ndjsonLine(kind, input) };
      continue;
    }
    if (roll < 0.15) {
      const [value, label] = pick<[unknown, string]>([
        [null, "null"],
        [undefined, "undefined"],
        [42, "number"],
        ["{\"userId\":1}", "JSON text"],
        [pick(SQL_TEXTS), "SQL text"],
        [[], "empty array"],
        [[input], "array holding an input"],
        [true, "boolean"],
      ]);
      yield {
        kind,
        description: `input is ${label}`,
        input: value,
        expected: { error: "validation", issues: [{ field: "input", reason: R.object }] },
        ndjson: null, // a line that is not an object is its own CLI error, tested there
      };
      continue;
    }
    if (roll < 0.22) {
      const required = pick(kind === "model" ? ["userId", "modelId"] : ["userId", "externalApiId", "callCount"]);
      delete input[required];
      yield {
        kind,
        description: `${required} missing`,
        input,
        expected: { error: "validation", issues: [{ field: required, reason: R.required }] },
        ndjson: ndjsonLine(kind, input),
      };
      continue;
    }
    if (roll < 0.32) {
      const name = pick(UNKNOWN_FIELD_NAMES);
      const value = random() < 0.5 ? Math.floor(random() * 100) : pick(SQL_TEXTS);
      setOwn(input, name, value);
      yield {
        kind,
        description: `unknown field ${JSON.stringify(name.slice(0, 30))}`,
        input,
        expected: { error: "validation", issues: [{ field: name, reason: unknownReason }] },
        ndjson: ndjsonLine(kind, input),
      };
      continue;
    }
    if (roll < 0.36) {
      // Bad options next to a good input.
      const [options, field, reason] = pick<[unknown, string, RegExp]>([
        [{ idempotencyKey: "" }, "options.idempotencyKey", /^must not be empty$/],
        [{ idempotencyKey: "k".repeat(256) }, "options.idempotencyKey", /^must be at most 255 characters/],
        [{ idempotencyKey: HUGE_STRING }, "options.idempotencyKey", /^must be at most 255 characters/],
        [{ idempotencyKey: 12345 }, "options.idempotencyKey", /^must be a string/],
        [{ idempotencyKey: "a\u0000b" }, "options.idempotencyKey", /NUL/],
        [{ idempotencyKey: "k", retries: 3 }, "options.retries", /^is not an option/],
        ["fast", "options", /^must be an object/],
      ]);
      yield { kind, description: `options ${field}`, input, options, expected: { error: "validation", issues: [{ field, reason }] }, ndjson: null };
      continue;
    }
    // One to four fields with bad values; every one must be named.
    const bad = new Set<string>();
    const howMany = roll < 0.8 ? 1 : 2 + Math.floor(random() * 3);
    while (bad.size < howMany) bad.add(pick(fields));
    const issues: ExpectedIssue[] = [];
    const labels: string[] = [];
    for (const field of bad) {
      const value = badValueFor(kind, field, pick, random);
      input[field] = value.value;
      issues.push({ field, reason: value.reason });
      labels.push(`${field} ${value.label}`);
    }
    yield { kind, description: labels.join(", "), input, expected: { error: "validation", issues }, ndjson: ndjsonLine(kind, input) };
  }
}
