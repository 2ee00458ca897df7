/**
 * What a criterion returns is checked before it decides anything: numbers only, all finite, the
 * right lengths; and the weights it is handed are copies (writing to them changes nothing).
 * Generated cases from a seeded RNG.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../rng.js';
import type { Criterion, CriterionContext, CriterionResult } from './criterion.js';
import { prune } from './prune.js';
import { toyModel } from './test-fixtures.js';

const layers = [
  { heads: 2, mlp: 4 },
  { heads: 2, mlp: 4 },
];

function criterion(name: string, score: (ctx: CriterionContext) => unknown): Criterion {
  return {
    name,
    description: 'test',
    requires: { gradients: false, calibration: false },
    options: {},
    channelMode: () => 'abs-then-sum',
    defaultReduction: 'sum',
    score: async (ctx) => score(ctx) as CriterionResult,
  };
}

const BAD_VALUES: [string, unknown][] = [
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['-Infinity', Number.NEGATIVE_INFINITY],
  ['a string', '1'],
  ['a null', null],
];

describe('criterion results are checked (seeded, generated)', () => {
  it('non-finite or non-number unit scores and salience name the criterion, parameter and index', async () => {
    const rng = new Rng(7);
    for (let trial = 0; trial < 24; trial++) {
      const model = toyModel(layers, trial + 1);
      const [label, bad] = BAD_VALUES[rng.int(BAD_VALUES.length)]!;
      const asSalience = rng.uniform() < 0.5;
      const c = criterion('gen', (ctx) => {
        if (asSalience) {
          const member = ctx.params.find((p) => p.member)!;
          const size = member.shape.reduce((a, b) => a * b, 1);
          const values: unknown[] = Array.from({ length: size }, () => 1);
          const at = rng.int(size);
          values[at] = bad;
          const salience = new Map<string, unknown>();
          for (const p of ctx.params) {
            if (!p.member) continue;
            const n = p.shape.reduce((a, b) => a * b, 1);
            salience.set(p.name, p.name === member.name ? values : new Float64Array(n).fill(1));
          }
          return { salience };
        }
        const g = rng.int(ctx.groups.length);
        return {
          unitScores: ctx.groups.map((grp, i) => {
            const s: unknown[] = Array.from({ length: grp.units }, () => 1);
            if (i === g) s[rng.int(grp.units)] = bad;
            return s;
          }),
        };
      });
      const err = await prune(model, { criterion: c, ratio: 0.5 }).catch((e) => e);
      expect(err, `trial ${trial}: ${label} as ${asSalience ? 'salience' : 'unit scores'}`).toBeInstanceOf(
        Error,
      );
      expect(err.message).toMatch(
        /^criterion 'gen' returned (salience for '[^']+'|unit scores for group \S+) with .* at index \d+ \(scores must be finite numbers\)$/,
      );
    }
  });

  it('wrong lengths, wrong types and a non-object result are errors naming the criterion', async () => {
    const model = toyModel(layers);
    const cases: [unknown, RegExp][] = [
      [42, /returned number from score\(\)/],
      [{ unitScores: [] }, /returned 0 unit scores; the model has \d+ groups/],
      [{ unitScores: 'abc' }, /returned no array of unit scores/],
      [{ salience: { a: 1 } }, /salience that is not a Map/],
      [{ salience: new Map([['embed', 'xyz']]) }, /salience for 'embed' as string/],
    ];
    for (const [result, message] of cases) {
      const err = await prune(model, { criterion: criterion('shape', () => result), ratio: 0.5 }).catch(
        (e) => e,
      );
      expect(err?.message, JSON.stringify(result)).toMatch(message);
      expect(err.message).toMatch(/^criterion 'shape' /);
    }
    const short = criterion('short', (ctx) => ({
      unitScores: ctx.groups.map((g, i) => new Float64Array(i === 1 ? g.units - 1 : g.units)),
    }));
    await expect(prune(model, { criterion: short, ratio: 0.5 })).rejects.toThrow(
      /criterion 'short' returned \d+ unit scores for group \S+, which has \d+ units/,
    );
  });

  it('a criterion writing to the weights it is handed cannot change the model', async () => {
    const model = toyModel(layers);
    const before = new Map([...model.params].map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
    const vandal = criterion('vandal', (ctx) => {
      for (const p of ctx.params) {
        ctx.weight(p.name).fill(123);
        ctx.weights.get(p.name)?.fill(456);
      }
      for (const [, w] of ctx.weights) w.fill(789);
      return { unitScores: ctx.groups.map((g) => Float64Array.from({ length: g.units }, (_, i) => i)) };
    });
    const { model: pruned } = await prune(model, { criterion: vandal, ratio: 0.5 });
    for (const [k, t] of model.params)
      expect(Float32Array.from(t.data as Float32Array), k).toEqual(before.get(k));
    for (const [, t] of pruned.params)
      expect([...(t.data as Float32Array)].some((v) => v === 123 || v === 456 || v === 789)).toBe(false);
  });
});
