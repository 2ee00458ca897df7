import {
  cutGroups,
  selectIndices as indexSelect,
  memberIndices as indicesForUnits,
  tensor,
} from '@moreau/core';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import type { LlamaConfig } from './config.js';
import { pruneConfig } from './cut.js';
import { llamaAttentionGroup, llamaGroups, llamaMlpGroup } from './groups.js';
import { randomInit } from './presets.js';
import { cutLlamaModel } from './test-fixtures.js';

const cfg = (over: Partial<LlamaConfig> = {}): LlamaConfig =>
  smallConfig({
    vocabSize: 10,
    hiddenSize: 12,
    intermediateSize: 5,
    numAttentionHeads: 6,
    headDim: 2,
    maxPositionEmbeddings: 32,
    ...over,
  });

const byRole = (g: ReturnType<typeof llamaAttentionGroup>, role: string) =>
  g.members.find((m) => m.role === role)!;

describe('prunable groups', () => {
  it('GQA attention: KV group g = its k/v rows, its query heads q rows and o columns (by hand)', () => {
    // 6 heads, 2 KV heads, head_dim 2: groupSize 3. KV group 1 = KV head 1 = k/v rows 2, 3;
    // query heads 3, 4, 5 = q rows 6..11 and o columns 6..11.
    const g = llamaAttentionGroup(cfg(), 1);
    expect(g).toMatchObject({
      id: 'layer.1.attention',
      kind: 'attention',
      layer: 1,
      units: 2,
      unitSize: 2,
    });
    expect(g.members.map((m) => [m.param, m.axis, m.role])).toEqual([
      ['model.layers.1.self_attn.q_proj.weight', 0, 'q'],
      ['model.layers.1.self_attn.k_proj.weight', 0, 'k'],
      ['model.layers.1.self_attn.v_proj.weight', 0, 'v'],
      ['model.layers.1.self_attn.o_proj.weight', 1, 'o'],
    ]);
    expect(indicesForUnits(byRole(g, 'q'), [1])).toEqual([6, 7, 8, 9, 10, 11]);
    expect(indicesForUnits(byRole(g, 'k'), [1])).toEqual([2, 3]);
    expect(indicesForUnits(byRole(g, 'v'), [1])).toEqual([2, 3]);
    expect(indicesForUnits(byRole(g, 'o'), [1])).toEqual([6, 7, 8, 9, 10, 11]);
    expect(indicesForUnits(byRole(g, 'k'), [1, 0, 1])).toEqual([0, 1, 2, 3]);
  });

  it('MHA is group size 1', () => {
    const g = llamaAttentionGroup(cfg({ numKeyValueHeads: 6 }), 0);
    expect(g.units).toBe(6);
    expect(byRole(g, 'q').span).toBe(byRole(g, 'k').span);
    expect(indicesForUnits(byRole(g, 'q'), [0, 4])).toEqual([0, 1, 8, 9]);
    expect(indicesForUnits(byRole(g, 'k'), [0, 4])).toEqual([0, 1, 8, 9]);
  });

  it('MLP channel c: row c of gate / up, column c of down', () => {
    const g = llamaMlpGroup(cfg(), 0);
    expect(g.units).toBe(5);
    expect(g.members.map((m) => [m.role, m.axis])).toEqual([
      ['gate', 0],
      ['up', 0],
      ['down', 1],
    ]);
    for (const m of g.members) expect(indicesForUnits(m, [4, 1])).toEqual([1, 4]);
  });

  it('lists hidden and whole-layer groups, honouring per-layer sizes', () => {
    const c = pruneConfig(cfg(), new Map([[1, { heads: 3, kvHeads: 1, intermediate: 2 }]]));
    const groups = llamaGroups(c);
    expect(groups.map((g) => g.id)).toEqual([
      'layer.0.attention',
      'layer.0.mlp',
      'layer.1.attention',
      'layer.1.mlp',
      'hidden',
      'layer.0',
      'layer.1',
    ]);
    expect(groups[2]!.units).toBe(1);
    expect(groups[3]!.units).toBe(2);
    const hidden = groups[4]!;
    expect(hidden.units).toBe(12);
    // embed + 9 per layer + final norm + lm_head
    expect(hidden.members.length).toBe(1 + 9 * 2 + 2);
    expect(hidden.members.find((m) => m.param === 'model.embed_tokens.weight')!.axis).toBe(1);
    expect(hidden.members.find((m) => m.param === 'model.layers.0.self_attn.o_proj.weight')!.axis).toBe(0);
    expect(hidden.members.find((m) => m.param === 'lm_head.weight')!.axis).toBe(1);
    expect(llamaGroups(cfg({ tieWordEmbeddings: true }), { kinds: ['hidden'] })[0]!.members.length).toBe(
      1 + 9 * 2 + 1,
    );
    const layer1 = groups[6]!;
    expect(layer1.members.length).toBe(9);
    expect(layer1.members.find((m) => m.role === 'q')!.span).toBe(6);
  });

  it('indexSelect keeps dtype and selects along either axis', () => {
    const t = tensor([0, 1, 2, 3, 4, 5], [2, 3], 'float16');
    const cols = indexSelect(t, 1, [2, 0]);
    expect(cols.dtype).toBe('float16');
    expect(cols.shape).toEqual([2, 2]);
    expect(Array.from(indexSelect(tensor([0, 1, 2, 3, 4, 5], [2, 3]), 1, [2, 0]).data)).toEqual([2, 0, 5, 3]);
    expect(Array.from(indexSelect(tensor([0, 1, 2, 3, 4, 5], [3, 2], 'int32'), 0, [2]).data)).toEqual([4, 5]);
    expect(() => indexSelect(t, 1, [3])).toThrow(/out of range/);
  });

  it('cutModel on a LlamaModel selects the right slices and leaves other params alone', () => {
    const c = cfg();
    const p = randomInit(c, 1);
    const { params, config } = cutLlamaModel(c, p, { 'layer.0.attention': [1], 'layer.1.mlp': [0, 4] });
    expect(config.layerHeadNum).toEqual([3, 6]);
    expect(config.layerKvHeadNum).toEqual([1, 2]);
    expect(config.layerInterSize).toEqual([5, 2]);
    const q = params.get('model.layers.0.self_attn.q_proj.weight')!;
    expect(q.shape).toEqual([6, 12]);
    const q0 = p.get('model.layers.0.self_attn.q_proj.weight')!.data as Float32Array;
    expect(Array.from(q.data)).toEqual(Array.from(q0.subarray(6 * 12, 12 * 12)));
    const o = params.get('model.layers.0.self_attn.o_proj.weight')!;
    expect(o.shape).toEqual([12, 6]);
    expect(o.data[0]).toBe((p.get('model.layers.0.self_attn.o_proj.weight')!.data as Float32Array)[6]);
    const down = params.get('model.layers.1.mlp.down_proj.weight')!;
    expect(down.shape).toEqual([12, 2]);
    const d0 = p.get('model.layers.1.mlp.down_proj.weight')!.data as Float32Array;
    expect(Array.from(down.data.subarray(0, 4))).toEqual([d0[0], d0[4], d0[5], d0[9]]);
    expect(params.get('model.embed_tokens.weight')).toBe(p.get('model.embed_tokens.weight'));
    expect(() => cutGroups(p, [{ group: llamaGroups(c)[1]!, kept: [] }])).toThrow(/no unit/);
    expect(() => cutLlamaModel(c, p, { 'layer.0.mlp': [5] })).toThrow(/out of range/);
    // Units are taken in index order, whatever order they are given in.
    const sorted = cutLlamaModel(c, p, { 'layer.0.mlp': [1, 2] });
    const unsorted = cutLlamaModel(c, p, { 'layer.0.mlp': [2, 1] });
    expect(unsorted.config).toEqual(sorted.config);
    for (const [k, t] of sorted.params)
      expect(Array.from(unsorted.params.get(k)!.data)).toEqual(Array.from(t.data));
  });
});
