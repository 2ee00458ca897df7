/**
 * Robustness of pruning plans (the MoreauPruner paper's question: does the mask survive a dtype
 * switch or a little noise?), measured next to each criterion's own seed-to-seed variation.
 *
 * For every criterion: a plan from the original weights in float32 compute with the run's seed
 * (the reference), then a plan for each variant:
 *  - 'fp16' / 'bf16': every floating-point parameter cast to that dtype and back to float32;
 *  - 'gauss:EPSxK': K seeded draws of w + N(0, (EPS |w|)^2) on every floating-point parameter;
 *  - 'compute:float16' / 'compute:bfloat16': the original weights scored in that compute dtype
 *    (core's exact emulation, PlanOptions.computeDtype); when both are listed the two plans are also
 *    compared with each other (the paper's fp16-vs-bf16 switch);
 *  - 'seed:K': the original weights re-scored with K other seeds — the criterion's own randomness
 *    (its noise, and with fresh calibration its windows, redrawn with the new seed). Stochastic
 *    criteria get 'seed:3' by default so every stability number sits next to this variation;
 *    deterministic ones are reported as such (their plan does not depend on the seed);
 *  - 'calib:K': K other draws of the calibration windows, everything else fixed.
 * Weight and compute variants keep the reference's calibration windows and seed, so only the
 * weights (or the arithmetic) differ. Reported per criterion and variant: the Jaccard similarity
 * (IoU) of the pruned unit sets with the reference's, the Spearman correlation of the unit scores
 * with the reference's (all groups' scores pooled into one vector, ties averaged), and the
 * perplexity of the pruned model (perturbed weights: the perturbed model cut by its own plan; every
 * other variant: the original model cut by the variant's plan, evaluated as the reference is). Families of
 * K runs report mean and sample standard deviation, and each run.
 *
 * `robustnessSweep` repeats the analysis over a grid of criterion options (each criterion takes the
 * keys it documents; a criterion none of a setting's keys apply to is analysed once and shared).
 */
import {
  type Backend,
  type CalibrationSet,
  type ComputeDtype,
  type Criterion,
  type CriterionDiagnostics,
  castHost,
  type ExecMode,
  getCriterion,
  type HostTensor,
  InputError,
  isFloat,
  jit,
  type OptionValues,
  type PlanOptions,
  type Progress,
  type PrunableModel,
  type PruneResult,
  type PruningPlan,
  prune,
  Rng,
  resolveOptions,
  sampleCalibration,
  type Tensor,
  tensor,
  throwIfAborted,
  toFloat32Data,
} from '@moreau/core';
import { scoringModelFromStages } from './staged-scoring.js';
import { jaccard, mean, sampleSd, spearman } from './stats.js';

export type Perturbation =
  | { readonly kind: 'fp16' }
  | { readonly kind: 'bf16' }
  | { readonly kind: 'gauss'; readonly eps: number; readonly seeds: number }
  | { readonly kind: 'compute'; readonly dtype: Exclude<ComputeDtype, 'float32'> }
  | { readonly kind: 'seed'; readonly seeds: number }
  | { readonly kind: 'calib'; readonly seeds: number };

/** Seeds of the seed:K family stochastic criteria get when no seed:K is listed. */
export const DEFAULT_SEED_RUNS = 3;

const VALID =
  'valid: fp16, bf16, gauss:EPSxK (e.g. gauss:0.01x3), compute:float16, compute:bfloat16, seed:K, calib:K';

function badPerturbation(spec: string, why: string): never {
  throw new InputError(`perturbation '${spec}': ${why}`, undefined, 'perturbation');
}

/**
 * 'fp16' | 'bf16' | 'gauss:EPSxK' (e.g. 'gauss:0.01x3'; 'gauss' alone is 0.01x3) |
 * 'compute:float16' | 'compute:bfloat16' (also compute:fp16 / compute:bf16) | 'seed:K' (K >= 0;
 * 'seed' alone is seed:3; seed:0 turns the default seed family off) | 'calib:K' (K >= 1).
 */
export function parsePerturbation(spec: string): Perturbation {
  const s = spec.trim();
  if (s === 'fp16' || s === 'float16') return { kind: 'fp16' };
  if (s === 'bf16' || s === 'bfloat16') return { kind: 'bf16' };
  const m = /^gauss(?::([0-9.eE+-]+)(?:x(\d+))?)?$/.exec(s);
  if (m) {
    const eps = m[1] === undefined ? 0.01 : Number(m[1]);
    const seeds = m[2] === undefined ? 3 : Number(m[2]);
    if (!(eps >= 0) || !Number.isFinite(eps) || !Number.isInteger(seeds) || seeds < 1)
      badPerturbation(spec, 'eps must be >= 0 and K a positive integer');
    return { kind: 'gauss', eps, seeds };
  }
  const c = /^compute:(.*)$/.exec(s);
  if (c) {
    const d = c[1]!;
    if (d === 'float16' || d === 'fp16') return { kind: 'compute', dtype: 'float16' };
    if (d === 'bfloat16' || d === 'bf16') return { kind: 'compute', dtype: 'bfloat16' };
    if (d === 'float32' || d === 'fp32')
      badPerturbation(spec, 'float32 compute is the reference every plan is compared with');
    badPerturbation(spec, 'the compute dtype must be float16 or bfloat16');
  }
  const k = /^(seed|calib)(?::(.*))?$/.exec(s);
  if (k) {
    const kind = k[1] as 'seed' | 'calib';
    const seeds = k[2] === undefined ? DEFAULT_SEED_RUNS : Number(k[2]);
    const min = kind === 'seed' ? 0 : 1;
    if (k[2]?.trim() === '' || !Number.isInteger(seeds) || seeds < min)
      badPerturbation(spec, `K must be an integer >= ${min}`);
    return { kind, seeds };
  }
  throw new InputError(`unknown perturbation '${spec}'; ${VALID}`, undefined, 'perturbation');
}

