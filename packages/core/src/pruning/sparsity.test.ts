import { describe, expect, it } from 'vitest';
import { castHost, tensor } from '../dtype.js';
import { countNonZero, sparsityReport } from './sparsity.js';

describe('sparsity', () => {
  it('counts zeros per matrix and finds the N:M patterns every row satisfies', () => {
    // Row 0: blocks [0 1 0 2] [3 0 0 4] -> 2 zeros in each 4-block, 4 in the 8-block.
    // Row 1: [0 0 1 2] [0 5 0 0] -> 2 and 3; 5 in the 8-block.
    const m = tensor([0, 1, 0, 2, 3, 0, 0, 4, 0, 0, 1, 2, 0, 5, 0, 0], [2, 8]);
    const odd = tensor([0, 1, 2, 0, 0, 3], [1, 6]);
    const norm = tensor([1, 0, 2], [3]);
    const params = new Map([
      ['m', m],
      ['m16', castHost(m, 'bfloat16')],
      ['odd', odd],
      ['norm', norm],
    ]);
    const r = sparsityReport(params);
    expect(r.params).toBe(16 + 16 + 6 + 3);
    expect(r.nonzero).toBe(7 + 7 + 3 + 2);
    expect(r.matrices.map((x) => [x.param, x.zeros, x.fraction, x.nm])).toEqual([
      ['m', 9, 9 / 16, { 4: 2, 8: 4 }],
      ['m16', 9, 9 / 16, { 4: 2, 8: 4 }],
      ['odd', 3, 0.5, { 4: 0, 8: 0 }], // 6 columns: no 4- or 8-blocks
    ]);
    expect(countNonZero(params)).toBe(r.nonzero);
    // -0 is a zero, in float32 and in half-precision storage.
    expect(countNonZero(new Map([['z', castHost(tensor([-0, 1], [2]), 'float16')]]))).toBe(1);
    expect(countNonZero(new Map([['z', tensor([-0, 1], [2])]]))).toBe(1);
  });
});
