/**
 * What core needs to know about a prunable model's structure. A model package describes its
 * coupled slices as groups; core scores, selects and cuts them without knowing the architecture.
 *
 * A group has `units` units. Member m covers, for unit u, the contiguous index range
 * [m.offset + u * m.span, m.offset + (u + 1) * m.span) along axis m.axis of parameter m.param.
 */
import type { HostTensor } from '../dtype.js';
import { allocate, sizeOf } from '../dtype.js';
import { InputError, ShapeError } from '../errors.js';
import { isLazyTensor, lazyTensor } from '../lazy.js';

export interface GroupMember {
  /** Parameter name, e.g. 'model.layers.3.self_attn.q_proj.weight'. */
  readonly param: string;
  /** Axis of the parameter along which the units lie (0 = rows of [out, in], 1 = columns). */
  readonly axis: number;
  /** Role within the group, e.g. 'q', 'k', 'v', 'o', 'gate', 'up', 'down'. */
  readonly role: string;
  /**
   * Indices along `axis` per unit. A multiple of the group's unitSize: for grouped-query
   * attention a KV group spans its query heads on q_proj / o_proj (span = heads/kv * head_dim),
   * and their channel scores are summed onto the KV head's head_dim channels.
   */
  readonly span: number;
  /** Where unit 0 starts along `axis` (0 unless several groups share one fused parameter). */
  readonly offset: number;
}

/**
 * What a group's units are: attention KV groups and MLP channels of one layer (block scope), the
 * model's hidden channels (channel scope), or one whole decoder layer (layer scope, one unit).
 */
export type GroupKind = 'attention' | 'mlp' | 'hidden' | 'layer';
export const GROUP_KINDS: readonly GroupKind[] = ['attention', 'mlp', 'hidden', 'layer'];

/** A group named structurally (how plans name groups): its kind and, for per-layer kinds, its layer. */
export interface GroupRef {
  readonly kind: GroupKind;
  /** Decoder layer; absent for model-wide groups. */
  readonly layer?: number;
}

export interface PrunableGroup {
  /** Unique key within the model (for maps and messages), e.g. 'layer.3.attention', 'hidden'. */
  readonly id: string;
  readonly kind: GroupKind;
  /** Decoder layer; -1 for model-wide groups. */
  readonly layer: number;
  /** Number of units (KV groups for attention, channels for MLP and hidden, 1 for a layer). */
  readonly units: number;
  /** Channels per unit sub-slice (head_dim for attention, 1 for MLP). */
  readonly unitSize: number;
  readonly members: readonly GroupMember[];
}

/** Units of one group to keep, for `PrunableModel.cut` (an empty list removes a 'layer' group). */
export interface GroupCut {
  readonly group: PrunableGroup;
  readonly kept: readonly number[];
}

/** The structural name of a group. */
export function groupRef(g: PrunableGroup): GroupRef {
  return g.layer >= 0 ? { kind: g.kind, layer: g.layer } : { kind: g.kind };
}

/** Whether a group is the one a reference names. */
export function isGroup(g: PrunableGroup, ref: GroupRef): boolean {
  return g.kind === ref.kind && g.layer === (ref.layer ?? -1);
}

/** 'layer 3 mlp', 'hidden': how messages name a group. */
export function groupLabel(ref: GroupRef): string {
  return ref.layer === undefined ? ref.kind : `layer ${ref.layer} ${ref.kind}`;
}

/** Sorted, de-duplicated unit indices, checked against `units` when given. */
export function normalizeUnits(keptUnits: Iterable<number>, units?: number, what = 'units'): number[] {
  const list = [...new Set(keptUnits)].sort((a, b) => a - b);
  for (const u of list) {
    if (!Number.isInteger(u) || u < 0 || (units !== undefined && u >= units)) {
      throw new InputError(
        `${what}: unit index ${u} is out of range${units !== undefined ? ` [0, ${units})` : ' (must be >= 0)'}`,
      );
    }
  }
  return list;
}

/** Indices along the member's axis covered by the given units, ascending. */
export function memberIndices(member: GroupMember, units: Iterable<number>): number[] {
  const out: number[] = [];
  for (const u of normalizeUnits(units, undefined, `memberIndices(${member.param})`)) {
    const start = member.offset + u * member.span;
    for (let j = 0; j < member.span; j++) out.push(start + j);
  }
  return out;
}

/**
 * Index-select along one axis of a host tensor (any rank, any dtype): keeps `indices` (in the
 * given order) along `axis`. The dtype is preserved.
 */
export function selectIndices(t: HostTensor, axis: number, indices: readonly number[]): HostTensor {
  const rank = t.shape.length;
  if (!Number.isInteger(axis) || axis < 0 || axis >= rank) {
    throw new ShapeError(`selectIndices: axis ${axis} out of range for shape [${t.shape.join(', ')}]`);
  }
  const dim = t.shape[axis]!;
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= dim) {
      throw new ShapeError(`selectIndices: index ${i} out of range [0, ${dim}) on axis ${axis}`);
    }
  }
  const outer = sizeOf(t.shape.slice(0, axis));
  const inner = sizeOf(t.shape.slice(axis + 1));
  const shape = [...t.shape];
  shape[axis] = indices.length;
  const data = allocate(t.dtype, sizeOf(shape));
  const src = t.data;
  let o = 0;
  for (let a = 0; a < outer; a++) {
    const base = a * dim * inner;
    for (const i of indices) {
      const from = base + i * inner;
      if (inner === 1) data[o++] = src[from]!;
      else {
        data.set(src.subarray(from, from + inner) as never, o);
        o += inner;
      }
    }
  }
  return { dtype: t.dtype, shape, data };
}

/**
 * The generic cut for models whose groups are slices: index-selects the kept units' slices of
 * every member of every listed group. Parameters of groups not listed pass through unchanged.
 */
export function cutGroups(
  params: ReadonlyMap<string, HostTensor>,
  cuts: readonly GroupCut[],
): Map<string, HostTensor> {
  const out = new Map(params);
  for (const { group: g, kept } of cuts) {
    const id = g.id;
    const list = normalizeUnits(kept, g.units, `group ${id}`);
    if (list.length === 0)
      throw new InputError(`cut: group ${id} would keep no unit (at least 1 is required)`);
    for (const m of g.members) {
      const t = out.get(m.param);
      if (!t) throw new InputError(`cut: parameter ${m.param} (member of ${id}) is missing`);
      const needed = m.offset + g.units * m.span;
      if (t.shape[m.axis]! < needed) {
        throw new ShapeError(
          `cut: ${m.param} has ${t.shape[m.axis]} entries on axis ${m.axis}, group ${id} needs ${needed}`,
        );
      }
      const idx = memberIndices(m, list);
      // A lazy (file-backed) tensor stays lazy: the cut happens when the data is read.
      if (isLazyTensor(t)) {
        const shape = [...t.shape];
        shape[m.axis] = idx.length;
        out.set(
          m.param,
          lazyTensor(shape, t.dtype, () => selectIndices(t, m.axis, idx).data),
        );
      } else out.set(m.param, selectIndices(t, m.axis, idx));
    }
  }
  return out;
}
