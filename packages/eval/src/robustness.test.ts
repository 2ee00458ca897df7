import '@moreau/criteria';
import { castHost, type PrunableModel, ReferenceBackend, Rng, tensor, toFloat32Data } from '@moreau/core';
import { LlamaModel, randomInit } from '@moreau/models';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import {
  formatRobustnessTable,
  lossPerplexity,
  parsePerturbation,
  perturbationName,
  perturbParams,
  prunedUnits,
  robustness,
} from './internal/robustness.js';

const config = smallConfig({
  vocabSize: 16,
  hiddenSize: 8,
  intermediateSize: 12,
  headDim: 2,
  maxPositionEmbeddings: 32,
});

describe('robustness analysis', () => {
  const params = randomInit(config, 11, { std: 0.3 });
  const model = new LlamaModel(config, params);
  const rng = new Rng(4);
  const stream = Array.from({ length: 400 }, () => rng.int(16));
  const evalWindows = Array.from({ length: 3 }, (_, i) => stream.slice(i * 8, i * 8 + 8));
  const backend = new ReferenceBackend();
  const evaluate = async (m: PrunableModel) =>
    (await lossPerplexity(m, evalWindows, { backend, batchSize: 2 })).ppl;

  it('parses perturbation names', () => {
    expect(parsePerturbation('gauss:0.01x3')).toEqual({ kind: 'gauss', eps: 0.01, seeds: 3 });
    expect(parsePerturbation('gauss')).toEqual({ kind: 'gauss', eps: 0.01, seeds: 3 });
    expect(perturbationName(parsePerturbation('gauss:0.05x2'))).toBe('gauss:0.05x2');
    expect(perturbationName(parsePerturbation('bf16'))).toBe('bf16');
    expect(() => parsePerturbation('int8')).toThrow(/valid: fp16, bf16/);
  });

  it('perturbs weights: dtype round trips and seeded relative noise', () => {
    const name = 'model.layers.0.mlp.up_proj.weight';
    const w = toFloat32Data(params.get(name)!);
    const fp16 = toFloat32Data(perturbParams(params, { kind: 'fp16' }).get(name)!);
    expect(Array.from(fp16)).toEqual(Array.from(toFloat32Data(castHost(tensor(w, [w.length]), 'float16'))));
    const g0 = toFloat32Data(perturbParams(params, { kind: 'gauss', eps: 0, seeds: 1 }).get(name)!);
    expect(Array.from(g0)).toEqual(Array.from(w));
    const a = toFloat32Data(perturbParams(params, { kind: 'gauss', eps: 0.01, seeds: 1 }, 5).get(name)!);
    const b = toFloat32Data(perturbParams(params, { kind: 'gauss', eps: 0.01, seeds: 1 }, 5).get(name)!);
    expect(Array.from(a)).toEqual(Array.from(b));
    const rel = a.map((v, i) => Math.abs(v - w[i]!) / Math.abs(w[i]!));
    expect(Math.max(...rel)).toBeLessThan(0.06);
    expect(Math.max(...rel)).toBeGreaterThan(0);
  });

  it('reports IoU, Spearman and PPL per criterion and perturbation', async () => {
    const phases: string[] = [];
    const report = await robustness(model, {
      ratio: 0.5,
      criteria: ['magnitude', { name: 'taylor', label: 'taylor1' }],
      perturbations: ['bf16', 'gauss:0x2'],
      calibration: { tokens: stream, samples: 2, seqLen: 8, seed: 3 },
      prune: { backend },
      evaluate,
      onProgress: (p) => phases.push(p.phase),
    });
    expect(Object.keys(report)).toEqual(['ratio', 'results', 'baseline', 'dense']);
    expect(Object.keys(report.results)).toEqual(['magnitude', 'taylor1']);
    for (const c of ['magnitude', 'taylor1']) {
      const exact = report.results[c]!['gauss:0x2']!;
      expect(exact).toEqual({
        iou_mean: 1,
        iou_sd: 0,
        spearman_mean: expect.closeTo(1, 12),
        ppl_mean: report.baseline[c]!.ppl,
        ppl_sd: 0,
      });
      const bf = report.results[c]!.bf16!;
      expect(Object.keys(bf)).toEqual(['iou', 'spearman', 'ppl']);
      if (!('iou' in bf)) throw new Error('single stat expected');
      expect(bf.iou).toBeGreaterThan(0);
      expect(bf.iou).toBeLessThanOrEqual(1);
      expect(bf.spearman).toBeGreaterThan(0.5);
    }
    expect(report.dense!.ppl).toBeGreaterThan(1);
    expect(phases.at(-1)).toBe('taylor1 gauss:0x2');
    expect(formatRobustnessTable(report)).toContain('| magnitude | gauss:0x2 | 1.000 ± 0.000 |');
  });

  it('lists the pruned units of a plan', async () => {
    const { prune } = await import('@moreau/core');
    const r = await prune(model, { criterion: 'magnitude', ratio: 0.5 });
    // 2 layers: attention keeps 1 of 2 KV groups, MLP 6 of 12 channels.
    expect(prunedUnits(r.plan).size).toBe(2 * 1 + 2 * 6);
  });
});
