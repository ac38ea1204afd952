import { UsageValidationError, type FieldIssue } from "../../src";

/** The issues of a rejected call; fails the test unless it rejected with a UsageValidationError. */
export async function issuesOf(call: Promise<unknown>): Promise<readonly FieldIssue[]> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UsageValidationError);
  return (error as UsageValidationError).issues;
}
