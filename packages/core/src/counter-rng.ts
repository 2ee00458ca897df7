/**
 * Counter-based random numbers: the value for element i of stream (seed, a, b) is a pure function
 * of those four integers, so a draw can be repeated exactly without replaying a generator. The
 * layer-streamed Moreau criterion needs this: the noise added to a layer's weights in the forward
 * pass must be regenerated, identically, when the layer is recomputed in the backward pass — on
 * any backend, in any order of layers.
 *
 * Each pair of elements (2j, 2j + 1), j a 64-bit counter, takes two 32-bit words from a keyed hash
 * of j (murmur3's finaliser, applied twice per word with the key mixed in) and turns them into two
 * standard normals by Box-Muller, with log, sin and cos our own range-reduced float32 polynomials
 * (within about 2 float32 ulps of the exact functions). The whole algorithm is specified in 32-bit
 * integer and IEEE float32 arithmetic in a fixed order (see internal/counter-noise-ref.ts), so its
 * values are the same bits on every machine and engine. A WebAssembly SIMD kernel computes them
 * (about 10x faster than JavaScript); a plain JavaScript implementation that gives the same bits
 * runs where WebAssembly SIMD is missing.
 */
import { expandKey, fillRef, fmix, perturbRef } from './internal/counter-noise-ref.js';
import { noiseKernel } from './internal/counter-noise-wasm.js';

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
    k0 = fmix((k0 ^ lo) + 0x9e3779b9) >>> 0;
    k1 = fmix((k1 ^ hi ^ k0) + 0x7f4a7c15) >>> 0;
  }
  return { k0, k1 };
}

function checkRange(fn: string, start: number, n: number): void {
  if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(start + n))
    throw new RangeError(`${fn}: start ${start} must be a non-negative safe integer (with start + length)`);
}

/**
 * Writes standard normals for elements [start, start + out.length) of the stream into `out`
 * (float32 or float64; the values are float32 numbers either way). Filling a range in pieces gives
 * the same values as filling it at once.
 */
export function fillCounterNormals(key: CounterKey, start: number, out: Float32Array | Float64Array): void {
  checkRange('fillCounterNormals', start, out.length);
  const k = expandKey(key.k0, key.k1);
  const kernel = noiseKernel();
  if (kernel) kernel.fill(k, start, out);
  else fillRef(k, start, out);
}

/**
 * The Moreau evaluation point in one pass: out[i] = w[i] + (std * |w[i]|) * z[i] + delta[i] for
 * i in [0, out.length), z[i] the normal of element start + i of the stream (what
 * fillCounterNormals writes), evaluated in float32 in exactly that order: with s = f32(std),
 * x = f32(w[i] + f32(f32(s * |w[i]|) * z[i])), then out[i] = f32(x + delta[i]) (out[i] = x without
 * delta). Inputs are read as float32. `out` may be `w` or `delta` itself (in place), but must not
 * otherwise overlap them.
 */
export function perturbInto(
  out: Float32Array | Float64Array,
  w: Float32Array | Float64Array,
  delta: Float32Array | Float64Array | undefined,
  std: number,
  key: CounterKey,
  start = 0,
): void {
  const n = out.length;
  if (w.length !== n || (delta && delta.length !== n))
    throw new RangeError(
      `perturbInto: out, w${delta ? ' and delta' : ''} must have one length (${n}, ${w.length}${delta ? `, ${delta.length}` : ''})`,
    );
  checkRange('perturbInto', start, n);
  const k = expandKey(key.k0, key.k1);
  const kernel = noiseKernel();
  if (kernel) kernel.perturb(out, w, delta, std, k, start);
  else perturbRef(out, w, delta, std, k, start);
}
