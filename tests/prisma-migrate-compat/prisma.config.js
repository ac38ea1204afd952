// Prisma 6 config for the compatibility tests: the JS (WebAssembly) schema engine talks to
// PostgreSQL through @prisma/adapter-pg, so no native engine download is needed. The tests
// pass the database, the schema copy and the migrations directory in the environment.
const { defineConfig } = require("prisma/config");
const { randomUUID } = require("node:crypto");
const { PrismaPg } = require("@prisma/adapter-pg");
const pg = require("pg");

// Separate fields rather than a connectionString: the adapter opens its shadow database as
// { ...config, database }, and a connectionString would override that database name.
function poolConfig(url) {
  const u = new URL(url);
  return {
    host: decodeURIComponent(u.hostname),
    port: u.port ? Number(u.port) : 5432,
    user: decodeURIComponent(u.username) || undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: decodeURIComponent(u.pathname.slice(1)),
    idleTimeoutMillis: 100,
    // The test databases default to a non-ISO DateStyle (tests/support/testDatabase.ts). The
    // native engine reads timestamps in binary and never sees it; through this text-protocol
    // adapter, Prisma would fail to parse _prisma_migrations.finished_at. Pin ISO as the package does.
    options: "-c DateStyle=ISO,MDY -c TimeZone=UTC",
  };
}

// The schema engine reads catalog columns of PostgreSQL's one-byte "char" type (pg_constraint
// .contype, ...), which @prisma/adapter-pg 7.10.1 does not map (it throws "Unsupported column
// type char"); the native engine reads them as text. Report them as text, in this process only.
const PG_CHAR_OID = 18;
const PG_TEXT_OID = 25;
const handleRowDescription = pg.Query.prototype.handleRowDescription;
pg.Query.prototype.handleRowDescription = function (msg) {
  for (const field of msg.fields) if (field.dataTypeID === PG_CHAR_OID) field.dataTypeID = PG_TEXT_OID;
  return handleRowDescription.call(this, msg);
};

// @prisma/adapter-pg 7.10.1 drops its shadow database while its own pool is still connected to
// it (so the DROP fails) and never closes the connection it created it on. This subclass does
// the same steps in a working order; the schema engine and its diff are Prisma's own.
class PrismaPgWithShadow extends PrismaPg {
  async connectToShadowDb() {
    const admin = await this.connect();
    const database = `prisma_migrate_shadow_db_${randomUUID()}`;
    await admin.executeScript(`CREATE DATABASE "${database}"`);
    const shadow = await new PrismaPg({ ...this.config, database }).connect();
    const disposeShadow = shadow.dispose.bind(shadow);
    shadow.dispose = async () => {
      await disposeShadow();
      await admin.executeScript(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await admin.dispose();
    };
    return shadow;
  }
}

module.exports = defineConfig({
  experimental: { adapter: true },
  engine: "js",
  adapter: async () => new PrismaPgWithShadow(poolConfig(process.env.DATABASE_URL)),
  schema: process.env.PS_COMPAT_SCHEMA,
  migrations: { path: process.env.PS_COMPAT_MIGRATIONS },
});
