/**
 * The conformance cases: forward cases for every primitive (seeded random inputs plus hand-picked
 * edge values) and gradient cases for every differentiable primitive, with inputs drawn from
 * domains where the function is smooth (no kinks or ties within the finite-difference step).
 */
import { type HostTensor, ops, type Primitive, type Rng, sizeOf, type Tensor, tensor } from '@moreau/core';
import { randomTensor, type Tolerance } from './numerics.js';

export interface OpCase {
  /** The primitive under test. */
  readonly prim: string;
  /** Test title, `<prim>: <what>`; also a key for `skip`. */
  readonly title: string;
  readonly make: (rng: Rng) => HostTensor[];
  readonly fn: (...xs: Tensor[]) => Tensor;
  /** Tolerance override (e.g. exact for casts). */
  readonly tol?: Tolerance;
}

export interface GradCase extends OpCase {
  /** Arguments to differentiate (default: every float argument). */
  readonly argnums?: readonly number[];
  /** Finite-difference step (default 1e-3). */
  readonly h?: number;
  /** Why there is no finite-difference check (the gradient is still compared with the reference). */
  readonly noFd?: string;
}

type Gen = (rng: Rng) => HostTensor;

/** The primitive named `prim` applied to the arguments (for cases generated from a table). */
const emit =
  (prim: string) =>
  (...xs: Tensor[]): Tensor =>
    xs[0]!.builder.emit(prim as Primitive, xs);

const f32 =
  (values: readonly number[], shape: readonly number[]): Gen =>
  () =>
    tensor(values, shape, 'float32');
const i32 =
  (values: readonly number[], shape: readonly number[]): Gen =>
  () =>
    tensor(values, shape, 'int32');
const b8 =
  (values: readonly number[], shape: readonly number[]): Gen =>
  () =>
    tensor(values, shape, 'bool');
const f16bits =
  (bits: readonly number[], shape: readonly number[]): Gen =>
  () =>
    tensor(Uint16Array.from(bits), shape, 'float16');
const uni =
  (shape: readonly number[], lo = -1, hi = 1): Gen =>
  (rng) =>
    randomTensor(rng, shape, 'float32', { lo, hi });
const ints =
  (shape: readonly number[], lo = -50, hi = 50): Gen =>
  (rng) =>
    randomTensor(rng, shape, 'int32', { lo, hi });
const bools =
  (shape: readonly number[]): Gen =>
  (rng) =>
    randomTensor(rng, shape, 'bool');
/** Magnitudes in [lo, hi) with random signs: keeps away from zero. */
const away =
  (shape: readonly number[], lo = 0.25, hi = 2): Gen =>
  (rng) => {
    const t = randomTensor(rng, shape, 'float32', { lo, hi });
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) if (rng.uniform() < 0.5) d[i] = -d[i]!;
    return t;
  };
/** Distinct values on a grid of step 0.1 (shifted by `offset`), shuffled: no ties, no near-ties. */
const distinct =
  (shape: readonly number[], offset = 0): Gen =>
  (rng) => {
    const n = sizeOf(shape);
    const p = rng.permutation(n);
    return tensor(
      p.map((v) => (v - n / 2) * 0.1 + offset),
      shape,
    );
  };
/** Values drawn from {-1, -0.5, 0, 0.5, 1}: frequent ties for comparisons. */
const grid =
  (shape: readonly number[]): Gen =>
  (rng) => {
    const n = sizeOf(shape);
    return tensor(
      Array.from({ length: n }, () => (rng.int(5) - 2) / 2),
      shape,
    );
  };
/** Sets some elements to fixed values (edge cases mixed into random data). */
const withValues =
  (gen: Gen, values: readonly number[]): Gen =>
  (rng) => {
    const t = gen(rng);
    const d = t.data as Float32Array;
    values.forEach((v, i) => {
      d[i] = v;
    });
    return t;
  };

const gens =
  (...g: Gen[]) =>
  (rng: Rng) =>
    g.map((f) => f(rng));
const EXACT: Tolerance = { rtol: 0, atol: 0 };

