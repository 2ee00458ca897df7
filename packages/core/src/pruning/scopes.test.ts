/**
 * The scopes beyond block, and the global-pool ranking, on the toy model against hand-computed
 * selections (ties to the lower index), plus plan re-application and model-shape checks.
 */
import { describe, expect, it } from 'vitest';
import type { HostTensor } from '../dtype.js';
import { InputError } from '../errors.js';
import { ReferenceBackend } from '../reference-backend.js';
import { sampleCalibration } from './calibration.js';
import type { Criterion } from './criterion.js';
import { bitAt, elementMask } from './masks.js';
import { countParams, type PrunableModel } from './model.js';
import { applyPlan, type PruningPlan, parsePlan, planToJSON } from './plan.js';
import { prune } from './prune.js';
import { parseRanking, parseScope } from './scope.js';
import { fixedCriterion, TOY_DIM, TOY_VOCAB, ToyModel, toyModel } from './test-fixtures.js';

/** Salience = the weights themselves (abs-then-sum, summed over members): hand-computable. */
const weightsCriterion: Criterion = {
  name: 'weights',
  description: 'salience = w',
  requires: { gradients: false, calibration: false },
  options: {},
  channelMode: () => 'abs-then-sum',
  defaultReduction: 'sum',
  async score(ctx) {
    for (const p of ctx.params) if (p.member) ctx.salience(p.name, ctx.weight(p.name));
    return {};
  },
};

/** Taylor's first order, |w * dL/dw| per element, from streamed gradients. */
const gradientCriterion: Criterion = {
  ...weightsCriterion,
  name: 'w-times-g',
  requires: { gradients: true, calibration: true },
  async score(ctx) {
    await ctx.gradients(ctx.calibration!.iterations[0]!, {
      consume: (grads) => {
        for (const [name, g] of grads) {
          const w = ctx.weight(name);
          for (let i = 0; i < w.length; i++) w[i]! *= g[i]!;
          ctx.salience(name, w);
        }
      },
    });
    return {};
  },
};

/** A copy of the toy's parameters with f(name, value, index) applied to every element. */
function mapParams(
  model: ToyModel,
  f: (name: string, shape: readonly number[], i: number) => number,
): ToyModel {
  const params = new Map<string, HostTensor>();
  for (const [name, t] of model.params) {
    params.set(name, { ...t, data: Float32Array.from(t.data, (_, i) => f(name, t.shape, i)) });
  }
  return new ToyModel(params);
}

const keptOf = (plan: PruningPlan) => plan.groups.map((d) => [d.group, d.kept]);

function sameParams(a: PrunableModel, b: PrunableModel) {
  expect([...a.params.keys()]).toEqual([...b.params.keys()]);
  for (const [k, t] of a.params) {
    const u = b.params.get(k)!;
    expect(u.shape, k).toEqual(t.shape);
    expect(Array.from(u.data), k).toEqual(Array.from(t.data));
  }
}

describe('scope and ranking names', () => {
  it('parses scopes (N:M included) and rankings, with errors listing the valid ones', () => {
    expect(parseScope('2:4')).toEqual({ kind: 'n:m', name: '2:4', n: 2, m: 4 });
    expect(parseScope('layer')).toEqual({ kind: 'layer', name: 'layer' });
    expect(() => parseScope('4:2')).toThrow(/N:M needs 1 <= N < M/);
    expect(() => parseScope('rows')).toThrow(/valid: block, channel, layer, unstructured, N:M/);
    expect(parseRanking('global')).toBe('global-per-kind');
    expect(parseRanking('global-pool')).toBe('global-pool');
    expect(() => parseRanking('pool')).toThrow(/valid: local, global-per-kind, global-pool/);
  });
});

