/**
 * The built-in criteria on a tiny random LLaMA (GQA: 4 query heads, 2 KV heads) on the reference
 * backend: each criterion's unit scores against a hand computation from the weights and from
 * gradients of a separately compiled valueAndGrad(llamaLoss).
 */
import {
  type CalibrationSet,
  type Criterion,
  counterKey,
  fillCounterNormals,
  getCriterion,
  type HostTensor,
  InputError,
  jit,
  listCriteria,
  type PrunableGroup,
  prune,
  ReferenceBackend,
  Rng,
  resolveOptions,
  sampleCalibration,
  tensor,
  valueAndGrad,
} from '@moreau/core';
import { LlamaModel, llamaLoss, randomInit } from '@moreau/models';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { blockInfluence, builtinCriteria, magnitude, moreau, moreauGs, random, taylor } from './index.js';
import { paramKind, proximalStep, type ShrinkCounts } from './moreau.js';

const config = smallConfig({
  vocabSize: 32,
  hiddenSize: 16,
  intermediateSize: 12,
  headDim: 4,
  tieWordEmbeddings: true,
});
const model = new LlamaModel(config, randomInit(config, 3, { std: 0.2 }));
const backend = new ReferenceBackend();
const stream = Array.from(new Rng(99).uniformArray(400, 0, 32), Math.floor);
const calibration = (iterations = 1, fresh = true): CalibrationSet =>
  sampleCalibration(stream, { samples: 3, seqLen: 8, seed: 5, iterations, fresh });

const f32 = (name: string) => model.params.get(name)!.data as Float32Array;

/** Every [param, axis, index] row / column slice of unit u. */
function slices(g: PrunableGroup, u: number) {
  return g.members.flatMap((m) =>
    Array.from({ length: m.span }, (_, j) => ({
      param: m.param,
      axis: m.axis,
      index: m.offset + u * m.span + j,
    })),
  );
}

/** The entries of one row (axis 0) or column (axis 1) of a parameter. */
function sliceOf(data: ArrayLike<number>, shape: readonly number[], axis: number, index: number): number[] {
  const [r, c] = shape as [number, number];
  return axis === 0
    ? Array.from({ length: c }, (_, j) => data[index * c + j]!)
    : Array.from({ length: r }, (_, i) => data[i * c + index]!);
}

/**
 * Hand-computed unit scores with reduction 'sum' (or 'mean' = sum / members): over every slice of the
 * unit, sum |s| (abs-then-sum) or |sum s| (sum-then-abs). Folding query heads onto KV channels and
 * summing head_dim channels leaves exactly this total.
 */
function handScores(
  salience: (param: string) => ArrayLike<number>,
  mode: 'abs-then-sum' | 'sum-then-abs',
  reduction: 'sum' | 'mean' = 'sum',
): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const g of model.groups(['attention', 'mlp'])) {
    out.set(
      g.id,
      Array.from({ length: g.units }, (_, u) => {
        let total = 0;
        for (const s of slices(g, u)) {
          const v = sliceOf(salience(s.param), model.params.get(s.param)!.shape, s.axis, s.index);
          total +=
            mode === 'abs-then-sum'
              ? v.reduce((a, x) => a + Math.abs(x), 0)
              : Math.abs(v.reduce((a, x) => a + x, 0));
        }
        return reduction === 'mean' ? total / g.members.length : total;
      }),
    );
  }
  return out;
}

function expectScoresClose(got: ReadonlyMap<string, Float64Array>, want: Map<string, number[]>, rel = 1e-5) {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [id, w] of want) {
    const g = got.get(id)!;
    expect(g).toHaveLength(w.length);
    const scale = Math.max(...w.map(Math.abs));
    w.forEach((v, i) => {
      expect(Math.abs(g[i]! - v), `${id}[${i}]: ${g[i]} vs ${v}`).toBeLessThanOrEqual(rel * scale);
    });
  }
}

