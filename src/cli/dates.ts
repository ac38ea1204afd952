/**
 * Strict ISO 8601 dates for the command line and NDJSON: `YYYY-MM-DD` or
 * `YYYY-MM-DDTHH:MM[:SS[.fff]]`, optionally followed by `Z` or `±HH:MM`. JavaScript's `Date`
 * parser accepts far more (`11/01/2026`), rolls impossible dates over (`2026-02-30` becomes
 * March 2) and reads a date-time without an offset in the process's own time zone, so it is not
 * used for input.
 */

/** A parsed ISO 8601 value: an instant (it had an offset or Z) or a wall time in no zone yet. */
export type IsoDateTime =
  | { readonly kind: "instant"; readonly instant: Date }
  | { readonly kind: "local"; readonly fields: WallTime; readonly dateOnly: boolean };

/** A local wall time (month 1-12). */
export interface WallTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly millisecond: number;
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2})?)?$/;

/**
 * Parses `text` strictly; returns a reason (a string) when it is not such a date.
 *
 * @example
 * parseIsoDateTime("2026-09-01");               // { kind: "local", dateOnly: true, ... }
 * parseIsoDateTime("2026-09-01T10:00:00+02:00"); // { kind: "instant", instant: 2026-09-01T08:00Z }
 * parseIsoDateTime("2026-02-30");               // "2026-02-30 does not exist"
 */
export function parseIsoDateTime(text: string): IsoDateTime | string {
  const m = ISO.exec(text);
  if (!m) return `must be an ISO 8601 date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH:MM]), got "${text}"`;
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0));
  const millisecond = m[7] === undefined ? 0 : Number(m[7].padEnd(3, "0"));
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return `${text.slice(0, 10)} does not exist`;
  if (hour > 23 || minute > 59 || second > 59) return `"${text}" is not a time of day (00:00 to 23:59:59)`;
  const fields = { year, month, day, hour, minute, second, millisecond };
  const offset = m[8];
  if (offset === undefined) return { kind: "local", fields, dateOnly: m[4] === undefined };
  let offsetMinutes = 0;
  if (offset !== "Z") {
    const [h, min] = [Number(offset.slice(1, 3)), Number(offset.slice(4, 6))];
    if (h > 23 || min > 59) return `"${offset}" is not a UTC offset`;
    offsetMinutes = (offset[0] === "-" ? -1 : 1) * (h * 60 + min);
  }
  return { kind: "instant", instant: new Date(wallMs(fields) - offsetMinutes * 60_000) };
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** The wall time read as if it were UTC, in milliseconds (years 0-99 too). */
function wallMs(f: WallTime): number {
  const d = new Date(Date.UTC(2000, f.month - 1, f.day, f.hour, f.minute, f.second, f.millisecond));
  d.setUTCFullYear(f.year);
  return d.getTime();
}

/** True when `zone` is an IANA time zone name this runtime knows (e.g. `Europe/Berlin`, `UTC`). */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The offset of `zone` from UTC at `ms`, in milliseconds (from Intl's tz database). */
function offsetAt(zone: string, ms: number): number {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const era = p.era === "BC" ? -1 : 1;
  const wall = wallMs({
    year: era * Number(p.year),
    month: Number(p.month),
    day: Number(p.day),
    hour: Number(p.hour),
    minute: Number(p.minute),
    second: Number(p.second),
    millisecond: 0,
  });
  return wall - (ms - (((ms % 1000) + 1000) % 1000));
}

/**
 * The instant at which clocks in `zone` show `wall`. Where that wall time happens twice (clocks
 * turned back) it is the earlier of the two; where it does not happen (clocks turned forward) it
 * is moved forward by the length of the gap, so `2026-03-29T02:30` in Europe/Berlin is 03:30
 * CEST. This is the "compatible" rule of JavaScript's Temporal and of RFC 5545, and makes a
 * date's midnight the first instant of that day even where a day starts at 01:00.
 *
 * @example
 * zonedWallTimeToInstant({ year: 2026, month: 9, day: 1, hour: 0, minute: 0, second: 0, millisecond: 0 }, "Europe/Berlin");
 * // 2026-08-31T22:00:00.000Z
 */
export function zonedWallTimeToInstant(wall: WallTime, zone: string): Date {
  const local = wallMs(wall);
  // The zone's offsets a day either side: a wall time maps to local - offset for one of them
  // (no zone has changed its offset twice within two days).
  const before = offsetAt(zone, local - 86_400_000);
  const after = offsetAt(zone, local + 86_400_000);
  const candidates = [...new Set([before, after])]
    .map((offset) => local - offset)
    .filter((instant) => instant + offsetAt(zone, instant) === local)
    .sort((a, b) => a - b);
  if (candidates.length > 0) return new Date(candidates[0]);
  // In a gap: read with the offset in force before it, which lands after the gap by its length.
  return new Date(local - before);
}

/** `parsed` as an instant: an instant as it is, a wall time in `zone`. */
export function toInstant(parsed: IsoDateTime, zone: string): Date {
  return parsed.kind === "instant" ? parsed.instant : zonedWallTimeToInstant(parsed.fields, zone);
}
