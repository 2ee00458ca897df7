/** Field checks shared by the plan readers (version 2 and the legacy version 1): errors name file and field. */
import { InputError } from '../errors.js';
import { COMPUTE_DTYPES, type ComputeMode } from '../precision.js';
import { REDUCTIONS, type Reduction } from './scoring.js';

export type Json = Record<string, any>;

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function fail(file: string, field: string, expected: string): never {
  throw new InputError(`${file}: field '${field}' ${expected}`, file, field);
}

/** A half-open layer range [start, end) inside [0, numLayers]. */
export function checkRange(v: unknown, file: string, field: string, numLayers: number): [number, number] {
  if (
    !Array.isArray(v) ||
    v.length !== 2 ||
    !v.every(Number.isInteger) ||
    v[0] < 0 ||
    v[0] > v[1] ||
    v[1] > numLayers
  ) {
    fail(file, field, `must be [start, end) with 0 <= start <= end <= ${numLayers}`);
  }
  return [v[0], v[1]];
}

export function checkCriterion(c: unknown, file: string): { name: string; options: Json } {
  if (!isObject(c) || typeof c.name !== 'string' || !isObject(c.options))
    fail(file, 'criterion', 'must be {name, options}');
  return { name: c.name, options: c.options };
}

export function checkReduction(v: unknown, file: string): Reduction {
  if (!REDUCTIONS.includes(v as Reduction))
    fail(file, 'reduction', `must be one of ${REDUCTIONS.join(', ')}`);
  return v as Reduction;
}

export function checkRatio(v: unknown, file: string, field = 'ratio'): number {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) fail(file, field, 'must be a number in [0, 1)');
  return v;
}

export function checkInteger(v: unknown, file: string, field: string, min?: number): number {
  if (!Number.isInteger(v) || (min !== undefined && (v as number) < min))
    fail(
      file,
      field,
      min === undefined
        ? 'must be an integer'
        : min === 1
          ? 'must be a positive integer'
          : `must be an integer >= ${min}`,
    );
  return v as number;
}

/** Kept units: ascending unique integers in [0, total); empty only where `allowEmpty`. */
export function checkKept(
  v: unknown,
  total: number,
  file: string,
  field: string,
  allowEmpty = false,
): number[] {
  if (!Array.isArray(v) || (!allowEmpty && v.length === 0))
    fail(file, field, allowEmpty ? 'must be an array' : 'must be a non-empty array');
  v.forEach((u, j) => {
    if (!Number.isInteger(u) || u < 0 || u >= total || (j > 0 && u <= v[j - 1]!)) {
      fail(file, field, `must hold ascending unique integers in [0, ${total})`);
    }
  });
  return v as number[];
}

/** Unit scores: `total` numbers, null for units cut in an earlier step. */
export function checkScores(v: unknown, total: number, file: string, field: string): (number | null)[] {
  if (!Array.isArray(v) || v.length !== total || !v.every((x) => x === null || typeof x === 'number'))
    fail(file, field, `must be ${total} numbers (null for units cut in an earlier step)`);
  return v;
}

/** The optional `compute` record: {computeDtype, precision}. */
export function checkCompute(v: unknown, file: string): ComputeMode | undefined {
  if (v === undefined) return undefined;
  if (
    !isObject(v) ||
    !COMPUTE_DTYPES.includes(v.computeDtype) ||
    (v.precision !== 'native' && v.precision !== 'emulated')
  )
    fail(
      file,
      'compute',
      `must be {computeDtype: ${COMPUTE_DTYPES.join(' | ')}, precision: native | emulated}`,
    );
  return { computeDtype: v.computeDtype, precision: v.precision };
}