export function perturbationName(p: Perturbation): string {
  switch (p.kind) {
    case 'gauss':
      return `gauss:${p.eps}x${p.seeds}`;
    case 'compute':
      return `compute:${p.dtype}`;
    case 'seed':
    case 'calib':
      return `${p.kind}:${p.seeds}`;
    default:
      return p.kind;
  }
}

/** The row comparing two variants' plans with each other (e.g. 'compute:float16 vs compute:bfloat16'). */
export function pairName(a: string, b: string): string {
  return `${a} vs ${b}`;
}

export const DEFAULT_PERTURBATIONS: readonly Perturbation[] = [
  { kind: 'fp16' },
  { kind: 'bf16' },
  { kind: 'gauss', eps: 0.01, seeds: 3 },
];

/** A copy of the parameters with every floating-point tensor perturbed (float32 results). */
export function perturbParams(
  params: ReadonlyMap<string, HostTensor>,
  p: Perturbation,
  seed = 0,
): Map<string, HostTensor> {
  if (p.kind !== 'fp16' && p.kind !== 'bf16' && p.kind !== 'gauss')
    throw new InputError(`perturbParams: '${perturbationName(p)}' does not change the weights`);
  const out = new Map<string, HostTensor>();
  const rng = p.kind === 'gauss' ? new Rng(seed) : undefined;
  // Sorted names: the noise of a parameter does not depend on the map's insertion order.
  for (const name of [...params.keys()].sort()) {
    const t = params.get(name)!;
    if (!isFloat(t.dtype)) {
      out.set(name, t);
      continue;
    }
    const w = toFloat32Data(t);
    let data: Float32Array;
    if (p.kind === 'gauss') {
      data = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) data[i] = w[i]! + p.eps * Math.abs(w[i]!) * rng!.normal();
    } else {
      data = toFloat32Data(
        castHost(tensor(w, t.shape, 'float32'), p.kind === 'fp16' ? 'float16' : 'bfloat16'),
      );
    }
    out.set(name, tensor(data, t.shape, 'float32'));
  }
  return new Map([...params.keys()].map((k) => [k, out.get(k)!]));
}

/** True when every floating-point value is unchanged by the cast (e.g. fp16 of fp16-stored weights). */
function castIsIdentity(params: ReadonlyMap<string, HostTensor>, perturbed: ReadonlyMap<string, HostTensor>) {
  for (const [name, t] of params) {
    if (!isFloat(t.dtype)) continue;
    const a = toFloat32Data(t);
    const b = toFloat32Data(perturbed.get(name)!);
    for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  }
  return true;
}

/** The same model with other parameter values (same structure). */
export function withParams(model: PrunableModel, params: ReadonlyMap<string, HostTensor>): PrunableModel {
  return model.withParams(params);
}

export interface LossPerplexityOptions {
  readonly backend?: Backend | string;
  /** Windows per compiled call at most (default 8). */
  readonly batchSize?: number;
  /** How a staged model runs: 'auto' (default), 'whole' or 'streamed' (see scoringModelFromStages). */
  readonly exec?: ExecMode | 'auto';
  readonly signal?: AbortSignal;
}

/**
 * Perplexity of a PrunableModel on equal-length token windows: exp of the mean NLL over every
 * predicted position, the perplexity protocol's number. A staged model runs on core's executor
 * (whole or layer-streamed, weights in their storage dtype); any other model through its `loss`,
 * one compiled graph per batch shape.
 */
export async function lossPerplexity(
  model: PrunableModel,
  windows: readonly (readonly number[])[],
  options: LossPerplexityOptions = {},
): Promise<{ nll: number; ppl: number; tokens: number; exec: ExecMode }> {
  if (windows.length === 0) throw new InputError('lossPerplexity: no windows');
  const T = windows[0]!.length;
  if (T < 2 || windows.some((w) => w.length !== T))
    throw new InputError('lossPerplexity: windows must share a length >= 2');
  const { sum, exec } = model.stages
    ? await stagedNllSum(model, windows, options)
    : { sum: await lossNllSum(model, windows, options), exec: 'whole' as const };
  const nll = sum / (windows.length * (T - 1));
  return { nll, ppl: Math.exp(nll), tokens: windows.length * (T - 1), exec };
}

/** Summed per-position NLL of a staged model's windows. */
async function stagedNllSum(
  model: PrunableModel,
  windows: readonly (readonly number[])[],
  options: LossPerplexityOptions,
): Promise<{ sum: number; exec: ExecMode }> {
  const scorer = scoringModelFromStages(model, {
    ...(options.backend !== undefined ? { backend: options.backend } : {}),
    ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
    ...(options.exec !== undefined ? { exec: options.exec } : {}),
  });
  try {
    const per = await scorer.windowsPerCall(windows[0]!.length, windows.length);
    let sum = 0;
    for (let s = 0; s < windows.length; s += per) {
      throwIfAborted(options.signal);
      for (const row of await scorer.tokenNll(windows.slice(s, s + per), options.signal))
        for (const v of row) sum += v;
    }
    return { sum, exec: scorer.exec! };
  } finally {
    scorer.dispose();
  }
}