/** Gradients of the loss on a batch of windows, every parameter, from its own compiled graph. */
const lossGrad = jit(
  valueAndGrad((p: Record<string, any>, ids: any) => llamaLoss(p, ids, config)),
  { backend },
);
async function grads(
  windows: readonly (readonly number[])[],
  params: ReadonlyMap<string, HostTensor> = model.params,
) {
  const ids = tensor(Int32Array.from(windows.flat()), [windows.length, windows[0]!.length], 'int32');
  const [, g] = (await lossGrad(Object.fromEntries(params), ids)) as [HostTensor, Record<string, HostTensor>];
  return (name: string) => g[name]!.data as Float32Array;
}

describe('registration', () => {
  it('importing @moreau/criteria registers the six built-in criteria', () => {
    expect(listCriteria()).toEqual(
      expect.arrayContaining(['magnitude', 'random', 'taylor', 'moreau', 'moreau-gs', 'block-influence']),
    );
    for (const c of builtinCriteria) expect(getCriterion(c.name)).toBe(c);
  });

  it.each([
    [magnitude, { gradients: false, calibration: false }, 'mean'],
    [random, { gradients: false, calibration: false }, 'sum'],
    [taylor, { gradients: true, calibration: true }, 'sum'],
    [moreau, { gradients: true, calibration: true }, 'sum'],
    [moreauGs, { gradients: true, calibration: true }, 'sum'],
  ] as const)('%s declares what it needs', (c: Criterion, requires, reduction) => {
    expect(c.requires).toEqual(requires);
    expect(c.defaultReduction).toBe(reduction);
  });

  it('documented options and their defaults (the released MoreauPruner hyper-parameters)', () => {
    expect(resolveOptions(magnitude)).toEqual({ p: 2 });
    expect(resolveOptions(taylor)).toEqual({ variant: 'param_first' });
    const common = {
      iterations: 10,
      averageLast: 5,
      noiseStd: 0.05,
      lr: 2e-4,
      lambda: 0.2,
      freshCalibration: true,
      perturb: 'all',
      proximal: 'reference',
    };
    expect(resolveOptions(moreau)).toEqual(common);
    expect(resolveOptions(moreauGs)).toEqual({ ...common, soft: 5e-6 });
    expect(moreau.calibrationIterations!(resolveOptions(moreau))).toBe(10);
    expect(moreau.calibrationIterations!(resolveOptions(moreau, { freshCalibration: false }))).toBe(1);
    expect(() => resolveOptions(taylor, { variant: 'param' })).toThrow(
      "criterion 'taylor' option 'variant': expected one of vectorize | param_first | param_second | param_mix",
    );
    expect(() => resolveOptions(moreauGs, { softness: 1 })).toThrow(
      "criterion 'moreau-gs' has no option 'softness'; valid options: iterations, averageLast, noiseStd, lr, lambda, freshCalibration, perturb, proximal, soft",
    );
    expect(() => resolveOptions(magnitude, { p: 3 })).toThrow(/option 'p': expected a number <= 2/);
  });
});

describe('magnitude', () => {
  it.each([
    [2, (w: number) => w * w],
    [1, Math.abs],
  ])('p=%i: mean over members of sum |w|^p per slice', async (p, fn) => {
    const { scores } = await prune(model, { criterion: 'magnitude', options: { p }, ratio: 0.25 });
    expectScoresClose(
      scores,
      handScores((n) => f32(n).map(fn), 'abs-then-sum', 'mean'),
      1e-6,
    );
  });
});

