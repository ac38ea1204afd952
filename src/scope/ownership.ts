/**
 * What a `forUser` view may use and see besides its own usage rows. Agents and connectors
 * belong to the user in their `user_id`: a view records only with its own and includes only its
 * own. Models and external APIs are a shared catalogue (PolicySynth's admins configure them,
 * under one user and organization, for every user's agents): any view may record with any of
 * them, and `include` returns them whoever's `user_id` or `organization_id` they carry.
 */
import type { Database } from "../db";
import { UsageValidationError, type FieldIssue } from "../errors";
import { Prisma } from "../generated/prisma/client";

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

function distinct(items: readonly OwnedReferences[], field: keyof OwnedReferences): string {
  const ids = new Set<number>();
  for (let i = 0; i < items.length; i++) {
    const id = items[i][field];
    if (id !== undefined && id !== null) ids.add(id);
  }
  // The ids were validated as integers: the literal holds digits and commas only.
  return `{${[...ids].join(",")}}`;
}

/**
 * Refuses the agents and connectors of `items` that belong to another user than `owner`: a
 * {@link UsageValidationError} naming each (`agentId` / `connectorId`, with the item's `index`
 * when `batch`). One query for the whole batch. It runs in the transaction of the insert and
 * locks the rows it reads `FOR SHARE`, so an agent cannot change hands between the check and
 * the commit. Ids that do not exist are left to the insert's foreign keys
 * (an `UnknownReferenceError`, as without a view).
 */
export async function refuseOthersReferences(
  tx: Prisma.TransactionClient,
  items: readonly OwnedReferences[],
  owner: number,
  batch: boolean,
): Promise<void> {
  const rows = await tx.$queryRaw<{ field: "agentId" | "connectorId"; id: number; user_id: number }[]>`
    WITH a AS (SELECT id, user_id FROM ps_agents WHERE id = ANY(${distinct(items, "agentId")}::int[]) FOR SHARE),
         c AS (SELECT id, user_id FROM ps_agent_connectors WHERE id = ANY(${distinct(items, "connectorId")}::int[]) FOR SHARE)
    SELECT 'agentId' AS field, id, user_id FROM a UNION ALL SELECT 'connectorId' AS field, id, user_id FROM c`;
  const foreignAgents = new Set<number>();
  const foreignConnectors = new Set<number>();
  for (const row of rows) {
    if (row.user_id !== owner) (row.field === "agentId" ? foreignAgents : foreignConnectors).add(row.id);
  }
  if (foreignAgents.size === 0 && foreignConnectors.size === 0) return;
  const reason = `belongs to another user (this view is confined to user ${owner})`;
  const issues: FieldIssue[] = [];
  items.forEach(({ agentId, connectorId }, index) => {
    const at = batch ? { index } : {};
    if (agentId !== undefined && agentId !== null && foreignAgents.has(agentId)) issues.push({ field: "agentId", reason, ...at });
    if (connectorId !== undefined && connectorId !== null && foreignConnectors.has(connectorId)) {
      issues.push({ field: "connectorId", reason, ...at });
    }
  });
  throw new UsageValidationError(issues);
}

/** A related agent or connector as a view may see it: its own, else null (the id stays in the usage row). */
export function visibleTo<R extends { readonly userId: number }>(row: R | null | undefined, owner: Owner): R | null {
  if (row === null || row === undefined) return null;
  return owner === null || row.userId === owner ? row : null;
}

/**
 * Runs one single-record write. With an `owner` and an agent or connector in `input`, the write
 * runs in a transaction after {@link refuseOthersReferences}; otherwise it runs as it is.
 */
export async function writeOwned<T>(
  db: Database,
  input: OwnedReferences,
  owner: Owner,
  write: (client: Prisma.TransactionClient) => Promise<T>,
): Promise<T> {
  if (owner === null || !namesAgentOrConnector([input])) return write(db.prisma);
  return db.prisma.$transaction(
    async (tx) => {
      await refuseOthersReferences(tx, [input], owner, false);
      return write(tx);
    },
    // PGlite runs one transaction at a time: wait for a running batch as a batch would.
    { maxWait: 60_000, timeout: 60_000 },
  );
}
