// Time buckets, with every expected bucket start written as a literal instant. Each row's
// tokenInCount is a distinct power of ten, so a bucket's sum spells out which rows it holds.
// DST in 2026: Europe/Berlin springs forward on 29 March at 01:00Z and falls back on 25 October
// at 01:00Z; America/New_York springs forward on 8 March at 07:00Z and falls back on 1 November
// at 06:00Z. Asia/Kolkata is UTC+05:30 all year.
import {
  UsageValidationError,
  recordExternalApiUsageBatch,
  recordModelUsageBatch,
  sumExternalApiUsage,
  sumModelUsage,
  type ModelUsageInput,
} from "../src";
import { createAgent, createExternalApi, createModel } from "./support/fixtures";
import { openTestDatabase, type TestDatabase } from "./support/testDatabase";

let t: TestDatabase;
let agentA: number, agentB: number, api: number;

/** Users keep the data sets apart. */
const SPRING_BERLIN = 1;
const FALL_BERLIN = 2;
const NEW_YORK = 3;
const KOLKATA = 4;

type BucketRow = { bucketStart: Date; events: bigint; tokenInCount: bigint };
const pairs = (rows: readonly BucketRow[]) => rows.map((r) => [r.bucketStart.toISOString(), r.tokenInCount]);
const at = (iso: string) => new Date(iso).toISOString();

beforeAll(async () => {
  t = await openTestDatabase();
  const model = await createModel(t.db);
  agentA = await createAgent(t.db);
  agentB = await createAgent(t.db);
  api = await createExternalApi(t.db);
  const row = (userId: number, iso: string, tokenInCount: number, agentId: number | null = null): ModelUsageInput => ({
    userId,
    modelId: model,
    agentId,
    tokenInCount,
    createdAt: new Date(iso),
  });
  await recordModelUsageBatch(t.db, [
    row(SPRING_BERLIN, "2026-03-28T22:59:59Z", 1, agentA), // Sat 28 Mar 23:59:59 CET
    row(SPRING_BERLIN, "2026-03-28T23:00:00Z", 10, agentA), // Sun 29 Mar 00:00 CET
    row(SPRING_BERLIN, "2026-03-29T00:30:00Z", 100, agentA), // 01:30 CET
    row(SPRING_BERLIN, "2026-03-29T01:30:00Z", 1_000, agentB), // 03:30 CEST (02:xx never happened)
    row(SPRING_BERLIN, "2026-03-29T21:59:59Z", 10_000, agentB), // Sun 23:59:59 CEST
    row(SPRING_BERLIN, "2026-03-29T22:00:00Z", 100_000, agentB), // Mon 30 Mar 00:00 CEST
    row(SPRING_BERLIN, "2026-03-31T22:30:00Z", 1_000_000, agentB), // Wed 1 Apr 00:30 CEST, still 31 Mar in UTC

    row(FALL_BERLIN, "2026-10-24T21:59:59Z", 1), // Sat 24 Oct 23:59:59 CEST
    row(FALL_BERLIN, "2026-10-24T22:00:00Z", 10), // Sun 25 Oct 00:00 CEST
    row(FALL_BERLIN, "2026-10-25T00:30:00Z", 100), // 02:30 CEST, the first time
    row(FALL_BERLIN, "2026-10-25T01:30:00Z", 1_000), // 02:30 CET, the second time
    row(FALL_BERLIN, "2026-10-25T22:59:59Z", 10_000), // Sun 23:59:59 CET
    row(FALL_BERLIN, "2026-10-25T23:00:00Z", 100_000), // Mon 26 Oct 00:00 CET

    row(NEW_YORK, "2026-03-08T04:59:59Z", 1), // Sat 7 Mar 23:59:59 EST
    row(NEW_YORK, "2026-03-08T05:00:00Z", 10), // Sun 8 Mar 00:00 EST
    row(NEW_YORK, "2026-03-09T03:59:59Z", 100), // Sun 8 Mar 23:59:59 EDT
    row(NEW_YORK, "2026-03-09T04:00:00Z", 1_000), // Mon 9 Mar 00:00 EDT
    row(NEW_YORK, "2026-11-01T04:00:00Z", 10_000), // Sun 1 Nov 00:00 EDT
    row(NEW_YORK, "2026-11-02T04:59:59Z", 100_000), // Sun 1 Nov 23:59:59 EST
    row(NEW_YORK, "2026-11-02T05:00:00Z", 1_000_000), // Mon 2 Nov 00:00 EST

    row(KOLKATA, "2026-01-01T00:10:00Z", 1), // 05:40 IST
    row(KOLKATA, "2026-01-01T00:40:00Z", 10), // 06:10 IST
  ]);
});
afterAll(() => t.dispose());

