// Serves one PGlite database to several PostgreSQL wire-protocol clients (Prisma Studio's
// connection pool, a second browser tab, psql) as if each had a session of its own.
//
// PGlite is a single session. @electric-sql/pglite-socket forwards every client's messages into
// it one message at a time, so two clients' extended-protocol sequences interleave (client B's
// Parse replaces client A's unnamed statement between A's Parse and Bind), their named
// statements collide ("prepared statement already exists" / "does not exist" after a page
// reload) and an error in one client's sequence makes PGlite skip the other's messages until
// Sync. This server instead:
//   - gives each client the session for a whole turn: from its first message up to the Sync (or
//     simple Query) that leaves no transaction open. A client inside a transaction keeps the
//     session until it commits or rolls back; the others wait their turn;
//   - prefixes the names of each client's prepared statements and portals with its own id, so
//     the same name on two connections is two statements;
//   - when a client goes away, ends what it left (Sync, ROLLBACK of its open transaction) and
//     deallocates its statements, so a reload starts clean.
// Session settings (SET) are still shared by all clients: PGlite has only one session.
import net from "node:net";
import type { PGlite } from "@electric-sql/pglite";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

/** A running server; `url` is what a client connects to. */
export interface PgliteServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Runs `fn` when the previous holder released the session (first come, first served). */
class SessionTurns {
  private tail: Promise<void> = Promise.resolve();
  acquire(): Promise<() => void> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const turn = this.tail.then(() => release);
    this.tail = this.tail.then(() => released);
    return turn;
  }
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

const cstring = (s: string) => Buffer.from(`${s}\0`, "utf8");

/** The C string at `offset` and the offset after its terminator. */
function readCString(buf: Buffer, offset: number): [string, number] {
  const end = buf.indexOf(0, offset);
  if (end < 0) throw new Error("malformed message: unterminated string");
  return [buf.toString("utf8", offset, end), end + 1];
}

const SYNC = message("S", Buffer.alloc(0));

/**
 * Serves `pglite` on `host` (default 127.0.0.1) and `port` (default: a free one). The caller
 * keeps owning `pglite`: stop the server before closing it.
 */
