/**
 * How kept units cut a LLaMA: per-layer configs, hidden channels (GQA shapes, RoPE untouched) and
 * whole-layer removal (renumbering), checked against hand-built expectations and against the
 * original model run without the removed parts.
 */
import {
  type Backend,
  type Criterion,
  type GroupCut,
  type HostTensor,
  isLazyTensor,
  jit,
  lazyTensor,
  prune,
  type Tensor,
  tensor,
} from '@moreau/core';
import { smallConfig } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LlamaConfig } from './config.js';
import { llamaConfigAfterCut, pruneConfig, removeLayers } from './cut.js';
import { llamaGroups } from './groups.js';
import { llamaLogits, llamaStages } from './model.js';
import { randomInit } from './presets.js';
import { LlamaModel } from './prunable.js';
import { ropeTables } from './rope.js';

const cfg = (over: Partial<LlamaConfig> = {}): LlamaConfig =>
  smallConfig({
    hiddenSize: 12,
    intermediateSize: 5,
    numAttentionHeads: 6,
    numKeyValueHeads: 2,
    headDim: 2,
    ...over,
  });

let backend: Backend;
beforeAll(async () => {
  const ort = await import('@moreau/backend-ort');
  backend = await ort.createOrtBackend({ intraOpNumThreads: 2 });
});
afterAll(async () => {
  await backend?.dispose();
});

const ids = (vocab: number, B: number, T: number) =>
  tensor(
    Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % vocab),
    [B, T],
    'int32',
  );

async function logits(model: LlamaModel, x: HostTensor): Promise<Float32Array> {
  const f = jit((p: Record<string, Tensor>, i: Tensor) => llamaLogits(p, i, model.config), { backend });
  const out = (await f(Object.fromEntries(model.params), x)) as HostTensor;
  f.dispose();
  return out.data as Float32Array;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / scale;
}

describe('per-layer configs', () => {
  it('pruneConfig writes per-layer arrays and validates them', () => {
    const c = pruneConfig(cfg(), new Map([[0, { intermediate: 3 }]]));
    expect(c.layerHeadNum).toEqual([6, 6]);
    expect(c.layerKvHeadNum).toEqual([2, 2]);
    expect(c.layerInterSize).toEqual([3, 5]);
    expect(c.intermediateSize).toBe(5);
    expect(pruneConfig(c, new Map([[0, { intermediate: 5 }]])).layerInterSize).toBeUndefined();
    expect(() => pruneConfig(cfg(), new Map([[0, { heads: 4, kvHeads: 2 }]]))).not.toThrow();
    expect(() => pruneConfig(cfg(), new Map([[0, { heads: 3, kvHeads: 2 }]]))).toThrow(/multiple/);
    expect(() => pruneConfig(cfg(), new Map([[0, { intermediate: 0 }]]))).toThrow(/\[1, 5\]/);
    expect(() => pruneConfig(cfg(), new Map([[5, { intermediate: 1 }]]))).toThrow(/out of range/);
  });

  it('llamaConfigAfterCut sets the hidden size and rejects whole-layer groups', () => {
    const c = cfg();
    const [hidden] = llamaGroups(c, { kinds: ['hidden'] });
    const [layer1] = llamaGroups(c, { kinds: ['layer'] }).slice(1);
    expect(llamaConfigAfterCut(c, [{ group: hidden!, kept: [0, 1, 2] }]).hiddenSize).toBe(3);
    expect(() => llamaConfigAfterCut(c, [{ group: layer1!, kept: [0] }])).toThrow(
      /a layer group is not a slice/,
    );
  });
});

