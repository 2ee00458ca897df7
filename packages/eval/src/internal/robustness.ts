/**
 * Robustness of pruning plans under weight perturbation (the MoreauPruner paper's question: does
 * the mask survive a dtype round trip or a little noise?).
 *
 * For every criterion: a plan from the original weights (the reference), then a plan from each
 * perturbed copy of the weights:
 *  - 'fp16' / 'bf16': every floating-point parameter cast to that dtype and back to float32;
 *  - 'gauss:EPSxK': K seeded draws of w + N(0, (EPS |w|)^2) on every floating-point parameter.
 * Every variant of a criterion uses the same calibration windows and the same prune seed, so only
 * the weights differ. Reported per criterion and perturbation: the Jaccard similarity (IoU) of the
 * pruned unit sets with the reference's, the Spearman correlation of the unit scores with the
 * reference's (all groups' scores pooled into one vector, ties averaged), and the perplexity of
 * the pruned model (for the perturbed weights: the perturbed model, cut by its own plan). For the
 * Gaussian family, mean and sample standard deviation over the K seeds.
 */
import {
  type Backend,
  type CalibrationSet,
  type Criterion,
  castHost,
  getCriterion,
  type HostTensor,
  InputError,
  isFloat,
  jit,
  type OptionValues,
  type PlanOptions,
  type Progress,
  type PrunableModel,
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
import { jaccard, mean, sampleSd, spearman } from './stats.js';

export type Perturbation =
  | { readonly kind: 'fp16' }
  | { readonly kind: 'bf16' }
  | { readonly kind: 'gauss'; readonly eps: number; readonly seeds: number };

/** 'fp16' | 'bf16' | 'gauss:EPSxK' (e.g. 'gauss:0.01x3'; 'gauss' alone is 0.01x3). */
export function parsePerturbation(spec: string): Perturbation {
  const s = spec.trim();
  if (s === 'fp16' || s === 'float16') return { kind: 'fp16' };
  if (s === 'bf16' || s === 'bfloat16') return { kind: 'bf16' };
  const m = /^gauss(?::([0-9.eE+-]+)(?:x(\d+))?)?$/.exec(s);
  if (m) {
    const eps = m[1] === undefined ? 0.01 : Number(m[1]);
    const seeds = m[2] === undefined ? 3 : Number(m[2]);
    if (!(eps >= 0) || !Number.isFinite(eps) || !Number.isInteger(seeds) || seeds < 1) {
      throw new InputError(
        `perturbation '${spec}': eps must be >= 0 and K a positive integer`,
        undefined,
        'perturbation',
      );
    }
    return { kind: 'gauss', eps, seeds };
  }
  throw new InputError(
    `unknown perturbation '${spec}'; valid: fp16, bf16, gauss:EPSxK (e.g. gauss:0.01x3)`,
    undefined,
    'perturbation',
  );
}

export function perturbationName(p: Perturbation): string {
  return p.kind === 'gauss' ? `gauss:${p.eps}x${p.seeds}` : p.kind;
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
    if (p.kind === 'fp16' || p.kind === 'bf16') {
      data = toFloat32Data(
        castHost(tensor(w, t.shape, 'float32'), p.kind === 'fp16' ? 'float16' : 'bfloat16'),
      );
    } else {
      data = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) data[i] = w[i]! + p.eps * Math.abs(w[i]!) * rng!.normal();
    }
    out.set(name, tensor(data, t.shape, 'float32'));
  }
  return new Map([...params.keys()].map((k) => [k, out.get(k)!]));
}

/** The same model with other parameter values (same structure). */
export function withParams(model: PrunableModel, params: ReadonlyMap<string, HostTensor>): PrunableModel {
  return model.withParams(params);
}

export interface LossPerplexityOptions {
  readonly backend?: Backend | string;
  /** Windows per call (default 8; a smaller last batch compiles its own shape). */
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
}

/**
 * Perplexity of a PrunableModel on equal-length token windows from its `loss` (mean next-token
 * cross-entropy): exp of the mean over every predicted position, the perplexity protocol's number,
 * without needing per-position scores. Compiles the model's loss once per batch shape.
 */
