import { describe, expect, it } from 'vitest';
import { Rng } from './index.js';

// The generator is xoshiro128** seeded through a splitmix-style 32-bit hash, written with 32-bit
// integer operations only (Math.imul, >>>, ^), so its integer and uniform streams are bit-identical
// on every platform and engine. The pinned values below were computed once from this
// implementation and cross-checked against an independent Python implementation of the same
// algorithm; the statistical tests show the stream they pin is a sane one.
describe('Rng', () => {
  it('pins the first 32-bit outputs of seed 42', () => {
    const r = new Rng(42);
    expect(Array.from({ length: 6 }, () => r.nextUint32())).toEqual([
      3704290710, 166753127, 957952423, 1464233848, 469586928, 2328421194,
    ]);
    expect(new Rng(0).nextUint32()).toBe(1292791899);
    expect(new Rng(-1).nextUint32()).toBe(2464728017);
  });

  it('pins the first uniforms exactly (53 bits from two draws) and ints, permutations derived from them', () => {
    const r = new Rng(42);
    expect([r.uniform(), r.uniform(), r.uniform()]).toEqual([
      0.8624723854573461, 0.2230406801471002, 0.10933422701155993,
    ]);
    const q = new Rng(42);
    expect(Array.from({ length: 8 }, () => q.int(10))).toEqual([8, 2, 1, 0, 7, 9, 6, 2]);
    expect(new Rng(42).permutation(8)).toEqual([4, 7, 2, 3, 5, 0, 1, 6]);
  });

  it('pins the first normals (Box-Muller; log/cos/sin are not bit-specified by ECMAScript, so to 1e-12)', () => {
    const r = new Rng(42);
    const got = Array.from({ length: 4 }, () => r.normal());
    const want = [0.09170342739092605, 0.5361853935955353, 2.035688761309105, 0.5316604535851639];
    got.forEach((v, i) => {
      expect(v).toBeCloseTo(want[i]!, 12);
    });
  });

  it('is deterministic per seed, different across seeds, and forks reproducibly', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const c = new Rng(8);
    const xs = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.nextUint32())).not.toEqual(xs);
    const f1 = new Rng(9).fork();
    const f2 = new Rng(9).fork();
    expect(f1.normalArray(4)).toEqual(f2.normalArray(4));
  });

  it('draws normals with mean 0 and variance 1 (1e5 draws; bounds ~6 standard errors)', () => {
    const n = 100_000;
    const x = new Rng(2024).normalArray(n);
    let s = 0;
    let s2 = 0;
    let s4 = 0;
    for (const v of x) {
      s += v;
      s2 += v * v;
      s4 += v ** 4;
    }
    const mean = s / n;
    const variance = s2 / n - mean * mean;
    expect(Math.abs(mean)).toBeLessThan(0.02); // standard error 0.0032
    expect(Math.abs(variance - 1)).toBeLessThan(0.03); // standard error 0.0045
    expect(Math.abs(s4 / n - 3)).toBeLessThan(0.15); // kurtosis of a normal: 3 (standard error ~0.025)
    const scaled = new Rng(1).normalArray(n, 5, 2);
    const m = scaled.reduce((p, v) => p + v, 0) / n;
    expect(Math.abs(m - 5)).toBeLessThan(0.04);
  });

  it('draws uniforms inside [0, 1) (and [lo, hi)) with the right mean and variance', () => {
    const n = 100_000;
    const r = new Rng(99);
    let s = 0;
    let s2 = 0;
    let lo = 1;
    let hi = 0;
    for (let i = 0; i < n; i++) {
      const u = r.uniform();
      s += u;
      s2 += u * u;
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    expect(lo).toBeLessThan(1e-3);
    expect(hi).toBeGreaterThan(1 - 1e-3);
    expect(Math.abs(s / n - 0.5)).toBeLessThan(0.006); // standard error 0.0009
    expect(Math.abs(s2 / n - (s / n) ** 2 - 1 / 12)).toBeLessThan(0.003);
    const u = new Rng(5).uniformArray(10_000, -3, 2);
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-3);
    expect(Math.max(...u)).toBeLessThan(2);
  });

  it('draws ints uniformly and permutations that are permutations', () => {
    const r = new Rng(3);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 50_000; i++) counts[r.int(10)]!++;
    for (const c of counts) expect(Math.abs(c - 5000)).toBeLessThan(400); // sd ~67
    const p = r.permutation(100);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('rejects bad arguments', () => {
    expect(() => new Rng(Number.NaN)).toThrow(/seed must be a finite number/);
    expect(() => new Rng(1).int(0)).toThrow(/positive integer/);
    expect(() => new Rng(1).int(2.5)).toThrow(/positive integer/);
  });
});