describe('global-pool ranking', () => {
  it('ranks KV groups and MLP channels in one pool of keptCount(all units), at least one per group', async () => {
    const model = toyModel([
      { heads: 4, mlp: 10 },
      { heads: 4, mlp: 5 },
    ]);
    const scores: Record<string, number[]> = {
      'layer.0.attention': [30, 90, 10, 50],
      'layer.0.mlp': [5, 3, 9, 1, 7, 2, 8, 6, 4, 0],
      'layer.1.attention': [2, 2.5, 0.5, 1.5],
      'layer.1.mlp': [10, 0.5, 6.5, 2.5, 4.5],
    };
    const { plan, model: pruned } = await prune(model, {
      criterion: fixedCriterion((g) => scores[g.id]!),
      ratio: 0.5,
      ranking: 'global-pool',
    });
    // 23 units -> keep floor(11.5) = 11: every group's best (90, 9, 2.5, 10), then the 7 best of
    // the rest: 50, 30, 10 (attention 0), 8, 7, 6.5, 6.
    expect(keptOf(plan)).toEqual([
      [{ kind: 'attention', layer: 0 }, [0, 1, 2, 3]],
      [{ kind: 'mlp', layer: 0 }, [2, 4, 6, 7]],
      [{ kind: 'attention', layer: 1 }, [1]],
      [{ kind: 'mlp', layer: 1 }, [0, 2]],
    ]);
    expect(plan.ranking).toBe('global-pool');
    expect(pruned.groups(['attention', 'mlp']).map((g) => g.units)).toEqual([4, 4, 1, 2]);
  });
});

describe('channel scope', () => {
  it('keeps the best hidden channels of the whole model (members summed), ties to the lower channel', async () => {
    // Every element on hidden channel c has magnitude v[c], so channel c scores v[c] times the same
    // count of elements: ranking by v. keep floor(6 * 0.5) = 3: 3 (c1), 3 (c3), then 2 (c2 before c5).
    const v = [1, 3, 2, 3, 0.5, 2];
    const base = toyModel([
      { heads: 2, mlp: 3 },
      { heads: 1, mlp: 4 },
    ]);
    const hiddenAxis: Record<string, number> = { embed: 1, norm: 0, q: 1, o: 0, up: 1, down: 0 };
    const model = mapParams(base, (name, shape, i) => {
      const axis = hiddenAxis[name.split('.').pop()!]!;
      const c = shape.length === 1 ? i : axis === 0 ? Math.floor(i / shape[1]!) : i % shape[1]!;
      return (i % 2 ? -1 : 1) * v[c]!;
    });
    const { plan, model: pruned } = await prune(model, {
      criterion: weightsCriterion,
      ratio: 0.5,
      scope: 'channel',
      includeScores: true,
    });
    expect(keptOf(plan)).toEqual([[{ kind: 'hidden' }, [1, 2, 3]]]);
    const count = TOY_VOCAB + (1 + 2 * 2 * 2 + 2 * 3) + (1 + 2 * 1 * 2 + 2 * 4);
    expect(plan.groups[0]!.scores).toEqual(v.map((x) => x * count));
    expect(plan).toMatchObject({ scope: 'channel', reduction: 'sum', ratio: 0.5 });
    expect(plan.ranking).toBeUndefined();
    expect(plan.attnLayers).toBeUndefined();
    expect(pruned.params.get('embed')!.shape).toEqual([TOY_VOCAB, 3]);
    expect(pruned.params.get('layers.1.q')!.shape).toEqual([2, 3]);
    expect(pruned.params.get('layers.1.down')!.shape).toEqual([3, 4]);
    expect(countParams(pruned.params)).toBe(countParams(model.params) / 2);
    sameParams(applyPlan(model, parsePlan(planToJSON(plan))), pruned);
  });
});