export async function lossPerplexity(
  model: PrunableModel,
  windows: readonly (readonly number[])[],
  options: LossPerplexityOptions = {},
): Promise<{ nll: number; ppl: number; tokens: number }> {
  if (windows.length === 0) throw new InputError('lossPerplexity: no windows');
  const T = windows[0]!.length;
  if (T < 2 || windows.some((w) => w.length !== T))
    throw new InputError('lossPerplexity: windows must share a length >= 2');
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
      sum += (loss.data as Float32Array)[0]! * chunk.length;
    }
    const nll = sum / windows.length;
    return { nll, ppl: Math.exp(nll), tokens: windows.length * (T - 1) };
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
  readonly seed?: number;
}

export interface RobustnessOptions {
  readonly ratio: number;
  readonly criteria: readonly (string | CriterionSpec)[];
  /** Default fp16, bf16, gauss:0.01x3. */
  readonly perturbations?: readonly (Perturbation | string)[];
  /**
   * Calibration windows: one fixed set for every criterion, a token stream to sample from (one set
   * per criterion, with the iterations it asks for), or a function.
   */
  readonly calibration?:
    | CalibrationSet
    | CalibrationSource
    | ((criterion: Criterion, options: OptionValues) => CalibrationSet);
  /** Perplexity of a pruned model (e.g. lossPerplexity on held-out windows). */
  readonly evaluate: (model: PrunableModel, signal?: AbortSignal) => Promise<number>;
  /** Other prune options shared by every run (scope, layer ranges, reduction, backend, seed...). */
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

export interface PerturbationStat {
  readonly iou: number;
  readonly spearman: number;
  readonly ppl: number;
}

export interface SeedFamilyStat {
  readonly iou_mean: number;
  readonly iou_sd: number;
  readonly spearman_mean: number;
  readonly ppl_mean: number;
  readonly ppl_sd: number;
}

export interface RobustnessReport {
  readonly ratio: number;
  readonly results: Record<string, Record<string, PerturbationStat | SeedFamilyStat>>;
  readonly baseline: Record<string, { readonly ppl: number }>;
  readonly dense?: { readonly ppl: number };
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

/** Every group's unit scores, concatenated in the reference's key order. */
function pooledScores(scores: ReadonlyMap<string, Float64Array>, keys: readonly string[]): number[] {
  const out: number[] = [];
  for (const k of keys) {
    const s = scores.get(k);
    if (!s) throw new InputError(`robustness: no scores for group ${k}`);
    out.push(...s);
  }
  return out;
}

function isCalibrationSet(x: unknown): x is CalibrationSet {
  return typeof x === 'object' && x !== null && Array.isArray((x as CalibrationSet).iterations);
}

/** Runs the analysis (see the module comment). */
export async function robustness(
  model: PrunableModel,
  options: RobustnessOptions,
): Promise<RobustnessReport> {
  const perturbations = (options.perturbations ?? DEFAULT_PERTURBATIONS).map((p) =>
    typeof p === 'string' ? parsePerturbation(p) : p,
  );
  const specs = options.criteria.map((c) => (typeof c === 'string' ? { name: c } : c));
  const noiseSeed = options.noiseSeed ?? 1000;
  const signal = options.signal;
  const variants: { name: string; p: Perturbation; seed: number }[] = [];
  for (const p of perturbations) {
    const n = p.kind === 'gauss' ? p.seeds : 1;
    for (let k = 0; k < n; k++) variants.push({ name: perturbationName(p), p, seed: noiseSeed + k });
  }
  const total = specs.length * (1 + variants.length) + (options.dense === false ? 0 : 1);
  let done = 0;
  const step = (phase: string) => {
    done++;
    options.onProgress?.({ phase, done, total });
  };

  // Perturbed weights are the same for every criterion: build each variant once.
  const perturbed = new Map<number, PrunableModel>();
  const variantModel = (i: number) => {
    let m = perturbed.get(i);
    if (!m) {
      const v = variants[i]!;
      m = withParams(model, perturbParams(model.params, v.p, v.seed));
      perturbed.set(i, m);
    }
    return m;
  };

  const report: RobustnessReport = { ratio: options.ratio, results: {}, baseline: {} };
  let dense: number | undefined;
  if (options.dense !== false) {
    dense = await options.evaluate(model, signal);
    step('dense perplexity');
  }
  for (const spec of specs) {
    throwIfAborted(signal);
    const criterion = getCriterion(spec.name);
    const resolved = resolveOptions(criterion, spec.options);
    const label = spec.label ?? spec.name;
    let calibration: CalibrationSet | undefined;
    const cal = options.calibration;
    if (typeof cal === 'function') calibration = cal(criterion, resolved);
    else if (isCalibrationSet(cal)) calibration = cal;
    else if (cal) {
      calibration = sampleCalibration(cal.tokens, {
        samples: cal.samples,
        seqLen: cal.seqLen,
        iterations: criterion.calibrationIterations?.(resolved) ?? 1,
        seed: cal.seed ?? 1,
      });
    }
    const run = async (m: PrunableModel, what: string) => {
      const r = await prune(m, {
        ...options.prune,
        criterion,
        options: spec.options ?? {},
        ratio: options.ratio,
        ...(calibration ? { calibration } : {}),
        ...(signal ? { signal } : {}),
        onProgress: (p) => options.onProgress?.({ ...p, phase: `${label} ${what}: ${p.phase}` }),
      });
      const ppl = await options.evaluate(r.model, signal);
      return { units: prunedUnits(r.plan), scores: r.scores, ppl };
    };
    const ref = await run(model, 'original');
    step(`${label} original`);
    const keys = [...ref.scores.keys()];
    const refScores = pooledScores(ref.scores, keys);
    report.baseline[label] = { ppl: ref.ppl };
    const perName = new Map<string, { iou: number; spearman: number; ppl: number }[]>();
    for (let i = 0; i < variants.length; i++) {
      const v = variants[i]!;
      const r = await run(variantModel(i), v.p.kind === 'gauss' ? `${v.name} seed ${v.seed}` : v.name);
      const list = perName.get(v.name) ?? [];
      list.push({
        iou: jaccard(ref.units, r.units),
        spearman: spearman(refScores, pooledScores(r.scores, keys)),
        ppl: r.ppl,
      });
      perName.set(v.name, list);
      step(`${label} ${v.name}`);
    }
    const row: Record<string, PerturbationStat | SeedFamilyStat> = {};
    for (const p of perturbations) {
      const name = perturbationName(p);
      const list = perName.get(name)!;
      if (p.kind === 'gauss') {
        row[name] = {
          iou_mean: mean(list.map((x) => x.iou)),
          iou_sd: sampleSd(list.map((x) => x.iou)),
          spearman_mean: mean(list.map((x) => x.spearman)),
          ppl_mean: mean(list.map((x) => x.ppl)),
          ppl_sd: sampleSd(list.map((x) => x.ppl)),
        };
      } else row[name] = list[0]!;
    }
    report.results[label] = row;
  }
  return dense === undefined ? report : { ...report, dense: { ppl: dense } };
}

/** A plain-text table of a report (one row per criterion and perturbation). */
export function formatRobustnessTable(report: RobustnessReport): string {
  const lines = [
    `ratio ${report.ratio}${report.dense ? `, dense PPL ${report.dense.ppl.toFixed(3)}` : ''}`,
    '| criterion | perturbation | IoU | Spearman | PPL |',
    '|---|---|---|---|---|',
  ];
  const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
  for (const [c, row] of Object.entries(report.results)) {
    lines.push(`| ${c} | original | 1 | 1 | ${f(report.baseline[c]!.ppl)} |`);
    for (const [p, s] of Object.entries(row)) {
      if ('iou' in s) lines.push(`| ${c} | ${p} | ${f(s.iou)} | ${f(s.spearman)} | ${f(s.ppl)} |`);
      else
        lines.push(
          `| ${c} | ${p} | ${f(s.iou_mean)} ± ${f(s.iou_sd)} | ${f(s.spearman_mean)} | ${f(s.ppl_mean)} ± ${f(s.ppl_sd)} |`,
        );
    }
  }
  return lines.join('\n');
}
