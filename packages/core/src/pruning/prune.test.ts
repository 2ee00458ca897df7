import { describe, expect, it } from 'vitest';
import type { HostTensor } from '../dtype.js';
import { AbortError, InputError } from '../errors.js';
import { roundHost } from '../precision.js';
import { ReferenceBackend } from '../reference-backend.js';
import { jit, valueAndGrad } from '../transforms.js';
import { sampleCalibration } from './calibration.js';
import type { Criterion, GradientResult } from './criterion.js';
import type { PrunableGroup } from './groups.js';
import { countParams } from './model.js';
import { applyPlan, type PruningPlan, parsePlan, planToJSON } from './plan.js';
import { prune } from './prune.js';
import { keptCount } from './selection.js';
import { fixedCriterion, TOY_VOCAB, toyModel } from './test-fixtures.js';

/** Two layers: 4 heads + 10 MLP channels, 4 heads + 5 MLP channels. */
const layers = [
  { heads: 4, mlp: 10 },
  { heads: 4, mlp: 5 },
];

/** One-shot scores by group id. */
const SCORES: Record<string, number[]> = {
  'layer.0.attention': [0.3, 0.9, 0.1, 0.5],
  'layer.0.mlp': [5, 3, 9, 1, 7, 2, 8, 6, 4, 0],
  'layer.1.attention': [2, 2, 1, 2],
  'layer.1.mlp': [Number.NaN, 1, 3, 2, 5],
};
const byId = (table: Record<string, number[]>) => (g: PrunableGroup) => {
  const s = table[g.id];
  if (!s) throw new Error(`no scores for ${g.id}`);
  expect(s).toHaveLength(g.units);
  return s;
};

/** Kept units by group id ('layer.<l>.<kind>', 'hidden', 'layer.<l>'), from a plan's group decisions. */
const kept = (plan: PruningPlan) =>
  Object.fromEntries(
    plan.groups.map((d) => [
      d.group.layer === undefined
        ? d.group.kind
        : d.group.kind === 'layer'
          ? `layer.${d.group.layer}`
          : `layer.${d.group.layer}.${d.group.kind}`,
      [...d.kept],
    ]),
  );
const decision = (plan: PruningPlan, kind: string, layer?: number) =>
  plan.groups.find((d) => d.group.kind === kind && d.group.layer === layer)!;

/** Rows (axis 0) or columns (axis 1) of a [r, c] float32 tensor. */
function pick(t: HostTensor, axis: 0 | 1, idx: readonly number[]): number[] {
  const [r, c] = t.shape as [number, number];
  const d = t.data as Float32Array;
  const out: number[] = [];
  if (axis === 0) for (const i of idx) out.push(...d.subarray(i * c, (i + 1) * c));
  else for (let i = 0; i < r; i++) for (const j of idx) out.push(d[i * c + j]!);
  return out;
}

