/**
 * Every primitive in one place: its shape/dtype rule, its VJP, and its reference (float64)
 * implementation. Backends add their lowerings in their own packages.
 */
import { type DType, float16BitsToFloat32, float32ToFloat16Bits, isFloat, sizeOf } from './dtype.js';
import { ShapeError } from './errors.js';
import { type AbstractValue, definePrimitive, type RefValue } from './internal/registry.js';
import type { BinaryPrimitive, UnaryPrimitive } from './ir.js';
import * as ops from './ops.js';
import { broadcastShapes, broadcastStrides, fmt, sameShape, stridesOf } from './shapes.js';
import { Tensor } from './tensor.js';

// ----- shared helpers -------------------------------------------------------------------------

function refAlloc(dtype: DType, n: number): Float64Array | Int32Array | Uint8Array {
  if (dtype === 'int32') return new Int32Array(n);
  if (dtype === 'bool') return new Uint8Array(n);
  return new Float64Array(n);
}

/** Sums g over the axes that were broadcast to reach g's shape, then reshapes to `shape`. */
export function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const off = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < off || (shape[i - off] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return ops.reshape(axes.length ? ops.sum(g, axes, false) : g, shape);
}

/** Iterates the broadcast output, calling f(outIndex, idxA, idxB, ...). */
function forEachBroadcast(
  outShape: readonly number[],
  inShapes: readonly (readonly number[])[],
  f: (o: number, idx: number[]) => void,
) {
  const n = sizeOf(outShape);
  const rank = outShape.length;
  const strides = inShapes.map((s) => broadcastStrides(s, outShape));
  const counter = new Array<number>(rank).fill(0);
  const idx = new Array<number>(inShapes.length).fill(0);
  for (let o = 0; o < n; o++) {
    f(o, idx);
    for (let ax = rank - 1; ax >= 0; ax--) {
      counter[ax]!++;
      for (let k = 0; k < idx.length; k++) idx[k]! += strides[k]![ax]!;
      if (counter[ax]! < outShape[ax]!) break;
      for (let k = 0; k < idx.length; k++) idx[k]! -= strides[k]![ax]! * counter[ax]!;
      counter[ax] = 0;
    }
  }
}

function requireFloat(what: string, v: AbstractValue): void {
  if (v.dtype !== 'float32') throw new ShapeError(`${what}: needs float32 input, got ${v.dtype}`);
}

// ----- unary ----------------------------------------------------------------------------------

function defineUnary(
  name: UnaryPrimitive,
  f: (x: number) => number,
  vjp?: (g: Tensor, x: Tensor, y: Tensor) => Tensor,
) {
  definePrimitive({
    name,
    infer([x]) {
      requireFloat(name, x!);
      return { shape: x!.shape, dtype: x!.dtype };
    },
    ...(vjp ? { vjp: (g: Tensor, [x]: readonly Tensor[], y: Tensor) => [vjp(g, x!, y)] } : {}),
    reference([x], _attrs, out) {
      const src = x!.data as Float64Array;
      const data = new Float64Array(src.length);
      for (let i = 0; i < src.length; i++) data[i] = f(src[i]!);
      return { shape: out.shape, dtype: out.dtype, data };
    },
  });
}

defineUnary(
  'neg',
  (x) => -x,
  (g) => ops.neg(g),
);
defineUnary('exp', Math.exp, (g, _x, y) => ops.mul(g, y));
defineUnary('log', Math.log, (g, x) => ops.div(g, x));
defineUnary('sqrt', Math.sqrt, (g, _x, y) => ops.div(ops.mul(g, 0.5), y));
defineUnary('abs', Math.abs, (g, x) => ops.mul(g, ops.sign(x)));
defineUnary(
  'sign',
  (x) => (Number.isNaN(x) ? x : Math.sign(x) + 0),
  (g) => ops.zerosLike(g),
);
defineUnary('sin', Math.sin, (g, x) => ops.mul(g, ops.cos(x)));
defineUnary('cos', Math.cos, (g, x) => ops.neg(ops.mul(g, ops.sin(x))));
defineUnary(
  'reciprocal',
  (x) => 1 / x,
  (g, _x, y) => ops.neg(ops.mul(g, ops.mul(y, y))),
);
defineUnary(
  'sigmoid',
  (x) => 1 / (1 + Math.exp(-x)),
  (g, _x, y) => ops.mul(g, ops.mul(y, ops.sub(1, y))),
);
defineUnary('tanh', Math.tanh, (g, _x, y) => ops.mul(g, ops.sub(1, ops.mul(y, y))));
definePrimitive({
  name: 'stopGradient',
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  reference: ([x]) => x!,
});

