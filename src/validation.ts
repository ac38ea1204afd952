/**
 * Input checks for the record and find functions. Every check collects {@link FieldIssue}s
 * instead of throwing at the first one, so a caller learns every bad field at once (and, in a
 * batch, the index of every bad item). Nothing here touches the database.
 *
 * The batch checks run once per row of batches of up to millions of rows, so they are written
 * as plain loops over small constant tables, without allocating per field.
 */
import { setImmediate } from "node:timers/promises";
import { UsageValidationError, type FieldIssue } from "./errors";
import {
  MAX_BATCH_CHUNK_SIZE,
  MAX_INT32,
  MAX_PAGE_SIZE,
  MODEL_USAGE_ALL_COUNTERS,
  SERVICE_TIERS,
  type ServiceTier,
  type UsageOrder,
} from "./types";

/** How a field is checked. */
const enum Kind {
  /** A required positive INTEGER id. */
  Id,
  /** An optional positive id; null means "none". */
  OptionalId,
  /** An optional counter: 0..MAX_INT32. */
  Count,
  /** A required counter. */
  RequiredCount,
  /** An optional Date. */
  Date,
  /** An optional service tier (see {@link serviceTierProblem}). */
  ServiceTier,
  /** An optional regional processing code (see {@link regionalProcessingProblem}). */
  Region,
  /** A known field checked by its own reader (a provider's usage object and what comes with it). */
  CheckedElsewhere,
}

type FieldSpec = readonly (readonly [field: string, kind: Kind])[];

/** Fields of an input type, and the name used in "is not a field of ..." messages. */
export interface InputShape {
  readonly name: string;
  readonly fields: FieldSpec;
  /** Field name -> true, without a prototype: a fast membership test for unknown fields. */
  readonly known: Readonly<Record<string, true>>;
}

function shape(name: string, fields: FieldSpec): InputShape {
  const known: Record<string, true> = Object.create(null);
  for (const [field] of fields) known[field] = true;
  return { name, fields, known };
}

const REFERENCE_FIELDS: FieldSpec = [
  ["userId", Kind.Id],
  ["agentId", Kind.OptionalId],
  ["connectorId", Kind.OptionalId],
  ["createdAt", Kind.Date],
];

/** What a model usage event says about its pricing beside the tokens (`ModelUsagePricingInput`). */
const PRICING_FIELDS: FieldSpec = [
  ["serviceTier", Kind.ServiceTier],
  ["regionalProcessing", Kind.Region],
];

/** `ModelUsageInput`: ids, createdAt, the 14 token counters, webSearchCount, serviceTier, regionalProcessing. */
export const MODEL_USAGE_INPUT = shape("ModelUsageInput", [
  ["modelId", Kind.Id],
  ...REFERENCE_FIELDS,
  ...MODEL_USAGE_ALL_COUNTERS.map(([field]) => [field, Kind.Count] as const),
  ...PRICING_FIELDS,
]);

/**
 * `ProviderUsageCall` (recordProviderUsage): ids, createdAt and regional processing as for a
 * `ModelUsageInput`; the provider, its usage object, the API, the tier it reports and the web
 * searches are read by the provider's mapper.
 */
export const PROVIDER_USAGE_CALL = shape("ProviderUsageCall", [
  ["modelId", Kind.Id],
  ...REFERENCE_FIELDS,
  ["regionalProcessing", Kind.Region],
  ...(["provider", "usage", "api", "serviceTier", "webSearchCalls"] as const).map((field) => [field, Kind.CheckedElsewhere] as const),
]);

/** `ExternalApiUsageInput`: ids, createdAt and the required call count. */
export const EXTERNAL_API_USAGE_INPUT = shape("ExternalApiUsageInput", [
  ["externalApiId", Kind.Id],
  ...REFERENCE_FIELDS,
  ["callCount", Kind.RequiredCount],
]);

/** `ModelCallInput`: a raw model call for `recordModelCall`. */
export const MODEL_CALL_INPUT = shape("ModelCallInput", [
  ["modelId", Kind.Id],
  ...REFERENCE_FIELDS,
  ["inputTokens", Kind.RequiredCount],
  ["cachedInputTokens", Kind.Count],
  ["cacheWriteInputTokens", Kind.Count],
  ["outputTokens", Kind.RequiredCount],
  ["reasoningTokens", Kind.Count],
  ["audioTokens", Kind.Count],
  ["imageTokens", Kind.Count],
  ["webSearchCount", Kind.Count],
  ...PRICING_FIELDS,
]);