describe('prune: local selection and the rounding rule', () => {
  it('keeps floor(n * (1 - r)) best units per layer and cuts every member', async () => {
    const model = toyModel(layers);
    const criterion = fixedCriterion(byId(SCORES));
    const { plan, model: pruned, scores } = await prune(model, { criterion, ratio: 0.3 });
    // attention 4 -> floor(2.8) = 2; mlp 10 -> 7; mlp 5 -> floor(3.5) = 3. Ties keep the lower
    // index, NaN ranks last.
    expect(kept(plan)).toEqual({
      'layer.0.attention': [1, 3],
      'layer.0.mlp': [0, 1, 2, 4, 6, 7, 8],
      'layer.1.attention': [0, 1],
      'layer.1.mlp': [2, 3, 4],
    });
    expect(plan).toMatchObject({
      format: 'moreau-pruning-plan',
      version: 2,
      scope: 'block',
      criterion: { name: 'fixed', options: {} },
      reduction: 'sum',
      ratio: 0.3,
      ranking: 'local',
      seed: 1,
      attnLayers: [0, 2],
      mlpLayers: [0, 2],
      steps: 1,
      model: { numLayers: 2, params: countParams(model.params) },
      masks: [],
    });
    expect(decision(plan, 'attention', 0).total).toBe(4);
    expect(decision(plan, 'mlp', 1).total).toBe(5);
    // The cut: kept heads 1 and 3 are q rows 2,3,6,7 and o columns 2,3,6,7.
    const q0 = model.params.get('layers.0.q')!;
    expect([...pruned.params.get('layers.0.q')!.data]).toEqual(pick(q0, 0, [2, 3, 6, 7]));
    expect(pruned.params.get('layers.0.q')!.shape).toEqual([4, 6]);
    expect([...pruned.params.get('layers.0.o')!.data]).toEqual(
      pick(model.params.get('layers.0.o')!, 1, [2, 3, 6, 7]),
    );
    expect([...pruned.params.get('layers.1.down')!.data]).toEqual(
      pick(model.params.get('layers.1.down')!, 1, [2, 3, 4]),
    );
    expect(pruned.groups(['attention', 'mlp']).map((g) => g.units)).toEqual([2, 7, 2, 3]);
    // Parameters outside every group pass through untouched (same object).
    expect(pruned.params.get('embed')).toBe(model.params.get('embed'));
    expect(pruned.params.get('layers.1.norm')).toBe(model.params.get('layers.1.norm'));
    // Removed: 2 heads x (2 q rows + 2 o columns) x 6 in both layers; (3 + 2) channels x (up row + down column).
    expect(countParams(pruned.params)).toBe(
      countParams(model.params) - 2 * 2 * (2 * 6 + 6 * 2) - (3 + 2) * (6 + 6),
    );
    expect([...scores.get('layer.0.mlp')!]).toEqual(SCORES['layer.0.mlp']);
  });

  it('prunes only the groups in the layer ranges; the criterion sees only those', async () => {
    const model = toyModel(layers);
    const criterion = fixedCriterion(byId(SCORES));
    const { plan, model: pruned } = await prune(model, {
      criterion,
      ratio: 0.3,
      attnLayers: [1, 2],
      mlpLayers: [0, 1],
    });
    expect(criterion.contexts[0]!.groups.map((g) => g.id)).toEqual(['layer.0.mlp', 'layer.1.attention']);
    expect([...criterion.contexts[0]!.weights.keys()]).toEqual([
      'layers.0.up',
      'layers.0.down',
      'layers.1.q',
      'layers.1.o',
    ]);
    expect(plan.groups).toEqual([
      { group: { kind: 'mlp', layer: 0 }, total: 10, kept: [0, 1, 2, 4, 6, 7, 8] },
      { group: { kind: 'attention', layer: 1 }, total: 4, kept: [0, 1] },
    ]);
    expect(plan.attnLayers).toEqual([1, 2]);
    expect(plan.mlpLayers).toEqual([0, 1]);
    expect(pruned.groups(['attention', 'mlp']).map((g) => g.units)).toEqual([4, 7, 2, 5]);
    expect(pruned.params.get('layers.0.q')).toBe(model.params.get('layers.0.q'));
  });

  it('ratio 0 keeps everything; a tiny layer keeps at least one unit', async () => {
    const model = toyModel([{ heads: 1, mlp: 3 }]);
    const criterion = fixedCriterion((g) => Array.from({ length: g.units }, (_, i) => i));
    const none = await prune(model, { criterion, ratio: 0 });
    expect(kept(none.plan)).toEqual({ 'layer.0.attention': [0], 'layer.0.mlp': [0, 1, 2] });
    const most = await prune(model, { criterion, ratio: 0.9 });
    expect(kept(most.plan)).toEqual({ 'layer.0.attention': [0], 'layer.0.mlp': [2] });
  });
});

