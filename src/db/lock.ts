// One process per embedded database directory. PGlite is a single-process database: two
// processes that open one directory each keep their own copy of its pages in memory and
// overwrite each other's writes (acknowledged rows vanish, ids are reused, the primary-key
// index disagrees with the table). An exclusive inter-process lock taken before PGlite opens
// the directory makes the second opener fail cleanly (or wait) instead.
//
// The lock itself is proper-lockfile's: an atomic mkdir of `<dir>.lock` whose mtime the holder
// refreshes every LOCK_STALE_MS / 2, so a lock whose holder died (SIGKILL, power loss) goes stale
// and is taken over after LOCK_STALE_MS; a holder recorded as alive on this host is never taken
// over, however long since it refreshed (its event loop may be blocked or starved of CPU). Who
// holds it is written next to it (`<dir>.lock.holder.json`), for the error message, to tell a
// live holder from a dead one, and to settle a contested takeover.
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import lockfile from "proper-lockfile";
import { DatabaseConnectionError } from "../errors";

/** A lock not refreshed for this long is stale: its holder is gone and the lock is taken over. */
export const LOCK_STALE_MS = 10_000;

/** How often a waiting opener tries again. */
const RETRY_MS = 100;

/** How long an opener that had to wait checks that the lock it then took stays its own. */
const TAKEOVER_SETTLE_MS = 300;

/** Who holds a directory's lock, as recorded by the holder. */
export interface LockHolder {
  readonly pid: number;
  readonly hostname: string;
  /** The holder's command line (`process.argv` joined). */
  readonly command: string;
  /** When the holder took the lock (ISO 8601). */
  readonly startedAt: string;
  /** Inode of the lock directory it took: a holder file left by an earlier holder does not match. */
  readonly lockIno: number;
  /** Unique per acquisition: tells two openers that both took over one stale lock apart. */
  readonly token: string;
}

/** A held directory lock. */
export interface DirectoryLock {
  /** The lock directory (`<dataDir>.lock`). */
  readonly lockPath: string;
  /** Releases the lock; safe to call twice, and after the lock was compromised. */
  release(): Promise<void>;
}

export interface LockOptions {
  /** Wait up to this many milliseconds for the holder to release it. 0: fail at once. */
  readonly waitMs: number;
  /**
   * Called (at most once) when the lock was lost while held: its directory was removed or taken
   * over (e.g. this process was stopped for longer than LOCK_STALE_MS). Must not throw.
   */
  readonly onCompromised: (err: Error) => void;
}

function holderFile(lockPath: string): string {
  return `${lockPath}.holder.json`;
}

function readHolderFile(lockPath: string): LockHolder | undefined {
  try {
    return JSON.parse(fs.readFileSync(holderFile(lockPath), "utf8")) as LockHolder;
  } catch {
    return undefined;
  }
}

/** The recorded holder of the lock directory there now (not one left by an earlier holder). */
function readHolder(lockPath: string): LockHolder | undefined {
  const holder = readHolderFile(lockPath);
  try {
    return holder && holder.lockIno === fs.statSync(lockPath).ino ? holder : undefined;
  } catch {
    return undefined;
  }
}

function writeHolder(lockPath: string, holder: LockHolder): void {
  // Written whole under a temporary name, then renamed: a reader never sees half of it.
  const tmp = `${holderFile(lockPath)}.${process.pid}.${holder.token}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(holder)}\n`);
  fs.renameSync(tmp, holderFile(lockPath));
}