// ----- forward cases --------------------------------------------------------------------------

const cases: OpCase[] = [];
const add = (
  prim: string,
  what: string,
  make: (rng: Rng) => HostTensor[],
  fn: OpCase['fn'],
  tol?: Tolerance,
) => cases.push({ prim, title: `${prim}: ${what}`, make, fn, ...(tol ? { tol } : {}) });

const UNARY: Record<string, { gen: Gen; extra?: [string, Gen] }> = {
  neg: { gen: uni([3, 4], -2, 2) },
  exp: {
    gen: uni([3, 4], -5, 5),
    extra: ['overflow to inf, underflow to 0', f32([100, -120, 0, 88, -1e30, 1e30], [6])],
  },
  log: {
    gen: withValues(uni([3, 4], 0.01, 4), [0, -1, -0.5]),
    extra: ['negative inputs give NaN, 0 gives -inf', f32([-2, -1e-3, 0, 1, 1e-30, 1e30], [6])],
  },
  sqrt: {
    gen: withValues(uni([3, 4], 0, 4), [0, -1, -0.25]),
    extra: ['negative inputs give NaN', f32([-4, -1e-3, 0, 1, 1e-30, 1e30], [6])],
  },
  abs: { gen: withValues(uni([3, 4], -2, 2), [0]) },
  sign: { gen: withValues(uni([3, 4], -2, 2), [0, -1, 1]) },
  sin: { gen: uni([3, 4], -4, 4) },
  cos: { gen: uni([3, 4], -4, 4) },
  reciprocal: { gen: away([3, 4], 0.1, 4) },
  sigmoid: { gen: uni([3, 4], -8, 8), extra: ['saturation', f32([-100, -20, 0, 20, 100], [5])] },
  tanh: { gen: uni([3, 4], -3, 3), extra: ['saturation', f32([-100, -20, 0, 20, 100], [5])] },
};
for (const [prim, { gen, extra }] of Object.entries(UNARY)) {
  const fn = emit(prim);
  add(prim, 'random [3,4]', gens(gen), fn);
  add(prim, 'scalar', (rng) => [tensor(gen(rng).data.slice(0, 1), [])], fn);
  add(prim, 'zero-size [0,3]', gens(uni([0, 3])), fn);
  if (extra) add(prim, extra[0], gens(extra[1]), fn);
}
add('stopGradient', 'identity forward', gens(uni([3, 4])), ops.stopGradient);
add('stopGradient', 'int32 identity', gens(ints([5])), ops.stopGradient);

const BINARY: Record<string, { a: (s: number[]) => Gen; b: (s: number[]) => Gen; int: boolean }> = {
  add: { a: (s) => uni(s, -2, 2), b: (s) => uni(s, -2, 2), int: true },
  sub: { a: (s) => uni(s, -2, 2), b: (s) => uni(s, -2, 2), int: true },
  mul: { a: (s) => uni(s, -2, 2), b: (s) => uni(s, -2, 2), int: true },
  div: { a: (s) => uni(s, -2, 2), b: (s) => away(s, 0.25, 2), int: false },
  maximum: { a: (s) => uni(s, -2, 2), b: (s) => uni(s, -2, 2), int: true },
  minimum: { a: (s) => uni(s, -2, 2), b: (s) => uni(s, -2, 2), int: true },
  pow: { a: (s) => uni(s, 0.25, 3), b: (s) => uni(s, -2, 2), int: false },
};
const BINARY_SHAPES: [string, number[], number[]][] = [
  ['same shape [3,4]', [3, 4], [3, 4]],
  ['broadcast [3,1] x [1,4]', [3, 1], [1, 4]],
  ['broadcast rank [2,3,4] x [4]', [2, 3, 4], [4]],
  ['scalar x [2,3]', [], [2, 3]],
  ['size-1 [1] x [1]', [1], [1]],
  ['zero-size [0,4] x [1,4]', [0, 4], [1, 4]],
];
for (const [prim, { a, b, int }] of Object.entries(BINARY)) {
  const fn = emit(prim);
  for (const [what, sa, sb] of BINARY_SHAPES) add(prim, what, gens(a(sa), b(sb)), fn);
  if (int) add(prim, 'int32 broadcast [3,4] x [4]', gens(ints([3, 4]), ints([4])), fn);
}
add('div', 'by zero gives +-inf and NaN', gens(f32([1, -1, 0, 2], [4]), f32([0, 0, 0, -0], [4])), (x, y) =>
  ops.div(x, y),
);
add(
  'pow',
  'negative bases with integer exponents, 0^-1, fractional power of a negative',
  gens(f32([-1.5, 2, -2, 0, 0.5, -3, 0], [7]), f32([2, 3, 0.5, -1, 0, 3, 2], [7])),
  (x, y) => ops.pow(x, y),
);

