import {
  type Criterion,
  type CriterionDiagnostics,
  counterKey,
  InputError,
  type OptionSpec,
  type OptionValues,
  perturbInto,
  windowsAt,
} from '@moreau/core';

const commonOptions: Record<string, OptionSpec> = {
  iterations: {
    type: 'number',
    default: 10,
    min: 1,
    integer: true,
    description: 'proximal gradient iterations',
  },
  averageLast: {
    type: 'number',
    default: 5,
    min: 1,
    integer: true,
    description: 'average delta over the last N iterations',
  },
  noiseStd: {
    type: 'number',
    default: 0.05,
    min: 0,
    description: 'Gaussian smoothing: noise ~ N(0, (noiseStd*|w|)^2)',
  },
  lr: { type: 'number', default: 2e-4, min: 0, description: 'step size of the delta updates' },
  lambda: {
    type: 'number',
    default: 0.2,
    min: Number.MIN_VALUE,
    description: 'Moreau envelope parameter (used by proximal=exact)',
  },
  freshCalibration: {
    type: 'boolean',
    default: true,
    description: 'draw new calibration windows every iteration',
  },
  perturb: {
    type: 'enum',
    default: 'all',
    values: ['all', 'members'],
    description:
      "which parameters get noise and delta: all (embeddings, norms, head too; the released code) or only the pruned groups' members",
  },
  proximal: {
    type: 'enum',
    default: 'reference',
    values: ['reference', 'exact'],
    description: 'reference: delta -= lr*g (the released code); exact: delta -= lr*(g + delta/lambda)',
  },
};

/** Rows of delta by what one group soft-threshold step did to them. */
export interface ShrinkCounts {
  rows: number;
  /** Coefficient 0: row RMS <= soft * lr (or exactly soft, or an all-zero row). */
  zeroed: number;
  /** Coefficient in (0, 1): row RMS > soft. */
  shrunk: number;
  /** Coefficient < 0: soft * lr < row RMS < soft, so the row changes sign (and is rescaled). */
  flipped: number;
}

/** How one proximal step updates delta (see proximalStep). */
export interface ProximalStep {
  readonly lr: number;
  /** Given: the exact proximal step delta -= lr * (g + delta / lambda); absent: delta -= lr * g. */
  readonly lambda?: number;
  /** Given (Moreau-GS): each row of delta is then soft-thresholded with this threshold. */
  readonly soft?: number;
}

/**
 * One proximal step on delta, in place, in float32: delta -= lr * g (or the exact step), then for
 * Moreau-GS the group soft-threshold row by row (first axis; 1-D parameters elementwise), as the
 * released code does it: n = sqrt(mean(row^2)); row *= (1 - soft / n) if n > soft * lr, else
 * row = 0. The threshold compares with soft * lr but the coefficient uses soft, so rows with
 * soft * lr < n < soft get a negative coefficient: they flip sign. That rule is kept on purpose
 * (it is what the reference computes); the returned counts (added into `counts` when given) say
 * how many rows each case took. With `average`, the new delta / average.count is added into
 * average.sum. One pass per row for the step and one for the threshold and average: this runs
 * over every parameter of the model at every iteration.
 */
export function proximalStep(
  delta: Float32Array,
  grad: Float32Array,
  shape: readonly number[],
  step: ProximalStep,
  average?: { readonly sum: Float32Array; readonly count: number },
  counts: ShrinkCounts = { rows: 0, zeroed: 0, shrunk: 0, flipped: 0 },
): ShrinkCounts {
  const { lr, lambda, soft } = step;
  const f32 = Math.fround;
  const rowLen = soft === undefined ? delta.length : shape.length >= 2 ? delta.length / shape[0]! : 1;
  for (let start = 0; start < delta.length; start += rowLen) {
    const end = start + rowLen;
    let sq = 0;
    if (lambda === undefined) {
      for (let i = start; i < end; i++) {
        const v = f32(delta[i]! - lr * grad[i]!);
        delta[i] = v;
        sq += v * v;
      }
    } else {
      for (let i = start; i < end; i++) {
        const v = f32(delta[i]! - lr * (grad[i]! + delta[i]! / lambda));
        delta[i] = v;
        sq += v * v;
      }
    }
    let scale = 1;
    if (soft !== undefined) {
      const n = Math.sqrt(sq / rowLen);
      scale = n > soft * lr ? 1 - soft / n : 0;
      counts.rows++;
      if (scale === 0) counts.zeroed++;
      else if (scale < 0) counts.flipped++;
      else counts.shrunk++;
    }
    if (average) {
      const { sum, count } = average;
      for (let i = start; i < end; i++) {
        const v = f32(delta[i]! * scale);
        delta[i] = v;
        sum[i] = sum[i]! + v / count;
      }
    } else if (scale !== 1) {
      for (let i = start; i < end; i++) delta[i] = delta[i]! * scale;
    }
  }
  return counts;
}