/** Summed NLL from a model's mean loss, batch by batch (float32 weights on the host). */
async function lossNllSum(
  model: PrunableModel,
  windows: readonly (readonly number[])[],
  options: LossPerplexityOptions,
): Promise<number> {
  const T = windows[0]!.length;
  const B = options.batchSize ?? 8;
  const params: Record<string, HostTensor> = {};
  for (const [k, t] of model.params) {
    params[k] = t.dtype === 'float32' || !isFloat(t.dtype) ? t : tensor(toFloat32Data(t), t.shape, 'float32');
  }
  const f = jit((p: Record<string, Tensor>, ids: Tensor) => model.loss(p, ids), {
    ...(options.backend ? { backend: options.backend } : {}),
  });
  try {
    let sum = 0;
    for (let s = 0; s < windows.length; s += B) {
      throwIfAborted(options.signal);
      const chunk = windows.slice(s, s + B);
      const ids = tensor(Int32Array.from(chunk.flat()), [chunk.length, T], 'int32');
      const loss = (await f(params, ids)) as HostTensor;
      sum += (loss.data as Float32Array)[0]! * chunk.length * (T - 1);
    }
    return sum;
  } finally {
    f.dispose();
  }
}

export interface CriterionSpec {
  readonly name: string;
  readonly options?: Readonly<Record<string, unknown>>;
  /** Key in the report (default the name). */
  readonly label?: string;
}

export interface CalibrationSource {
  /** Token stream to draw windows from (core's sampleCalibration). */
  readonly tokens: ArrayLike<number>;
  readonly samples: number;
  readonly seqLen: number;
  /** Seed of the reference draw (default 1); seed:K / calib:K draw with seed + k. */
  readonly seed?: number;
}

/**
 * Calibration windows for a criterion, drawn with `seed`: the reference's seed (`prune.seed`,
 * default 1), or seed + k for the k-th run of seed:K (fresh-window criteria) and calib:K.
 */
export type CalibrationDraw = (
  criterion: Criterion,
  options: OptionValues,
  seed: number,
) => CalibrationSet | Promise<CalibrationSet>;

export interface RobustnessOptions {
  readonly ratio: number;
  readonly criteria: readonly (string | CriterionSpec)[];
  /**
   * Default fp16, bf16, gauss:0.01x3. A seed:K family (K = DEFAULT_SEED_RUNS) is added in front for
   * stochastic criteria unless one is listed (seed:0: none).
   */
  readonly perturbations?: readonly (Perturbation | string)[];
  /**
   * Calibration windows: one fixed set for every criterion and seed (seed:K then varies only the
   * criterion's seed, and calib:K does not apply), a token stream to sample from (one set per
   * criterion and seed, with the iterations it asks for), or a function of the seed.
   */
  readonly calibration?: CalibrationSet | CalibrationSource | CalibrationDraw;
  /** Perplexity of a pruned model (e.g. lossPerplexity on held-out windows). */
  readonly evaluate: (model: PrunableModel, signal?: AbortSignal) => Promise<number>;
  /**
   * Other prune options shared by every run (scope, layer ranges, reduction, backend, seed...). Its
   * `seed` (default 1) is the reference's; `computeDtype` must be float32 (the reference's).
   */
  readonly prune?: Omit<
    PlanOptions,
    'criterion' | 'options' | 'ratio' | 'calibration' | 'signal' | 'onProgress'
  >;
  /** Seed of the Gaussian noise; seed k of a family uses noiseSeed + k (default 1000). */
  readonly noiseSeed?: number;
  /** Also report the unpruned model's perplexity as `dense` (default true). */
  readonly dense?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
}

/** One variant against the reference. */
export interface PerturbationStat {
  /** Jaccard similarity of the pruned units. */
  readonly iou: number;
  /** Jaccard similarity of the kept units (of the groups the plans decide; absent in older reports). */
  readonly iou_kept?: number;
  readonly spearman: number;
  readonly ppl: number;
  /** compute:D: how the dtype ran ('emulated' on every backend today). */
  readonly precision?: string;
  /** Scoring, cutting and evaluation time of the variant. */
  readonly seconds?: number;
}

/** Two variants' plans compared with each other (no perplexity of its own: see each variant's row). */
export interface PairStat {
  readonly iou: number;
  readonly iou_kept?: number;
  readonly spearman: number;
  readonly between: readonly [string, string];
}

/** One run of a family (gauss:EPSxK, seed:K, calib:K). */
export interface FamilyRun {
  /** The noise seed (gauss), the criterion's seed (seed:K) or the calibration seed (calib:K). */
  readonly seed: number;
  readonly iou: number;
  readonly iou_kept?: number;
  readonly spearman: number;
  readonly ppl: number;
}

/** A family of K runs: mean and sample SD over them. */
export interface SeedFamilyStat {
  readonly iou_mean: number;
  readonly iou_sd: number;
  readonly iou_kept_mean?: number;
  readonly iou_kept_sd?: number;
  readonly spearman_mean: number;
  readonly ppl_mean: number;
  readonly ppl_sd: number;
  readonly runs?: readonly FamilyRun[];
  /** seed:K: what the new seed changed ('criterion seed', 'calibration windows'). */
  readonly varies?: readonly string[];
  readonly seconds?: number;
}

/** A variant that cannot change this criterion's plan, and why (nothing was run). */
export interface NotApplicableStat {
  readonly applicable: false;
  readonly reason: string;
}

export type RobustnessStat = PerturbationStat | PairStat | SeedFamilyStat | NotApplicableStat;

export const isFamilyStat = (s: RobustnessStat): s is SeedFamilyStat => 'iou_mean' in s;
export const isPairStat = (s: RobustnessStat): s is PairStat => 'between' in s;
export const isNotApplicable = (s: RobustnessStat): s is NotApplicableStat =>
  'applicable' in s && s.applicable === false;

