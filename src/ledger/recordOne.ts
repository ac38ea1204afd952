/**
 * One usage event recorded (recordModelUsage, recordExternalApiUsage): one statement on the
 * driver when there is nothing to check in a transaction, else Prisma's create after the reference
 * check, with the budget guard when guarded; once per idempotency key; threshold checks after.
 */
import type { Database } from "../db";
import type { Prisma } from "../generated/prisma/client";
import type { BudgetAlert } from "../budgets/alerts";
import { afterRecord, guardEvent, type BudgetEvent } from "../budgets/guard";
import type { OwnedReferences, Owner } from "../scope/ownership";
import type { RecordOptions } from "../types";
import { eventTimes, recordOnce, singleReferenceError, translateDatabaseError } from "../usageShared";
import { planReferenceCheck, writeChecked, type References, type UsageTable } from "./references";
import { readStoredKey, recordSingle, type SingleInsertStatements } from "./singleInsert";

/** What differs between the usage tables in recording one event. */
export interface SingleRecordSpec<Row, R extends { readonly userId: number }> {
  readonly table: UsageTable;
  readonly references: References;
  /** Names the table in an idempotency key error: "model usage". */
  readonly tableLabel: string;
  readonly statements: SingleInsertStatements;
  toRecord(row: Row): R;
  budgetEvent(record: R): BudgetEvent;
}

/** One event, checked already: its columns for Prisma (`data`) and for the single statement (`values`). */
export interface SingleRecordWrite<R> {
  readonly input: OwnedReferences & { readonly userId: number; readonly createdAt?: Date };
  /** The values of the spec's single statement, in its column order (taken when it runs: `now` for a row without createdAt). */
  values(): readonly unknown[];
  /** Prisma's create of the row with `data` (the columns, timestamps and key row) on `client`. */
  create(client: Prisma.TransactionClient, data: Record<string, unknown>): Promise<R>;
  /** More rows written in the same transaction, after the usage row (a usage item). */
  readonly alsoWrite?: (client: Prisma.TransactionClient, row: R) => Promise<void>;
}

/** Records `write` (see the module comment) and returns its row as the package's record. */
export async function recordOne<Row, R extends { readonly userId: number }>(
  db: Database,
  spec: SingleRecordSpec<Row, R>,
  write: SingleRecordWrite<R>,
  options: RecordOptions | undefined,
  owner: Owner,
): Promise<R> {
  const { input, alsoWrite } = write;
  const key = options?.idempotencyKey;
  const enforce = options?.enforceBudgets === true;
  // Alerts the guard raised in the transaction, delivered after the commit.
  let fired: BudgetAlert[] | undefined;
  try {
    // Nothing to check in a transaction and nothing more to write: one statement on the driver
    // (see ledger/singleInsert). A guarded record needs the guard in the insert's transaction: not this path.
    if (alsoWrite === undefined && !enforce && (await planReferenceCheck(db, spec.table, spec.references, [input], owner)) === null) {
      const keyed = key === undefined ? undefined : { key, userId: input.userId, tableLabel: spec.tableLabel };
      const row = await recordSingle(db, spec.statements, write.values(), (r: Row) => spec.toRecord(r), keyed);
      await afterRecord(db, [spec.budgetEvent(row)]);
      return row;
    }
    // The insert (after the reference check where one is needed; in a transaction with the budget
    // guard when guarded), both timestamps set at the write (see eventTimes); with a key, the key
    // row in the same statement.
    const create = async (key?: string) =>
      writeChecked(
        db,
        spec.table,
        spec.references,
        input,
        owner,
        async (client) => {
          const row = await write.create(client, {
            ...eventTimes(input.createdAt),
            ...(key === undefined ? {} : { idempotencyKey: { create: { key, userId: input.userId } } }),
          });
          if (alsoWrite) await alsoWrite(client, row);
          if (enforce) fired = await guardEvent(db, client, spec.budgetEvent(row));
          return row;
        },
        alsoWrite !== undefined || enforce,
      );
    const row =
      key === undefined
        ? await create()
        : await recordOnce(key, input.userId, spec.tableLabel, () => create(key), () => readStoredKey(db, spec.statements, key, (r: Row) => spec.toRecord(r)));
    await afterRecord(db, [spec.budgetEvent(row)], fired);
    return row;
  } catch (err) {
    throw await translateDatabaseError(db, err, singleReferenceError(input, spec.references));
  }
}