describe('random', () => {
  it('draws one uniform per unit from the run RNG, group after group', async () => {
    const { scores, plan } = await prune(model, { criterion: 'random', ratio: 0.25, seed: 17 });
    const rng = new Rng(17).fork(); // prune forks the run's RNG for each scoring step
    for (const g of model.groups(['attention', 'mlp'])) {
      const want = Array.from({ length: g.units }, () => rng.uniform());
      expect([...scores.get(g.id)!]).toEqual(want);
    }
    const again = await prune(model, { criterion: 'random', ratio: 0.25, seed: 17 });
    expect(again.plan).toEqual(plan);
  });

  it('scores units only: block, channel and layer scopes, not single weights', async () => {
    expect(random.scopes).toEqual(['block', 'channel', 'layer']);
    const layer = await prune(model, { criterion: 'random', ratio: 0.5, seed: 17, scope: 'layer' });
    expect(layer.model.numLayers).toBe(1);
    await expect(prune(model, { criterion: 'random', ratio: 0.5, scope: 'unstructured' })).rejects.toThrow(
      "criterion 'random' cannot prune at scope 'unstructured': it scores block, channel, layer only",
    );
  });
});

describe('every salience criterion works at every scope', () => {
  it.each(['magnitude', 'taylor', 'moreau-gs'])('%s', async (name) => {
    const cal = calibration(10);
    const run = (scope: string) =>
      prune(model, {
        criterion: name,
        ...(scope === '2:4' ? {} : { ratio: 0.25 }), // N:M fixes its own ratio
        scope: scope as never,
        calibration: cal,
        backend,
        options: name === 'moreau-gs' ? { iterations: 2, averageLast: 1 } : {},
      });
    const channel = await run('channel');
    expect(channel.plan.groups[0]!.kept).toHaveLength(12); // floor(16 * 0.75)
    const layer = await run('layer');
    expect(layer.model.numLayers).toBe(1); // floor(2 * 0.75)
    const unstructured = await run('unstructured');
    expect(unstructured.plan.masks).toHaveLength(2 * 7);
    const nm = await run('2:4');
    const q = nm.model.params.get('model.layers.0.self_attn.q_proj.weight')!.data;
    for (let b = 0; b < q.length; b += 4) expect(q.subarray(b, b + 4).filter((x) => x === 0).length).toBe(2);
  });
});

describe('block-influence', () => {
  it('scores each layer 1 - mean cos(h_in, h_out) over the calibration tokens and removes the lowest', async () => {
    const cal = calibration();
    const windows = cal.iterations[0]!;
    // The hidden states around each layer, from the model's own stage functions.
    const st = model.stages();
    const local = (names: Readonly<Record<string, string>>) =>
      Object.fromEntries(Object.entries(names).map(([k, n]) => [k, model.params.get(n)!]));
    const ids = tensor(Int32Array.from(windows.flat()), [windows.length, windows[0]!.length], 'int32');
    const embed = jit((p: never, x: never) => st.embedFn(p, x), { backend });
    let h = (await embed(local(st.embed.params) as never, ids as never)) as HostTensor;
    const want: number[] = [];
    for (const layer of st.layers) {
      const f = jit((p: never, x: never) => st.layerFn(layer.key)(p, x), { backend });
      const out = (await f(local(layer.params) as never, h as never)) as HostTensor;
      const a = h.data as Float32Array;
      const b = out.data as Float32Array;
      let s = 0;
      for (let t = 0; t < a.length; t += 16) {
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let i = t; i < t + 16; i++) {
          dot += a[i]! * b[i]!;
          na += a[i]! ** 2;
          nb += b[i]! ** 2;
        }
        s += 1 - dot / Math.sqrt(na * nb);
      }
      want.push(s / (a.length / 16));
      h = out;
    }
    const {
      scores,
      plan,
      model: pruned,
    } = await prune(model, {
      criterion: blockInfluence,
      ratio: 0.5,
      scope: 'layer',
      calibration: cal,
      backend,
    });
    expect(scores.get('layer.0')![0]).toBeCloseTo(want[0]!, 6);
    expect(scores.get('layer.1')![0]).toBeCloseTo(want[1]!, 6);
    const keptLayer = want[0]! >= want[1]! ? 0 : 1;
    expect(plan.groups.map((d) => d.kept)).toEqual(keptLayer === 0 ? [[0], []] : [[], [0]]);
    expect(pruned.numLayers).toBe(1);
    await expect(
      prune(model, { criterion: blockInfluence, ratio: 0.5, scope: 'block', calibration: cal, backend }),
    ).rejects.toThrow("criterion 'block-influence' cannot prune at scope 'block': it scores layer only");
  });
});

