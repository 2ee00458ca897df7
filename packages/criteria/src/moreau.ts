import { type Criterion, InputError, type OptionSpec, type OptionValues, windowsAt } from '@moreau/core';

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
  proximal: {
    type: 'enum',
    default: 'reference',
    values: ['reference', 'exact'],
    description: 'reference: delta -= lr*g (the released code); exact: delta -= lr*(g + delta/lambda)',
  },
};

/** Noise draws per chunk (a 512 KiB scratch buffer). */
const NOISE_CHUNK = 65536;

/**
 * Group soft-thresholding of delta, row by row (first axis; 1-D parameters elementwise):
 * n = sqrt(mean(row^2)); row *= (1 - soft / n) if n > soft * lr, else row = 0.
 */
export function shrinkRows(delta: Float32Array, shape: readonly number[], soft: number, lr: number): void {
  const rowLen = shape.length >= 2 ? delta.length / shape[0]! : 1;
  for (let start = 0; start < delta.length; start += rowLen) {
    let sq = 0;
    for (let i = start; i < start + rowLen; i++) sq += delta[i]! * delta[i]!;
    const n = Math.sqrt(sq / rowLen);
    const scale = n > soft * lr ? 1 - soft / n : 0;
    for (let i = start; i < start + rowLen; i++) delta[i]! *= scale;
  }
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
            description: 'group soft threshold on each row of delta',
          },
        }
      : commonOptions,
    calibrationIterations: (o: OptionValues) => (o.freshCalibration ? (o.iterations as number) : 1),
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

      const delta = new Map<string, Float32Array>();
      const average = new Map<string, Float32Array>();
      const point = new Map<string, Float32Array>();
      for (const [p, w] of ctx.weights) {
        delta.set(p, new Float32Array(w.length));
        average.set(p, new Float32Array(w.length));
        point.set(p, new Float32Array(w.length));
      }
      // Standard normals for the noise, drawn in chunks (the same sequence as per-element draws).
      const normals = new Float64Array(NOISE_CHUNK);
      for (let t = 0; t < iterations; t++) {
        // Evaluation point w + noise_t + delta_t; noise drawn on the host from the seeded RNG.
        for (const [p, w] of ctx.weights) {
          const x = point.get(p)!;
          const d = delta.get(p)!;
          if (noiseStd > 0) {
            for (let start = 0; start < w.length; start += NOISE_CHUNK) {
              const count = Math.min(NOISE_CHUNK, w.length - start);
              ctx.rng.fillNormal(normals, 0, count);
              for (let k = 0, i = start; k < count; k++, i++) {
                x[i] = w[i]! + noiseStd * Math.abs(w[i]!) * normals[k]! + d[i]!;
              }
            }
          } else {
            for (let i = 0; i < w.length; i++) x[i] = w[i]! + 0 + d[i]!;
          }
        }
        const windows = windowsAt(ctx.calibration, o.freshCalibration ? t : 0);
        // Each parameter's step depends only on its own gradient and delta, so gradients can be
        // consumed part by part (bounded memory for large models) with the same result.
        const step = (grads: Map<string, Float32Array>) => {
          for (const [p, g] of grads) {
            const d = delta.get(p);
            if (!d) continue;
            if (exact) for (let i = 0; i < d.length; i++) d[i] = d[i]! - lr * (g[i]! + d[i]! / lambda);
            else for (let i = 0; i < d.length; i++) d[i] = d[i]! - lr * g[i]!;
            grads.delete(p); // let the engine's gradient buffer go as soon as it is used
            if (gs) shrinkRows(d, ctx.shapes.get(p)!, soft, lr);
            if (t >= iterations - averageLast) {
              const a = average.get(p)!;
              for (let i = 0; i < d.length; i++) a[i]! += d[i]! / averageLast;
            }
          }
        };
        if (ctx.gradientParts) await ctx.gradientParts(windows, point, step);
        else step((await ctx.gradient(windows, point)).grads);
        ctx.progress({ phase: `${name}: proximal steps`, done: t + 1, total: iterations });
      }
      // Release the iteration state before the salience is built (peak memory at large scale).
      point.clear();
      delta.clear();
      // The averaged delta stands in for the gradient; importance as Taylor param_first, computed
      // in place in the average's buffer.
      const salience = new Map<string, Float32Array>();
      for (const [p, w] of ctx.weights) {
        const a = average.get(p)!;
        for (let i = 0; i < a.length; i++) a[i] = w[i]! * a[i]!;
        salience.set(p, a);
      }
      return { salience };
    },
  };
}

export const moreau: Criterion = makeMoreau('moreau');
export const moreauGs: Criterion = makeMoreau('moreau-gs');
