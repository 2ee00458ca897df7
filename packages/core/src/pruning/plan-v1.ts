/**
 * The version-1 plan reader. Version 1 (block scope only) recorded per layer the attention and
 * MLP decisions and `scope: local | global` for the ranking; it loads as the version-2 plan that
 * applies identically (ranking 'global' is 'global-per-kind').
 */
import type { GroupDecision, PruningPlan } from './plan.js';
import {
  checkCompute,
  checkCriterion,
  checkInteger,
  checkKept,
  checkRange,
  checkRatio,
  checkReduction,
  checkScores,
  fail,
  isObject,
  type Json,
} from './plan-fields.js';

export function parsePlanV1(p: Json, file: string): PruningPlan {
  const criterion = checkCriterion(p.criterion, file);
  const reduction = checkReduction(p.reduction, file);
  const ratio = checkRatio(p.ratio, file);
  const seed = checkInteger(p.seed, file, 'seed');
  const steps = checkInteger(p.steps, file, 'steps', 1);
  if (p.scope !== 'local' && p.scope !== 'global') fail(file, 'scope', "must be 'local' or 'global'");
  const compute = checkCompute(p.compute, file);
  const numLayers = checkInteger(p.numLayers, file, 'numLayers', 1);
  const attnLayers = checkRange(p.attnLayers, file, 'attnLayers', numLayers);
  const mlpLayers = checkRange(p.mlpLayers, file, 'mlpLayers', numLayers);
  const ranges = { attention: attnLayers, mlp: mlpLayers };
  if (!Array.isArray(p.layers)) fail(file, 'layers', 'must be an array');
  const seen = new Set<number>();
  const groups: GroupDecision[] = [];
  (p.layers as unknown[]).forEach((l, i) => {
    if (!isObject(l)) fail(file, `layers[${i}]`, 'must be an object {layer, attention?, mlp?}');
    if (!Number.isInteger(l.layer) || l.layer < 0 || l.layer >= numLayers)
      fail(file, `layers[${i}].layer`, `must be in [0, ${numLayers})`);
    if (seen.has(l.layer)) fail(file, `layers[${i}].layer`, `repeats layer ${l.layer}`);
    seen.add(l.layer);
    for (const kind of ['attention', 'mlp'] as const) {
      const d = l[kind];
      if (d === undefined) continue;
      const f = `layers[${i}].${kind}`;
      if (!isObject(d)) fail(file, f, 'must be an object {total, kept, scores?}');
      const [a, b] = ranges[kind];
      if (l.layer < a || l.layer >= b)
        fail(
          file,
          f,
          `is for layer ${l.layer}, outside ${kind === 'attention' ? 'attnLayers' : 'mlpLayers'} [${a}, ${b})`,
        );
      const total = checkInteger(d.total, file, `${f}.total`, 1);
      const kept = checkKept(d.kept, total, file, `${f}.kept`);
      const scores = d.scores === undefined ? undefined : checkScores(d.scores, total, file, `${f}.scores`);
      groups.push({ group: { kind, layer: l.layer }, total, kept, ...(scores ? { scores } : {}) });
    }
  });
  return {
    format: 'moreau-pruning-plan',
    version: 2,
    scope: 'block',
    criterion,
    reduction,
    ratio,
    ranking: p.scope === 'global' ? 'global-per-kind' : 'local',
    attnLayers,
    mlpLayers,
    seed,
    steps,
    ...(compute ? { compute } : {}),
    model: { numLayers },
    groups,
    masks: [],
  };
}
