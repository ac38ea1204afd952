import fs from "node:fs";
import path from "node:path";
import { defineConfig } from "prisma/config";

// Prisma 7 reads the connection URL from here, not from schema.prisma.
// `env("DATABASE_URL")` throws when the variable is unset, so read it with a fallback:
// commands that need no database (generate, validate, studio on the embedded database) must
// work without it.
const url = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";

// `prisma migrate *` and `prisma db *` need Prisma's native schema engine, downloaded on first
// use. Where it cannot be downloaded (an offline machine), Prisma fails with a network error;
// say what to do instead. The other commands (validate, generate, studio, format) only need the
// engine's path to exist, yet Prisma downloads it first: point them at a stand-in instead.
// Resolved from here so that it also works from an app's node_modules/ps-usage.
function schemaEngineInstalled(): boolean {
  if (process.env.PRISMA_SCHEMA_ENGINE_BINARY) return true;
  try {
    const dir = path.dirname(require.resolve("@prisma/engines/package.json", { paths: [__dirname] }));
    return fs.readdirSync(dir).some((f) => f.startsWith("schema-engine"));
  } catch {
    return false;
  }
}
const command = process.argv.slice(2).find((a) => !a.startsWith("-"));
if (!schemaEngineInstalled()) {
  if (command === "migrate" || command === "db") {
    process.on("exit", (code) => {
      if (code !== 0) {
        process.stderr.write(
          "\nps-usage: this Prisma command needs the native schema engine, which is not installed here" +
            " and could not be downloaded.\n" +
            "  Offline alternative: `npx ps-usage migrate` applies prisma/migrations and records them in" +
            " _prisma_migrations exactly as Prisma Migrate does;\n" +
            "  `npx ps-usage status` lists applied and pending migrations.\n",
        );
      }
    });
  } else {
    process.env.PRISMA_SCHEMA_ENGINE_BINARY = path.join(__dirname, "scripts", "no-schema-engine.js");
  }
}

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url },
});
