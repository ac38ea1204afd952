export * from "./errors"; export * from "./db"; export * from "./schema/migrate";
export { doctor, type DoctorReport, type DoctorOptions, type ChangedRows } from "./schema/doctor";
export { adopt, SchemaMismatchError, type AdoptOptions, type AdoptionResult, type AdoptionStep, type SchemaDifference, type OrphanCount } from "./schema/adopt";
export * from "./types";
export * from "./studio";
export * from "./prices";
export * from "./costs";
export * from "./modelUsage";
export * from "./externalApiUsage";
export * from "./userScope";
export * from "./sums";
export * from "./demo";
export * from "./ndjson";
export * from "./providers";
export { formatReportTable, formatReportJson, formatReportCsv, loadReportNames, formatMoney, formatCount, type ReportNames, type TableLayout } from "./reportFormat";
import { Prisma } from "./generated/prisma/client";
/** Exact decimal arithmetic for amounts (Prisma's decimal.js), e.g. to add report costs. */
export const Decimal = Prisma.Decimal;
export type Decimal = Prisma.Decimal;
