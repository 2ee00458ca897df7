/**
 * LoRA on the LLaMA: the adapted model's forward equals the merged model's, a zero B changes
 * nothing, the gradients of A and B match finite differences (with dropout and a loss mask), merge
 * then unmerge gives the weights back, and layer-streamed passes equal the whole graph.
 */
import {
  type Backend,
  castHost,
  findLoraTargets,
  type HostTensor,
  initLora,
  isLoraParam,
  type LoraAdapters,
  type LoraConfig,
  loraDropoutInputs,
  loraDropoutKey,
  loraNames,
  ModelExecutor,
  mergeLora,
  mergeLoraWeight,
  ops,
  ReferenceBackend,
  Rng,
  type StageInputs,
  type Tensor,
  tensor,
  unmergeLora,
} from '@moreau/core';
import { finiteDifferenceGradients, relativeError } from '@moreau/core/testing';
import { smallConfig } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomInit } from './presets.js';
import { LlamaModel } from './prunable.js';
import { cutLlamaModel } from './test-fixtures.js';

const config = smallConfig({ hiddenSize: 16, intermediateSize: 12, headDim: 4, vocabSize: 23 });
// Uneven layers: layer 0 keeps one KV group (2 heads) and 8 MLP channels.
const base = cutLlamaModel(config, randomInit(config, 3), {
  'layer.0.attention': [1],
  'layer.0.mlp': [0, 1, 2, 3, 5, 7, 9, 10],
});
const lora: LoraConfig = {
  r: 2,
  alpha: 6,
  dropout: 0.25,
  targets: ['q_proj', 'v_proj', 'o_proj', 'down_proj'],
};
const targets = findLoraTargets(base.params, lora.targets);

/** Adapters with a non-zero B (fresh ones have B = 0). */
function trainedAdapters(seed = 5): LoraAdapters {
  const params = initLora(targets, lora.r, seed);
  const rng = new Rng(seed + 1);
  for (const [name, t] of params) {
    if (name.includes('lora_B'))
      params.set(name, tensor(rng.normalArray(t.data.length, 0, 0.3), t.shape, 'float32'));
  }
  return { config: lora, params };
}

const rng = new Rng(11);
const ids = tensor(
  Int32Array.from({ length: 2 * 7 }, () => rng.int(config.vocabSize)),
  [2, 7],
  'int32',
);
const logitsOut = (head: (h: Tensor) => Tensor, hidden: Tensor) => ({ logits: head(hidden) });

async function logits(model: LlamaModel, backend: Backend, mode: 'whole' | 'streamed' = 'whole') {
  const exec = await ModelExecutor.create(model, { backend, mode });
  const [out] = await exec.forward([ids], logitsOut, 'logits');
  exec.dispose();
  return out!.logits!;
}

const reference = new ReferenceBackend();

