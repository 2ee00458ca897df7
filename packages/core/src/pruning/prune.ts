/**
 * The pruning driver: validates the options, scores the model with the criterion on a model
 * executor (whole-graph or layer-streamed), selects at the scope, cuts or masks, and records a plan.
 *
 * - block / channel: unit scores per group -> ranking -> cut, in one or more steps;
 * - layer: one score per candidate layer (or LLM-Pruner's keep-first rule) -> remove layers;
 * - unstructured / N:M: element salience -> a mask per matrix as it arrives -> zeroed weights.
 */
import { type Backend, getBackend } from '../backend.js';
import { InputError, throwIfAborted } from '../errors.js';
import { Rng } from '../rng.js';
import { type ExecMode, ModelExecutor } from '../stream/executor.js';
import type { CalibrationSet } from './calibration.js';
import {
  type Criterion,
  checkCriterionScope,
  getCriterion,
  type OptionValues,
  type Progress,
  resolveOptions,
} from './criterion.js';
import type { ScoreRun } from './criterion-run.js';
import { type GroupKind, groupRef, type PrunableGroup } from './groups.js';
import { checkNm, elementRuleOf, maskModel } from './masks.js';
import { countParams, type PrunableModel } from './model.js';
import {
  type GroupDecision,
  type MatrixMask,
  PLAN_FORMAT,
  PLAN_VERSION,
  type PlanSettings,
  type PruningPlan,
} from './plan.js';
import {
  isElementScope,
  type ParsedScope,
  type PruneScope,
  parseRanking,
  parseScope,
  type Ranking,
  scopeGroupKinds,
} from './scope.js';
import { scoreElements } from './score-elements.js';
import { scoreGroups } from './score-groups.js';
import { REDUCTIONS, type Reduction } from './scoring.js';
import { keptCount, selectUnits, topK } from './selection.js';

export interface PlanOptions {
  /** The criterion by name or object; not used (and not allowed) with `keepFirst`. */
  readonly criterion?: string | Criterion;
  /** Criterion options by their documented names (strings are converted). */
  readonly options?: Readonly<Record<string, unknown>>;
  /**
   * Fraction to prune: of each group's units (block, channel), of the candidate layers (layer), of
   * each matrix row (unstructured). N:M and `keepFirst` fix it themselves (N / M, the removed
   * layers' share) and record that in the plan; give none with them.
   */
  readonly ratio?: number;
  /** What a unit is: 'block' (default), 'channel', 'layer', 'unstructured' or 'N:M' such as '2:4'. */
  readonly scope?: PruneScope;
  /** Block scope: which units compete (default 'local'; 'global' = 'global-per-kind'). */
  readonly ranking?: Ranking | 'global';
  /** Layer scope, LLM-Pruner's rule: keep layers 0 .. N-1 and remove the rest, unscored. */
  readonly keepFirst?: number;
  /** Element scopes: keep this fraction of the would-be-zeroed weights, at random (default 0). */
  readonly keepLowRatio?: number;
  readonly seed?: number;
  /**
   * Half-open layer ranges; default all layers. Block: where attention / MLP groups are pruned;
   * element scopes: whose attention / MLP matrices are masked; layer: candidates lie in both.
   * Channel scope has none (a hidden channel runs through every layer).
   */
  readonly attnLayers?: readonly [number, number];
  readonly mlpLayers?: readonly [number, number];
  /** Reduction across group members; default the criterion's. */
  readonly reduction?: Reduction;
  readonly calibration?: CalibrationSet;
  readonly backend?: Backend | string;
  /** Iterative pruning (block and channel): reach the ratio in this many score-and-cut steps (default 1). */
  readonly steps?: number;
  /**
   * Write scores into the plan (they differ in the last bits between backends): unit scores, or
   * at the element scopes each matrix's float32 salience instead of its mask bitset.
   */
  readonly includeScores?: boolean;
  /** Provenance recorded in the plan as it is (see PlanSettings). */
  readonly settings?: PlanSettings;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
  /**
   * How gradients run: the whole model as one graph, or layer-streamed (memory bounded by one
   * layer). Default 'auto': whole when it fits in half the available memory.
   */
  readonly mode?: ExecMode | 'auto';
  /** Where criterion state that does not fit in memory spills (default: a temp folder). */
  readonly stateDir?: string;
}

export interface PruneResult {
  readonly plan: PruningPlan;
  readonly model: PrunableModel;
  /** Unit scores of the last scoring step by group id, original unit order (NaN: cut earlier). */
  readonly scores: ReadonlyMap<string, Float64Array>;
  /** How the gradients ran ('whole' also for criteria that need none). */
  readonly mode: ExecMode;
}

