import { type Criterion, InputError, windowsAt } from '@moreau/core';

/**
 * ShortGPT's block influence of a decoder layer: BI = 1 - cos(h_in, h_out), the cosine between a
 * token's hidden state before and after the layer, averaged over every position of the calibration
 * windows. A layer that barely turns the residual stream scores low and is removed first. Runs
 * forward passes only, one layer boundary at a time (streamed-friendly).
 */
export const blockInfluence: Criterion = {
  name: 'block-influence',
  description:
    'block influence 1 - cos(h_in, h_out) of each decoder layer over the calibration tokens (layer scope)',
  requires: { gradients: false, calibration: true, forward: true },
  scopes: ['layer'],
  options: {},
  channelMode: () => 'abs-then-sum',
  defaultReduction: 'sum',
  async score(ctx) {
    if (!ctx.calibration)
      throw new InputError('block-influence needs calibration windows', undefined, 'calibration');
    const windows = windowsAt(ctx.calibration, 0);
    const sum = new Map<number, number>();
    let tokens = 0;
    // A few windows per pass bounds the activations held at once.
    const BATCH = 8;
    for (let start = 0; start < windows.length; start += BATCH) {
      const batch = windows.slice(start, start + BATCH);
      await ctx.layerActivations(batch, ({ layer, input, output }) => {
        const hidden = input.shape[input.shape.length - 1]!;
        const a = input.data as Float32Array;
        const b = output.data as Float32Array;
        let s = 0;
        for (let t = 0; t < a.length; t += hidden) {
          let dot = 0;
          let na = 0;
          let nb = 0;
          for (let i = t; i < t + hidden; i++) {
            dot += a[i]! * b[i]!;
            na += a[i]! * a[i]!;
            nb += b[i]! * b[i]!;
          }
          // A zero vector has no direction: count it as unchanged.
          s += na > 0 && nb > 0 ? 1 - dot / Math.sqrt(na * nb) : 0;
        }
        sum.set(layer, (sum.get(layer) ?? 0) + s);
      });
      tokens += batch.reduce((n, w) => n + w.length, 0);
      ctx.progress({
        phase: 'block-influence: forward',
        done: Math.min(start + BATCH, windows.length),
        total: windows.length,
      });
    }
    return { unitScores: ctx.groups.map((g) => Float64Array.of((sum.get(g.layer) ?? 0) / tokens)) };
  },
};
