/**
 * Running a criterion on a model state: builds its context (weights, gradients and layer
 * activations on a model executor, whole-graph or layer-streamed, spillable state) and passes the
 * salience it hands over, as it arrives, to the scope's sink (unit scores or element masks), so no
 * per-element salience of the whole model is ever held.
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
import { NonFiniteGuard } from './non-finite.js';
import { checkNumbers, checkResultShape } from './result-checks.js';

export interface ScoreRun {
  readonly model: PrunableModel;
  /** The groups being scored (their members are the parameters criteria hand salience for). */
  readonly groups: readonly PrunableGroup[];
  readonly criterion: Criterion;
  readonly options: OptionValues;
  readonly rng: Rng;
  readonly calibration: CalibrationSet | undefined;
  /** Present when the criterion needs gradients or forward passes. */
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

/** A float32 copy the caller may modify without touching the model (written into `out` when given). */
export function float32Copy(t: HostTensor, out?: Float32Array): Float32Array {
  const f = toFloat32Data(t, out);
  return f === t.data ? f.slice() : f;
}

function idsOf(batch: readonly (readonly number[])[]): HostTensor {
  const len = batch[0]?.length ?? 0;
  if (batch.length === 0 || batch.some((w) => w.length !== len)) {
    throw new InputError('gradient: the batch needs equal-length windows');
  }
  return hostTensor(Int32Array.from(batch.flat()), [batch.length, len], 'int32');
}

/**
 * Runs the criterion on one model state: builds its context over the run's groups and hands every
 * salience it produces (through `ctx.salience` as it arrives, or in its result at the end) to
 * `onSalience`, after checking it is finite. Returns the unit scores it returned, if any.
 */
export async function runCriterion(
  run: ScoreRun,
  onSalience: (name: string, values: Float32Array | Float64Array) => void,
): Promise<{ readonly unitScores?: readonly Float64Array[] }> {
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
  const salience = (name: string, values: Float32Array | Float64Array) => {
    checkNumbers(criterion.name, `salience for '${name}'`, values); // finite, or an error naming it
    onSalience(name, values);
  };
  const needExecutor = (what: 'gradients' | 'forward') => {
    if (!executor || (what === 'gradients' && !criterion.requires.gradients)) {
      throw new InputError(
        `criterion '${criterion.name}' asked for ${what === 'gradients' ? 'gradients' : 'layer activations'} but does not declare requires.${what}`,
      );
    }
    throwIfAborted(run.signal);
    return executor;
  };
  const gradients = async (batch: readonly (readonly number[])[], req: GradientRequest) => {
    const exec = needExecutor('gradients');
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
    weight: (name, out) => {
      const t = model.params.get(name);
      if (!t) throw new InputError(`criterion '${criterion.name}' asked for an unknown parameter '${name}'`);
      if (out && out.length !== sizeOf(t.shape)) {
        throw new InputError(
          `criterion '${criterion.name}': weight('${name}', out) needs ${sizeOf(t.shape)} values in out, got ${out.length}`,
        );
      }
      return float32Copy(t, out);
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
    layerActivations: async (batch, consume) => {
      await needExecutor('forward').layerActivations(idsOf(batch), (layer, input, output) =>
        consume({ layer, input, output }),
      );
    },
    salience,
    state: async (bytes) => ParamState.create(bytes, (await availableMemory()) / 2, run.state ?? {}),
    backend: run.backend,
    signal: run.signal,
    progress: (p) => run.onProgress?.(p),
  };
  const result = await criterion.score(ctx, run.options);
  throwIfAborted(run.signal);
  if (result?.diagnostics || result?.warnings)
    run.onReport?.({ diagnostics: result.diagnostics, warnings: result.warnings });
  checkResultShape(criterion.name, result);
  if (result?.salience) for (const [name, values] of result.salience) salience(name, values);
  return result?.unitScores ? { unitScores: result.unitScores } : {};
}