describe('channel cut (hidden group) on a GQA model', () => {
  const config = smallConfig({ numHiddenLayers: 2, rmsNormEps: 1e-12 }); // 4 heads / 2 KV heads, head_dim 8, hidden 32
  const keptChannels = Array.from({ length: 32 }, (_, c) => c).filter((c) => c % 4 !== 1); // 24 kept

  it('shrinks the residual width only: q/k/v/o and MLP shapes, head_dim and RoPE unchanged', () => {
    const model = new LlamaModel(config, randomInit(config, 3));
    const [hidden] = model.groups(['hidden']);
    const pruned = model.cut([{ group: hidden!, kept: keptChannels }]);
    const c = pruned.config;
    expect(c.hiddenSize).toBe(24);
    expect([c.headDim, c.numAttentionHeads, c.numKeyValueHeads]).toEqual([8, 4, 2]);
    const shape = (n: string) => pruned.params.get(n)!.shape;
    expect(shape('model.embed_tokens.weight')).toEqual([50, 24]);
    expect(shape('lm_head.weight')).toEqual([50, 24]);
    expect(shape('model.norm.weight')).toEqual([24]);
    expect(shape('model.layers.1.input_layernorm.weight')).toEqual([24]);
    expect(shape('model.layers.1.self_attn.q_proj.weight')).toEqual([4 * 8, 24]);
    expect(shape('model.layers.1.self_attn.k_proj.weight')).toEqual([2 * 8, 24]);
    expect(shape('model.layers.1.self_attn.v_proj.weight')).toEqual([2 * 8, 24]);
    expect(shape('model.layers.1.self_attn.o_proj.weight')).toEqual([24, 4 * 8]);
    expect(shape('model.layers.1.mlp.gate_proj.weight')).toEqual([24, 24]);
    expect(shape('model.layers.1.mlp.down_proj.weight')).toEqual([24, 24]);
    // RoPE depends on head_dim and positions only.
    const before = ropeTables(config, 16);
    const after = ropeTables(c, 16);
    expect(after.cos).toEqual(before.cos);
    expect(after.sin).toEqual(before.sin);
  });

  it('channel scope selects by the members summed over the whole model, ties to the lower channel', async () => {
    // Every element on hidden channel c has magnitude v[c] = floor(c / 3) in every member, so
    // channel c scores v[c] * K, K = the elements one channel has across all members:
    // embed 50 + per layer (2 norms + q 32 + k 16 + v 16 + o 32 + gate / up / down 24) + norm 1 + lm_head 50.
    const v = Array.from({ length: 32 }, (_, c) => Math.floor(c / 3));
    const K = 50 + 2 * (2 + 32 + 16 + 16 + 32 + 3 * 24) + 1 + 50;
    const base = new LlamaModel(config, randomInit(config, 5));
    const [hidden] = base.groups(['hidden']);
    const params = new Map(base.params);
    for (const m of hidden!.members) {
      const t = params.get(m.param)!;
      const [rows, cols] = t.shape.length === 1 ? [1, t.shape[0]!] : (t.shape as [number, number]);
      const data = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++)
        for (let c = 0; c < cols; c++)
          data[r * cols + c] = (c % 2 ? -1 : 1) * v[m.axis === 1 || t.shape.length === 1 ? c : r]!;
      params.set(m.param, { ...t, data });
    }
    const salience: Criterion = {
      name: 'weights',
      description: 'salience = w',
      requires: { gradients: false, calibration: false },
      options: {},
      channelMode: () => 'abs-then-sum',
      defaultReduction: 'sum',
      async score(ctx) {
        for (const p of ctx.params) if (p.member) ctx.salience(p.name, ctx.weight(p.name));
        return {};
      },
    };
    const { plan, model: pruned } = await prune(new LlamaModel(config, params), {
      criterion: salience,
      ratio: 0.25,
      scope: 'channel',
      includeScores: true,
    });
    // Keep 24 of 32: values 10 (30, 31), 9 .. 4 (three channels each) = 20, then 3 (9, 10, 11) = 23,
    // then one of the value-2 channels 6, 7, 8: channel 6.
    expect(plan.groups[0]!.kept).toEqual([6, ...Array.from({ length: 23 }, (_, i) => i + 9)]);
    expect(plan.groups[0]!.scores).toEqual(v.map((x) => x * K));
    expect((pruned as LlamaModel).config).toMatchObject({ hiddenSize: 24, headDim: 8, numKeyValueHeads: 2 });
  });

  it('removing dead channels changes nothing but the RMSNorm width: positions and heads are intact', async () => {
    // Channels that the embedding never writes and no layer writes to stay zero in the residual
    // stream. Cutting them leaves every attention score (RoPE included) and every logit as it was,
    // once the RMSNorm weights absorb the width factor sqrt(H / H').
    const params = randomInit(config, 7, { std: 0.2 });
    const dead = Array.from({ length: 32 }, (_, c) => c).filter((c) => !keptChannels.includes(c));
    const zeroCols = (name: string) => {
      const t = params.get(name)!;
      const d = t.data as Float32Array;
      const [r, k] = t.shape as [number, number];
      for (let i = 0; i < r; i++) for (const c of dead) d[i * k + c] = 0;
    };
    const zeroRows = (name: string) => {
      const t = params.get(name)!;
      const d = t.data as Float32Array;
      const k = t.shape[1]!;
      for (const c of dead) d.fill(0, c * k, (c + 1) * k);
    };
    zeroCols('model.embed_tokens.weight');
    for (let l = 0; l < config.numHiddenLayers; l++) {
      zeroRows(`model.layers.${l}.self_attn.o_proj.weight`);
      zeroRows(`model.layers.${l}.mlp.down_proj.weight`);
    }
    const model = new LlamaModel(config, params);
    const [hidden] = model.groups(['hidden']);
    const pruned = model.cut([{ group: hidden!, kept: keptChannels }]);
    const scale = Math.sqrt(32 / 24);
    const rescaled = new Map(
      [...pruned.params].map(([k, t]) =>
        k.endsWith('norm.weight')
          ? [
              k,
              tensor(
                (t.data as Float32Array).map((v) => v * scale),
                t.shape,
              ),
            ]
          : [k, t],
      ),
    );
    const x = ids(config.vocabSize, 2, 12);
    const want = await logits(model, x);
    const got = await logits(pruned.withParams(rescaled), x);
    expect(maxRelDiff(got, want)).toBeLessThan(1e-5);
  });
});

