/**
 * The pruning driver: builds the criterion's context (weights, seeded RNG, calibration windows,
 * a compiled forward+backward), turns its salience into unit scores, selects, and records a plan.
 */
import type { Backend } from '../backend.js';
import { type HostTensor, tensor as hostTensor, toFloat32Data } from '../dtype.js';
import { InputError, throwIfAborted } from '../errors.js';
import { Rng } from '../rng.js';
import type { Tensor } from '../tensor.js';
import { jit, valueAndGrad } from '../transforms.js';
import type { CalibrationSet } from './calibration.js';
import {
  type Criterion,
  type CriterionContext,
  type GradientResult,
  getCriterion,
  type Progress,
  resolveOptions,
} from './criterion.js';
import type { PrunableGroup } from './groups.js';
import { cutModel, type PrunableModel } from './model.js';
import { type LayerDecision, type LayerPlan, PLAN_FORMAT, PLAN_VERSION, type PruningPlan } from './plan.js';
import { groupScores, REDUCTIONS, type Reduction } from './scoring.js';
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
   * Parts the member gradients are computed in for criteria that use ctx.gradientParts (moreau):
   * default automatic (1 unless the gradients would not fit in the memory available, see
   * CriterionContext.gradientParts). More parts bound memory at the cost of one forward +
   * backward per part.
   */
  readonly gradientParts?: number;
}

