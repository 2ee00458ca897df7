import type { Criterion } from '@moreau/core';

/**
 * Uniform random unit scores from the run's seeded RNG: the baseline every criterion must beat. It
 * scores units (heads, channels, layers), not single weights.
 */
export const random: Criterion = {
  name: 'random',
  description: 'seeded uniform random scores per unit (baseline)',
  requires: { gradients: false, calibration: false },
  scopes: ['block', 'channel', 'layer'],
  options: {},
  channelMode: () => 'abs-then-sum',
  defaultReduction: 'sum',
  async score(ctx) {
    return {
      unitScores: ctx.groups.map((g) => Float64Array.from({ length: g.units }, () => ctx.rng.uniform())),
    };
  },
};
