/**
 * The counter-based normal generator, written out in plain JavaScript as the reference. Every value
 * is specified in 32-bit integer arithmetic (Math.imul, >>>, ^, +) and IEEE float32 arithmetic
 * (each +, -, *, sqrt rounded by Math.fround; rounding a float32 +, -, *, / or sqrt through double
 * first is innocuous, so this is exact float32), in the order written, without fused
 * multiply-adds. The WebAssembly kernel (counter-noise.wat) computes the same operations four
 * pairs at a time and must agree bit for bit; keep the two in step.
 *
 * Pair j (a 64-bit counter, lo and hi words) of stream key (k0, k1) gives elements 2j and 2j + 1:
 *
 *   k2 = fmix(k0 ^ 0x6a09e667), k3 = fmix(k1 ^ 0xbb67ae85)       (once per key)
 *   a = fmix(fmix(lo ^ k0) ^ hi ^ k1),  b = fmix(fmix(lo ^ k2) ^ hi ^ k3)
 *   u = f32(a >>> 1) * 2^-31 + 2^-32                              in (0, 1]
 *   r = sqrt(-2 * log(u))                                         log: range-reduced polynomial
 *   angle = 2 pi b / 2^32: quadrant q and t in [-1/2, 1/2) quarter turns, exactly, from the integer
 *   (element 2j, element 2j + 1) = (r cos(angle), r sin(angle))  sin, cos: polynomials in t
 *
 * fmix is murmur3's 32-bit finaliser (a bijection). f32(x) is round-to-nearest-even conversion.
 */

const f = Math.fround;

export function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The two extra key words, derived once per key. */
export function expandKey(k0: number, k1: number): [number, number, number, number] {
  return [k0 | 0, k1 | 0, fmix(k0 ^ 0x6a09e667), fmix(k1 ^ 0xbb67ae85)];
}

/**
 * log(1 + f) = f + f^2 Q(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1]: Q of degree 8, a weighted
 * minimax fit (relative error of log 2.4e-8 before rounding the coefficients to float32).
 */
export const LOG_Q = [
  -0.49999997, 0.33333322, -0.25000775, 0.20001902, -0.16627474, 0.1419044, -0.1310436, 0.12812869,
  -0.07848278,
].map(f);
/** log(2) in two parts: e * LN2_HI is exact for |e| <= 64 (17 significant bits). */
export const LN2_HI = f(0.6931381);
export const LN2_LO = f(9.0580015e-6);
/** sin(pi/2 t) = t S(t^2) on |t| <= 1/2 (relative error 3.2e-9 before rounding). */
export const SIN_S = [1.5707964, -0.6459635, 0.07968004, -0.0046016816].map(f);
/** cos(pi/2 t) = 1 + t^2 C(t^2) on |t| <= 1/2 (relative error 6.4e-11 before rounding). */
export const COS_C = [-1.2337005, 0.25366923, -0.020860165, 0.0009037666].map(f);

const TWO_M31 = 2 ** -31;
const TWO_M32 = 2 ** -32;
const TWO_M30 = 2 ** -30;

const bitsF = new Float32Array(1);
const bitsI = new Int32Array(bitsF.buffer);

/** log(u) for a positive normal float32 u, in float32 arithmetic. */
export function log32(u: number): number {
  bitsF[0] = u;
  const bits = bitsI[0]!;
  // u = 2^e * m with m in [sqrt(1/2), sqrt(2)): 0x3f3504f3 is sqrt(1/2)'s bit pattern.
  const e = ((bits - 0x3f3504f3) | 0) >> 23;
  bitsI[0] = (bits - (e << 23)) | 0;
  const m = bitsF[0]!;
  const x = f(m - 1); // exact (Sterbenz)
  const q = LOG_Q;
  let p = q[8]!;
  for (let k = 7; k >= 0; k--) p = f(f(p * x) + q[k]!);
  const tail = f(f(x * x) * p);
  return f(f(f(tail + f(e * LN2_LO)) + x) + f(e * LN2_HI));
}