for (const prim of ['less', 'greater', 'equal']) {
  const fn = emit(prim);
  add(prim, 'float32 broadcast [3,4] x [4] with ties', gens(grid([3, 4]), grid([4])), fn);
  add(prim, 'int32 [2,3] x scalar', gens(ints([2, 3], -3, 3), i32([0], [])), fn);
  add(
    prim,
    'NaN compares false',
    gens(f32([Number.NaN, 1, Number.NaN], [3]), f32([1, Number.NaN, Number.NaN], [3])),
    fn,
  );
  add(prim, 'zero-size [0] x [1]', gens(uni([0]), uni([1])), fn);
}
add('equal', 'bool inputs', gens(b8([0, 0, 1, 1], [4]), b8([0, 1, 0, 1], [4])), (x, y) => ops.equal(x, y));

const whereFn = (c: Tensor, a: Tensor, b: Tensor) => ops.where(c, a, b);
add('where', 'broadcast cond [3,1], a [1,4], b scalar', gens(bools([3, 1]), uni([1, 4]), uni([])), whereFn);
add('where', 'same shape [2,3]', gens(bools([2, 3]), uni([2, 3]), uni([2, 3])), whereFn);
add('where', 'scalar cond', gens(b8([1], []), uni([2, 2]), uni([2, 2])), whereFn);
add('where', 'int32 branches', gens(bools([2, 3]), ints([2, 3]), ints([3])), whereFn);
add('where', 'bool branches', gens(bools([4]), bools([4]), bools([4])), whereFn);
add('where', 'zero-size', gens(bools([0, 2]), uni([1, 2]), uni([0, 1])), whereFn);

const mm = (a: Tensor, b: Tensor) => ops.matmul(a, b);
add('matmul', '[3,5] x [5,4]', gens(uni([3, 5]), uni([5, 4])), mm);
add('matmul', 'batched [2,3,5] x [2,5,4]', gens(uni([2, 3, 5]), uni([2, 5, 4])), mm);
add('matmul', 'broadcast batch [2,1,3,5] x [1,4,5,2]', gens(uni([2, 1, 3, 5]), uni([1, 4, 5, 2])), mm);
add('matmul', 'size-1 [1,1] x [1,1]', gens(uni([1, 1]), uni([1, 1])), mm);
add('matmul', 'vector-like [1,7] x [7,1]', gens(uni([1, 7]), uni([7, 1])), mm);
add('matmul', 'zero inner dim [3,0] x [0,4] gives zeros', gens(uni([3, 0]), uni([0, 4])), mm);
add('matmul', 'zero rows [0,5] x [5,4]', gens(uni([0, 5]), uni([5, 4])), mm);
add('matmul', 'larger [16,48] x [48,24]', gens(uni([16, 48]), uni([48, 24])), mm, { rtol: 1e-4, atol: 1e-5 });

