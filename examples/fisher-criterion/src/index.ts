/**
 * An example criterion plugin. It is an ordinary npm package: it builds a `Criterion`, registers
 * it with core on import, and the CLI loads it with `--plugin @moreau/example-fisher-criterion`
 * (or a path to its built file). Scores are Optimal-Brain-Damage style: salience = (w * g)^2
 * averaged over calibration windows one backward pass each, i.e. the empirical Fisher's estimate
 * of the loss increase from zeroing w.
 */
import { type Criterion, InputError, registerCriterion, windowsAt } from '@moreau/core';

export const fisher: Criterion = {
  name: 'fisher',
  description: 'OBD-style importance: mean over calibration windows of (w * dL/dw)^2',
  requires: { gradients: true, calibration: true },
  options: {
    windows: {
      type: 'number',
      default: 0,
      min: 0,
      integer: true,
      description: 'windows to use (0 = all calibration windows of the first iteration)',
    },
  },
  channelMode: () => 'abs-then-sum',
  defaultReduction: 'sum',
  async score(ctx, options) {
    if (!ctx.calibration) throw new InputError('fisher needs calibration windows', undefined, 'calibration');
    const all = windowsAt(ctx.calibration, 0);
    // The mean is over the windows actually used (the option may ask for more than there are).
    const n = Math.min((options.windows as number) || all.length, all.length);
    const salience = new Map<string, Float32Array>();
    for (const [name, w] of ctx.weights) salience.set(name, new Float32Array(w.length));
    for (let i = 0; i < n; i++) {
      const { grads } = await ctx.gradient([all[i]!]);
      for (const [name, g] of grads) {
        const w = ctx.weights.get(name)!;
        const s = salience.get(name)!;
        for (let j = 0; j < s.length; j++) {
          const wg = w[j]! * g[j]!;
          s[j]! += (wg * wg) / n;
        }
      }
      ctx.progress({ phase: 'fisher: per-window gradients', done: i + 1, total: n });
    }
    return { salience };
  },
};

registerCriterion(fisher);
