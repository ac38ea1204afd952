/** How `ps-usage adopt` and `ps-usage doctor` print what they found. */
import type { AdoptionResult } from "../schema/adopt";
import type { DoctorReport } from "../schema/doctor";

const EFFECT = { blocks: "BLOCKS", adds: "adds  ", keeps: "keeps " } as const;

export function formatAdoption(r: AdoptionResult): string {
  const out: string[] = [];
  if (r.state !== "unmanaged") {
    const what = r.state === "empty" ? "holds none of ps-usage's tables: adopting it is migrating it" : "is already managed by migrations";
    out.push(`${r.target} ${what}.`);
    out.push(r.migrations.length ? `${r.dryRun ? "Would apply" : "Applied"} ${r.migrations.length} migration(s):\n${r.migrations.map((n) => `  ${n}`).join("\n")}` : "Nothing to do.");
    return out.join("\n") + "\n";
  }
  out.push(`${r.target} holds PolicySynth's tables without a migration history.`);
  out.push(`Differences from the tables ps-usage creates (${r.differences.length}):`);
  for (const d of r.differences) out.push(`  ${EFFECT[d.effect]} ${d.detail}`);
  for (const o of r.orphans.filter((o) => o.rows > 0)) {
    out.push(`Orphans: ${o.rows} row(s) of ${o.table} have a ${o.column} with no ${o.references} row (e.g. ${o.sampleIds.join(", ")}); they are kept.`);
  }
  out.push(r.dryRun ? "SQL it would run (nothing was changed):" : "SQL it ran:");
  for (const s of r.steps) out.push(`  ${s.sql}${s.why ? `   -- ${s.why}; locks: ${s.locks}` : ""}`);
  out.push(
    `${r.dryRun ? "It would record" : "Recorded"} ${r.baselined.join(", ")} as applied (as \`prisma migrate resolve --applied\` does)` +
      (r.migrations.length ? ` and ${r.dryRun ? "apply" : "applied"} ${r.migrations.join(", ")}.` : "."),
  );
  out.push("Rows are never changed; PolicySynth's own indexes and columns stay (Prisma Migrate will list them as differences from the schema).");
  return out.join("\n") + "\n";
}

export function formatDoctor(r: DoctorReport): string {
  const out: string[] = [`Database: ${r.target}`];
  const m = r.migrations;
  if (m.unmanagedTables.length) out.push(`Not adopted: ${m.unmanagedTables.join(", ")} exist without a migration history (run \`ps-usage adopt\`).`);
  else if (m.pending.length) out.push(`Pending migrations: ${m.pending.join(", ")} (run \`ps-usage migrate\`).`);
  else out.push("Migrations: up to date.");
  for (const c of r.changedRows) {
    const unit = c.table === "ps_model_usage" ? "tokens" : "calls";
    out.push(
      c.rows === 0
        ? `${c.table}: no row was changed after it was written.`
        : `${c.table}: ${c.rows} row(s) were changed after they were written (updated_at later than created_at; e.g. ids ${c.sampleIds.join(", ")}), ` +
            `holding ${c.units} ${unit} in all. Another writer (PolicySynth's findOrCreate + increment) added usage to them: ` +
            `time-bucketed reports date it at each row's created_at (the earliest ${c.earliestCreatedAt?.toISOString()}). See README, "Running beside PolicySynth".`,
    );
  }
  for (const name of r.missingForeignKeys) out.push(`Missing foreign key ${name}: ps-usage checks these references itself (run \`ps-usage adopt\` to add it).`);
  for (const name of r.unvalidatedForeignKeys) out.push(`Foreign key ${name} is NOT VALID: it checks new rows only.`);
  for (const o of r.orphans) {
    out.push(o.rows === 0 ? `${o.table}.${o.column}: every row points at a ${o.references} row.` : `${o.table}.${o.column}: ${o.rows} row(s) point at no ${o.references} row (e.g. ${o.sampleIds.join(", ")}).`);
  }
  out.push(r.healthy ? "Healthy." : "Needs attention (see above).");
  return out.join("\n") + "\n";
}
