// PolicySynth's per-call ps_model_usage_item rows, read by the package (issue 13, part 2): on a
// database PolicySynth filled (running counter rows in ps_model_usage, one item per call), finds
// page the items, and sums read either the ledger or the items, never both. Each item's counters
// are computed here independently, in JavaScript, from PolicySynth's own accounting rules.
import { Client } from "pg";
import { adopt, findModelUsageItems, openDatabase, sumAgentTreeUsage, sumModelUsage, type Database, UsageValidationError } from "../src";
import { createPolicySynthDatabase, fillAsPolicySynth, type PolicySynthFill } from "./support/policysynthDatabase";
import { createScratchDatabase } from "./support/testDatabase";

let url: string;
let drop: () => Promise<void>;
let fill: PolicySynthFill;
let db: Database;
interface Item {
  id: number;
  agent_id: number;
  model_id: number;
  created_at: Date;
  data: { usageNormalized: Record<string, number>; pricing: { configuredPrices?: { longContextTokenThreshold?: number } } };
}
let items: Item[];

beforeAll(async () => {
  const scratch = await createScratchDatabase();
  url = scratch.url;
  drop = scratch.drop;
  await createPolicySynthDatabase(url);
  fill = await fillAsPolicySynth(url, { seed: 5 });
  db = await openDatabase({ url });
  await adopt(db);
  const c = new Client({ connectionString: url, options: "-c TimeZone=UTC -c DateStyle=ISO" });
  await c.connect();
  items = (await c.query<Item>("SELECT id, agent_id, model_id, created_at, data FROM ps_model_usage_item ORDER BY id")).rows;
  await c.end();
}, 600_000);
afterAll(async () => {
  await db?.close();
  await drop?.();
});

/** PolicySynth's accounting of one item (partitionModelInputUsage + the all-or-nothing long context). */
function countersOf(item: Item): Record<string, number> {
  const u = item.data.usageNormalized;
  const total = u.tokensIn ?? 0;
  const cached = Math.max(u.cachedInTokens ?? 0, u.cacheReadInputTokens ?? 0);
  const write = u.cacheWriteInputTokens ?? 0;
  const ordinary = Math.max(total - cached - write, 0);
  const threshold = item.data.pricing.configuredPrices?.longContextTokenThreshold;
  const long = !!threshold && total >= threshold;
  return long
    ? { longContextTokenInCount: ordinary, longContextTokenInCachedContextCount: cached, longContextTokenInCacheWriteCount: write, longContextTokenOutCount: u.tokensOut ?? 0 }
    : { tokenInCount: ordinary, tokenInCachedContextCount: cached, tokenInCacheWriteCount: write, tokenOutCount: u.tokensOut ?? 0 };
}

function totals(of: Item[]): Record<string, bigint> {
  const t: Record<string, bigint> = { events: BigInt(of.length) };
  for (const item of of) for (const [k, v] of Object.entries(countersOf(item))) t[k] = (t[k] ?? 0n) + BigInt(v);
  return t;
}

test("the fixture wrote one item per call beside its running rows", () => {
  expect(items.length).toBe(fill.usageItemIds.length);
  expect(items.length).toBeGreaterThan(fill.runningRows.length);
  expect(items.some((i) => countersOf(i).longContextTokenInCount! > 0)).toBe(true);
});

test("findModelUsageItems pages every item by keyset, newest first, with filters", async () => {
  const seen: number[] = [];
  let page = await findModelUsageItems(db, {}, { limit: 7 });
  for (;;) {
    seen.push(...page.items.map((i) => i.id));
    if (!page.nextCursor) break;
    page = await findModelUsageItems(db, {}, { limit: 7, cursor: page.nextCursor });
  }
  const newestFirst = [...items].sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || b.id - a.id).map((i) => i.id);
  expect(seen).toEqual(newestFirst);
  const agentId = items[0].agent_id;
  const mine = await findModelUsageItems(db, { agentId }, { limit: 1000, order: "oldest" });
  expect(mine.items.map((i) => i.id)).toEqual(items.filter((i) => i.agent_id === agentId).map((i) => i.id));
  expect((mine.items[0].data as Item["data"]).usageNormalized).toEqual(items.find((i) => i.agent_id === agentId)!.data.usageNormalized);
  // A ledger cursor is not an item cursor.
  const ledgerPage = await (await import("../src")).findModelUsage(db, {}, { limit: 1 });
  await expect(findModelUsageItems(db, {}, { cursor: ledgerPage.nextCursor! })).rejects.toBeInstanceOf(UsageValidationError);
});

test("sums read the items as PolicySynth accounts them: in all, per day (each call on its own day), per agent tree", async () => {
  const [all] = await sumModelUsage(db, { source: "items" });
  const expected = totals(items);
  for (const [k, v] of Object.entries(expected)) expect([k, all[k as keyof typeof all]]).toEqual([k, v]);

  const perDay = await sumModelUsage(db, { source: "items", bucket: "day", timeZone: "UTC" });
  const days = new Map<string, Item[]>();
  for (const i of items) {
    const day = i.created_at.toISOString().slice(0, 10);
    days.set(day, [...(days.get(day) ?? []), i]);
  }
  expect(perDay.map((r) => [r.bucketStart.toISOString().slice(0, 10), r.events])).toEqual([...days].sort().map(([d, of]) => [d, BigInt(of.length)]));
  // The ledger's running rows put every call on the day of their first call: fewer days.
  const ledgerDays = await sumModelUsage(db, { bucket: "day", timeZone: "UTC" });
  expect(ledgerDays.length).toBeLessThanOrEqual(perDay.length);

  const tree = await sumAgentTreeUsage(db, fill.rootAgentId, { source: "items" });
  const inTree = new Set(tree.agents.map((a) => a.agentId));
  expect(tree.total.modelUsage.tokenOutCount).toBe(totals(items.filter((i) => inTree.has(i.agent_id))).tokenOutCount ?? 0n);
});

test("a bad source is refused, naming the field", async () => {
  await expect(sumModelUsage(db, { source: "both" as never })).rejects.toMatchObject({ issues: [{ field: "source", reason: 'must be "ledger" or "items", got "both"' }] });
});
