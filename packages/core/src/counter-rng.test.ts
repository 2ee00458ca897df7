import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { assembleNoiseWasm, BYTES_PATH, renderBytesModule, WAT_PATH } from '../scripts/noise-wasm.js';
import { counterKey, fillCounterNormals, perturbInto } from './index.js';
import {
  cosQuarter,
  expandKey,
  fillRef,
  fmix,
  log32,
  perturbRef,
  sinQuarter,
  uniform32,
} from './internal/counter-noise-ref.js';
import { CHUNK, noiseKernel } from './internal/counter-noise-wasm.js';
import { NOISE_WASM_BASE64 } from './internal/counter-noise-wasm-bytes.js';

const f = Math.fround;
const kernel = noiseKernel()!;
type Key4 = [number, number, number, number];
const key4 = (seed: number, a: number, b: number): Key4 => {
  const k = counterKey(seed, a, b);
  return expandKey(k.k0, k.k1);
};

/** The float32 bit patterns of an array's values (distinguishes -0 and compares NaNs). */
const bits = (x: Float32Array | Float64Array) => new Uint32Array(Float32Array.from(x).buffer);
const firstDiff = (a: Float32Array | Float64Array, b: Float32Array | Float64Array) => {
  const x = bits(a);
  const y = bits(b);
  if (x.length !== y.length) return -2;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
};

/** The float32 ulp at x. */
const ulp = (x: number) => {
  const a = Math.abs(f(x));
  return a === 0 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(a)) - 23);
};

describe('counter normals: pinned values', () => {
  // Computed once from this implementation and cross-checked against an independent numpy
  // implementation of the specification (packages/core/scripts/counter-noise-numpy.py).
  it('pins keys and the first normals of a few streams, at small, 64-bit and wrapping counters', () => {
    expect(counterKey(42, 0, 0)).toEqual({ k0: 1394135338, k1: 3195100699 });
    const get = (key: ReturnType<typeof counterKey>, start: number, n: number) => {
      const out = new Float64Array(n);
      fillCounterNormals(key, start, out);
      return Array.from(out);
    };
    expect(get(counterKey(42, 0, 0), 0, 6)).toEqual([
      -0.553022027015686, -0.44797801971435547, 0.7234863042831421, 0.08962760120630264, -0.5891411304473877,
      -0.11381349712610245,
    ]);
    expect(get(counterKey(7, 3, 11), 2 ** 40 + 1, 4)).toEqual([
      -1.3095088005065918, -1.67052161693573, 0.358156681060791, -1.425634503364563,
    ]);
    // pairs 2^32 - 1 and 2^32: the counter's low word wraps into the high word
    expect(get(counterKey(1, 2, 3), 2 ** 33 - 2, 4)).toEqual([
      1.3769314289093018, 0.140212282538414, -0.49473264813423157, 1.0156006813049316,
    ]);
  });
});

