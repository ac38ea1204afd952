#!/usr/bin/env node
// Generates the Prisma client without downloading anything.
// `prisma generate` insists on a schema engine binary even though Prisma 7's client does not
// use one; pointing PRISMA_SCHEMA_ENGINE_BINARY at our stand-in keeps it offline.
const { spawnSync } = require("node:child_process");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const fs = require("node:fs");
// An installed copy of the package ships the client already compiled in dist/; only a checkout
// (which has src/) generates it.
if (!fs.existsSync(path.join(root, "src"))) process.exit(0);
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: "1" };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) {
  env.PRISMA_SCHEMA_ENGINE_BINARY = path.join(__dirname, "no-schema-engine.js");
}
const prismaCli = require.resolve("prisma/build/index.js", { paths: [root] });
const result = spawnSync(process.execPath, [prismaCli, "generate"], { cwd: root, env, stdio: "inherit" });
process.exit(result.status ?? 1);