/** The IoU a variant row shows: the value, or a family's mean and SD (undefined when not applicable). */
export function statIou(s: RobustnessStat): { iou: number; sd?: number } | undefined {
  if (isNotApplicable(s)) return undefined;
  return isFamilyStat(s) ? { iou: s.iou_mean, sd: s.iou_sd } : { iou: s.iou };
}

export interface RobustnessReport {
  readonly ratio: number;
  readonly results: Record<string, Record<string, RobustnessStat>>;
  readonly baseline: Record<string, BaselineStat>;
  readonly dense?: { readonly ppl: number };
  /** Each criterion's resolved options. */
  readonly options?: Record<string, OptionValues>;
  /** Whether each criterion's plan depends on its seed (see Criterion.stochastic). */
  readonly stochastic?: Record<string, boolean>;
  /** The reference's seed (criterion and calibration draws). */
  readonly seed?: number;
}

/**
 * The set of pruned units of a plan: 'kind@layer:unit' keys ('hidden:unit' for channels), and for
 * the element scopes 'param:index' of every zeroed weight (plans with bitsets; small models).
 */
export function prunedUnits(plan: PruningPlan): Set<string> {
  const out = new Set<string>();
  for (const d of plan.groups) {
    const kept = new Set(d.kept);
    const key = d.group.layer === undefined ? d.group.kind : `${d.group.kind}@${d.group.layer}`;
    for (let u = 0; u < d.total; u++) if (!kept.has(u)) out.add(`${key}:${u}`);
  }
  for (const m of plan.masks) {
    const bits = m.zeroed;
    if (!bits) throw new InputError(`robustness: the plan stores salience, not masks, for '${m.param}'`);
    for (let i = 0; i < bits.length * 8; i++) if ((bits[i >> 3]! >> (i & 7)) & 1) out.add(`${m.param}:${i}`);
  }
  return out;
}

/** The kept units of a plan, keyed as prunedUnits keys them (element scopes: every weight not zeroed). */
export function keptUnits(plan: PruningPlan): Set<string> {
  const out = new Set<string>();
  for (const d of plan.groups) {
    const key = d.group.layer === undefined ? d.group.kind : `${d.group.kind}@${d.group.layer}`;
    for (const u of d.kept) out.add(`${key}:${u}`);
  }
  for (const m of plan.masks) {
    const bits = m.zeroed;
    if (!bits) throw new InputError(`robustness: the plan stores salience, not masks, for '${m.param}'`);
    const size = m.shape.reduce((a, b) => a * b, 1);
    for (let i = 0; i < size; i++) if (!((bits[i >> 3]! >> (i & 7)) & 1)) out.add(`${m.param}:${i}`);
  }
  return out;
}

/** Every group's unit scores, concatenated in the given key order. */
function pooledScores(scores: ReadonlyMap<string, Float64Array>, keys: readonly string[]): number[] {
  const out: number[] = [];
  for (const k of keys) {
    const s = scores.get(k);
    if (!s) throw new InputError(`robustness: no scores for group ${k}`);
    out.push(...s);
  }
  return out;
}

/**
 * IoU (Jaccard) of the pruned units and of the kept units, and Spearman of the pooled unit scores
 * of two plans. At ratio r the pruned sets are the small ones, so their IoU is the sensitive number
 * (kept-set IoU stays near 1 when a few units swap).
 */
export function comparePlans(
  a: { readonly plan: PruningPlan; readonly scores: ReadonlyMap<string, Float64Array> },
  b: { readonly plan: PruningPlan; readonly scores: ReadonlyMap<string, Float64Array> },
): { iou: number; iou_kept: number; spearman: number } {
  const keys = [...a.scores.keys()];
  return {
    iou: jaccard(prunedUnits(a.plan), prunedUnits(b.plan)),
    iou_kept: jaccard(keptUnits(a.plan), keptUnits(b.plan)),
    spearman: spearman(pooledScores(a.scores, keys), pooledScores(b.scores, keys)),
  };
}

function isCalibrationSet(x: unknown): x is CalibrationSet {
  return typeof x === 'object' && x !== null && Array.isArray((x as CalibrationSet).iterations);
}

/** Whether a criterion runs the model (compute dtype matters): gradients or forward passes. */
function runsModel(c: Criterion): boolean {
  const r = c.requires as { gradients: boolean; forward?: boolean };
  return r.gradients || r.forward === true;
}

/** An Rng whose every method call is reported (to learn whether an undeclared criterion draws). */
function watchedRng(rng: Rng, onDraw: () => void): Rng {
  return new Proxy(rng, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        onDraw();
        return v.apply(target, args);
      };
    },
  });
}

/** The same criterion, reporting whether its scoring drew from ctx.rng. */
function watchedCriterion(criterion: Criterion, onDraw: () => void): Criterion {
  return Object.create(criterion, {
    score: {
      value: (ctx: Parameters<Criterion['score']>[0], o: OptionValues) =>
        criterion.score(Object.create(ctx, { rng: { value: watchedRng(ctx.rng, onDraw) } }), o),
    },
  });
}

/** The perturbation list with the default seed family in front when none is listed. */
function withSeedFamily(list: readonly Perturbation[]): Perturbation[] {
  if (list.some((p) => p.kind === 'seed')) return [...list];
  return [{ kind: 'seed', seeds: DEFAULT_SEED_RUNS }, ...list];
}