describe('prune: global-per-kind ranking', () => {
  it('pools the layers of each kind, keeps keptCount(total) and at least one unit per layer', async () => {
    const model = toyModel(layers);
    const scores: Record<string, number[]> = {
      'layer.0.attention': [0.3, 0.9, 0.1, 0.5],
      'layer.1.attention': [0.2, 0.25, 0.05, 0.15],
      'layer.0.mlp': [5, 3, 9, 1, 7, 2, 8, 6, 4, 0],
      'layer.1.mlp': [10, 0.5, 6.5, 2.5, 4.5],
    };
    const { plan, model: pruned } = await prune(model, {
      criterion: fixedCriterion(byId(scores)),
      ratio: 0.5,
      ranking: 'global',
    });
    // Attention: keep floor(8 * 0.5) = 4. Each layer's best first (0.9, 0.25), then the two best
    // of the rest, both in layer 0 (0.5, 0.3) although layer 1 only keeps one head.
    // MLP: keep floor(15 * 0.5) = 7: best per layer (9, 10), then 8, 7, 6.5, 6, 5.
    expect(kept(plan)).toEqual({
      'layer.0.attention': [0, 1, 3],
      'layer.0.mlp': [0, 2, 4, 6, 7],
      'layer.1.attention': [1],
      'layer.1.mlp': [0, 2],
    });
    expect(plan.ranking).toBe('global-per-kind');
    expect(pruned.groups(['attention', 'mlp']).map((g) => g.units)).toEqual([3, 5, 1, 2]);
  });

  it('iterative global pruning keeps the pooled count at every step', async () => {
    const model = toyModel(layers);
    const criterion = fixedCriterion((g) => Array.from({ length: g.units }, (_, i) => g.layer * 100 - i));
    const { plan } = await prune(model, { criterion, ratio: 0.5, ranking: 'global-per-kind', steps: 2 });
    const units = criterion.contexts.map((c) => c.groups.map((g) => g.units));
    // Step 1 (ratio 0.25): attention keeps floor(8 * 0.75) = 6, MLP floor(15 * 0.75) = 11; layer 1
    // scores higher, so it keeps everything and layer 0 gives up the rest.
    expect(units).toEqual([
      [4, 10, 4, 5],
      [2, 6, 4, 5],
    ]);
    // Step 2 (ratio 0.5): attention 4, MLP 7; layer 0 keeps its first (best) units only.
    expect(kept(plan)).toEqual({
      'layer.0.attention': [0],
      'layer.0.mlp': [0, 1],
      'layer.1.attention': [0, 1, 2],
      'layer.1.mlp': [0, 1, 2, 3, 4],
    });
  });
});

