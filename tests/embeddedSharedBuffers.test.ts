// openDatabase's embeddedSharedBuffersMb: PGlite's buffer cache, which PGlite touches in full
// when it opens (128 MB of its resident memory by default). The CLI's NDJSON import opens with a
// small one (IMPORT_EMBEDDED_SHARED_BUFFERS_MB). A bad value is a typed error naming the field,
// and nothing is opened.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { IMPORT_EMBEDDED_SHARED_BUFFERS_MB, UsageValidationError, openDatabase } from "../src";

let dir: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ps-usage-shared-buffers-"));
  const db = await openDatabase({ dataDir: path.join(dir, "db"), migrate: true });
  await db.close();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function sharedBuffers(options: { embeddedSharedBuffersMb?: number }): Promise<string> {
  const db = await openDatabase({ dataDir: path.join(dir, "db"), ...options });
  try {
    const [row] = await db.prisma.$queryRawUnsafe<{ shared_buffers: string }[]>("SHOW shared_buffers");
    return row.shared_buffers;
  } finally {
    await db.close();
  }
}

test("the embedded buffer cache is PGlite's own by default and the given size when asked", async () => {
  expect(await sharedBuffers({})).toBe("128MB");
  expect(await sharedBuffers({ embeddedSharedBuffersMb: IMPORT_EMBEDDED_SHARED_BUFFERS_MB })).toBe(`${IMPORT_EMBEDDED_SHARED_BUFFERS_MB}MB`);
  expect(await sharedBuffers({ embeddedSharedBuffersMb: 40 })).toBe("40MB");
});

test.each([0, -1, 1.5, 2048, Number.NaN, "16" as unknown as number])("embeddedSharedBuffersMb %p is a typed error naming the field; nothing is opened", async (value) => {
  const target = path.join(dir, "not-created");
  const error = await openDatabase({ dataDir: target, embeddedSharedBuffersMb: value }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(UsageValidationError);
  expect((error as UsageValidationError).issues).toEqual([expect.objectContaining({ field: "embeddedSharedBuffersMb" })]);
  expect(fs.existsSync(target)).toBe(false);
});
