/**
 * A view of the usage tables confined to one user: every write records for that user only, and
 * every read adds `user_id = userId` whatever filter it is given.
 */
import { agentTreeCostReport, costReport, type AgentTreeCostReport, type AgentTreeCostReportOptions, type CostReport, type CostReportOptions } from "./costs";
import type { Database } from "./db";
import { listBudgetsAs, removeBudgetAs, setBudgetAs, type Budget, type BudgetInput, type BudgetScope } from "./budgets/define";
import { budgetStatusAs, type BudgetSelector, type BudgetStatus, type BudgetStatusOptions } from "./budgets/status";
import { UsageValidationError, type FieldIssue } from "./errors";
import { findExternalApiUsageAs, recordExternalApiUsageAs, recordExternalApiUsageBatchAs } from "./externalApiUsage";
import { findModelUsageAs, recordModelCallAs, recordModelUsageAs, recordModelUsageBatchAs } from "./modelUsage";
import {
  sumAgentTreeUsage,
  sumExternalApiUsage,
  sumModelUsage,
  type AgentTreeUsage,
  type AgentTreeUsageOptions,
  type ExternalApiUsageSumOptions,
  type ExternalApiUsageSumRow,
  type ModelUsageSumOptions,
  type ModelUsageSumRow,
} from "./sums";
import type {
  BatchRecordOptions,
  BatchRecordResult,
  ExternalApiUsageFilter,
  ExternalApiUsageGroupBy,
  ExternalApiUsageInput,
  ExternalApiUsagePageOptions,
  ExternalApiUsageRecord,
  FoundExternalApiUsage,
  FoundModelUsage,
  ModelCallInput,
  ModelCallOptions,
  ModelUsageFilter,
  ModelUsageGroupBy,
  ModelUsageInput,
  ModelUsagePageOptions,
  ModelUsageRecord,
  RecordOptions,
  TimeBucket,
  UsagePage,
} from "./types";
import { EXTERNAL_API_USAGE_INPUT, MODEL_CALL_INPUT, MODEL_USAGE_INPUT, checkInput, copyInput, idProblem } from "./validation";

/** An input whose `userId` may be left out: the scope fills it in. */
export type Scoped<T extends { readonly userId: number }> = Omit<T, "userId"> & { readonly userId?: number };

/** The record and find functions of this package, confined to one user. */
export interface UserUsageScope {
  /** The user every read and write is confined to. */
  readonly userId: number;
  recordModelUsage(input: Scoped<ModelUsageInput>, options?: RecordOptions): Promise<ModelUsageRecord>;
  recordModelUsageBatch(inputs: readonly Scoped<ModelUsageInput>[], options?: BatchRecordOptions): Promise<BatchRecordResult>;
  recordModelCall(call: Scoped<ModelCallInput>, options?: ModelCallOptions): Promise<ModelUsageRecord>;
  recordExternalApiUsage(input: Scoped<ExternalApiUsageInput>, options?: RecordOptions): Promise<ExternalApiUsageRecord>;
  recordExternalApiUsageBatch(inputs: readonly Scoped<ExternalApiUsageInput>[], options?: BatchRecordOptions): Promise<BatchRecordResult>;
  findModelUsage(filter?: ModelUsageFilter, page?: ModelUsagePageOptions): Promise<UsagePage<FoundModelUsage>>;
  findExternalApiUsage(filter?: ExternalApiUsageFilter, page?: ExternalApiUsagePageOptions): Promise<UsagePage<FoundExternalApiUsage>>;
  sumModelUsage<G extends ModelUsageGroupBy = never, B extends TimeBucket | undefined = undefined>(
    options?: ModelUsageSumOptions<G, B>,
  ): Promise<ModelUsageSumRow<G, B>[]>;
  sumExternalApiUsage<G extends ExternalApiUsageGroupBy = never, B extends TimeBucket | undefined = undefined>(
    options?: ExternalApiUsageSumOptions<G, B>,
  ): Promise<ExternalApiUsageSumRow<G, B>[]>;
  /** The tree's usage by this user only (the tree itself may hold other users' agents). */
  sumAgentTreeUsage(agentId: number, options?: AgentTreeUsageOptions): Promise<AgentTreeUsage>;
  /** This user's costs. */
  costReport(options?: CostReportOptions): Promise<CostReport>;
  /** This user's costs in an agent's tree. */
  agentTreeCostReport(agentId: number, options?: AgentTreeCostReportOptions): Promise<AgentTreeCostReport>;
  /** A budget of this user's usage (`scope.userId` is filled in; another user's is refused). */
  setBudget(input: Omit<BudgetInput, "scope"> & { readonly scope?: BudgetScope }): Promise<Budget>;
  /** This user's budgets only. */
  listBudgets(): Promise<Budget[]>;
  /** Removes one of this user's budgets; false when this user has none of that name. */
  removeBudget(name: string): Promise<boolean>;
  /** The status of one of this user's budgets (another user's is unknown here). */
  budgetStatus(budget: string | BudgetSelector, options?: BudgetStatusOptions): Promise<BudgetStatus>;
}

