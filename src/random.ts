/**
 * Seeded pseudo-random numbers in [0, 1) (mulberry32): the demo data, the benchmark's data and
 * the generated test cases are the same on every machine, so a figure or a failure can be
 * reproduced from its seed. (pure-rand, fast-check's generator library, has equivalent
 * generators; this one is kept because the recorded benchmark data were drawn with it.)
 *
 * @example
 * const random = seededRandom(42);
 * random(); // 0.6011037519201636, the same on every run
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
