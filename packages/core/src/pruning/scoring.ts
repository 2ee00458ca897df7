/**
 * Shared scoring helpers: element salience -> per-member channel scores -> per-unit scores.
 * Every criterion goes through these, so criteria differ only in the salience they produce.
 */
import { InputError } from '../errors.js';
import type { GroupMember, PrunableGroup } from './groups.js';

/** 'abs-then-sum' (LLM-Pruner's "param" variants) or 'sum-then-abs' ("vectorize"). */
export type ChannelMode = 'abs-then-sum' | 'sum-then-abs';
export type Reduction = 'sum' | 'mean' | 'max' | 'prod' | 'first';
export const REDUCTIONS: readonly Reduction[] = ['sum', 'mean', 'max', 'prod', 'first'];

/**
 * One score per index along `axis` of a row-major matrix: sum of |s| (abs-then-sum) or |sum of s|
 * (sum-then-abs) over the other axis. 1-D salience (e.g. a norm weight) scores each element.
 */
export function channelScores(
  salience: Float32Array | Float64Array,
  shape: readonly number[],
  axis: number,
  mode: ChannelMode,
): Float64Array {
  if (shape.length === 1) {
    return Float64Array.from(salience, (v) => Math.abs(v));
  }
  if (shape.length !== 2 || (axis !== 0 && axis !== 1)) {
    throw new InputError(
      `channelScores: expected a matrix and axis 0 or 1, got shape [${shape}] axis ${axis}`,
    );
  }
  const [rows, cols] = shape as [number, number];
  const acc = new Float64Array(axis === 0 ? rows : cols);
  const abs = mode === 'abs-then-sum';
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    if (axis === 0) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += abs ? Math.abs(salience[base + c]!) : salience[base + c]!;
      acc[r] = s;
    } else {
      for (let c = 0; c < cols; c++) acc[c]! += abs ? Math.abs(salience[base + c]!) : salience[base + c]!;
    }
  }
  if (!abs) for (let i = 0; i < acc.length; i++) acc[i] = Math.abs(acc[i]!);
  return acc;
}

/**
 * Folds a member's channel scores onto [units * unitSize]: the span / unitSize sub-slices of a
 * unit (the query heads of a KV group) are summed channel by channel.
 */
export function foldSubUnits(scores: Float64Array, group: PrunableGroup, member: GroupMember): Float64Array {
  const s = group.unitSize;
  const sub = member.span / s;
  const expected = member.offset + group.units * member.span;
  if (!Number.isInteger(sub) || scores.length < expected) {
    throw new InputError(
      `group ${group.kind}@${group.layer}: member ${member.param} has ${scores.length} channels along axis ${member.axis}, expected ${expected}`,
    );
  }
  if (sub === 1 && member.offset === 0) return scores;
  const out = new Float64Array(group.units * s);
  for (let u = 0; u < group.units; u++) {
    for (let j = 0; j < sub; j++) {
      for (let c = 0; c < s; c++) out[u * s + c]! += scores[member.offset + (u * sub + j) * s + c]!;
    }
  }
  return out;
}

/** Reduces per-member channel scores (all the same length) to one array, channel by channel. */
export function reduceMembers(perMember: readonly Float64Array[], reduction: Reduction): Float64Array {
  const n = perMember[0]!.length;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let v: number;
    switch (reduction) {
      case 'sum':
      case 'mean': {
        v = 0;
        for (const m of perMember) v += m[i]!;
        if (reduction === 'mean') v /= perMember.length;
        break;
      }
      case 'max': {
        v = Number.NEGATIVE_INFINITY;
        for (const m of perMember) v = Math.max(v, m[i]!);
        break;
      }
      case 'prod': {
        v = 1;
        for (const m of perMember) v *= m[i]!;
        break;
      }
      case 'first':
        v = perMember[0]![i]!;
        break;
    }
    out[i] = v;
  }
  return out;
}

/** Sums each unit's unitSize channels into one score per unit. */
export function sumChannelsIntoUnits(channels: Float64Array, units: number, unitSize: number): Float64Array {
  const out = new Float64Array(units);
  for (let u = 0; u < units; u++) {
    let s = 0;
    for (let c = 0; c < unitSize; c++) s += channels[u * unitSize + c]!;
    out[u] = s;
  }
  return out;
}

/**
 * Unit scores of a group from element salience of its members:
 * channel scores per member -> fold sub-units -> reduce across members -> sum over unit channels.
 */
export function groupScores(
  group: PrunableGroup,
  salience: ReadonlyMap<string, Float32Array | Float64Array>,
  shapes: ReadonlyMap<string, readonly number[]>,
  mode: ChannelMode,
  reduction: Reduction,
): Float64Array {
  const perMember = group.members.map((m) => {
    const s = salience.get(m.param);
    const shape = shapes.get(m.param);
    if (!s || !shape)
      throw new InputError(`no salience for parameter '${m.param}' (group ${group.kind}@${group.layer})`);
    return foldSubUnits(channelScores(s, shape, m.axis, mode), group, m);
  });
  return sumChannelsIntoUnits(reduceMembers(perMember, reduction), group.units, group.unitSize);
}