type Shape = typeof MODEL_USAGE_INPUT;

/**
 * One input with the scope's user, copied by the package's one reading rule ({@link copyInput}:
 * inherited fields and getters count, as in the plain functions): `userId` left out is filled
 * in, the scope's own id is kept, any other value is an issue on `userId`. Non-objects pass
 * through for the normal checks.
 */
function scopeInput<T>(userId: number, input: unknown, shape: Shape, issues: FieldIssue[], index?: number): T {
  const copy = copyInput(input, shape);
  if (typeof copy !== "object" || copy === null) return copy as T;
  const given = (copy as { userId?: unknown }).userId;
  if (given !== undefined && given !== userId) {
    const reason = `must be ${userId} (this view is confined to user ${userId}), got ${typeof given === "number" ? given : typeof given}`;
    issues.push(index === undefined ? { field: "userId", reason } : { field: "userId", reason, index });
  }
  (copy as { userId?: unknown }).userId = userId;
  return copy as T;
}

/** Throws the scope issues together with every other issue of the same (scoped) inputs. */
function throwScopeIssues(scoped: readonly unknown[], shape: Shape, issues: FieldIssue[], batch: boolean): void {
  if (issues.length === 0) return;
  const all = [...issues];
  scoped.forEach((input, i) => checkInput(input, shape, all, batch ? i : undefined));
  throw new UsageValidationError(all);
}

function scopeFilter<F extends { readonly userId?: number }>(userId: number, filter: F | undefined, name = "filter"): F {
  // Not an object: the find or sum reports it (and no filter can widen the scope).
  if (filter !== undefined && (typeof filter !== "object" || filter === null || Array.isArray(filter))) return filter;
  const given = filter?.userId;
  if (given !== undefined && given !== userId) {
    throw new UsageValidationError([
      { field: `${name}.userId`, reason: `must be ${userId} or left out (this view is confined to user ${userId}), got ${String(given)}` },
    ]);
  }
  return { ...(filter ?? ({} as F)), userId };
}

/** Sum options with `where.userId` confined to the scope (`where` checked like a find filter). */
function scopeSumOptions<O extends { readonly where?: { readonly userId?: number } }>(userId: number, options: O | undefined): O {
  if (options !== undefined && (typeof options !== "object" || options === null || Array.isArray(options))) return options;
  return { ...(options ?? ({} as O)), where: scopeFilter(userId, options?.where, "where") };
}

/** A budget input with the view's user in its scope (a scope naming another user is left for setBudgetAs to refuse). */
function scopeBudget(userId: number, input: BudgetInput): BudgetInput {
  if (typeof input !== "object" || input === null) return input;
  const scope = input.scope;
  if (scope !== undefined && (typeof scope !== "object" || scope === null || Array.isArray(scope))) return input;
  return { ...input, scope: { userId, ...(scope ?? {}) } };
}