/** The options, validated, with defaults filled in. */
interface Run {
  readonly scope: ParsedScope;
  /** Undefined with keepFirst. */
  readonly criterion: Criterion | undefined;
  readonly options: OptionValues;
  readonly reduction: Reduction | undefined;
  readonly ratio: number;
  readonly ranking: Ranking;
  readonly keepFirst: number | undefined;
  readonly keepLowRatio: number;
  readonly seed: number;
  readonly steps: number;
  readonly attnLayers: readonly [number, number];
  readonly mlpLayers: readonly [number, number];
  readonly modeOption: ExecMode | 'auto';
  readonly rng: Rng;
  readonly opts: PlanOptions;
}

interface Outcome {
  readonly model: PrunableModel;
  readonly groups: readonly GroupDecision[];
  readonly masks: readonly MatrixMask[];
  readonly scores: ReadonlyMap<string, Float64Array>;
  readonly mode: ExecMode;
}

const usage = (message: string, field: string) => new InputError(message, undefined, field);

function checkRange(
  r: readonly [number, number] | undefined,
  n: number,
  name: string,
): readonly [number, number] {
  const range = r ?? [0, n];
  const [a, b] = range;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || a > b || b > n) {
    throw usage(`${name} must be a half-open range A:B with 0 <= A <= B <= ${n}, got ${a}:${b}`, name);
  }
  return [a, b];
}

function resolveRun(model: PrunableModel, opts: PlanOptions): Run {
  const scope = parseScope(opts.scope ?? 'block');
  const keepFirst = opts.keepFirst;
  if (keepFirst !== undefined) {
    if (scope.kind !== 'layer')
      throw usage(`keepFirst applies to scope layer, not ${scope.name}`, 'keepFirst');
    if (!Number.isInteger(keepFirst) || keepFirst < 1 || keepFirst > model.numLayers)
      throw usage(`keepFirst must be an integer in [1, ${model.numLayers}], got ${keepFirst}`, 'keepFirst');
    if (opts.criterion !== undefined)
      throw usage('keepFirst keeps the first layers without scoring them: drop the criterion', 'criterion');
    if (opts.ratio !== undefined) throw usage('keepFirst sets how many layers stay: drop the ratio', 'ratio');
  } else if (opts.criterion === undefined) throw usage('a criterion is required', 'criterion');
  const criterion =
    opts.criterion === undefined
      ? undefined
      : typeof opts.criterion === 'string'
        ? getCriterion(opts.criterion)
        : opts.criterion;
  if (criterion) checkCriterionScope(criterion, scope);
  const options = criterion ? resolveOptions(criterion, opts.options) : {};
  const reduction =
    criterion && !isElementScope(scope) ? (opts.reduction ?? criterion.defaultReduction) : undefined;
  if (opts.reduction !== undefined && !REDUCTIONS.includes(opts.reduction)) {
    throw usage(`unknown reduction '${opts.reduction}'; valid: ${REDUCTIONS.join(', ')}`, 'reduction');
  }
  if (scope.kind === 'n:m' && opts.ratio !== undefined && opts.ratio !== scope.n / scope.m)
    throw usage(`scope ${scope.name} zeroes ${scope.n} of every ${scope.m} weights: drop the ratio`, 'ratio');
  // keep-first and N:M fix the fraction themselves; the plan records it.
  const ratio =
    keepFirst !== undefined
      ? (model.numLayers - keepFirst) / model.numLayers
      : scope.kind === 'n:m'
        ? scope.n / scope.m
        : opts.ratio;
  if (ratio === undefined) throw usage('a ratio is required', 'ratio');
  keptCount(1, ratio); // validates the ratio
  const ranking = parseRanking(opts.ranking ?? 'local');
  if (ranking !== 'local' && scope.kind !== 'block')
    throw usage(`ranking '${ranking}' applies to scope block, not ${scope.name}`, 'ranking');
  const keepLowRatio = opts.keepLowRatio ?? 0;
  if (opts.keepLowRatio !== undefined && !isElementScope(scope))
    throw usage(`keepLowRatio applies to the unstructured and N:M scopes, not ${scope.name}`, 'keepLowRatio');
  if (!(keepLowRatio >= 0 && keepLowRatio < 1))
    throw usage(`keepLowRatio must be in [0, 1), got ${keepLowRatio}`, 'keepLowRatio');
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed)) throw usage(`seed must be an integer, got ${seed}`, 'seed');
  const modeOption = opts.mode ?? 'auto';
  if (!['auto', 'whole', 'streamed'].includes(modeOption))
    throw usage(`mode must be auto, whole or streamed, got '${modeOption}'`, 'mode');
  const steps = opts.steps ?? 1;
  if (!Number.isInteger(steps) || steps < 1)
    throw usage(`steps must be a positive integer, got ${steps}`, 'steps');
  if (steps > 1 && scope.kind !== 'block' && scope.kind !== 'channel')
    throw usage(
      `iterative pruning (steps > 1) applies to the block and channel scopes, not ${scope.name}`,
      'steps',
    );
  const attnLayers = checkRange(opts.attnLayers, model.numLayers, 'attnLayers');
  const mlpLayers = checkRange(opts.mlpLayers, model.numLayers, 'mlpLayers');
  if (scope.kind === 'channel') {
    for (const [name, r] of [
      ['attnLayers', attnLayers],
      ['mlpLayers', mlpLayers],
    ] as const) {
      if (r[0] !== 0 || r[1] !== model.numLayers)
        throw usage(`scope channel prunes hidden channels through every layer: ${name} does not apply`, name);
    }
  }
  if (criterion?.requires.calibration && !opts.calibration) {
    throw usage(
      `criterion '${criterion.name}' needs calibration windows (pass calibration text or tokens)`,
      'calibration',
    );
  }
  if (
    opts.settings !== undefined &&
    (opts.settings === null || typeof opts.settings !== 'object' || Array.isArray(opts.settings))
  )
    throw usage('settings must be an object of JSON values', 'settings');
  return {
    scope,
    criterion,
    options,
    reduction,
    ratio,
    ranking,
    keepFirst,
    keepLowRatio,
    seed,
    steps,
    attnLayers,
    mlpLayers,
    modeOption,
    rng: new Rng(seed),
    opts,
  };
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
    throw usage(
      `this model describes no ${kinds.join(' / ')} groups: it cannot be pruned at scope ${run.scope.name}`,
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
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
    : undefined;
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
      ...(opts.stateDir ? { state: { dir: opts.stateDir } } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    return { value, mode: executor?.mode ?? 'whole' };
  } finally {
    executor?.dispose();
  }
}

