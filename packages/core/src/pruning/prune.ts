/**
 * The pruning driver: scores the model with the criterion on a model executor (whole-graph or
 * layer-streamed), selects at the scope, cuts or masks, and records a plan.
 *
 * - block / channel: unit scores per group -> ranking -> cut, in one or more steps;
 * - layer: one score per candidate layer (or LLM-Pruner's keep-first rule) -> remove layers;
 * - unstructured / N:M: element salience -> a mask per matrix as it arrives -> zeroed weights.
 */
import { getBackend } from '../backend.js';
import { InputError, throwIfAborted } from '../errors.js';
import { type ComputeMode, computeMode } from '../precision.js';
import { type ExecMode, ModelExecutor } from '../stream/executor.js';
import type { CriterionDiagnostics } from './criterion.js';
import type { ScoreRun } from './criterion-run.js';
import { type GroupKind, groupRef, type PrunableGroup } from './groups.js';
import { checkNm, elementRuleOf, maskModel } from './masks.js';
import { countParams, type PrunableModel } from './model.js';
import { type GroupDecision, type MatrixMask, PLAN_FORMAT, PLAN_VERSION, type PruningPlan } from './plan.js';
import { type PlanOptions, type Run, resolveRun } from './prune-options.js';
import { isElementScope, scopeGroupKinds } from './scope.js';
import { scoreElements } from './score-elements.js';
import { scoreGroups } from './score-groups.js';
import { keptCount, selectUnits, topK } from './selection.js';

export type { PlanOptions } from './prune-options.js';

export interface PruneResult {
  readonly plan: PruningPlan;
  readonly model: PrunableModel;
  /** Unit scores of the last scoring step by group id, original unit order (NaN: cut earlier). */
  readonly scores: ReadonlyMap<string, Float64Array>;
  /** How the gradients ran ('whole' also for criteria that need none). */
  readonly mode: ExecMode;
  /** The criterion's diagnostics, one record per scoring step ({} where it returned none). */
  readonly diagnostics: readonly CriterionDiagnostics[];
  /** The criterion's warnings, in order (prefixed with the step when steps > 1). */
  readonly warnings: readonly string[];
  /** The compute dtype and whether it ran natively or emulated. */
  readonly compute: ComputeMode;
}

/** What the scoring steps of a run report besides scores. */
interface Reports {
  readonly diagnostics: CriterionDiagnostics[];
  readonly warnings: string[];
  compute: ComputeMode;
}

interface Outcome {
  readonly model: PrunableModel;
  readonly groups: readonly GroupDecision[];
  readonly masks: readonly MatrixMask[];
  readonly scores: ReadonlyMap<string, Float64Array>;
  readonly mode: ExecMode;
}

/** The scope's groups that lie in the layer ranges (a layer must lie in both). */
function groupsInScope(model: PrunableModel, run: Run): PrunableGroup[] {
  const kinds = scopeGroupKinds(run.scope);
  const inRange = (l: number, [a, b]: readonly [number, number]) => l >= a && l < b;
  const wanted = (g: PrunableGroup) => {
    switch (g.kind as GroupKind) {
      case 'attention':
        return inRange(g.layer, run.attnLayers);
      case 'mlp':
        return inRange(g.layer, run.mlpLayers);
      case 'layer':
        return inRange(g.layer, run.attnLayers) && inRange(g.layer, run.mlpLayers);
      default:
        return true;
    }
  };
  const groups = model.groups(kinds);
  if (!groups.length) {
    throw new InputError(
      `this model describes no ${kinds.join(' / ')} groups: it cannot be pruned at scope ${run.scope.name}`,
      undefined,
      'scope',
    );
  }
  return groups.filter(wanted);
}

