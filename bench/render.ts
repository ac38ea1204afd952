/**
 * Rewrites bench/RESULTS.md from bench/results.json (after editing bench/NOTES.md) without
 * running the benchmark again: `node dist/bench-build/bench/render.js`.
 */
import fs from "node:fs";
import path from "node:path";
import { writeReports, type BenchResults } from "./report";
import { PACKAGE_ROOT } from "../src/schema/migrate";

const outDir = process.env.BENCH_OUT ?? path.join(PACKAGE_ROOT, "bench");
const results = JSON.parse(fs.readFileSync(path.join(outDir, "results.json"), "utf8")) as BenchResults;
writeReports(results, outDir, () => undefined);
process.stdout.write(`rewrote ${path.join(outDir, "RESULTS.md")}\n`);