describe('prune: iterative pruning (steps)', () => {
  it('re-scores the cut model each step and records original unit indices', async () => {
    const model = toyModel(layers);
    // Step 2 scores are per current unit (after step 1's cut).
    const perCall: Record<string, number[]>[] = [
      {
        'layer.0.attention': [0.3, 0.9, 0.1, 0.5],
        'layer.0.mlp': [5, 3, 9, 1, 7, 2, 8, 6, 4, 0],
        'layer.1.attention': [4, 3, 2, 1],
        'layer.1.mlp': [1, 2, 3, 4, 5],
      },
      {
        'layer.0.attention': [3, 1, 2], // current units = original 0, 1, 3
        'layer.0.mlp': [1, 7, 2, 6, 3, 5, 4], // original 0, 1, 2, 4, 6, 7, 8
        'layer.1.attention': [1, 2, 3], // original 0, 1, 2
        'layer.1.mlp': [9, 8, 7], // original 2, 3, 4
      },
    ];
    const criterion = fixedCriterion((g, call) => byId(perCall[call]!)(g));
    const progress: string[] = [];
    const {
      plan,
      model: pruned,
      scores,
    } = await prune(model, {
      criterion,
      ratio: 0.5,
      steps: 2,
      includeScores: true,
      onProgress: (p) => progress.push(`${p.phase} ${p.done}/${p.total}`),
    });
    expect(criterion.calls).toBe(2);
    // Step 1 at ratio 0.25: 4 -> 3, 10 -> floor(7.5) = 7, 5 -> floor(3.75) = 3.
    expect(criterion.contexts[1]!.groups.map((g) => g.units)).toEqual([3, 7, 3, 3]);
    // Step 2 at ratio 0.5: 4 -> 2, 10 -> 5, 5 -> floor(2.5) = 2 (the one-shot counts).
    expect(kept(plan)).toEqual({
      'layer.0.attention': [0, 3],
      'layer.0.mlp': [1, 4, 6, 7, 8], // original unit 2 (best at step 1) is cut at step 2
      'layer.1.attention': [1, 2],
      'layer.1.mlp': [2, 3],
    });
    expect(plan.steps).toBe(2);
    expect(pruned.groups(['attention', 'mlp']).map((g) => g.units)).toEqual([2, 5, 2, 2]);
    expect([...pruned.params.get('layers.0.up')!.data]).toEqual(
      pick(model.params.get('layers.0.up')!, 0, [1, 4, 6, 7, 8]),
    );
    // The last step's scores in original unit order; NaN (null in the plan) for units cut earlier.
    expect([...scores.get('layer.0.mlp')!]).toEqual([
      1,
      7,
      2,
      Number.NaN,
      6,
      Number.NaN,
      3,
      5,
      4,
      Number.NaN,
    ]);
    expect(decision(plan, 'mlp', 0).scores).toEqual([1, 7, 2, null, 6, null, 3, 5, 4, null]);
    expect(progress).toEqual(['prune 1/2', 'prune 2/2']);
  });

  it.each([
    [10, 0.3, 3, [10, 9, 8], 7],
    [172, 0.2, 3, [172, 160, 149], 137],
    [4, 0.2, 2, [4, 3], 3],
  ])('n=%i ratio %f in %i steps: units seen per step %j, final %i', async (n, ratio, steps, seen, final) => {
    const model = toyModel([{ heads: 1, mlp: n }]);
    const criterion = fixedCriterion((g) => Array.from({ length: g.units }, (_, i) => -i));
    const { plan } = await prune(model, { criterion, ratio, steps, attnLayers: [0, 0] });
    expect(criterion.contexts.map((c) => c.groups[0]!.units)).toEqual(seen);
    expect(final).toBe(keptCount(n, ratio));
    expect(decision(plan, 'mlp', 0).kept).toEqual(Array.from({ length: final }, (_, i) => i));
  });
});

describe('prune: input errors', () => {
  const model = toyModel(layers);
  const criterion = fixedCriterion(byId(SCORES));
  it.each([
    [{ criterion: 'no-such-criterion', ratio: 0.2 }, /unknown criterion 'no-such-criterion'; available: /],
    [{ criterion, ratio: 1 }, /ratio must be in \[0, 1\)/],
    [{ criterion, ratio: -0.1 }, /ratio/],
    [{ criterion, ratio: 0.2, steps: 0 }, /steps must be a positive integer/],
    [{ criterion, ratio: 0.2, steps: 1.5 }, /steps/],
    [{ criterion, ratio: 0.2, seed: 0.5 }, /seed must be an integer/],
    [
      { criterion, ratio: 0.2, scope: 'globl' },
      /unknown scope 'globl'; valid: block, channel, layer, unstructured, N:M/,
    ],
    [
      { criterion, ratio: 0.2, ranking: 'pooled' },
      /unknown ranking 'pooled'; valid: local, global-per-kind, global-pool/,
    ],
    [
      { criterion, ratio: 0.2, reduction: 'median' },
      /unknown reduction 'median'; valid: sum, mean, max, prod, first/,
    ],
    [
      { criterion, ratio: 0.2, attnLayers: [0, 3] },
      /attnLayers must be a half-open range A:B with 0 <= A <= B <= 2, got 0:3/,
    ],
    [{ criterion, ratio: 0.2, mlpLayers: [2, 1] }, /mlpLayers/],
    [
      { criterion, ratio: 0.2, options: { alpha: 1 } },
      /criterion 'fixed' has no option 'alpha'; valid options: \(none\)/,
    ],
    [
      { criterion, ratio: 0.2, computeDtype: 'half' },
      /computeDtype must be one of float32, float16, bfloat16, got "half"/,
    ],
  ])('%#: %j', async (opts, message) => {
    await expect(prune(model, opts as never)).rejects.toThrow(message);
    await expect(prune(model, opts as never)).rejects.toBeInstanceOf(InputError);
  });

  it('a criterion that needs calibration gets none: the error says so', async () => {
    const c: Criterion = {
      ...fixedCriterion(byId(SCORES), 'needs-calib'),
      requires: { gradients: false, calibration: true },
    };
    await expect(prune(model, { criterion: c, ratio: 0.2 })).rejects.toThrow(
      /criterion 'needs-calib' needs calibration windows/,
    );
  });

  it('unit scores that do not match the groups are an error naming the criterion', async () => {
    const c = fixedCriterion((g) => new Array(g.units + 1).fill(1), 'too-many');
    await expect(prune(model, { criterion: c, ratio: 0.2 })).rejects.toThrow(
      /criterion 'too-many' returned unit scores that do not match/,
    );
  });

  it('an aborted signal stops the run', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(prune(model, { criterion, ratio: 0.2, signal: ac.signal })).rejects.toBeInstanceOf(
      AbortError,
    );
  });
});

