/**
 * One scoring step: builds the criterion's context on a model executor (whole-graph or
 * layer-streamed), runs the criterion, and folds the salience it hands over into unit scores per
 * group as it arrives, so no per-element salience of the whole model is ever held.
 */
import type { Backend } from '../backend.js';
import { type HostTensor, tensor as hostTensor, sizeOf, toFloat32Data } from '../dtype.js';
import { InputError, throwIfAborted } from '../errors.js';
import type { ComputeMode } from '../precision.js';
import type { Rng } from '../rng.js';
import type { ModelExecutor, WeightSource } from '../stream/executor.js';
import { availableMemory } from '../stream/memory.js';
import { ParamState, type ParamStateOptions } from '../stream/param-state.js';
import type { CalibrationSet } from './calibration.js';
import type {
  Criterion,
  CriterionContext,
  CriterionResult,
  GradientRequest,
  OptionValues,
  ParamInfo,
  Progress,
} from './criterion.js';
import type { PrunableGroup } from './groups.js';
import type { PrunableModel } from './model.js';
import {
  type ChannelMode,
  channelScores,
  foldSubUnits,
  type Reduction,
  reduceMembers,
  sumChannelsIntoUnits,
} from './scoring.js';

export interface ScoreRun {
  readonly model: PrunableModel;
  readonly groups: readonly PrunableGroup[];
  readonly criterion: Criterion;
  readonly options: OptionValues;
  readonly reduction: Reduction;
  readonly rng: Rng;
  readonly calibration: CalibrationSet | undefined;
  /** Present when the criterion needs gradients. */
  readonly executor: ModelExecutor | undefined;
  readonly backend: Backend | undefined;
  /** The compute dtype (named by the error a non-finite gradient or salience raises). */
  readonly compute?: ComputeMode;
  readonly state?: ParamStateOptions;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
  /** Receives the criterion's diagnostics and warnings (when it returns any). */
  readonly onReport?: (report: Pick<CriterionResult, 'diagnostics' | 'warnings'>) => void;
}

/** Index of the first NaN or infinite value, or -1. */
function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return i;
  return -1;
}

/**
 * Scores must never become a plan once they are NaN or infinite (a half-precision overflow, a
 * diverging criterion): this builds the error that stops the run instead.
 */
export class NonFiniteGuard {
  /** The loss of the latest gradient pass (undefined before the first). */
  loss: number | undefined;

  constructor(
    private readonly criterion: string,
    private readonly compute: ComputeMode,
  ) {}

  /** Throws when `values` (what, e.g. "the gradient of 'w'") holds a NaN or an infinity. */
  check(what: string, values: ArrayLike<number>): void {
    const i = firstNonFinite(values);
    if (i >= 0) throw this.error(`${what} is non-finite (${values[i]} at element ${i})`);
  }

  checkLoss(loss: number): void {
    if (!Number.isFinite(loss)) throw this.error('the loss is non-finite');
  }

  private error(problem: string): InputError {
    const { computeDtype, precision } = this.compute;
    const hint =
      computeDtype === 'float16'
        ? 'float16 overflows above 65504: compute in bfloat16 or float32 instead'
        : 'the model or the criterion produced an infinity or a NaN';
    const loss = this.loss === undefined ? 'no loss was computed' : `the loss was ${this.loss}`;
    return new InputError(
      `criterion '${this.criterion}' computing in ${computeDtype} (${precision}): ${problem}; ${loss}. ${hint}`,
      undefined,
      'computeDtype',
    );
  }
}

/** Folds element salience into unit scores, one member parameter at a time. */
class SalienceSink {
  /** Per group, per member index: the member's folded channel scores once it arrived. */
  private readonly perMember: (Float64Array | undefined)[][];
  private readonly where = new Map<string, { group: number; member: number }[]>();

  constructor(
    private readonly groups: readonly PrunableGroup[],
    private readonly shapes: ReadonlyMap<string, readonly number[]>,
    private readonly mode: ChannelMode,
    private readonly reduction: Reduction,
    private readonly criterion: string,
    private readonly guard: NonFiniteGuard,
  ) {
    this.perMember = groups.map((g) => g.members.map(() => undefined));
    groups.forEach((g, gi) => {
      g.members.forEach((m, mi) => {
        const list = this.where.get(m.param) ?? [];
        list.push({ group: gi, member: mi });
        this.where.set(m.param, list);
      });
    });
  }

  add(name: string, values: Float32Array | Float64Array): void {
    const places = this.where.get(name);
    if (!places) {
      throw new InputError(
        `criterion '${this.criterion}' handed over salience for '${name}', which belongs to no group being scored`,
      );
    }
    const shape = this.shapes.get(name)!;
    const size = shape.reduce((p, d) => p * d, 1);
    if (values.length !== size) {
      throw new InputError(
        `criterion '${this.criterion}' returned ${values.length} salience values for '${name}', which has ${size} elements`,
      );
    }
    this.guard.check(`the salience of '${name}'`, values);
    for (const { group, member } of places) {
      const g = this.groups[group]!;
      const m = g.members[member]!;
      this.perMember[group]![member] = foldSubUnits(channelScores(values, shape, m.axis, this.mode), g, m);
    }
  }

  /** Unit scores per group; every member must have arrived. */
  finish(): Float64Array[] {
    return this.groups.map((g, gi) => {
      const got = this.perMember[gi]!;
      const missing = g.members.find((_, mi) => !got[mi]);
      if (missing) {
        throw new InputError(
          `criterion '${this.criterion}' returned no salience for '${missing.param}' (group ${g.id})`,
        );
      }
      return sumChannelsIntoUnits(reduceMembers(got as Float64Array[], this.reduction), g.units, g.unitSize);
    });
  }
}