interface PlanRun {
  readonly plan: PruningPlan;
  readonly scores: ReadonlyMap<string, Float64Array>;
  readonly ppl: number;
  readonly seconds: number;
  readonly precision?: string;
  readonly diagnostics: readonly CriterionDiagnostics[];
  readonly warnings: readonly string[];
}

/** The reference run of a criterion: its plan's perplexity, time, and what the criterion reported. */
export interface BaselineStat {
  readonly ppl: number;
  readonly seconds?: number;
  /** The criterion's diagnostics (e.g. Moreau-GS's soft-threshold counters), when it gave any. */
  readonly diagnostics?: readonly CriterionDiagnostics[];
  readonly warnings?: readonly string[];
}

interface CriterionAnalysis {
  readonly baseline: BaselineStat;
  readonly row: Record<string, RobustnessStat>;
  readonly options: OptionValues;
  readonly stochastic: boolean;
}

/** Validated perturbations and the shared state of one analysis (perturbed weights, progress). */
function analysis(model: PrunableModel, options: RobustnessOptions) {
  const parsed = (options.perturbations ?? DEFAULT_PERTURBATIONS).map((p) =>
    typeof p === 'string' ? parsePerturbation(p) : p,
  );
  const names = parsed.map(perturbationName);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new InputError(`perturbation '${dup}' is listed twice`, undefined, 'perturbation');
  if (parsed.filter((p) => p.kind === 'seed').length > 1)
    throw new InputError('list at most one seed:K perturbation', undefined, 'perturbation');
  if ((options.prune?.computeDtype ?? 'float32') !== 'float32')
    throw new InputError(
      'robustness: the reference scores in float32 compute; use the compute:D perturbations, not prune.computeDtype',
      undefined,
      'computeDtype',
    );
  const perturbations = withSeedFamily(parsed).filter((p) => !(p.kind === 'seed' && p.seeds === 0));
  const computes = perturbations.filter((p) => p.kind === 'compute').map(perturbationName);
  const baseSeed = options.prune?.seed ?? 1;
  const noiseSeed = options.noiseSeed ?? 1000;
  const signal = options.signal;
  const cal = options.calibration;
  const redrawable = !!cal && !isCalibrationSet(cal);
  const calBase = cal && !isCalibrationSet(cal) && typeof cal !== 'function' ? (cal.seed ?? 1) : baseSeed;

  // Perturbed weights are the same for every criterion: built once per (family, k).
  const perturbed = new Map<string, { model: PrunableModel; identity: boolean }>();
  const perturbedModel = (p: Perturbation, k: number) => {
    const key = `${perturbationName(p)}#${k}`;
    let m = perturbed.get(key);
    if (!m) {
      const params = perturbParams(model.params, p, noiseSeed + k);
      m = {
        model: withParams(model, params),
        identity: p.kind !== 'gauss' && castIsIdentity(model.params, params),
      };
      perturbed.set(key, m);
    }
    return m;
  };

  let done = 0;
  let total = 0;
  const step = (phase: string) => {
    done++;
    options.onProgress?.({ phase, done, total: Math.max(total, done) });
  };
  /** Runs a criterion would make (an upper bound: undeclared criteria count as stochastic). */
  const plannedRuns = (criterion: Criterion, o: OptionValues) => {
    const stochastic = criterion.stochastic?.(o) ?? true;
    let n = 1;
    for (const p of perturbations) {
      if (p.kind === 'gauss') n += p.seeds;
      else if (p.kind === 'calib') n += criterion.requires.calibration && redrawable ? p.seeds : 0;
      else if (p.kind === 'seed') n += stochastic ? p.seeds : 0;
      else if (p.kind === 'compute') n += runsModel(criterion) ? 1 : 0;
      else n += 1;
    }
    return n;
  };

  /** Counts a criterion's runs into the progress total (call for every spec before analysing). */
  const plan = (spec: CriterionSpec) => {
    const criterion = getCriterion(spec.name);
    total += plannedRuns(criterion, resolveOptions(criterion, spec.options));
  };
  const dense = async () => {
    total++;
    const ppl = await options.evaluate(model, signal);
    step('dense perplexity');
    return ppl;
  };

  async function analyse(spec: CriterionSpec): Promise<CriterionAnalysis> {
    throwIfAborted(signal);
    const criterion = getCriterion(spec.name);
    const resolved = resolveOptions(criterion, spec.options);
    const label = spec.label ?? spec.name;
    const fresh = (criterion.calibrationIterations?.(resolved) ?? 1) > 1;
    const sets = new Map<number, CalibrationSet | undefined>();
    const calibrationAt = async (seed: number): Promise<CalibrationSet | undefined> => {
      if (!criterion.requires.calibration || !cal) return undefined;
      if (isCalibrationSet(cal)) return cal;
      if (!sets.has(seed)) {
        sets.set(
          seed,
          typeof cal === 'function'
            ? await cal(criterion, resolved, seed)
            : sampleCalibration(cal.tokens, {
                samples: cal.samples,
                seqLen: cal.seqLen,
                iterations: criterion.calibrationIterations?.(resolved) ?? 1,
                seed,
              }),
        );
      }
      return sets.get(seed);
    };

    const run = async (
      m: PrunableModel,
      what: string,
      over: { seed?: number; calSeed?: number; computeDtype?: ComputeDtype; scorer?: Criterion } = {},
    ): Promise<PlanRun> => {
      const t0 = performance.now();
      const calibration = await calibrationAt(over.calSeed ?? calBase);
      const r: PruneResult = await prune(m, {
        ...options.prune,
        criterion: over.scorer ?? criterion,
        options: spec.options ?? {},
        ratio: options.ratio,
        seed: over.seed ?? baseSeed,
        ...(over.computeDtype ? { computeDtype: over.computeDtype } : {}),
        ...(calibration ? { calibration } : {}),
        ...(signal ? { signal } : {}),
        onProgress: (p) => options.onProgress?.({ ...p, phase: `${label} ${what}: ${p.phase}` }),
      });
      const ppl = await options.evaluate(r.model, signal);
      step(`${label} ${what}`);
      return {
        plan: r.plan,
        scores: r.scores,
        ppl,
        seconds: (performance.now() - t0) / 1000,
        ...(over.computeDtype ? { precision: r.compute.precision } : {}),
        diagnostics: r.diagnostics,
        warnings: r.warnings,
      };
    };

    // The reference. A criterion that does not declare whether it is stochastic is watched.
    let drew = false;
    const scorer =
      criterion.stochastic === undefined ? watchedCriterion(criterion, () => (drew = true)) : undefined;
    const ref = await run(model, 'reference', scorer ? { scorer } : {});
    const stochastic = criterion.stochastic?.(resolved) ?? (drew || (fresh && redrawable));
    const vsRef = (r: PlanRun) => ({ ...comparePlans(ref, r), ppl: r.ppl });
    /** A variant the progress total counted (weights that turn out unchanged, undeclared determinism) is not run. */
    const uncount = (n: number) => {
      total -= n;
    };

    const row: Record<string, RobustnessStat> = {};
    const computeRuns = new Map<string, PlanRun>();
    const family = (
      list: { seed: number; r: PlanRun }[],
      extra: { varies?: readonly string[] } = {},
    ): SeedFamilyStat => {
      const runs = list.map(({ seed, r }) => ({ seed, ...vsRef(r) }));
      return {
        iou_mean: mean(runs.map((x) => x.iou)),
        iou_sd: sampleSd(runs.map((x) => x.iou)),
        iou_kept_mean: mean(runs.map((x) => x.iou_kept)),
        iou_kept_sd: sampleSd(runs.map((x) => x.iou_kept)),
        spearman_mean: mean(runs.map((x) => x.spearman)),
        ppl_mean: mean(runs.map((x) => x.ppl)),
        ppl_sd: sampleSd(runs.map((x) => x.ppl)),
        runs,
        ...extra,
        seconds: list.reduce((s, x) => s + x.r.seconds, 0),
      };
    };
    for (const p of perturbations) {
      const name = perturbationName(p);
      switch (p.kind) {
        case 'fp16':
        case 'bf16': {
          const v = perturbedModel(p, 0);
          if (v.identity) {
            uncount(1);
            row[name] = {
              applicable: false,
              reason: `every weight is already exactly representable in ${p.kind === 'fp16' ? 'float16' : 'bfloat16'}: the cast changes nothing`,
            };
            break;
          }
          const r = await run(v.model, name);
          row[name] = { ...vsRef(r), seconds: r.seconds };
          break;
        }
        case 'gauss': {
          const list: { seed: number; r: PlanRun }[] = [];
          for (let k = 0; k < p.seeds; k++)
            list.push({
              seed: noiseSeed + k,
              r: await run(perturbedModel(p, k).model, `${name} noise seed ${noiseSeed + k}`),
            });
          row[name] = family(list);
          break;
        }
        case 'compute': {
          if (!runsModel(criterion)) {
            row[name] = {
              applicable: false,
              reason: `${criterion.name} reads weights only (no forward or backward pass to compute in ${p.dtype})`,
            };
            break;
          }
          const r = await run(model, name, { computeDtype: p.dtype });
          computeRuns.set(name, r);
          row[name] = { ...vsRef(r), precision: r.precision!, seconds: r.seconds };
          // Each pair of compute dtypes, once both exist (the paper's fp16-vs-bf16 switch).
          for (const other of computes) {
            if (other === name) break;
            const o = computeRuns.get(other);
            if (o) row[pairName(other, name)] = { ...comparePlans(o, r), between: [other, name] };
          }
          break;
        }
        case 'seed': {
          if (!stochastic) {
            if (criterion.stochastic === undefined) uncount(p.seeds);
            row[name] = {
              applicable: false,
              reason: `deterministic: ${criterion.name}'s scores do not depend on the seed with these options`,
            };
            break;
          }
          const varies = ['criterion seed', ...(fresh && redrawable ? ['calibration windows'] : [])];
          const list: { seed: number; r: PlanRun }[] = [];
          for (let k = 1; k <= p.seeds; k++) {
            const seed = baseSeed + k;
            list.push({
              seed,
              r: await run(model, `${name} seed ${seed}`, {
                seed,
                ...(fresh ? { calSeed: calBase + k } : {}),
              }),
            });
          }
          row[name] = family(list, { varies });
          break;
        }
        case 'calib': {
          if (!criterion.requires.calibration || !redrawable) {
            row[name] = {
              applicable: false,
              reason: criterion.requires.calibration
                ? 'the calibration windows are fixed (replayed): there is nothing to redraw'
                : `${criterion.name} uses no calibration windows`,
            };
            break;
          }
          const list: { seed: number; r: PlanRun }[] = [];
          for (let k = 1; k <= p.seeds; k++) {
            const calSeed = calBase + k;
            list.push({ seed: calSeed, r: await run(model, `${name} windows seed ${calSeed}`, { calSeed }) });
          }
          row[name] = family(list);
          break;
        }
      }
    }
    const baseline: BaselineStat = {
      ppl: ref.ppl,
      seconds: ref.seconds,
      ...(ref.diagnostics.some((d) => Object.keys(d).length > 0) ? { diagnostics: ref.diagnostics } : {}),
      ...(ref.warnings.length ? { warnings: ref.warnings } : {}),
    };
    return { baseline, row, options: resolved, stochastic };
  }

  return { analyse, plan, dense, perturbations, baseSeed };
}