/**
 * A view whose every read and write is confined to `userId`. Records fill in `userId` when it
 * is left out and reject any other user's id (a {@link UsageValidationError} on `userId`, with
 * the item's `index` in a batch); finds always add `userId` to the filter, and a filter naming
 * another user is rejected (a {@link UsageValidationError} on `filter.userId`) rather than
 * silently returning nothing. An idempotency key already used by another user (for a single
 * record or a batch) is rejected too, never reported as a replay.
 *
 * What belongs to the user: agents and connectors whose `user_id` is the view's. Recording with
 * another user's agent or connector is a {@link UsageValidationError} on `agentId` /
 * `connectorId` (with `index` in a batch), checked in the insert's transaction with the rows
 * locked; `page.include` gives `null` for another user's agent or connector (the id stays in
 * `agentId` / `connectorId`). Models and external APIs are a shared catalogue (PolicySynth's
 * admins configure them for every user's agents): any of them may be recorded with, and
 * `include` always returns them, whatever their `user_id` or `organization_id`.
 *
 * Inputs are read as the plain functions read them: a field is `input[field]`, own, inherited
 * or a getter, so the same input records the same row through the view and without it.
 *
 * The sums (`sumModelUsage`, `sumExternalApiUsage`, `sumAgentTreeUsage`) and the cost reports
 * (`costReport`, `agentTreeCostReport`) take the same options
 * as the package's functions; their `where.userId` is confined the same way (another user's id
 * is a {@link UsageValidationError} on `where.userId`).
 *
 * @example
 * const alice = forUser(db, 42);
 * await alice.recordModelUsage({ modelId: 3, tokenInCount: 100 });       // recorded for user 42
 * await alice.recordModelUsage({ userId: 7, modelId: 3 });               // UsageValidationError (userId)
 * const page = await alice.findModelUsage({ agentId: 7 });                // only user 42's rows
 * const [total] = await alice.sumModelUsage();                            // user 42's totals
 */
export function forUser(db: Database, userId: number): UserUsageScope {
  const problem = idProblem(userId);
  if (problem) throw new UsageValidationError([{ field: "userId", reason: problem }]);

  function one<T>(input: unknown, shape: Shape): T {
    const issues: FieldIssue[] = [];
    const scoped = scopeInput<T>(userId, input, shape, issues);
    throwScopeIssues([scoped], shape, issues, false);
    return scoped;
  }
  function many<T>(inputs: unknown, shape: Shape): T[] {
    // Not an array: the batch function reports it.
    if (!Array.isArray(inputs)) return inputs as T[];
    const issues: FieldIssue[] = [];
    const scoped = inputs.map((input, i) => scopeInput<T>(userId, input, shape, issues, i));
    throwScopeIssues(scoped, shape, issues, true);
    return scoped;
  }

  return {
    userId,
    // async, so that a rejected input is a rejected promise like every other error.
    recordModelUsage: async (input, options) => recordModelUsageAs(db, one<ModelUsageInput>(input, MODEL_USAGE_INPUT), options, userId),
    recordModelUsageBatch: async (inputs, options) =>
      recordModelUsageBatchAs(db, many<ModelUsageInput>(inputs, MODEL_USAGE_INPUT), options, userId),
    recordModelCall: async (call, options) => recordModelCallAs(db, one<ModelCallInput>(call, MODEL_CALL_INPUT), options, userId),
    recordExternalApiUsage: async (input, options) =>
      recordExternalApiUsageAs(db, one<ExternalApiUsageInput>(input, EXTERNAL_API_USAGE_INPUT), options, userId),
    recordExternalApiUsageBatch: async (inputs, options) =>
      recordExternalApiUsageBatchAs(db, many<ExternalApiUsageInput>(inputs, EXTERNAL_API_USAGE_INPUT), options, userId),
    findModelUsage: async (filter, page) => findModelUsageAs(db, scopeFilter(userId, filter), page, userId),
    findExternalApiUsage: async (filter, page) => findExternalApiUsageAs(db, scopeFilter(userId, filter), page, userId),
    sumModelUsage: async (options) => sumModelUsage(db, scopeSumOptions(userId, options)),
    sumExternalApiUsage: async (options) => sumExternalApiUsage(db, scopeSumOptions(userId, options)),
    sumAgentTreeUsage: async (agentId, options) => sumAgentTreeUsage(db, agentId, scopeSumOptions(userId, options)),
    costReport: async (options) => costReport(db, scopeSumOptions(userId, options)),
    agentTreeCostReport: async (agentId, options) => agentTreeCostReport(db, agentId, scopeSumOptions(userId, options)),
    setBudget: async (input) => setBudgetAs(db, scopeBudget(userId, input), userId),
    listBudgets: async () => listBudgetsAs(db, userId),
    removeBudget: async (name) => removeBudgetAs(db, name, userId),
    budgetStatus: async (budget, options) => budgetStatusAs(db, budget, options, userId),
  };
}