// ----- binary ---------------------------------------------------------------------------------

function defineBinary(
  name: BinaryPrimitive,
  allowInt: boolean,
  f: (a: number, b: number) => number,
  vjp: ((g: Tensor, a: Tensor, b: Tensor, y: Tensor) => [Tensor | null, Tensor | null]) | undefined,
  outDtype?: DType,
) {
  definePrimitive({
    name,
    infer([a, b]) {
      if (a!.dtype !== b!.dtype) throw new ShapeError(`${name}: dtypes differ (${a!.dtype} vs ${b!.dtype})`);
      const ok =
        a!.dtype === 'float32' ||
        (allowInt && a!.dtype === 'int32') ||
        (outDtype === 'bool' && a!.dtype !== 'float16');
      if (!ok) throw new ShapeError(`${name}: unsupported dtype ${a!.dtype}`);
      return { shape: broadcastShapes(name, a!.shape, b!.shape), dtype: outDtype ?? a!.dtype };
    },
    ...(vjp
      ? {
          vjp(g: Tensor, [a, b]: readonly Tensor[], y: Tensor) {
            const [ga, gb] = vjp(g, a!, b!, y);
            return [ga && unbroadcast(ga, a!.shape), gb && unbroadcast(gb, b!.shape)];
          },
        }
      : {}),
    reference([a, b], _attrs, out) {
      const data = refAlloc(out.dtype, sizeOf(out.shape));
      const ad = a!.data;
      const bd = b!.data;
      // int32 products wrap like the hardware; in float64 they would lose their low bits past 2^53.
      const op = name === 'mul' && out.dtype === 'int32' ? Math.imul : f;
      forEachBroadcast(out.shape, [a!.shape, b!.shape], (o, [i, j]) => {
        data[o] = op(ad[i!]!, bd[j!]!);
      });
      if (out.dtype === 'int32') for (let i = 0; i < data.length; i++) data[i] = data[i]! | 0;
      return { shape: out.shape, dtype: out.dtype, data };
    },
  });
}

defineBinary(
  'add',
  true,
  (a, b) => a + b,
  (g) => [g, g],
);
defineBinary(
  'sub',
  true,
  (a, b) => a - b,
  (g) => [g, ops.neg(g)],
);
defineBinary(
  'mul',
  true,
  (a, b) => a * b,
  (g, a, b) => [ops.mul(g, b), ops.mul(g, a)],
);
defineBinary(
  'div',
  false,
  (a, b) => a / b,
  (g, a, b) => [ops.div(g, b), ops.neg(ops.div(ops.mul(g, a), ops.mul(b, b)))],
);
// Ties split the gradient evenly, as JAX does.
const tieShare = (x: Tensor, other: Tensor, cmp: 'greater' | 'less') =>
  ops.add(
    ops.cast(cmp === 'greater' ? ops.greater(x, other) : ops.less(x, other), 'float32'),
    ops.mul(ops.cast(ops.equal(x, other), 'float32'), 0.5),
  );
defineBinary('maximum', true, Math.max, (g, a, b) => [
  ops.mul(g, tieShare(a, b, 'greater')),
  ops.mul(g, tieShare(b, a, 'greater')),
]);
defineBinary('minimum', true, Math.min, (g, a, b) => [
  ops.mul(g, tieShare(a, b, 'less')),
  ops.mul(g, tieShare(b, a, 'less')),
]);
defineBinary(
  'pow',
  false,
  (a, b) => a ** b,
  (g, a, b, y) => [ops.mul(g, ops.mul(b, ops.pow(a, ops.sub(b, 1)))), ops.mul(g, ops.mul(ops.log(a), y))],
);
defineBinary('less', true, (a, b) => (a < b ? 1 : 0), undefined, 'bool');
defineBinary('greater', true, (a, b) => (a > b ? 1 : 0), undefined, 'bool');
defineBinary('equal', true, (a, b) => (a === b ? 1 : 0), undefined, 'bool');

