/**
 * Numeric helpers of the conformance suite: seeded random tensors, element-wise and norm-wise
 * comparison, and central finite differences evaluated in float64 on the reference interpreter.
 * Imports core only through its public entry, so a backend package and this module share one copy.
 */
import {
  castHost,
  type DType,
  evaluateReference,
  type HostTensor,
  isFloat,
  ops,
  type Rng,
  sizeOf,
  type Tensor,
  tensor,
  toFloat32Data,
  trace,
} from '@moreau/core';

export interface RandomTensorOptions {
  /** Lower bound (inclusive). Default -1 for floats, -10 for int32. */
  readonly lo?: number;
  /** Upper bound (exclusive). Default 1 for floats, 10 for int32. */
  readonly hi?: number;
}

/**
 * A tensor of seeded random values: floats uniform in [lo, hi) (float16 / bfloat16 drawn in float32
 * and rounded to nearest even), int32 uniform integers in [lo, hi), bool fair coin flips.
 */
export function randomTensor(
  rng: Rng,
  shape: readonly number[],
  dtype: DType = 'float32',
  { lo, hi }: RandomTensorOptions = {},
): HostTensor {
  const n = sizeOf(shape);
  switch (dtype) {
    case 'int32': {
      const a = Math.ceil(lo ?? -10);
      const b = Math.ceil(hi ?? 10);
      if (!(b > a)) throw new RangeError(`randomTensor: empty int32 range [${a}, ${b})`);
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) data[i] = a + rng.int(b - a);
      return tensor(data, shape, 'int32');
    }
    case 'bool': {
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = rng.uniform() < 0.5 ? 1 : 0;
      return tensor(data, shape, 'bool');
    }
    default: {
      const f = tensor(rng.uniformArray(n, lo ?? -1, hi ?? 1), shape, 'float32');
      return castHost(f, dtype);
    }
  }
}

export interface Tolerance {
  /** Relative tolerance (default 1e-5). */
  readonly rtol?: number;
  /** Absolute tolerance (default 1e-6). */
  readonly atol?: number;
}

const fmtShape = (s: readonly number[]) => `[${s.join(',')}]`;

function unravel(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let ax = shape.length - 1; ax >= 0; ax--) {
    const d = shape[ax]!;
    idx.unshift(d ? i % d : 0);
    i = d ? Math.floor(i / d) : 0;
  }
  return fmtShape(idx);
}

/**
 * Throws unless `actual` has the dtype and shape of `expected` and every element is close:
 * |a - e| <= atol + rtol * |e| for floats (NaN only where expected is NaN, infinities equal),
 * exact equality for int32 and bool. The message names `what`, counts the mismatches and shows
 * the worst and first few.
 */
export function assertClose(
  actual: HostTensor,
  expected: HostTensor,
  { rtol = 1e-5, atol = 1e-6 }: Tolerance = {},
  what = 'tensor',
): void {
  if (actual.dtype !== expected.dtype) {
    throw new Error(`${what}: dtype ${actual.dtype}, expected ${expected.dtype}`);
  }
  if (actual.shape.length !== expected.shape.length || actual.shape.some((d, i) => d !== expected.shape[i])) {
    throw new Error(`${what}: shape ${fmtShape(actual.shape)}, expected ${fmtShape(expected.shape)}`);
  }
  const exact = !isFloat(expected.dtype);
  const a = exact ? actual.data : toFloat32Data(actual);
  const e = exact ? expected.data : toFloat32Data(expected);
  if (a.length !== e.length) throw new Error(`${what}: ${a.length} elements, expected ${e.length}`);
  const bad: string[] = [];
  let count = 0;
  let worst = -1;
  let worstExcess = -1;
  for (let i = 0; i < e.length; i++) {
    const x = a[i]!;
    const y = e[i]!;
    let ok: boolean;
    let excess = 0;
    if (exact) ok = x === y;
    else if (Number.isNaN(y) || Number.isNaN(x)) ok = Number.isNaN(x) && Number.isNaN(y);
    else if (!Number.isFinite(y) || !Number.isFinite(x)) ok = x === y;
    else {
      const err = Math.abs(x - y);
      const allowed = atol + rtol * Math.abs(y);
      ok = err <= allowed;
      excess = err / (allowed || Number.MIN_VALUE);
    }
    if (!ok) {
      count++;
      if (!Number.isFinite(excess) || excess === 0) excess = Number.POSITIVE_INFINITY;
      if (excess > worstExcess) {
        worstExcess = excess;
        worst = i;
      }
      if (bad.length < 5) bad.push(`${unravel(i, expected.shape)}: got ${x}, expected ${y}`);
    }
  }
  if (count > 0) {
    const rule = exact ? 'exact equality' : `|a - e| <= ${atol} + ${rtol} * |e|`;
    throw new Error(
      `${what}: ${count} of ${e.length} elements fail ${rule}; worst at ${unravel(worst, expected.shape)}: ` +
        `got ${a[worst]}, expected ${e[worst]}; first: ${bad.join('; ')}`,
    );
  }
}

/** Norm-wise relative error ||a - b|| / max(||b||, tiny), in float64. */
export function relativeError(actual: HostTensor, expected: HostTensor): number {
  const a = toFloat32Data(actual);
  const b = toFloat32Data(expected);
  if (a.length !== b.length) throw new Error(`relativeError: ${a.length} vs ${b.length} elements`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

function withElement(t: HostTensor, i: number, delta: number): HostTensor {
  const f = Float32Array.from(toFloat32Data(t));
  f[i] = f[i]! + delta;
  return castHost({ dtype: 'float32', shape: t.shape, data: f }, t.dtype);
}

/**
 * Central finite-difference gradients of the scalar `fn(...args)` with respect to `args[k]` for
 * each k in `argnums`, evaluated on the float64 reference interpreter. The difference
 * fn(x + h e_i) - fn(x - h e_i) is computed inside one graph in float64, and divided by the step
 * actually taken after rounding x +- h to the input's dtype, so the only error left is the
 * O(h^2) truncation term. Returns float32 tensors shaped like the arguments.
 */
export function finiteDifferenceGradients(
  fn: (...args: Tensor[]) => Tensor,
  args: readonly HostTensor[],
  argnums: readonly number[],
  h = 1e-3,
): HostTensor[] {
  const { graph } = trace(
    (plus: Tensor[], minus: Tensor[]) => ops.sub(fn(...plus), fn(...minus)),
    [args, args],
  );
  return argnums.map((k) => {
    const x = args[k]!;
    if (!isFloat(x.dtype))
      throw new Error(`finiteDifferenceGradients: argument ${k} is ${x.dtype}, not a float`);
    const n = sizeOf(x.shape);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const plus = withElement(x, i, h);
      const minus = withElement(x, i, -h);
      const step = toFloat32Data(plus)[i]! - toFloat32Data(minus)[i]!;
      const plusArgs = args.map((a, j) => (j === k ? plus : a));
      const minusArgs = args.map((a, j) => (j === k ? minus : a));
      const [diff] = evaluateReference(graph, [...plusArgs, ...minusArgs]);
      out[i] = (diff!.data as Float32Array)[0]! / step;
    }
    return tensor(out, x.shape, 'float32');
  });
}