describe('layer removal', () => {
  it('renumbers the layers after a removed one and keeps per-layer sizes with their layers', () => {
    const base = cfg({ numHiddenLayers: 4 });
    const config = pruneConfig(
      base,
      new Map([
        [2, { intermediate: 3 }],
        [3, { heads: 3, kvHeads: 1 }],
      ]),
    );
    const params = randomInit(config, 2);
    const lazy = new Map([...params].map(([k, t]) => [k, lazyTensor(t.shape, t.dtype, () => t.data)]));
    const out = removeLayers(config, lazy, new Set([0, 2]));
    expect(out.config.numHiddenLayers).toBe(2);
    expect(out.config.layerInterSize).toEqual([5, 5]);
    expect(out.config.layerHeadNum).toEqual([6, 3]);
    expect(out.config.layerKvHeadNum).toEqual([2, 1]);
    expect([...out.params.keys()].filter((k) => k.includes('layers.')).length).toBe(2 * 9);
    // New layer 0 is old layer 1, new layer 1 old layer 3; tensors move without being read.
    expect(out.params.get('model.layers.0.mlp.up_proj.weight')).toBe(
      lazy.get('model.layers.1.mlp.up_proj.weight'),
    );
    expect(out.params.get('model.layers.1.self_attn.q_proj.weight')).toBe(
      lazy.get('model.layers.3.self_attn.q_proj.weight'),
    );
    expect(isLazyTensor(out.params.get('model.layers.1.self_attn.q_proj.weight')!)).toBe(true);
    expect(out.params.get('model.norm.weight')).toBe(lazy.get('model.norm.weight'));
    // Removing layers 0 and 2 leaves uniform sizes? No: layer 3's heads differ, so arrays stay.
    expect(removeLayers(config, params, new Set([3])).config.layerHeadNum).toEqual([6, 6, 6]);
    expect(removeLayers(config, params, new Set([2, 3])).config.layerInterSize).toBeUndefined();
    expect(() => removeLayers(config, params, new Set([0, 1, 2, 3]))).toThrow(/at least 1 must stay/);
  });

  it('the cut model computes the original model with those layers skipped', async () => {
    const config = smallConfig({ numHiddenLayers: 3 });
    const model = new LlamaModel(config, randomInit(config, 11, { std: 0.2 }));
    const cuts: GroupCut[] = model
      .groups(['layer'])
      .map((group) => ({ group, kept: group.layer === 1 ? [] : [0] }));
    const pruned = model.cut(cuts);
    expect(pruned.numLayers).toBe(2);
    const x = ids(config.vocabSize, 2, 9);
    // The original stages, run without layer 1.
    const st = llamaStages(config);
    const local = (names: Readonly<Record<string, string>>) =>
      Object.fromEntries(Object.entries(names).map(([k, n]) => [k, model.params.get(n)!]));
    const f = jit(
      (p: Record<string, Record<string, Tensor>>, i: Tensor) => {
        let h = st.embedFn(p.embed!, i);
        for (const l of [0, 2]) h = st.layerFn(st.layers[l]!.key)(p[`layer${l}`]!, h);
        return st.headFn(p.head!, h);
      },
      { backend },
    );
    const want = (await f(
      {
        embed: local(st.embed.params),
        layer0: local(st.layers[0]!.params),
        layer2: local(st.layers[2]!.params),
        head: local(st.head.params),
      } as never,
      x,
    )) as HostTensor;
    f.dispose();
    expect(maxRelDiff(await logits(pruned, x), want.data as Float32Array)).toBeLessThan(1e-6);
  });
});
