// A throwaway PostgreSQL server of the test's own (initdb into a temporary directory, a free
// port), so a test can stop and restart the server under a client without touching the shared
// server other test files use. Needs the PostgreSQL server binaries (initdb, pg_ctl); when the
// tests run as root, the server runs as the `postgres` user through runuser (initdb refuses root).
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/** The directory holding initdb and pg_ctl: PS_USAGE_PG_BIN, `pg_config --bindir`, or the newest /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string {
  const candidates: string[] = [];
  if (process.env.PS_USAGE_PG_BIN) candidates.push(process.env.PS_USAGE_PG_BIN);
  const debian = "/usr/lib/postgresql";
  if (fs.existsSync(debian)) {
    for (const version of fs.readdirSync(debian).sort((a, b) => Number(b) - Number(a))) candidates.push(path.join(debian, version, "bin"));
  }
  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim());
  } catch {
    // no pg_config on PATH
  }
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, "initdb")) && fs.existsSync(path.join(dir, "pg_ctl")));
  if (!found) throw new Error(`No PostgreSQL server binaries (initdb, pg_ctl) found; tried ${candidates.join(", ") || "nothing"}. Set PS_USAGE_PG_BIN.`);
  return found;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

const runningAsRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Runs a server binary (as `postgres` when we are root); asynchronous, so the event loop keeps running. */
function runBinary(binDir: string, name: string, args: string[]): Promise<string> {
  const file = runningAsRoot ? "runuser" : path.join(binDir, name);
  const argv = runningAsRoot ? ["-u", "postgres", "--", path.join(binDir, name), ...args] : args;
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${name} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(String(stdout));
    });
  });
}

export interface PrivatePostgres {
  /** `postgresql://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string;
  readonly port: number;
  start(): Promise<void>;
  /** `pg_ctl stop -m fast`: running transactions are aborted, connections closed. */
  stop(): Promise<void>;
  /** `pg_ctl restart -m fast`. */
  restart(): Promise<void>;
  /** Stops the server (if running) and deletes its directory. */
  remove(): Promise<void>;
}

/** Creates (initdb) and starts a private server on a free port. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const binDir = postgresBinDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-private-pg-"));
  if (runningAsRoot) {
    const { uid, gid } = userIds("postgres");
    fs.chownSync(dir, uid, gid);
  }
  const dataDir = path.join(dir, "data");
  const logFile = path.join(dir, "server.log");
  const port = await freePort();
  // -l sends the server's output to a file: without it the server would hold our stdout pipe open.
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30`;
  const pgCtl = (...args: string[]) => runBinary(binDir, "pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "60", ...args]);
  await runBinary(binDir, "initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  const server: PrivatePostgres = {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    port,
    start: () => pgCtl("-o", serverOptions, "start").then(() => undefined),
    stop: () => pgCtl("-m", "fast", "stop").then(() => undefined),
    restart: () => pgCtl("-o", serverOptions, "-m", "fast", "restart").then(() => undefined),
    async remove() {
      await pgCtl("-m", "immediate", "stop").catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (err) {
    await server.remove();
    throw err;
  }
  return server;
}

function userIds(name: string): { uid: number; gid: number } {
  const line = fs
    .readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`Running as root, but there is no "${name}" user to run the private PostgreSQL server as`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}
