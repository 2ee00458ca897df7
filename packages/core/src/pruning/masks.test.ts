import { describe, expect, it } from 'vitest';
import { tensor } from '../dtype.js';
import { fromBase64, toBase64 } from '../internal/base64.js';
import { isLazyTensor, lazyTensor } from '../lazy.js';
import { applyMask, bitAt, countBits, type ElementRule, elementMask } from './masks.js';

const unstructured = (ratio: number, keepLowRatio = 0, seed = 1): ElementRule => ({
  kind: 'unstructured',
  ratio,
  n: 0,
  m: 0,
  keepLowRatio,
  seed,
});
const nm = (n: number, m: number, keepLowRatio = 0): ElementRule => ({
  kind: 'n:m',
  ratio: 0,
  n,
  m,
  keepLowRatio,
  seed: 1,
});
/** The zeroed positions of a [rows, cols] mask, row by row. */
const zeroed = (bits: Uint8Array, rows: number, cols: number) =>
  Array.from({ length: rows }, (_, r) =>
    Array.from({ length: cols }, (_, c) => c).filter((c) => bitAt(bits, r * cols + c)),
  );

describe('unstructured masks', () => {
  it('zero floor(cols * ratio) lowest |salience| per row; ties: the lower column first (stable sort)', () => {
    // Row 0: |s| = 3 1 4 1 5 9 2 6 -> the 3 lowest (floor(8 * 0.4)) are 1 (col 1), 1 (col 3), 2 (col 6).
    // Row 1: all equal -> columns 0, 1, 2. Row 2: signs do not matter; -0.5 ties 0.5: col 2 before 5.
    const s = [3, 1, 4, 1, 5, 9, 2, 6, 7, 7, 7, 7, 7, 7, 7, 7, 9, 8, -0.5, 3, 2, 0.5, 0.1, 4];
    const bits = elementMask(Float32Array.from(s), [3, 8], unstructured(0.4), 'w');
    expect(zeroed(bits, 3, 8)).toEqual([
      [1, 3, 6],
      [0, 1, 2],
      [2, 5, 6],
    ]);
  });

  it('NaN ranks lowest; the epsilon keeps 10 * 0.3 at 3; ratio 0 zeroes nothing', () => {
    const s = Float32Array.from([5, Number.NaN, 4, 3, 2, 1, 6, 7, 8, 9]);
    expect(zeroed(elementMask(s, [1, 10], unstructured(0.3), 'w'), 1, 10)).toEqual([[1, 4, 5]]);
    expect(countBits(elementMask(s, [1, 10], unstructured(0), 'w'))).toBe(0);
  });

  it('float64 salience masks exactly like its float32 rounding (what a plan stores)', () => {
    // In float64 column 1 is lower; in float32 both are 1 and the tie goes to column 0.
    const a = 1 + 2 ** -30;
    const bits = elementMask(Float64Array.from([a, 1, 2, 3]), [1, 4], unstructured(0.25), 'w');
    expect(zeroed(bits, 1, 4)).toEqual([[0]]);
  });
});

describe('N:M masks', () => {
  it('zero the N lowest of every M consecutive columns, ties to the lower column', () => {
    // 2:4 on two rows of 8: blocks [4 1 3 2] -> cols 1, 3; [5 5 5 5] -> 4, 5;
    // [0 -9 1 8] -> 0, 2; [2 2 1 1] -> 6, 7.
    const s = [4, 1, 3, 2, 5, 5, 5, 5, 0, -9, 1, 8, 2, 2, 1, 1];
    expect(zeroed(elementMask(Float32Array.from(s), [2, 8], nm(2, 4), 'w'), 2, 8)).toEqual([
      [1, 3, 4, 5],
      [8 - 8, 10 - 8, 6, 7],
    ]);
    // 1:4 keeps three of four.
    expect(zeroed(elementMask(Float32Array.from(s), [2, 8], nm(1, 4), 'w'), 2, 8)).toEqual([
      [1, 4],
      [0, 6],
    ]);
  });

  it('a width that is not a multiple of M is an error naming the matrix', () => {
    expect(() => elementMask(new Float32Array(6), [1, 6], nm(2, 4), 'model.x.weight')).toThrow(
      /scope 2:4 needs every pruned matrix's input width to be a multiple of 4; 'model.x.weight' has 6 columns/,
    );
  });
});

describe('keepLowRatio', () => {
  it('keeps floor(P * k) of the P zeroed weights, a seeded subset that depends on the name', () => {
    const s = Float32Array.from({ length: 64 * 32 }, (_, i) => (i * 7919) % 1000);
    const base = elementMask(s, [64, 32], unstructured(0.5), 'w');
    expect(countBits(base)).toBe(64 * 16);
    const a = elementMask(s, [64, 32], unstructured(0.5, 0.1, 3), 'w');
    expect(countBits(a)).toBe(64 * 16 - Math.floor(1024 * 0.1));
    // Only would-be-zeroed weights are kept back.
    for (let i = 0; i < s.length; i++) if (bitAt(a, i)) expect(bitAt(base, i)).toBe(true);
    expect(elementMask(s, [64, 32], unstructured(0.5, 0.1, 3), 'w')).toEqual(a);
    expect(elementMask(s, [64, 32], unstructured(0.5, 0.1, 4), 'w')).not.toEqual(a);
    expect(elementMask(s, [64, 32], unstructured(0.5, 0.1, 3), 'v')).not.toEqual(a);
    // N:M with keepLowRatio (the reference applies it after either rule).
    expect(countBits(elementMask(s, [64, 32], nm(2, 4, 0.25), 'w'))).toBe(1024 - 256);
  });
});

describe('bitsets', () => {
  it('base64 round-trips any length; bad text is refused', () => {
    for (const n of [0, 1, 2, 3, 4, 5, 100]) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 255);
      const text = toBase64(b);
      expect(text).toBe(Buffer.from(b).toString('base64'));
      expect(fromBase64(text)).toEqual(b);
    }
    expect(fromBase64('abc')).toBeUndefined();
    expect(fromBase64('a=bc')).toBeUndefined();
    expect(fromBase64('ab!c')).toBeUndefined();
  });

  it('applyMask zeroes in the storage dtype and keeps a lazy tensor lazy', () => {
    const t = tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3], 'float16');
    const bits = Uint8Array.from([0b00010001, 0b1]); // elements 0, 4, 8
    const out = applyMask(t, bits);
    expect(out.dtype).toBe('float16');
    expect(Array.from(out.data).map((v, i) => (v === 0 ? 0 : i + 1))).toEqual([0, 2, 3, 4, 0, 6, 7, 8, 0]);
    expect(Array.from(t.data).every((v) => v !== 0)).toBe(true); // the input is untouched
    let reads = 0;
    const lazy = lazyTensor([3, 3], 'float16', () => {
      reads++;
      return t.data.slice();
    });
    const masked = applyMask(lazy, bits);
    expect(isLazyTensor(masked)).toBe(true);
    expect(reads).toBe(0);
    expect(Array.from(masked.data)).toEqual(Array.from(out.data));
  });
});
