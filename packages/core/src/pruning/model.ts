/** The contract between a model package and the pruning engine, and the generic cut. */
import type { HostTensor } from '../dtype.js';
import { allocate } from '../dtype.js';
import { InputError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { memberIndices, type PrunableGroup } from './groups.js';

export interface KeptUnits {
  /** Layer -> kept attention units (KV groups), ascending original indices. */
  readonly attention: ReadonlyMap<number, readonly number[]>;
  /** Layer -> kept MLP channels. */
  readonly mlp: ReadonlyMap<number, readonly number[]>;
}

export interface PrunableModel {
  readonly numLayers: number;
  /** Every parameter by name; float tensors in any storage dtype. */
  readonly params: ReadonlyMap<string, HostTensor>;
  /** The prunable groups of the current (possibly already pruned) model. */
  groups(): PrunableGroup[];
  /** Mean next-token cross-entropy of int32 ids [B, T], as an IR function of the parameters. */
  loss(params: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor;
  /** The model with these parameters and this many units left per layer. */
  withPruned(
    params: Map<string, HostTensor>,
    unitsLeft: { attention: ReadonlyMap<number, number>; mlp: ReadonlyMap<number, number> },
  ): PrunableModel;
}

/** Copies the slices at `indices` along `axis` (any dtype, any rank). */
export function selectIndices(t: HostTensor, axis: number, indices: readonly number[]): HostTensor {
  const shape = [...t.shape];
  const dim = shape[axis]!;
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= dim)
      throw new InputError(`index ${i} out of range [0, ${dim}) on axis ${axis}`);
  }
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  shape[axis] = indices.length;
  const out = allocate(t.dtype, outer * indices.length * inner);
  const src = t.data;
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < indices.length; k++) {
      const from = (o * dim + indices[k]!) * inner;
      out.set(src.subarray(from, from + inner) as never, (o * indices.length + k) * inner);
    }
  }
  return { dtype: t.dtype, shape, data: out };
}

/**
 * Cuts a model to the kept units: every member of every group is index-selected along its axis,
 * then the model rebuilds itself with the new per-layer sizes. Groups without an entry stay whole.
 */
export function cutModel(model: PrunableModel, kept: KeptUnits): PrunableModel {
  const params = new Map(model.params);
  const attention = new Map<number, number>();
  const mlp = new Map<number, number>();
  for (const group of model.groups()) {
    const units = (group.kind === 'attention' ? kept.attention : kept.mlp).get(group.layer);
    if (!units) continue;
    if (units.length === 0)
      throw new InputError(`layer ${group.layer} ${group.kind}: cannot keep zero units`);
    for (const u of units) {
      if (!Number.isInteger(u) || u < 0 || u >= group.units) {
        throw new InputError(
          `layer ${group.layer} ${group.kind}: unit ${u} out of range [0, ${group.units})`,
        );
      }
    }
    for (const m of group.members) {
      const t = params.get(m.param);
      if (!t)
        throw new InputError(
          `the model has no parameter '${m.param}' named by group ${group.kind}@${group.layer}`,
        );
      params.set(m.param, selectIndices(t, m.axis, memberIndices(group, m, units)));
    }
    (group.kind === 'attention' ? attention : mlp).set(group.layer, units.length);
  }
  return model.withPruned(params, { attention, mlp });
}

/** Total number of elements over all parameters. */
export function countParams(params: ReadonlyMap<string, HostTensor>): number {
  let n = 0;
  for (const t of params.values()) n += t.data.length;
  return n;
}
