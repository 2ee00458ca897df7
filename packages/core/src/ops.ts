/**
 * The operations model code and criteria are written with. Each either appends one primitive
 * node or is a composite of primitives (mean, softmax, logSoftmax, rmsNorm, silu, ...), so the
 * single autodiff in core differentiates all of them.
 */
import { type DType, type HostTensor, scalar as hostScalar, tensor as hostTensor, isFloat } from './dtype.js';
import { ShapeError } from './errors.js';
import type { BinaryPrimitive, UnaryPrimitive } from './ir.js';
import { currentBuilder, type GraphBuilder, Tensor } from './tensor.js';

export type TensorOrNumber = Tensor | number;

function builderOf(...xs: TensorOrNumber[]): GraphBuilder {
  for (const x of xs) if (x instanceof Tensor) return x.builder;
  return currentBuilder();
}

/** Lifts numbers to scalar constants of the dtype of the tensor operand. */
function lift(x: TensorOrNumber, like: TensorOrNumber[], b: GraphBuilder): Tensor {
  if (x instanceof Tensor) return x;
  const ref = like.find((y): y is Tensor => y instanceof Tensor);
  const dtype: DType = ref ? (ref.dtype === 'bool' ? 'float32' : ref.dtype) : 'float32';
  return b.constant(hostScalar(x, dtype));
}

function binary(op: BinaryPrimitive, a: TensorOrNumber, b: TensorOrNumber): Tensor {
  const g = builderOf(a, b);
  return g.emit(op, [lift(a, [b], g), lift(b, [a], g)]);
}

function normAxes(rank: number, axes: number | readonly number[] | undefined, what: string): number[] {
  const list =
    axes === undefined
      ? Array.from({ length: rank }, (_, i) => i)
      : typeof axes === 'number'
        ? [axes]
        : [...axes];
  const out = list.map((a) => {
    const n = a < 0 ? a + rank : a;
    if (!Number.isInteger(n) || n < 0 || n >= rank)
      throw new ShapeError(`${what}: axis ${a} out of range for rank ${rank}`);
    return n;
  });
  return [...new Set(out)].sort((x, y) => x - y);
}

// ----- creation -------------------------------------------------------------------------------

export function constant(value: HostTensor): Tensor {
  return currentBuilder().constant(value);
}

export function scalar(value: number, dtype: DType = 'float32'): Tensor {
  return currentBuilder().constant(hostScalar(value, dtype));
}

/** A constant filled with `value`, broadcast to shape (stored as a scalar). */
export function full(shape: readonly number[], value: number, dtype: DType = 'float32'): Tensor {
  return broadcastTo(scalar(value, dtype), shape);
}

export function zerosLike(x: Tensor): Tensor {
  return broadcastTo(x.builder.constant(hostScalar(0, x.dtype)), x.shape);
}

/** 0, 1, ..., n-1 as an int32 (or float32) constant. */
export function arange(n: number, dtype: DType = 'int32'): Tensor {
  return rangeIn(currentBuilder(), n, dtype);
}

/** Cached per trace: one constant however many one-hot masks use it, so engines can share work. */
function rangeIn(b: GraphBuilder, n: number, dtype: DType): Tensor {
  return b.cachedConstant(`arange:${n}:${dtype}`, () =>
    hostTensor(
      Array.from({ length: n }, (_, i) => i),
      [n],
      dtype,
    ),
  );
}

// ----- elementwise ----------------------------------------------------------------------------

export const add = (a: TensorOrNumber, b: TensorOrNumber) => binary('add', a, b);
export const sub = (a: TensorOrNumber, b: TensorOrNumber) => binary('sub', a, b);
export const mul = (a: TensorOrNumber, b: TensorOrNumber) => binary('mul', a, b);
export const div = (a: TensorOrNumber, b: TensorOrNumber) => binary('div', a, b);
export const maximum = (a: TensorOrNumber, b: TensorOrNumber) => binary('maximum', a, b);
export const minimum = (a: TensorOrNumber, b: TensorOrNumber) => binary('minimum', a, b);
export const pow = (a: TensorOrNumber, b: TensorOrNumber) => binary('pow', a, b);
export const less = (a: TensorOrNumber, b: TensorOrNumber) => binary('less', a, b);
export const greater = (a: TensorOrNumber, b: TensorOrNumber) => binary('greater', a, b);
export const equal = (a: TensorOrNumber, b: TensorOrNumber) => binary('equal', a, b);

