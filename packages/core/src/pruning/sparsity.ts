/**
 * Sparsity of a model's weights: zeros per matrix and which N:M patterns every row satisfies. What
 * `moreau info` shows for any model and what `sparsity.json` records next to an unstructured or
 * N:M pruned model; parameter counts of such models count non-zeros.
 */
import type { HostTensor } from '../dtype.js';
import { sizeOf } from '../dtype.js';

/** Zero test in the storage dtype: float16 / bfloat16 bit patterns are zero for +0 and -0. */
function isZeroAt(t: HostTensor): (i: number) => boolean {
  const d = t.data;
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') return (i) => (d[i]! & 0x7fff) === 0;
  return (i) => d[i] === 0;
}

/** Number of elements that are not zero. */
export function countNonZero(params: ReadonlyMap<string, HostTensor>): number {
  let n = 0;
  for (const t of params.values()) {
    const zero = isZeroAt(t);
    const size = sizeOf(t.shape);
    for (let i = 0; i < size; i++) if (!zero(i)) n++;
  }
  return n;
}

export interface MatrixSparsity {
  readonly param: string;
  readonly shape: readonly number[];
  readonly zeros: number;
  /** zeros / elements. */
  readonly fraction: number;
  /**
   * Per block width M (the keys): the largest N such that every block of M consecutive weights of
   * every row holds at least N zeros, i.e. the matrix is N:M sparse. 0 when the row width is not a
   * multiple of M.
   */
  readonly nm: Readonly<Record<number, number>>;
}

export interface SparsityReport {
  /** Elements of every parameter. */
  readonly params: number;
  readonly nonzero: number;
  /** Every 2-D parameter, in the model's order. */
  readonly matrices: readonly MatrixSparsity[];
}

/** Block widths checked for N:M patterns unless others are asked for. */
export const NM_WIDTHS: readonly number[] = [4, 8];

function matrixSparsity(param: string, t: HostTensor, widths: readonly number[]): MatrixSparsity {
  const [rows, cols] = t.shape as [number, number];
  const zero = isZeroAt(t);
  let zeros = 0;
  const minPerBlock = widths.map((m) => (cols % m === 0 ? m : 0));
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) if (zero(base + c)) zeros++;
    widths.forEach((m, k) => {
      if (minPerBlock[k] === 0) return;
      for (let b = 0; b < cols; b += m) {
        let z = 0;
        for (let c = b; c < b + m; c++) if (zero(base + c)) z++;
        if (z < minPerBlock[k]!) minPerBlock[k] = z;
      }
    });
  }
  const size = rows * cols;
  return {
    param,
    shape: t.shape,
    zeros,
    fraction: size ? zeros / size : 0,
    nm: Object.fromEntries(widths.map((m, k) => [m, minPerBlock[k]!])),
  };
}

/** Zeros of every parameter and, per matrix, its zero fraction and N:M patterns. */
export function sparsityReport(
  params: ReadonlyMap<string, HostTensor>,
  widths: readonly number[] = NM_WIDTHS,
): SparsityReport {
  let total = 0;
  let nonzero = 0;
  const matrices: MatrixSparsity[] = [];
  for (const [name, t] of params) {
    const size = sizeOf(t.shape);
    total += size;
    if (t.shape.length === 2) {
      const m = matrixSparsity(name, t, widths);
      matrices.push(m);
      nonzero += size - m.zeros;
    } else nonzero += countNonZero(new Map([[name, t]]));
  }
  return { params: total, nonzero, matrices };
}