/** Runs the analysis (see the module comment). */
export async function robustness(
  model: PrunableModel,
  options: RobustnessOptions,
): Promise<RobustnessReport> {
  const a = analysis(model, options);
  const specs = options.criteria.map((c) => (typeof c === 'string' ? { name: c } : c));
  for (const spec of specs) a.plan(spec);
  const dense = options.dense === false ? undefined : await a.dense();
  const report = {
    ratio: options.ratio,
    results: {} as Record<string, Record<string, RobustnessStat>>,
    baseline: {} as Record<string, BaselineStat>,
    ...(dense === undefined ? {} : { dense: { ppl: dense } }),
    options: {} as Record<string, OptionValues>,
    stochastic: {} as Record<string, boolean>,
    seed: a.baseSeed,
  };
  for (const spec of specs) {
    const label = spec.label ?? spec.name;
    const r = await a.analyse(spec);
    report.results[label] = r.row;
    report.baseline[label] = r.baseline;
    report.options[label] = r.options;
    report.stochastic[label] = r.stochastic;
  }
  return report;
}

/** One swept criterion option and its values. */
export interface SweepAxis {
  readonly key: string;
  readonly values: readonly (number | string | boolean)[];
}

export type SweepValues = Readonly<Record<string, number | string | boolean>>;