describe('taylor', () => {
  const cal = calibration();
  const windows = cal.iterations[0]!;

  it('param_first: sum |w * dL/dw| over each slice (members summed)', async () => {
    const g = await grads(windows);
    const { scores } = await prune(model, { criterion: 'taylor', ratio: 0.25, calibration: cal, backend });
    expectScoresClose(
      scores,
      handScores((n) => f32(n).map((w, i) => w * g(n)[i]!), 'abs-then-sum'),
    );
  });

  it('vectorize: |sum w * dL/dw| per slice', async () => {
    const g = await grads(windows);
    const { scores } = await prune(model, {
      criterion: 'taylor',
      options: { variant: 'vectorize' },
      ratio: 0.25,
      calibration: cal,
      backend,
    });
    expectScoresClose(
      scores,
      handScores((n) => f32(n).map((w, i) => w * g(n)[i]!), 'sum-then-abs'),
    );
  });

  it('param_second and param_mix: the Fisher diagonal from one backward pass per window', async () => {
    const first = await grads(windows);
    const perWindow = await Promise.all(windows.map((w) => grads([w])));
    const fisher = (n: string) =>
      f32(n).map((_, i) => perWindow.reduce((s, g) => s + g(n)[i]! * g(n)[i]!, 0) / windows.length);
    const progress: string[] = [];
    const second = await prune(model, {
      criterion: 'taylor',
      options: { variant: 'param_second' },
      ratio: 0.25,
      calibration: cal,
      backend,
      onProgress: (p) => progress.push(`${p.phase} ${p.done}/${p.total}`),
    });
    expectScoresClose(
      second.scores,
      handScores((n) => {
        const F = fisher(n);
        return f32(n).map((w, i) => w * F[i]! * w);
      }, 'abs-then-sum'),
      1e-4,
    );
    expect(progress).toContain('taylor: per-sample gradients 3/3');
    const mix = await prune(model, {
      criterion: 'taylor',
      options: { variant: 'param_mix' },
      ratio: 0.25,
      calibration: cal,
      backend,
    });
    expectScoresClose(
      mix.scores,
      handScores((n) => {
        const F = fisher(n);
        return f32(n).map((w, i) => w * first(n)[i]! - 0.5 * w * F[i]! * w);
      }, 'abs-then-sum'),
      1e-4,
    );
  });

  it('needs calibration windows', async () => {
    await expect(prune(model, { criterion: 'taylor', ratio: 0.2 })).rejects.toThrow(
      /criterion 'taylor' needs calibration windows/,
    );
    await expect(prune(model, { criterion: 'taylor', ratio: 0.2 })).rejects.toBeInstanceOf(InputError);
  });
});

/**
 * The MoreauPruner loop written out step by step: evaluation point w + noise + delta for every
 * parameter (perturb=all: embedding — tied, one delta — RMSNorm weights, projections) or only the
 * group members (noise: the counter-based stream of (seed, iteration, parameter index), the point
 * evaluated in float32),
 * delta -= lr * g (reference) or
 * lr * (g + delta / lambda) (exact), row shrinkage for Moreau-GS, average over the last steps;
 * importance = |w * average| like Taylor param_first.
 */
