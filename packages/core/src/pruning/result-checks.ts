/**
 * What a criterion hands over is checked before it decides anything: NaN / Infinity scores, strings
 * or arrays of the wrong length would otherwise silently decide what is pruned. Errors name the
 * criterion, the parameter or group, and the first bad index.
 */
import { InputError } from '../errors.js';
import type { PrunableGroup } from './groups.js';
import { firstNonFinite } from './non-finite.js';

/** `values` must be a Float32Array / Float64Array / array of finite numbers. */
export function checkNumbers(criterion: string, what: string, values: unknown): void {
  const isArray = values instanceof Float32Array || values instanceof Float64Array || Array.isArray(values);
  if (!isArray) {
    const kind =
      values === null ? 'null' : ArrayBuffer.isView(values) ? values.constructor.name : typeof values;
    throw new InputError(
      `criterion '${criterion}' returned ${what} as ${kind}, not a Float32Array / Float64Array`,
      undefined,
      'salience',
    );
  }
  const a = values as ArrayLike<unknown>;
  // Typed arrays hold only numbers: one fast scan says whether (and where) one is NaN or infinite
  // (every member parameter's salience passes here).
  const first = Array.isArray(values) ? 0 : firstNonFinite(values as Float32Array | Float64Array);
  if (first < 0) return;
  for (let i = first; i < a.length; i++) {
    const v = a[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new InputError(
        `criterion '${criterion}' returned ${what} with ${typeof v === 'number' ? v : `a ${v === null ? 'null' : typeof v}`} at index ${i} (scores must be finite numbers)`,
        undefined,
        'salience',
      );
    }
  }
}

/** The result of score() must be an object; its salience, when present, a Map. */
export function checkResultShape(criterion: string, result: unknown): void {
  if (result !== undefined && (result === null || typeof result !== 'object')) {
    throw new InputError(
      `criterion '${criterion}' returned ${result === null ? 'null' : typeof result} from score(), not { salience } or { unitScores }`,
    );
  }
  const salience = (result as { salience?: unknown } | undefined)?.salience;
  if (salience !== undefined && !(salience instanceof Map)) {
    throw new InputError(
      `criterion '${criterion}' returned salience that is not a Map of parameter name -> values`,
    );
  }
}

/** Unit scores: one finite array per group, each as long as the group has units. */
export function checkUnitScores(criterion: string, groups: readonly PrunableGroup[], scores: unknown): void {
  if (!Array.isArray(scores) || scores.length !== groups.length) {
    throw new InputError(
      `criterion '${criterion}' returned ${Array.isArray(scores) ? scores.length : 'no array of'} unit scores; the model has ${groups.length} groups`,
    );
  }
  scores.forEach((s, i) => {
    const g = groups[i]!;
    checkNumbers(criterion, `unit scores for group ${g.id}`, s);
    if ((s as ArrayLike<number>).length !== g.units) {
      throw new InputError(
        `criterion '${criterion}' returned ${(s as ArrayLike<number>).length} unit scores for group ${g.id}, which has ${g.units} units`,
      );
    }
  });
}