describe("buckets in UTC", () => {
  test("hour, day, week (from Monday) and month", async () => {
    const where = { userId: SPRING_BERLIN };
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "hour" }))).toEqual([
      [at("2026-03-28T22:00:00Z"), 1n],
      [at("2026-03-28T23:00:00Z"), 10n],
      [at("2026-03-29T00:00:00Z"), 100n],
      [at("2026-03-29T01:00:00Z"), 1_000n],
      [at("2026-03-29T21:00:00Z"), 10_000n],
      [at("2026-03-29T22:00:00Z"), 100_000n],
      [at("2026-03-31T22:00:00Z"), 1_000_000n],
    ]);
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "day" }))).toEqual([
      [at("2026-03-28T00:00:00Z"), 11n],
      [at("2026-03-29T00:00:00Z"), 111_100n],
      [at("2026-03-31T00:00:00Z"), 1_000_000n],
    ]);
    // 29 March 2026 is a Sunday: it closes the week that began on Monday 23 March.
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "week", timeZone: "UTC" }))).toEqual([
      [at("2026-03-23T00:00:00Z"), 111_111n],
      [at("2026-03-30T00:00:00Z"), 1_000_000n],
    ]);
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "month" }))).toEqual([[at("2026-03-01T00:00:00Z"), 1_111_111n]]);
  });

  test("events count the rows in each bucket", async () => {
    const rows = await sumModelUsage(t.db, { where: { userId: SPRING_BERLIN }, bucket: "day" });
    expect(rows.map((r) => r.events)).toEqual([2n, 4n, 1n]);
  });
});

describe("buckets in Europe/Berlin across DST", () => {
  const timeZone = "Europe/Berlin";

  test("spring forward: 29 March is a 23-hour day", async () => {
    const rows = await sumModelUsage(t.db, { where: { userId: SPRING_BERLIN }, bucket: "day", timeZone });
    expect(pairs(rows)).toEqual([
      [at("2026-03-27T23:00:00Z"), 1n], // 28 Mar, CET
      [at("2026-03-28T23:00:00Z"), 11_110n], // 29 Mar
      [at("2026-03-29T22:00:00Z"), 100_000n], // 30 Mar, CEST: 23 hours after the 29th began
      [at("2026-03-31T22:00:00Z"), 1_000_000n], // 1 Apr
    ]);
    expect(rows[2].bucketStart.getTime() - rows[1].bucketStart.getTime()).toBe(23 * 3_600_000);
  });

  test("fall back: 25 October is a 25-hour day, and its two 02:00 hours stay two hour buckets", async () => {
    const where = { userId: FALL_BERLIN };
    const days = await sumModelUsage(t.db, { where, bucket: "day", timeZone });
    expect(pairs(days)).toEqual([
      [at("2026-10-23T22:00:00Z"), 1n], // 24 Oct, CEST
      [at("2026-10-24T22:00:00Z"), 11_110n], // 25 Oct
      [at("2026-10-25T23:00:00Z"), 100_000n], // 26 Oct, CET
    ]);
    expect(days[2].bucketStart.getTime() - days[1].bucketStart.getTime()).toBe(25 * 3_600_000);
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "hour", timeZone }))).toEqual([
      [at("2026-10-24T21:00:00Z"), 1n],
      [at("2026-10-24T22:00:00Z"), 10n],
      [at("2026-10-25T00:00:00Z"), 100n], // 02:00 CEST
      [at("2026-10-25T01:00:00Z"), 1_000n], // 02:00 CET
      [at("2026-10-25T22:00:00Z"), 10_000n],
      [at("2026-10-25T23:00:00Z"), 100_000n],
    ]);
  });

  test("weeks start on Monday local time; months on the 1st local time", async () => {
    const where = { userId: SPRING_BERLIN };
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "week", timeZone }))).toEqual([
      [at("2026-03-22T23:00:00Z"), 11_111n], // Mon 23 Mar 00:00 CET
      [at("2026-03-29T22:00:00Z"), 1_100_000n], // Mon 30 Mar 00:00 CEST
    ]);
    expect(pairs(await sumModelUsage(t.db, { where, bucket: "month", timeZone }))).toEqual([
      [at("2026-02-28T23:00:00Z"), 111_111n], // 1 Mar 00:00 CET
      [at("2026-03-31T22:00:00Z"), 1_000_000n], // 1 Apr 00:00 CEST
    ]);
  });

  test("groups and buckets together, ordered by group then bucket", async () => {
    const rows = await sumModelUsage(t.db, { where: { userId: SPRING_BERLIN }, groupBy: ["agentId"], bucket: "day", timeZone });
    expect(rows.map((r) => [r.agentId, r.bucketStart.toISOString(), r.events, r.tokenInCount])).toEqual([
      [agentA, at("2026-03-27T23:00:00Z"), 1n, 1n],
      [agentA, at("2026-03-28T23:00:00Z"), 2n, 110n],
      [agentB, at("2026-03-28T23:00:00Z"), 2n, 11_000n],
      [agentB, at("2026-03-29T22:00:00Z"), 1n, 100_000n],
      [agentB, at("2026-03-31T22:00:00Z"), 1n, 1_000_000n],
    ]);
  });
});

