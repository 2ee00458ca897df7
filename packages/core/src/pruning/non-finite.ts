/**
 * Scores must never become a plan once they are NaN or infinite (a half-precision overflow, a
 * diverging criterion): every gradient, loss and salience a criterion run produces is checked.
 */
import { InputError } from '../errors.js';
import type { ComputeMode } from '../precision.js';

/** Index of the first NaN or infinite value, or -1. */
export function firstNonFinite(values: ArrayLike<number>): number {
  // Every gradient is checked, so the common case is one branch-free pass: v - v is 0 for a finite
  // v and NaN otherwise. Only a NaN sum pays for the search of the index.
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    sum += v - v;
  }
  if (sum === 0) return -1;
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