/**
 * Earliest and latest instant accepted anywhere a date is taken (`createdAt`, filters, price
 * dates): years 1 to 9999 UTC. PostgreSQL's timestamptz holds 4713 BC to 294276 AD and a JS Date
 * ±275760 years, but a year before 1 comes back from the database as "… BC" text, which the
 * drivers read as Invalid Date (and PostgreSQL refuses year 0 and negative years on input), and a
 * year after 9999 is not ISO 8601 text; inside 1..9999 every instant round-trips exactly.
 */
const EARLIEST_MS = new Date("0001-01-01T00:00:00.000Z").getTime();
const LATEST_MS = new Date("9999-12-31T23:59:59.999Z").getTime();

/** A short, safe description of a bad value for a message (huge strings are cut). */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case "number":
      return String(value);
    case "string":
      return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
    case "bigint":
      return `bigint ${value.toString().slice(0, 40)}`;
    case "boolean":
      return `boolean ${value}`;
    case "undefined":
      return "undefined";
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      if (value === null) return "null";
      if (Array.isArray(value)) return "an array";
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : `Date ${value.toISOString()}`;
      return "an object";
  }
}

/** Why `value` is not a counter (an integer in 0..MAX_INT32), or null when it is one. */
export function countProblem(value: unknown): string | null {
  if (typeof value !== "number") return `must be a number, got ${describeValue(value)}`;
  if (!Number.isInteger(value)) {
    return Number.isFinite(value) ? `must be an integer, got ${value}` : `must be a finite integer, got ${value}`;
  }
  if (value < 0) return `must not be negative, got ${value}`;
  if (value > MAX_INT32) return `must be at most ${MAX_INT32} (PostgreSQL INTEGER), got ${value}`;
  return null;
}

/** Why `value` is not an id (an integer in 1..MAX_INT32), or null when it is one. */
export function idProblem(value: unknown): string | null {
  if (typeof value !== "number") return `must be a number, got ${describeValue(value)}`;
  if (!Number.isInteger(value)) {
    return Number.isFinite(value) ? `must be an integer, got ${value}` : `must be a finite integer, got ${value}`;
  }
  if (value < 1) return `must be a positive integer, got ${value}`;
  if (value > MAX_INT32) return `must be at most ${MAX_INT32} (PostgreSQL INTEGER), got ${value}`;
  return null;
}

/** Tier words that mean standard pricing: accepted, and stored as null. */
const STANDARD_TIERS: readonly unknown[] = ["standard", "default"];

/**
 * Why `value` is not a service tier this package prices (see `ModelUsagePricingInput`), or null
 * when it is one: `"flex"`, `"priority"`, `"fast"`, or standard (`"standard"`, `"default"`,
 * null, undefined). A tier only ever requested (`"auto"`) and tiers with no rates here (`"scale"`,
 * `"batch"`) are refused rather than priced as something they may not be.
 */
export function serviceTierProblem(value: unknown): string | null {
  if (value === undefined || value === null || STANDARD_TIERS.includes(value) || SERVICE_TIERS.includes(value as ServiceTier)) return null;
  if (value === "auto") return '"auto" is a tier to request, not one applied: pass the tier the provider reports as applied';
  return `must be "flex", "priority" or "fast" (the tier the provider reports as applied), or "standard", "default" or null for standard pricing, got ${describeValue(value)}`;
}

/** The stored `service_tier` of a valid input value: the tier, or null for standard. */
export function storedServiceTier(value: unknown): ServiceTier | null {
  return SERVICE_TIERS.includes(value as ServiceTier) ? (value as ServiceTier) : null;
}

/** A regional processing code: short, and plain enough to go into a batch's array literal quoted as it is. */
const REGION = /^[A-Za-z0-9_-]{1,16}$/;

/** Why `value` is not a regional processing code (or null / undefined), or null when it is one. */
export function regionalProcessingProblem(value: unknown): string | null {
  if (value === undefined || value === null || (typeof value === "string" && REGION.test(value))) return null;
  return `must be 1 to 16 letters, digits, "-" or "_" (e.g. "eu"), or null, got ${describeValue(value)}`;
}

/** Why `value` is not a usable Date, or null when it is one. */
export function dateProblem(value: unknown): string | null {
  if (!(value instanceof Date)) return `must be a Date, got ${describeValue(value)}`;
  const ms = value.getTime();
  if (Number.isNaN(ms)) return "must be a valid Date, got Invalid Date";
  if (ms < EARLIEST_MS || ms > LATEST_MS) {
    return `must be between years 1 and 9999, got ${value.toISOString()}`;
  }
  return null;
}

