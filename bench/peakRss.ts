/**
 * Preloaded with `node --require` into a process the benchmark does not control (the CLI):
 * on exit, writes the process's peak RSS (VmHWM, KB) to the file named by BENCH_PEAK_RSS_FILE.
 */
import fs from "node:fs";

const target = process.env.BENCH_PEAK_RSS_FILE;
if (target) {
  process.on("exit", () => {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/self/status", "utf8"));
    fs.writeFileSync(target, match ? match[1] : String(process.resourceUsage().maxRSS));
  });
}
