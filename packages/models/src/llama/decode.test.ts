/**
 * Incremental decoding with a key / value cache per layer gives the logits of a full
 * recomputation (rel 1e-5) at every position, in whole and streamed mode: on a pruned GQA model
 * with uneven layer sizes, float16 storage and Llama-3 RoPE scaling, across a cache growth.
 */
import {
  type Backend,
  castHost,
  cutModel,
  type HostTensor,
  jit,
  ModelExecutor,
  type PrunableModel,
  Rng,
  type Tensor,
  tensor,
} from '@moreau/core';
import { smallConfig } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LlamaConfig } from './config.js';
import { llamaLogits } from './model.js';
import { randomInit } from './presets.js';
import { LlamaModel } from './prunable.js';
import { smallLlama3Scaling } from './test-fixtures.js';

let backend: Backend;
beforeAll(async () => {
  const ort = await import('@moreau/backend-ort');
  backend = await ort.createOrtBackend({ intraOpNumThreads: 2 });
});
afterAll(async () => {
  await backend?.dispose();
});

function prunedModel(config: LlamaConfig): LlamaModel {
  const base = new LlamaModel(config, randomInit(config, 5, { std: 0.3 }));
  return cutModel(
    base,
    new Map([
      ['layer.1.attention', [1]],
      ['layer.0.mlp', [0, 2, 3, 7, 11]],
      ['layer.2.mlp', [4, 5]],
    ]),
  ) as LlamaModel;
}

/** Full-recomputation logits of every position: [T, V]. */
async function fullLogits(model: LlamaModel, ids: number[]): Promise<Float32Array> {
  const f = jit((p: Record<string, Tensor>, x: Tensor) => llamaLogits(p, x, model.config), { backend });
  const out = (await f(
    Object.fromEntries(model.params),
    tensor(Int32Array.from(ids), [1, ids.length], 'int32'),
  )) as HostTensor;
  f.dispose();
  return out.data as Float32Array;
}

function expectClose(got: Float32Array, want: Float32Array, what: string) {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
  }
  expect(diff, what).toBeLessThanOrEqual(1e-5 * scale);
}

/** Prefill `prefill` tokens, then one token at a time: every step's logits against the full ones. */
async function expectCachedEqualsFull(
  model: PrunableModel & { config: LlamaConfig },
  mode: 'whole' | 'streamed',
) {
  const rng = new Rng(11);
  const T = 40; // past the first capacity bucket (32): the caches grow once
  const ids = Array.from({ length: T }, () => rng.int(model.config.vocabSize));
  const full = await fullLogits(model as LlamaModel, ids);
  const V = model.config.vocabSize;
  const exec = await ModelExecutor.create(model, { backend, mode, forwardOnly: true });
  const dec = exec.decoder();
  const prefill = 5;
  let logits = await dec.append(tensor(Int32Array.from(ids.slice(0, prefill)), [1, prefill], 'int32'));
  expectClose(logits.data as Float32Array, full.subarray((prefill - 1) * V, prefill * V), `${mode} prefill`);
  for (let t = prefill; t < T; t++) {
    logits = await dec.append(tensor(Int32Array.of(ids[t]!), [1, 1], 'int32'));
    expectClose(logits.data as Float32Array, full.subarray(t * V, (t + 1) * V), `${mode} position ${t}`);
  }
  expect(dec.length).toBe(T);
  exec.dispose();
}

describe('LLaMA incremental decoding: cached logits equal full recomputation', () => {
  const config = smallConfig({ numHiddenLayers: 3 });

  it('a pruned GQA model with uneven layer sizes, whole and streamed', async () => {
    const model = prunedModel(config);
    await expectCachedEqualsFull(model, 'whole');
    await expectCachedEqualsFull(model, 'streamed');
  });

  it('float16 storage and Llama-3 RoPE scaling', async () => {
    const pruned = prunedModel({ ...config, ropeScaling: smallLlama3Scaling, ropeTheta: 500000 });
    const half = new Map([...pruned.params].map(([k, t]) => [k, castHost(t, 'float16')]));
    const model = pruned.withParams(half);
    await expectCachedEqualsFull(model, 'streamed');
    await expectCachedEqualsFull(model, 'whole');
  });

  it('refuses to decode past the context', async () => {
    const model = new LlamaModel(config, randomInit(config, 1));
    const exec = await ModelExecutor.create(model, { backend, mode: 'whole', forwardOnly: true });
    const dec = exec.decoder();
    await dec.append(tensor(new Int32Array(60), [1, 60], 'int32'));
    await expect(dec.append(tensor(new Int32Array(5), [1, 5], 'int32'))).rejects.toThrow(
      /65 positions exceeds the model's 64/,
    );
    exec.dispose();
  });
});
