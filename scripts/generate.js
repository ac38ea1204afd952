#!/usr/bin/env node
// Generates the Prisma client without downloading anything.
// `prisma generate` insists on a schema engine binary even though Prisma 7's client does not
// use one; pointing PRISMA_SCHEMA_ENGINE_BINARY at our stand-in keeps it offline.
//
// `--if-changed` (npm start, npm run build) skips generating when the schema and the Prisma
// version are those of the last run, as recorded in src/generated/.generated-from.
const { spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const fs = require("node:fs");
// An installed copy of the package ships the client already compiled in dist/; only a checkout
// (which has src/) generates it.
if (!fs.existsSync(path.join(root, "src"))) process.exit(0);

const prismaCli = require.resolve("prisma/build/index.js", { paths: [root] });
const prismaVersion = require(require.resolve("prisma/package.json", { paths: [root] })).version;
const stampFile = path.join(root, "src", "generated", ".generated-from");
const client = path.join(root, "src", "generated", "prisma", "client.ts");
const stamp = crypto
  .createHash("sha256")
  .update(prismaVersion)
  .update(fs.readFileSync(path.join(root, "prisma", "schema.prisma")))
  .update(fs.readFileSync(path.join(root, "prisma.config.ts")))
  .digest("hex");
if (process.argv.includes("--if-changed") && fs.existsSync(client) && readOr(stampFile) === stamp) process.exit(0);

const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: "1" };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) {
  env.PRISMA_SCHEMA_ENGINE_BINARY = path.join(__dirname, "no-schema-engine.js");
}
const result = spawnSync(process.execPath, [prismaCli, "generate"], { cwd: root, env, stdio: "inherit" });
if (result.status === 0) fs.writeFileSync(stampFile, stamp);
process.exit(result.status ?? 1);

function readOr(file) {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}