definePrimitive({
  name: 'where',
  infer([c, a, b]) {
    if (c!.dtype !== 'bool') throw new ShapeError(`where: condition must be bool, got ${c!.dtype}`);
    if (a!.dtype !== b!.dtype)
      throw new ShapeError(`where: branch dtypes differ (${a!.dtype} vs ${b!.dtype})`);
    return { shape: broadcastShapes('where', c!.shape, a!.shape, b!.shape), dtype: a!.dtype };
  },
  vjp(g, [c, a, b]) {
    // A scalar zero (where broadcasts it): no materialised zeros tensor of g's shape.
    const zero = ops.scalar(0, g.dtype);
    return [
      null,
      unbroadcast(ops.where(c!, g, zero), a!.shape),
      unbroadcast(ops.where(c!, zero, g), b!.shape),
    ];
  },
  reference([c, a, b], _attrs, out) {
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    forEachBroadcast(out.shape, [c!.shape, a!.shape, b!.shape], (o, [i, j, k]) => {
      data[o] = c!.data[i!] ? a!.data[j!]! : b!.data[k!]!;
    });
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

// ----- matmul ---------------------------------------------------------------------------------

definePrimitive({
  name: 'matmul',
  infer([a, b]) {
    requireFloat('matmul', a!);
    requireFloat('matmul', b!);
    const ra = a!.shape.length;
    if (ra < 2 || ra !== b!.shape.length) {
      throw new ShapeError(
        `matmul: operands need the same rank >= 2, got ${fmt(a!.shape)} and ${fmt(b!.shape)}`,
      );
    }
    const [m, k] = a!.shape.slice(-2) as [number, number];
    const [k2, n] = b!.shape.slice(-2) as [number, number];
    if (k !== k2) throw new ShapeError(`matmul: inner dims differ: ${fmt(a!.shape)} x ${fmt(b!.shape)}`);
    const batch = broadcastShapes('matmul batch', a!.shape.slice(0, -2), b!.shape.slice(0, -2));
    return { shape: [...batch, m, n], dtype: 'float32' };
  },
  vjp(g, [a, b]) {
    return [
      unbroadcast(ops.matmul(g, ops.mT(b!)), a!.shape),
      unbroadcast(ops.matmul(ops.mT(a!), g), b!.shape),
    ];
  },
  reference([a, b], _attrs, out) {
    const r = out.shape.length;
    const [m, n] = out.shape.slice(-2) as [number, number];
    const k = a!.shape[r - 1]!;
    const batch = out.shape.slice(0, -2);
    const data = new Float64Array(sizeOf(out.shape));
    const ad = a!.data as Float64Array;
    const bd = b!.data as Float64Array;
    let o = 0;
    forEachBroadcast(batch, [a!.shape.slice(0, -2), b!.shape.slice(0, -2)], (bi, [ia, ib]) => {
      const aOff = ia! * m * k;
      const bOff = ib! * k * n;
      o = bi * m * n;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let t = 0; t < k; t++) acc += ad[aOff + i * k + t]! * bd[bOff + t * n + j]!;
          data[o + i * n + j] = acc;
        }
      }
    });
    return { shape: out.shape, dtype: 'float32', data };
  },
});

// ----- reductions -----------------------------------------------------------------------------

function reducedShape(shape: readonly number[], axes: readonly number[], keepDims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepDims) out.push(1);
  });
  return out;
}

function checkAxes(name: string, x: AbstractValue, axes: readonly number[]): readonly number[] {
  for (let i = 0; i < axes.length; i++) {
    const a = axes[i]!;
    if (!Number.isInteger(a) || a < 0 || a >= x.shape.length || (i > 0 && a <= axes[i - 1]!)) {
      throw new ShapeError(
        `${name}: axes ${fmt(axes)} must be sorted, unique and within rank ${x.shape.length}`,
      );
    }
  }
  return axes;
}

function reduceRef(
  x: RefValue,
  axes: readonly number[],
  out: AbstractValue,
  init: number,
  f: (acc: number, v: number) => number,
): RefValue {
  const data = new Float64Array(sizeOf(out.shape)).fill(init);
  const keptShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  forEachBroadcast(x.shape, [x.shape, keptShape], (o, [, ko]) => {
    data[ko!] = f(data[ko!]!, x.data[o]!);
  });
  return { shape: out.shape, dtype: out.dtype, data };
}

definePrimitive({
  name: 'sum',
  infer([x], attrs) {
    requireFloat('sum', x!);
    return {
      shape: reducedShape(x!.shape, checkAxes('sum', x!, attrs.axes), attrs.keepDims),
      dtype: x!.dtype,
    };
  },
  vjp(g, [x], _y, attrs) {
    const keep = reducedShape(x!.shape, attrs.axes, true);
    return [ops.broadcastTo(ops.reshape(g, keep), x!.shape)];
  },
  reference: ([x], attrs, out) => reduceRef(x!, attrs.axes, out, 0, (a, v) => a + v),
});