/** A parameter's kind for the counters: its last name component before .weight / .bias. */
export function paramKind(name: string): string {
  const parts = name.split('.');
  if (parts.length > 1 && (parts.at(-1) === 'weight' || parts.at(-1) === 'bias')) parts.pop();
  return parts.at(-1)!;
}

type Fractions = { rows: number; zeroed: number; shrunk: number; flipped: number };

const fractions = (c: ShrinkCounts): Fractions => ({
  rows: c.rows,
  zeroed: c.rows ? c.zeroed / c.rows : 0,
  shrunk: c.rows ? c.shrunk / c.rows : 0,
  flipped: c.rows ? c.flipped / c.rows : 0,
});

/**
 * Moreau-GS's diagnostics: per iteration, per parameter kind (and over all parameters), the
 * fraction of delta's rows the soft-threshold zeroed, shrank or flipped; and a warning when most
 * rows flip (the step is then below soft: delta alternates sign instead of converging).
 */
function shrinkReport(
  perIteration: readonly Map<string, ShrinkCounts>[],
  soft: number,
  lr: number,
): { diagnostics: CriterionDiagnostics; warnings: string[] } {
  const iterations = perIteration.map((kinds, t) => {
    const all: ShrinkCounts = { rows: 0, zeroed: 0, shrunk: 0, flipped: 0 };
    const byKind: Record<string, Fractions> = {};
    for (const [kind, c] of [...kinds].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      byKind[kind] = fractions(c);
      all.rows += c.rows;
      all.zeroed += c.zeroed;
      all.shrunk += c.shrunk;
      all.flipped += c.flipped;
    }
    return { iteration: t + 1, all: fractions(all), kinds: byKind };
  });
  const flipping = iterations.filter((it) => it.all.flipped > 0.5);
  const warnings: string[] = [];
  if (flipping.length > 0) {
    const worst = Math.max(...flipping.map((it) => it.all.flipped));
    warnings.push(
      `moreau-gs: most rows of delta flipped sign at ${flipping.length} of ${iterations.length} iterations (up to ${(100 * worst).toFixed(1)} %): their RMS lies between soft*lr = ${soft * lr} and soft = ${soft}, where the soft-threshold coefficient 1 - soft/RMS is negative, so delta alternates sign instead of converging (the released code's rule, kept on purpose). A larger lr (e.g. lr=0.02) or a smaller soft leaves this regime.`,
    );
  }
  return {
    diagnostics: {
      moreau_gs_shrink: {
        rule: 'row RMS r of delta after its step: r <= soft*lr zeroed; soft*lr < r < soft flipped (coefficient 1 - soft/r < 0); r > soft shrunk',
        soft,
        lr,
        iterations,
      },
    },
    warnings,
  };
}

