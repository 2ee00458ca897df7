import '@moreau/criteria';
import {
  type CalibrationSet,
  type Criterion,
  castHost,
  type HostTensor,
  type PrunableModel,
  type PruningPlan,
  prune,
  ReferenceBackend,
  Rng,
  sampleCalibration,
  tensor,
  toFloat32Data,
} from '@moreau/core';
import { LlamaModel, randomInit } from '@moreau/models';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import {
  checkSweep,
  comparePlans,
  formatRobustnessTable,
  formatSweepTable,
  isFamilyStat,
  lossPerplexity,
  parsePerturbation,
  perturbationName,
  perturbParams,
  prunedUnits,
  type RobustnessStat,
  robustness,
  robustnessSweep,
  type SeedFamilyStat,
  sweepGrid,
} from './internal/robustness.js';

const config = smallConfig({
  vocabSize: 16,
  hiddenSize: 8,
  intermediateSize: 12,
  headDim: 2,
  maxPositionEmbeddings: 32,
});

const params = randomInit(config, 11, { std: 0.3 });
const model = new LlamaModel(config, params);
const rng = new Rng(4);
const stream = Array.from({ length: 400 }, () => rng.int(16));
const evalWindows = Array.from({ length: 3 }, (_, i) => stream.slice(i * 8, i * 8 + 8));
const backend = new ReferenceBackend();
const evaluate = async (m: PrunableModel) =>
  (await lossPerplexity(m, evalWindows, { backend, batchSize: 2 })).ppl;
/** A family's statistics (the test fails when the row is another kind). */
function family(s: RobustnessStat | undefined): SeedFamilyStat {
  if (!s || !isFamilyStat(s)) throw new Error(`expected a family, got ${JSON.stringify(s)}`);
  return s;
}
const calibration = { tokens: stream, samples: 2, seqLen: 8, seed: 3 };
/** Moreau, cheaply: 2 iterations, fresh windows, the default noise. */
const moreau2 = { name: 'moreau', options: { iterations: 2, averageLast: 1 } };

describe('perturbations', () => {
  it('parses each kind to its canonical name', () => {
    const canon = (s: string) => perturbationName(parsePerturbation(s));
    expect(parsePerturbation('gauss:0.01x3')).toEqual({ kind: 'gauss', eps: 0.01, seeds: 3 });
    expect(parsePerturbation('gauss')).toEqual({ kind: 'gauss', eps: 0.01, seeds: 3 });
    expect(canon('gauss:0.05x2')).toBe('gauss:0.05x2');
    expect(canon('bf16')).toBe('bf16');
    expect(canon('bfloat16')).toBe('bf16');
    expect(parsePerturbation('compute:float16')).toEqual({ kind: 'compute', dtype: 'float16' });
    expect(canon('compute:fp16')).toBe('compute:float16');
    expect(canon('compute:bf16')).toBe('compute:bfloat16');
    expect(parsePerturbation('seed:2')).toEqual({ kind: 'seed', seeds: 2 });
    expect(parsePerturbation('seed')).toEqual({ kind: 'seed', seeds: 3 });
    expect(parsePerturbation('seed:0')).toEqual({ kind: 'seed', seeds: 0 });
    expect(canon('calib:4')).toBe('calib:4');
  });

  it('rejects bad specs, saying what is valid', () => {
    expect(() => parsePerturbation('int8')).toThrow(
      /unknown perturbation 'int8'; valid: fp16, bf16, gauss:EPSxK .* compute:float16, compute:bfloat16, seed:K, calib:K/,
    );
    expect(() => parsePerturbation('compute:float32')).toThrow(/float32 compute is the reference/);
    expect(() => parsePerturbation('compute:int8')).toThrow(/compute dtype must be float16 or bfloat16/);
    expect(() => parsePerturbation('seed:-1')).toThrow(/'seed:-1': K must be an integer >= 0/);
    expect(() => parsePerturbation('seed:1.5')).toThrow(/K must be an integer >= 0/);
    expect(() => parsePerturbation('seed:')).toThrow(/K must be an integer >= 0/);
    expect(() => parsePerturbation('calib:0')).toThrow(/'calib:0': K must be an integer >= 1/);
    expect(() => parsePerturbation('gauss:0.01x0')).toThrow(/K a positive integer/);
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
    expect(() => perturbParams(params, { kind: 'seed', seeds: 2 })).toThrow(/does not change the weights/);
  });
});

