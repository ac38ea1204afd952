/**
 * Every error this package throws is a {@link PsUsageError}; subclasses carry a stable `code`
 * so callers can branch without parsing messages.
 */
export class PsUsageError extends Error {
  /** A stable, machine-readable code, e.g. `PS_USAGE_VALIDATION`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem with one field of an input. `index` is the item's position in a batch. */
export interface FieldIssue {
  readonly field: string;
  readonly reason: string;
  readonly index?: number;
}

/** The input was rejected before anything was written; `issues` lists every bad field. */
export class UsageValidationError extends PsUsageError {
  readonly issues: readonly FieldIssue[];
  constructor(issues: readonly FieldIssue[]) {
    const shown = issues
      .slice(0, 10)
      .map((i) => `${i.index === undefined ? "" : `[${i.index}].`}${i.field}: ${i.reason}`)
      .join("; ");
    const more = issues.length > 10 ? `; and ${issues.length - 10} more` : "";
    super("PS_USAGE_VALIDATION", `Invalid usage input: ${shown}${more}`);
    this.issues = issues;
  }
}

/** A referenced agent, connector, model or external API does not exist; nothing was written. */
export class UnknownReferenceError extends PsUsageError {
  readonly table: string;
  readonly id: number | null;
  constructor(table: string, id: number | null, options?: { cause?: unknown }) {
    super(
      "PS_USAGE_UNKNOWN_REFERENCE",
      id === null ? `A referenced row in ${table} does not exist` : `No row with id ${id} in ${table}`,
      options,
    );
    this.table = table;
    this.id = id;
  }
}

/**
 * The database could not be opened, or the connection was lost during a call (`lost`). `target`
 * names the database (password hidden). A lost call wrote nothing; the same `Database` reconnects
 * on its next call once the server is back.
 */
export class DatabaseConnectionError extends PsUsageError {
  readonly target: string;
  /** True when an open database stopped answering during a call; false when opening failed. */
  readonly lost: boolean;
  constructor(target: string, reason: string, options?: { cause?: unknown; lost?: boolean }) {
    super(
      "PS_USAGE_CONNECTION",
      options?.lost ? `Lost the connection to database ${target}: ${reason}` : `Cannot open database ${target}: ${reason}`,
      options,
    );
    this.target = target;
    this.lost = options?.lost === true;
  }
}

/** The migrator refused to run, or a migration failed; the database was left as it was. */
export class MigrationError extends PsUsageError {
  readonly migration?: string;
  constructor(message: string, migration?: string, options?: { cause?: unknown }) {
    super("PS_USAGE_MIGRATION", message, options);
    this.migration = migration;
  }
}

/**
 * A line of streamed input (NDJSON) was rejected. Nothing from that line's batch was written;
 * `recordedLines` lines before the batch were recorded.
 */
export class InputLineError extends PsUsageError {
  /** 1-based line number of the bad line. */
  readonly line: number;
  /** Lines recorded before the failed batch (they stay recorded). */
  readonly recordedLines: number;
  constructor(line: number, reason: string, recordedLines: number, options?: { cause?: unknown }) {
    super(
      "PS_USAGE_INPUT_LINE",
      `line ${line}: ${reason} (nothing from this line's batch was written; ${recordedLines} line(s) before it were recorded)`,
      options,
    );
    this.line = line;
    this.recordedLines = recordedLines;
  }
}

/**
 * A call gave up waiting on PostgreSQL: for a connection (`phase: "connect"`, the pool was busy or
 * the server did not accept one within `connectTimeoutMs`; on PGlite, another transaction of the
 * process held the database longer than `writeTimeoutMs`: nothing was written), for a statement the server cancelled
 * after `writeTimeoutMs` / `reportTimeoutMs`, or for a record's transaction that ran past its
 * limit and was rolled back (`"statement"`: it wrote nothing), or for a server that
 * stopped answering altogether (`"response"`: the connection is dropped; a write may or may not have
 * been committed, so retry it with an idempotency key), or for a table lock another transaction
 * held longer than `lockTimeoutMs` (`"lock"`: nothing changed). The same `Database` keeps working.
 */
export class DatabaseTimeoutError extends PsUsageError {
  readonly target: string;
  readonly phase: "connect" | "statement" | "response" | "lock";
  constructor(target: string, phase: "connect" | "statement" | "response" | "lock", detail: string, options?: { cause?: unknown }) {
    const what =
      phase === "connect"
        ? "No connection to database"
        : phase === "statement"
          ? "A statement ran too long on database"
          : phase === "lock"
            ? "No table lock on database"
            : "No answer from database";
    super("PS_USAGE_TIMEOUT", `${what} ${target} in time: ${detail}`, options);
    this.target = target;
    this.phase = phase;
  }
}

/**
 * The database has not been migrated (the package's tables, or some of their columns, are
 * missing): run `ps-usage migrate`, or open it with `openDatabase({ migrate: true })`, or call
 * `migrate(db)`. Nothing was written.
 */
export class DatabaseNotMigratedError extends PsUsageError {
  /** The database, as in {@link DatabaseConnectionError}. */
  readonly target: string;
  constructor(target: string, missing: string, options?: { cause?: unknown }) {
    super(
      "PS_USAGE_NOT_MIGRATED",
      `Database ${target} is not migrated (${missing}): run \`ps-usage migrate\`, or open it with openDatabase({ migrate: true }), or call migrate(db) ` +
        `(a database PolicySynth created is taken over with \`ps-usage adopt\` or adopt(db) instead)`,
      options,
    );
    this.target = target;
  }
}

/**
 * A record call made with `{ enforceBudgets: true }` was refused: the event would take a budget
 * with a hard limit past its amount (`reason: "limit"`), or the guard cannot price it in the
 * budget's currency (`"unpriced"`: no price period in force at its time; `"currency"`: priced in
 * another currency). Nothing was written.
 */
export class BudgetExceededError extends PsUsageError {
  readonly budgetId: number;
  readonly budgetName: string;
  readonly reason: "limit" | "unpriced" | "currency";
  /** The budget's amount and currency. */
  readonly amount: string;
  readonly currency: string;
  /** What the period's spending would have been with the event (`reason: "limit"`), else what it is. */
  readonly spent: string;
  constructor(budget: { id: number; name: string; amount: string; currency: string }, reason: BudgetExceededError["reason"], spent: string) {
    const why =
      reason === "limit"
        ? `it would bring the period's spending to ${spent} ${budget.currency}, over the limit of ${budget.amount}`
        : reason === "unpriced"
          ? "the event has no price in force at its time, so the guard cannot count it"
          : `the event is priced in another currency than the budget's ${budget.currency}`;
    super("PS_USAGE_BUDGET_EXCEEDED", `Refused by budget "${budget.name}" (id ${budget.id}): ${why}. Nothing was written.`);
    this.budgetId = budget.id;
    this.budgetName = budget.name;
    this.reason = reason;
    this.amount = budget.amount;
    this.currency = budget.currency;
    this.spent = spent;
  }
}
