import type { Readable } from "node:stream";
import { parseIsoDateTime } from "./cli/dates";
import type { Database } from "./db";
import { InputLineError, UnknownReferenceError, UsageValidationError, type BudgetExceededError } from "./errors";
import { EXTERNAL_API_USAGE_BATCH } from "./externalApiUsage";
import { MODEL_USAGE_BATCH } from "./modelUsage";
import { BatchPartFailure, recordBatchesTogether, type BatchPart, type BatchSpec } from "./usageShared";
import type { ExternalApiUsageInput, ModelUsageInput } from "./types";
import { MAX_IDEMPOTENCY_KEY_LENGTH, idempotencyKeyProblem } from "./validation";

/** Options for {@link recordNdjson}. */
export interface NdjsonOptions {
  /**
   * Lines per batch. A batch is a run of consecutive lines, both kinds side by side, written in one
   * transaction: all of it or none. Default: 5,000.
   */
  readonly batchSize?: number;
  /** Longest accepted line in characters. Default: 65,536. */
  readonly maxLineLength?: number;
  /**
   * Makes the import safe to run again: each kind's lines of a batch get the key
   * `<idempotencyKey>:<first line>-<last line>` (the first and last line of that kind in the batch,
   * claimed in the batch's transaction), so re-running the same input with the same key and batch
   * size after a failure (or a lost connection) skips the batches already recorded and records the
   * rest, exactly once.
   */
  readonly idempotencyKey?: string;
  /**
   * Guard each batch with the budgets' hard limits (as `enforceBudgets` of a batch record call): a
   * batch that would take a hard-limit budget past its amount is refused whole with
   * {@link BudgetExceededError}; the batches before it stay recorded. Default false.
   */
  readonly enforceBudgets?: boolean;
  /** Called after each batch is written. */
  readonly onBatch?: (progress: NdjsonResult) => void;
}

/** What {@link recordNdjson} recorded. */
export interface NdjsonResult {
  /** Lines read, blank lines included. */
  readonly lines: number;
  readonly modelUsage: number;
  readonly externalApiUsage: number;
  /** Lines of batches skipped because their idempotency key had already recorded them. */
  readonly skippedLines: number;
}

/** One kind's lines of the current batch. */
interface Pending {
  items: Record<string, unknown>[];
  lineNumbers: number[];
}

/**
 * Records usage from NDJSON: one JSON object per line, with the fields of `ModelUsageInput` or
 * `ExternalApiUsageInput` (a line with `externalApiId` is external API usage, any other line model
 * usage; `createdAt` as an ISO 8601 string with `Z` or an offset such as `+02:00`: one without
 * is refused rather than read in some time zone). Blank lines are skipped.
 *
 * The stream is read as it arrives and written in batches of at most `batchSize` consecutive
 * lines, so memory stays bounded whatever the input's size. A batch holds both kinds side by side
 * and is written in one transaction (its model usage, then its external API usage), all or
 * nothing, so a log that mixes both kinds takes as few batches as a sorted one. A bad line stops
 * the import with an {@link InputLineError} naming the line and the reason; nothing from its
 * batch is written, and the batches before it stay recorded. Each batch's events go to the budgets'
 * threshold check after its commit, as a record call's do; with `enforceBudgets`, a batch past a
 * hard limit is refused whole ({@link BudgetExceededError}).
 *
 * @example
 * const result = await recordNdjson(db, fs.createReadStream("usage.ndjson"));
 * // { lines: 120000, modelUsage: 110000, externalApiUsage: 10000 }
 */