/** A plan over two layers from kept lists (attention of 4 units, MLP of 6). */
function handPlan(kept: { attention: number[]; mlp: number[] }[]): PruningPlan {
  return {
    format: 'moreau-pruning-plan',
    version: 2,
    scope: 'block',
    criterion: { name: 'hand', options: {} },
    reduction: 'sum',
    ratio: 0.5,
    seed: 1,
    ranking: 'local',
    attnLayers: [0, kept.length],
    mlpLayers: [0, kept.length],
    steps: 1,
    model: { numLayers: kept.length },
    groups: kept.flatMap((k, layer) => [
      { group: { kind: 'attention' as const, layer }, total: 4, kept: k.attention },
      { group: { kind: 'mlp' as const, layer }, total: 6, kept: k.mlp },
    ]),
    masks: [],
  };
}

describe('comparing plans', () => {
  it('IoU of the pruned units and Spearman of the pooled scores, on hand-made plans', () => {
    const a = handPlan([
      { attention: [0, 1], mlp: [0, 1, 2] },
      { attention: [2, 3], mlp: [3, 4, 5] },
    ]);
    const b = handPlan([
      { attention: [0, 2], mlp: [0, 1, 2] },
      { attention: [2, 3], mlp: [0, 4, 5] },
    ]);
    expect([...prunedUnits(a)].sort()).toEqual(
      [
        'attention@0:2',
        'attention@0:3',
        'mlp@0:3',
        'mlp@0:4',
        'mlp@0:5',
        'attention@1:0',
        'attention@1:1',
        'mlp@1:0',
        'mlp@1:1',
        'mlp@1:2',
      ].sort(),
    );
    // a prunes 10 units, b prunes 10; they share 8 (b prunes attention@0:1 and mlp@1:3 instead of
    // attention@0:2 and mlp@1:0): IoU = 8 / 12.
    const scores = (xs: number[][]) => new Map(xs.map((s, i) => [`g${i}`, Float64Array.from(s)]));
    const sa = scores([
      [1, 2, 3, 4],
      [5, 6, 7],
    ]);
    // Same order except one swap of neighbours: ranks 1..7 vs 1,2,4,3,5,6,7 -> rho = 1 - 6*2/(7*48).
    const sb = scores([
      [1, 2, 4, 3],
      [5, 6, 7],
    ]);
    const r = comparePlans({ plan: a, scores: sa }, { plan: b, scores: sb });
    expect(r.iou).toBeCloseTo(8 / 12, 12);
    // Kept: a keeps 10, b keeps 10, they share 8 (a keeps attention@0:1 and mlp@1:3, b attention@0:2
    // and mlp@1:0 instead): 8 / 12 as well (both prune and keep 10 of 20 here).
    expect(r.iou_kept).toBeCloseTo(8 / 12, 12);
    expect(r.spearman).toBeCloseTo(1 - (6 * 2) / (7 * 48), 12);
    expect(comparePlans({ plan: a, scores: sa }, { plan: a, scores: sa })).toEqual({
      iou: 1,
      iou_kept: 1,
      spearman: 1,
    });
    // Reversed scores: rho = -1; disjoint pruned sets: IoU 0.
    const c = handPlan([
      { attention: [2, 3], mlp: [3, 4, 5] },
      { attention: [0, 1], mlp: [0, 1, 2] },
    ]);
    const rev = scores([
      [7, 6, 5, 4],
      [3, 2, 1],
    ]);
    expect(comparePlans({ plan: a, scores: sa }, { plan: c, scores: rev })).toEqual({
      iou: 0,
      iou_kept: 0,
      spearman: -1,
    });
    // Unequal sizes (ratio 0.25 of 4 units: prune 1, keep 3): one swap gives pruned IoU 0 but kept IoU 2 / 4.
    const small = (k: number[]) => ({
      ...handPlan([{ attention: k, mlp: [0, 1, 2, 3, 4, 5] }]),
    });
    const one = new Map([['g', Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])]]);
    const swap = comparePlans(
      { plan: small([1, 2, 3]), scores: one },
      { plan: small([0, 2, 3]), scores: one },
    );
    expect(swap.iou).toBe(0);
    expect(swap.iou_kept).toBeCloseTo((2 + 6) / (4 + 6), 12);
  });

  it('lists the pruned units of a plan', async () => {
    const r = await prune(model, { criterion: 'magnitude', ratio: 0.5 });
    // 2 layers: attention keeps 1 of 2 KV groups, MLP 6 of 12 channels.
    expect(prunedUnits(r.plan).size).toBe(2 * 1 + 2 * 6);
  });
});