describe('prune: criterion diagnostics and warnings', () => {
  const model = toyModel(layers);
  const ascending = (g: PrunableGroup) => Array.from({ length: g.units }, (_, i) => i);
  /** Reports its call number and the groups it saw; warns on the second call. */
  const reporting = (): Criterion => {
    const base = fixedCriterion(ascending, 'reporting');
    return {
      ...base,
      async score(ctx, o) {
        const r = await base.score(ctx, o);
        const call = base.calls;
        return {
          ...r,
          diagnostics: { call, groups: ctx.groups.map((g) => g.id), nested: { ok: true, none: null } },
          ...(call === 2 ? { warnings: ['second look'] } : {}),
        };
      },
    };
  };

  it('passes each scoring step diagnostics through, and its warnings (prefixed with the step)', async () => {
    const one = await prune(model, { criterion: reporting(), ratio: 0.2 });
    expect(one.diagnostics).toEqual([
      {
        call: 1,
        groups: ['layer.0.attention', 'layer.0.mlp', 'layer.1.attention', 'layer.1.mlp'],
        nested: { ok: true, none: null },
      },
    ]);
    expect(one.warnings).toEqual([]);
    const two = await prune(model, { criterion: reporting(), ratio: 0.4, steps: 2 });
    expect(two.diagnostics.map((d) => d.call)).toEqual([1, 2]);
    expect(two.warnings).toEqual(['step 2: second look']);
  });

  it('a criterion without diagnostics gives one empty record per step', async () => {
    const r = await prune(model, { criterion: fixedCriterion(ascending), ratio: 0.2, steps: 3 });
    expect(r.diagnostics).toEqual([{}, {}, {}]);
    expect(r.warnings).toEqual([]);
  });
});

describe('prune: seeded randomness', () => {
  const rngCriterion: Criterion = {
    ...fixedCriterion(() => []),
    name: 'rng-scores',
    async score(ctx) {
      return {
        unitScores: ctx.groups.map((g) => Float64Array.from({ length: g.units }, () => ctx.rng.uniform())),
      };
    },
  };
  it('the same seed gives the same plan; another seed another one', async () => {
    const model = toyModel([{ heads: 8, mlp: 40 }]);
    const a = await prune(model, { criterion: rngCriterion, ratio: 0.5, seed: 7, steps: 2 });
    const b = await prune(model, { criterion: rngCriterion, ratio: 0.5, seed: 7, steps: 2 });
    const c = await prune(model, { criterion: rngCriterion, ratio: 0.5, seed: 8, steps: 2 });
    expect(planToJSON(a.plan)).toBe(planToJSON(b.plan));
    expect(kept(c.plan)).not.toEqual(kept(a.plan));
    expect(c.plan.seed).toBe(8);
  });
});

