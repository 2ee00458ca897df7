/**
 * The export-shaped forward pass (attention mask, key / value cache) against llamaLogits, and its
 * ONNX export with open sizes run in plain onnxruntime-node: int64 ids at several batch sizes and
 * lengths, left padding through attention_mask, the cache step by step, per-layer sizes.
 */

import { join } from 'node:path';
import { evaluateReference, type HostTensor, Rng, type Tensor, tensor, trace } from '@moreau/core';
import { smallConfig, useScratchDir } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { causalLmTables, llamaCausalLm, llamaOnnxExport } from './causal-lm.js';
import type { LlamaConfig } from './config.js';
import { type LlamaParams, llamaLogits } from './model.js';
import { randomInit } from './presets.js';
import { cutLlamaModel, smallLlama3Scaling } from './test-fixtures.js';

const config = smallConfig({ ropeScaling: smallLlama3Scaling });
const params = randomInit(config, 5, { std: 0.3 });
const cut = cutLlamaModel(config, params, { 'layer.1.attention': [0], 'layer.0.mlp': [1, 3, 5] });
const dir = useScratchDir();

function randomIds(rows: number, len: number, vocab: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: rows }, () => Array.from({ length: len }, () => rng.int(vocab)));
}

/** Weights as a list (traced in this order) and a function turning the traced list into LlamaParams. */
function asList(p: ReadonlyMap<string, HostTensor>) {
  const names = [...p.keys()];
  return {
    list: [...p.values()],
    record: (w: Tensor[]): LlamaParams => Object.fromEntries(names.map((n, i) => [n, w[i]!])),
  };
}

/** llamaLogits of one unpadded row, [len, vocab], on the float64 reference. */
function referenceLogits(p: ReadonlyMap<string, HostTensor>, c: LlamaConfig, row: readonly number[]) {
  const ids = tensor(row, [1, row.length], 'int32');
  const { list, record } = asList(p);
  const { graph } = trace((w: Tensor[], x: Tensor) => llamaLogits(record(w), x, c), [list, ids]);
  return evaluateReference(graph, [...list, ids])[0]!.data as Float64Array | Float32Array;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string) {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst / scale, what).toBeLessThan(rel);
}

describe('llamaCausalLm', () => {
  // 1e-6, not 1e-9: model.ts folds 1/sqrt(head_dim) into float32 RoPE tables, this pass scales q after RoPE.
  it('equals llamaLogits; left padding gives the unpadded logits; the cache step equals the full pass', () => {
    for (const [p, c] of [
      [params, config],
      [cut.params, cut.config],
    ] as const) {
      const tables = causalLmTables(c);
      const { list, record } = asList(p);
      const rows = randomIds(2, 7, c.vocabSize, 11);
      const short = rows[1]!.slice(0, 4);
      // Row 1 is left-padded to 7 with 3 pad slots (mask 0, any id).
      const ids = tensor([...rows[0]!, 0, 0, 0, ...short], [2, 7], 'int32');
      const mask = tensor([1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1], [2, 7], 'int32');
      const { graph } = trace(
        (w: Tensor[], x: Tensor, m: Tensor) => llamaCausalLm(record(w), x, m, undefined, c, tables).logits,
        [list, ids, mask],
      );
      const out = evaluateReference(graph, [...list, ids, mask])[0]!.data;
      const V = c.vocabSize;
      expectClose(out.slice(0, 7 * V), referenceLogits(p, c, rows[0]!), 1e-6, 'row 0');
      expectClose(out.slice((7 + 3) * V), referenceLogits(p, c, short), 1e-6, 'padded row 1');

      // Two steps with the cache: 5 tokens, then 2 more, equal the 7-token pass.
      const row = rows[0]!;
      const L = c.numHiddenLayers;
      const step1 = trace(
        (w: Tensor[], x: Tensor, m: Tensor) => {
          const o = llamaCausalLm(record(w), x, m, undefined, c, tables);
          return [o.logits, ...o.present.flatMap((k) => [k.key, k.value])];
        },
        [list, tensor(row.slice(0, 5), [1, 5], 'int32'), tensor([1, 1, 1, 1, 1], [1, 5], 'int32')],
      );
      const r1 = evaluateReference(step1.graph, [
        ...list,
        tensor(row.slice(0, 5), [1, 5], 'int32'),
        tensor([1, 1, 1, 1, 1], [1, 5], 'int32'),
      ]);
      const cache = r1.slice(1).map((t) => tensor(Array.from(t.data), t.shape));
      const ids2 = tensor(row.slice(5), [1, 2], 'int32');
      const mask2 = tensor([1, 1, 1, 1, 1, 1, 1], [1, 7], 'int32');
      const step2 = trace(
        (w: Tensor[], x: Tensor, m: Tensor, past: Tensor[]) =>
          llamaCausalLm(
            record(w),
            x,
            m,
            Array.from({ length: L }, (_, i) => ({ key: past[2 * i]!, value: past[2 * i + 1]! })),
            c,
            tables,
          ).logits,
        [list, ids2, mask2, cache],
      );
      const r2 = evaluateReference(step2.graph, [...list, ids2, mask2, ...cache])[0]!.data;
      const full = referenceLogits(p, c, row);
      expectClose(r2, full.slice(5 * V), 1e-6, 'cached step');
    }
  });
});

type Ort = typeof import('onnxruntime-node');
let ort: Ort | undefined;
try {
  ort = await import('onnxruntime-node');
} catch (e) {
  console.warn(`ONNX export test skipped: onnxruntime-node unavailable (${(e as Error).message})`);
}

