// A throwaway PostgreSQL server of the test's own (initdb into a temporary directory, a free
// port), so a test can stop and restart the server under a client without touching the shared
// server other test files use. Needs the PostgreSQL server binaries (initdb, pg_ctl); when the
// tests run as root, the server runs as the `postgres` user through runuser (initdb refuses root).
// A private server can also get a streaming standby of its own (pg_basebackup), for read replicas.
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

/**
 * Why a private primary with a streaming standby cannot be made here, or null when it can: the
 * server binaries (initdb, pg_ctl, pg_basebackup) and, when running as root, runuser and a
 * `postgres` user.
 */
export function standbyPrerequisiteProblem(): string | null {
  let binDir: string;
  try {
    binDir = postgresBinDir();
  } catch (err) {
    return (err as Error).message;
  }
  if (!fs.existsSync(path.join(binDir, "pg_basebackup"))) return `no pg_basebackup beside initdb and pg_ctl in ${binDir}`;
  if (runningAsRoot) {
    try {
      userIds("postgres");
    } catch (err) {
      return (err as Error).message;
    }
    try {
      execFileSync("runuser", ["--help"], { stdio: "ignore" });
    } catch {
      return "running as root, but there is no runuser to run the servers as the postgres user";
    }
  }
  return null;
}

export interface PrivatePostgres {
  /** `postgresql://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string;
  readonly port: number;
  /** The server's data directory. */
  readonly dataDir: string;
  start(): Promise<void>;
  /** `pg_ctl stop -m fast`: running transactions are aborted, connections closed. */
  stop(): Promise<void>;
  /** `pg_ctl restart -m fast`. */
  restart(): Promise<void>;
  /** Stops the server (if running) and deletes its directory. */
  remove(): Promise<void>;
}

/** A temporary directory the server's user owns (its data directory and socket go in it). */
function serverDirectory(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (runningAsRoot) {
    const { uid, gid } = userIds("postgres");
    fs.chownSync(dir, uid, gid);
  }
  return dir;
}

/** Creates (initdb) and starts a private server on a free port; `binDir`: another installation's (see {@link installationWithout}). */
export async function startPrivatePostgres(binDir = postgresBinDir()): Promise<PrivatePostgres> {
  const dir = serverDirectory("ps-usage-private-pg-");
  const dataDir = path.join(dir, "data");
  await runBinary(binDir, "initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  return startServer(binDir, dir, dataDir);
}

/**
 * Creates a streaming standby of `primary` (pg_basebackup -R: a copy of its data directory that
 * follows its WAL; hot standby answers read-only queries) and starts it on a free port. initdb's
 * pg_hba.conf lets 127.0.0.1 replicate with trust, and wal_level is `replica` by default, so the
 * private primary needs no change.
 */
export async function startPrivateStandby(primary: PrivatePostgres): Promise<PrivatePostgres> {
  const binDir = postgresBinDir();
  const dir = serverDirectory("ps-usage-standby-pg-");
  const dataDir = path.join(dir, "data");
  await runBinary(binDir, "pg_basebackup", [
    ...["-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-D", dataDir],
    ...["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
  ]).catch((err) => {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return startServer(binDir, dir, dataDir);
}

async function startServer(binDir: string, dir: string, dataDir: string): Promise<PrivatePostgres> {
  const logFile = path.join(dir, "server.log");
  const port = await freePort();
  // -l sends the server's output to a file: without it the server would hold our stdout pipe open.
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30`;
  const pgCtl = (...args: string[]) => runBinary(binDir, "pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "60", ...args]);
  const server: PrivatePostgres = {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
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

/** A copy of the PostgreSQL installation that lacks some files; `remove` deletes it. */
export interface PartialInstallation {
  /** Its initdb, pg_ctl and postgres: pass to {@link startPrivatePostgres}. */
  readonly binDir: string;
  remove(): void;
}

/**
 * A copy of this machine's PostgreSQL installation without the files whose names match `omit`
 * (an extension's control, SQL and library files), to start a real server that lacks it. The
 * server finds its share and library directories relative to its own executable (PostgreSQL is
 * relocatable; initdb finds postgres beside itself), so initdb, pg_ctl and postgres are copied
 * (a symlink would resolve back to the original) into the installation's layout under a temporary
 * root, and every other file of the share and library directories is a symlink to the original.
 */
export function installationWithout(omit: RegExp): PartialInstallation {
  const binDir = postgresBinDir();
  const pgConfig = (flag: string) => execFileSync(path.join(binDir, "pg_config"), [flag], { encoding: "utf8" }).trim();
  const shareDir = pgConfig("--sharedir");
  const libDir = pgConfig("--pkglibdir");
  // The deepest directory the three share (Debian: /usr), kept as the copy's root.
  const parts = [binDir, shareDir, libDir].map((d) => path.resolve(d).split(path.sep));
  let common = 0;
  while (parts.every((p) => p[common] === parts[0][common] && common < p.length - 1)) common++;
  const base = parts[0].slice(0, common).join(path.sep) || path.sep;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-pg-install-"));
  fs.chmodSync(root, 0o755);
  const inCopy = (dir: string) => path.join(root, path.relative(base, dir));
  fs.mkdirSync(inCopy(binDir), { recursive: true });
  for (const name of ["initdb", "pg_ctl", "postgres"]) fs.copyFileSync(path.join(binDir, name), path.join(inCopy(binDir), name));
  for (const name of ["initdb", "pg_ctl", "postgres"]) fs.chmodSync(path.join(inCopy(binDir), name), 0o755);
  const mirror = (from: string, to: string) => {
    fs.mkdirSync(to, { recursive: true });
    for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
      if (omit.test(entry.name)) continue;
      const source = path.join(from, entry.name);
      if (entry.isDirectory()) mirror(source, path.join(to, entry.name));
      else fs.symlinkSync(source, path.join(to, entry.name));
    }
  };
  mirror(shareDir, inCopy(shareDir));
  mirror(libDir, inCopy(libDir));
  return { binDir: inCopy(binDir), remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}