/**
 * Throws a {@link UsageValidationError} on `bucket` when a bucketed result holds a bucket that
 * starts outside years 1..9999 (the database returns a start before year 1 as "… BC", read as
 * Invalid Date): usage in the first days of year 1, bucketed in a zone west of UTC (or in the
 * local mean time zones then had), belongs to a bucket that starts in 1 BC.
 */
export function checkBucketStarts(rows: readonly object[], timeZone: string): void {
  for (const row of rows) {
    const start = (row as { readonly bucketStart?: unknown }).bucketStart;
    if (start === undefined) continue;
    if (start instanceof Date && dateProblem(start) === null) continue;
    throw new UsageValidationError([
      {
        field: "bucket",
        reason: `a bucket in time zone ${timeZone} would start before year 1 (or after 9999); narrow where.from/where.to to whole buckets inside years 1..9999, or use timeZone "UTC"`,
      },
    ]);
  }
}

/** The known field closest to a misspelt one, for a "did you mean" hint. */
function closestField(field: string, known: Readonly<Record<string, true>>): string | null {
  const lower = field.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate in known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(field.length / 4)) ? best : null;
}

function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Infinity;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

function unknownFieldIssue(field: string, input: InputShape, index: number | undefined): FieldIssue {
  const hint = closestField(field, input.known);
  const reason = `is not a field of ${input.name}${hint ? ` (did you mean ${hint}?)` : ""}`;
  return index === undefined ? { field, reason } : { field, reason, index };
}

function push(issues: FieldIssue[], field: string, reason: string, index: number | undefined): void {
  issues.push(index === undefined ? { field, reason } : { field, reason, index });
}

/**
 * How every function of this package reads an input object (the plain ones and `forUser`'s
 * alike): a field is `input[field]`, whether an own property, inherited from a prototype
 * (`Object.create(proto)`) or a getter (a class instance); an unknown field is any key `for…in`
 * lists (own or inherited, enumerable). {@link copyInput} copies an input by the same rule.
 */

/**
 * A copy of an input object read the way {@link checkInput} and the record functions read it:
 * each known field that is not undefined, and each unknown enumerable key (so that checking the
 * copy reports it). The copy has no prototype, so no key (not even `__proto__`) is special.
 * Not an object: returned as it is, for the checks to report.
 */
export function copyInput(value: unknown, input: InputShape): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const record = value as Record<string, unknown>;
  const copy: Record<string, unknown> = Object.create(null);
  const fields = input.fields;
  for (let f = 0; f < fields.length; f++) {
    const field = fields[f][0];
    const v = record[field];
    if (v !== undefined) copy[field] = v;
  }
  for (const key in record) if (input.known[key] !== true) copy[key] = record[key];
  return copy;
}

/**
 * Checks one input against its shape and appends an issue for every bad field. Returns true
 * when the input is good. `index` is the item's position in a batch. Fields are read as
 * described above {@link copyInput}.
 */
export function checkInput(value: unknown, input: InputShape, issues: FieldIssue[], index?: number): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    push(issues, "input", `must be an object, got ${describeValue(value)}`, index);
    return false;
  }
  const before = issues.length;
  const record = value as Record<string, unknown>;
  const fields = input.fields;
  for (let f = 0; f < fields.length; f++) {
    const field = fields[f][0];
    const v = record[field];
    let problem: string | null = null;
    switch (fields[f][1]) {
      case Kind.Id:
        problem = v === undefined ? "is required" : idProblem(v);
        break;
      case Kind.OptionalId:
        if (v !== undefined && v !== null) problem = idProblem(v);
        break;
      case Kind.Count:
        if (v !== undefined) problem = countProblem(v);
        break;
      case Kind.RequiredCount:
        problem = v === undefined ? "is required" : countProblem(v);
        break;
      case Kind.Date:
        if (v !== undefined) problem = dateProblem(v);
        break;
      case Kind.ServiceTier:
        problem = serviceTierProblem(v);
        break;
      case Kind.Region:
        problem = regionalProcessingProblem(v);
        break;
    }
    if (problem !== null) push(issues, field, problem, index);
  }
  const known = input.known;
  for (const key in record) {
    if (known[key] !== true) issues.push(unknownFieldIssue(key, input, index));
  }
  return issues.length === before;
}

