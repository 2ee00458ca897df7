/**
 * The LoRA training loop on a small random LLaMA (onnxruntime, one thread): the loss falls, a run
 * resumed from a checkpoint ends with the uninterrupted run's adapters bit for bit (also after an
 * abort, which saves a checkpoint), validation runs every evalSteps, and a resume with other
 * settings is refused.
 */
import { mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AbortError, type Backend, type LoraConfig, Rng } from '@moreau/core';
import { type LlamaConfig, LlamaModel, randomInit } from '@moreau/models';
import { useScratchDir } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Example } from './internal/data.js';
import { type TuneOptions, type TuneResult, tuneLora } from './internal/train.js';

const config: LlamaConfig = {
  vocabSize: 31,
  hiddenSize: 16,
  intermediateSize: 24,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: 64,
  tieWordEmbeddings: true,
  bosTokenId: 1,
  eosTokenId: 2,
};
const model = new LlamaModel(config, randomInit(config, 1, { std: 0.3 }));
const lora: LoraConfig = {
  r: 4,
  alpha: 8,
  dropout: 0.1,
  targets: ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'],
};

/** Counting sequences (t, t + k, t + 2k, ... mod vocab): learnable, with varied lengths. */
function examples(n: number, seed: number): Example[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const len = 6 + rng.int(10);
    const k = 1 + rng.int(3);
    let t = 3 + rng.int(20);
    const ids = [1];
    for (let i = 1; i < len; i++) {
      ids.push(t);
      t = 3 + ((t - 3 + k) % 28);
    }
    return { ids: Int32Array.from(ids), labels: new Uint8Array(len).fill(1) };
  });
}
const train = examples(24, 1);
const validation = examples(6, 2);

let backend: Backend;
beforeAll(async () => {
  backend = await (await import('@moreau/backend-ort')).createOrtBackend({ intraOpNumThreads: 1 });
});
afterAll(async () => {
  await backend?.dispose();
});
const dir = useScratchDir();
const scratch = () => mkdtemp(join(dir(), 'run-'));

const base = (over: Partial<TuneOptions> = {}): TuneOptions => ({
  backend,
  lora,
  lr: 1e-2,
  batchSize: 8,
  microBatchSize: 3,
  warmupSteps: 2,
  maxSteps: 8,
  seed: 5,
  ...over,
});

const bytes = (r: TuneResult) =>
  new Map(
    [...r.adapters.params].map(([n, t]) => [n, Buffer.from((t.data as Float32Array).buffer).toString('hex')]),
  );

describe('tuneLora', () => {
  it('lowers the training and validation loss; only the adapters change', async () => {
    const evals: number[] = [];
    const r = await tuneLora(
      model,
      { train, validation },
      base({ maxSteps: 24, evalSteps: 8, onEvent: (e) => e.kind === 'eval' && evals.push(e.step) }),
    );
    expect(r.steps).toBe(24);
    expect(r.history).toHaveLength(24);
    expect(r.history[0]!.lr).toBe(0); // the Trainer's first step runs at rate 0
    const first = r.history.slice(0, 3).reduce((s, h) => s + h.loss, 0) / 3;
    const last = r.history.slice(-3).reduce((s, h) => s + h.loss, 0) / 3;
    expect(last).toBeLessThan(first * 0.9);
    expect(evals).toEqual([8, 16, 24]);
    expect(r.evals.at(-1)!.loss).toBeLessThan(r.evals[0]!.loss);
    for (const [n, t] of model.params) expect(r.model.params.get(n)).toBe(t);
  });

  for (const mode of ['whole', 'streamed'] as const) {
    it(`resumed from a checkpoint, ends with the uninterrupted run's adapters bit for bit (${mode})`, async () => {
      const dir = await scratch();
      const full = await tuneLora(
        model,
        { train, validation },
        base({ mode, checkpointDir: dir, saveSteps: 3, evalSteps: 4 }),
      );
      expect((await readdir(dir)).sort()).toEqual(['checkpoint-3', 'checkpoint-6']);
      const resumed = await tuneLora(
        model,
        { train, validation },
        base({ resume: join(dir, 'checkpoint-3'), evalSteps: 4 }),
      );
      expect(resumed.mode).toBe(mode); // the checkpoint's mode
      expect(resumed.steps).toBe(8);
      expect(bytes(resumed)).toEqual(bytes(full));
      expect(resumed.history.map((h) => h.loss)).toEqual(full.history.map((h) => h.loss));
      expect(resumed.evals).toEqual(full.evals);
    });
  }

  it('an aborted run saves a checkpoint at its last step, and resuming it finishes the same run', async () => {
    const dir = await scratch();
    const full = await tuneLora(model, { train }, base());
    const controller = new AbortController();
    const saved: string[] = [];
    const aborted = tuneLora(
      model,
      { train },
      base({
        checkpointDir: dir,
        signal: controller.signal,
        onProgress: (p) => p.step === 5 && controller.abort(),
        onEvent: (e) => e.kind === 'checkpoint' && saved.push(`${e.reason}:${e.step}`),
      }),
    );
    await expect(aborted).rejects.toBeInstanceOf(AbortError);
    expect(saved).toEqual(['aborted:5']);
    const resumed = await tuneLora(model, { train }, base({ resume: join(dir, 'checkpoint-5') }));
    expect(bytes(resumed)).toEqual(bytes(full));
  });

  it('refuses to resume with other settings or data, naming what differs', async () => {
    const dir = await scratch();
    await tuneLora(model, { train }, base({ checkpointDir: dir, saveSteps: 4 }));
    const ck = join(dir, 'checkpoint-4');
    await expect(tuneLora(model, { train }, base({ resume: ck, lr: 2e-2 }))).rejects.toThrow(
      /other settings: lr 0\.01 \(now 0\.02\)/,
    );
    await expect(tuneLora(model, { train: train.slice(1) }, base({ resume: ck }))).rejects.toThrow(
      /other data/,
    );
    await expect(tuneLora(model, { train }, base({ resume: dir }))).rejects.toThrow(
      /is not a tuning checkpoint/,
    );
  });
});

describe('steps and epochs', () => {
  it('an epoch has floor(examples / batch) steps of a full batch; fewer examples than a batch make one step', async () => {
    const { stepsOf } = await import('./internal/train.js');
    expect(stepsOf(100, { epochs: 2, batchSize: 64 })).toEqual({ perEpoch: 1, total: 2 });
    expect(stepsOf(130, { epochs: 2, batchSize: 64 })).toEqual({ perEpoch: 2, total: 4 });
    expect(stepsOf(10, { epochs: 2, batchSize: 64, maxSteps: 7 })).toEqual({ perEpoch: 1, total: 7 });
    const seen: number[] = [];
    const r = await tuneLora(model, { train: train.slice(0, 13) }, base({ batchSize: 8, maxSteps: 2 }));
    for (const h of r.history) seen.push(h.tokens);
    // 13 examples, batch 8: each step takes 8 of them (not all 13).
    const per = train.slice(0, 13).map((e) => e.ids.length);
    expect(Math.max(...seen)).toBeLessThan(per.reduce((a, b) => a + b, 0));
    const few = await tuneLora(model, { train: train.slice(0, 5) }, base({ batchSize: 8, maxSteps: 1 }));
    expect(few.history[0]!.tokens).toBe(train.slice(0, 5).reduce((a, e) => a + e.ids.length, 0));
  });
});
