/**
 * How a call settled (its value or error, and how long it took), or a failure of the test when it
 * is still pending after `ms`: a hang, not slowness.
 */
export async function settlesWithin<T>(promise: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  try {
    return { value: await Promise.race([promise, hang]), ms: Date.now() - started };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("still pending")) throw error;
    return { error, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}
