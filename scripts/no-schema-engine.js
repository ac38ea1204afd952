#!/usr/bin/env node
// Stands in for Prisma's native schema engine where it cannot be downloaded (offline machines).
// `prisma generate` and `prisma validate` only need the path to exist; a command that really
// runs the engine gets this message instead of a download error.
process.stderr.write(
  "ps-usage: Prisma's native schema engine is not installed and could not be downloaded.\n" +
    "  To migrate without it, run:   npx ps-usage migrate    (or migrate(db) from the API)\n" +
    "  To see migration status:      npx ps-usage status\n" +
    "  On a machine that reaches binaries.prisma.sh, `npx prisma migrate deploy` works as usual.\n",
);
process.exit(1);