export interface PruneResult {
  readonly plan: PruningPlan;
  readonly model: PrunableModel;
  /** Unit scores of the last scoring step by group id, original unit order (NaN: cut earlier). */
  readonly scores: ReadonlyMap<string, Float64Array>;
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
 * Bytes of memory available now (Linux MemAvailable, else os.freemem()); Infinity where neither
 * can be read (core imports no Node module statically).
 */
async function availableMemory(): Promise<number> {
  try {
    const { readFileSync } = await import('node:fs');
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  try {
    return (await import('node:os')).freemem();
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/**
 * Parts for gradientParts(): 1 while the gradients fit twice over (the engine's outputs and their
 * copies on the JS side exist together at the end of a run) in half of the available memory
 * (the rest: activations and headroom); more parts otherwise, at most one per member.
 */
async function autoGradientParts(memberBytes: number, members: number): Promise<number> {
  const budget = (await availableMemory()) / 2;
  const need = 2 * memberBytes;
  return need <= budget ? 1 : Math.min(members, Math.ceil(need / Math.max(budget, 1)));
}

/** Splits members (in order) into `parts` runs of about equal bytes. */
function splitMembers(
  members: readonly string[],
  bytes: ReadonlyMap<string, number>,
  parts: number,
): string[][] {
  const total = members.reduce((s, m) => s + bytes.get(m)!, 0);
  const out: string[][] = [[]];
  let acc = 0;
  for (const m of members) {
    if (out.length < parts && acc >= (total * out.length) / parts && out[out.length - 1]!.length > 0)
      out.push([]);
    out[out.length - 1]!.push(m);
    acc += bytes.get(m)!;
  }
  return out;
}

/** A compiled loss-and-gradient over the group members' weights (other parameters are fixed). */
function gradientOracle(
  model: PrunableModel,
  members: readonly string[],
  backend: Backend | string | undefined,
  partsOption: number | undefined,
) {
  const memberSet = new Set(members);
  const fixed: Record<string, HostTensor> = {};
  for (const [k, t] of model.params) {
    if (!memberSet.has(k))
      fixed[k] = t.dtype === 'float32' ? t : hostTensor(toFloat32Data(t), t.shape, 'float32');
  }
  const loss = (diff: Record<string, Tensor>, rest: Record<string, Tensor>, ids: Tensor) =>
    model.loss({ ...rest, ...diff }, ids);
  const f = jit<[HostTensor, Record<string, HostTensor>]>(valueAndGrad(loss), { backend });
  const shapes = new Map(members.map((m) => [m, model.params.get(m)!.shape]));
  const bytes = new Map(members.map((m) => [m, 4 * shapes.get(m)!.reduce((p, d) => p * d, 1)]));
  const memberBytes = [...bytes.values()].reduce((a, b) => a + b, 0);
  // One jitted function per part of each split used (the part's members differentiated, the rest fed as fixed).
  const splits = new Map<number, { members: string[]; f: typeof f }[]>();
  const idsOf = (batch: readonly (readonly number[])[]) => {
    const len = batch[0]?.length ?? 0;
    if (batch.length === 0 || batch.some((w) => w.length !== len))
      throw new InputError('gradient: the batch needs equal-length windows');
    return hostTensor(Int32Array.from(batch.flat()), [batch.length, len], 'int32');
  };
  const asTensor = (m: string, weights: ReadonlyMap<string, Float32Array>): HostTensor => ({
    dtype: 'float32',
    shape: shapes.get(m)!,
    data: weights.get(m)!,
  });
  return {
    async gradient(
      batch: readonly (readonly number[])[],
      weights: ReadonlyMap<string, Float32Array>,
    ): Promise<GradientResult> {
      const ids = idsOf(batch);
      const diff: Record<string, HostTensor> = {};
      for (const m of members) diff[m] = asTensor(m, weights);
      const [value, grads] = await f(diff, fixed, ids);
      const out = new Map<string, Float32Array>();
      for (const m of members) out.set(m, grads[m]!.data as Float32Array);
      return { loss: (value.data as Float32Array)[0]!, grads: out };
    },
    async gradientParts(
      batch: readonly (readonly number[])[],
      weights: ReadonlyMap<string, Float32Array>,
      consume: (grads: Map<string, Float32Array>) => void | Promise<void>,
      signal: AbortSignal | undefined,
    ): Promise<number> {
      const parts = Math.min(
        partsOption ?? (await autoGradientParts(memberBytes, members.length)),
        members.length,
      );
      if (parts <= 1) {
        const r = await this.gradient(batch, weights);
        await consume(r.grads);
        return r.loss;
      }
      let split = splits.get(parts);
      if (!split) {
        split = splitMembers(members, bytes, parts).map((ms) => ({
          members: ms,
          f: jit<[HostTensor, Record<string, HostTensor>]>(valueAndGrad(loss), { backend }),
        }));
        splits.set(parts, split);
      }
      const ids = idsOf(batch);
      let lossValue = Number.NaN;
      for (const part of split) {
        throwIfAborted(signal);
        const inPart = new Set(part.members);
        const diff: Record<string, HostTensor> = {};
        const rest: Record<string, HostTensor> = { ...fixed };
        for (const m of members) (inPart.has(m) ? diff : rest)[m] = asTensor(m, weights);
        const [value, grads] = await part.f(diff, rest, ids);
        if (Number.isNaN(lossValue)) lossValue = (value.data as Float32Array)[0]!;
        const out = new Map<string, Float32Array>();
        for (const m of part.members) out.set(m, grads[m]!.data as Float32Array);
        await consume(out);
      }
      return lossValue;
    },
    dispose: () => {
      f.dispose();
      for (const split of splits.values()) for (const p of split) p.f.dispose();
    },
  };
}

/** Scores one model state with the criterion: unit scores per group. */
async function scoreGroups(
  model: PrunableModel,
  groups: readonly PrunableGroup[],
  criterion: Criterion,
  options: Readonly<Record<string, number | boolean | string>>,
  reduction: Reduction,
  rng: Rng,
  opts: PlanOptions,
): Promise<Float64Array[]> {
  const members = [...new Set(groups.flatMap((g) => g.members.map((m) => m.param)))];
  const weights = new Map<string, Float32Array>();
  const shapes = new Map<string, readonly number[]>();
  for (const m of members) {
    const t = model.params.get(m);
    if (!t) throw new InputError(`the model has no parameter '${m}' named by its groups`);
    weights.set(m, toFloat32Data(t));
    shapes.set(m, t.shape);
  }
  const oracle = criterion.requires.gradients
    ? gradientOracle(model, members, opts.backend, opts.gradientParts)
    : undefined;
  const ctx: CriterionContext = {
    weights,
    shapes,
    groups,
    rng,
    calibration: opts.calibration,
    gradient: async (batch, w) => {
      if (!oracle)
        throw new InputError(
          `criterion '${criterion.name}' asked for gradients but does not declare requires.gradients`,
        );
      throwIfAborted(opts.signal);
      return oracle.gradient(batch, w ?? weights);
    },
    gradientParts: async (batch, w, consume) => {
      if (!oracle)
        throw new InputError(
          `criterion '${criterion.name}' asked for gradients but does not declare requires.gradients`,
        );
      throwIfAborted(opts.signal);
      return oracle.gradientParts(batch, w, consume, opts.signal);
    },
    backend: typeof opts.backend === 'object' ? opts.backend : undefined,
    signal: opts.signal,
    progress: (p) => opts.onProgress?.(p),
  };
  try {
    const result = await criterion.score(ctx, options);
    throwIfAborted(opts.signal);
    if (result.unitScores) {
      if (
        result.unitScores.length !== groups.length ||
        result.unitScores.some((s, i) => s.length !== groups[i]!.units)
      ) {
        throw new InputError(
          `criterion '${criterion.name}' returned unit scores that do not match the model's groups`,
        );
      }
      return [...result.unitScores];
    }
    if (!result.salience)
      throw new InputError(`criterion '${criterion.name}' returned neither salience nor unit scores`);
    const mode = criterion.channelMode(options);
    return groups.map((g) => groupScores(g, result.salience!, shapes, mode, reduction));
  } finally {
    oracle?.dispose();
  }
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
  if (opts.gradientParts !== undefined && (!Number.isInteger(opts.gradientParts) || opts.gradientParts < 1)) {
    throw new InputError(
      `gradientParts must be a positive integer, got ${opts.gradientParts}`,
      undefined,
      'gradientParts',
    );
  }
  const steps = opts.steps ?? 1;
  if (!Number.isInteger(steps) || steps < 1)
    throw new InputError(`steps must be a positive integer, got ${steps}`, undefined, 'steps');
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

  for (let step = 1; step <= steps; step++) {
    throwIfAborted(opts.signal);
    const stepRatio = (opts.ratio * step) / steps;
    const groups = current.groups().filter(inRange);
    const scores = await scoreGroups(current, groups, criterion, options, reduction, master.fork(), opts);
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
    numLayers: model.numLayers,
    layers,
  };
  return { plan, model: current, scores: lastScores };
}