/** Scores in the plan: null where a unit was cut in an earlier step. */
const planScores = (s: Float64Array) => Array.from(s, (v) => (Number.isNaN(v) ? null : v));

/** Block and channel scopes: score, rank and cut units, in `steps` steps. */
async function pruneUnits(model: PrunableModel, run: Run): Promise<Outcome> {
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
    const scored = await withScoring(current, groups, run, (r) => scoreGroups(r, run.reduction!));
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
async function pruneLayers(model: PrunableModel, run: Run): Promise<Outcome> {
  const candidates = groupsInScope(model, run);
  let keep: Set<string>;
  let mode: ExecMode = 'whole';
  const scores = new Map<string, Float64Array>();
  if (run.keepFirst !== undefined) {
    const n = run.keepFirst;
    const candidate = new Set(candidates.map((g) => g.layer));
    for (let l = n; l < model.numLayers; l++) {
      if (!candidate.has(l))
        throw usage(`keepFirst ${n} would remove layer ${l}, which is outside the layer ranges`, 'keepFirst');
    }
    keep = new Set(candidates.filter((g) => g.layer < n).map((g) => g.id));
  } else {
    const scored = await withScoring(model, candidates, run, (r) => scoreGroups(r, run.reduction!));
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
async function pruneElements(model: PrunableModel, run: Run): Promise<Outcome> {
  const groups = groupsInScope(model, run);
  const scope = run.scope;
  if (scope.kind === 'n:m') {
    // Checked before any scoring: a matrix the pattern cannot tile fails now, not after an hour.
    for (const g of groups)
      for (const m of g.members) checkNm(scope, model.params.get(m.param)!.shape[1]!, m.param);
  }
  const rule = elementRuleOf(scope, run.ratio, run.keepLowRatio, run.seed);
  const scored = await withScoring(model, groups, run, (r) =>
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
  const outcome = isElementScope(run.scope)
    ? await pruneElements(model, run)
    : run.scope.kind === 'layer'
      ? await pruneLayers(model, run)
      : await pruneUnits(model, run);
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
    model: { numLayers: model.numLayers, params: countParams(model.params) },
    ...(opts.settings ? { settings: opts.settings } : {}),
    groups: outcome.groups,
    masks: outcome.masks,
  };
  return { plan, model: outcome.model, scores: outcome.scores, mode: outcome.mode };
}