definePrimitive({
  name: 'max',
  infer([x], attrs) {
    requireFloat('max', x!);
    return {
      shape: reducedShape(x!.shape, checkAxes('max', x!, attrs.axes), attrs.keepDims),
      dtype: x!.dtype,
    };
  },
  vjp(g, [x], y, attrs) {
    const { axes } = attrs;
    const keep = reducedShape(x!.shape, axes, true);
    const mask = ops.cast(ops.equal(x!, ops.reshape(y, keep)), 'float32');
    const count = ops.sum(mask, axes, true);
    return [ops.mul(ops.div(mask, count), ops.reshape(g, keep))];
  },
  reference: ([x], attrs, out) =>
    reduceRef(x!, attrs.axes, out, Number.NEGATIVE_INFINITY, (a, v) =>
      Number.isNaN(a) || Number.isNaN(v) ? Number.NaN : Math.max(a, v),
    ),
});

// ----- shape manipulation ---------------------------------------------------------------------

definePrimitive({
  name: 'reshape',
  infer([x], { shape }) {
    if (sizeOf(shape) !== sizeOf(x!.shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new ShapeError(`reshape: cannot reshape ${fmt(x!.shape)} to ${fmt(shape)}`);
    }
    return { shape, dtype: x!.dtype };
  },
  vjp: (g, [x]) => [ops.reshape(g, x!.shape)],
  reference: ([x], _a, out) => ({ shape: out.shape, dtype: out.dtype, data: x!.data }),
});

/** x^T for a rank-2 x, reusing the input of x when x is itself a 2-D transpose. */
function transpose2d(x: Tensor): Tensor {
  const node = x.builder.nodes[x.id]!;
  if (node.op === 'transpose' && x.rank === 2) return new Tensor(x.builder, node.inputs[0]!);
  return ops.transpose(x, [1, 0]);
}

/** g^T as b^T @ a^T when g = a @ b is a rank-2 matmul and perm swaps the two axes; else undefined. */
function transposedMatmul(g: Tensor, perm: readonly number[]): Tensor | undefined {
  if (g.rank !== 2 || perm[0] !== 1 || perm[1] !== 0) return undefined;
  const node = g.builder.nodes[g.id]!;
  if (node.op !== 'matmul') return undefined;
  const [a, b] = node.inputs.map((id) => new Tensor(g.builder, id)) as [Tensor, Tensor];
  if (a.rank !== 2 || b.rank !== 2) return undefined;
  return ops.matmul(transpose2d(b), transpose2d(a));
}

definePrimitive({
  name: 'transpose',
  infer([x], { perm }) {
    const r = x!.shape.length;
    if (perm.length !== r || [...perm].sort((a, b) => a - b).some((v, i) => v !== i)) {
      throw new ShapeError(`transpose: perm ${fmt(perm)} is not a permutation of rank ${r}`);
    }
    return { shape: perm.map((p) => x!.shape[p]!), dtype: x!.dtype };
  },
  vjp(g, _x, _y, { perm }) {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => {
      inv[p] = i;
    });
    // (a @ b)^T = b^T @ a^T: the cotangent of a transposed matrix (e.g. the weight of ops.linear)
    // comes out of a matmul, so produce it transposed directly instead of transposing the product
    // (backends fuse the operand transposes into the matmul; the product's transpose they do not).
    const swapped = transposedMatmul(g, perm);
    return [swapped ?? ops.transpose(g, inv)];
  },
  reference([x], { perm }, out) {
    const inStrides = stridesOf(x!.shape);
    const permStrides = perm.map((p) => inStrides[p]!);
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    const counter = new Array<number>(out.shape.length).fill(0);
    let src = 0;
    for (let o = 0; o < data.length; o++) {
      data[o] = x!.data[src]!;
      for (let ax = out.shape.length - 1; ax >= 0; ax--) {
        counter[ax]!++;
        src += permStrides[ax]!;
        if (counter[ax]! < out.shape[ax]!) break;
        src -= permStrides[ax]! * counter[ax]!;
        counter[ax] = 0;
      }
    }
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

/** Copies the box [starts, starts + shape) of `src` into `dst` at offset `at` (all per axis). */
function copyBox(
  src: RefValue,
  srcStart: readonly number[],
  dst: Float64Array | Int32Array | Uint8Array,
  dstShape: readonly number[],
  dstStart: readonly number[],
  box: readonly number[],
) {
  const ss = stridesOf(src.shape);
  const ds = stridesOf(dstShape);
  const n = sizeOf(box);
  const counter = new Array<number>(box.length).fill(0);
  for (let i = 0; i < n; i++) {
    let si = 0;
    let di = 0;
    for (let ax = 0; ax < box.length; ax++) {
      si += (srcStart[ax]! + counter[ax]!) * ss[ax]!;
      di += (dstStart[ax]! + counter[ax]!) * ds[ax]!;
    }
    dst[di] = src.data[si]!;
    for (let ax = box.length - 1; ax >= 0; ax--) {
      counter[ax]!++;
      if (counter[ax]! < box[ax]!) break;
      counter[ax] = 0;
    }
  }
}

definePrimitive({
  name: 'slice',
  infer([x], { starts, ends }) {
    const r = x!.shape.length;
    if (starts.length !== r || ends.length !== r)
      throw new ShapeError(`slice: starts/ends need ${r} entries`);
    for (let i = 0; i < r; i++) {
      if (!(starts[i]! >= 0 && starts[i]! <= ends[i]! && ends[i]! <= x!.shape[i]!)) {
        throw new ShapeError(`slice: axis ${i}: [${starts[i]}, ${ends[i]}) is outside ${fmt(x!.shape)}`);
      }
    }
    return { shape: starts.map((s, i) => ends[i]! - s), dtype: x!.dtype };
  },
  vjp(g, [x], _y, { starts, ends }) {
    return [
      ops.pad(
        g,
        starts,
        ends.map((e, i) => x!.shape[i]! - e),
      ),
    ];
  },
  reference([x], attrs, out) {
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    copyBox(
      x!,
      attrs.starts,
      data,
      out.shape,
      out.shape.map(() => 0),
      out.shape,
    );
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

definePrimitive({
  name: 'pad',
  infer([x], { before, after }) {
    const r = x!.shape.length;
    if (
      before.length !== r ||
      after.length !== r ||
      [...before, ...after].some((v) => !Number.isInteger(v) || v < 0)
    ) {
      throw new ShapeError(`pad: before/after need ${r} non-negative entries`);
    }
    return { shape: x!.shape.map((d, i) => d + before[i]! + after[i]!), dtype: x!.dtype };
  },
  vjp(g, [x], _y, { before }) {
    return [
      ops.slice(
        g,
        before,
        before.map((b, i) => b + x!.shape[i]!),
      ),
    ];
  },
  reference([x], attrs, out) {
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    copyBox(
      x!,
      x!.shape.map(() => 0),
      data,
      out.shape,
      attrs.before,
      x!.shape,
    );
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

definePrimitive({
  name: 'concat',
  infer(xs, { axis }) {
    const first = xs[0]!;
    if (xs.length < 2) throw new ShapeError('concat: needs two or more inputs');
    if (!(axis >= 0 && axis < first.shape.length)) throw new ShapeError(`concat: axis ${axis} out of range`);
    let total = 0;
    for (const x of xs) {
      if (
        x.dtype !== first.dtype ||
        x.shape.length !== first.shape.length ||
        x.shape.some((d, i) => i !== axis && d !== first.shape[i])
      ) {
        throw new ShapeError(
          `concat: ${fmt(x.shape)} ${x.dtype} does not match ${fmt(first.shape)} ${first.dtype} off axis ${axis}`,
        );
      }
      total += x.shape[axis]!;
    }
    const shape = [...first.shape];
    shape[axis] = total;
    return { shape, dtype: first.dtype };
  },
  vjp(g, xs, _y, { axis }) {
    let off = 0;
    return xs.map((x) => {
      const s = ops.slice(g, axis, off, off + x.shape[axis]!);
      off += x.shape[axis]!;
      return s;
    });
  },
  reference(xs, { axis }, out) {
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    let off = 0;
    for (const x of xs) {
      const at = out.shape.map((_, i) => (i === axis ? off : 0));
      copyBox(
        x,
        x.shape.map(() => 0),
        data,
        out.shape,
        at,
        x.shape,
      );
      off += x.shape[axis]!;
    }
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

definePrimitive({
  name: 'broadcastTo',
  infer([x], { shape }) {
    const b = broadcastShapes('broadcastTo', x!.shape, shape);
    if (!sameShape(b, shape))
      throw new ShapeError(`broadcastTo: ${fmt(x!.shape)} cannot broadcast to ${fmt(shape)}`);
    return { shape, dtype: x!.dtype };
  },
  vjp: (g, [x]) => [unbroadcast(g, x!.shape)],
  reference([x], _attrs, out) {
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    forEachBroadcast(out.shape, [x!.shape], (o, [i]) => {
      data[o] = x!.data[i!]!;
    });
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

// ----- indexing -------------------------------------------------------------------------------

definePrimitive({
  name: 'gather',
  infer([x, idx]) {
    if (idx!.dtype !== 'int32') throw new ShapeError(`gather: indices must be int32, got ${idx!.dtype}`);
    if (x!.shape.length < 1) throw new ShapeError('gather: cannot gather rows of a scalar');
    return { shape: [...idx!.shape, ...x!.shape.slice(1)], dtype: x!.dtype };
  },
  vjp: (g, [x, idx]) => [ops.scatterAdd(g, idx!, x!.shape[0]!), null],
  reference([x, idx], _attrs, out) {
    const row = sizeOf(x!.shape.slice(1));
    const data = refAlloc(out.dtype, sizeOf(out.shape));
    for (let i = 0; i < idx!.data.length; i++) {
      const r = idx!.data[i]!;
      if (r < 0 || r >= x!.shape[0]!)
        throw new RangeError(`gather: index ${r} out of range [0, ${x!.shape[0]})`);
      for (let j = 0; j < row; j++) data[i * row + j] = x!.data[r * row + j]!;
    }
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

definePrimitive({
  name: 'scatterAdd',
  infer([u, idx], attrs) {
    requireFloat('scatterAdd', u!);
    if (idx!.dtype !== 'int32') throw new ShapeError(`scatterAdd: indices must be int32, got ${idx!.dtype}`);
    const k = idx!.shape.length;
    if (!sameShape(u!.shape.slice(0, k), idx!.shape)) {
      throw new ShapeError(
        `scatterAdd: updates ${fmt(u!.shape)} must start with the indices' shape ${fmt(idx!.shape)}`,
      );
    }
    return { shape: [attrs.size, ...u!.shape.slice(k)], dtype: u!.dtype };
  },
  vjp: (g, [, idx]) => [ops.gather(g, idx!), null],
  reference([u, idx], _attrs, out) {
    const row = sizeOf(out.shape.slice(1));
    const data = new Float64Array(sizeOf(out.shape));
    for (let i = 0; i < idx!.data.length; i++) {
      const r = idx!.data[i]!;
      if (r < 0 || r >= out.shape[0]!)
        throw new RangeError(`scatterAdd: index ${r} out of range [0, ${out.shape[0]})`);
      for (let j = 0; j < row; j++) data[r * row + j]! += u!.data[i * row + j]!;
    }
    return { shape: out.shape, dtype: out.dtype, data };
  },
});

// ----- dtype ----------------------------------------------------------------------------------

definePrimitive({
  name: 'cast',
  infer([x], { to }) {
    if (x!.dtype === 'bfloat16' || to === 'bfloat16') {
      throw new ShapeError('cast: bfloat16 is a host storage type; convert on the host with castHost()');
    }
    return { shape: x!.shape, dtype: to };
  },
  vjp(g, [x]) {
    return [
      isFloat(x!.dtype) && isFloat(g.dtype)
        ? ops.cast(g, x!.dtype === 'float16' ? 'float32' : x!.dtype)
        : null,
    ];
  },
  reference([x], { to }, out) {
    const data = refAlloc(to, x!.data.length);
    for (let i = 0; i < data.length; i++) {
      const v = x!.data[i]!;
      if (to === 'int32') data[i] = Math.trunc(v);
      else if (to === 'bool') data[i] = v !== 0 ? 1 : 0;
      else if (to === 'float16') data[i] = float16BitsToFloat32(float32ToFloat16Bits(v));
      else data[i] = Math.fround(v);
    }
    return { shape: out.shape, dtype: to, data };
  },
});

// Graph inputs and constants have no rule of their own beyond their recorded shape.
definePrimitive({
  name: 'input',
  infer: () => {
    throw new ShapeError('input nodes are created by the graph builder');
  },
  reference: () => {
    throw new Error('input nodes are bound by the executor');
  },
});
definePrimitive({
  name: 'constant',
  infer: () => {
    throw new ShapeError('constant nodes are created by the graph builder');
  },
  reference: () => {
    throw new Error('constant nodes are bound by the executor');
  },
});
