// `ps-usage record --ndjson` tightens V8's heap growth for its own process (src/cli/importHeap.ts:
// the old generation grows to 1.5× its live size, not up to 4×), unless node was started with a
// growing factor of the user's own, which it leaves alone. The memory it saves is measured by the
// benchmark (bench/RESULTS.md, peak RSS), not here.
import { IMPORT_HEAP_GROWING_PERCENT, importHeapFlag, importWasmFlag } from "../src/cli/importHeap";

test("the import sets a 50% growing factor when node was started without one", () => {
  expect(IMPORT_HEAP_GROWING_PERCENT).toBe(50);
  expect(importHeapFlag([])).toBe("--heap-growing-percent=50");
  // A heap cap is a different setting: the factor still applies under it.
  expect(importHeapFlag(["--max-old-space-size=512", "--enable-source-maps"])).toBe("--heap-growing-percent=50");
});

test("a growing factor the user gave node, in either spelling, is left as it is", () => {
  expect(importHeapFlag(["--heap-growing-percent=200"])).toBeNull();
  expect(importHeapFlag(["--heap_growing_percent=0"])).toBeNull();
  expect(importHeapFlag(["--enable-source-maps", "--heap-growing-percent", "30"])).toBeNull();
  // Other flags that merely start alike are not a growing factor.
  expect(importHeapFlag(["--heap-growing-percentage=10"])).toBe("--heap-growing-percent=50");
});

// PGlite's WebAssembly (and Prisma's query compiler, if a query loads it) compiled by TurboFan only:
// V8's default compiles each function with Liftoff and again with TurboFan once it is hot, and keeps
// both, some 75 MB more at the import's peak for the same speed (bench/RESULTS.md, peak RSS).
test("the import has WebAssembly compiled by the optimizing tier only, unless node was told how to compile it", () => {
  expect(importWasmFlag([])).toBe("--no-liftoff");
  expect(importWasmFlag(["--heap-growing-percent=200", "--max-old-space-size=512"])).toBe("--no-liftoff");
  for (const own of ["--liftoff", "--no-liftoff", "--no_liftoff", "--liftoff-only", "--liftoff_only", "--wasm-tier-up", "--no-wasm-tier-up", "--no-wasm-dynamic-tiering", "--wasm_dynamic_tiering"]) {
    expect(importWasmFlag([own])).toBeNull();
  }
  // Other wasm flags say nothing about the tiers.
  expect(importWasmFlag(["--wasm-max-mem-pages=1000", "--liftoffish"])).toBe("--no-liftoff");
});
