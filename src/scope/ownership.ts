/**
 * What a `forUser` view may use and see besides its own usage rows. Agents and connectors
 * belong to the user in their `user_id`: a view records only with its own and includes only its
 * own. Models and external APIs are a shared catalogue (PolicySynth's admins configure them,
 * under one user and organization, for every user's agents): any view may record with any of
 * them, and `include` returns them whoever's `user_id` or `organization_id` they carry.
 */
import { UsageValidationError, type FieldIssue } from "../errors";

/** The user a `forUser` view is confined to, or null for the package's unconfined functions. */
export type Owner = number | null;

/** The agent and connector of one input, as the record functions read them. */
export interface OwnedReferences {
  readonly agentId?: number | null;
  readonly connectorId?: number | null;
}

/** True when `items` name any agent or connector, i.e. when there is ownership to check. */
export function namesAgentOrConnector(items: readonly OwnedReferences[]): boolean {
  for (let i = 0; i < items.length; i++) {
    const { agentId, connectorId } = items[i];
    if ((agentId !== undefined && agentId !== null) || (connectorId !== undefined && connectorId !== null)) return true;
  }
  return false;
}

/** The owners (`user_id`) of the agents and connectors a write names, by id, as its transaction read them. */
export interface FoundOwners {
  readonly agents: ReadonlyMap<number, number>;
  readonly connectors: ReadonlyMap<number, number>;
}

/**
 * Refuses the agents and connectors of `items` that belong to another user than `owner`: a
 * {@link UsageValidationError} naming each (`agentId` / `connectorId`, with the item's `index`
 * when `batch`). The owners are read by the write's one reference check
 * (src/ledger/references.ts `checkReferences`), in the insert's transaction, with the rows locked
 * `FOR SHARE`, so an agent cannot change hands between the check and the commit. Ids that do not
 * exist are not this check's business: they are an `UnknownReferenceError`, as without a view.
 */
export function refuseOthersReferences(items: readonly OwnedReferences[], owners: FoundOwners, owner: number, batch: boolean): void {
  const foreign = (id: number | null | undefined, found: ReadonlyMap<number, number>) => {
    if (id === undefined || id === null) return false;
    const user = found.get(id);
    return user !== undefined && user !== owner;
  };
  const reason = `belongs to another user (this view is confined to user ${owner})`;
  const issues: FieldIssue[] = [];
  items.forEach(({ agentId, connectorId }, index) => {
    const at = batch ? { index } : {};
    if (foreign(agentId, owners.agents)) issues.push({ field: "agentId", reason, ...at });
    if (foreign(connectorId, owners.connectors)) issues.push({ field: "connectorId", reason, ...at });
  });
  if (issues.length > 0) throw new UsageValidationError(issues);
}

/** A related agent or connector as a view may see it: its own, else null (the id stays in the usage row). */
export function visibleTo<R extends { readonly userId: number }>(row: R | null | undefined, owner: Owner): R | null {
  if (row === null || row === undefined) return null;
  return owner === null || row.userId === owner ? row : null;
}