describe('layer scope', () => {
  const three = [
    { heads: 2, mlp: 3 },
    { heads: 2, mlp: 3 },
    { heads: 2, mlp: 3 },
  ];
  /** Every weight of layer l has magnitude v[l]: layer l scores v[l] times the same count. */
  const layered = (v: number[]) =>
    mapParams(toyModel(three), (name, _, i) => {
      const l = /^layers\.(\d+)\./.exec(name);
      return l ? (i % 3 ? 1 : -1) * v[Number(l[1])]! : 0.1;
    });

  it('removes the lowest-scoring layers (reduction of the members), ties keep the lower layer', async () => {
    const model = layered([2, 1, 2]);
    const { plan, model: pruned } = await prune(model, {
      criterion: weightsCriterion,
      ratio: 0.34,
      scope: 'layer',
    });
    // keep floor(3 * 0.66) = 1 layer: 0 and 2 tie, layer 0 stays.
    expect(keptOf(plan)).toEqual([
      [{ kind: 'layer', layer: 0 }, [0]],
      [{ kind: 'layer', layer: 1 }, []],
      [{ kind: 'layer', layer: 2 }, []],
    ]);
    expect(pruned.numLayers).toBe(1);
    expect(pruned.params.get('layers.0.q')).toBe(model.params.get('layers.0.q'));
    expect(pruned.params.has('layers.1.q')).toBe(false);
    sameParams(applyPlan(model, parsePlan(planToJSON(plan))), pruned);

    const two = await prune(layered([1, 3, 2]), { criterion: weightsCriterion, ratio: 0.34, scope: 'layer' });
    expect(two.model.params.get('layers.0.q')!.data[1]).toBe(3); // old layer 1 is the new layer 0
  });

  it('only candidates in both layer ranges compete', async () => {
    const { plan } = await prune(layered([1, 2, 3]), {
      criterion: weightsCriterion,
      ratio: 0.5,
      scope: 'layer',
      attnLayers: [0, 3],
      mlpLayers: [0, 2],
    });
    // Candidates 0 and 1: keep floor(2 * 0.5) = 1, layer 1 (score 2).
    expect(keptOf(plan)).toEqual([
      [{ kind: 'layer', layer: 0 }, []],
      [{ kind: 'layer', layer: 1 }, [0]],
    ]);
  });

  it("keepFirst: LLM-Pruner's rule, no criterion, recorded as such", async () => {
    const model = layered([1, 2, 3]);
    const { plan, model: pruned } = await prune(model, { scope: 'layer', keepFirst: 2 });
    expect(plan).toMatchObject({ criterion: null, keepFirst: 2, ratio: 1 / 3 });
    expect(plan.reduction).toBeUndefined();
    expect(pruned.numLayers).toBe(2);
    expect(planToJSON(parsePlan(planToJSON(plan)))).toBe(planToJSON(plan));
    await expect(prune(model, { scope: 'layer', keepFirst: 2, criterion: weightsCriterion })).rejects.toThrow(
      /keepFirst keeps the first layers without scoring them: drop the criterion/,
    );
    await expect(prune(model, { scope: 'layer', keepFirst: 2, attnLayers: [0, 2] })).rejects.toThrow(
      /keepFirst 2 would remove layer 2, which is outside the layer ranges/,
    );
    await expect(prune(model, { scope: 'block', keepFirst: 2 })).rejects.toThrow(
      /keepFirst applies to scope layer/,
    );
    await expect(prune(model, { scope: 'layer', keepFirst: 4 })).rejects.toThrow(
      /keepFirst must be an integer in \[1, 3\]/,
    );
  });
});

