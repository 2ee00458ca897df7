/**
 * The pruning driver: validates the options, scores the model with the criterion on a model
 * executor (whole-graph or layer-streamed), selects, cuts, and records a plan.
 */
import { type Backend, getBackend } from '../backend.js';
import { InputError, throwIfAborted } from '../errors.js';
import { type ComputeDtype, type ComputeMode, checkComputeDtype, computeMode } from '../precision.js';
import { Rng } from '../rng.js';
import { type ExecMode, ModelExecutor } from '../stream/executor.js';
import type { CalibrationSet } from './calibration.js';
import {
  type Criterion,
  type CriterionDiagnostics,
  getCriterion,
  type Progress,
  resolveOptions,
} from './criterion.js';
import type { PrunableGroup } from './groups.js';
import { cutModel, type PrunableModel } from './model.js';
import { type LayerDecision, type LayerPlan, PLAN_FORMAT, PLAN_VERSION, type PruningPlan } from './plan.js';
import { scoreGroups } from './score-groups.js';
import { REDUCTIONS, type Reduction } from './scoring.js';
import { keptCount, selectGlobal, topK } from './selection.js';

export interface PlanOptions {
  readonly criterion: string | Criterion;
  /** Criterion options by their documented names (strings are converted). */
  readonly options?: Readonly<Record<string, unknown>>;
  readonly ratio: number;
  readonly seed?: number;
  readonly scope?: 'local' | 'global';
  /** Half-open layer ranges; default all layers. */
  readonly attnLayers?: readonly [number, number];
  readonly mlpLayers?: readonly [number, number];
  /** Reduction across group members; default the criterion's. */
  readonly reduction?: Reduction;
  readonly calibration?: CalibrationSet;
  readonly backend?: Backend | string;
  /** Iterative pruning: reach the ratio in this many score-and-cut steps (default 1). */
  readonly steps?: number;
  /** Write unit scores into the plan (they differ in the last bits between backends). */
  readonly includeScores?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
  /**
   * How gradients run: the whole model as one graph, or layer-streamed (memory bounded by one
   * layer). Default 'auto': whole when it fits in half the available memory.
   */
  readonly mode?: ExecMode | 'auto';
  /** Where criterion state that does not fit in memory spills (default: a temp folder). */
  readonly stateDir?: string;
  /**
   * The dtype the model computes in while it is scored (default float32). float16 / bfloat16 are
   * emulated exactly (see jit's computeDtype) and recorded in the plan's `compute`.
   */
  readonly computeDtype?: ComputeDtype;
}

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

function checkRange(
  r: readonly [number, number] | undefined,
  n: number,
  name: string,
): readonly [number, number] {
  const range = r ?? [0, n];
  const [a, b] = range;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || a > b || b > n) {
    throw new InputError(
      `${name} must be a half-open range A:B with 0 <= A <= B <= ${n}, got ${a}:${b}`,
      undefined,
      name,
    );
  }
  return [a, b];
}

/**
 * Scores the model with a criterion and prunes it to the ratio, in one or more steps.
 * Returns the plan (original indices), the pruned model and the last step's unit scores.
 */
