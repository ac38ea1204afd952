/**
 * Named statements on PGlite, parsed and planned once per PGlite session, as the PostgreSQL path
 * keeps them prepared on each connection. PGlite's `query` sends its statement unnamed and in six
 * protocol messages (parse, describe, bind, describe, execute, sync), each a call into the WASM
 * backend, which parses and plans it every time: about half of a single record's time
 * (bench/RESULTS.md, single records on PGlite). Here a statement is parsed and described once;
 * each call is then one message of Bind, Execute and Sync.
 */
import { parse, protocol, type PGlite } from "@electric-sql/pglite";

type BackendMessages = Parameters<typeof parse.parseResults>[0];

/** What Parse and Describe told of a prepared statement. */
interface Prepared {
  readonly text: string;
  readonly paramTypes: readonly number[];
  /** The RowDescription, for the results of each call (the same for every Bind of the statement). */
  readonly description: BackendMessages;
}

/** Runs `text` as the statement `name`, prepared on first use; outside any transaction only (see the retry below). */
export type PreparedQuery = <T>(name: string, text: string, values: readonly unknown[]) => Promise<T[]>;

const { serialize } = protocol;

/** SQLSTATE of a Bind to a statement that is not there (a DISCARD ALL or DEALLOCATE ALL by another user of the session). */
const NO_SUCH_STATEMENT = "26000";
/** SQLSTATE 0A000 with this message: a migration changed the type of a column the statement returns. */
const RESULT_TYPE_CHANGED = /cached plan must not change result type/;

/**
 * The prepared-statement runner of `pglite`. Each call takes PGlite's transaction and query locks
 * as its own `query` does, so it never runs inside another caller's transaction. The caller runs
 * it only while no transaction is open or pending: a statement that vanished from the session (or
 * whose result type a migration changed) fails before it runs, and outside a transaction it can
 * be prepared again and retried, which inside one would find the transaction aborted.
 */
export function pglitePreparedStatements(pglite: PGlite): PreparedQuery {
  const prepared = new Map<string, Prepared>();

  // execProtocolStream, as PGlite's own query uses: plain execProtocol keeps the output callback an
  // earlier raw stream left behind (the served socket's: db/pgliteServer), sending the answers there.
  const send = (messages: readonly Uint8Array[]) => pglite.execProtocolStream(concat(messages), { syncToFs: false });

  async function prepare(name: string, text: string): Promise<Prepared> {
    // Close first: the name may be held by a statement of an earlier text (closing none is no error).
    const messages = await send([serialize.close({ type: "S", name }), serialize.parse({ name, text }), serialize.describe({ type: "S", name }), serialize.sync()]);
    const statement: Prepared = {
      text,
      paramTypes: parse.parseDescribeStatementResults(messages),
      description: messages.filter((m) => m.name === "rowDescription"),
    };
    prepared.set(name, statement);
    return statement;
  }

  async function run<T>(name: string, text: string, values: readonly unknown[]): Promise<T[]> {
    let statement = prepared.get(name);
    if (statement?.text !== text) statement = await prepare(name, text);
    const bound = values.map((value, i): string | null => {
      if (value === null || value === undefined) return null;
      const serializer = pglite.serializers[statement.paramTypes[i]];
      return serializer ? serializer(value) : String(value);
    });
    const messages = await send([serialize.bind({ statement: name, values: bound }), serialize.execute({}), serialize.sync()]);
    return parse.parseResults([...statement.description, ...messages], pglite.parsers)[0].rows as T[];
  }

  return async <T>(name: string, text: string, values: readonly unknown[]): Promise<T[]> => {
    await pglite._checkReady();
    return pglite._runExclusiveTransaction(() =>
      pglite.runExclusive(async () => {
        let rows: T[];
        try {
          rows = await run<T>(name, text, values);
        } catch (err) {
          // Inside a transaction (a served client's BEGIN leaves one open between its messages) the
          // failure aborted it: nothing to retry in.
          if (!stale(err) || pglite.isInTransaction()) throw err;
          prepared.delete(name);
          rows = await run<T>(name, text, values);
        }
        await pglite.syncToFs();
        return rows;
      }),
    );
  };
}

/** A Bind or Execute that failed because the prepared statement is gone or out of date (nothing ran). */
function stale(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return code === NO_SUCH_STATEMENT || (code === "0A000" && typeof message === "string" && RESULT_TYPE_CHANGED.test(message));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
