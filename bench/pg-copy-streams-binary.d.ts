// pg-copy-streams-binary ships no types: the part of its API the benchmark uses.
declare module "pg-copy-streams-binary" {
  import type { Transform } from "node:stream";
  /** One field of a row: its PostgreSQL type name and value (null: SQL NULL). */
  export interface BinaryField {
    readonly type: "int4" | "timestamptz" | "int8" | "text" | "bool" | "float8" | "json" | "jsonb";
    readonly value: unknown;
  }
  /** An object-mode Transform from rows (arrays of fields) to the COPY binary format. */
  export function rowWriter(options?: { COPY_sendHeader?: boolean; COPY_sendTrailer?: boolean }): Transform;
}
