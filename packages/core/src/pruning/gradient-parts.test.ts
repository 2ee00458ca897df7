import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import { ReferenceBackend } from '../reference-backend.js';
import { sampleCalibration } from './calibration.js';
import type { Criterion } from './criterion.js';
import { prune } from './prune.js';
import { fixedCriterion, TOY_VOCAB, toyModel } from './test-fixtures.js';

describe('prune: gradients in parts', () => {
  const model = toyModel([{ heads: 2, mlp: 3 }], 5);
  const stream = Array.from({ length: 200 }, (_, i) => (i * 7 + (i >> 3)) % TOY_VOCAB);
  const calibration = sampleCalibration(stream, { samples: 2, seqLen: 5, seed: 3 });

  /** Records what gradient() and gradientParts() hand over. */
  function probe(seen: {
    whole: Map<string, Float32Array>;
    parts: string[][];
    merged: Map<string, Float32Array>;
    loss: number[];
  }) {
    const c: Criterion = {
      ...fixedCriterion((g) => new Array(g.units).fill(1), 'parts-probe'),
      requires: { gradients: true, calibration: true },
      async score(ctx) {
        const windows = ctx.calibration!.iterations[0]!;
        const whole = await ctx.gradient(windows);
        seen.whole = whole.grads;
        seen.loss.push(whole.loss);
        seen.loss.push(
          await ctx.gradientParts!(windows, ctx.weights, (grads) => {
            seen.parts.push([...grads.keys()]);
            for (const [k, v] of grads) seen.merged.set(k, v.slice());
          }),
        );
        return { unitScores: ctx.groups.map((g) => new Float64Array(g.units).fill(1)) };
      },
    };
    return c;
  }

  for (const parts of [1, 2, 3]) {
    it(`${parts} part(s): every member's gradient once, equal to the one-run gradient`, async () => {
      const seen = { whole: new Map(), parts: [] as string[][], merged: new Map(), loss: [] as number[] };
      await prune(model, {
        criterion: probe(seen),
        ratio: 0.5,
        calibration,
        backend: new ReferenceBackend(),
        gradientParts: parts,
      });
      expect(seen.parts.length).toBe(parts);
      expect(seen.parts.flat().sort()).toEqual([...seen.whole.keys()].sort());
      expect(seen.loss[1]).toBeCloseTo(seen.loss[0]!, 6);
      for (const [k, g] of seen.whole) {
        const m = seen.merged.get(k)!;
        for (let i = 0; i < g.length; i++) expect(m[i]).toBeCloseTo(g[i]!, 6);
      }
    });
  }

  it('rejects a gradientParts that is not a positive integer', async () => {
    await expect(
      prune(model, {
        criterion: probe({ whole: new Map(), parts: [], merged: new Map(), loss: [] }),
        ratio: 0.5,
        calibration,
        gradientParts: 0,
      }),
    ).rejects.toThrow(InputError);
  });
});