export async function prune(model: PrunableModel, opts: PlanOptions): Promise<PruneResult> {
  const criterion = typeof opts.criterion === 'string' ? getCriterion(opts.criterion) : opts.criterion;
  const options = resolveOptions(criterion, opts.options);
  const reduction = opts.reduction ?? criterion.defaultReduction;
  if (!REDUCTIONS.includes(reduction)) {
    throw new InputError(
      `unknown reduction '${reduction}'; valid: ${REDUCTIONS.join(', ')}`,
      undefined,
      'reduction',
    );
  }
  keptCount(1, opts.ratio); // validates the ratio
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed))
    throw new InputError(`seed must be an integer, got ${seed}`, undefined, 'seed');
  const modeOption = opts.mode ?? 'auto';
  if (!['auto', 'whole', 'streamed'].includes(modeOption))
    throw new InputError(`mode must be auto, whole or streamed, got '${modeOption}'`, undefined, 'mode');
  const steps = opts.steps ?? 1;
  if (!Number.isInteger(steps) || steps < 1)
    throw new InputError(`steps must be a positive integer, got ${steps}`, undefined, 'steps');
  const computeDtype = checkComputeDtype(opts.computeDtype ?? 'float32');
  const scope = opts.scope ?? 'local';
  if (scope !== 'local' && scope !== 'global')
    throw new InputError(`scope must be 'local' or 'global', got '${scope}'`, undefined, 'scope');
  const attnLayers = checkRange(opts.attnLayers, model.numLayers, 'attnLayers');
  const mlpLayers = checkRange(opts.mlpLayers, model.numLayers, 'mlpLayers');
  if (criterion.requires.calibration && !opts.calibration) {
    throw new InputError(
      `criterion '${criterion.name}' needs calibration windows (pass calibration text or tokens)`,
      undefined,
      'calibration',
    );
  }
  const inRange = (g: PrunableGroup) => {
    if (g.kind !== 'attention' && g.kind !== 'mlp') return false;
    const [a, b] = g.kind === 'attention' ? attnLayers : mlpLayers;
    return g.layer >= a && g.layer < b;
  };

  const original = model.groups().filter(inRange);
  const origUnits = new Map(original.map((g) => [g.id, g.units]));
  // Per group id: current unit index -> original unit index.
  const origIndex = new Map(original.map((g) => [g.id, Array.from({ length: g.units }, (_, i) => i)]));
  const lastScores = new Map<string, Float64Array>();
  const master = new Rng(seed);
  let current = model;
  let mode: ExecMode = 'whole';
  const backend = criterion.requires.gradients
    ? typeof opts.backend === 'object'
      ? opts.backend
      : await getBackend(opts.backend)
    : undefined;
  const diagnostics: CriterionDiagnostics[] = [];
  const warnings: string[] = [];
  const compute = computeMode(backend, computeDtype);
  const windows = opts.calibration?.iterations[0];
  const tokens = windows ? windows.length * (windows[0]?.length ?? 0) : 512;

  for (let step = 1; step <= steps; step++) {
    throwIfAborted(opts.signal);
    const stepRatio = (opts.ratio * step) / steps;
    const groups = current.groups().filter(inRange);
    const executor = backend
      ? await ModelExecutor.create(current, {
          backend,
          mode: modeOption,
          tokens,
          computeDtype,
          ...(opts.signal ? { signal: opts.signal } : {}),
        })
      : undefined;
    if (executor) mode = executor.mode;
    let scores: Float64Array[];
    diagnostics.push({});
    try {
      scores = await scoreGroups({
        model: current,
        groups,
        criterion,
        options,
        reduction,
        rng: master.fork(),
        calibration: opts.calibration,
        executor,
        backend,
        compute,
        ...(opts.stateDir ? { state: { dir: opts.stateDir } } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        onReport: (r) => {
          if (r.diagnostics) diagnostics[step - 1] = r.diagnostics;
          for (const w of r.warnings ?? []) warnings.push(steps > 1 ? `step ${step}: ${w}` : w);
        },
      });
    } finally {
      executor?.dispose();
    }
    const keep = new Map<string, number[]>();
    if (scope === 'local') {
      groups.forEach((g, i) => {
        keep.set(g.id, topK(scores[i]!, Math.min(keptCount(origUnits.get(g.id)!, stepRatio), g.units)));
      });
    } else {
      for (const kind of ['attention', 'mlp'] as const) {
        const idx = groups.map((g, i) => (g.kind === kind ? i : -1)).filter((i) => i >= 0);
        if (!idx.length) continue;
        const total = idx.reduce((sum, i) => sum + origUnits.get(groups[i]!.id)!, 0);
        const chosen = selectGlobal(
          idx.map((i) => scores[i]!),
          keptCount(total, stepRatio),
        );
        idx.forEach((gi, k) => {
          keep.set(groups[gi]!.id, chosen[k]!);
        });
      }
    }
    groups.forEach((g, i) => {
      const map = origIndex.get(g.id)!;
      const full = new Float64Array(origUnits.get(g.id)!).fill(Number.NaN);
      scores[i]!.forEach((v, u) => {
        full[map[u]!] = v;
      });
      lastScores.set(g.id, full);
      origIndex.set(
        g.id,
        keep.get(g.id)!.map((u) => map[u]!),
      );
    });
    current = cutModel(current, keep);
    opts.onProgress?.({ phase: 'prune', done: step, total: steps });
  }

  const layers: LayerPlan[] = [];
  for (let l = 0; l < model.numLayers; l++) {
    const decision = (kind: 'attention' | 'mlp'): LayerDecision | undefined => {
      const id = `layer.${l}.${kind}`;
      const total = origUnits.get(id);
      if (total === undefined) return undefined;
      const scores = opts.includeScores
        ? Array.from(lastScores.get(id)!, (v) => (Number.isNaN(v) ? null : v))
        : undefined;
      return { total, kept: origIndex.get(id)!, ...(scores ? { scores: scores as number[] } : {}) };
    };
    const attention = decision('attention');
    const mlp = decision('mlp');
    if (attention || mlp)
      layers.push({ layer: l, ...(attention ? { attention } : {}), ...(mlp ? { mlp } : {}) });
  }
  const plan: PruningPlan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    criterion: { name: criterion.name, options },
    reduction,
    ratio: opts.ratio,
    seed,
    scope,
    attnLayers,
    mlpLayers,
    steps,
    ...(computeDtype !== 'float32' ? { compute } : {}),
    numLayers: model.numLayers,
    layers,
  };
  return { plan, model: current, scores: lastScores, mode, compute, diagnostics, warnings };
}