async function moreauByHand(o: {
  iterations: number;
  averageLast: number;
  noiseStd: number;
  lr: number;
  lambda: number;
  exact: boolean;
  fresh: boolean;
  soft?: number;
  seed: number;
  cal: CalibrationSet;
  perturb: 'all' | 'members';
  /** Filled with the soft-threshold counts per iteration and parameter kind. */
  counts?: Map<string, ShrinkCounts>[];
}) {
  const names = [...model.params.keys()];
  const members = [
    ...new Set(model.groups(['attention', 'mlp']).flatMap((g) => g.members.map((m) => m.param))),
  ];
  const perturbed = o.perturb === 'all' ? names : members;
  const noiseSeed = new Rng(o.seed).fork().nextUint32();
  const delta = new Map(perturbed.map((m) => [m, new Float32Array(f32(m).length)]));
  const avg = new Map(perturbed.map((m) => [m, new Float32Array(f32(m).length)]));
  for (let t = 0; t < o.iterations; t++) {
    const point = new Map(model.params);
    for (const m of perturbed) {
      const w = f32(m);
      const d = delta.get(m)!;
      const z = new Float32Array(w.length);
      fillCounterNormals(counterKey(noiseSeed, t, names.indexOf(m)), 0, z);
      // float32 arithmetic in this order, as perturbInto evaluates it
      const f = Math.fround;
      const s = f(o.noiseStd);
      const x = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) x[i] = f(f(w[i]! + f(f(s * Math.abs(w[i]!)) * z[i]!)) + d[i]!);
      point.set(m, { ...model.params.get(m)!, data: x });
    }
    const g = await grads(o.cal.iterations[o.fresh ? t : 0]!, point);
    for (const m of perturbed) {
      const d = delta.get(m)!;
      const gm = g(m);
      for (let i = 0; i < d.length; i++) d[i] = d[i]! - o.lr * (o.exact ? gm[i]! + d[i]! / o.lambda : gm[i]!);
      if (o.soft !== undefined) {
        if (o.counts && !o.counts[t]) o.counts[t] = new Map();
        const kinds = o.counts?.[t] ?? new Map<string, ShrinkCounts>();
        const kind = m.split('.').at(-2)!;
        if (!kinds.has(kind)) kinds.set(kind, { rows: 0, zeroed: 0, shrunk: 0, flipped: 0 });
        // The released code's group soft-threshold, row by row along the first axis.
        const c = kinds.get(kind)!;
        const shape = model.params.get(m)!.shape;
        const rowLen = shape.length >= 2 ? d.length / shape[0]! : 1;
        for (let r = 0; r < d.length; r += rowLen) {
          const row = d.subarray(r, r + rowLen);
          const rms = Math.sqrt(row.reduce((acc, v) => acc + v * v, 0) / rowLen);
          const scale = rms > o.soft * o.lr ? 1 - o.soft / rms : 0;
          row.forEach((v, i) => {
            row[i] = v * scale;
          });
          c.rows++;
          if (scale === 0) c.zeroed++;
          else if (scale < 0) c.flipped++;
          else c.shrunk++;
        }
      }
      if (t >= o.iterations - o.averageLast) {
        const a = avg.get(m)!;
        for (let i = 0; i < d.length; i++) a[i]! += d[i]! / o.averageLast;
      }
    }
  }
  return handScores((n) => f32(n).map((w, i) => w * avg.get(n)![i]!), 'abs-then-sum');
}

