// The suite runs twice: once on an embedded PGlite and once on the PostgreSQL server at
// 127.0.0.1:5432 (PS_USAGE_TEST_ADMIN_URL overrides it). Each test file opens a database of its
// own (tests/support/testDatabase.ts). Files named *.pg.test.ts need a real server (several
// connections, Prisma Migrate, killed backends) and run only in the postgres project.
const base = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/tests"],
  testTimeout: 120_000,
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.test.json" }] },
};

module.exports = {
  // testTimeout is a global option: jest ignores it inside a project's config.
  testTimeout: 120_000,
  projects: [
    {
      ...base,
      displayName: "pglite",
      testMatch: ["**/*.test.ts"],
      // Keep jest's default /node_modules/ too (tests/prisma-migrate-compat has its own).
      testPathIgnorePatterns: ["/node_modules/", "\\.pg\\.test\\.ts$"],
      setupFiles: ["<rootDir>/tests/support/backend-pglite.js"],
    },
    {
      ...base,
      displayName: "postgres",
      testMatch: ["**/*.test.ts"],
      setupFiles: ["<rootDir>/tests/support/backend-postgres.js"],
    },
  ],
};
