import type { Criterion } from '@moreau/core';

/** LLM-Pruner's l1 / l2 magnitude: channel score = sum over the slice of |w|^p, members averaged. */
export const magnitude: Criterion = {
  name: 'magnitude',
  description: 'weight magnitude: sum of |w|^p over each channel slice (p = 1 or 2)',
  requires: { gradients: false, calibration: false },
  stochastic: () => false,
  options: {
    p: {
      type: 'number',
      default: 2,
      min: 1,
      max: 2,
      integer: true,
      description: 'exponent: 1 (l1) or 2 (l2)',
    },
  },
  channelMode: () => 'abs-then-sum',
  defaultReduction: 'mean',
  async score(ctx, options) {
    const p = options.p as number;
    // One member at a time: a copy of its weights becomes its salience in place.
    for (const { name, member } of ctx.params) {
      if (!member) continue;
      const w = ctx.weight(name);
      for (let i = 0; i < w.length; i++) w[i] = p === 1 ? Math.abs(w[i]!) : w[i]! * w[i]!;
      ctx.salience(name, w);
    }
    return {};
  },
};
