/**
 * Counter-based random numbers: the value for element i of stream (seed, a, b) is a pure function
 * of those four integers, so a draw can be repeated exactly without replaying a generator. The
 * layer-streamed Moreau criterion needs this: the noise added to a layer's weights in the forward
 * pass must be regenerated, identically, when the layer is recomputed in the backward pass — on
 * any backend, in any order of layers.
 *
 * Each pair of elements (2j, 2j + 1) takes two 32-bit words from a keyed hash of j (murmur3's
 * finaliser, applied in rounds with the key mixed in) and turns them into two standard normals by
 * Box-Muller. All arithmetic is 32-bit integer or IEEE double (Math.log / cos / sin are V8's
 * fdlibm ports), so the values are the same on every machine.
 */

function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A stream key: two 32-bit words derived from (seed, a, b). */
export interface CounterKey {
  readonly k0: number;
  readonly k1: number;
}

/**
 * The key of stream (seed, a, b): e.g. a = iteration, b = parameter index. Every argument must be
 * a safe integer (the high bits of values beyond 2^32 are mixed in too).
 */
export function counterKey(seed: number, a: number, b: number): CounterKey {
  const word = (x: number) => [x >>> 0, Math.floor(x / 4294967296) >>> 0] as const;
  let k0 = 0x243f6a88;
  let k1 = 0x85a308d3;
  for (const x of [seed, a, b]) {
    if (!Number.isSafeInteger(x)) throw new RangeError(`counterKey: ${x} is not a safe integer`);
    const [lo, hi] = word(x);
    k0 = fmix((k0 ^ lo) + 0x9e3779b9);
    k1 = fmix((k1 ^ hi ^ k0) + 0x7f4a7c15);
  }
  return { k0, k1 };
}

const TWO32 = 4294967296;

/**
 * Writes standard normals for elements [start, start + out.length) of the stream into `out`
 * (float32 or float64). Filling a range in pieces gives the same values as filling it at once.
 */
export function fillCounterNormals(key: CounterKey, start: number, out: Float32Array | Float64Array): void {
  const { k0, k1 } = key;
  const n = out.length;
  let i = 0;
  while (i < n) {
    const e = start + i;
    const j = Math.floor(e / 2);
    // Two words per pair: the counter split into 32-bit halves, keyed, mixed twice.
    const lo = j >>> 0;
    const hi = Math.floor(j / TWO32) >>> 0;
    const a = fmix(fmix(lo ^ k0) ^ hi ^ k1);
    const b = fmix(a ^ k1 ^ 0x6a09e667);
    // u in (0, 1] keeps log finite; v in [0, 1).
    const u = (a + 1) / TWO32;
    const r = Math.sqrt(-2 * Math.log(u));
    const angle = (2 * Math.PI * b) / TWO32;
    if (e % 2 === 0) {
      out[i++] = r * Math.cos(angle);
      if (i < n) out[i++] = r * Math.sin(angle);
    } else {
      out[i++] = r * Math.sin(angle);
    }
  }
}