describe('robustness analysis', () => {
  it('reports IoU, Spearman and PPL per criterion and perturbation', async () => {
    const phases: string[] = [];
    const events: { phase: string; done: number; total: number }[] = [];
    const report = await robustness(model, {
      ratio: 0.5,
      criteria: ['magnitude', { name: 'taylor', label: 'taylor1' }],
      perturbations: ['bf16', 'gauss:0x2'],
      calibration,
      prune: { backend },
      evaluate,
      onProgress: (p) => {
        phases.push(p.phase);
        events.push(p);
      },
    });
    expect(Object.keys(report)).toEqual([
      'ratio',
      'results',
      'baseline',
      'dense',
      'options',
      'stochastic',
      'seed',
    ]);
    expect(Object.keys(report.results)).toEqual(['magnitude', 'taylor1']);
    expect(report.stochastic).toEqual({ magnitude: false, taylor1: false });
    expect(report.options!.taylor1).toEqual({ variant: 'param_first' });
    for (const c of ['magnitude', 'taylor1']) {
      // The default seed family comes first; deterministic criteria are not re-run.
      expect(Object.keys(report.results[c]!)).toEqual(['seed:3', 'bf16', 'gauss:0x2']);
      expect(report.results[c]!['seed:3']).toEqual({
        applicable: false,
        reason: expect.stringMatching(/^deterministic: .* do not depend on the seed/),
      });
      const exact = report.results[c]!['gauss:0x2']!;
      expect(exact).toMatchObject({
        iou_mean: 1,
        iou_sd: 0,
        spearman_mean: expect.closeTo(1, 12),
        ppl_mean: report.baseline[c]!.ppl,
        ppl_sd: 0,
      });
      expect(exact).toHaveProperty('runs', [
        expect.objectContaining({ seed: 1000, iou: 1 }),
        expect.objectContaining({ seed: 1001, iou: 1 }),
      ]);
      const bf = report.results[c]!.bf16!;
      expect(Object.keys(bf)).toEqual(['iou', 'iou_kept', 'spearman', 'ppl', 'seconds']);
      if (!('iou' in bf)) throw new Error('single stat expected');
      expect(bf.iou).toBeGreaterThan(0);
      expect(bf.iou).toBeLessThanOrEqual(1);
      expect(bf.spearman).toBeGreaterThan(0.5);
    }
    expect(report.dense!.ppl).toBeGreaterThan(1);
    expect(phases.at(-1)).toBe('taylor1 gauss:0x2 noise seed 1001');
    // dense + 2 criteria x (reference + bf16 + 2 gauss); no seed runs; the total known from the start.
    const steps = events.filter((p) => !p.phase.includes(': '));
    expect(steps.map((p) => [p.done, p.total])).toEqual(Array.from({ length: 9 }, (_, i) => [i + 1, 9]));
    const table = formatRobustnessTable(report);
    expect(table).toContain('| magnitude | gauss:0x2 | 1 ± 0 | 1 ± 0 | 1 |');
    expect(table).toMatch(/\| taylor1 \| seed:3 \| n\/a \| - \| - \| deterministic: /);
  });

  it('compute:D scores in that dtype, compared with float32 compute and with each other', async () => {
    const b32 = new ReferenceBackend({ float32: true });
    const ev = async (m: PrunableModel) =>
      (await lossPerplexity(m, evalWindows, { backend: b32, batchSize: 3 })).ppl;
    const report = await robustness(model, {
      ratio: 0.5,
      criteria: ['magnitude', 'taylor'],
      perturbations: ['compute:float16', 'compute:bfloat16', 'seed:0'],
      calibration,
      prune: { backend: b32 },
      evaluate: ev,
      dense: false,
    });
    expect(Object.keys(report.results.taylor!)).toEqual([
      'compute:float16',
      'compute:bfloat16',
      'compute:float16 vs compute:bfloat16',
    ]);
    const t = report.results.taylor!;
    expect(t['compute:float16']).toMatchObject({ precision: 'emulated' });
    expect(t['compute:float16 vs compute:bfloat16']).toEqual({
      iou: expect.any(Number),
      iou_kept: expect.any(Number),
      spearman: expect.any(Number),
      between: ['compute:float16', 'compute:bfloat16'],
    });
    // The same plans made directly: IoU and Spearman agree with comparePlans of prune()'s results.
    const cal = sampleCalibration(stream, { samples: 2, seqLen: 8, seed: 3 });
    const at = (computeDtype: 'float32' | 'float16' | 'bfloat16') =>
      prune(model, { criterion: 'taylor', ratio: 0.5, calibration: cal, backend: b32, computeDtype });
    const [p32, p16, pbf] = [await at('float32'), await at('float16'), await at('bfloat16')];
    const bf16Stat = t['compute:bfloat16'] as { iou: number; spearman: number; ppl: number };
    expect(bf16Stat.iou).toBe(comparePlans(p32, pbf).iou);
    expect(bf16Stat.spearman).toBe(comparePlans(p32, pbf).spearman);
    expect(bf16Stat.spearman).toBeLessThan(1); // bfloat16 moves the scores
    expect(bf16Stat.ppl).toBe(await ev(pbf.model)); // the original weights cut by the bf16 plan
    expect((t['compute:float16 vs compute:bfloat16'] as { iou: number }).iou).toBe(
      comparePlans(p16, pbf).iou,
    );
    // Magnitude runs no model: nothing to compute in half precision.
    expect(report.results.magnitude!['compute:float16']).toEqual({
      applicable: false,
      reason: 'magnitude reads weights only (no forward or backward pass to compute in float16)',
    });
    expect(report.results.magnitude!).not.toHaveProperty(['compute:float16 vs compute:bfloat16']);
  });

  it('seed:K re-scores stochastic criteria with other seeds (noise and fresh windows)', async () => {
    const report = await robustness(model, {
      ratio: 0.5,
      criteria: [
        moreau2,
        { name: 'moreau', label: 'still', options: { noiseStd: 0, freshCalibration: false } },
      ],
      perturbations: ['seed:2'],
      calibration,
      prune: { backend, seed: 5 },
      evaluate,
      dense: false,
    });
    expect(report.stochastic).toEqual({ moreau: true, still: false });
    expect(report.seed).toBe(5);
    const s = family(report.results.moreau!['seed:2']);
    expect(s.varies).toEqual(['criterion seed', 'calibration windows']);
    expect(s.runs!.map((r) => r.seed)).toEqual([6, 7]);
    // Run k is exactly prune() with seed 5 + k and the windows drawn with calibration seed 3 + k.
    const draw = (seed: number) => sampleCalibration(stream, { samples: 2, seqLen: 8, iterations: 2, seed });
    const ref = await prune(model, {
      ...moreau2,
      criterion: 'moreau',
      ratio: 0.5,
      backend,
      seed: 5,
      calibration: draw(3),
    });
    const k1 = await prune(model, {
      ...moreau2,
      criterion: 'moreau',
      ratio: 0.5,
      backend,
      seed: 6,
      calibration: draw(4),
    });
    expect(s.runs![0]!.iou).toBe(comparePlans(ref, k1).iou);
    expect(report.results.still!['seed:2']).toMatchObject({ applicable: false });
    // Plain moreau reports no diagnostics: the baseline holds only its perplexity and time.
    expect(Object.keys(report.baseline.moreau!)).toEqual(['ppl', 'seconds']);
  });

  it('seed:K with fixed (replayed) windows varies only the criterion seed; calib:K redraws windows', async () => {
    const fixed: CalibrationSet = sampleCalibration(stream, {
      samples: 2,
      seqLen: 8,
      iterations: 2,
      seed: 3,
    });
    const replayed = await robustness(model, {
      ratio: 0.5,
      criteria: [moreau2, 'taylor'],
      perturbations: ['seed:1', 'calib:2'],
      calibration: fixed,
      prune: { backend },
      evaluate,
      dense: false,
    });
    expect(replayed.results.moreau!['seed:1']).toMatchObject({ varies: ['criterion seed'] });
    expect(replayed.results.taylor!['calib:2']).toEqual({
      applicable: false,
      reason: 'the calibration windows are fixed (replayed): there is nothing to redraw',
    });
    const drawn = await robustness(model, {
      ratio: 0.5,
      criteria: ['taylor', 'magnitude'],
      perturbations: ['calib:2'],
      calibration,
      prune: { backend },
      evaluate,
      dense: false,
    });
    const c = family(drawn.results.taylor!['calib:2']);
    expect(c.runs!.map((r) => r.seed)).toEqual([4, 5]);
    expect(c.iou_mean).toBeLessThan(1); // other windows, another plan
    expect(drawn.results.magnitude!['calib:2']).toEqual({
      applicable: false,
      reason: 'magnitude uses no calibration windows',
    });
  });

  it('a criterion that does not declare `stochastic` is watched: drawing from ctx.rng makes it stochastic', async () => {
    const { registerCriterion } = await import('@moreau/core');
    const base = {
      description: 'test',
      requires: { gradients: false, calibration: false },
      options: {},
      channelMode: () => 'abs-then-sum' as const,
      defaultReduction: 'sum' as const,
    };
    const noisy: Criterion = {
      ...base,
      name: 'test-undeclared-noisy',
      score: async (ctx) => ({
        unitScores: ctx.groups.map((g) => Float64Array.from({ length: g.units }, () => ctx.rng.uniform())),
      }),
    };
    const plain: Criterion = {
      ...base,
      name: 'test-undeclared-plain',
      score: async (ctx) => ({
        unitScores: ctx.groups.map((g) => Float64Array.from({ length: g.units }, (_, i) => i)),
      }),
    };
    registerCriterion(noisy);
    registerCriterion(plain);
    const report = await robustness(model, {
      ratio: 0.5,
      criteria: ['test-undeclared-noisy', 'test-undeclared-plain', 'random'],
      perturbations: ['seed:2'],
      evaluate,
      dense: false,
    });
    expect(report.stochastic).toEqual({
      'test-undeclared-noisy': true,
      'test-undeclared-plain': false,
      random: true,
    });
    // Random scores with other seeds: another plan.
    expect((report.results.random!['seed:2'] as { iou_mean: number }).iou_mean).toBeLessThan(1);
  });

  it('a cast that changes no weight is reported, not run; a perturbation listed twice is an error', async () => {
    const half = new Map<string, HostTensor>(
      [...params].map(([k, t]) => [k, castHost(t, 'float16')] as const),
    );
    const report = await robustness(new LlamaModel(config, half), {
      ratio: 0.5,
      criteria: ['magnitude'],
      perturbations: ['fp16', 'bf16'],
      evaluate,
      dense: false,
    });
    expect(report.results.magnitude!.fp16).toEqual({
      applicable: false,
      reason: 'every weight is already exactly representable in float16: the cast changes nothing',
    });
    expect(report.results.magnitude!.bf16).toHaveProperty('iou');
    await expect(
      robustness(model, {
        ratio: 0.5,
        criteria: ['magnitude'],
        perturbations: ['bf16', 'bfloat16'],
        evaluate,
      }),
    ).rejects.toThrow(/perturbation 'bf16' is listed twice/);
  });
});