export async function servePglite(pglite: PGlite, options: { host?: string; port?: number } = {}): Promise<PgliteServer> {
  await pglite.waitReady;
  const turns = new SessionTurns();
  const version = ((await pglite.query<{ server_version: string }>("SHOW server_version")).rows[0]?.server_version ?? "17").toString();
  const sockets = new Set<net.Socket>();
  const cleanUps = new Set<Promise<void>>();
  let nextClient = 1;

  const startupReply = (clientId: number) => {
    const params: [string, string][] = [
      ["server_version", version],
      ["server_encoding", "UTF8"],
      ["client_encoding", "UTF8"],
      ["DateStyle", "ISO, MDY"],
      ["TimeZone", "UTC"],
      ["integer_datetimes", "on"],
      ["standard_conforming_strings", "on"],
      ["application_name", ""],
    ];
    return Buffer.concat([
      message("R", int32(0)), // AuthenticationOk
      ...params.map(([k, v]) => message("S", Buffer.concat([cstring(k), cstring(v)]))),
      message("K", Buffer.concat([int32(clientId), int32(Math.floor(Math.random() * 0x7fffffff))])), // BackendKeyData
      message("Z", Buffer.from("I")), // ReadyForQuery, idle
    ]);
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    const clientId = nextClient++;
    const prefix = (name: string) => (name === "" ? "" : `c${clientId}_${name}`);
    const statements = new Set<string>();
    let started = false;
    let closed = false;
    let release: (() => void) | undefined;
    let pending = Buffer.alloc(0);
    let work: Promise<void> = Promise.resolve();

    /** The client's message with its statement and portal names made its own. */
    const rewrite = (msg: Buffer): Buffer => {
      const type = String.fromCharCode(msg[0]);
      const body = msg.subarray(5);
      switch (type) {
        case "P": {
          const [name, at] = readCString(body, 0);
          if (name !== "") statements.add(prefix(name));
          return message("P", Buffer.concat([cstring(prefix(name)), body.subarray(at)]));
        }
        case "B": {
          const [portal, at1] = readCString(body, 0);
          const [statement, at2] = readCString(body, at1);
          return message("B", Buffer.concat([cstring(prefix(portal)), cstring(prefix(statement)), body.subarray(at2)]));
        }
        case "E": {
          const [portal, at] = readCString(body, 0);
          return message("E", Buffer.concat([cstring(prefix(portal)), body.subarray(at)]));
        }
        case "D":
        case "C": {
          const [name] = readCString(body, 1);
          if (type === "C" && body[0] === "S".charCodeAt(0)) statements.delete(prefix(name));
          return message(type, Buffer.concat([body.subarray(0, 1), cstring(prefix(name))]));
        }
        default:
          return msg;
      }
    };

    const run = (msg: Buffer) =>
      pglite.runExclusive(() =>
        pglite.execProtocolRawStream(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), {
          onRawData: (data) => {
            if (!closed && socket.writable) socket.write(data);
          },
        }),
      );

    const handle = async (msg: Buffer) => {
      if (closed) return;
      const type = String.fromCharCode(msg[0]);
      if (type === "X") {
        socket.end();
        return;
      }
      if (!release) release = await turns.acquire();
      if (closed) return;
      await run(rewrite(msg));
      // A turn ends where the client is idle again: after Sync or a simple Query, outside any
      // transaction (a failed transaction counts as open until the client rolls it back).
      if ((type === "S" || type === "Q") && !pglite.isInTransaction()) {
        release();
        release = undefined;
      }
    };

    /** Ends what the client left behind and hands the session on. */
    const cleanUp = async () => {
      const hadTurn = release !== undefined;
      if (!hadTurn && statements.size === 0) return;
      if (!release) release = await turns.acquire();
      try {
        if (hadTurn) {
          // Leaves an unfinished extended-protocol sequence, then its open transaction.
          await pglite.runExclusive(() => pglite.execProtocolRaw(new Uint8Array(SYNC)));
          if (pglite.isInTransaction()) await pglite.exec("ROLLBACK");
        }
        for (const name of statements) await pglite.exec(`DEALLOCATE "${name.replace(/"/g, '""')}"`).catch(() => undefined);
      } catch {
        // The database was closed under us: nothing left to clean.
      } finally {
        release();
        release = undefined;
      }
    };

    const fail = () => {
      if (!closed) socket.destroy();
    };

    socket.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (!started) {
          // Startup-phase messages have no type byte: length, then a request code.
          if (pending.length < 8) return;
          const length = pending.readInt32BE(0);
          if (pending.length < length) return;
          const code = pending.readInt32BE(4);
          pending = pending.subarray(length);
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
            socket.write("N"); // no encryption on a local socket; the client goes on in plain text
          } else if (code === CANCEL_REQUEST) {
            socket.end(); // no backend to signal: a query runs to its end
            return;
          } else if (code === PROTOCOL_3) {
            started = true;
            socket.write(startupReply(clientId));
          } else {
            socket.destroy();
            return;
          }
          continue;
        }
        if (pending.length < 5) return;
        const length = 1 + pending.readInt32BE(1);
        if (pending.length < length) return;
        const msg = Buffer.from(pending.subarray(0, length));
        pending = pending.subarray(length);
        work = work.then(() => handle(msg)).catch(fail);
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      sockets.delete(socket);
      closed = true;
      const done = work.then(cleanUp, cleanUp).catch(() => undefined);
      cleanUps.add(done);
      void done.then(() => cleanUps.delete(done));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  const host = options.host ?? "127.0.0.1";
  return {
    url: `postgresql://postgres@${host}:${port}/postgres?sslmode=disable`,
    port,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // Each client's clean-up (rollback, deallocate) is done before the caller closes PGlite.
      await Promise.allSettled([...cleanUps]);
    },
  };
}