/** True when `holder` ran on this host and its process no longer exists. */
function holderIsDead(holder: LockHolder): boolean {
  if (holder.hostname !== os.hostname()) return false;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** True when the lock's recorded holder is another process, on this host, still running. */
function heldByAnotherLiveProcess(lockPath: string): boolean {
  const holder = readHolder(lockPath);
  return holder !== undefined && holder.pid !== process.pid && holder.hostname === os.hostname() && !holderIsDead(holder);
}

/** `stat` with its mtime now (see the lock's `stat` above). */
function freshened(stat: fs.Stats): fs.Stats {
  const now = new Date();
  return Object.assign(Object.create(Object.getPrototypeOf(stat) as object) as fs.Stats, stat, { mtime: now, mtimeMs: now.getTime() });
}

function describeHolder(lockPath: string, holder: LockHolder | undefined): string {
  if (!holder) {
    return `another process holds its lock ${lockPath} and has not recorded who it is (it is starting, or died before it could: a lock not refreshed for ${LOCK_STALE_MS / 1000} s is taken over; pass --wait <seconds> / lockWaitMs to wait for that)`;
  }
  const who = `process ${holder.pid} on ${holder.hostname} (${holder.command}), since ${holder.startedAt}`;
  if (holderIsDead(holder)) {
    return `its lock ${lockPath} was left by ${who}, which is no longer running; the lock frees within ${LOCK_STALE_MS / 1000} s of its death`;
  }
  return `it is in use by ${who}. An embedded database is opened by one process at a time: stop that process, pass --wait <seconds> (lockWaitMs), or use PostgreSQL for several processes`;
}

function inoOf(p: string): number | undefined {
  try {
    return fs.statSync(p).ino;
  } catch {
    return undefined;
  }
}

function lockAge(lockPath: string): number {
  try {
    return Date.now() - fs.statSync(lockPath).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Directories this process holds or is taking. proper-lockfile keeps one record per path per
 * process, so a second lock of the same path here must wait for the first, as another process would.
 */
const heldHere = new Set<string>();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Takes the exclusive lock of the embedded database directory `dir` (which must exist), waiting
 * up to `options.waitMs` for the process holding it. A lock whose recorded holder ran on this
 * host and has died is waited for until it goes stale (at most LOCK_STALE_MS), even with no wait
 * asked for: taking it over earlier could let two openers both win.
 *
 * @throws DatabaseConnectionError naming `dir` and the holder (pid, host, command line).
 */
export async function lockDirectory(dir: string, options: LockOptions): Promise<DirectoryLock> {
  // One lock per directory however it is reached (symlinks, relative paths).
  const real = fs.realpathSync(dir);
  const lockPath = `${real}.lock`;
  const start = Date.now();
  const deadline = start + Math.max(0, options.waitMs);
  let compromised = false;
  let release: (() => Promise<void>) | undefined;
  let holder: LockHolder | undefined;
  let contended = false;
  for (;;) {
    // Per attempt: lets this attempt let go of a lock it turns out not to own without removing
    // the lock directory, which is then another process's.
    let disowned = false;
    const lockFs = {
      ...fs,
      rmdir: (p: string, cb: (err: NodeJS.ErrnoException | null) => void) => (disowned ? cb(null) : fs.rmdir(p, cb)),
      rmdirSync: (p: string) => (disowned ? undefined : fs.rmdirSync(p)),
      // proper-lockfile judges a lock stale by its mtime alone. A holder whose event loop was
      // blocked or starved of CPU past LOCK_STALE_MS (a loaded machine, a long synchronous call in
      // PGlite) has not refreshed it, yet still has the directory open: taking its lock over let
      // two processes write one directory and lose acknowledged rows. So a lock whose recorded
      // holder is another process alive on this host is never stale: its mtime reads as now.
      stat: (p: string, cb: (err: NodeJS.ErrnoException | null, stat?: fs.Stats) => void) =>
        fs.stat(p, (err, stat) => cb(err, err || !heldByAnotherLiveProcess(lockPath) ? stat : freshened(stat))),
    };
    // A lock directory already there may be a stale one that lock() takes over (see below).
    if (fs.existsSync(lockPath)) contended = true;
    let claimed = false;
    try {
      if (heldHere.has(real)) throw Object.assign(new Error("held by this process"), { code: "ELOCKED" });
      heldHere.add(real);
      claimed = true;
      release = await lockfile.lock(real, {
        lockfilePath: lockPath,
        realpath: false,
        stale: LOCK_STALE_MS,
        retries: 0,
        fs: lockFs,
        onCompromised(err) {
          if (disowned) return;
          compromised = true;
          options.onCompromised(err);
        },
      });
      const lockIno = inoOf(lockPath);
      holder = {
        pid: process.pid,
        hostname: os.hostname(),
        command: process.argv.join(" "),
        startedAt: new Date().toISOString(),
        lockIno: lockIno ?? 0,
        token: randomUUID(),
      };
      if (lockIno !== undefined) writeHolder(lockPath, holder);
      if (lockIno === undefined || contended) {
        // proper-lockfile takes a stale lock over by rmdir then mkdir; two openers that both
        // judged the same stale lock can both win (node-proper-lockfile#121): the slower one
        // removes the faster one's new lock directory and makes its own. Each winner has written
        // its token to the holder file; after a pause only the last writer goes on, the other
        // lets go (without removing a directory that is no longer its own) before it has opened
        // anything. (The lock directory's inode cannot tell them apart: it is reused at once.)
        await sleep(TAKEOVER_SETTLE_MS);
        if (readHolderFile(lockPath)?.token !== holder.token) {
          disowned = true;
          await release().catch(() => undefined);
          release = undefined;
          heldHere.delete(real);
          continue;
        }
      }
      break;
    } catch (err) {
      if (claimed) heldHere.delete(real);
      if ((err as NodeJS.ErrnoException).code !== "ELOCKED") {
        throw new DatabaseConnectionError(real, `cannot take its lock ${lockPath} (${(err as Error).message})`, { cause: err });
      }
      contended = true;
      const current = readHolder(lockPath);
      let until = deadline;
      if (current && holderIsDead(current)) {
        // A dead holder's lock goes stale by itself: waiting for that is bounded.
        // Capped, in case the pid is alive in another pid namespace on a same-named host.
        const staleAt = Date.now() + Math.max(0, LOCK_STALE_MS - lockAge(lockPath)) + 2 * RETRY_MS;
        until = Math.max(until, Math.min(staleAt, start + LOCK_STALE_MS + 1_000));
      }
      if (Date.now() >= until) {
        throw new DatabaseConnectionError(real, describeHolder(lockPath, current), { cause: err });
      }
      await sleep(RETRY_MS);
    }
  }
  let released = false;
  return {
    lockPath,
    async release() {
      if (released) return;
      released = true;
      if (readHolderFile(lockPath)?.token === holder!.token) fs.rmSync(holderFile(lockPath), { force: true });
      // A compromised lock is no longer ours to remove (another process may hold it now).
      if (!compromised) await release!().catch(() => undefined);
      heldHere.delete(real);
    },
  };
}
