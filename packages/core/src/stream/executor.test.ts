import { describe, expect, it } from 'vitest';
import { type HostTensor, tensor } from '../dtype.js';
import { MemoryLimitError } from '../errors.js';
import * as ops from '../ops.js';
import { type ComputeDtype, roundHost } from '../precision.js';
import { TOY_VOCAB, toyModel } from '../pruning/test-fixtures.js';
import { ReferenceBackend } from '../reference-backend.js';
import { Rng } from '../rng.js';
import type { Tensor } from '../tensor.js';
import { streamedForwardBytes, wholeForwardBytes } from './estimate.js';
import { type HeadOutputs, ModelExecutor } from './executor.js';

const model = toyModel([
  { heads: 3, mlp: 5 },
  { heads: 2, mlp: 4 },
  { heads: 3, mlp: 5 },
]);
const rng = new Rng(7);
const ids = tensor(
  Int32Array.from({ length: 3 * 6 }, () => rng.int(TOY_VOCAB)),
  [3, 6],
  'int32',
);

async function run(
  mode: 'whole' | 'streamed',
  wanted: (n: string) => boolean,
  weights?: Map<string, HostTensor>,
  computeDtype: ComputeDtype = 'float32',
) {
  const backend = new ReferenceBackend({ float32: computeDtype !== 'float32' });
  const exec = await ModelExecutor.create(model, { backend, mode, computeDtype });
  expect(exec.compute).toEqual({
    computeDtype,
    precision: computeDtype === 'float32' ? 'native' : 'emulated',
  });
  const calls: string[][] = [];
  const grads = new Map<string, Float32Array>();
  const loss = await exec.lossAndGradients(ids, {
    wanted,
    ...(weights
      ? { weights: async (names) => new Map(names.map((n) => [n, weights.get(n) ?? model.params.get(n)!])) }
      : {}),
    consume: (g) => {
      calls.push([...g.keys()]);
      for (const [k, v] of g) {
        expect(grads.has(k)).toBe(false); // each gradient arrives once
        grads.set(k, v);
      }
    },
  });
  exec.dispose();
  return { loss, grads, calls };
}

const close = (a: Float32Array, b: Float32Array) => {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(1e-5 * scale + 1e-7);
};