describe('counter normals: the WebAssembly kernel equals the JS reference bit for bit', () => {
  it('Node has WebAssembly SIMD, so fillCounterNormals runs the kernel', () => {
    expect(kernel).not.toBeNull();
  });

  it('over many keys, starts (odd, near 2^32 pairs, near 2^53) and lengths (chunk boundaries)', () => {
    const starts = [
      0,
      1,
      2,
      3,
      5,
      8,
      1001,
      CHUNK - 1,
      CHUNK,
      2 ** 32 - 7,
      2 ** 33 - 9,
      2 ** 33 + 1,
      2 ** 45 + 3,
    ];
    const lengths = [0, 1, 2, 3, 7, 8, 9, 17, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5];
    let cases = 0;
    for (const [seed, a, b] of [
      [0, 0, 0],
      [42, 0, 7],
      [2 ** 31, 9, 2 ** 40],
      [123456789, 2 ** 53 - 1, 3],
    ] as const) {
      const key = key4(seed, a, b);
      for (const start of [...starts, Number.MAX_SAFE_INTEGER - 100])
        for (const n of lengths) {
          if (start + n > Number.MAX_SAFE_INTEGER) continue;
          const ref = new Float32Array(n);
          const got = new Float32Array(n);
          fillRef(key, start, ref);
          kernel.fill(key, start, got);
          expect(firstDiff(ref, got), `seed ${seed} start ${start} n ${n}`).toBe(-1);
          cases++;
        }
    }
    expect(cases).toBeGreaterThan(200);
  });

  it('over random keys, starts and lengths', () => {
    let s = 12345;
    const next = () => {
      s = fmix(s + 0x9e3779b9) >>> 0;
      return s;
    };
    for (let c = 0; c < 300; c++) {
      const key: Key4 = [next() | 0, next() | 0, next() | 0, next() | 0];
      const start = c % 3 === 0 ? next() * 2 ** 20 + next() : next() % 100000;
      const n = next() % 3000;
      const ref = new Float32Array(n);
      const got = new Float32Array(n);
      fillRef(key, start, ref);
      kernel.fill(key, start, got);
      expect(firstDiff(ref, got), `case ${c} start ${start} n ${n}`).toBe(-1);
    }
  });

  it('writes the same float32 values into float64 arrays', () => {
    const key = key4(3, 1, 4);
    for (const start of [0, 3, 2 ** 40 + 1]) {
      const a = new Float32Array(CHUNK + 11);
      const b = new Float64Array(CHUNK + 11);
      const c = new Float64Array(CHUNK + 11);
      kernel.fill(key, start, a);
      kernel.fill(key, start, b);
      fillRef(key, start, c);
      expect(Array.from(b)).toEqual(Array.from(a));
      expect(Array.from(c)).toEqual(Array.from(a));
    }
  });

  it('perturbInto: w + (std |w|) z + delta in float32, the same bits from the kernel and the reference', () => {
    const n = 2 * CHUNK + 13;
    const w = new Float32Array(n).map((_, i) =>
      i % 17 === 0 ? 0 : Math.sin(i) * 0.1 * (i % 5 === 0 ? -1 : 1),
    );
    w[3] = -0;
    w[5] = 1e-30;
    const delta = new Float32Array(n).map((_, i) => Math.cos(i) * 1e-3);
    const key = key4(9, 2, 5);
    for (const start of [0, 1, 2 ** 33 - 3])
      for (const std of [0.05, 0.3, 0])
        for (const d of [delta, undefined]) {
          const ref = new Float32Array(n);
          const got = new Float32Array(n);
          perturbRef(ref, w, d, std, key, start);
          kernel.perturb(got, w, d, std, key, start);
          expect(firstDiff(ref, got), `start ${start} std ${std} delta ${!!d}`).toBe(-1);
          // the formula written out over fillCounterNormals' values
          const z = new Float32Array(n);
          fillRef(key, start, z);
          const s = f(std);
          const want = w.map((x, i) => {
            const y = f(x + f(f(s * Math.abs(x)) * z[i]!));
            return d ? f(y + d[i]!) : y;
          });
          expect(firstDiff(want, got)).toBe(-1);
        }
  });

  it('perturbInto works in place, on float64 arrays, and through the public function', () => {
    const n = CHUNK + 7;
    const w = new Float32Array(n).map((_, i) => Math.sin(i));
    const d = new Float32Array(n).map((_, i) => Math.cos(i) * 1e-2);
    const key = counterKey(1, 2, 3);
    const want = new Float32Array(n);
    perturbRef(want, w, d, 0.05, expandKey(key.k0, key.k1), 5);
    const inPlace = w.slice();
    perturbInto(inPlace, inPlace, d, 0.05, key, 5);
    expect(firstDiff(inPlace, want)).toBe(-1);
    const into64 = new Float64Array(n);
    perturbInto(into64, Float64Array.from(w), Float64Array.from(d), 0.05, key, 5);
    expect(firstDiff(into64, want)).toBe(-1);
    const intoDelta = d.slice();
    perturbInto(intoDelta, w, intoDelta, 0.05, key, 5);
    expect(firstDiff(intoDelta, want)).toBe(-1);
  });

  it('large perturbInto calls shared with helper threads give the same bits, whoever computes a chunk', async () => {
    const helpers = await kernel.helpersReady();
    // Past one staged slice (64 chunks), with an odd start so chunks begin mid-pair.
    const n = 150 * CHUNK + 21;
    const w = new Float32Array(n).map((_, i) => Math.sin(i) * 0.1);
    const d = new Float32Array(n).map((_, i) => Math.cos(i) * 1e-3);
    const key = key4(3, 1, 4);
    const start = 2 ** 32 + 7;
    let byHelpers = 0;
    for (const delta of [d, undefined]) {
      const want = new Float32Array(n);
      perturbRef(want, w, delta, 0.05, key, start);
      // The helpers take chunks only when they get the processor in time: try a few calls.
      for (let attempt = 0; attempt < 10; attempt++) {
        const got = new Float64Array(n);
        kernel.perturb(got, Float64Array.from(w), delta, 0.05, key, start);
        expect(firstDiff(want, got), `delta ${!!delta}`).toBe(-1);
        const inPlace = w.slice();
        kernel.perturb(inPlace, inPlace, delta, 0.05, key, start);
        expect(firstDiff(want, inPlace), `in place, delta ${!!delta}`).toBe(-1);
        byHelpers += kernel.lastHelperChunks;
        if (helpers === 0 || kernel.lastHelperChunks > 0) break;
      }
    }
    if (helpers > 0) expect(byHelpers).toBeGreaterThan(0);
  });

  it('rejects bad starts and mismatched lengths', () => {
    const key = counterKey(1, 2, 3);
    expect(() => fillCounterNormals(key, -1, new Float32Array(2))).toThrow(RangeError);
    expect(() => fillCounterNormals(key, 0.5, new Float32Array(2))).toThrow(RangeError);
    expect(() => fillCounterNormals(key, Number.MAX_SAFE_INTEGER, new Float32Array(2))).toThrow(RangeError);
    expect(() => perturbInto(new Float32Array(3), new Float32Array(2), undefined, 0.1, key)).toThrow(
      /one length/,
    );
    expect(() =>
      perturbInto(new Float32Array(2), new Float32Array(2), new Float32Array(3), 0.1, key),
    ).toThrow(/one length/);
  });
});