function makeMoreau(name: 'moreau' | 'moreau-gs'): Criterion {
  const gs = name === 'moreau-gs';
  return {
    name,
    description: gs
      ? 'MoreauPruner with group soft-thresholding (Moreau-GS): |w * averaged proximal delta|'
      : 'MoreauPruner: importance from the Moreau envelope gradient, |w * averaged proximal delta|',
    requires: { gradients: true, calibration: true },
    options: gs
      ? {
          ...commonOptions,
          soft: {
            type: 'number',
            default: 5e-6,
            min: 0,
            description:
              'group soft threshold on each row of delta (rows whose RMS lies between soft*lr and soft flip sign, as in the released code; counted per iteration in the diagnostics)',
          },
        }
      : commonOptions,
    calibrationIterations: (o: OptionValues) => (o.freshCalibration ? (o.iterations as number) : 1),
    // Noise from the seed, and with fresh calibration a new draw of windows every iteration.
    stochastic: (o: OptionValues) =>
      (o.noiseStd as number) > 0 || (o.freshCalibration === true && (o.iterations as number) > 1),
    channelMode: () => 'abs-then-sum',
    defaultReduction: 'sum',
    async score(ctx, o) {
      const iterations = o.iterations as number;
      const averageLast = Math.min(o.averageLast as number, iterations);
      const noiseStd = o.noiseStd as number;
      const lr = o.lr as number;
      const lambda = o.lambda as number;
      const exact = o.proximal === 'exact';
      const soft = gs ? (o.soft as number) : 0;
      if (!ctx.calibration)
        throw new InputError(`${name} needs calibration windows`, undefined, 'calibration');

      // The perturbed parameters: every parameter as in the released code, or the group members.
      const perturbed = ctx.params.filter((p) => o.perturb === 'all' || p.member);
      const index = new Map(ctx.params.map((p, i) => [p.name, i]));
      const sizes = new Map(ctx.params.map((p) => [p.name, p.shape.reduce((a, d) => a * d, 1)]));
      const isPerturbed = new Set(perturbed.map((p) => p.name));
      const bytes = perturbed.reduce((s, p) => s + 4 * sizes.get(p.name)!, 0);
      // delta and its running average, float32 per parameter (on disk when they do not fit).
      const state = await ctx.state(2 * bytes);
      // Noise is a pure function of (seed, iteration, parameter, element): a streamed run
      // regenerates exactly the same values when it recomputes a layer.
      const noiseSeed = ctx.rng.nextUint32();
      let t = 0;
      // Evaluation point w + noise_t + delta_t of the perturbed parameters among `names`. The
      // engine is done with one call's arrays when it makes the next, so they are reused (a stage's
      // weights are not allocated afresh twice per iteration); unused spares are dropped.
      let lent: Float32Array[] = [];
      const point = async (names: readonly string[]) => {
        const spare = lent;
        lent = [];
        const out = new Map<string, Float32Array>();
        for (const n of names) {
          if (!isPerturbed.has(n) || out.has(n)) continue;
          const length = sizes.get(n)!;
          const i = spare.findIndex((b) => b.length === length);
          const x = ctx.weight(n, i >= 0 ? spare.splice(i, 1)[0] : new Float32Array(length));
          const d = await state.get(`delta:${n}`, x.length);
          if (noiseStd > 0) {
            // x + (noiseStd |x|) z + delta in float32, z the stream of (seed, iteration, parameter)
            perturbInto(x, x, d, noiseStd, counterKey(noiseSeed, t, index.get(n)!));
          } else {
            for (let i = 0; i < x.length; i++) x[i] = x[i]! + 0 + d[i]!;
          }
          lent.push(x);
          out.set(n, x);
        }
        return out;
      };
      // Moreau-GS: what the soft-threshold did, per iteration and parameter kind.
      const shrinkCounts: Map<string, ShrinkCounts>[] = [];
      const countsFor = (p: string): ShrinkCounts => {
        const kinds = shrinkCounts[t] ?? new Map<string, ShrinkCounts>();
        shrinkCounts[t] = kinds;
        const kind = paramKind(p);
        const c = kinds.get(kind) ?? { rows: 0, zeroed: 0, shrunk: 0, flipped: 0 };
        kinds.set(kind, c);
        return c;
      };
      // Each parameter's step depends only on its own gradient and delta, so gradients are
      // consumed as they arrive (a layer at a time in streamed runs).
      const proximal: ProximalStep = { lr, ...(exact ? { lambda } : {}), ...(gs ? { soft } : {}) };
      const step = async (grads: Map<string, Float32Array>) => {
        for (const [p, g] of grads) {
          if (!isPerturbed.has(p)) continue;
          const d = await state.get(`delta:${p}`, g.length);
          const averaging = t >= iterations - averageLast;
          const sum = averaging ? await state.get(`avg:${p}`, d.length) : undefined;
          const shape = ctx.params[index.get(p)!]!.shape;
          const average = sum ? { sum, count: averageLast } : undefined;
          proximalStep(d, g, shape, proximal, average, gs ? countsFor(p) : undefined);
          grads.delete(p); // let the engine's gradient buffer go as soon as it is used
          await state.set(`delta:${p}`, d);
          if (sum) await state.set(`avg:${p}`, sum);
        }
      };
      try {
        for (t = 0; t < iterations; t++) {
          const windows = windowsAt(ctx.calibration, o.freshCalibration ? t : 0);
          await ctx.gradients(windows, {
            params: o.perturb === 'all' ? 'all' : 'members',
            point,
            consume: step,
          });
          ctx.progress({ phase: `${name}: proximal steps`, done: t + 1, total: iterations });
        }
        // The averaged delta stands in for the gradient; importance as Taylor param_first.
        for (const p of ctx.params) {
          if (!p.member) continue;
          const w = ctx.weight(p.name);
          const a = await state.get(`avg:${p.name}`, w.length);
          for (let i = 0; i < w.length; i++) w[i] = w[i]! * a[i]!;
          state.delete(`avg:${p.name}`);
          state.delete(`delta:${p.name}`);
          ctx.salience(p.name, w);
        }
      } finally {
        await state.dispose();
      }
      return gs ? shrinkReport(shrinkCounts, soft, lr) : {};
    },
  };
}

export const moreau: Criterion = makeMoreau('moreau');
export const moreauGs: Criterion = makeMoreau('moreau-gs');
