/**
 * The LLaMA's stages (embedding, layers, head) run layer-streamed give the whole graph's loss and
 * gradients: on stories260K (tied embeddings) and on a pruned GQA model with uneven layer sizes,
 * with float32 and float16 storage.
 */
import {
  type Backend,
  castHost,
  cutModel,
  type HostTensor,
  ModelExecutor,
  type PrunableModel,
  Rng,
  tensor,
} from '@moreau/core';
import { haveShared, STORIES_BIN, sharedPath, smallConfig } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLlama2c } from '../formats/llama2c.js';
import { randomInit } from './presets.js';
import { LlamaModel } from './prunable.js';

const haveStories = haveShared('LLaMA stages on stories260K', STORIES_BIN);

let backend: Backend;
beforeAll(async () => {
  const ort = await import('@moreau/backend-ort');
  backend = await ort.createOrtBackend({ intraOpNumThreads: 2 });
});
afterAll(async () => {
  await backend?.dispose();
});

async function gradients(model: PrunableModel, ids: HostTensor, mode: 'whole' | 'streamed') {
  const exec = await ModelExecutor.create(model, { backend, mode });
  const grads = new Map<string, Float32Array>();
  const loss = await exec.lossAndGradients(ids, {
    wanted: () => true,
    consume: (g) => {
      for (const [k, v] of g) grads.set(k, v);
    },
  });
  exec.dispose();
  return { loss, grads };
}

async function expectSame(model: PrunableModel, ids: HostTensor) {
  const whole = await gradients(model, ids, 'whole');
  const streamed = await gradients(model, ids, 'streamed');
  expect(Math.abs(streamed.loss - whole.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(whole.loss));
  expect([...streamed.grads.keys()].sort()).toEqual([...model.params.keys()].sort());
  for (const [name, g] of whole.grads) {
    const s = streamed.grads.get(name)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]!));
      diff = Math.max(diff, Math.abs(s[i]! - g[i]!));
    }
    expect(diff, name).toBeLessThanOrEqual(1e-5 * scale + 1e-9);
  }
}

function randomIds(vocab: number, B: number, T: number, seed = 3): HostTensor {
  const rng = new Rng(seed);
  return tensor(
    Int32Array.from({ length: B * T }, () => rng.int(vocab)),
    [B, T],
    'int32',
  );
}

describe('LLaMA stages: streamed equals whole', () => {
  it.skipIf(!haveStories)('stories260K (tied embeddings)', async () => {
    const ckpt = await loadLlama2c(sharedPath(STORIES_BIN));
    const model = new LlamaModel(ckpt.config, ckpt.tensors);
    await expectSame(model, randomIds(ckpt.config.vocabSize, 2, 33));
  });

  it('a pruned GQA model with uneven layer sizes, float32 and float16 storage', async () => {
    const config = smallConfig({ numHiddenLayers: 3 });
    const base = new LlamaModel(config, randomInit(config, 5, { std: 0.3 }));
    const pruned = cutModel(
      base,
      new Map([
        ['layer.1.attention', [1]],
        ['layer.0.mlp', [0, 2, 3, 7, 11]],
        ['layer.2.mlp', [4, 5]],
      ]),
    );
    const ids = randomIds(config.vocabSize, 3, 11);
    await expectSame(pruned, ids);
    const half = new Map([...pruned.params].map(([k, t]) => [k, castHost(t, 'float16')]));
    await expectSame(pruned.withParams(half), ids);
  });
});
