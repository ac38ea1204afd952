import { spawn } from "node:child_process";

/** How a child process ended: its exit code, the JSON of its first `{` line, and its stderr. */
export interface ChildOutcome<R> {
  code: number | null;
  result: R | undefined;
  stderr: string;
}

/**
 * Starts `node script ...args`, a child that prints "ready" once set up, waits for a line on
 * stdin (`go`, so that several children start at the same moment) and prints one JSON line.
 */
export function startChild<R>(script: string, args: readonly string[]) {
  const child = spawn(process.execPath, [script, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (stdout.startsWith("ready\n")) markReady();
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<ChildOutcome<R>>((resolve) =>
    child.on("close", (code) => {
      markReady(); // a child that died before "ready" must not hang the test
      const line = stdout.split("\n").find((l) => l.startsWith("{"));
      resolve({ code, result: line ? (JSON.parse(line) as R) : undefined, stderr });
    }),
  );
  return { ready, go: () => child.stdin.write("go\n"), done };
}