describe("buckets in other zones", () => {
  test("America/New_York: 8 March has 23 hours, 1 November 25", async () => {
    const rows = await sumModelUsage(t.db, { where: { userId: NEW_YORK }, bucket: "day", timeZone: "America/New_York" });
    expect(pairs(rows)).toEqual([
      [at("2026-03-07T05:00:00Z"), 1n],
      [at("2026-03-08T05:00:00Z"), 110n],
      [at("2026-03-09T04:00:00Z"), 1_000n],
      [at("2026-11-01T04:00:00Z"), 110_000n],
      [at("2026-11-02T05:00:00Z"), 1_000_000n],
    ]);
    const months = await sumModelUsage(t.db, { where: { userId: NEW_YORK }, bucket: "month", timeZone: "America/New_York" });
    expect(pairs(months)).toEqual([
      [at("2026-03-01T05:00:00Z"), 1_111n],
      [at("2026-11-01T04:00:00Z"), 1_110_000n],
    ]);
  });

  test("Asia/Kolkata: hours start at half past in UTC", async () => {
    expect(pairs(await sumModelUsage(t.db, { where: { userId: KOLKATA }, bucket: "hour", timeZone: "Asia/Kolkata" }))).toEqual([
      [at("2025-12-31T23:30:00Z"), 1n],
      [at("2026-01-01T00:30:00Z"), 10n],
    ]);
    expect(pairs(await sumModelUsage(t.db, { where: { userId: KOLKATA }, bucket: "hour" }))).toEqual([[at("2026-01-01T00:00:00Z"), 11n]]);
  });
});

