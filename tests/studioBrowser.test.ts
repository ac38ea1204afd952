// Prisma Studio as a person uses it, in a real browser: Studio on an embedded demo database, open
// ps_model_usage, follow an agent_id link to the agent, reload, open a second tab, and see the
// rows each time (a reload used to end in "Could not load schema metadata").
//
// The browser is Debian's chromium driven by playwright-core. Where /usr/bin/chromium is missing
// and this runs as root, it is installed here (apt-get); where that cannot be done, the test is
// skipped with the reason. Only in the pglite project: Studio on the embedded database.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import { chromium, type Browser, type Page } from "playwright-core";
import { openDatabase, seedDemo, startStudio, type Database, type StudioHandle } from "../src";
import { freePort } from "./support/ports";

const CHROMIUM = "/usr/bin/chromium";

function chromiumOrWhyNot(): string | undefined {
  if (fs.existsSync(CHROMIUM)) return undefined;
  if (process.getuid?.() !== 0) return `${CHROMIUM} is missing and installing it needs root (apt-get install chromium)`;
  const r = spawnSync("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"], { encoding: "utf8", timeout: 900_000 });
  if (r.status !== 0 || !fs.existsSync(CHROMIUM)) return `${CHROMIUM} is missing and apt-get install chromium failed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  return undefined;
}

const embedded = process.env.PS_USAGE_TEST_BACKEND === "pglite";
const whyNot = embedded ? chromiumOrWhyNot() : "Studio on the embedded database: the pglite project runs it";
if (whyNot && embedded) console.warn(`studioBrowser.test.ts skipped: ${whyNot}`);
const maybe = whyNot ? test.skip : test;

let db: Database | undefined;
let studio: StudioHandle | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  await studio?.stop();
  await db?.close();
});


/** Studio prints its address before its web server listens: wait for the page itself. */
async function waitForStudio(url: string): Promise<void> {
  const until = Date.now() + 90_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => http.get(url, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on("error", () => resolve(0)));
    if (status === 200) return;
    if (Date.now() > until) throw new Error(`Studio did not answer at ${url}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * The grid's cells of one column, as text, once they equal `expected` (the grid fills in after the
 * page or the hash changed), or as they are after 60 s, for the assertion to show.
 */
async function column(page: Page, name: string, expected: readonly string[]): Promise<string[]> {
  const cells = page.locator(`tbody td[data-grid-column-id="${name}"]`);
  const until = Date.now() + 60_000;
  for (;;) {
    const texts = (await cells.allInnerTexts()).map((t) => t.trim());
    if (texts.length === expected.length && texts.every((t, i) => t === expected[i])) return texts;
    if (Date.now() > until) return texts;
    await page.waitForTimeout(250);
  }
}

/** The table's link in Studio's sidebar. */
function tableLink(page: Page, table: string) {
  return page.getByTestId("navigation-search-block-tables").getByRole("link", { name: table, exact: true });
}

async function expectNoStudioError(page: Page): Promise<void> {
  const text = await page.locator("body").innerText();
  expect(text).not.toMatch(/Could not load|prepared statement does not exist/i);
}

maybe(
  "Studio on the embedded demo database: ps_model_usage, an agent_id link, a reload and a second tab all show the rows",
  async () => {
    db = await openDatabase({ dataDir: "memory://", migrate: true });
    await seedDemo(db, { events: 300, days: 5, until: new Date("2026-06-01T00:00:00Z") });
    const port = await freePort();
    studio = await startStudio(db, { port });
    const home = `http://127.0.0.1:${port}/`;
    await waitForStudio(home);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run", "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1600 } });
    await page.goto(home);
    await tableLink(page, "ps_model_usage").click();
    await page.waitForURL(/table=ps_model_usage/);

    // The first page of the grid is ps_model_usage's first rows by id, as the database has them.
    const expected = await db.prisma.psModelUsage.findMany({ orderBy: { id: "asc" }, take: 25, select: { id: true, agentId: true } });
    const ids = expected.map((r) => String(r.id));
    expect(await column(page, "id", ids)).toEqual(ids);
    const agents = expected.map((r) => (r.agentId === null ? "NULL" : String(r.agentId)));
    expect(await column(page, "agent_id", agents)).toEqual(agents);
    const agentCells = page.locator('tbody td[data-grid-column-id="agent_id"]');

    // Follow the first agent_id link: Studio shows that agent's row of ps_agents.
    const i = expected.findIndex((r) => r.agentId !== null);
    const agentId = expected[i].agentId!;
    await agentCells.nth(i).locator("a").click();
    await page.waitForURL(/table=ps_agents/);
    const agent = await db.prisma.psAgent.findUniqueOrThrow({ where: { id: agentId } });
    expect(await column(page, "id", [String(agentId)])).toEqual([String(agentId)]);
    expect(await column(page, "user_id", [String(agent.userId)])).toEqual([String(agent.userId)]);

    // A reload asks Studio's server for its schema metadata again, on new connections.
    const agentsUrl = page.url();
    await page.reload();
    expect(page.url()).toBe(agentsUrl);
    expect(await column(page, "id", [String(agentId)])).toEqual([String(agentId)]);
    await expectNoStudioError(page);

    // Back to ps_model_usage, reload there, and a second tab beside the first.
    await tableLink(page, "ps_model_usage").click();
    await page.waitForURL(/table=ps_model_usage/);
    expect(await column(page, "id", ids)).toEqual(ids);
    await page.reload();
    expect(await column(page, "id", ids)).toEqual(ids);
    const second = await browser.newPage({ viewport: { width: 1400, height: 1600 } });
    await second.goto(page.url());
    expect(await column(second, "id", ids)).toEqual(ids);
    await expectNoStudioError(second);
    await expectNoStudioError(page);
  },
  300_000,
);