describe('element scopes', () => {
  const model = toyModel([
    { heads: 2, mlp: 4 },
    { heads: 2, mlp: 8 },
  ]);

  it('unstructured: each matrix of the pruned layers masked per row as its salience arrives', async () => {
    const { plan, model: pruned } = await prune(model, {
      criterion: weightsCriterion,
      ratio: 0.5,
      scope: 'unstructured',
      attnLayers: [1, 2],
    });
    expect(plan.masks.map((m) => m.param)).toEqual([
      'layers.0.up',
      'layers.0.down',
      'layers.1.q',
      'layers.1.o',
      'layers.1.up',
      'layers.1.down',
    ]);
    expect(plan).toMatchObject({ scope: 'unstructured', keepLowRatio: 0, groups: [] });
    expect(plan.reduction).toBeUndefined();
    for (const m of plan.masks) {
      const w = model.params.get(m.param)!;
      const bits = elementMask(
        w.data as Float32Array,
        w.shape,
        { kind: 'unstructured', ratio: 0.5, n: 0, m: 0, keepLowRatio: 0, seed: 1 },
        m.param,
      );
      expect(m.zeroed).toEqual(bits);
      const got = pruned.params.get(m.param)!.data;
      for (let i = 0; i < got.length; i++) expect(got[i]).toBe(bitAt(bits, i) ? 0 : w.data[i]);
    }
    // Rows of 6 lose 3, rows of 4 / 2 / 8 lose half.
    const zeros = [...pruned.params.values()].reduce((s, t) => s + t.data.filter((x) => x === 0).length, 0);
    expect(zeros).toBe((4 * 6 + 6 * 4 + 8 * 6 + 6 * 8 + 4 * 6 + 6 * 4) / 2);
    expect(pruned.params.get('layers.0.q')).toBe(model.params.get('layers.0.q'));
    expect(pruned.numLayers).toBe(2);
  });

  it('N:M and keepLowRatio; re-applied from a bitset plan and from a salience plan alike', async () => {
    const a = await prune(model, {
      criterion: weightsCriterion,
      scope: '1:2',
      keepLowRatio: 0.25,
      seed: 9,
    });
    const b = await prune(model, {
      criterion: weightsCriterion,
      scope: '1:2',
      keepLowRatio: 0.25,
      seed: 9,
      includeScores: true,
    });
    expect(b.plan.masks[0]!.zeroed).toBeUndefined();
    expect(b.plan.masks[0]!.salience).toEqual(model.params.get('layers.0.q')!.data);
    sameParams(b.model, a.model);
    sameParams(applyPlan(model, parsePlan(planToJSON(a.plan))), a.model);
    sameParams(applyPlan(model, parsePlan(planToJSON(b.plan))), a.model);
    // 1:2 zeroes half, then a quarter of those come back.
    const q = a.model.params.get('layers.0.q')!.data;
    expect(q.filter((x) => x === 0).length).toBe(12 - Math.floor(12 * 0.25));
  });

  it('plans for another model shape are rejected naming the first mismatch', async () => {
    const { plan } = await prune(model, { criterion: weightsCriterion, ratio: 0.5, scope: 'unstructured' });
    const other = toyModel([
      { heads: 2, mlp: 4 },
      { heads: 2, mlp: 6 },
    ]);
    expect(() => applyPlan(other, plan)).toThrow(
      "'layers.1.up': the plan expects shape [8, 6] but the model has [6, 6]",
    );
    expect(() => applyPlan(toyModel([{ heads: 2, mlp: 4 }]), plan)).toThrow(
      /the plan is for a model with 2 layers; this model has 1/,
    );
    const channel = await prune(model, { criterion: weightsCriterion, ratio: 0.5, scope: 'channel' });
    expect(() => applyPlan(other, channel.plan)).toThrow(
      `the plan is for a model with ${countParams(model.params)} parameters; this model has ${countParams(other.params)}`,
    );
    const layer = await prune(model, { criterion: weightsCriterion, ratio: 0.5, scope: 'layer' });
    expect(() => applyPlan(layer.model, layer.plan)).toThrow(/for a model with 2 layers; this model has 1/);
  });
});