describe('counter normals: pieces equal the whole', () => {
  it('filling a range in pieces of any sizes and parities gives the values of one fill', () => {
    const key = counterKey(5, 6, 7);
    const start = 2 ** 32 * 2 - 1001;
    const n = 3 * CHUNK + 77;
    const whole = new Float32Array(n);
    fillCounterNormals(key, start, whole);
    for (const cuts of [
      [1, 2, 3, 5, 8, 13, CHUNK, CHUNK + 1],
      [7, CHUNK - 3, 2 * CHUNK + 9],
      [1001, 1002],
    ]) {
      const pieces = new Float32Array(n);
      let at = 0;
      for (const c of [...cuts, n]) {
        const end = Math.min(c, n);
        if (end <= at) continue;
        fillCounterNormals(key, start + at, pieces.subarray(at, end));
        at = end;
      }
      expect(firstDiff(pieces, whole)).toBe(-1);
    }
    const perturbed = new Float32Array(n);
    const w = new Float32Array(n).fill(1);
    perturbInto(perturbed.subarray(0, 9), w.subarray(0, 9), undefined, 1, key, start);
    perturbInto(perturbed.subarray(9), w.subarray(9), undefined, 1, key, start + 9);
    const onePlusZ = whole.map((z) => f(1 + z));
    expect(firstDiff(perturbed, onePlusZ)).toBe(-1);
  });

  it('the JS fallback (no WebAssembly) gives the same values', async () => {
    vi.resetModules();
    const fresh = await import('./internal/counter-noise-wasm.js');
    const rng = await import('./counter-rng.js');
    // the fresh modules instantiate the kernel on first use: hide WebAssembly until then
    vi.stubGlobal('WebAssembly', undefined);
    expect(fresh.noiseKernel()).toBeNull();
    const key = counterKey(11, 12, 13);
    const viaJs = new Float32Array(1003);
    rng.fillCounterNormals(key, 77, viaJs);
    vi.unstubAllGlobals();
    const viaWasm = new Float32Array(1003);
    fillCounterNormals(key, 77, viaWasm);
    expect(firstDiff(viaJs, viaWasm)).toBe(-1);
  });
  afterEach(() => vi.unstubAllGlobals());
});

