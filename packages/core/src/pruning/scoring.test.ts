import { describe, expect, it } from 'vitest';
import type { PrunableGroup } from './groups.js';
import { memberIndices } from './groups.js';
import { channelScores, foldSubUnits, groupScores, reduceMembers, sumChannelsIntoUnits } from './scoring.js';
import { keptCount, selectGlobal, selectLocal, topK } from './selection.js';

describe('channel scores', () => {
  const s = Float32Array.from([1, -2, 3, -4, 5, -6]); // [2, 3]
  it('abs-then-sum along rows and columns', () => {
    expect([...channelScores(s, [2, 3], 0, 'abs-then-sum')]).toEqual([6, 15]);
    expect([...channelScores(s, [2, 3], 1, 'abs-then-sum')]).toEqual([5, 7, 9]);
  });
  it('sum-then-abs (vectorize) along rows and columns', () => {
    expect([...channelScores(s, [2, 3], 0, 'sum-then-abs')]).toEqual([2, 5]); // |1-2+3|, |-4+5-6|
    expect([...channelScores(s, [2, 3], 1, 'sum-then-abs')]).toEqual([3, 3, 3]);
  });
});

describe('member reductions', () => {
  const a = Float64Array.from([1, 4]);
  const b = Float64Array.from([3, 2]);
  it.each([
    ['sum', [4, 6]],
    ['mean', [2, 3]],
    ['max', [3, 4]],
    ['prod', [3, 8]],
    ['first', [1, 4]],
  ] as const)('%s', (r, expected) => {
    expect([...reduceMembers([a, b], r)]).toEqual(expected);
  });
});

describe('grouped-query attention unit scores', () => {
  // 4 query heads, 2 KV heads, head_dim 2: KV group g owns query heads 2g, 2g+1.
  const group: PrunableGroup = {
    id: 'layer.0.attention',
    kind: 'attention',
    layer: 0,
    units: 2,
    unitSize: 2,
    members: [
      { param: 'q', axis: 0, role: 'q', span: 4, offset: 0 },
      { param: 'k', axis: 0, role: 'k', span: 2, offset: 0 },
      { param: 'o', axis: 1, role: 'o', span: 4, offset: 0 },
    ],
  };
  it('maps units to member indices', () => {
    expect(memberIndices(group.members[0]!, [1])).toEqual([4, 5, 6, 7]);
    expect(memberIndices(group.members[1]!, [1])).toEqual([2, 3]);
  });
  it('folds query heads onto KV channels, reduces members, sums head_dim', () => {
    // q rows (8 rows x 1 col) channel scores 1..8; k rows (4 x 1) 10,20,30,40; o columns (1 x 8) all 1.
    const sal = new Map<string, Float32Array>([
      ['q', Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8])],
      ['k', Float32Array.from([10, 20, 30, 40])],
      ['o', new Float32Array(8).fill(1)],
    ]);
    const shapes = new Map<string, number[]>([
      ['q', [8, 1]],
      ['k', [4, 1]],
      ['o', [1, 8]],
    ]);
    // Folded q: g0 = [1+3, 2+4] = [4, 6]; g1 = [5+7, 6+8] = [12, 14]. Folded o: [2, 2, 2, 2].
    expect([
      ...foldSubUnits(channelScores(sal.get('q')!, [8, 1], 0, 'abs-then-sum'), group, group.members[0]!),
    ]).toEqual([4, 6, 12, 14]);
    // sum: g0 = (4+10+2) + (6+20+2) = 44; g1 = (12+30+2) + (14+40+2) = 100
    expect([...groupScores(group, sal, shapes, 'abs-then-sum', 'sum')]).toEqual([44, 100]);
    // max per channel: g0 = 10 + 20 = 30; g1 = 30 + 40 = 70
    expect([...groupScores(group, sal, shapes, 'abs-then-sum', 'max')]).toEqual([30, 70]);
    expect([...sumChannelsIntoUnits(Float64Array.from([1, 2, 3, 4]), 2, 2)]).toEqual([3, 7]);
  });
});

describe('selection and rounding', () => {
  it('keeps floor(n * (1 - r)), at least 1', () => {
    expect(keptCount(8, 0.2)).toBe(6); // 6.4
    expect(keptCount(172, 0.2)).toBe(137); // 137.6
    expect(keptCount(10, 0.3)).toBe(7); // 7 exactly despite float error
    expect(keptCount(4, 0.9)).toBe(1); // 0.4 -> at least one
    expect(keptCount(1, 0.5)).toBe(1);
    expect(() => keptCount(4, 1)).toThrow(/ratio/);
    expect(() => keptCount(4, 1.5)).toThrow(/\[0, 1\)/);
  });
  it('top-k keeps the best, ties to the lower index, NaN last', () => {
    expect(topK([0.5, 0.9, 0.5, 0.1], 2)).toEqual([0, 1]);
    expect(topK([Number.NaN, 1, 2], 2)).toEqual([1, 2]);
    expect(selectLocal([3, 1, 2, 5, 4], 0.4)).toEqual([0, 3, 4]);
  });
  it('global ranking pools layers and keeps one unit per layer', () => {
    // 2 layers of 3; keep 3 of 6: the global best are 9, 8, 7 all in layer 0, but layer 1 keeps its best.
    expect(
      selectGlobal(
        [
          [9, 8, 7],
          [1, 3, 2],
        ],
        3,
      ),
    ).toEqual([[0, 1], [1]]);
    expect(
      selectGlobal(
        [
          [9, 1],
          [8, 2],
        ],
        2,
      ),
    ).toEqual([[0], [0]]);
  });
});