for (const prim of ['sum', 'max'] as const) {
  const red =
    (axes: number[] | undefined, keep = false) =>
    (x: Tensor) =>
      ops[prim](x, axes, keep);
  add(prim, 'all axes of [3,4]', gens(uni([3, 4])), red(undefined));
  add(prim, 'axis 1 of [2,3,4]', gens(uni([2, 3, 4])), red([1]));
  add(prim, 'axes [0,2] keepDims of [2,3,4]', gens(uni([2, 3, 4])), red([0, 2], true));
  add(prim, 'last axis keepDims of [3,5]', gens(uni([3, 5])), red([1], true));
  add(prim, 'size-1 axis of [3,1]', gens(uni([3, 1])), red([1]));
  add(prim, 'scalar input', gens(uni([])), red(undefined));
  add(prim, 'no axes is the identity on [2,3]', gens(uni([2, 3])), red([]));
  add(prim, 'over a non-empty axis of [0,3]', gens(uni([0, 3])), red([1]));
}
add('sum', 'empty axis gives zeros', gens(uni([3, 0])), (x) => ops.sum(x, [1]));
add('max', 'empty axis gives -inf', gens(uni([3, 0])), (x) => ops.max(x, [1]));

const rs = (shape: number[]) => (x: Tensor) => x.builder.emit('reshape', [x], { shape });
add('reshape', '[2,3,4] -> [6,4]', gens(uni([2, 3, 4])), rs([6, 4]));
add('reshape', '[2,3,4] -> [24]', gens(uni([2, 3, 4])), rs([24]));
add('reshape', '[1,1] -> scalar', gens(uni([1, 1])), rs([]));
add('reshape', 'scalar -> [1,1,1]', gens(uni([])), rs([1, 1, 1]));
add('reshape', 'zero-size [0,3] -> [3,0]', gens(uni([0, 3])), rs([3, 0]));
add('reshape', 'int32', gens(ints([2, 6])), rs([3, 4]));
add('reshape', 'bool', gens(bools([2, 6])), rs([4, 3]));

const tp = (perm: number[]) => (x: Tensor) => x.builder.emit('transpose', [x], { perm });
add('transpose', '2-D', gens(uni([3, 5])), tp([1, 0]));
add('transpose', '[2,3,4] perm [2,0,1]', gens(uni([2, 3, 4])), tp([2, 0, 1]));
add('transpose', '[2,3,4,2] perm [0,2,1,3]', gens(uni([2, 3, 4, 2])), tp([0, 2, 1, 3]));
add('transpose', 'size-1 axes [1,3,1,2] perm [3,2,1,0]', gens(uni([1, 3, 1, 2])), tp([3, 2, 1, 0]));
add('transpose', 'zero-size [0,2,3] perm [2,0,1]', gens(uni([0, 2, 3])), tp([2, 0, 1]));
add('transpose', 'int32', gens(ints([3, 4])), tp([1, 0]));
add('transpose', 'bool', gens(bools([2, 3, 2])), tp([1, 2, 0]));

const sl = (starts: number[], ends: number[]) => (x: Tensor) =>
  x.builder.emit('slice', [x], { starts, ends });
add('slice', '[5,6] [1:4, 2:6]', gens(uni([5, 6])), sl([1, 2], [4, 6]));
add('slice', 'rank 3 to a size-1 axis', gens(uni([3, 4, 5])), sl([0, 2, 1], [3, 3, 5]));
add('slice', 'empty range', gens(uni([4, 3])), sl([2, 0], [2, 3]));
add('slice', 'whole tensor', gens(uni([2, 3])), sl([0, 0], [2, 3]));
add('slice', 'int32', gens(ints([4, 5])), sl([1, 1], [3, 5]));
add('slice', 'bool', gens(bools([6])), sl([2], [5]));

const pd = (before: number[], after: number[]) => (x: Tensor) =>
  x.builder.emit('pad', [x], { before, after });
add('pad', '[3,4] before [1,0] after [2,3]', gens(uni([3, 4])), pd([1, 0], [2, 3]));
add('pad', 'rank 1', gens(uni([5])), pd([2], [1]));
add('pad', 'rank 3 on one axis', gens(uni([2, 3, 2])), pd([0, 0, 1], [0, 0, 3]));
add('pad', 'zero-size input [0,2]', gens(uni([0, 2])), pd([1, 0], [1, 1]));
add('pad', 'int32', gens(ints([2, 3])), pd([1, 1], [0, 2]));
add('pad', 'bool', gens(bools([3])), pd([1], [2]));