/** A read-only map of float32 copies, read on demand from the model's tensors. */
class WeightCopies implements ReadonlyMap<string, Float32Array> {
  constructor(
    private readonly names: readonly string[],
    private readonly params: ReadonlyMap<string, HostTensor>,
  ) {}
  get size() {
    return this.names.length;
  }
  has(k: string) {
    return this.names.includes(k);
  }
  get(k: string): Float32Array | undefined {
    if (!this.has(k)) return undefined;
    return float32Copy(this.params.get(k)!);
  }
  forEach(cb: (v: Float32Array, k: string, m: ReadonlyMap<string, Float32Array>) => void): void {
    for (const k of this.names) cb(this.get(k)!, k, this);
  }
  *entries(): MapIterator<[string, Float32Array]> {
    for (const k of this.names) yield [k, this.get(k)!];
  }
  *keys(): MapIterator<string> {
    yield* this.names;
  }
  *values(): MapIterator<Float32Array> {
    for (const k of this.names) yield this.get(k)!;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

/** A float32 copy the caller may modify without touching the model. */
export function float32Copy(t: HostTensor): Float32Array {
  const f = toFloat32Data(t);
  return f === t.data ? f.slice() : f;
}

function idsOf(batch: readonly (readonly number[])[]): HostTensor {
  const len = batch[0]?.length ?? 0;
  if (batch.length === 0 || batch.some((w) => w.length !== len)) {
    throw new InputError('gradient: the batch needs equal-length windows');
  }
  return hostTensor(Int32Array.from(batch.flat()), [batch.length, len], 'int32');
}

/** Scores one model state with the criterion: unit scores per group. */
export async function scoreGroups(run: ScoreRun): Promise<Float64Array[]> {
  const { model, groups, criterion, executor } = run;
  const members = [...new Set(groups.flatMap((g) => g.members.map((m) => m.param)))];
  const memberSet = new Set(members);
  const shapes = new Map<string, readonly number[]>();
  for (const m of members) {
    const t = model.params.get(m);
    if (!t) throw new InputError(`the model has no parameter '${m}' named by its groups`);
    shapes.set(m, t.shape);
  }
  const params: ParamInfo[] = [...model.params].map(([name, t]) => ({
    name,
    shape: t.shape,
    dtype: t.dtype,
    member: memberSet.has(name),
  }));
  const guard = new NonFiniteGuard(
    criterion.name,
    run.compute ?? { computeDtype: 'float32', precision: 'native' },
  );
  const sink = new SalienceSink(
    groups,
    shapes,
    criterion.channelMode(run.options),
    run.reduction,
    criterion.name,
    guard,
  );
  const needGradients = () => {
    if (!executor) {
      throw new InputError(
        `criterion '${criterion.name}' asked for gradients but does not declare requires.gradients`,
      );
    }
    throwIfAborted(run.signal);
    return executor;
  };
  const gradients = async (batch: readonly (readonly number[])[], req: GradientRequest) => {
    const exec = needGradients();
    const wanted =
      req.params === 'all'
        ? () => true
        : Array.isArray(req.params)
          ? (
              (s) => (n: string) =>
                s.has(n)
            )(new Set(req.params as readonly string[]))
          : (n: string) => memberSet.has(n);
    const point = req.point;
    const weights: WeightSource | undefined = point
      ? async (names) => {
          const given = await point(names);
          const out = new Map<string, HostTensor>();
          for (const n of names) {
            const v = given.get(n);
            const t = model.params.get(n)!;
            if (v && v.length !== sizeOf(t.shape)) {
              throw new InputError(
                `criterion '${criterion.name}': the point for '${n}' has ${v.length} values, expected ${sizeOf(t.shape)}`,
              );
            }
            out.set(n, v ? { dtype: 'float32', shape: t.shape, data: v } : t);
          }
          return out;
        }
      : undefined;
    // Non-finite gradients (e.g. a float16 overflow) stop the run before the criterion sees them.
    const loss = await exec.lossAndGradients(idsOf(batch), {
      wanted,
      onLoss: (l) => {
        guard.loss = l;
      },
      consume: (grads) => {
        for (const [name, g] of grads) guard.check(`the gradient of '${name}'`, g);
        return req.consume(grads);
      },
      ...(weights ? { weights } : {}),
    });
    guard.checkLoss(loss);
    return loss;
  };
  const ctx: CriterionContext = {
    params,
    weights: new WeightCopies(members, model.params),
    weight: (name) => {
      const t = model.params.get(name);
      if (!t) throw new InputError(`criterion '${criterion.name}' asked for an unknown parameter '${name}'`);
      return float32Copy(t);
    },
    shapes,
    groups,
    rng: run.rng,
    calibration: run.calibration,
    mode: executor?.mode ?? 'whole',
    gradient: async (batch, w) => {
      const grads = new Map<string, Float32Array>();
      const loss = await gradients(batch, {
        ...(w ? { point: () => w } : {}),
        consume: (g) => {
          for (const [k, v] of g) grads.set(k, v);
        },
      });
      return { loss, grads };
    },
    gradients,
    salience: (name, values) => sink.add(name, values),
    state: async (bytes) => ParamState.create(bytes, (await availableMemory()) / 2, run.state ?? {}),
    backend: run.backend,
    signal: run.signal,
    progress: (p) => run.onProgress?.(p),
  };
  const result = await criterion.score(ctx, run.options);
  throwIfAborted(run.signal);
  if (result?.diagnostics || result?.warnings)
    run.onReport?.({ diagnostics: result.diagnostics, warnings: result.warnings });
  if (result?.unitScores) {
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
  if (result?.salience) for (const [name, values] of result.salience) sink.add(name, values);
  return sink.finish();
}
