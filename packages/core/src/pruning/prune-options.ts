/**
 * The options of a pruning run, and their validation: every check happens before any scoring, and
 * every error names the option (a usage error in the CLI).
 */
import type { Backend } from '../backend.js';
import { InputError } from '../errors.js';
import { type ComputeDtype, checkComputeDtype } from '../precision.js';
import { Rng } from '../rng.js';
import type { ExecMode } from '../stream/executor.js';
import type { CalibrationSet } from './calibration.js';
import {
  type Criterion,
  checkCriterionScope,
  getCriterion,
  type OptionValues,
  type Progress,
  resolveOptions,
} from './criterion.js';
import type { PrunableModel } from './model.js';
import type { PlanSettings } from './plan.js';
import {
  isElementScope,
  type ParsedScope,
  type PruneScope,
  parseRanking,
  parseScope,
  type Ranking,
} from './scope.js';
import { REDUCTIONS, type Reduction } from './scoring.js';
import { keptCount } from './selection.js';

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
  /**
   * The dtype the model computes in while it is scored (default float32). float16 / bfloat16 are
   * emulated exactly (see jit's computeDtype) and recorded in the plan's `compute`.
   */
  readonly computeDtype?: ComputeDtype;
}

/** The options, validated, with defaults filled in. */
export interface Run {
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
  readonly computeDtype: ComputeDtype;
  readonly rng: Rng;
  readonly opts: PlanOptions;
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

export function resolveRun(model: PrunableModel, opts: PlanOptions): Run {
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
  const computeDtype = checkComputeDtype(opts.computeDtype ?? 'float32');
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
    computeDtype,
    rng: new Rng(seed),
    opts,
  };
}
