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

describe('every reduction through groupScores, by hand', () => {
  // 2 units of 2 channels (unitSize 2); members a (rows, span 2), b (rows, span 2), c (columns, span 2).
  const group: PrunableGroup = {
    id: 'layer.0.mlp',
    kind: 'mlp',
    layer: 0,
    units: 2,
    unitSize: 2,
    members: [
      { param: 'a', axis: 0, role: 'up', span: 2, offset: 0 },
      { param: 'b', axis: 0, role: 'gate', span: 2, offset: 0 },
      { param: 'c', axis: 1, role: 'down', span: 2, offset: 0 },
    ],
  };
  // Channel scores (abs-then-sum): a = [1, 2, 3, 4], b = [2, 0, 1, 4], c = [3, 3, 0.5, 1].
  const sal = new Map<string, Float32Array>([
    ['a', Float32Array.from([1, 0, -2, 0, 3, 0, 0, -4])], // 4 x 2: row sums of |.|
    ['b', Float32Array.from([-2, 0, 1, 4])], // 4 x 1
    ['c', Float32Array.from([1, 1, 0.5, -1, 2, 2, 0, 0])], // 2 x 4: column sums of |.|
  ]);
  const shapes = new Map<string, number[]>([
    ['a', [4, 2]],
    ['b', [4, 1]],
    ['c', [2, 4]],
  ]);
  // Per channel across members, then the unit's 2 channels summed: unit 0 = channels 0, 1.
  it.each([
    ['sum', [1 + 2 + 3 + (2 + 0 + 3), 3 + 1 + 0.5 + (4 + 4 + 1)]],
    ['mean', [(1 + 2 + 3) / 3 + (2 + 0 + 3) / 3, (3 + 1 + 0.5) / 3 + (4 + 4 + 1) / 3]],
    ['max', [3 + 3, 3 + 4]],
    ['prod', [1 * 2 * 3 + 2 * 0 * 3, 3 * 1 * 0.5 + 4 * 4 * 1]],
    ['first', [1 + 2, 3 + 4]],
  ] as const)('%s', (r, expected) => {
    const got = [...groupScores(group, sal, shapes, 'abs-then-sum', r)];
    expect(got[0]).toBeCloseTo(expected[0], 12);
    expect(got[1]).toBeCloseTo(expected[1], 12);
  });
  it('sum-then-abs changes only the channel scores: |row sum| / |column sum|', () => {
    // c columns become |1 + 2| = 3, |1 + 2| = 3, |0.5 + 0| = 0.5, |-1 + 0| = 1 (here the same as
    // abs-then-sum); a rows hold one non-zero each. Make a row mix signs to see the difference:
    const mixed = new Map(sal).set('a', Float32Array.from([1, -1, -2, 0, 3, 0, 0, -4])); // row 0: |1 - 1| = 0
    expect([...groupScores(group, mixed, shapes, 'sum-then-abs', 'sum')]).toEqual([
      0 + 2 + 3 + (2 + 0 + 3),
      13.5,
    ]);
    expect([...groupScores(group, mixed, shapes, 'abs-then-sum', 'sum')]).toEqual([
      2 + 2 + 3 + (2 + 0 + 3),
      13.5,
    ]);
  });
  it('a member without salience is an error naming it', () => {
    expect(() => groupScores(group, new Map([['a', sal.get('a')!]]), shapes, 'abs-then-sum', 'sum')).toThrow(
      "no salience for parameter 'b' (group mlp@0)",
    );
  });
});

describe('scoring helpers: edge cases', () => {
  it('1-D salience scores each element by |s|', () => {
    expect([...channelScores(Float32Array.from([-1, 2, -3]), [3], 0, 'sum-then-abs')]).toEqual([1, 2, 3]);
  });
  it('rank 3 or axis 2 is an error', () => {
    expect(() => channelScores(new Float32Array(8), [2, 2, 2], 0, 'abs-then-sum')).toThrow(
      /expected a matrix/,
    );
    expect(() => channelScores(new Float32Array(4), [2, 2], 2, 'abs-then-sum')).toThrow(/axis 0 or 1/);
  });
  it('folds a member that starts at an offset (several groups in one fused parameter)', () => {
    const g: PrunableGroup = {
      id: 'g',
      kind: 'attention',
      layer: 1,
      units: 2,
      unitSize: 1,
      members: [{ param: 'fused', axis: 0, role: 'k', span: 2, offset: 3 }],
    };
    // channels 0..2 belong to another group; unit 0 = channels 3, 4; unit 1 = channels 5, 6.
    expect([...foldSubUnits(Float64Array.from([9, 9, 9, 1, 2, 3, 4]), g, g.members[0]!)]).toEqual([3, 7]);
    expect(memberIndices(g.members[0]!, [1])).toEqual([5, 6]);
    expect(() => foldSubUnits(Float64Array.from([1, 2, 3]), g, g.members[0]!)).toThrow(
      'group attention@1: member fused has 3 channels along axis 0, expected 7',
    );
  });
  it('rounding: the epsilon only absorbs float error, never a real fraction', () => {
    expect(keptCount(10, 0.7)).toBe(3); // 10 * 0.3 = 2.9999999999999996
    expect(keptCount(5, 0.2)).toBe(4);
    expect(keptCount(11008, 0.2)).toBe(8806); // 8806.4
    expect(keptCount(32, 0.25)).toBe(24);
    expect(keptCount(3, 1 / 3)).toBe(2); // 2.0000000000000004 or 1.9999999999999998
    expect(keptCount(7, 0)).toBe(7);
    expect(keptCount(1000001, 0.5)).toBe(500000); // 500000.5
  });
  it('top-k with k >= n keeps everything; global keeps one per layer even when asked for fewer', () => {
    expect(topK([3, 1, 2], 5)).toEqual([0, 1, 2]);
    expect(topK([3, 1, 2], 0)).toEqual([]);
    expect(selectGlobal([[1, 5], [2], [0.5, 0.1, 0.2]], 1)).toEqual([[1], [0], [0]]);
    expect(selectGlobal([[Number.NaN, 1], [Number.NaN]], 2)).toEqual([[1], [0]]);
  });
});
