import { type HostTensor, jit, ReferenceBackend, type Tensor, tensor } from '@moreau/core';
import { llamaLogits, randomInit } from '@moreau/models';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { lengthBucket } from './internal/buckets.js';
import { checkWindows, scoringModelFromLlama } from './internal/scoring-model.js';

const config = smallConfig({
  vocabSize: 11,
  hiddenSize: 8,
  intermediateSize: 12,
  numHiddenLayers: 1,
  numAttentionHeads: 2,
  headDim: 4,
  maxPositionEmbeddings: 16,
  tieWordEmbeddings: true,
});

describe('scoringModelFromLlama', () => {
  const params = randomInit(config, 3, { std: 0.6 });
  const backend = new ReferenceBackend();
  const rows = [
    [1, 4, 5, 9, 3, 3, 10],
    [1, 2, 2, 7, 0, 6, 8],
    [1, 10, 9, 8, 7, 6, 5],
  ];

  it('per-position NLL, greedy flags and logits agree with the full logits', async () => {
    const model = scoringModelFromLlama(params, config, backend, { batchSize: 2 });
    expect(model.maxLength).toBe(16);
    const f = jit((p: Record<string, Tensor>, ids: Tensor) => llamaLogits(p, ids, config), { backend });
    const logits = (await f(
      Object.fromEntries(params),
      tensor(Int32Array.from(rows.flat()), [3, 7], 'int32'),
    )) as HostTensor;
    const L = logits.data as Float32Array;
    const V = config.vocabSize;
    const scores = await model.tokenScores!(rows); // 3 rows with batchSize 2: one padded call
    for (let r = 0; r < 3; r++) {
      for (let t = 0; t < 6; t++) {
        const row = L.subarray((r * 7 + t) * V, (r * 7 + t + 1) * V);
        const m = Math.max(...row);
        const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
        const target = rows[r]![t + 1]!;
        expect(scores[r]!.nll[t]).toBeCloseTo(lse - row[target]!, 5);
        expect(scores[r]!.greedy[t]).toBe(row[target] === m ? 1 : 0);
      }
    }
    const at = await model.logitsAt!(rows, [0, 3, 6]);
    [0, 3, 6].forEach((t, r) => {
      const row = L.subarray((r * 7 + t) * V, (r * 7 + t + 1) * V);
      row.forEach((v, i) => {
        expect(at[r]![i]).toBeCloseTo(v, 5);
      });
    });
    const nll = await model.tokenNll(rows.slice(0, 1));
    expect(Array.from(nll[0]!)).toEqual(Array.from(scores[0]!.nll));
    model.dispose();
  });

  it('validates windows', () => {
    expect(() => checkWindows([[1, 2], [1]], 11)).toThrow(/equal lengths/);
    expect(() => checkWindows([[1, 11]], 11)).toThrow(/outside the vocabulary/);
    expect(() => checkWindows([[1]], 11)).toThrow(/2\.\./);
    expect(() => scoringModelFromLlama(params, config, backend, { batchSize: 0 })).toThrow(/batchSize/);
  });

  it('length buckets grow by 1.5x / 2x steps', () => {
    expect([1, 32, 33, 49, 65, 97, 129, 193, 257, 385].map((n) => lengthBucket(n))).toEqual([
      32, 32, 48, 64, 96, 128, 192, 256, 384, 512,
    ]);
    expect(lengthBucket(600, 32, 512)).toBe(512);
    expect(lengthBucket(5, 4)).toBe(6);
  });
});