/** sin(pi/2 t) and cos(pi/2 t) for |t| <= 1/2, in float32 arithmetic. */
export function sinQuarter(t: number): number {
  const t2 = f(t * t);
  const s = SIN_S;
  return f(t * f(f(f(f(f(f(s[3]! * t2) + s[2]!) * t2) + s[1]!) * t2) + s[0]!));
}
export function cosQuarter(t: number): number {
  const t2 = f(t * t);
  const c = COS_C;
  return f(1 + f(t2 * f(f(f(f(f(f(c[3]! * t2) + c[2]!) * t2) + c[1]!) * t2) + c[0]!)));
}

/** The uniform in (0, 1] from the first hash word. */
export function uniform32(a: number): number {
  return f(f(a >>> 1) * TWO_M31 + TWO_M32);
}

/**
 * Writes the normals of pairs j0, j0 + 1, ... (j0 = hi * 2^32 + lo) into out[0..n): element 2k of
 * the output is pair j0 + k's first value. `n` may be odd (the last pair's second value is dropped).
 */
export function pairsRef(
  key: readonly [number, number, number, number],
  lo: number,
  hi: number,
  out: { [i: number]: number },
  offset: number,
  n: number,
): void {
  const [k0, k1, k2, k3] = key;
  lo |= 0;
  hi |= 0;
  for (let i = 0; i < n; i += 2) {
    const a = fmix(fmix(lo ^ k0) ^ hi ^ k1);
    const b = fmix(fmix(lo ^ k2) ^ hi ^ k3);
    const r = f(Math.sqrt(-2 * log32(uniform32(a))));
    const s = (b + 0x20000000) | 0;
    const q = s >>> 30;
    const t = f((s & 0x3fffffff) - 0x20000000) * TWO_M30;
    const sp = sinQuarter(t);
    const cp = cosQuarter(t);
    let z0 = f(r * (q & 1 ? sp : cp));
    let z1 = f(r * (q & 1 ? cp : sp));
    if ((q + 1) & 2) z0 = -z0;
    if (q & 2) z1 = -z1;
    out[offset + i] = z0;
    if (i + 1 < n) out[offset + i + 1] = z1;
    lo = (lo + 1) | 0;
    if (lo === 0) hi = (hi + 1) | 0;
  }
}

const TWO32 = 4294967296;

/** The counter words of pair j (0 <= j < 2^53). */
export function pairCounter(j: number): [lo: number, hi: number] {
  return [j >>> 0, Math.floor(j / TWO32) >>> 0];
}

/** Reference fill: the normals of elements [start, start + out.length) (float32 values). */
export function fillRef(
  key: readonly [number, number, number, number],
  start: number,
  out: Float32Array | Float64Array,
): void {
  const n = out.length;
  if (n === 0) return;
  const off = start % 2;
  const [lo, hi] = pairCounter((start - off) / 2);
  if (off === 0) {
    pairsRef(key, lo, hi, out, 0, n);
    return;
  }
  const first = [0, 0];
  pairsRef(key, lo, hi, first, 0, 2);
  out[0] = first[1]!;
  const [lo1, hi1] = pairCounter((start + 1) / 2);
  pairsRef(key, lo1, hi1, out, 1, n - 1);
}

/**
 * Reference perturbation: out[i] = w[i] + (s * |w[i]|) * z[i] (+ delta[i]) in float32, in that
 * order, with s = f32(std) and z the stream's normals for elements start + i.
 */
export function perturbRef(
  out: Float32Array | Float64Array,
  w: Float32Array | Float64Array,
  delta: Float32Array | Float64Array | undefined,
  std: number,
  key: readonly [number, number, number, number],
  start: number,
): void {
  const s = f(std);
  const z = new Float32Array(Math.min(out.length, 4096));
  for (let done = 0; done < out.length; done += z.length) {
    const take = Math.min(z.length, out.length - done);
    const zz = take === z.length ? z : z.subarray(0, take);
    fillRef(key, start + done, zz);
    for (let k = 0; k < take; k++) {
      const i = done + k;
      const wi = f(w[i]!);
      let x = f(wi + f(f(s * Math.abs(wi)) * zz[k]!));
      if (delta) x = f(x + f(delta[i]!));
      out[i] = x;
    }
  }
}
