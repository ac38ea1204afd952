export * from "./errors"; export * from "./db"; export * from "./migrate";
export * from "./types";
export * from "./studio";
export * from "./prices";
export * from "./costs";
export * from "./modelUsage";
export * from "./externalApiUsage";
export * from "./userScope";
export * from "./sums";
