/**
 * Plan fuzz suite (seeded, generated inputs): plans made by prune() on random toy models at random
 * scopes, rankings, ratios and steps, then mutated. Every plan prune() writes reads back and
 * applies; every mutation is an error naming the plan file and the field:
 *
 * - a kept list that disagrees with the plan's ratio: field 'ratio' (the ratio `prune --plan`
 *   reports is the one the kept lists were selected at);
 * - a plan that prunes nothing (no groups, no masks): field 'groups' / 'masks' when applied (a
 *   ratio-0 plan lists its groups with every unit kept, and applies);
 * - a plan applied to a model whose layer count or group sizes differ: 'model.numLayers' or
 *   'groups[i].total'.
 */
import { describe, expect, it } from 'vitest';
import { applyPlan, parsePlan, planToJSON } from './plan.js';
import { prune } from './prune.js';
import { fixedCriterion, inputErrorOf, type ToyLayer, toyModel } from './test-fixtures.js';

const FILE = 'fuzz/plan.json';
const CASES = 60;

/** mulberry32: a small seeded generator for the cases. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)) };
}

const SCOPES = ['block', 'channel', 'layer'] as const;
const RANKINGS = ['local', 'global-per-kind', 'global-pool'] as const;

/** One generated case: a toy model, the plan prune() made for it, and its text. */
async function generated(seed: number) {
  const r = rng(seed);
  const layers: ToyLayer[] = Array.from({ length: r.int(1, 4) }, () => ({
    heads: r.int(1, 4),
    mlp: r.int(2, 12),
  }));
  const scope = SCOPES[r.int(0, 2)]!;
  const ranking = RANKINGS[r.int(0, 2)]!;
  // Ratio 0 in about one case in six: a legitimate plan that keeps every unit.
  const ratio = r.next() < 1 / 6 ? 0 : Math.round(r.next() * 90) / 100;
  const steps = scope === 'layer' ? 1 : r.int(1, 3);
  const model = toyModel(layers, seed);
  const criterion = fixedCriterion((g) => Array.from({ length: g.units }, () => r.next()));
  const { plan } = await prune(model, {
    criterion,
    ratio,
    scope,
    steps,
    ...(scope === 'block' ? { ranking } : {}),
  });
  return { r, layers, scope, ratio, model, plan, text: planToJSON(plan) };
}

describe('plan fuzz suite', () => {
  it(`${CASES} generated plans read back and apply; a kept list off the ratio is an error naming the file and 'ratio'`, async () => {
    let mutated = 0;
    for (let seed = 1; seed <= CASES; seed++) {
      const { r, model, text } = await generated(seed);
      const read = parsePlan(text, FILE);
      expect(planToJSON(read)).toBe(text);
      expect(() => applyPlan(model, read, { file: FILE })).not.toThrow();

      // Mutate one group's kept list by one unit: add a pruned unit, or drop a kept one (a layer
      // group: removed <-> kept; other groups keep at least one unit, or the kept list is invalid).
      const j = JSON.parse(text);
      const mutable = (j.groups as { group: { kind: string }; total: number; kept: number[] }[]).filter(
        (g) => g.group.kind === 'layer' || g.total > 1,
      );
      if (mutable.length === 0) continue;
      mutated++;
      const d = mutable[r.int(0, mutable.length - 1)]!;
      const missing = Array.from({ length: d.total }, (_, u) => u).filter((u) => !d.kept.includes(u));
      const canDrop = d.kept.length > (d.group.kind === 'layer' ? 0 : 1);
      if (missing.length && (!canDrop || r.next() < 0.5))
        d.kept = [...d.kept, missing[0]!].sort((a, b) => a - b);
      else d.kept = d.kept.slice(1);
      const e = inputErrorOf(() => parsePlan(JSON.stringify(j), FILE));
      expect(e.message).toMatch(/^fuzz\/plan\.json: field 'ratio' is [\d.]+, but the kept lists disagree: /);
      expect(e.message.length).toBeLessThan(400);
      expect(e.field).toBe('ratio');
      expect(e.file).toBe(FILE);
    }
    expect(mutated).toBeGreaterThan(CASES / 2);
  });

  it(`${CASES} generated empty plans: applying one is an error naming the file (it prunes nothing)`, async () => {
    for (let seed = 1; seed <= CASES; seed++) {
      const { model, text } = await generated(seed);
      const j = JSON.parse(text);
      j.groups = [];
      const empty = parsePlan(JSON.stringify(j), FILE);
      const e = inputErrorOf(() => applyPlan(model, empty, { file: FILE }));
      expect(e.message).toBe(
        "fuzz/plan.json: field 'groups': the plan prunes nothing (no groups and no masks): applying it would copy the model unpruned",
      );
      expect(e.file).toBe(FILE);
    }
    // An element-scope plan without masks: the field is 'masks'.
    const { model } = await generated(1);
    const unstructured = parsePlan(
      JSON.stringify({
        format: 'moreau-pruning-plan',
        version: 2,
        scope: 'unstructured',
        criterion: { name: 'magnitude', options: {} },
        ratio: 0.5,
        attnLayers: [0, model.numLayers],
        mlpLayers: [0, model.numLayers],
        keepLowRatio: 0,
        seed: 1,
        steps: 1,
        model: { numLayers: model.numLayers },
        groups: [],
        masks: [],
      }),
      FILE,
    );
    expect(inputErrorOf(() => applyPlan(model, unstructured, { file: FILE })).message).toMatch(
      /^fuzz\/plan\.json: field 'masks': the plan prunes nothing/,
    );
  });

  it(`${CASES} generated plans applied to another model: an error naming the file and 'model.numLayers' or 'groups[i].total'`, async () => {
    for (let seed = 1; seed <= CASES; seed++) {
      const { r, layers, scope, plan } = await generated(seed);
      // One layer more (or fewer): the layer count differs.
      const deeper = r.next() < 0.5 || layers.length === 1;
      const other = toyModel(deeper ? [...layers, { heads: 2, mlp: 4 }] : layers.slice(1), seed);
      const e = inputErrorOf(() => applyPlan(other, plan, { file: FILE }));
      expect(e.message).toMatch(
        /^fuzz\/plan\.json: field 'model\.numLayers': the plan is for a model with \d+ layers; this model has \d+$/,
      );
      expect(e.field).toBe('model.numLayers');
      expect(e.file).toBe(FILE);
      if (scope !== 'block') continue;
      // The same depth, one group resized: its total differs (a head or channel more).
      const l = r.int(0, layers.length - 1);
      const resized = layers.map((x, k) =>
        k === l ? (r.next() < 0.5 ? { ...x, heads: x.heads + 1 } : { ...x, mlp: x.mlp + 1 }) : x,
      );
      const f = inputErrorOf(() => applyPlan(toyModel(resized, seed), plan, { file: FILE }));
      expect(f.message).toMatch(
        /^fuzz\/plan\.json: field 'groups\[\d+\]\.(total|group)': layer \d+ (attention|mlp): /,
      );
      expect(f.file).toBe(FILE);
    }
  });
});