describe('robustness sweep', () => {
  it('builds the grid, first axis outermost', () => {
    expect(
      sweepGrid([
        { key: 'lr', values: [1, 2] },
        { key: 'noiseStd', values: [0, 0.1, 0.2] },
      ]),
    ).toEqual([
      { lr: 1, noiseStd: 0 },
      { lr: 1, noiseStd: 0.1 },
      { lr: 1, noiseStd: 0.2 },
      { lr: 2, noiseStd: 0 },
      { lr: 2, noiseStd: 0.1 },
      { lr: 2, noiseStd: 0.2 },
    ]);
    expect(sweepGrid([])).toEqual([{}]);
  });

  it('checks the axes against the criteria', () => {
    expect(() => checkSweep(['taylor', 'magnitude'], [{ key: 'lr', values: [1] }])).toThrow(
      /sweep: none of taylor, magnitude has the option 'lr'; valid: variant, p/,
    );
    expect(() => checkSweep(['moreau'], [{ key: 'lr', values: [-1] }])).toThrow(/lr/);
    expect(() =>
      checkSweep(
        ['moreau'],
        [
          { key: 'lr', values: [1] },
          { key: 'lr', values: [2] },
        ],
      ),
    ).toThrow(/'lr' is swept twice/);
    expect(() => checkSweep(['moreau'], [{ key: 'lr', values: [] }])).toThrow(/'lr' has no values/);
    expect(() => checkSweep(['moreau', 'taylor'], [{ key: 'noiseStd', values: [0, 0.1] }])).not.toThrow();
  });

  it('runs the analysis per setting; criteria the setting does not touch are analysed once', async () => {
    const phases: string[] = [];
    const totals = new Set<number>();
    const report = await robustnessSweep(model, {
      ratio: 0.5,
      criteria: ['magnitude', 'taylor'],
      perturbations: ['bf16', 'seed:0'],
      sweep: [{ key: 'p', values: [1, 2] }],
      calibration,
      prune: { backend },
      evaluate,
      onProgress: (p) => {
        phases.push(p.phase);
        if (!p.phase.includes(': ')) totals.add(p.total);
      },
    });
    expect([...totals]).toEqual([7]); // dense + 3 references + 3 bf16 runs
    expect(report.grid.map((s) => s.label)).toEqual(['p=1', 'p=2']);
    expect(report.grid.map((s) => s.applies)).toEqual([
      { magnitude: ['p'], taylor: [] },
      { magnitude: ['p'], taylor: [] },
    ]);
    expect(report.grid.map((s) => s.report.options!.magnitude!.p)).toEqual([1, 2]);
    // taylor once, magnitude at each p: 3 references, 3 bf16 runs, and the dense model.
    expect(phases.filter((p) => p.endsWith(' reference'))).toEqual([
      'magnitude [p=1] reference',
      'taylor reference',
      'magnitude [p=2] reference',
    ]);
    expect(report.grid[0]!.report.results.taylor).toBe(report.grid[1]!.report.results.taylor);
    expect(report.dense!.ppl).toBeGreaterThan(1);
    const table = formatSweepTable(report);
    expect(table).toContain('| setting | criterion | PPL | bf16 IoU |');
    expect(table).toMatch(/\| p=2 \| taylor \(every setting\) \| \d+\.\d{3} \| \d\.\d{3} \|/);
  });
});