describe('LoRA on the LLaMA', () => {
  it('picks the listed projections of every layer, with their (pruned) shapes', () => {
    expect(targets.map((t) => t.weight)).toContain('model.layers.0.self_attn.q_proj.weight');
    expect(targets).toHaveLength(8);
    const q0 = targets.find((t) => t.weight === 'model.layers.0.self_attn.q_proj.weight')!;
    expect([q0.out, q0.in]).toEqual([2 * 4, 16]);
    const a = initLora(targets, 2, 1).get(loraNames(q0.weight).a)!;
    expect(a.shape).toEqual([2, 16]);
    for (const v of a.data as Float32Array) expect(Math.abs(v)).toBeLessThanOrEqual(1 / Math.sqrt(16));
    expect(() => findLoraTargets(base.params, ['qproj'])).toThrow(/'qproj'.*its modules: .*q_proj/);
  });

  it('fresh adapters (B = 0) leave the logits unchanged, bit for bit', async () => {
    const adapted = base.withLora({ config: lora, params: initLora(targets, lora.r, 1) });
    expect(Array.from((await logits(adapted, reference)).data)).toEqual(
      Array.from((await logits(base, reference)).data),
    );
  });

  it("the adapted model's forward equals the merged model's (rel 1e-6), whole and streamed", async () => {
    const adapters = trainedAdapters();
    const adapted = base.withLora(adapters);
    const merged = new LlamaModel(base.config, mergeLora(base.params, adapters));
    const want = await logits(merged, reference);
    expect(relativeError(await logits(adapted, reference), want)).toBeLessThan(1e-6);
    expect(relativeError(await logits(adapted, reference, 'streamed'), want)).toBeLessThan(1e-6);
    // And the adapters matter: the base model's logits are far from these.
    expect(relativeError(await logits(base, reference), want)).toBeGreaterThan(1e-3);
  });

  it('merge then unmerge gives the weights back (float32 and float16 storage)', () => {
    const adapters = trainedAdapters();
    const w = base.params.get(targets[0]!.weight)!;
    const { a, b } = loraNames(targets[0]!.weight);
    const A = adapters.params.get(a)!;
    const B = adapters.params.get(b)!;
    const back = mergeLoraWeight(mergeLoraWeight(w, A, B, 3), A, B, 3, -1);
    expect(relativeError(back, w)).toBeLessThan(1e-6);
    const half = castHost(w, 'float16');
    const halfBack = mergeLoraWeight(mergeLoraWeight(half, A, B, 3), A, B, 3, -1);
    expect(halfBack.dtype).toBe('float16');
    expect(relativeError(halfBack, half)).toBeLessThan(2e-3); // two float16 roundings
    // Whole parameter maps: the adapters are dropped, everything else is the same tensor.
    const merged = mergeLora(base.params, adapters);
    expect([...merged.keys()].some(isLoraParam)).toBe(false);
    expect(merged.get('model.norm.weight')).toBe(base.params.get('model.norm.weight'));
    const restored = unmergeLora(merged, adapters);
    for (const t of targets)
      expect(relativeError(restored.get(t.weight)!, base.params.get(t.weight)!)).toBeLessThan(1e-6);
  });
});

