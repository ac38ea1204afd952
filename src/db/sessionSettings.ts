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