describe('moreau and moreau-gs against the loop written out', () => {
  const base = { iterations: 3, averageLast: 2, noiseStd: 0.05, lr: 0.05, lambda: 0.2 };
  it.each([
    ['moreau', 'reference', true, 'all'],
    ['moreau', 'exact', false, 'all'],
    ['moreau-gs', 'reference', true, 'all'],
    ['moreau', 'reference', true, 'members'],
    ['moreau-gs', 'exact', false, 'members'],
  ] as const)(
    '%s proximal=%s freshCalibration=%s perturb=%s, with seeded noise',
    async (name, proximal, fresh, perturb) => {
      const cal = calibration(3, fresh);
      const soft = name === 'moreau-gs' ? { soft: 0.05 } : {};
      const progress: number[] = [];
      const { scores } = await prune(model, {
        criterion: name,
        options: { ...base, proximal, freshCalibration: fresh, perturb, ...soft },
        ratio: 0.25,
        seed: 4,
        calibration: cal,
        backend,
        onProgress: (p) => {
          if (p.phase === `${name}: proximal steps`) progress.push(p.done);
        },
      });
      const want = await moreauByHand({
        ...base,
        ...soft,
        exact: proximal === 'exact',
        fresh,
        seed: 4,
        cal,
        perturb,
      });
      expectScoresClose(scores, want, 1e-4);
      expect(progress).toEqual([1, 2, 3]);
    },
  );

  it('the options matter: exact differs from reference, averageLast and noise change the scores', async () => {
    const cal = calibration(3);
    const run = async (options: Record<string, unknown>) =>
      (
        await prune(model, {
          criterion: 'moreau',
          options: { ...base, ...options },
          ratio: 0.25,
          calibration: cal,
          backend,
        })
      ).scores.get('layer.0.mlp')!;
    const ref = await run({});
    for (const other of [
      { proximal: 'exact' },
      { averageLast: 1 },
      { noiseStd: 0 },
      { lr: 0.01 },
      { perturb: 'members' },
    ]) {
      expect([...(await run(other))], JSON.stringify(other)).not.toEqual([...ref]);
    }
    expect([...(await run({}))]).toEqual([...ref]);
  });
});

describe('moreau-gs diagnostics: what the soft threshold did to each row', () => {
  const base = { iterations: 3, averageLast: 2, noiseStd: 0.05, lambda: 0.2, freshCalibration: true };
  const run = async (lr: number, soft: number) => {
    const cal = calibration(3);
    const r = await prune(model, {
      criterion: 'moreau-gs',
      options: { ...base, lr, soft },
      ratio: 0.25,
      seed: 4,
      calibration: cal,
      backend,
    });
    const counts: Map<string, ShrinkCounts>[] = [];
    await moreauByHand({
      ...base,
      lr,
      soft,
      exact: false,
      fresh: true,
      seed: 4,
      cal,
      perturb: 'all',
      counts,
    });
    return { r, counts };
  };
  type Report = {
    soft: number;
    lr: number;
    iterations: {
      iteration: number;
      all: { rows: number; zeroed: number; shrunk: number; flipped: number };
      kinds: Record<string, { rows: number; zeroed: number; shrunk: number; flipped: number }>;
    }[];
  };

  it('per iteration and parameter kind, the fractions equal the hand loop; no warning outside the flip regime', async () => {
    const { r, counts } = await run(0.05, 1e-4);
    expect(r.diagnostics).toHaveLength(1);
    const rep = r.diagnostics[0]!.moreau_gs_shrink as unknown as Report;
    expect(rep.soft).toBe(1e-4);
    expect(rep.lr).toBe(0.05);
    expect(rep.iterations.map((i) => i.iteration)).toEqual([1, 2, 3]);
    const kinds = [...new Set([...model.params.keys()].map(paramKind))].sort();
    rep.iterations.forEach((it, t) => {
      expect(Object.keys(it.kinds)).toEqual(kinds);
      let rows = 0;
      for (const [kind, f] of Object.entries(it.kinds)) {
        const c = counts[t]!.get(kind)!;
        expect(f).toEqual({
          rows: c.rows,
          zeroed: c.zeroed / c.rows,
          shrunk: c.shrunk / c.rows,
          flipped: c.flipped / c.rows,
        });
        expect(f.zeroed + f.shrunk + f.flipped).toBeCloseTo(1, 12);
        rows += c.rows;
      }
      expect(it.all.rows).toBe(rows);
      // Every row of every parameter (1-D parameters count their elements).
      expect(rows).toBe([...model.params.values()].reduce((s, p) => s + p.shape[0]!, 0));
    });
    expect(rep.iterations[0]!.all.shrunk).toBeGreaterThan(0.5);
    expect(r.warnings).toEqual([]);
  });

  it('a step far below soft flips most rows: counted, and warned about', async () => {
    const { r, counts } = await run(1e-3, 1e-2);
    const rep = r.diagnostics[0]!.moreau_gs_shrink as unknown as Report;
    for (const it of rep.iterations) expect(it.all.flipped).toBeGreaterThan(0.5);
    const c = counts[0]!.get('q_proj')!;
    expect(rep.iterations[0]!.kinds.q_proj!.flipped).toBe(c.flipped / c.rows);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(
      /^moreau-gs: most rows of delta flipped sign at 3 of 3 iterations \(up to \d+\.\d %\).*lr=0\.02/,
    );
  });

  it('moreau (no soft threshold) reports nothing', async () => {
    const r = await prune(model, {
      criterion: 'moreau',
      options: { ...base, lr: 0.05 },
      ratio: 0.25,
      calibration: calibration(3),
      backend,
    });
    expect(r.diagnostics).toEqual([{}]);
    expect(r.warnings).toEqual([]);
  });

  it('parameter kinds are the last name component before .weight', () => {
    expect(paramKind('model.layers.3.self_attn.q_proj.weight')).toBe('q_proj');
    expect(paramKind('model.embed_tokens.weight')).toBe('embed_tokens');
    expect(paramKind('model.norm.weight')).toBe('norm');
    expect(paramKind('lm_head.weight')).toBe('lm_head');
    expect(paramKind('scale')).toBe('scale');
  });
});