describe('ModelExecutor: layer-streamed equals whole-graph', () => {
  it('loss and every gradient, with the tied embedding summed over both uses', async () => {
    const whole = await run('whole', () => true);
    const streamed = await run('streamed', () => true);
    expect(Math.abs(streamed.loss - whole.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(whole.loss));
    expect([...streamed.grads.keys()].sort()).toEqual([...whole.grads.keys()].sort());
    for (const [k, g] of whole.grads) close(streamed.grads.get(k)!, g);
    // Streamed: the last layer's gradients arrive first, the embedding last (head + input uses).
    expect(streamed.calls[0]).toEqual(expect.arrayContaining(['layers.2.q']));
    expect(streamed.calls.at(-1)).toEqual(['embed']);
    expect(whole.calls).toHaveLength(1);
  });

  it('computes only the wanted gradients, at the given weights', async () => {
    const wanted = (n: string) => n.endsWith('.up') || n.endsWith('.down');
    const moved = new Map<string, HostTensor>();
    for (const [k, t] of model.params) {
      moved.set(k, { ...t, data: (t.data as Float32Array).map((v) => v * 0.9) });
    }
    const whole = await run('whole', wanted, moved);
    const streamed = await run('streamed', wanted, moved);
    expect([...streamed.grads.keys()].sort()).toEqual([
      'layers.0.down',
      'layers.0.up',
      'layers.1.down',
      'layers.1.up',
      'layers.2.down',
      'layers.2.up',
    ]);
    for (const [k, g] of whole.grads) close(streamed.grads.get(k)!, g);
    const base = await run('whole', wanted);
    expect(base.loss).not.toBeCloseTo(whole.loss, 6);
  });
});

describe('ModelExecutor: forward passes', () => {
  // Per-position NLL, and the logits at one position per row (an extra input).
  const outputs: HeadOutputs = (head, hidden, x, inputs) => {
    const T = x.shape[1]!;
    const logits = head(ops.slice(hidden, 1, 0, T - 1));
    const sel = ops.reshape(ops.oneHotMask(inputs.pos as Tensor, T), [x.shape[0]!, T, 1]);
    return {
      nll: ops.tokenNll(logits, ops.slice(x, 1, 1, T)),
      at: head(ops.sum(ops.where(sel, hidden, 0), 1, true)),
    };
  };
  const batches = [0, 1, 2].map((b) => ({
    ids: tensor(ids.data.slice(b * 6, (b + 1) * 6), [1, 6], 'int32'),
    inputs: { pos: tensor(Int32Array.of(b + 2), [1], 'int32') },
  }));

  it('whole and streamed (layer-major) give the same outputs, with and without uploads', async () => {
    const results = [];
    for (const [mode, upload] of [
      ['whole', true],
      ['streamed', true],
      ['streamed', false],
    ] as const) {
      const exec = await ModelExecutor.create(model, { backend: new ReferenceBackend(), mode, upload });
      results.push(await exec.forward(batches, outputs, 'test'));
      exec.dispose();
    }
    const [whole, ...streamed] = results;
    for (const s of streamed) {
      s!.forEach((r, b) => {
        close(r.nll!.data as Float32Array, whole![b]!.nll!.data as Float32Array);
        close(r.at!.data as Float32Array, whole![b]!.at!.data as Float32Array);
      });
    }
  });

  it('picks whole when it fits in half the memory, streamed when not, and refuses what fits neither', async () => {
    const backend = new ReferenceBackend();
    const opts = { backend, forwardOnly: true, tokens: 12, length: 6 };
    expect((await ModelExecutor.create(model, { ...opts, availableBytes: 1e9 })).mode).toBe('whole');
    const exec = await ModelExecutor.create(model, { ...opts, availableBytes: 1e9 });
    const e = exec.forwardEstimate(6);
    expect(e.weights).toBeGreaterThan(e.stageWeights);
    expect(e.hidden).toBe(6);
    // Room for a streamed pass, but the whole graph needs more than half of it: streamed.
    const whole = wholeForwardBytes(e, 2);
    expect(streamedForwardBytes(e, 1, 1)).toBeLessThan(2 * whole);
    const small = await ModelExecutor.create(model, { ...opts, availableBytes: 2 * whole - 1 });
    expect(small.mode).toBe('streamed');
    const err = await ModelExecutor.create(model, { ...opts, availableBytes: 64 }).catch((x) => x);
    expect(err).toBeInstanceOf(MemoryLimitError);
    expect(err.message).toMatch(
      /evaluating this model layer by layer needs an estimated [\d.]+ KiB, but 0\.1 KiB is available/,
    );
    expect(err.needed).toBeGreaterThan(64);
    // A deep model forced to run as one graph where only the streamed pass fits: the message says so.
    const deep = toyModel(Array.from({ length: 12 }, () => ({ heads: 3, mlp: 5 })));
    const d = (await ModelExecutor.create(deep, { ...opts, availableBytes: 1e9 })).forwardEstimate(6);
    const forced = await ModelExecutor.create(deep, {
      ...opts,
      mode: 'whole',
      availableBytes: wholeForwardBytes(d, 2) - 1,
    }).catch((x) => x);
    expect(forced.message).toMatch(/as one graph needs an estimated .* use streamed execution/);
  });
});

describe('ModelExecutor: explicit targets, a loss mask and loss()', () => {
  const targets = tensor(
    Int32Array.from({ length: 3 * 6 }, () => rng.int(TOY_VOCAB)),
    [3, 6],
    'int32',
  );
  const mask = tensor(
    Float32Array.from({ length: 3 * 6 }, (_, i) => (i % 4 === 0 ? 0 : 1)),
    [3, 6],
    'float32',
  );

  async function masked(mode: 'whole' | 'streamed') {
    const exec = await ModelExecutor.create(model, { backend: new ReferenceBackend(), mode });
    const grads = new Map<string, Float32Array>();
    const loss = await exec.lossAndGradients(ids, {
      wanted: (n) => n !== 'embed',
      targets,
      mask,
      consume: (g) => {
        for (const [k, v] of g) grads.set(k, v);
      },
    });
    const only = await exec.loss(ids, { targets, mask });
    const shifted = await exec.loss(ids);
    exec.dispose();
    return { loss, only, shifted, grads };
  }

  it('streamed equals whole, and loss() equals the gradient pass', async () => {
    const whole = await masked('whole');
    const streamed = await masked('streamed');
    expect(Math.abs(streamed.loss - whole.loss)).toBeLessThanOrEqual(1e-5 * whole.loss);
    expect(whole.only).toBeCloseTo(whole.loss, 6);
    expect(streamed.only).toBeCloseTo(whole.loss, 6);
    for (const [k, g] of whole.grads) close(streamed.grads.get(k)!, g);
    // Without targets, loss() is the model's own shifted loss.
    const plain = await run('whole', () => false);
    expect(whole.shifted).toBeCloseTo(plain.loss, 6);
    expect(streamed.shifted).toBeCloseTo(plain.loss, 6);
  });

  it('rejects targets or a mask of the wrong shape or dtype', async () => {
    const exec = await ModelExecutor.create(model, { backend: new ReferenceBackend(), mode: 'whole' });
    await expect(exec.loss(ids, { targets: tensor(new Int32Array(6), [1, 6], 'int32') })).rejects.toThrow(
      /targets must be int32 \[3, 6\]/,
    );
    await expect(exec.loss(ids, { mask })).rejects.toThrow(/needs explicit targets/);
  });
});

describe('ModelExecutor: emulated half precision', () => {
  it.each(['bfloat16', 'float16'] as const)(
    '%s: loss and gradients rounded to the dtype, bit-identical between streamed and whole',
    async (dtype) => {
      const whole = await run('whole', () => true, undefined, dtype);
      const streamed = await run('streamed', () => true, undefined, dtype);
      const f32 = await run('whole', () => true);
      expect(roundHost(whole.loss, dtype)).toBe(whole.loss);
      expect(whole.loss).not.toBe(f32.loss);
      expect(Math.abs(whole.loss - f32.loss)).toBeLessThan(0.05 * Math.abs(f32.loss));
      expect(streamed.loss).toBe(whole.loss);
      for (const [k, g] of whole.grads) {
        expect(
          g.every((v) => roundHost(v, dtype) === v),
          k,
        ).toBe(true);
        expect(Array.from(streamed.grads.get(k)!), k).toEqual(Array.from(g));
      }
    },
  );
});
