// No drift: prisma/schema.prisma and prisma/migrations describe exactly the same database, as
// judged by Prisma Migrate's own differ (`prisma migrate diff --exit-code`: 0 = no difference,
// 2 = difference). And the check can fail: a changed copy of the schema shows a difference.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { migrate, openDatabase } from "../src";
import { ensurePrisma6, prisma6Schema, REPO_MIGRATIONS, REPO_SCHEMA, runPrisma6, type PrismaRun } from "./support/prismaMigrate";
import { createScratchDatabase } from "./support/testDatabase";

let url: string;
let dropDatabase: () => Promise<void>;
let work: string;
beforeAll(async () => {
  await ensurePrisma6();
  // The differ needs a server connection: it replays the migrations on a shadow database it
  // creates (and drops) on the same server.
  const scratch = await createScratchDatabase();
  url = scratch.url;
  dropDatabase = scratch.drop;
  work = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-drift-"));
}, 600_000);
afterAll(async () => {
  await dropDatabase?.();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** `schema.prisma` with `edit` applied, as a file Prisma 6 reads. */
function editedSchema(name: string, edit: (text: string) => string): string {
  const original = fs.readFileSync(REPO_SCHEMA, "utf8");
  const edited = edit(original);
  expect(edited).not.toBe(original); // the edit really changed something
  const source = path.join(work, `${name}.source.prisma`);
  fs.writeFileSync(source, edited);
  return prisma6Schema(source, work, `${name}.prisma`);
}

function diffMigrationsTo(schemaFile: string): Promise<PrismaRun> {
  return runPrisma6(["migrate", "diff", "--from-migrations", REPO_MIGRATIONS, "--to-schema-datamodel", schemaFile, "--exit-code"], {
    databaseUrl: url,
  });
}

test("replaying prisma/migrations gives exactly the schema of prisma/schema.prisma", async () => {
  const result = await diffMigrationsTo(prisma6Schema(REPO_SCHEMA, work, "repo.prisma"));
  expect({ code: result.code, stdout: result.stdout.trim(), stderr: result.stderr.includes("Error") ? result.stderr : "" }).toEqual({
    code: 0,
    stdout: "No difference detected.",
    stderr: "",
  });
});

test("the database our migrate() builds, introspected by Prisma, has exactly the schema of prisma/schema.prisma", async () => {
  const scratch = await createScratchDatabase();
  try {
    const db = await openDatabase({ url: scratch.url });
    try {
      await migrate(db);
    } finally {
      await db.close();
    }
    // Introspect from a schema with no models, so nothing of schema.prisma guides it.
    const bare = path.join(work, "bare.source.prisma");
    fs.writeFileSync(bare, 'datasource db {\n  provider = "postgresql"\n}\n');
    const pull = await runPrisma6(["db", "pull", "--print"], { databaseUrl: scratch.url, schema: bare });
    expect(pull.code).toBe(0);
    expect(pull.stdout).toContain("model ps_model_usage {");
    const introspected = path.join(work, "introspected.source.prisma");
    // --print puts Prisma's driver-adapter warning before the schema on stdout.
    fs.writeFileSync(introspected, pull.stdout.slice(pull.stdout.indexOf("datasource db {")));
    const from = prisma6Schema(introspected, work, "introspected.prisma");
    const to = prisma6Schema(REPO_SCHEMA, work, "repo.prisma");

    const diff = await runPrisma6(["migrate", "diff", "--from-schema-datamodel", from, "--to-schema-datamodel", to, "--exit-code"], {
      databaseUrl: scratch.url,
    });
    expect({ code: diff.code, stdout: diff.stdout.trim() }).toEqual({ code: 0, stdout: "No difference detected." });

    // The same comparison notices a schema that differs from this database.
    const changed = editedSchema("introspected-vs-changed", (s) => s.replace('@db.VarChar(255)\n  configuration  Json', '@db.VarChar(200)\n  configuration  Json'));
    const changedDiff = await runPrisma6(
      ["migrate", "diff", "--from-schema-datamodel", from, "--to-schema-datamodel", changed, "--exit-code"],
      { databaseUrl: scratch.url },
    );
    expect(changedDiff.code).toBe(2);
    expect(changedDiff.stdout).toMatch(/Changed the `ps_ai_models` table\s+\[\*\] Altered column `name`/);
  } finally {
    await scratch.drop();
  }
});

describe("the check fails when schema.prisma and the migrations disagree", () => {
  test("a changed column default", async () => {
    const schema = editedSchema("default", (s) =>
      s.replace('@default(0) @map("token_out_audio_count")', '@default(1) @map("token_out_audio_count")'),
    );
    const result = await diffMigrationsTo(schema);
    expect(result.code).toBe(2);
    expect(result.stdout).toMatch(/Altered column `token_out_audio_count` \(default changed/);
  });

  test("a changed ON DELETE rule", async () => {
    const schema = editedSchema("on-delete", (s) =>
      s.replace(
        "model                               PsAiModel         @relation(fields: [modelId], references: [id], onDelete: Restrict",
        "model                               PsAiModel         @relation(fields: [modelId], references: [id], onDelete: Cascade",
      ),
    );
    const result = await diffMigrationsTo(schema);
    expect(result.code).toBe(2);
    // The foreign key has to be dropped and created again with the other rule.
    expect(result.stdout).toMatch(/Changed the `ps_model_usage` table\s+\[-\] Removed foreign key on columns \(model_id\)\s+\[\+\] Added foreign key on columns \(model_id\)/);
  });

  test("a missing index", async () => {
    const schema = editedSchema("index", (s) => s.replace('  @@index([connectorId], map: "ps_model_usage_connector_id")\n', ""));
    const result = await diffMigrationsTo(schema);
    expect(result.code).toBe(2);
    expect(result.stdout).toMatch(/Changed the `ps_model_usage` table\s+\[-\] Removed index on columns \(connector_id\)/);
  });
});