add('concat', 'axis 0 of two', gens(uni([2, 3]), uni([4, 3])), (a, b) => ops.concat([a, b], 0));
add('concat', 'axis 1 of three', gens(uni([2, 1]), uni([2, 3]), uni([2, 2])), (a, b, c) =>
  ops.concat([a, b, c], 1),
);
add('concat', 'last axis of rank 3', gens(uni([2, 3, 2]), uni([2, 3, 2])), (a, b) => ops.concat([a, b], 2));
add('concat', 'with a zero-size piece', gens(uni([2, 3]), uni([0, 3]), uni([1, 3])), (a, b, c) =>
  ops.concat([a, b, c], 0),
);
add('concat', 'int32', gens(ints([3]), ints([2])), (a, b) => ops.concat([a, b], 0));
add('concat', 'bool', gens(bools([2, 2]), bools([2, 1])), (a, b) => ops.concat([a, b], 1));

const bt = (shape: number[]) => (x: Tensor) => x.builder.emit('broadcastTo', [x], { shape });
add('broadcastTo', '[3,1] -> [2,3,4]', gens(uni([3, 1])), bt([2, 3, 4]));
add('broadcastTo', 'scalar -> [2,2]', gens(uni([])), bt([2, 2]));
add('broadcastTo', '[4] -> [3,4]', gens(uni([4])), bt([3, 4]));
add('broadcastTo', '[1] -> [0]', gens(uni([1])), bt([0]));
add('broadcastTo', 'int32', gens(ints([1, 3])), bt([2, 3]));
add('broadcastTo', 'bool', gens(bools([2, 1])), bt([2, 3]));

const ga = (x: Tensor, i: Tensor) => ops.gather(x, i);
add('gather', 'rows with repeats [5,3] at [4]', gens(uni([5, 3]), i32([4, 0, 4, 2], [4])), ga);
add('gather', '2-D indices', gens(uni([6, 2]), i32([1, 5, 0, 3, 3, 2], [2, 3])), ga);
add('gather', 'scalar index', gens(uni([4, 3]), i32([2], [])), ga);
add('gather', 'rank-1 source', gens(uni([5]), i32([3, 3, 0], [3])), ga);
add('gather', 'rank-3 source', gens(uni([4, 2, 3]), i32([3, 1], [2])), ga);
add('gather', 'int32 source', gens(ints([5, 2]), i32([1, 4, 1], [3])), ga);
add('gather', 'empty indices', gens(uni([5, 3]), i32([], [0])), ga);

const sa = (size: number) => (u: Tensor, i: Tensor) => ops.scatterAdd(u, i, size);
add('scatterAdd', 'duplicate indices', gens(uni([4, 3]), i32([1, 3, 1, 1], [4])), sa(5));
add('scatterAdd', '2-D indices', gens(uni([2, 2, 3]), i32([0, 2, 2, 4], [2, 2])), sa(5));
add('scatterAdd', 'rank-1 updates', gens(uni([5]), i32([0, 0, 2, 1, 0], [5])), sa(3));
add('scatterAdd', 'empty indices give zeros', gens(uni([0, 3]), i32([], [0])), sa(4));