/** Runs the criterion once on `model` over `groups` (with an executor when it needs one). */
async function withScoring<T>(
  model: PrunableModel,
  groups: readonly PrunableGroup[],
  run: Run,
  reports: Reports,
  score: (r: ScoreRun) => Promise<T>,
): Promise<{ value: T; mode: ExecMode }> {
  const criterion = run.criterion!;
  const { opts } = run;
  const needsExecutor = criterion.requires.gradients || criterion.requires.forward === true;
  const backend = needsExecutor
    ? typeof opts.backend === 'object'
      ? opts.backend
      : await getBackend(opts.backend)
    : undefined;
  const windows = opts.calibration?.iterations[0];
  const executor = backend
    ? await ModelExecutor.create(model, {
        backend,
        mode: run.modeOption,
        tokens: windows ? windows.length * (windows[0]?.length ?? 0) : 512,
        computeDtype: run.computeDtype,
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
    : undefined;
  reports.compute = computeMode(backend, run.computeDtype);
  const step = reports.diagnostics.push({});
  try {
    const value = await score({
      model,
      groups,
      criterion,
      options: run.options,
      rng: run.rng.fork(),
      calibration: opts.calibration,
      executor,
      backend,
      compute: reports.compute,
      ...(opts.stateDir ? { state: { dir: opts.stateDir } } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      onReport: (r) => {
        if (r.diagnostics) reports.diagnostics[step - 1] = r.diagnostics;
        for (const w of r.warnings ?? []) reports.warnings.push(run.steps > 1 ? `step ${step}: ${w}` : w);
      },
    });
    return { value, mode: executor?.mode ?? 'whole' };
  } finally {
    executor?.dispose();
  }
}

/** Scores in the plan: null where a unit was cut in an earlier step. */
const planScores = (s: Float64Array) => Array.from(s, (v) => (Number.isNaN(v) ? null : v));

/** Block and channel scopes: score, rank and cut units, in `steps` steps. */
async function pruneUnits(model: PrunableModel, run: Run, reports: Reports): Promise<Outcome> {
  const original = groupsInScope(model, run);
  const ids = new Set(original.map((g) => g.id));
  const totals = new Map(original.map((g) => [g.id, g.units]));
  // Per group id: current unit index -> original unit index.
  const origIndex = new Map(original.map((g) => [g.id, Array.from({ length: g.units }, (_, i) => i)]));
  const lastScores = new Map<string, Float64Array>();
  let current = model;
  let mode: ExecMode = 'whole';
  for (let step = 1; step <= run.steps; step++) {
    throwIfAborted(run.opts.signal);
    const stepRatio = (run.ratio * step) / run.steps;
    const groups = current.groups(scopeGroupKinds(run.scope)).filter((g) => ids.has(g.id));
    const scored = await withScoring(current, groups, run, reports, (r) => scoreGroups(r, run.reduction!));
    mode = scored.mode;
    const scores = scored.value;
    const kept = selectUnits(
      groups,
      scores,
      groups.map((g) => totals.get(g.id)!),
      run.ranking,
      stepRatio,
    );
    groups.forEach((g, i) => {
      const map = origIndex.get(g.id)!;
      const full = new Float64Array(totals.get(g.id)!).fill(Number.NaN);
      scores[i]!.forEach((v, u) => {
        full[map[u]!] = v;
      });
      lastScores.set(g.id, full);
      origIndex.set(
        g.id,
        kept[i]!.map((u) => map[u]!),
      );
    });
    current = current.cut(groups.map((group, i) => ({ group, kept: kept[i]! })));
    run.opts.onProgress?.({ phase: 'prune', done: step, total: run.steps });
  }
  const decisions = original.map((g) => ({
    group: groupRef(g),
    total: g.units,
    kept: origIndex.get(g.id)!,
    ...(run.opts.includeScores ? { scores: planScores(lastScores.get(g.id)!) } : {}),
  }));
  return { model: current, groups: decisions, masks: [], scores: lastScores, mode };
}

/** Layer scope: remove the lowest-scoring candidate layers, or every layer from keepFirst on. */
async function pruneLayers(model: PrunableModel, run: Run, reports: Reports): Promise<Outcome> {
  const candidates = groupsInScope(model, run);
  let keep: Set<string>;
  let mode: ExecMode = 'whole';
  const scores = new Map<string, Float64Array>();
  if (run.keepFirst !== undefined) {
    const n = run.keepFirst;
    const candidate = new Set(candidates.map((g) => g.layer));
    for (let l = n; l < model.numLayers; l++) {
      if (!candidate.has(l))
        throw new InputError(
          `keepFirst ${n} would remove layer ${l}, which is outside the layer ranges`,
          undefined,
          'keepFirst',
        );
    }
    keep = new Set(candidates.filter((g) => g.layer < n).map((g) => g.id));
  } else {
    const scored = await withScoring(model, candidates, run, reports, (r) => scoreGroups(r, run.reduction!));
    mode = scored.mode;
    candidates.forEach((g, i) => {
      scores.set(g.id, scored.value[i]!);
    });
    // One score per layer; ties keep the lower layer.
    const best = topK(
      scored.value.map((s) => s[0]!),
      candidates.length ? keptCount(candidates.length, run.ratio) : 0,
    );
    keep = new Set(best.map((i) => candidates[i]!.id));
  }
  const cuts = candidates.map((group) => ({ group, kept: keep.has(group.id) ? [0] : [] }));
  run.opts.onProgress?.({ phase: 'prune', done: 1, total: 1 });
  return {
    model: cuts.length ? model.cut(cuts) : model,
    groups: candidates.map((g, i) => ({
      group: groupRef(g),
      total: 1,
      kept: cuts[i]!.kept,
      ...(run.opts.includeScores && scores.size ? { scores: planScores(scores.get(g.id)!) } : {}),
    })),
    masks: [],
    scores,
    mode,
  };
}

/** Unstructured and N:M scopes: a mask per matrix of the pruned layers, from element salience. */
async function pruneElements(model: PrunableModel, run: Run, reports: Reports): Promise<Outcome> {
  const groups = groupsInScope(model, run);
  const scope = run.scope;
  if (scope.kind === 'n:m') {
    // Checked before any scoring: a matrix the pattern cannot tile fails now, not after an hour.
    for (const g of groups)
      for (const m of g.members) checkNm(scope, model.params.get(m.param)!.shape[1]!, m.param);
  }
  const rule = elementRuleOf(scope, run.ratio, run.keepLowRatio, run.seed);
  const scored = await withScoring(model, groups, run, reports, (r) =>
    scoreElements(r, rule, run.opts.includeScores === true),
  );
  run.opts.onProgress?.({ phase: 'prune', done: 1, total: 1 });
  return {
    model: maskModel(model, scored.value, rule),
    groups: [],
    masks: scored.value,
    scores: new Map(),
    mode: scored.mode,
  };
}

/**
 * Scores the model with a criterion and prunes it at the scope to the ratio. Returns the plan
 * (original indices), the pruned model and the last step's unit scores.
 */
export async function prune(model: PrunableModel, opts: PlanOptions): Promise<PruneResult> {
  const run = resolveRun(model, opts);
  const reports: Reports = {
    diagnostics: [],
    warnings: [],
    compute: computeMode(undefined, run.computeDtype),
  };
  const outcome = isElementScope(run.scope)
    ? await pruneElements(model, run, reports)
    : run.scope.kind === 'layer'
      ? await pruneLayers(model, run, reports)
      : await pruneUnits(model, run, reports);
  const ranged = run.scope.kind !== 'channel';
  const plan: PruningPlan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    scope: run.scope.name,
    criterion: run.criterion ? { name: run.criterion.name, options: run.options } : null,
    ...(run.reduction ? { reduction: run.reduction } : {}),
    ratio: run.ratio,
    ...(run.scope.kind === 'block' ? { ranking: run.ranking } : {}),
    ...(ranged ? { attnLayers: run.attnLayers, mlpLayers: run.mlpLayers } : {}),
    ...(run.keepFirst !== undefined ? { keepFirst: run.keepFirst } : {}),
    ...(isElementScope(run.scope) ? { keepLowRatio: run.keepLowRatio } : {}),
    seed: run.seed,
    steps: run.steps,
    ...(run.computeDtype !== 'float32' ? { compute: reports.compute } : {}),
    model: { numLayers: model.numLayers, params: countParams(model.params) },
    ...(opts.settings ? { settings: opts.settings } : {}),
    groups: outcome.groups,
    masks: outcome.masks,
  };
  return { plan, model: outcome.model, scores: outcome.scores, mode: outcome.mode, ...reports };
}