/** Checks every item of a batch; issues carry the item's index. */
export function checkBatch(values: unknown, input: InputShape, issues: FieldIssue[]): values is readonly unknown[] {
  if (!Array.isArray(values)) {
    push(issues, "inputs", `must be an array, got ${describeValue(values)}`, undefined);
    return false;
  }
  for (let i = 0; i < values.length; i++) checkInput(values[i], input, issues, i);
  return issues.length === 0;
}

/** Items checked between two turns of the event loop in {@link checkBatchYielding}. */
const CHECK_SLICE = 10_000;

/**
 * {@link checkBatch} for the record calls: the same checks, in slices with a turn of the event
 * loop between them, so validating a batch of hundreds of thousands of items does not block the
 * host process for a second.
 */
export async function checkBatchYielding(values: unknown, input: InputShape, issues: FieldIssue[]): Promise<boolean> {
  if (!Array.isArray(values) || values.length <= CHECK_SLICE) return checkBatch(values, input, issues);
  for (let start = 0; start < values.length; start += CHECK_SLICE) {
    if (start > 0) await setImmediate();
    const end = Math.min(values.length, start + CHECK_SLICE);
    for (let i = start; i < end; i++) checkInput(values[i], input, issues, i);
  }
  return issues.length === 0;
}

/** Checks that `value` is undefined or a plain object with only the given keys. */
function checkOptionsObject(
  value: unknown,
  name: string,
  keys: readonly string[],
  issues: FieldIssue[],
): value is Record<string, unknown> | undefined {
  if (value === undefined) return true;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    push(issues, name, `must be an object, got ${describeValue(value)}`, undefined);
    return false;
  }
  for (const key in value) {
    if (!keys.includes(key)) push(issues, `${name}.${key}`, `is not an option (known: ${keys.join(", ")})`, undefined);
  }
  return true;
}

/** Longest idempotency key: the `varchar(255)` of ps_usage_idempotency_keys.key. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** Why `key` is not a usable idempotency key, or null when it is one. */
export function idempotencyKeyProblem(key: unknown): string | null {
  if (typeof key !== "string") return `must be a string, got ${describeValue(key)}`;
  if (key.length === 0) return "must not be empty";
  // varchar(255) counts characters; a JS length of at most 255 UTF-16 units is at most 255 of them.
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) return `must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters, got ${key.length}`;
  if (key.includes("\u0000")) return "must not contain the NUL character";
  // A lone surrogate would be stored as U+FFFD, so two different keys could collide.
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(key)) {
    return "must be well-formed Unicode (it has a lone surrogate)";
  }
  return null;
}

/** Checks `RecordOptions` (`{ idempotencyKey? }`), plus any extra option names the caller allows. */
export function checkRecordOptions(options: unknown, issues: FieldIssue[], extraKeys: readonly string[] = []): void {
  if (!checkOptionsObject(options, "options", ["idempotencyKey", "enforceBudgets", ...extraKeys], issues) || options === undefined) return;
  const key = options.idempotencyKey;
  if (key !== undefined) {
    const problem = idempotencyKeyProblem(key);
    if (problem) push(issues, "options.idempotencyKey", problem, undefined);
  }
  const enforce = options.enforceBudgets;
  if (enforce !== undefined && typeof enforce !== "boolean") push(issues, "options.enforceBudgets", `must be a boolean, got ${describeValue(enforce)}`, undefined);
}

/** Checks `ModelCallOptions`. */
export function checkModelCallOptions(options: unknown, issues: FieldIssue[]): void {
  checkRecordOptions(options, issues, ["longContextTokenThreshold"]);
  if (typeof options !== "object" || options === null) return;
  const threshold = (options as Record<string, unknown>).longContextTokenThreshold;
  if (threshold !== undefined && threshold !== null) {
    const problem = countProblem(threshold);
    if (problem) push(issues, "options.longContextTokenThreshold", problem, undefined);
  }
}

/** Checks `BatchRecordOptions`. */
export function checkBatchOptions(options: unknown, issues: FieldIssue[]): void {
  if (!checkOptionsObject(options, "options", ["chunkSize", "returnIds", "idempotencyKey", "enforceBudgets"], issues) || options === undefined) return;
  const { chunkSize, returnIds, idempotencyKey, enforceBudgets } = options;
  if (enforceBudgets !== undefined && typeof enforceBudgets !== "boolean") {
    push(issues, "options.enforceBudgets", `must be a boolean, got ${describeValue(enforceBudgets)}`, undefined);
  }
  if (idempotencyKey !== undefined) {
    const problem = idempotencyKeyProblem(idempotencyKey);
    if (problem) push(issues, "options.idempotencyKey", problem, undefined);
  }
  if (chunkSize !== undefined) {
    const problem = idProblem(chunkSize);
    if (problem) push(issues, "options.chunkSize", problem, undefined);
    else if ((chunkSize as number) > MAX_BATCH_CHUNK_SIZE) {
      push(issues, "options.chunkSize", `must be at most ${MAX_BATCH_CHUNK_SIZE}, got ${chunkSize}`, undefined);
    }
  }
  if (returnIds !== undefined && typeof returnIds !== "boolean") {
    push(issues, "options.returnIds", `must be a boolean, got ${describeValue(returnIds)}`, undefined);
  }
}