describe('LoRA gradients', () => {
  const adapters = trainedAdapters(7);
  const adapted = base.withLora(adapters);
  const staged = adapted.stages();
  const all = [staged.embed, ...staged.layers, staged.head];
  const order = new Map(targets.map((t, i) => [loraNames(t.weight).a, i]));
  const key = loraDropoutKey(1, 3, 0);
  const masks = all.map((s) => loraDropoutInputs(s, adapters.params, order, key, ids.shape, lora.dropout));
  const stageInputs: StageInputs = (_s, i) => masks[i]!;
  // Next-token targets with the first two positions and the last one unscored.
  const T = ids.shape[1]!;
  const targetIds = new Int32Array(ids.data.length);
  const mask = new Float32Array(ids.data.length);
  for (let b = 0; b < 2; b++) {
    for (let t = 0; t < T - 1; t++) {
      targetIds[b * T + t] = (ids.data as Int32Array)[b * T + t + 1]!;
      mask[b * T + t] = t >= 2 ? 1 : 0;
    }
  }
  const targetsT = tensor(targetIds, ids.shape, 'int32');
  const maskT = tensor(mask, ids.shape, 'float32');

  let ort: Backend;
  beforeAll(async () => {
    ort = await (await import('@moreau/backend-ort')).createOrtBackend({ intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await ort?.dispose();
  });

  async function grads(backend: Backend, mode: 'whole' | 'streamed') {
    const exec = await ModelExecutor.create(adapted, { backend, mode });
    const out = new Map<string, Float32Array>();
    const loss = await exec.lossAndGradients(ids, {
      wanted: isLoraParam,
      targets: targetsT,
      mask: maskT,
      stageInputs,
      consume: (g) => {
        for (const [k, v] of g) out.set(k, v);
      },
    });
    const lossOnly = await exec.loss(ids, { targets: targetsT, mask: maskT, stageInputs });
    const noDropout = await exec.loss(ids, { targets: targetsT, mask: maskT });
    exec.dispose();
    return { loss, lossOnly, noDropout, grads: out };
  }

  it('dropout masks keep about 1 - p of the entries, scaled by 1 / (1 - p), and repeat exactly', () => {
    const m = masks[1]!['self_attn.q_proj.lora_dropout']!;
    expect(m.shape).toEqual([2, 7, 16]);
    const values = new Set(m.data as Float32Array);
    expect([...values].sort()).toEqual([0, Math.fround(1 / 0.75)]);
    const again = loraDropoutInputs(all[1]!, adapters.params, order, key, ids.shape, lora.dropout);
    expect(again['self_attn.q_proj.lora_dropout']!.data).toEqual(m.data);
    // Different adapters and micro-batches draw different masks.
    expect(masks[1]!['self_attn.v_proj.lora_dropout']!.data).not.toEqual(m.data);
    const big = loraDropoutInputs(all[1]!, adapters.params, order, key, [64, 64], lora.dropout);
    const kept = (big['self_attn.q_proj.lora_dropout']!.data as Float32Array).filter((v) => v > 0).length;
    expect(kept / (64 * 64 * 16)).toBeCloseTo(0.75, 2);
  });

  it('match central finite differences (reference backend, float64)', async () => {
    const { grads: g, loss, lossOnly } = await grads(reference, 'whole');
    expect([...g.keys()].sort()).toEqual([...adapters.params.keys()].sort());
    expect(lossOnly).toBeCloseTo(loss, 6);
    expect(Math.abs((await grads(reference, 'whole')).noDropout - loss)).toBeGreaterThan(1e-4); // the masks act
    // The loss as a function of two adapters' A and B, everything else constant.
    const checked = [targets[0]!, targets.at(-1)!].flatMap((t) => {
      const { a, b } = loraNames(t.weight);
      return [a, b];
    });
    const fn = (...xs: Tensor[]) => {
      const p: Record<string, Tensor> = {};
      for (const [n, t] of adapted.params) p[n] = ops.constant(t);
      checked.forEach((n, i) => {
        p[n] = xs[i]!;
      });
      const local = (s: (typeof all)[number], i: number) => ({
        ...Object.fromEntries(Object.entries(s.params).map(([k, n]) => [k, p[n]!])),
        ...Object.fromEntries(Object.entries(masks[i]!).map(([k, t]) => [k, ops.constant(t)])),
      });
      let h = staged.embedFn(local(staged.embed, 0), ops.constant(ids));
      staged.layers.forEach((s, l) => {
        h = staged.layerFn(s.key)(local(s, l + 1), h);
      });
      const nll = ops.tokenNll(staged.headFn(local(staged.head, all.length - 1), h), ops.constant(targetsT));
      const m = ops.constant(maskT);
      return ops.div(ops.sum(ops.mul(nll, m)), ops.sum(m));
    };
    const fd = finiteDifferenceGradients(
      fn,
      checked.map((n) => adapted.params.get(n)!),
      checked.map((_, i) => i),
    );
    checked.forEach((n, i) => {
      const analytic = tensor(g.get(n)!, adapted.params.get(n)!.shape, 'float32');
      expect(relativeError(analytic, fd[i]!), n).toBeLessThan(1e-4);
    });
  });

  it('layer-streamed loss and gradients equal the whole graph (onnxruntime)', async () => {
    const whole = await grads(ort, 'whole');
    const streamed = await grads(ort, 'streamed');
    expect(Math.abs(streamed.loss - whole.loss)).toBeLessThanOrEqual(1e-5 * whole.loss);
    expect(Math.abs(streamed.lossOnly - whole.loss)).toBeLessThanOrEqual(1e-5 * whole.loss);
    for (const [n, g] of whole.grads) {
      const s = streamed.grads.get(n)!;
      const shape = [g.length];
      expect(relativeError(tensor(s, shape, 'float32'), tensor(g, shape, 'float32')), n).toBeLessThan(1e-5);
    }
  });

  it('storage dtype stays: float16 base weights train without a float32 copy in the params', () => {
    const half = new LlamaModel(
      base.config,
      new Map([...base.params].map(([n, t]) => [n, castHost(t, 'float16') as HostTensor])),
    ).withLora(adapters);
    for (const [n, t] of half.params) expect(t.dtype).toBe(isLoraParam(n) ? 'float32' : 'float16');
  });
});
