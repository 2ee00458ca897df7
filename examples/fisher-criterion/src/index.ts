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
    const members = ctx.params.filter((p) => p.member);
    // Running sums per member: in memory when they fit, on disk otherwise (models of any size).
    const sums = await ctx.state(members.reduce((s, p) => s + 4 * p.shape.reduce((a, d) => a * d, 1), 0));
    try {
      for (let i = 0; i < n; i++) {
        // Streamed: each layer's gradients arrive as soon as they exist (last layer first).
        await ctx.gradients([all[i]!], {
          consume: async (grads) => {
            for (const [name, g] of grads) {
              const w = ctx.weight(name);
              const s = await sums.get(name, g.length);
              for (let j = 0; j < s.length; j++) {
                const wg = w[j]! * g[j]!;
                s[j]! += (wg * wg) / n;
              }
              await sums.set(name, s);
            }
          },
        });
        ctx.progress({ phase: 'fisher: per-window gradients', done: i + 1, total: n });
      }
      // Hand each member's salience over as it is finished; core folds it into unit scores.
      for (const p of members)
        ctx.salience(
          p.name,
          await sums.get(
            p.name,
            p.shape.reduce((a, d) => a * d, 1),
          ),
        );
    } finally {
      await sums.dispose();
    }
    return {};
  },
};

registerCriterion(fisher);
