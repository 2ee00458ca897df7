import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  evaluateReference,
  float32ToBfloat16,
  type HostTensor,
  InputError,
  ops,
  type Tensor,
  tensor,
  trace,
} from '@moreau/core';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx, exportOnnxSymbolic } from './index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'moreau-ort-export-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const vocab = 7;
const dim = 4;
const emb = tensor(
  Array.from({ length: vocab * dim }, (_, i) => Math.cos(i)),
  [vocab, dim],
);
const head = tensor(
  Array.from({ length: dim * vocab }, (_, i) => Math.sin(i) * 0.3),
  [dim, vocab],
);
const ids = tensor([1, 5, 5, 0, 6, 2], [2, 3], 'int32');

/** A tiny language-model-shaped graph: token ids -> logits. */
const model = (p: { emb: Tensor; head: Tensor }, inputIds: Tensor) => {
  const h = ops.gather(p.emb, inputIds);
  return ops.matmul(ops.tanh(h), ops.broadcastTo(ops.reshape(p.head, [1, dim, vocab]), [2, dim, vocab]));
};

async function runPlain(file: string, feeds: Record<string, HostTensor>) {
  const session = await ort.InferenceSession.create(file);
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(feeds)) {
    ortFeeds[k] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, [...t.shape]);
  }
  const out = await session.run(ortFeeds);
  const info = { inputNames: [...session.inputNames], outputNames: [...session.outputNames] };
  await session.release();
  return { out, ...info };
}

describe('exportOnnx', () => {
  it('writes a standalone model that plain onnxruntime-node runs with the same outputs', async () => {
    const { graph } = trace((p, inputIds) => ({ logits: model(p, inputIds) }), [{ emb, head }, ids]);
    const file = path.join(dir, 'lm.onnx');
    const res = await exportOnnx(graph, file, { inputNames: ['emb', 'head', 'input_ids'] });
    expect(res).toMatchObject({ file, opset: 17 });
    expect(res.inputs.map((i) => i.name)).toEqual(['emb', 'head', 'input_ids']);
    expect(res.outputs).toEqual([{ name: 'logits', shape: [2, 3, vocab], dtype: 'float32' }]);
    const { out, inputNames, outputNames } = await runPlain(file, { emb, head, input_ids: ids });
    expect(inputNames).toEqual(['emb', 'head', 'input_ids']);
    expect(outputNames).toEqual(['logits']);
    const ref = evaluateReference(graph, [emb, head, ids])[0]!;
    const got = out.logits!.data as Float32Array;
    expect(out.logits!.dims).toEqual([2, 3, vocab]);
    for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(ref.data[i]!, 5);
    // atomic write: nothing but the target is left behind
    expect(await readdir(dir)).toEqual(['lm.onnx']);
  });

  it('frozen weights become initializers: input_ids -> logits', async () => {
    const { graph } = trace((p, inputIds) => model(p, inputIds), [{ emb, head }, ids]);
    const file = path.join(dir, 'frozen.onnx');
    const res = await exportOnnx(graph, file, {
      inputNames: ['emb', 'head', 'input_ids'],
      outputNames: ['logits'],
      frozen: new Map([
        [0, emb],
        [1, head],
      ]),
    });
    expect(res.inputs).toEqual([{ name: 'input_ids', shape: [2, 3], dtype: 'int32' }]);
    const { out, inputNames } = await runPlain(file, { input_ids: ids });
    expect(inputNames).toEqual(['input_ids']);
    const ref = evaluateReference(graph, [emb, head, ids])[0]!;
    const got = out.logits!.data as Float32Array;
    for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(ref.data[i]!, 5);
  });

  it('bfloat16 frozen weights are stored as float32; overwriting an existing file is atomic', async () => {
    const { graph } = trace(
      (w: Tensor, x: Tensor) => ops.mul(w, x),
      [
        { shape: [3], dtype: 'float32' },
        { shape: [3], dtype: 'float32' },
      ],
    );
    const w: HostTensor = {
      dtype: 'bfloat16',
      shape: [3],
      data: float32ToBfloat16(Float32Array.of(1.5, -2, 0.25)),
    };
    const file = path.join(dir, 'bf16.onnx');
    await exportOnnx(graph, file, { inputNames: ['w', 'x'], outputNames: ['y'] });
    await exportOnnx(graph, file, { inputNames: ['w', 'x'], outputNames: ['y'], frozen: new Map([[0, w]]) });
    const { out } = await runPlain(file, { x: tensor([2, 2, 2], [3]) });
    expect([...(out.y!.data as Float32Array)]).toEqual([3, -4, 0.5]);
  });

  it('validates names', async () => {
    const { graph } = trace((a: Tensor, b: Tensor) => ops.add(a, b), [tensor([1], [1]), tensor([2], [1])]);
    const file = path.join(dir, 'bad.onnx');
    await expect(exportOnnx(graph, file, { inputNames: ['a'] })).rejects.toThrow(InputError);
    await expect(exportOnnx(graph, file, { inputNames: ['a', 'a'] })).rejects.toThrow(/used twice/);
    await expect(exportOnnx(graph, file, { inputNames: ['a', 'y'], outputNames: ['y'] })).rejects.toThrow(
      /both an input and an output/,
    );
  });
});

