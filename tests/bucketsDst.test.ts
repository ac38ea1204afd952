// Time buckets across DST in many IANA zones, checked against an independent computation: each
// usage row's local bucket is read with `created_at AT TIME ZONE tz` (the local wall date and hour,
// and for hours the UTC offset, so the two passes of a fall-back hour stay apart), and the sums
// are added up in JavaScript. Filled and unfilled results must carry exactly that usage, every
// `bucketStart` must be the first instant of its local bucket, and every row must lie in
// [bucketStart_i, bucketStart_i+1). Usage sits around DST changes of 2010-2026 (found with SQL),
// including zones whose clocks change at midnight (the day then starts at 01:00, or its midnight
// happens twice), Lord Howe's 30-minute DST and Apia's skipped day.
import {
  UsageValidationError,
  MAX_FILLED_ROWS,
  costReport,
  recordModelUsageBatch,
  sumModelUsage,
  type ModelUsageInput,
  type TimeBucket,
} from "../src";
import { seededRandom } from "../src/random";
import { createAgent, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

const NAMED_ZONES = [
  "America/Santiago",
  "America/Havana",
  "Asia/Beirut",
  "America/Asuncion",
  "America/Sao_Paulo",
  "Australia/Lord_Howe",
  "Europe/Berlin",
  "America/New_York",
  "Asia/Kolkata",
  "Asia/Kathmandu",
  "Pacific/Chatham",
  "Pacific/Apia",
  "Africa/Casablanca",
  "Antarctica/Troll",
];
const RANDOM_ZONES = 10;
const SEED = 20261125;
const BUCKETS: readonly TimeBucket[] = ["hour", "day", "week", "month"];
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Usage at these distances from each DST change, and a few random ones up to 35 days away. */
const AROUND = [-25 * HOUR, -DAY, -3 * HOUR, -2 * HOUR, -90 * MIN, -61 * MIN, -HOUR, -59 * MIN, -31 * MIN, -30 * MIN, -29 * MIN, -MIN, -1000, 0,
  1000, MIN, 29 * MIN, 30 * MIN, 31 * MIN, 59 * MIN, HOUR, 61 * MIN, 90 * MIN, 2 * HOUR, 3 * HOUR, DAY, 25 * HOUR];

let t: TestDatabase;
let model: number;
let agents: number[];

interface Cluster {
  zone: string;
  userId: number;
  change: Date;
  events: { at: Date; tokens: bigint; agentId: number }[];
}
const clusters: Cluster[] = [];

/** One row per DST change (or offset change) of `zone` in 2010-2026, and whether the local date went backwards there. */
async function changesOf(zone: string): Promise<{ at: Date; dateBack: boolean }[]> {
  const rows = await t.db.prisma.$queryRaw<{ at: Date; dateBack: boolean }[]>`
    WITH days AS (
      SELECT d, (d AT TIME ZONE ${zone}::text) - (d AT TIME ZONE 'UTC') AS off
      FROM generate_series('2010-01-01T00:00:00Z'::timestamptz, '2027-01-01T00:00:00Z'::timestamptz, interval '1 day') AS d
    ), changed AS (
      SELECT lag(d) OVER (ORDER BY d) AS a, d AS b, off, lag(off) OVER (ORDER BY d) AS prev FROM days
    )
    SELECT m.at, ((m.at AT TIME ZONE ${zone}::text)::date < ((m.at - interval '1 second') AT TIME ZONE ${zone}::text)::date) AS "dateBack"
    FROM changed c CROSS JOIN LATERAL (
      SELECT min(x) AS at FROM generate_series(c.a, c.b, interval '1 minute') AS x
      WHERE (x AT TIME ZONE ${zone}::text) - (x AT TIME ZONE 'UTC') = c.off
    ) m
    WHERE c.off <> c.prev
    ORDER BY 1`;
  return rows;
}

function isoWeekMonday(date: string): string {
  const d = new Date(`${date}T00:00:00Z`);
  return new Date(d.getTime() - ((d.getUTCDay() + 6) % 7) * DAY).toISOString().slice(0, 10);
}

/** The local bucket identity of each instant, read with AT TIME ZONE (not date_trunc). */
async function identities(zone: string, bucket: TimeBucket, instants: readonly Date[]): Promise<string[]> {
  if (instants.length === 0) return [];
  const rows = await t.db.prisma.$queryRaw<{ wall: string; off: number }[]>`
    SELECT to_char(x AT TIME ZONE ${zone}::text, 'YYYY-MM-DD"T"HH24') AS wall,
           extract(epoch FROM (x AT TIME ZONE ${zone}::text) - (x AT TIME ZONE 'UTC'))::int AS off
    FROM unnest(${instants.map((d) => d.toISOString())}::timestamptz[]) WITH ORDINALITY AS u(x, i) ORDER BY i`;
  return rows.map(({ wall, off }) => {
    if (bucket === "hour") return `${wall}|${off}`;
    if (bucket === "day") return wall.slice(0, 10);
    if (bucket === "week") return isoWeekMonday(wall.slice(0, 10));
    return wall.slice(0, 7);
  });
}

beforeAll(async () => {
  t = await openTestDatabase();
  model = await createModel(t.db);
  agents = [await createAgent(t.db), await createAgent(t.db)];
  const random = seededRandom(SEED);
  const names = (await t.db.prisma.$queryRaw<{ name: string }[]>`SELECT name FROM pg_timezone_names ORDER BY name`).map((r) => r.name);
  const zones: { zone: string; changes: { at: Date; dateBack: boolean }[] }[] = [];
  for (const zone of NAMED_ZONES) zones.push({ zone, changes: await changesOf(zone) });
  // Random other zones, leaving out those whose local date ever went backwards in 2010-2026
  // (St. John's 00:01 changes, Casey): a date that happens twice is no single interval to check.
  for (let tries = 0; zones.length < NAMED_ZONES.length + RANDOM_ZONES && tries < 200; tries++) {
    const zone = names[Math.floor(random() * names.length)];
    if (zones.some((z) => z.zone === zone)) continue;
    const changes = await changesOf(zone);
    if (changes.some((c) => c.dateBack)) continue;
    zones.push({ zone, changes });
  }
  const inputs: ModelUsageInput[] = [];
  for (const { zone, changes } of zones) {
    // Two changes of one year (both directions), one of another year; a zone without DST gets a New Year.
    const picked = changes.length === 0 ? [new Date("2019-12-31T18:30:00Z")] : [];
    if (changes.length > 0) {
      const i = Math.floor(random() * changes.length);
      picked.push(changes[i].at);
      if (changes[i + 1]) picked.push(changes[i + 1].at);
      const j = Math.floor(random() * changes.length);
      if (j !== i && j !== i + 1) picked.push(changes[j].at);
    }
    for (const change of picked) {
      const cluster: Cluster = { zone, userId: clusters.length + 1, change, events: [] };
      const offsets = [...AROUND, ...Array.from({ length: 12 }, () => Math.round((random() * 70 - 35) * DAY))];
      for (const offset of offsets) {
        const event = { at: new Date(change.getTime() + offset), tokens: BigInt(1 + Math.floor(random() * 1_000_000)), agentId: agents[Math.floor(random() * 2)] };
        cluster.events.push(event);
        inputs.push({ userId: cluster.userId, modelId: model, agentId: event.agentId, tokenInCount: Number(event.tokens), createdAt: event.at });
      }
      clusters.push(cluster);
    }
  }
  await recordModelUsageBatch(t.db, inputs);
});
afterAll(() => t.dispose());

type Row = { bucketStart: Date; events: bigint; tokenInCount: bigint; agentId?: number | null };

/**
 * Checks one result against the events it covers: per bucket the same events and tokens, starts
 * strictly increasing, each start in its own bucket and the millisecond before it in another,
 * every event inside its row's [start, next start). With `filled`, the buckets are also
 * contiguous (no bucket missing) from the first one to the last one.
 */
async function check(
  zone: string,
  bucket: TimeBucket,
  rows: readonly Row[],
  events: Cluster["events"],
  options: { filled: boolean; first?: Date; last?: Date; groupOf?: (e: Cluster["events"][number]) => number },
): Promise<void> {
  const label = `${zone} ${bucket}${options.filled ? " filled" : ""}`;
  const groupOf = options.groupOf ?? (() => 0);
  const eventIds = await identities(zone, bucket, events.map((e) => e.at));
  const expected = new Map<string, { events: bigint; tokens: bigint }>();
  events.forEach((e, i) => {
    const key = `${groupOf(e)}|${eventIds[i]}`;
    const sum = expected.get(key) ?? { events: 0n, tokens: 0n };
    expected.set(key, { events: sum.events + 1n, tokens: sum.tokens + e.tokens });
  });
  const starts = rows.map((r) => r.bucketStart);
  const startIds = await identities(zone, bucket, starts);
  const beforeIds = await identities(zone, bucket, starts.map((s) => new Date(s.getTime() - 1)));
  const problems: string[] = [];
  const iso = (i: number) => starts[i].toISOString();
  const seen = new Set<string>();
  const byGroup = new Map<number, number[]>();
  rows.forEach((row, i) => {
    const group = options.groupOf ? (row.agentId as number) : 0;
    const key = `${group}|${startIds[i]}`;
    const want = expected.get(key) ?? { events: 0n, tokens: 0n };
    if (row.events !== want.events || row.tokenInCount !== want.tokens) {
      problems.push(`${iso(i)} (${key}): ${row.events} events / ${row.tokenInCount} tokens, expected ${want.events} / ${want.tokens}`);
    }
    if (!options.filled && row.events === 0n) problems.push(`${iso(i)}: an empty bucket without fillEmptyBuckets`);
    if (beforeIds[i] === startIds[i]) problems.push(`${iso(i)} (${startIds[i]}) is not its bucket's first instant`);
    if (seen.has(key)) problems.push(`${iso(i)} (${key}) comes back twice`);
    seen.add(key);
    const indexes = byGroup.get(group) ?? [];
    indexes.push(i);
    byGroup.set(group, indexes);
  });
  for (const k of expected.keys()) if (!seen.has(k)) problems.push(`bucket ${k} with usage is missing`);
  for (const [group, indexes] of byGroup) {
    const rowOf = new Map(indexes.map((r) => [startIds[r], r]));
    for (let n = 1; n < indexes.length; n++) {
      const [a, b] = [indexes[n - 1], indexes[n]];
      if (!(starts[a].getTime() < starts[b].getTime())) problems.push(`${iso(a)} is not before ${iso(b)}`);
      // Filled: the bucket just before the next start is this row's bucket, so none is missing.
      if (options.filled && beforeIds[b] !== startIds[a]) problems.push(`a bucket is missing between ${iso(a)} and ${iso(b)}`);
    }
    events.forEach((e, i) => {
      if (groupOf(e) !== group) return;
      const r = rowOf.get(eventIds[i]);
      const n = r === undefined ? -1 : indexes.indexOf(r);
      const next = indexes[n + 1];
      const inside = r !== undefined && e.at.getTime() >= starts[r].getTime() && (next === undefined || e.at.getTime() < starts[next].getTime());
      if (!inside) problems.push(`usage at ${e.at.toISOString()} (${eventIds[i]}) is not inside its bucket's [start, next start)`);
    });
    if (options.filled && options.first && options.last && indexes.length > 0) {
      const [firstId, lastId] = await identities(zone, bucket, [options.first, options.last]);
      if (startIds[indexes[0]] !== firstId) problems.push(`the first bucket is ${startIds[indexes[0]]}, not ${firstId}`);
      if (startIds[indexes[indexes.length - 1]] !== lastId) problems.push(`the last bucket is ${startIds[indexes[indexes.length - 1]]}, not ${lastId}`);
    }
  }
  expect({ label, problems: problems.slice(0, 20) }).toEqual({ label, problems: [] });
}

describe("buckets across DST changes in many zones equal an independent computation", () => {
  test.each(BUCKETS)("%s buckets, unfilled and zero-filled over the data's own range (grouped by agent)", async (bucket) => {
    expect(clusters.length).toBeGreaterThanOrEqual(NAMED_ZONES.length * 2);
    for (const c of clusters) {
      const unfilled = await sumModelUsage(t.db, { where: { userId: c.userId }, bucket, timeZone: c.zone });
      await check(c.zone, bucket, unfilled, c.events, { filled: false });
      const filled = await sumModelUsage(t.db, { where: { userId: c.userId }, groupBy: ["agentId"], bucket, timeZone: c.zone, fillEmptyBuckets: true });
      const times = c.events.map((e) => e.at.getTime());
      await check(c.zone, bucket, filled, c.events, {
        filled: true,
        groupOf: (e) => e.agentId,
        first: new Date(Math.min(...times)),
        last: new Date(Math.max(...times)),
      });
    }
  });

  test.each(BUCKETS)("%s buckets zero-filled over from/to ranges that start on a DST change day", async (bucket) => {
    for (const c of clusters) {
      const change = c.change.getTime();
      const ranges: [number, number][] = [
        [change - 2 * HOUR, change + 50 * HOUR],
        [change, change + 30 * DAY],
        [change + MIN, change + 26 * HOUR],
      ];
      for (const [from, to] of ranges) {
        const where = { userId: c.userId, from: new Date(from), to: new Date(to) };
        const inRange = c.events.filter((e) => e.at.getTime() >= from && e.at.getTime() < to);
        const filled = await sumModelUsage(t.db, { where, bucket, timeZone: c.zone, fillEmptyBuckets: true });
        await check(c.zone, bucket, filled, inRange, { filled: true, first: where.from, last: new Date(to - 1) });
        const unfilled = await sumModelUsage(t.db, { where, bucket, timeZone: c.zone });
        await check(c.zone, bucket, unfilled, inRange, { filled: false });
      }
    }
  });
});

test.each(BUCKETS)("cost reports bucket by %s the same way (checked against the independent computation)", async (bucket) => {
  for (const c of clusters) {
    const report = await costReport(t.db, { where: { userId: c.userId }, bucket, timeZone: c.zone });
    const rows = report.rows.map((r) => ({ bucketStart: r.bucketStart as Date, events: r.modelEvents, tokenInCount: r.tokens.tokenInCount }));
    await check(c.zone, bucket, rows, c.events, { filled: false });
  }
});

describe("zero-fill limits (buckets × groups)", () => {
  test("ten years of hours for many agents is refused before it runs, with the row count", async () => {
    const many = Array.from({ length: 30 }, (_, i) => i);
    const users = 900_000 + 1;
    const ids: number[] = [];
    for (const _ of many) ids.push(await createAgent(t.db));
    await recordModelUsageBatch(
      t.db,
      ids.map((agentId, i) => ({ userId: users, modelId: model, agentId, tokenInCount: 1, createdAt: new Date(Date.UTC(2016, 0, 1 + i)) })),
    );
    const where = { userId: users, from: new Date("2016-01-01T00:00:00Z"), to: new Date("2026-01-01T00:00:00Z") };
    const error = await sumModelUsage(t.db, { where, groupBy: ["agentId"], bucket: "hour", timeZone: "Europe/Berlin", fillEmptyBuckets: true }).catch(
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(UsageValidationError);
    const issue = (error as UsageValidationError).issues[0];
    expect(issue.field).toBe("fillEmptyBuckets");
    // 87,672 hours (2016-2025, three leap years) × 30 agents.
    expect(issue.reason).toContain(`about ${(87_672 * 30).toLocaleString("en-US")} rows (87,672 hour buckets × 30 groups)`);
    expect(issue.reason).toContain(`limit of ${MAX_FILLED_ROWS.toLocaleString("en-US")}`);
    expect(issue.reason).toMatch(/coarser bucket/);
    // The same range by month is small, and grouped it is 120 months × 30 agents.
    const months = await sumModelUsage(t.db, { where, groupBy: ["agentId"], bucket: "month", timeZone: "Europe/Berlin", fillEmptyBuckets: true });
    // 2016-01-01T00:00Z is 01:00 in Berlin, and 2026-01-01T00:00Z is still in January 2026 there: 121 months.
    expect(months).toHaveLength(121 * 30);
    expect(months.reduce((sum, r) => sum + r.events, 0n)).toBe(30n);
  });

  test("a range taken from the data is capped too: one very old event does not make a 740k-row day fill", async () => {
    const user = 900_000 + 2;
    await recordModelUsageBatch(t.db, [
      { userId: user, modelId: model, tokenInCount: 1, createdAt: new Date("0001-01-01T00:00:00Z") },
      { userId: user, modelId: model, tokenInCount: 2, createdAt: new Date("2026-01-01T00:00:00Z") },
    ]);
    const error = await sumModelUsage(t.db, { where: { userId: user }, bucket: "day", fillEmptyBuckets: true }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UsageValidationError);
    const days = Math.round((Date.parse("2026-01-01T00:00:00Z") - Date.parse("0001-01-01T00:00:00Z")) / DAY) + 1;
    expect((error as UsageValidationError).issues).toEqual([
      { field: "fillEmptyBuckets", reason: expect.stringContaining(`would return about ${days.toLocaleString("en-US")} rows (${days.toLocaleString("en-US")} day buckets)`) },
    ]);
    // Unfilled, and filled by year-sized months narrowed with from, it works.
    expect((await sumModelUsage(t.db, { where: { userId: user }, bucket: "day" })).map((r) => r.tokenInCount)).toEqual([1n, 2n]);
    const recent = await sumModelUsage(t.db, { where: { userId: user, from: new Date("2025-12-01T00:00:00Z") }, bucket: "day", fillEmptyBuckets: true });
    expect(recent).toHaveLength(32);
  });
});