export async function recordNdjson(db: Database, input: Readable, options: NdjsonOptions = {}): Promise<NdjsonResult> {
  checkImportKey(options.idempotencyKey);
  const batchSize = options.batchSize ?? 5_000;
  const maxLineLength = options.maxLineLength ?? 65_536;
  let lineNo = 0;
  let recordedLines = 0;
  let modelUsage = 0;
  let externalApiUsage = 0;
  let skippedLines = 0;
  let model: Pending = { items: [], lineNumbers: [] };
  let externalApi: Pending = { items: [], lineNumbers: [] };

  /** Its batch call: the lines of one kind, with the key `<idempotencyKey>:<first>-<last>` of them. */
  const part = <I>(pending: Pending, spec: BatchSpec<I>): BatchPart<I> => {
    const lines = pending.lineNumbers;
    const key = options.idempotencyKey === undefined ? undefined : `${options.idempotencyKey}:${lines[0]}-${lines[lines.length - 1]}`;
    return { inputs: pending.items as unknown as I[], options: { idempotencyKey: key }, spec };
  };

  const flush = async (lastLine: number) => {
    const kinds = [model, externalApi].filter((pending) => pending.items.length > 0);
    if (kinds.length === 0) return;
    let counts: number[];
    try {
      // Both kinds of the batch in one transaction: all of it or none.
      counts = await recordBatchesTogether(
        db,
        kinds.map((pending) => (pending === model ? part(pending, MODEL_USAGE_BATCH) : part(pending, EXTERNAL_API_USAGE_BATCH))) as never,
        { enforceBudgets: options.enforceBudgets === true },
      );
    } catch (err) {
      if (!(err instanceof BatchPartFailure)) throw err;
      const failed = kinds[err.part];
      throw lineError(err.error, failed.items, failed.lineNumbers, recordedLines);
    }
    for (const [i, pending] of kinds.entries()) {
      if (pending === model) modelUsage += counts[i];
      else externalApiUsage += counts[i];
      skippedLines += pending.items.length - counts[i];
    }
    recordedLines = lastLine;
    model = { items: [], lineNumbers: [] };
    externalApi = { items: [], lineNumbers: [] };
    options.onBatch?.({ lines: lineNo, modelUsage, externalApiUsage, skippedLines });
  };

  const take = async (text: string) => {
    lineNo++;
    if (text.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new InputLineError(lineNo, `not valid JSON (${(err as Error).message})`, recordedLines);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new InputLineError(lineNo, "expected a JSON object", recordedLines);
    }
    // JSON.parse made the object: it is this import's own, changed in place (createdAt).
    const item = value as Record<string, unknown>;
    if (typeof item.createdAt === "string") {
      // Strict: `new Date` would read a date-time without an offset in this process's time zone.
      const parsed = parseIsoDateTime(item.createdAt);
      if (typeof parsed === "string") throw new InputLineError(lineNo, `createdAt: ${parsed}`, recordedLines);
      if (parsed.kind === "local") {
        throw new InputLineError(lineNo, `createdAt: "${item.createdAt}" has no time zone; add Z (UTC) or an offset such as +02:00`, recordedLines);
      }
      item.createdAt = parsed.instant;
    }
    if (model.items.length + externalApi.items.length >= batchSize) await flush(lineNo - 1);
    const part = "externalApiId" in item ? externalApi : model;
    part.items.push(item);
    part.lineNumbers.push(lineNo);
  };

  let pending = "";
  input.setEncoding("utf8");
  for await (const chunk of input as AsyncIterable<string>) {
    let start = 0;
    for (let nl = chunk.indexOf("\n", start); nl !== -1; nl = chunk.indexOf("\n", start)) {
      const line = pending + chunk.slice(start, nl);
      pending = "";
      start = nl + 1;
      if (line.length > maxLineLength) throw new InputLineError(lineNo + 1, `line longer than ${maxLineLength} characters`, recordedLines);
      await take(line.endsWith("\r") ? line.slice(0, -1) : line);
    }
    pending += chunk.slice(start);
    if (pending.length > maxLineLength) throw new InputLineError(lineNo + 1, `line longer than ${maxLineLength} characters`, recordedLines);
  }
  if (pending !== "") await take(pending);
  await flush(lineNo);
  return { lines: lineNo, modelUsage, externalApiUsage, skippedLines };
}

/** The longest suffix a batch key can get: `:<first line>-<last line>` with the largest line numbers. */
const LONGEST_BATCH_KEY_SUFFIX = `:${Number.MAX_SAFE_INTEGER}-${Number.MAX_SAFE_INTEGER}`;
/** Longest import key: its batch keys stay within the key limit whatever the input's length. */
export const MAX_NDJSON_IDEMPOTENCY_KEY_LENGTH = MAX_IDEMPOTENCY_KEY_LENGTH - LONGEST_BATCH_KEY_SUFFIX.length;

/**
 * Checks an import's idempotency key before anything is read or written: the key, and the key
 * with the longest suffix a batch could get (the input's length is not known up front), so an
 * import never fails part-way because a later batch's key grew past the limit.
 */
function checkImportKey(key: unknown): void {
  if (key === undefined) return;
  let problem = idempotencyKeyProblem(key);
  if (problem === null && (key as string).length > MAX_NDJSON_IDEMPOTENCY_KEY_LENGTH) {
    problem = `must be at most ${MAX_NDJSON_IDEMPOTENCY_KEY_LENGTH} characters for an import (each batch's key adds up to ${LONGEST_BATCH_KEY_SUFFIX.length}, ":<first line>-<last line>"), got ${(key as string).length}`;
  }
  if (problem) throw new UsageValidationError([{ field: "options.idempotencyKey", reason: problem }]);
}

/** Turns a batch's error into one naming the first bad line. */
function lineError(err: unknown, items: readonly Record<string, unknown>[], lines: readonly number[], recordedLines: number): unknown {
  if (err instanceof UsageValidationError) {
    const first = err.issues.find((i) => i.index !== undefined) ?? err.issues[0];
    const index = first.index ?? 0;
    const reasons = err.issues
      .filter((i) => (i.index ?? 0) === index)
      .map((i) => `${i.field}: ${i.reason}`)
      .join("; ");
    return new InputLineError(lines[index], reasons, recordedLines, { cause: err });
  }
  if (err instanceof UnknownReferenceError) {
    const field = { ps_ai_models: "modelId", ps_external_apis: "externalApiId", ps_agents: "agentId", ps_agent_connectors: "connectorId" }[err.table];
    const index = field ? items.findIndex((i) => i[field] === err.id) : -1;
    return new InputLineError(index >= 0 ? lines[index] : lines[0], err.message, recordedLines, { cause: err });
  }
  return err;
}