const ca = (to: 'float32' | 'float16' | 'int32' | 'bool') => (x: Tensor) => ops.cast(x, to);
add(
  'cast',
  'float32 -> int32 truncates toward zero',
  gens(f32([-2.7, -0.5, -0, 0.5, 2.7, 100.9, -100.9, 7], [8])),
  ca('int32'),
  EXACT,
);
add('cast', 'float32 -> bool', gens(f32([0, -0, 1, -2.5, 1e-30, 0], [6])), ca('bool'), EXACT);
add('cast', 'int32 -> float32', gens(ints([3, 4], -1000, 1000)), ca('float32'), EXACT);
add('cast', 'int32 -> bool', gens(i32([0, 1, -1, 7, 0], [5])), ca('bool'), EXACT);
add('cast', 'bool -> float32', gens(bools([2, 3])), ca('float32'), EXACT);
add('cast', 'bool -> int32', gens(bools([2, 3])), ca('int32'), EXACT);
// float16 edge patterns: max finite 65504, min subnormal, largest subnormal, -0, 1, -inf, +inf, NaN.
const F16_EDGES = [0x7bff, 0x0001, 0x03ff, 0x8000, 0x3c00, 0xfc00, 0x7c00, 0x7e00, 0xc500, 0x3555];
add(
  'cast',
  'float16 input -> float32 (edge bit patterns)',
  gens(f16bits(F16_EDGES, [F16_EDGES.length])),
  ca('float32'),
  EXACT,
);
add(
  'cast',
  'float16 input -> float32 (random)',
  (rng) => [randomTensor(rng, [3, 4], 'float16', { lo: -8, hi: 8 })],
  ca('float32'),
  EXACT,
);
// Values around float16 limits: rounding to nearest even, overflow to inf, underflow to 0 / subnormals.
const F32_TO_F16 = [
  65504,
  65519,
  65520,
  1e5,
  -1e5,
  2 ** -24,
  2 ** -25,
  1.5 * 2 ** -25,
  1e-8,
  1 + 2 ** -11,
  1 + 3 * 2 ** -11,
  -0,
  0.1,
  -Math.PI,
];
add('cast', 'float32 -> float16 output', gens(f32(F32_TO_F16, [F32_TO_F16.length])), ca('float16'), EXACT);
add(
  'cast',
  'float32 -> float16 -> float32 rounds to nearest even',
  gens(withValues(uni([20], -100, 100), F32_TO_F16)),
  (x) => ops.cast(ops.cast(x, 'float16'), 'float32'),
  EXACT,
);
add(
  'cast',
  'float16 input used in float32 math',
  (rng) => [randomTensor(rng, [2, 3], 'float16', { lo: -2, hi: 2 }), randomTensor(rng, [3, 2])],
  (x, w) => ops.matmul(ops.exp(ops.cast(x, 'float32')), w),
);

export const FORWARD_CASES: readonly OpCase[] = cases;

// ----- gradient cases -------------------------------------------------------------------------

const grads: GradCase[] = [];
const addGrad = (
  prim: string,
  what: string,
  make: (rng: Rng) => HostTensor[],
  fn: OpCase['fn'],
  extra: Partial<GradCase> = {},
) => grads.push({ prim, title: `grad ${prim}: ${what}`, make, fn, ...extra });

