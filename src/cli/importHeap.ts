/**
 * V8's heap policy for `ps-usage record --ndjson`, a long streamed import in the CLI's own process.
 *
 * The import holds one batch at a time, and the heap's live size stays flat whatever the input's
 * length (about 36 MB with 5,000-line batches on PostgreSQL). But each batch is parsed, validated
 * and sent as literals, and what survives two scavenges while its statement is built is promoted
 * to the old generation as garbage. After each full collection V8 lets the old generation grow to
 * up to 4× the live size before it collects again (the factor it uses on machines with a large
 * heap limit), so a 1M-line import peaked at 290–330 MB of RSS where a 100k-line one, finished
 * before the heap grew, took about 200 MB. Growing by 1.5× the live size instead keeps the peak
 * about 80 MB lower at the same speed (bench/RESULTS.md). A factor, not a cap such as
 * `--max-old-space-size`: the limit follows the live size, so a larger `--batch-size` still gets
 * the heap it needs instead of running out of memory.
 *
 * Also how V8 compiles WebAssembly (PGlite's, see {@link importWasmFlag}).
 *
 * Only the CLI does this, for its own process: a library leaves V8's settings to the application.
 */
import v8 from "node:v8";

/** The old generation may grow to 1.5× its live size before the next full collection. */
export const IMPORT_HEAP_GROWING_PERCENT = 50;

/**
 * The V8 flag the import sets, or null when the user started node with a growing factor of their
 * own (`node --heap-growing-percent=N …/ps-usage record --ndjson`), which is left as it is.
 */
export function importHeapFlag(execArgv: readonly string[]): string | null {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent(=|$)/.test(arg))) return null;
  return `--heap-growing-percent=${IMPORT_HEAP_GROWING_PERCENT}`;
}

/**
 * Sets {@link importHeapFlag} for this process. V8 reads the factor at each full collection, so
 * setting it at run time takes effect from the next one.
 */
export function limitHeapGrowthForImport(): void {
  const flag = importHeapFlag(process.execArgv);
  if (flag !== null) v8.setFlagsFromString(flag);
}

/**
 * The V8 flag that has WebAssembly compiled by the optimizing tier (TurboFan) only, or null when
 * the user started node with a tiering flag of their own. By default V8 compiles each function of
 * PGlite's PostgreSQL with its baseline compiler (Liftoff) first and again with TurboFan once it
 * is hot, keeping both codes and compiling in the background while the import runs: about 75 MB
 * more at an embedded import's peak, for no more speed (bench/RESULTS.md). Liftoff alone would
 * save as much but runs the import about a third slower.
 */
export function importWasmFlag(execArgv: readonly string[]): string | null {
  if (execArgv.some((arg) => /^--(no[-_])?(liftoff|liftoff[-_]only|wasm[-_]tier[-_]up|wasm[-_]dynamic[-_]tiering)(=|$)/.test(arg))) return null;
  return "--no-liftoff";
}

/**
 * Sets {@link importWasmFlag} for this process. V8 reads it when it compiles a module, so it must
 * be set before the database is opened (PGlite compiles its module then).
 */
export function compileWasmForImport(): void {
  const flag = importWasmFlag(process.execArgv);
  if (flag !== null) v8.setFlagsFromString(flag);
}