describe('proximalStep (the delta update; Moreau-GS group soft-thresholding)', () => {
  // With a zero gradient the step leaves delta as it is: what remains is the soft-threshold.
  const shrinkRows = (d: Float32Array, shape: number[], soft: number, lr: number, counts?: ShrinkCounts) =>
    proximalStep(d, new Float32Array(d.length), shape, { lr, soft }, undefined, counts);

  it('counts the rows it zeroed, shrank and flipped', () => {
    // rms: row 0 = 3.54 > soft 1 (shrunk); row 1 = 0.707 in (soft*lr, soft) (flipped);
    // row 2 = 0.01 <= soft*lr (zeroed); row 3 = 1 = soft (coefficient 0: zeroed).
    const d = Float32Array.from([3, 4, 0.6, 0.8, 0.01, 0.01, 1, -1]);
    expect(shrinkRows(d, [4, 2], 1, 0.5)).toEqual({ rows: 4, zeroed: 2, shrunk: 1, flipped: 1 });
    const acc = { rows: 1, zeroed: 1, shrunk: 0, flipped: 0 };
    expect(shrinkRows(Float32Array.from([2, 0]), [2], 0.5, 1, acc)).toBe(acc);
    expect(acc).toEqual({ rows: 3, zeroed: 2, shrunk: 1, flipped: 0 });
  });

  it('steps delta by -lr g (exact: -lr (g + delta / lambda)) and adds delta / count into the average', () => {
    const d = Float32Array.from([1, -2]);
    const sum = Float32Array.from([1, 1]);
    proximalStep(d, Float32Array.from([10, 4]), [2], { lr: 0.1 }, { sum, count: 2 });
    expect([...d]).toEqual([1 - 0.1 * 10, -2 - 0.1 * 4].map(Math.fround));
    expect([...sum]).toEqual([1 + d[0]! / 2, 1 + d[1]! / 2].map(Math.fround));
    const e = Float32Array.from([1, -2]);
    proximalStep(e, Float32Array.from([10, 4]), [2], { lr: 0.1, lambda: 0.5 });
    expect([...e]).toEqual([1 - 0.1 * (10 + 1 / 0.5), -2 - 0.1 * (4 - 2 / 0.5)].map(Math.fround));
  });

  it('scales each row by 1 - soft / rms(row) when rms(row) > soft * lr, else zeroes it', () => {
    // Row 0: rms = sqrt((9 + 16) / 2) = 3.5355 > 0.5 -> x (1 - 1 / 3.5355) = 0.71716.
    // Row 1: rms = sqrt(1e-6 / 2) = 7.07e-4 <= 0.5 -> 0.
    const d = Float32Array.from([3, 4, 0.001, 0]);
    shrinkRows(d, [2, 2], 1, 0.5);
    const s = 1 - 1 / Math.sqrt(12.5);
    expect([...d].map((v) => +v.toFixed(6))).toEqual(
      [3 * s, 4 * s, 0, 0].map((v) => +Math.fround(v).toFixed(6)),
    );
  });

  it('between soft * lr and soft the coefficient is negative, as in the released code', () => {
    // rms([0.6, 0.8]) = sqrt(0.5) = 0.70711: above soft * lr = 0.5 but below soft = 1, so the
    // coefficient (1 - soft / rms) * (rms > soft * lr) = -0.41421 flips the row's sign.
    const d = Float32Array.from([0.6, 0.8]);
    shrinkRows(d, [1, 2], 1, 0.5);
    const s = 1 - 1 / Math.sqrt(0.5);
    expect(d[0]).toBeCloseTo(0.6 * s, 6);
    expect(d[1]).toBeCloseTo(0.8 * s, 6);
    expect(s).toBeLessThan(0);
  });

  it('1-D parameters are thresholded element by element; zero rows stay zero (no NaN)', () => {
    const d = Float32Array.from([2, -0.1, 0, -4]);
    shrinkRows(d, [4], 0.5, 1);
    expect([...d].map((v) => v + 0)).toEqual([1.5, 0, 0, -3.5]); // (+ 0 turns -0 into 0)
    const z = new Float32Array(6);
    shrinkRows(z, [3, 2], 1e-3, 1);
    expect([...z]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('rows run along the first axis of higher-rank parameters', () => {
    // [2, 1, 2]: rows of 2 entries. Row 0 rms = 5 / sqrt(2) -> 1 - 1 / 3.5355; row 1 rms 1e-3 -> 0.
    const d = Float32Array.from([3, 4, 0.001, -0.001]);
    shrinkRows(d, [2, 1, 2], 1, 0.01);
    expect(d[0]).toBeCloseTo(3 * (1 - 1 / Math.sqrt(12.5)), 6);
    expect(d[1]).toBeCloseTo(4 * (1 - 1 / Math.sqrt(12.5)), 6);
    expect([d[2]! + 0, d[3]! + 0]).toEqual([0, 0]);
  });
});

describe('layer-streamed scoring', () => {
  // The noise of a layer is drawn from counters, not stored: the streamed backward recomputes each
  // layer at the same perturbed point its forward used, so the scores equal the whole graph's.
  for (const criterion of ['taylor', 'moreau', 'moreau-gs'] as const) {
    it(`${criterion}: streamed scores equal whole-graph ones (noise, every parameter perturbed, tied embeddings)`, async () => {
      const options =
        criterion === 'taylor' ? {} : { iterations: 3, noiseStd: 0.05, perturb: 'all', lr: 0.02 };
      const run = (mode: 'whole' | 'streamed') =>
        prune(model, {
          criterion,
          options,
          ratio: 0.25,
          calibration: calibration(3),
          backend,
          mode,
          seed: 4,
        });
      const [whole, streamed] = [await run('whole'), await run('streamed')];
      expect(streamed.plan.groups).toEqual(whole.plan.groups);
      for (const [group, s] of whole.scores) {
        const t = streamed.scores.get(group)!;
        for (let i = 0; i < s.length; i++) {
          const v = s[i]!;
          expect(Math.abs(t[i]! - v), `${group}[${i}]`).toBeLessThanOrEqual(1e-5 * Math.abs(v) + 1e-9);
        }
      }
    });
  }
});