describe.skipIf(!ort)('llamaOnnxExport in plain onnxruntime-node', () => {
  const int64 = (rows: number[][]) =>
    new ort!.Tensor(
      'int64',
      BigInt64Array.from(rows.flat(), (v) => BigInt(v)),
      [rows.length, rows[0]!.length],
    );

  it('int64 ids at batch 1 and 3, lengths 1, 6 and 13; left padding; a pruned model with per-layer sizes', async () => {
    const { exportOnnxSymbolic } = await import('@moreau/backend-ort');
    for (const [name, p, c] of [
      ['dense', params, config],
      ['cut', cut.params, cut.config],
    ] as const) {
      const spec = llamaOnnxExport(c, p);
      const file = join(dir(), `${name}.onnx`);
      const res = await exportOnnxSymbolic(spec, file, spec);
      expect(res.inputs).toEqual([
        { name: 'input_ids', shape: ['batch_size', 'sequence_length'], dtype: 'int64' },
        { name: 'attention_mask', shape: ['batch_size', 'sequence_length'], dtype: 'int64' },
      ]);
      expect(res.outputs).toEqual([
        { name: 'logits', shape: ['batch_size', 'sequence_length', c.vocabSize], dtype: 'float32' },
      ]);
      const session = await ort!.InferenceSession.create(file);
      const V = c.vocabSize;
      for (const batch of [1, 3]) {
        for (const len of [1, 6, 13]) {
          const rows = randomIds(batch, len, V, batch * 100 + len);
          const out = await session.run({
            input_ids: int64(rows),
            attention_mask: int64(rows.map((r) => r.map(() => 1))),
          });
          expect(out.logits!.dims).toEqual([batch, len, V]);
          const data = out.logits!.data as Float32Array;
          rows.forEach((r, b) => {
            const want = referenceLogits(p, c, r);
            expectClose(
              data.slice(b * len * V, (b + 1) * len * V),
              want,
              1e-5,
              `${name} ${batch}x${len} row ${b}`,
            );
          });
        }
      }
      // Left padding: rows of lengths 9, 4 and 1 in one batch of 9.
      const rows = randomIds(3, 9, V, 77).map((r, i) => r.slice(0, [9, 4, 1][i]));
      const padded = rows.map((r) => [...Array(9 - r.length).fill(0), ...r]);
      const mask = rows.map((r) => [...Array(9 - r.length).fill(0), ...r.map(() => 1)]);
      const out = await session.run({ input_ids: int64(padded), attention_mask: int64(mask) });
      const data = out.logits!.data as Float32Array;
      rows.forEach((r, b) => {
        const want = referenceLogits(p, c, r);
        expectClose(
          data.slice((b * 9 + 9 - r.length) * V, (b + 1) * 9 * V),
          want,
          1e-5,
          `${name} padded row ${b}`,
        );
      });
      await session.release();
    }
  });

  it('--with-past: present.* feed back as past_key_values.*, step by step equal to the full pass', async () => {
    const { exportOnnxSymbolic } = await import('@moreau/backend-ort');
    const c = cut.config;
    const spec = llamaOnnxExport(c, cut.params, { withPast: true });
    const file = join(dir(), 'past.onnx');
    const res = await exportOnnxSymbolic(spec, file, spec);
    expect(res.inputs.map((i) => i.name)).toEqual([
      'input_ids',
      'attention_mask',
      'past_key_values.0.key',
      'past_key_values.0.value',
      'past_key_values.1.key',
      'past_key_values.1.value',
    ]);
    expect(res.inputs[1]!.shape).toEqual(['batch_size', 'past_sequence_length + sequence_length']);
    // Layer 1 was cut to one KV head.
    expect(res.inputs[4]!.shape).toEqual(['batch_size', 1, 'past_sequence_length', c.headDim]);
    expect(res.outputs[3]!).toEqual({
      name: 'present.1.key',
      shape: ['batch_size', 1, 'past_sequence_length + sequence_length', c.headDim],
      dtype: 'float32',
    });
    const session = await ort!.InferenceSession.create(file);
    const V = c.vocabSize;
    const rows = randomIds(2, 8, V, 5);
    // Start from an empty cache (length 0, as transformers.js does), then 5, 1, 2 tokens.
    let past: Record<string, import('onnxruntime-node').Tensor> = {};
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const kv = c.layerKvHeadNum?.[i] ?? c.numKeyValueHeads;
      for (const k of ['key', 'value'])
        past[`past_key_values.${i}.${k}`] = new ort!.Tensor('float32', new Float32Array(0), [
          2,
          kv,
          0,
          c.headDim,
        ]);
    }
    let at = 0;
    for (const n of [5, 1, 2]) {
      const chunk = rows.map((r) => r.slice(at, at + n));
      const out = await session.run({
        input_ids: int64(chunk),
        attention_mask: int64(rows.map(() => Array(at + n).fill(1))),
        ...past,
      });
      const data = out.logits!.data as Float32Array;
      rows.forEach((r, b) => {
        const full = referenceLogits(cut.params, c, r.slice(0, at + n));
        expectClose(
          data.slice(b * n * V, (b + 1) * n * V),
          full.slice(at * V),
          1e-5,
          `step ${at}+${n} row ${b}`,
        );
      });
      past = {};
      for (let i = 0; i < c.numHiddenLayers; i++)
        for (const k of ['key', 'value']) past[`past_key_values.${i}.${k}`] = out[`present.${i}.${k}`]!;
      at += n;
    }
    await session.release();
  });
});
