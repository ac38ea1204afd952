import type { FieldIssue } from "../errors";
/**
 * The session settings every connection the package opens is pinned to, whatever the server,
 * database or role defaults are (Debian writes the host's zone into postgresql.conf; managed
 * services let users `ALTER DATABASE … SET timezone` or `datestyle`). With them, a timestamp
 * written without an offset is read as UTC, and every timestamp comes back in the ISO form the
 * drivers parse: the stored instant is the given instant and the read instant the stored one.
 */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: "UTC",
  DateStyle: "ISO, MDY",
  IntervalStyle: "postgres",
};

/** One `SET` per setting, as a script for the simple query protocol. */
export const SESSION_SETTINGS_SQL = Object.entries(SESSION_SETTINGS)
  .map(([name, value]) => `SET ${name} TO '${value}'`)
  .join("; ");

/**
 * Checks a `lockTimeoutMs` option (adopt, rebuildRollups): a whole number of milliseconds from 1
 * to PostgreSQL's largest, because 0 means "wait forever" to PostgreSQL, the opposite of asking
 * not to queue behind a long transaction. Returns the value to use (`fallback` when undefined).
 */
export function checkLockTimeoutMs(value: unknown, fallback: number, issues: FieldIssue[]): number {
  const ms = value ?? fallback;
  if (typeof ms !== "number" || !Number.isInteger(ms) || ms < 1 || ms > 2_147_483_647) {
    issues.push({ field: "lockTimeoutMs", reason: `must be a whole number of milliseconds from 1 to 2147483647, got ${typeof ms === "string" ? JSON.stringify(ms) : String(ms)}` });
    return fallback;
  }
  return ms;
}
