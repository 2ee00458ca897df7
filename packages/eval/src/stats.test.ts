import { describe, expect, it } from 'vitest';
import { averageRanks, jaccard, mean, sampleSd, spearman } from './internal/stats.js';

describe('statistics', () => {
  it('average ranks for ties', () => {
    expect(averageRanks([10, 20, 20, 5])).toEqual([2, 3.5, 3.5, 1]);
  });
  it('spearman: monotone = 1, reversed = -1, ties averaged', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 100])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    // ranks a = [1, 2, 3, 4], b = [1.5, 1.5, 3, 4]: Pearson of the ranks.
    const rb = [1.5, 1.5, 3, 4];
    const ma = 2.5;
    const mb = 2.5;
    const cov = [1, 2, 3, 4].reduce((s, r, i) => s + (r - ma) * (rb[i]! - mb), 0);
    const va = [1, 2, 3, 4].reduce((s, r) => s + (r - ma) ** 2, 0);
    const vb = rb.reduce((s, r) => s + (r - mb) ** 2, 0);
    expect(spearman([1, 2, 3, 4], [7, 7, 8, 9])).toBeCloseTo(cov / Math.sqrt(va * vb), 12);
    expect(spearman([1, Number.NaN, 2], [3, 1, 4])).toBeCloseTo(1, 12);
  });
  it('jaccard, mean, sample sd', () => {
    expect(jaccard(new Set([1, 2, 3]), new Set([2, 3, 4]))).toBe(0.5);
    expect(jaccard(new Set(), new Set())).toBe(1);
    expect(mean([1, 2, 3])).toBe(2);
    expect(sampleSd([1, 2, 3])).toBe(1);
    expect(sampleSd([4])).toBe(0);
  });
});