describe('exportOnnxSymbolic', () => {
  /** ids [B, T] -> logits [B, T, vocab] through a flatten to [B*T, dim] and a slice of a fixed table. */
  const lm = (sizes: Readonly<Record<string, number>>) => {
    const B = sizes.B ?? 1;
    const T = sizes.T ?? 1;
    const table = tensor(
      Array.from({ length: 32 }, (_, i) => i / 8),
      [32, 1],
    );
    return trace(
      (p: { emb: Tensor; head: Tensor }, inputIds: Tensor) => {
        const h = ops.reshape(ops.gather(p.emb, inputIds), [B * T, dim]);
        const pos = ops.slice(ops.constant(table), 0, 0, T); // [T, 1]: depends on T only by its size
        const x = ops.add(ops.reshape(ops.tanh(h), [B, T, dim]), pos);
        return ops.matmul(x, ops.broadcastTo(ops.reshape(p.head, [1, dim, vocab]), [B, dim, vocab]));
      },
      [
        { emb, head },
        { shape: [B, T], dtype: 'int32' },
      ],
    ).graph;
  };

  it('writes open batch and sequence sizes that plain onnxruntime runs at any size, int64 ids', async () => {
    const file = path.join(dir, 'dynamic.onnx');
    const res = await exportOnnxSymbolic(
      {
        dims: [
          { symbol: 'B', name: 'batch_size' },
          { symbol: 'T', name: 'sequence_length' },
        ],
        trace: lm,
      },
      file,
      {
        inputNames: ['emb', 'head', 'input_ids'],
        outputNames: ['logits'],
        frozen: new Map([
          [0, emb],
          [1, head],
        ]),
        int64Inputs: ['input_ids'],
      },
    );
    expect(res.inputs).toEqual([
      { name: 'input_ids', shape: ['batch_size', 'sequence_length'], dtype: 'int64' },
    ]);
    expect(res.outputs).toEqual([
      { name: 'logits', shape: ['batch_size', 'sequence_length', vocab], dtype: 'float32' },
    ]);
    const session = await ort.InferenceSession.create(file);
    for (const [B, T] of [
      [1, 1],
      [2, 5],
      [4, 3],
    ] as const) {
      const ids = Array.from({ length: B * T }, (_, i) => (i * 3) % vocab);
      const out = await session.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [B, T]),
      });
      const ref = evaluateReference(lm({ B, T }), [emb, head, tensor(ids, [B, T], 'int32')])[0]!;
      expect(out.logits!.dims).toEqual([B, T, vocab]);
      const got = out.logits!.data as Float32Array;
      for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(ref.data[i]!, 5);
    }
    await session.release();
  });

  it('refuses what cannot be made symbolic, naming the node', async () => {
    const file = path.join(dir, 'bad-dynamic.onnx');
    const dims = [{ symbol: 'T', name: 'sequence_length' }];
    // A constant built for the traced length.
    const sizedConstant = (s: Readonly<Record<string, number>>) =>
      trace(
        (x: Tensor) => ops.add(x, ops.constant(tensor(Array(s.T!).fill(1), [s.T!]))),
        [{ shape: [s.T!], dtype: 'float32' }],
      ).graph;
    await expect(exportOnnxSymbolic({ dims, trace: sizedConstant }, file)).rejects.toThrow(
      /constant node %\d+ \(constant\) \[\d+\] depends on the traced sizes/,
    );
    // A graph whose structure follows the size.
    const branchy = (s: Readonly<Record<string, number>>) =>
      trace((x: Tensor) => (s.T! % 2 ? ops.neg(x) : ops.exp(x)), [{ shape: [s.T!], dtype: 'float32' }]).graph;
    await expect(exportOnnxSymbolic({ dims, trace: branchy }, file)).rejects.toThrow(
      /differs from the one at/,
    );
    // A size that is no polynomial of the symbol.
    const odd = (s: Readonly<Record<string, number>>) =>
      trace((x: Tensor) => ops.slice(x, 0, 0, s.T! % 2), [{ shape: [s.T!], dtype: 'float32' }]).graph;
    await expect(exportOnnxSymbolic({ dims, trace: odd }, file)).rejects.toThrow(/no integer polynomial/);
  });
});