describe('scopes and criteria', () => {
  const model = toyModel([{ heads: 2, mlp: 4 }]);
  it('a criterion declares the scopes it scores; a mismatch names both', async () => {
    const units: Criterion = {
      ...fixedCriterion((g) => new Array(g.units).fill(1), 'units-only'),
      scopes: ['block', 'channel', 'layer'],
    };
    await expect(prune(model, { criterion: units, ratio: 0.5, scope: '2:4' })).rejects.toThrow(
      "criterion 'units-only' cannot prune at scope '2:4': it scores block, channel, layer only",
    );
    await expect(prune(model, { criterion: units, ratio: 0.5, scope: 'layer' })).resolves.toBeDefined();
    // An undeclared unit-score criterion at an element scope fails once it returns.
    await expect(
      prune(model, {
        criterion: fixedCriterion((g) => new Array(g.units).fill(1)),
        ratio: 0.5,
        scope: 'unstructured',
      }),
    ).rejects.toThrow(/returned unit scores; scope unstructured needs element salience/);
  });

  it.each([
    [
      { ranking: 'global-pool', scope: 'channel' },
      /ranking 'global-pool' applies to scope block, not channel/,
    ],
    [{ keepLowRatio: 0.1 }, /keepLowRatio applies to the unstructured and N:M scopes, not block/],
    [{ keepLowRatio: 1, scope: 'unstructured' }, /keepLowRatio must be in \[0, 1\)/],
    [
      { steps: 2, scope: 'layer' },
      /iterative pruning \(steps > 1\) applies to the block and channel scopes, not layer/,
    ],
    [
      { scope: 'channel', mlpLayers: [0, 0] },
      /scope channel prunes hidden channels through every layer: mlpLayers does not apply/,
    ],
    [
      { scope: '2:4' },
      /scope 2:4 needs every pruned matrix's input width to be a multiple of 4; 'layers.0.q' has 6 columns/,
    ],
  ])('%j is a usage error', async (extra, message) => {
    const run = prune(model, { criterion: weightsCriterion, ratio: 0.5, ...(extra as object) });
    await expect(run).rejects.toThrow(message);
    await expect(run).rejects.toBeInstanceOf(InputError);
  });
});

describe('whole and layer-streamed runs give byte-identical plans', () => {
  it.each(['unstructured', '1:2', 'layer', 'channel', 'block'] as const)('%s', async (scope) => {
    const backend = new ReferenceBackend();
    const model = toyModel([
      { heads: 2, mlp: 4 },
      { heads: 2, mlp: 4 },
      { heads: 2, mlp: 4 },
    ]);
    const stream = Array.from({ length: 300 }, (_, i) => (i * 5 + (i >> 2)) % TOY_VOCAB);
    const calibration = sampleCalibration(stream, { samples: 2, seqLen: 6, seed: 4 });
    const run = (mode: 'whole' | 'streamed') =>
      prune(model, {
        criterion: gradientCriterion,
        ...(scope === '1:2' ? {} : { ratio: 0.34 }),
        scope,
        calibration,
        backend,
        mode,
      });
    const whole = await run('whole');
    const streamed = await run('streamed');
    expect([whole.mode, streamed.mode]).toEqual(['whole', 'streamed']);
    expect(planToJSON(streamed.plan)).toBe(planToJSON(whole.plan));
    sameParams(streamed.model, whole.model);
  });
});

describe('layer activations (forward criteria)', () => {
  it('hands each layer its input and output in order; output l is input l + 1', async () => {
    const backend = new ReferenceBackend();
    const model = toyModel([
      { heads: 2, mlp: 4 },
      { heads: 1, mlp: 2 },
    ]);
    const seen: { layer: number; input: HostTensor; output: HostTensor }[] = [];
    const probe: Criterion = {
      ...fixedCriterion((g) => [g.layer], 'probe'),
      requires: { gradients: false, calibration: true, forward: true },
      async score(ctx) {
        await ctx.layerActivations(ctx.calibration!.iterations[0]!, (a) => {
          seen.push(a);
        });
        return { unitScores: ctx.groups.map((g) => Float64Array.of(g.layer)) };
      },
    };
    const calibration = {
      iterations: [
        [
          [1, 2, 3, 4],
          [5, 6, 7, 8],
        ],
      ],
    };
    const { plan } = await prune(model, {
      criterion: probe,
      ratio: 0.5,
      scope: 'layer',
      calibration,
      backend,
    });
    expect(keptOf(plan)).toEqual([
      [{ kind: 'layer', layer: 0 }, []],
      [{ kind: 'layer', layer: 1 }, [0]],
    ]);
    expect(seen.map((a) => a.layer)).toEqual([0, 1]);
    expect(seen[0]!.input.shape).toEqual([2, 4, TOY_DIM]);
    expect(seen[1]!.input.data).toEqual(seen[0]!.output.data);
    // The embedding of token 1 at position 0.
    expect(Array.from(seen[0]!.input.data.subarray(0, TOY_DIM))).toEqual(
      Array.from(model.params.get('embed')!.data.subarray(TOY_DIM, 2 * TOY_DIM)),
    );
  });
});
