/**
 * Seeded random numbers, identical on every platform and backend: all draws happen on the host
 * with 32-bit integer arithmetic (xoshiro128**, seeded through splitmix32), so a seed fixes every
 * calibration window, noise tensor and random score.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`Rng: seed must be a finite number, got ${seed}`);
    let x = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0)
      throw new RangeError(`Rng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /**
   * Writes `count` standard normals into out[start ..]: exactly the values, in the order, that
   * `count` calls of normal() return (the generator ends in the same state), without a method call
   * per draw. For bulk noise on the host (Moreau smoothing, random init).
   */
  fillNormal(out: Float64Array | Float32Array, start = 0, count = out.length - start): void {
    let i = start;
    const end = start + count;
    if (i < end && this.spare !== undefined) {
      out[i++] = this.spare;
      this.spare = undefined;
    }
    // xoshiro128** with the state in locals (int32 bit patterns; >>> reads them as uint32).
    let s0 = this.s0 | 0;
    let s1 = this.s1 | 0;
    let s2 = this.s2 | 0;
    let s3 = this.s3 | 0;
    let spare: number | undefined;
    while (i < end) {
      let u = 0;
      let v = 0;
      for (let k = 0; k < 4; k++) {
        const x = Math.imul(s1, 5);
        const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
        const t = s1 << 9;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 11) | (s3 >>> 21);
        // Draws 0, 1: u = uniform(); draws 2, 3: v = uniform() (u == 0 is redrawn first, as normal()).
        if (k === 0 || k === 2) v = (result >>> 5) * 67108864;
        else if (k === 1) {
          u = (v + (result >>> 6)) / 9007199254740992;
          if (u === 0) k = -1;
        } else v = (v + (result >>> 6)) / 9007199254740992;
      }
      const r = Math.sqrt(-2 * Math.log(u));
      out[i++] = r * Math.cos(2 * Math.PI * v);
      if (i < end) out[i++] = r * Math.sin(2 * Math.PI * v);
      else spare = r * Math.sin(2 * Math.PI * v);
    }
    this.s0 = s0 >>> 0;
    this.s1 = s1 >>> 0;
    this.s2 = s2 >>> 0;
    this.s3 = s3 >>> 0;
    if (spare !== undefined) this.spare = spare;
  }

  /** Fills a new Float32Array with N(mean, std^2) draws. */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(n);
    const chunk = new Float64Array(Math.min(n, 65536));
    for (let start = 0; start < n; start += chunk.length) {
      const count = Math.min(chunk.length, n - start);
      this.fillNormal(chunk, 0, count);
      for (let i = 0; i < count; i++) out[start + i] = mean + std * chunk[i]!;
    }
    return out;
  }

  /** Fills a new Float32Array with U(lo, hi) draws. */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }

  /** Fisher-Yates permutation of 0..n-1. */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    return p;
  }

  /** An independent generator derived from this one (for per-purpose streams). */
  fork(): Rng {
    return new Rng(this.nextUint32());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