const UNARY_GRAD: Record<string, Gen> = {
  neg: uni([2, 3], -2, 2),
  exp: uni([2, 3], -2, 2),
  log: uni([2, 3], 0.5, 2),
  sqrt: uni([2, 3], 0.5, 2),
  abs: away([2, 3], 0.2, 2),
  sign: away([2, 3], 0.2, 2),
  sin: uni([2, 3], -3, 3),
  cos: uni([2, 3], -3, 3),
  reciprocal: away([2, 3], 0.5, 2),
  sigmoid: uni([2, 3], -4, 4),
  tanh: uni([2, 3], -2, 2),
};
for (const [prim, gen] of Object.entries(UNARY_GRAD)) {
  addGrad(prim, '[2,3]', gens(gen), emit(prim));
}
addGrad('add', 'broadcast [3,1] + [1,4]', gens(uni([3, 1]), uni([1, 4])), (a, b) => ops.add(a, b));
addGrad('sub', 'broadcast [2,3] - [3]', gens(uni([2, 3]), uni([3])), (a, b) => ops.sub(a, b));
addGrad('mul', 'broadcast [3,1] * [1,4]', gens(uni([3, 1]), uni([1, 4])), (a, b) => ops.mul(a, b));
addGrad('div', 'broadcast [2,3] / [3]', gens(uni([2, 3]), away([3], 0.5, 2)), (a, b) => ops.div(a, b));
addGrad('maximum', 'broadcast [2,3] vs [3], no ties', gens(distinct([2, 3]), distinct([3], 0.05)), (a, b) =>
  ops.maximum(a, b),
);
addGrad('minimum', 'broadcast [2,3] vs [3], no ties', gens(distinct([2, 3]), distinct([3], 0.05)), (a, b) =>
  ops.minimum(a, b),
);
addGrad('pow', 'broadcast [2,3] ** [3], positive base', gens(uni([2, 3], 0.5, 2), uni([3], -2, 2)), (a, b) =>
  ops.pow(a, b),
);
addGrad(
  'where',
  'broadcast cond [2,1], a [2,3], b [3]',
  gens(b8([1, 0], [2, 1]), uni([2, 3]), uni([3])),
  whereFn,
);
addGrad('matmul', '[3,4] x [4,2]', gens(uni([3, 4]), uni([4, 2])), mm);
addGrad('matmul', 'broadcast batch [2,1,3,4] x [1,2,4,2]', gens(uni([2, 1, 3, 4]), uni([1, 2, 4, 2])), mm);
addGrad('sum', 'axis 1 of [2,3,4]', gens(uni([2, 3, 4])), (x) => ops.sum(x, 1));
addGrad('sum', 'all axes keepDims', gens(uni([3, 2])), (x) => ops.sum(x, undefined, true));
addGrad('max', 'axis 1 of [3,4], no ties', gens(distinct([3, 4])), (x) => ops.max(x, 1));
addGrad('max', 'all axes, no ties', gens(distinct([2, 3])), (x) => ops.max(x));
addGrad('reshape', '[2,6] -> [3,4]', gens(uni([2, 6])), rs([3, 4]));
addGrad('transpose', '[2,3,4] perm [1,2,0]', gens(uni([2, 3, 4])), tp([1, 2, 0]));
addGrad('slice', '[4,5] [1:3, 0:4]', gens(uni([4, 5])), sl([1, 0], [3, 4]));
addGrad('pad', '[2,3] before [1,0] after [0,2]', gens(uni([2, 3])), pd([1, 0], [0, 2]));
addGrad('concat', 'axis 1 of three', gens(uni([2, 1]), uni([2, 3]), uni([2, 2])), (a, b, c) =>
  ops.concat([a, b, c], 1),
);
addGrad('broadcastTo', '[3,1] -> [2,3,4]', gens(uni([3, 1])), bt([2, 3, 4]));
addGrad(
  'gather',
  'rows with repeats (gradient accumulates)',
  gens(uni([5, 3]), i32([4, 0, 4, 2, 4, 1], [6])),
  ga,
);
addGrad('scatterAdd', 'duplicate indices', gens(uni([6, 3]), i32([1, 3, 1, 1, 0, 3], [6])), sa(5));
// Multiples of 1/8 in float16: x +- 1/16 is exact in float16, and the function is quadratic, so the
// central difference is exact. The gradient of a float16 input comes back as float32.
addGrad(
  'cast',
  'float16 input through square (gradient in float32)',
  () => [tensor([-1.5, -0.25, 0, 0.125, 0.75, 2], [2, 3], 'float16')],
  (x) => ops.square(ops.cast(x, 'float32')),
  { h: 1 / 16 },
);
// x * trunc(3x): the int32 path carries no gradient, so d/dx = trunc(3x). The grid keeps 3x at
// least 0.05 away from an integer, far beyond the step.
addGrad('cast', 'float32 -> int32 path carries no gradient', gens(distinct([2, 3], 0.05)), (x) =>
  ops.mul(x, ops.cast(ops.cast(ops.mul(x, 3), 'int32'), 'float32')),
);
addGrad(
  'stopGradient',
  'x * stopGradient(x) differentiates only the first factor',
  gens(uni([2, 3])),
  (x) => ops.mul(x, ops.stopGradient(x)),
  { noFd: 'stopGradient deliberately differs from the true derivative' },
);

export const GRAD_CASES: readonly GradCase[] = grads;

/** Primitives without a derivative rule (comparisons; stopGradient blocks by design). */
export const NON_DIFFERENTIABLE: readonly string[] = ['less', 'greater', 'equal', 'stopGradient'];