describe('prune: the gradient oracle', () => {
  it('gives the loss and the gradients of the group members at the given weights', async () => {
    const backend = new ReferenceBackend();
    const model = toyModel([{ heads: 2, mlp: 3 }], 5);
    const stream = Array.from({ length: 200 }, (_, i) => (i * 7 + (i >> 3)) % TOY_VOCAB);
    const calibration = sampleCalibration(stream, { samples: 2, seqLen: 5, seed: 3 });
    const seen: { first: GradientResult; moved: GradientResult; weights: string[] }[] = [];
    const probe: Criterion = {
      ...fixedCriterion((g) => new Array(g.units).fill(1), 'grad-probe'),
      requires: { gradients: true, calibration: true },
      async score(ctx) {
        const windows = ctx.calibration!.iterations[0]!;
        const first = await ctx.gradient(windows);
        const moved = new Map([...ctx.weights].map(([k, w]) => [k, w.map((v) => v * 0.5)]));
        seen.push({ first, moved: await ctx.gradient(windows, moved), weights: [...ctx.weights.keys()] });
        return { unitScores: ctx.groups.map((g) => new Float64Array(g.units).fill(1)) };
      },
    };
    await prune(model, { criterion: probe, ratio: 0.5, calibration, backend });
    const { first, moved, weights } = seen[0]!;
    expect(weights).toEqual(['layers.0.q', 'layers.0.o', 'layers.0.up', 'layers.0.down']);
    // The same loss and gradients from a separately compiled valueAndGrad over every parameter.
    const f = jit(
      valueAndGrad((p: Record<string, any>, ids: any) => model.loss(p, ids)),
      { backend },
    );
    const ids: HostTensor = {
      dtype: 'int32',
      shape: [2, 5],
      data: Int32Array.from(calibration.iterations[0]!.flat()),
    };
    const [value, grads] = (await f(Object.fromEntries(model.params), ids)) as [
      HostTensor,
      Record<string, HostTensor>,
    ];
    expect(first.loss).toBeCloseTo((value.data as Float32Array)[0]!, 6);
    for (const k of weights) {
      const want = grads[k]!.data as Float32Array;
      const got = first.grads.get(k)!;
      expect(got).toHaveLength(want.length);
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 6);
    }
    expect(moved.loss).not.toBeCloseTo(first.loss, 4);
  });
});

describe('applyPlan', () => {
  it('re-applies a saved plan: same parameters as the pruned model', async () => {
    const model = toyModel(layers);
    const { plan, model: pruned } = await prune(model, {
      criterion: fixedCriterion(byId(SCORES)),
      ratio: 0.3,
      includeScores: true,
    });
    const again = applyPlan(model, parsePlan(planToJSON(plan), 'plan.json'));
    expect([...again.params.keys()]).toEqual([...pruned.params.keys()]);
    for (const [k, t] of pruned.params) {
      const u = again.params.get(k)!;
      expect(u.shape).toEqual(t.shape);
      expect(u.dtype).toBe(t.dtype);
      expect(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength)).toEqual(
        Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      );
    }
    expect(again.groups()).toEqual(pruned.groups());
  });

  it('applying a plan twice is an error naming the layer', async () => {
    const model = toyModel(layers);
    const { plan, model: pruned } = await prune(model, {
      criterion: fixedCriterion(byId(SCORES)),
      ratio: 0.3,
    });
    let err: unknown;
    try {
      applyPlan(pruned, plan);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(
      /layer 0 attention: the plan expects 4 units but the model has 2 \(was the plan already applied\?\)/,
    );
    expect((err as InputError).field).toBe('layer 0 attention');
  });

  it('a plan for another model is an error', async () => {
    const { plan } = await prune(toyModel(layers), { criterion: fixedCriterion(byId(SCORES)), ratio: 0.3 });
    expect(() => applyPlan(toyModel([layers[0]!]), plan)).toThrow(
      /the plan is for a model with 2 layers; this model has 1/,
    );
    expect(() =>
      applyPlan(
        toyModel([
          { heads: 4, mlp: 11 },
          { heads: 4, mlp: 5 },
        ]),
        plan,
      ),
    ).toThrow(/layer 0 mlp: the plan expects 10 units but the model has 11$/);
  });
});