const unary = (op: UnaryPrimitive | 'stopGradient') => (x: Tensor) => x.builder.emit(op, [x]);
export const neg = unary('neg');
export const exp = unary('exp');
export const log = unary('log');
export const sqrt = unary('sqrt');
export const abs = unary('abs');
export const sign = unary('sign');
export const sin = unary('sin');
export const cos = unary('cos');
export const reciprocal = unary('reciprocal');
export const sigmoid = unary('sigmoid');
export const tanh = unary('tanh');
export const stopGradient = unary('stopGradient');

export function square(x: Tensor): Tensor {
  return mul(x, x);
}

export function where(cond: Tensor, a: TensorOrNumber, b: TensorOrNumber): Tensor {
  const g = cond.builder;
  return g.emit('where', [cond, lift(a, [b], g), lift(b, [a], g)]);
}

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return x.builder.emit('cast', [x], { to: dtype });
}

// ----- linear algebra -------------------------------------------------------------------------

export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.builder.emit('matmul', [a, b]);
}

/** Swaps the last two axes. */
export function mT(x: Tensor): Tensor {
  const perm = Array.from({ length: x.rank }, (_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
}

/** x [..., in] times a weight stored [out, in] (the Hugging Face / PyTorch Linear layout). */
export function linear(x: Tensor, weight: Tensor): Tensor {
  const [out, inDim] = weight.shape as [number, number];
  if (x.shape[x.rank - 1] !== inDim) {
    throw new ShapeError(
      `linear: input last dim ${x.shape[x.rank - 1]} does not match weight [${out}, ${inDim}]`,
    );
  }
  const lead = x.shape.slice(0, -1);
  const flat = reshape(x, [lead.reduce((p, d) => p * d, 1), inDim]);
  return reshape(matmul(flat, transpose(weight, [1, 0])), [...lead, out]);
}

// ----- reductions -----------------------------------------------------------------------------

export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return x.builder.emit('sum', [x], { axes: normAxes(x.rank, axes, 'sum'), keepDims });
}

export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return x.builder.emit('max', [x], { axes: normAxes(x.rank, axes, 'max'), keepDims });
}

export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normAxes(x.rank, axes, 'mean');
  const n = ax.reduce((p, a) => p * x.shape[a]!, 1);
  return div(sum(x, ax, keepDims), n);
}

// ----- shape ----------------------------------------------------------------------------------

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  if (resolved.length === x.rank && resolved.every((d, i) => d === x.shape[i])) return x;
  return x.builder.emit('reshape', [x], { shape: resolved });
}

export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const p = perm ?? Array.from({ length: x.rank }, (_, i) => x.rank - 1 - i);
  if (p.every((v, i) => v === i)) return x;
  return x.builder.emit('transpose', [x], { perm: [...p] });
}

/**
 * Slice along one axis (start inclusive, end exclusive; negative values count from the end) or,
 * with arrays, along every axis.
 */
export function slice(x: Tensor, axis: number, start: number, end?: number): Tensor;
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor;
export function slice(
  x: Tensor,
  a: number | readonly number[],
  b: number | readonly number[],
  c?: number,
): Tensor {
  let starts: number[];
  let ends: number[];
  if (typeof a === 'number') {
    const axis = a < 0 ? a + x.rank : a;
    const dim = x.shape[axis]!;
    const s = (b as number) < 0 ? (b as number) + dim : (b as number);
    const e = c === undefined ? dim : c < 0 ? c + dim : c;
    starts = x.shape.map(() => 0);
    ends = [...x.shape];
    starts[axis] = s;
    ends[axis] = e;
  } else {
    starts = [...a];
    ends = [...(b as readonly number[])];
  }
  if (starts.every((s) => s === 0) && ends.every((e, i) => e === x.shape[i])) return x;
  return x.builder.emit('slice', [x], { starts, ends });
}

