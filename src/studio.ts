import { spawn } from "node:child_process";
import path from "node:path";
import type { Database } from "./db";
import { servePglite } from "./db/pgliteServer";
import { PsUsageError } from "./errors";
import { PACKAGE_ROOT } from "./schema/migrate";

/** Options for {@link startStudio}. */
export interface StudioOptions {
  /** Port for Prisma Studio's web page. Default: 5555. */
  readonly port?: number;
  /** Browser to open (`none` opens nothing). Default: `none`. */
  readonly browser?: string;
  /** The PostgreSQL URL to hand to Studio; needed when `db` is a PostgreSQL database. */
  readonly url?: string;
}

/** A running Prisma Studio; `done` settles when it exits. */
export interface StudioHandle {
  /** The address of Studio's web page. */
  readonly studioUrl: string;
  /** What Studio is connected to: the PostgreSQL URL (password hidden) or the PGlite socket. */
  readonly databaseUrl: string;
  readonly done: Promise<number>;
  stop(): Promise<void>;
}

/** An embedded database served on a local PostgreSQL wire-protocol socket. */
export interface EmbeddedServer {
  /** `postgresql://postgres@127.0.0.1:PORT/postgres?sslmode=disable` */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Serves an open embedded (PGlite) database on 127.0.0.1 (a free port) over the PostgreSQL wire
 * protocol, for Prisma Studio or any PostgreSQL client. PGlite has one session: each client gets
 * it for whole turns (a statement up to its Sync, or a whole transaction) and keeps its prepared
 * statements apart (see db/pgliteServer). Stop the server before closing `db`.
 */
export async function serveEmbeddedDatabase(db: Database): Promise<EmbeddedServer> {
  if (db.kind !== "pglite" || !db.pglite) throw new PsUsageError("PS_USAGE_STUDIO", "serveEmbeddedDatabase needs an embedded (PGlite) database");
  const server = await servePglite(db.pglite);
  return { url: server.url, stop: () => server.stop() };
}

/**
 * Starts Prisma Studio on the same database as `db`. For the embedded PGlite database it first
 * serves PGlite on a local socket ({@link serveEmbeddedDatabase}), since Studio speaks the
 * PostgreSQL wire protocol. The calling process keeps the embedded database (and its lock) while
 * Studio runs.
 *
 * @example
 * const db = await openDatabase();
 * const studio = await startStudio(db, { port: 5555 });
 * console.log(studio.studioUrl);   // http://localhost:5555
 * await studio.done;
 */
export async function startStudio(db: Database, options: StudioOptions = {}): Promise<StudioHandle> {
  let server: EmbeddedServer | undefined;
  let url = options.url;
  if (db.kind === "pglite") {
    server = await serveEmbeddedDatabase(db);
    url = server.url;
  }
  if (!url) throw new PsUsageError("PS_USAGE_STUDIO", "startStudio needs options.url for a PostgreSQL database");
  const root = PACKAGE_ROOT;
  const port = options.port ?? 5555;
  const prismaCli = require.resolve("prisma/build/index.js", { paths: [root] });
  const child = spawn(
    process.execPath,
    [prismaCli, "studio", "--config", path.join(root, "prisma.config.ts"), "--url", url, "--port", String(port), "--browser", options.browser ?? "none"],
    { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: "1" } },
  );
  const done = new Promise<number>((resolve) => {
    child.on("exit", (code) => resolve(code ?? 0));
    child.on("error", () => resolve(1));
  });
  done.finally(() => server?.stop());
  return {
    studioUrl: `http://localhost:${port}`,
    databaseUrl: db.kind === "pglite" ? url : db.target,
    done,
    async stop() {
      child.kill("SIGTERM");
      await done;
    },
  };
}