describe('prune: compute dtype', () => {
  const stream = Array.from({ length: 300 }, (_, i) => (i * 7 + (i >> 3)) % TOY_VOCAB);
  const calibration = sampleCalibration(stream, { samples: 2, seqLen: 6, seed: 3 });
  /** Taylor-like: |w * dL/dw| of every member, with the losses it saw. */
  const taylorLike = (): Criterion & { losses: number[] } => {
    const losses: number[] = [];
    return {
      ...fixedCriterion(() => [], 'taylor-like'),
      requires: { gradients: true, calibration: true },
      losses,
      async score(ctx) {
        const { loss, grads } = await ctx.gradient(ctx.calibration!.iterations[0]!);
        losses.push(loss);
        for (const [name, g] of grads) {
          const w = ctx.weight(name);
          ctx.salience(
            name,
            g.map((v, i) => Math.abs(v * w[i]!)),
          );
        }
        return {};
      },
    };
  };
  const backend = new ReferenceBackend({ float32: true });

  it('float32 plans are unchanged (no compute field); other dtypes are recorded and re-read', async () => {
    const model = toyModel(layers, 2);
    const f32 = await prune(model, { criterion: taylorLike(), ratio: 0.4, calibration, backend });
    expect(f32.compute).toEqual({ computeDtype: 'float32', precision: 'native' });
    expect(f32.plan.compute).toBeUndefined();
    expect(planToJSON(f32.plan)).not.toContain('compute');
    const c = taylorLike();
    const bf = await prune(model, {
      criterion: c,
      ratio: 0.4,
      calibration,
      backend,
      computeDtype: 'bfloat16',
    });
    expect(bf.compute).toEqual({ computeDtype: 'bfloat16', precision: 'emulated' });
    expect(bf.plan.compute).toEqual(bf.compute);
    const json = planToJSON(bf.plan);
    expect(json).toContain(
      '  "steps": 1,\n  "compute": {"computeDtype":"bfloat16","precision":"emulated"},\n',
    );
    expect(parsePlan(json)).toEqual(JSON.parse(json));
    expect(() => parsePlan(json.replace('"bfloat16"', '"float8"'), 'p.json')).toThrow(
      /p.json: field 'compute' must be \{computeDtype: float32 \| float16 \| bfloat16/,
    );
    // The loss is the bfloat16 one: representable, close to (not equal to) float32's.
    const [loss] = c.losses;
    expect(roundHost(loss!, 'bfloat16')).toBe(loss);
  });

  it('a float16 overflow stops the run with an error naming the dtype, the loss and the parameter', async () => {
    // Weights 300x larger: activations and logits pass 65504 in float16 (fine in float32).
    const base = toyModel(layers, 2);
    const big = new Map(
      [...base.params].map(([k, t]) => [k, { ...t, data: (t.data as Float32Array).map((v) => v * 300) }]),
    );
    const model = base.withParams(big);
    const ok = await prune(model, { criterion: taylorLike(), ratio: 0.4, calibration, backend });
    expect(Number.isNaN(ok.scores.get('layer.0.mlp')![0]!)).toBe(false);
    for (const mode of ['whole', 'streamed'] as const) {
      const run = prune(model, {
        criterion: taylorLike(),
        ratio: 0.4,
        calibration,
        backend,
        computeDtype: 'float16',
        mode,
      });
      await expect(run).rejects.toBeInstanceOf(InputError);
      await expect(run).rejects.toThrow(
        /criterion 'taylor-like' computing in float16 \(emulated\): (the gradient of 'layers\.\d\.\w+'|the gradient of 'embed'|the loss) is non-finite.*the loss was (Infinity|NaN|[\d.]+)\. float16 overflows above 65504/,
      );
    }
  });
});