export interface RobustnessSweepOptions extends RobustnessOptions {
  /** The grid: every combination of the axes' values (first axis outermost). */
  readonly sweep: readonly SweepAxis[];
}

export interface SweepSetting {
  /** The grid point: one value per axis. */
  readonly setting: SweepValues;
  /** 'key=value key=value' (the axes in order). */
  readonly label: string;
  /** The analysis at this setting (criteria the setting does not touch share one analysis). */
  readonly report: RobustnessReport;
  /** Per criterion: which swept keys it documents (none: the same analysis at every setting). */
  readonly applies: Record<string, readonly string[]>;
}

export interface RobustnessSweepReport {
  readonly ratio: number;
  readonly sweep: readonly SweepAxis[];
  /** Every grid point, in grid order. */
  readonly grid: readonly SweepSetting[];
  readonly dense?: { readonly ppl: number };
}

/** Every combination of the axes' values, first axis outermost. */
export function sweepGrid(axes: readonly SweepAxis[]): SweepValues[] {
  let grid: Record<string, number | string | boolean>[] = [{}];
  for (const a of axes) grid = grid.flatMap((g) => a.values.map((v) => ({ ...g, [a.key]: v })));
  return grid;
}

export function sweepLabel(setting: SweepValues): string {
  return Object.entries(setting)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** Checks the axes against the criteria: each key documented by one of them, values valid for each. */
export function checkSweep(criteria: readonly (string | CriterionSpec)[], axes: readonly SweepAxis[]): void {
  const specs = criteria.map((c) => (typeof c === 'string' ? { name: c } : c));
  const seen = new Set<string>();
  for (const a of axes) {
    if (seen.has(a.key))
      throw new InputError(`sweep: the option '${a.key}' is swept twice`, undefined, 'sweep');
    seen.add(a.key);
    if (a.values.length === 0) throw new InputError(`sweep: '${a.key}' has no values`, undefined, 'sweep');
    const owners = specs.filter((s) => Object.hasOwn(getCriterion(s.name).options, a.key));
    if (owners.length === 0) {
      const valid = [...new Set(specs.flatMap((s) => Object.keys(getCriterion(s.name).options)))];
      throw new InputError(
        `sweep: none of ${specs.map((s) => s.name).join(', ')} has the option '${a.key}'; valid: ${valid.join(', ') || '(none)'}`,
        undefined,
        'sweep',
      );
    }
    for (const s of owners)
      for (const v of a.values) resolveOptions(getCriterion(s.name), { ...s.options, [a.key]: v });
  }
}

/** The analysis at every grid point (see RobustnessSweepOptions); dense perplexity once. */
export async function robustnessSweep(
  model: PrunableModel,
  options: RobustnessSweepOptions,
): Promise<RobustnessSweepReport> {
  checkSweep(options.criteria, options.sweep);
  const a = analysis(model, options);
  const specs = options.criteria.map((c) => (typeof c === 'string' ? { name: c } : c));
  const grid = sweepGrid(options.sweep);
  /** Per grid point and criterion: the swept keys it has, its spec there, and the analysis's cache key. */
  const at = (setting: SweepValues, spec: CriterionSpec) => {
    const criterion = getCriterion(spec.name);
    const keys = Object.keys(setting).filter((k) => Object.hasOwn(criterion.options, k));
    const over = Object.fromEntries(keys.map((k) => [k, setting[k]!]));
    const specAt: CriterionSpec = { ...spec, options: { ...spec.options, ...over } };
    const resolved = resolveOptions(criterion, specAt.options);
    const name = spec.label ?? spec.name;
    const key = `${name}\u0000${JSON.stringify(Object.entries(resolved).sort(([x], [y]) => (x < y ? -1 : 1)))}`;
    return { keys, over, specAt, name, key };
  };
  const planned = new Set<string>();
  for (const setting of grid)
    for (const spec of specs) {
      const p = at(setting, spec);
      if (!planned.has(p.key)) a.plan(p.specAt);
      planned.add(p.key);
    }
  const dense = options.dense === false ? undefined : await a.dense();
  const cache = new Map<string, CriterionAnalysis>();
  const settings: SweepSetting[] = [];
  for (const setting of grid) {
    const label = sweepLabel(setting);
    const report = {
      ratio: options.ratio,
      results: {} as Record<string, Record<string, RobustnessStat>>,
      baseline: {} as Record<string, BaselineStat>,
      options: {} as Record<string, OptionValues>,
      stochastic: {} as Record<string, boolean>,
      seed: a.baseSeed,
    };
    const applies: Record<string, string[]> = {};
    for (const spec of specs) {
      const { keys, over, specAt, name, key } = at(setting, spec);
      let r = cache.get(key);
      if (!r) {
        r = await a.analyse({ ...specAt, label: keys.length ? `${name} [${sweepLabel(over)}]` : name });
        cache.set(key, r);
      }
      report.results[name] = r.row;
      report.baseline[name] = r.baseline;
      report.options[name] = r.options;
      report.stochastic[name] = r.stochastic;
      applies[name] = keys;
    }
    settings.push({ setting, label, report, applies });
  }
  return {
    ratio: options.ratio,
    sweep: options.sweep,
    grid: settings,
    ...(dense === undefined ? {} : { dense: { ppl: dense } }),
  };
}

const fixed = (x: number | undefined, d: number) =>
  x === undefined ? '-' : Number.isFinite(x) ? x.toFixed(d) : String(x);
const f3 = (x: number | undefined) => fixed(x, 3);

/** Decimals of the IoU and Spearman cells (3 unless a table needs more to tell its values apart). */
export interface CellDecimals {
  readonly iou?: number;
  readonly spearman?: number;
}

/**
 * The IoU, Spearman and perplexity cells of one variant row (not applicable: 'n/a' and why). An IoU or
 * correlation of exactly 1 prints as "1" (the same plan), a zero sd as "0".
 */
export function statCells(
  s: RobustnessStat,
  decimals: CellDecimals = {},
): {
  iou: string;
  iouKept: string;
  spearman: string;
  ppl: string;
  note?: string;
} {
  const di = decimals.iou ?? 3;
  const ds = decimals.spearman ?? 3;
  const unit = (x: number | undefined, d: number) => (x === 1 ? '1' : fixed(x, d));
  const sd = (x: number | undefined, d: number) => (x === 0 ? '0' : fixed(x, d));
  if (isNotApplicable(s)) return { iou: 'n/a', iouKept: '-', spearman: '-', ppl: '-', note: s.reason };
  if (isFamilyStat(s))
    return {
      iou: `${unit(s.iou_mean, di)} ± ${sd(s.iou_sd, di)}`,
      iouKept:
        s.iou_kept_mean === undefined ? '-' : `${unit(s.iou_kept_mean, di)} ± ${sd(s.iou_kept_sd, di)}`,
      spearman: unit(s.spearman_mean, ds),
      ppl: `${f3(s.ppl_mean)} ± ${f3(s.ppl_sd)}`,
    };
  if (isPairStat(s))
    return {
      iou: unit(s.iou, di),
      iouKept: unit(s.iou_kept, di),
      spearman: unit(s.spearman, ds),
      ppl: '(each plan: its row)',
    };
  return {
    iou: unit(s.iou, di),
    iouKept: unit(s.iou_kept, di),
    spearman: unit(s.spearman, ds),
    ppl: f3(s.ppl),
  };
}

/** A plain-text table of a report (one row per criterion and perturbation). */
export function formatRobustnessTable(report: RobustnessReport): string {
  const lines = [
    `ratio ${report.ratio}${report.dense ? `, dense PPL ${report.dense.ppl.toFixed(3)}` : ''}`,
    '| criterion | perturbation | IoU | IoU kept | Spearman | PPL |',
    '|---|---|---|---|---|---|',
  ];
  for (const [c, row] of Object.entries(report.results)) {
    lines.push(`| ${c} | original | 1 | 1 | 1 | ${f3(report.baseline[c]!.ppl)} |`);
    for (const [p, s] of Object.entries(row)) {
      const cell = statCells(s);
      lines.push(
        `| ${c} | ${p} | ${cell.iou} | ${cell.iouKept} | ${cell.spearman} | ${cell.note ?? cell.ppl} |`,
      );
    }
  }
  return lines.join('\n');
}

/**
 * The sweep as one table: a row per setting and criterion, the reference plan's perplexity, then
 * the IoU of each variant (families: mean ± SD).
 */
export function formatSweepTable(report: RobustnessSweepReport): string {
  const columns: string[] = [];
  for (const s of report.grid)
    for (const row of Object.values(s.report.results))
      for (const p of Object.keys(row)) if (!columns.includes(p)) columns.push(p);
  const lines = [
    `ratio ${report.ratio}${report.dense ? `, dense PPL ${report.dense.ppl.toFixed(3)}` : ''}; IoU with each criterion's reference plan at that setting`,
    `| setting | criterion | PPL | ${columns.map((c) => `${c} IoU`).join(' | ')} |`,
    `|---|---|---|${columns.map(() => '---|').join('')}`,
  ];
  for (const s of report.grid) {
    for (const [c, row] of Object.entries(s.report.results)) {
      const shared = (s.applies[c] ?? []).length === 0 ? ' (every setting)' : '';
      const cells = columns.map((p) => {
        const st = row[p];
        if (!st) return '-';
        return isNotApplicable(st) ? 'n/a' : statCells(st).iou;
      });
      lines.push(`| ${s.label} | ${c}${shared} | ${f3(s.report.baseline[c]!.ppl)} | ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}