export function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  if (before.every((v) => v === 0) && after.every((v) => v === 0)) return x;
  return x.builder.emit('pad', [x], { before: [...before], after: [...after] });
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new ShapeError('concat: needs at least one tensor');
  if (xs.length === 1) return xs[0]!;
  const ax = axis < 0 ? axis + xs[0]!.rank : axis;
  return xs[0]!.builder.emit('concat', xs, { axis: ax });
}

export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  if (shape.length === x.rank && shape.every((d, i) => d === x.shape[i])) return x;
  return x.builder.emit('broadcastTo', [x], { shape: [...shape] });
}

export function expandDims(x: Tensor, axis: number): Tensor {
  const ax = axis < 0 ? axis + x.rank + 1 : axis;
  const s = [...x.shape];
  s.splice(ax, 0, 1);
  return reshape(x, s);
}

export function squeeze(x: Tensor, axis: number): Tensor {
  const ax = axis < 0 ? axis + x.rank : axis;
  if (x.shape[ax] !== 1) throw new ShapeError(`squeeze: axis ${axis} has size ${x.shape[ax]}, not 1`);
  return reshape(
    x,
    x.shape.filter((_, i) => i !== ax),
  );
}

// ----- indexing -------------------------------------------------------------------------------

/** Rows of x (axis 0) at int32 indices of any shape. */
export function gather(x: Tensor, indices: Tensor): Tensor {
  return x.builder.emit('gather', [x, indices]);
}

/** Adds updates into zero rows of a [size, ...] tensor at int32 indices. */
export function scatterAdd(updates: Tensor, indices: Tensor, size: number): Tensor {
  return updates.builder.emit('scatterAdd', [updates, indices], { size });
}

/** Boolean mask [..., n] that is true where the int32 `indices` equal the position along the last axis. */
export function oneHotMask(indices: Tensor, n: number): Tensor {
  return equal(reshape(indices, [...indices.shape, 1]), rangeIn(indices.builder, n, 'int32'));
}

// ----- composites -----------------------------------------------------------------------------

export function logSumExp(x: Tensor, axis = -1, keepDims = false): Tensor {
  const m = stopGradient(max(x, axis, true));
  const s = log(sum(exp(sub(x, m)), axis, true));
  const out = add(s, m);
  return keepDims ? out : squeeze(out, axis);
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return sub(x, logSumExp(x, axis, true));
}

export function softmax(x: Tensor, axis = -1): Tensor {
  const e = exp(sub(x, stopGradient(max(x, axis, true))));
  return div(e, sum(e, axis, true));
}

export function silu(x: Tensor): Tensor {
  return mul(x, sigmoid(x));
}

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const ms = mean(square(x), -1, true);
  return mul(div(x, sqrt(add(ms, eps))), weight);
}

/**
 * Per-position negative log-likelihood of int32 `targets` under `logits` [..., vocab]. Picks the
 * target's log-probability with a one-hot mask, which needs no scatter in the backward pass.
 */
export function tokenNll(logits: Tensor, targets: Tensor): Tensor {
  if (!isFloat(logits.dtype) || targets.dtype !== 'int32') {
    throw new ShapeError('tokenNll: logits must be float and targets int32');
  }
  // -log_softmax(x)[t] = logsumexp(x) - x[t]: the same float result as negating the picked
  // log-probability, without materialising log_softmax (one pass fewer over [..., vocab] forward
  // and backward).
  return sub(logSumExp(logits, -1), pickLast(logits, targets));
}

/** x[..., t] for int32 indices t [...]: the entry of the last axis each index names. */
export function pickLast(x: Tensor, indices: Tensor): Tensor {
  return sum(where(oneHotMask(indices, x.shape[x.rank - 1]!), x, 0), -1);
}

/** Mean token cross-entropy. */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  return mean(tokenNll(logits, targets));
}