describe('counter normals: the approximations', () => {
  it('log is within 1 float32 ulp (every 7th float32 mantissa, exponents 0 to -32)', () => {
    const F = new Float32Array(1);
    const I = new Int32Array(F.buffer);
    F[0] = Math.SQRT1_2;
    const lo = I[0]! - 2;
    F[0] = Math.SQRT2;
    const hi = I[0]! + 2;
    let worst = 0;
    for (const e of [0, -1, -2, -5, -20, -32])
      for (let b = lo; b < hi; b += 7) {
        I[0] = b + (e << 23);
        const u = F[0]!;
        if (!(u > 0 && u < 1)) continue;
        const exact = Math.log(u);
        worst = Math.max(worst, Math.abs(log32(u) - exact) / ulp(exact));
      }
    expect(worst).toBeLessThan(1); // measured 0.97
  });

  it('sin within 2 ulps and cos within 1.5 ulps on the reduced range (every 211th angle)', () => {
    let ws = 0;
    let wc = 0;
    for (let i = -(2 ** 29); i < 2 ** 29; i += 211) {
      const t = f(i) * 2 ** -30;
      const es = Math.sin((Math.PI / 2) * t);
      const ec = Math.cos((Math.PI / 2) * t);
      if (es !== 0) ws = Math.max(ws, Math.abs(sinQuarter(t) - es) / ulp(es));
      wc = Math.max(wc, Math.abs(cosQuarter(t) - ec) / ulp(ec));
    }
    expect(ws).toBeLessThan(2); // measured 1.72
    expect(wc).toBeLessThan(1.5); // measured 1.25
  });

  it('each normal is within 4 ulps of exact Box-Muller of the same two hash words', () => {
    const key = key4(5, 6, 7);
    const n = 200_000;
    const z = new Float32Array(2 * n);
    fillCounterNormals(counterKey(5, 6, 7), 0, z);
    let worst = 0;
    for (let j = 0; j < n; j++) {
      const a = fmix(fmix(j ^ key[0]) ^ key[1]);
      const b = fmix(fmix(j ^ key[2]) ^ key[3]);
      const r = Math.sqrt(-2 * Math.log(uniform32(a)));
      const angle = 2 * Math.PI * ((b >>> 0) / 2 ** 32);
      const e0 = r * Math.cos(angle);
      const e1 = r * Math.sin(angle);
      worst = Math.max(worst, Math.abs(z[2 * j]! - e0) / ulp(e0), Math.abs(z[2 * j + 1]! - e1) / ulp(e1));
    }
    expect(worst).toBeLessThan(4); // measured 3.8 over 4M normals
  });
});

