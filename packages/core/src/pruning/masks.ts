/**
 * Element masks of the unstructured and N:M scopes: which weights of one [rows, cols] matrix are
 * zeroed, from the element salience a criterion handed over. Masks are bitsets (one bit per
 * weight, row-major, least significant bit first), so a 7B model's masks take 1/32 of its float32
 * size, and each is computed the moment its matrix's salience arrives.
 *
 * Rules (from the released MoreauPruner `moreaupruner_us.py`):
 * - unstructured at ratio r: every row zeroes its floor(cols * r) lowest |salience|, in a stable
 *   ascending sort (equal values: the lower column index is zeroed first);
 * - N:M: every block of M consecutive columns of a row zeroes its N lowest (same tie rule);
 * - keepLowRatio k: then floor(P * k) of the matrix's P zeroed weights, drawn uniformly at random
 *   from a stream keyed by (seed, parameter name), are kept after all.
 * NaN salience ranks lowest (zeroed first), as NaN unit scores do.
 */
import { counterKey } from '../counter-rng.js';
import type { HostTensor } from '../dtype.js';
import { InputError } from '../errors.js';
import { isLazyTensor, lazyTensor } from '../lazy.js';
import { Rng } from '../rng.js';
import type { PrunableModel } from './model.js';
import type { MatrixMask } from './plan.js';
import type { ParsedScope } from './scope.js';

export interface ElementRule {
  /** unstructured: zero a fraction of each row; n:m: zero n of every m consecutive weights. */
  readonly kind: 'unstructured' | 'n:m';
  /** Fraction of each row to zero (unstructured). */
  readonly ratio: number;
  readonly n: number;
  readonly m: number;
  /** Fraction of the zeroed weights kept after all, at random (0: none). */
  readonly keepLowRatio: number;
  /** Seed of the keepLowRatio draw. */
  readonly seed: number;
}

/** The rule of an element scope at a ratio. */
export function elementRuleOf(
  scope: ParsedScope,
  ratio: number,
  keepLowRatio: number,
  seed: number,
): ElementRule {
  return scope.kind === 'n:m'
    ? { kind: 'n:m', ratio, n: scope.n, m: scope.m, keepLowRatio, seed }
    : { kind: 'unstructured', ratio, n: 0, m: 0, keepLowRatio, seed };
}

/** A zero-filled bitset for `size` elements. */
export const newBitset = (size: number): Uint8Array => new Uint8Array(Math.ceil(size / 8));

export const bitAt = (bits: Uint8Array, i: number): boolean => ((bits[i >> 3]! >> (i & 7)) & 1) === 1;

const setBit = (bits: Uint8Array, i: number): void => {
  bits[i >> 3]! |= 1 << (i & 7);
};

const clearBit = (bits: Uint8Array, i: number): void => {
  bits[i >> 3]! &= ~(1 << (i & 7));
};

/** Number of set bits. */
export function countBits(bits: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bits.length; i++) {
    let b = bits[i]!;
    while (b) {
      b &= b - 1;
      n++;
    }
  }
  return n;
}

/** Checks that an N:M rule can apply to a matrix with `cols` columns. */
export function checkNm(rule: Pick<ElementRule, 'n' | 'm'>, cols: number, param: string): void {
  if (cols % rule.m !== 0) {
    throw new InputError(
      `scope ${rule.n}:${rule.m} needs every pruned matrix's input width to be a multiple of ${rule.m}; ` +
        `'${param}' has ${cols} columns`,
      undefined,
      'scope',
    );
  }
}

/** |salience| of one row, NaN as -Infinity so it sorts (and is zeroed) first. */
function rowScores(salience: ArrayLike<number>, start: number, cols: number, out: Float32Array): void {
  for (let c = 0; c < cols; c++) {
    const v = Math.abs(salience[start + c]!);
    out[c] = Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v;
  }
}

/** Zeroes the k lowest of a row (stable: equal scores, lower column first). */
function zeroLowest(scores: Float32Array, k: number, base: number, bits: Uint8Array): void {
  if (k <= 0) return;
  const sorted = scores.slice().sort();
  const threshold = sorted[k - 1]!;
  // Everything strictly below the threshold goes, then the first equal ones by column.
  let ties = k;
  for (let c = 0; c < scores.length && sorted[c]! < threshold; c++) ties--;
  for (let c = 0; c < scores.length; c++) {
    const v = scores[c]!;
    if (v < threshold) setBit(bits, base + c);
    else if (v === threshold && ties > 0) {
      setBit(bits, base + c);
      ties--;
    }
  }
}