describe("fillEmptyBuckets", () => {
  const timeZone = "Europe/Berlin";

  test("from/to give the range: every local day from the one holding from to the one before to", async () => {
    const rows = await sumModelUsage(t.db, {
      where: { userId: SPRING_BERLIN, from: new Date("2026-03-27T23:00:00Z"), to: new Date("2026-04-01T22:00:00Z") },
      bucket: "day",
      timeZone,
      fillEmptyBuckets: true,
    });
    expect(rows.map((r) => [r.bucketStart.toISOString(), r.events, r.tokenInCount, r.tokenOutCount])).toEqual([
      [at("2026-03-27T23:00:00Z"), 1n, 1n, 0n],
      [at("2026-03-28T23:00:00Z"), 4n, 11_110n, 0n],
      [at("2026-03-29T22:00:00Z"), 1n, 100_000n, 0n],
      [at("2026-03-30T22:00:00Z"), 0n, 0n, 0n], // 31 Mar: nothing
      [at("2026-03-31T22:00:00Z"), 1n, 1_000_000n, 0n],
    ]);
  });

  test("a from inside a bucket starts the range at that bucket, summing only what is after from", async () => {
    const rows = await sumModelUsage(t.db, {
      where: { userId: SPRING_BERLIN, from: new Date("2026-03-29T12:00:00Z"), to: new Date("2026-03-30T12:00:00Z") },
      bucket: "day",
      timeZone,
      fillEmptyBuckets: true,
    });
    expect(pairs(rows)).toEqual([
      [at("2026-03-28T23:00:00Z"), 10_000n],
      [at("2026-03-29T22:00:00Z"), 100_000n],
    ]);
  });

  test("the fall-back night has five hour buckets between 00:00 and 04:00 local", async () => {
    const rows = await sumModelUsage(t.db, {
      where: { userId: FALL_BERLIN, from: new Date("2026-10-24T22:00:00Z"), to: new Date("2026-10-25T03:00:00Z") },
      bucket: "hour",
      timeZone,
      fillEmptyBuckets: true,
    });
    expect(pairs(rows)).toEqual([
      [at("2026-10-24T22:00:00Z"), 10n],
      [at("2026-10-24T23:00:00Z"), 0n],
      [at("2026-10-25T00:00:00Z"), 100n],
      [at("2026-10-25T01:00:00Z"), 1_000n],
      [at("2026-10-25T02:00:00Z"), 0n],
    ]);
  });

  test("without from/to the range runs from the first to the last bucket with usage; every group gets every bucket", async () => {
    const rows = await sumModelUsage(t.db, { where: { userId: SPRING_BERLIN }, groupBy: ["agentId"], bucket: "day", timeZone, fillEmptyBuckets: true });
    expect(rows.map((r) => [r.agentId, r.bucketStart.toISOString(), r.tokenInCount])).toEqual([
      [agentA, at("2026-03-27T23:00:00Z"), 1n],
      [agentA, at("2026-03-28T23:00:00Z"), 110n],
      [agentA, at("2026-03-29T22:00:00Z"), 0n],
      [agentA, at("2026-03-30T22:00:00Z"), 0n],
      [agentA, at("2026-03-31T22:00:00Z"), 0n],
      [agentB, at("2026-03-27T23:00:00Z"), 0n],
      [agentB, at("2026-03-28T23:00:00Z"), 11_000n],
      [agentB, at("2026-03-29T22:00:00Z"), 100_000n],
      [agentB, at("2026-03-30T22:00:00Z"), 0n],
      [agentB, at("2026-03-31T22:00:00Z"), 1_000_000n],
    ]);
  });

  test("months in a zone, and a range with no usage at all", async () => {
    const months = await sumModelUsage(t.db, {
      where: { userId: SPRING_BERLIN, from: new Date("2026-01-31T23:00:00Z"), to: new Date("2026-05-31T22:00:00Z") },
      bucket: "month",
      timeZone,
      fillEmptyBuckets: true,
    });
    expect(pairs(months)).toEqual([
      [at("2026-01-31T23:00:00Z"), 0n],
      [at("2026-02-28T23:00:00Z"), 111_111n],
      [at("2026-03-31T22:00:00Z"), 1_000_000n],
      [at("2026-04-30T22:00:00Z"), 0n],
    ]);
    const empty = await sumModelUsage(t.db, {
      where: { userId: 99, from: new Date("2026-06-01T00:00:00Z"), to: new Date("2026-06-15T00:00:00Z") },
      bucket: "week",
      fillEmptyBuckets: true,
    });
    expect(pairs(empty)).toEqual([
      [at("2026-06-01T00:00:00Z"), 0n],
      [at("2026-06-08T00:00:00Z"), 0n],
    ]);
    expect(empty.map((r) => r.events)).toEqual([0n, 0n]);
    // Without from/to and without usage there is no range, and no groups: nothing to fill.
    expect(await sumModelUsage(t.db, { where: { userId: 99 }, bucket: "day", fillEmptyBuckets: true })).toEqual([]);
  });

  test("a range of more than 100000 buckets is refused without a query, with the count", async () => {
    const error = await sumModelUsage(t.db, {
      where: { from: new Date("2000-01-01T00:00:00Z"), to: new Date("2020-01-01T00:00:00Z") },
      bucket: "hour",
      fillEmptyBuckets: true,
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UsageValidationError);
    expect((error as UsageValidationError).issues.map((i) => i.field)).toEqual(["fillEmptyBuckets"]);
    expect((error as UsageValidationError).issues[0].reason).toContain("175,320 hour buckets");
  });
});

test("external API usage buckets the same way", async () => {
  await recordExternalApiUsageBatch(t.db, [
    { userId: NEW_YORK, externalApiId: api, callCount: 2, createdAt: new Date("2026-11-01T04:00:00Z") },
    { userId: NEW_YORK, externalApiId: api, callCount: 3, createdAt: new Date("2026-11-02T04:59:59Z") },
    { userId: NEW_YORK, externalApiId: api, callCount: 5, createdAt: new Date("2026-11-02T05:00:00Z") },
  ]);
  const rows = await sumExternalApiUsage(t.db, {
    where: { userId: NEW_YORK, to: new Date("2026-11-04T05:00:00Z") },
    groupBy: ["externalApiId"],
    bucket: "day",
    timeZone: "America/New_York",
    fillEmptyBuckets: true,
  });
  expect(rows.map((r) => [r.externalApiId, r.bucketStart.toISOString(), r.events, r.callCount])).toEqual([
    [api, at("2026-11-01T04:00:00Z"), 2n, 5n],
    [api, at("2026-11-02T05:00:00Z"), 1n, 5n],
    [api, at("2026-11-03T05:00:00Z"), 0n, 0n],
  ]);
});