/** Standard normal CDF (erfc by a continued fraction / series; ~1e-14 here). */
function phi(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  let erfc: number;
  if (z < 2) {
    // erf series
    let term = z;
    let sum = z;
    for (let k = 1; k < 200; k++) {
      term *= (-z * z) / k;
      sum += term / (2 * k + 1);
      if (Math.abs(term) < 1e-17) break;
    }
    erfc = 1 - (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // Lentz continued fraction for erfc
    let fcf = z;
    let c = z;
    let d = 0;
    for (let k = 1; k < 300; k++) {
      const a = k / 2;
      d = 1 / (z + a * d);
      c = z + a / c;
      const delta = c * d;
      fcf *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    erfc = Math.exp(-z * z) / Math.sqrt(Math.PI) / fcf;
  }
  return x >= 0 ? 1 - erfc / 2 : erfc / 2;
}

describe('counter normals: the distribution (10^7 draws)', () => {
  const n = 10_000_000;
  const z = new Float32Array(n);
  fillCounterNormals(counterKey(2024, 1, 3), 1, z);

  it('mean, variance, skewness and kurtosis of a standard normal', () => {
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let s4 = 0;
    for (let i = 0; i < n; i++) {
      const x = z[i]!;
      const x2 = x * x;
      s1 += x;
      s2 += x2;
      s3 += x2 * x;
      s4 += x2 * x2;
    }
    const mean = s1 / n;
    const variance = s2 / n - mean * mean;
    // five standard errors: sqrt(1/n), sqrt(2/n), sqrt(6/n), sqrt(24/n)
    expect(Math.abs(mean)).toBeLessThan(5 * Math.sqrt(1 / n));
    expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    expect(Math.abs(s3 / n)).toBeLessThan(5 * Math.sqrt(6 / n));
    expect(Math.abs(s4 / n - 3)).toBeLessThan(5 * Math.sqrt(24 / n));
  });

  it('tail probabilities P(|z| > k), k = 1..5, and the bound |z| <= sqrt(64 ln 2)', () => {
    const exact = [
      0.31731050786291415, 0.04550026389635842, 0.0026997960632601866, 6.334248366623996e-5,
      5.733031437583878e-7,
    ];
    const counts = [0, 0, 0, 0, 0];
    let max = 0;
    for (let i = 0; i < n; i++) {
      const a = Math.abs(z[i]!);
      max = Math.max(max, a);
      for (let k = 0; k < 5 && a > k + 1; k++) counts[k]!++;
    }
    exact.forEach((p, k) => {
      const sd = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(counts[k]! - n * p), `k = ${k + 1}: ${counts[k]} vs ${n * p}`).toBeLessThan(5 * sd + 3);
    });
    expect(max).toBeLessThanOrEqual(Math.sqrt(64 * Math.LN2) + 1e-6);
    expect(max).toBeGreaterThan(4.5);
  });

  it('Kolmogorov-Smirnov against the normal CDF (p > 0.001)', () => {
    const sorted = z.slice().sort();
    let d = 0;
    let x = Number.NaN;
    let F = 0;
    for (let i = 0; i < n; i++) {
      if (sorted[i] !== x) {
        x = sorted[i]!;
        F = phi(x);
      }
      d = Math.max(d, (i + 1) / n - F, F - i / n);
    }
    expect(d).toBeLessThan(1.95 / Math.sqrt(n));
  });

  it('neighbours, pairs and neighbouring streams are uncorrelated', () => {
    const corr = (x: Float32Array, y: Float32Array) => {
      let s = 0;
      for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
      return s / x.length;
    };
    const m = 2_000_000;
    const bound = 5 / Math.sqrt(m);
    expect(Math.abs(corr(z.subarray(0, m), z.subarray(1, m + 1)))).toBeLessThan(bound); // within and across pairs
    expect(Math.abs(corr(z.subarray(0, m), z.subarray(2, m + 2)))).toBeLessThan(bound);
    // squares too: Box-Muller's two values share the radius
    const sq = z.subarray(0, m + 2).map((x) => x * x - 1);
    expect(Math.abs(corr(sq.subarray(0, m), sq.subarray(1, m + 1)))).toBeLessThan(3 * bound);
    expect(Math.abs(corr(sq.subarray(0, m), sq.subarray(2, m + 2)))).toBeLessThan(3 * bound);
    const other = new Float32Array(m);
    fillCounterNormals(counterKey(2024, 2, 3), 1, other); // next iteration, same parameter
    expect(Math.abs(corr(z.subarray(0, m), other))).toBeLessThan(bound);
    fillCounterNormals(counterKey(2024, 1, 4), 1, other); // next parameter
    expect(Math.abs(corr(z.subarray(0, m), other))).toBeLessThan(bound);
  });

  it('far along the counter (high word set) the moments hold too', () => {
    const m = 1_000_000;
    const x = new Float32Array(m);
    fillCounterNormals(counterKey(2024, 1, 3), 2 ** 45 + 1, x);
    let s1 = 0;
    let s2 = 0;
    for (const v of x) {
      s1 += v;
      s2 += v * v;
    }
    expect(Math.abs(s1 / m)).toBeLessThan(5 / Math.sqrt(m));
    expect(Math.abs(s2 / m - 1)).toBeLessThan(5 * Math.sqrt(2 / m));
  });
});

describe('counter normals: the embedded WebAssembly is built from the committed source', () => {
  it('assembling counter-noise.wat gives the embedded bytes and the generated module', async () => {
    const bytes = await assembleNoiseWasm();
    expect(Buffer.from(bytes).toString('base64')).toBe(NOISE_WASM_BASE64);
    expect(renderBytesModule(bytes)).toBe(readFileSync(BYTES_PATH, 'utf8'));
  });

  it('fill and perturb compute the normals with the same code (the block between the markers)', () => {
    const wat = readFileSync(WAT_PATH, 'utf8');
    const blocks = wat
      .split(';; ---- normals: begin')
      .slice(1)
      .map((b) => b.split(';; ---- normals: end')[0]);
    expect(blocks).toHaveLength(2);
    expect(blocks[0]!.length).toBeGreaterThan(1000);
    expect(blocks[1]).toBe(blocks[0]);
  });
});
