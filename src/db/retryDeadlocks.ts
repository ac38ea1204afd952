/** How many times a write the server chose as a deadlock's victim is run again. */
const DEADLOCK_RETRIES = 5;

/**
 * Whether PostgreSQL aborted the statement or transaction as a deadlock's victim: SQLSTATE 40P01
 * from the driver; Prisma's P2034 ("write conflict or deadlock"), which @prisma/adapter-pg gives
 * for 40P01 and 40001 on model queries; or Prisma's P2010 (a raw query failed) carrying 40P01.
 * Either way the server rolled the whole transaction back.
 */
export function isDeadlockVictim(err: unknown): boolean {
  const e = err as { code?: unknown; meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } } } | null;
  return e?.code === "40P01" || e?.code === "P2034" || (e?.code === "P2010" && e.meta?.driverAdapterError?.cause?.originalCode === "40P01");
}

/**
 * Runs `attempt` again when PostgreSQL aborted it as a deadlock's victim. The rollup triggers
 * upsert several rollup tables in key order within each statement, but a batch of several chunks
 * (or another transaction) takes its locks statement by statement, so it can hold a row that a
 * write waits for while waiting for one that write holds. The server rolls the victim's whole
 * transaction back, so running it again writes it once: nothing is lost or doubled. `attempt`
 * must be the whole transaction.
 */
export async function retryDeadlocks<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isDeadlockVictim(err) || tries > DEADLOCK_RETRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * tries));
    }
  }
}