/** At most this many ids in one "any of" filter (`agentId: [..]`). */
export const MAX_FILTER_IDS = 1000;

function checkIdOrIds(value: unknown, field: string, issues: FieldIssue[]): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    const problem = idProblem(value);
    if (problem) push(issues, `filter.${field}`, problem, undefined);
    return;
  }
  if (value.length > MAX_FILTER_IDS) {
    push(issues, `filter.${field}`, `must list at most ${MAX_FILTER_IDS} ids, got ${value.length}`, undefined);
    return;
  }
  value.forEach((id, i) => {
    const problem = idProblem(id);
    if (problem) push(issues, `filter.${field}[${i}]`, problem, undefined);
  });
}

/**
 * Checks a usage filter: ids positive integers (one, or an array for `agentId` and `idField`),
 * `from`/`to` valid Dates with `from` before `to`, no unknown fields.
 */
export function checkFilter(filter: unknown, idField: "modelId" | "externalApiId", issues: FieldIssue[]): void {
  const keys = ["userId", "agentId", "connectorId", idField, "from", "to"];
  if (!checkOptionsObject(filter, "filter", keys, issues) || filter === undefined) return;
  for (const field of ["userId", "connectorId"]) {
    const value = filter[field];
    if (value !== undefined) {
      const problem = idProblem(value);
      if (problem) push(issues, `filter.${field}`, problem, undefined);
    }
  }
  checkIdOrIds(filter.agentId, "agentId", issues);
  checkIdOrIds(filter[idField], idField, issues);
  let datesOk = true;
  for (const field of ["from", "to"]) {
    const value = filter[field];
    if (value !== undefined) {
      const problem = dateProblem(value);
      if (problem) {
        datesOk = false;
        push(issues, `filter.${field}`, problem, undefined);
      }
    }
  }
  if (datesOk && filter.from instanceof Date && filter.to instanceof Date && filter.from.getTime() >= filter.to.getTime()) {
    push(issues, "filter.to", `must be after filter.from (${filter.from.toISOString()}), got ${filter.to.toISOString()}`, undefined);
  }
}

/** Checks page options; `includeKeys` are the relations this find can include. */
export function checkPageOptions(page: unknown, includeKeys: readonly string[], issues: FieldIssue[]): void {
  if (!checkOptionsObject(page, "page", ["limit", "cursor", "order", "include"], issues) || page === undefined) return;
  const { limit, cursor, order, include } = page;
  if (limit !== undefined) {
    const problem = idProblem(limit);
    if (problem) push(issues, "page.limit", problem, undefined);
    else if ((limit as number) > MAX_PAGE_SIZE) push(issues, "page.limit", `must be at most ${MAX_PAGE_SIZE}, got ${limit}`, undefined);
  }
  if (cursor !== undefined && typeof cursor !== "string") {
    push(issues, "page.cursor", `must be a string, got ${describeValue(cursor)}`, undefined);
  }
  if (order !== undefined && order !== "newest" && order !== "oldest") {
    push(issues, "page.order", `must be "newest" or "oldest", got ${describeValue(order)}`, undefined);
  }
  if (checkOptionsObject(include, "page.include", includeKeys, issues) && include !== undefined) {
    for (const key of includeKeys) {
      const value = include[key];
      if (value !== undefined && typeof value !== "boolean") {
        push(issues, `page.include.${key}`, `must be a boolean, got ${describeValue(value)}`, undefined);
      }
    }
  }
}

/** Throws a {@link UsageValidationError} listing `issues`, if there are any. */
export function throwIfIssues(issues: readonly FieldIssue[]): void {
  if (issues.length > 0) throw new UsageValidationError(issues);
}

/** The order a page is read in: `newest` unless the options say `oldest`. */
export function pageOrder(order: UsageOrder | undefined): UsageOrder {
  return order ?? "newest";
}
