/**
 * Length buckets for compiled windows: `base`, then 1.5x / 2x steps (32, 48, 64, 96, 128, 192,
 * 256, 384, 512, ...), capped at `max`. Padding wastes at most a third of a window while a
 * sequence of n tokens touches only about 2 log2(n / base) compiled shapes.
 */
export function lengthBucket(n: number, base = 32, max = Number.POSITIVE_INFINITY): number {
  let b = base;
  let half = base / 2;
  // b runs through base * {1, 1.5, 2, 3, 4, 6, ...}
  while (b < n) {
    const next = b + half;
    if (next >= 2 * half * 2) half *= 2;
    b = next;
  }
  return Math.min(b, max);
}