/** Zeroes the n lowest of every block of m columns of a row (same tie rule). */
function zeroNm(scores: Float32Array, n: number, m: number, base: number, bits: Uint8Array): void {
  const taken = new Uint8Array(m);
  for (let b = 0; b < scores.length; b += m) {
    taken.fill(0);
    for (let j = 0; j < n; j++) {
      let best = -1;
      for (let c = 0; c < m; c++) {
        if (!taken[c] && (best < 0 || scores[b + c]! < scores[b + best]!)) best = c;
      }
      taken[best] = 1;
      setBit(bits, base + b + best);
    }
  }
}

/** FNV-1a of a parameter name: the keepLowRatio stream depends on the name, not on any order. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Keeps floor(P * ratio) of the P zeroed weights, a uniform random subset (partial Fisher-Yates). */
function keepSome(bits: Uint8Array, size: number, ratio: number, seed: number, param: string): void {
  const zeroed = countBits(bits);
  const keep = Math.floor(zeroed * ratio + 1e-9);
  if (keep === 0) return;
  const idx = new Uint32Array(zeroed);
  let p = 0;
  for (let i = 0; i < size; i++) if (bitAt(bits, i)) idx[p++] = i;
  const rng = new Rng(counterKey(seed, 0x6b6c, nameHash(param)).k0);
  for (let i = 0; i < keep; i++) {
    const j = i + rng.int(zeroed - i);
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
    clearBit(bits, idx[i]!);
  }
}

/** The zeroed-weight bitset of a [rows, cols] matrix from its element salience. */
export function elementMask(
  salience: ArrayLike<number>,
  shape: readonly number[],
  rule: ElementRule,
  param: string,
): Uint8Array {
  if (shape.length !== 2) {
    throw new InputError(`element scopes prune matrices; '${param}' has shape [${shape.join(', ')}]`);
  }
  const [rows, cols] = shape as [number, number];
  if (salience.length !== rows * cols) {
    throw new InputError(`'${param}': ${salience.length} salience values for ${rows * cols} weights`);
  }
  if (rule.kind === 'n:m') checkNm(rule, cols, param);
  const bits = newBitset(rows * cols);
  const row = new Float32Array(cols);
  const k = Math.floor(cols * rule.ratio + 1e-9);
  for (let r = 0; r < rows; r++) {
    rowScores(salience, r * cols, cols, row);
    if (rule.kind === 'n:m') zeroNm(row, rule.n, rule.m, r * cols, bits);
    else zeroLowest(row, k, r * cols, bits);
  }
  if (rule.keepLowRatio > 0) keepSome(bits, rows * cols, rule.keepLowRatio, rule.seed, param);
  return bits;
}

/** A copy of a tensor with the masked elements set to zero (a lazy tensor stays lazy). */
export function applyMask(t: HostTensor, zeroed: Uint8Array): HostTensor {
  const zero = () => {
    const data = t.data.slice();
    for (let byte = 0; byte < zeroed.length; byte++) {
      const b = zeroed[byte]!;
      if (b === 0) continue;
      for (let j = 0; j < 8; j++) if ((b >> j) & 1) data[byte * 8 + j] = 0;
    }
    return data;
  };
  return isLazyTensor(t)
    ? lazyTensor(t.shape, t.dtype, zero)
    : { dtype: t.dtype, shape: t.shape, data: zero() };
}

/**
 * The model with each mask's weights zeroed: bitsets as they are, salience (plans written with
 * scores) turned into bitsets by the rule.
 */
export function maskModel(
  model: PrunableModel,
  masks: readonly MatrixMask[],
  rule: ElementRule,
): PrunableModel {
  if (!masks.length) return model;
  const params = new Map(model.params);
  for (const m of masks) {
    const zeroed = m.zeroed ?? elementMask(m.salience!, m.shape, rule, m.param);
    params.set(m.param, applyMask(params.get(m.param)!, zeroed));
  }
  return model.withParams(params);
}
