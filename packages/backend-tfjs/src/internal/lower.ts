/**
 * Lowerings: one entry per core primitive, mapping a node to tfjs ops (see core's ir.ts for the
 * exact semantics). Each lowering runs inside the executable's tf.tidy scope, receives its inputs
 * as tfjs tensors and returns one new tensor. float16 / bfloat16 values live in float32 tensors
 * (tfjs has no half types), always holding exactly representable half values.
 *
 * Engine gaps worked around here (each found by a test):
 *   - empty tensors: reductions over a zero-length axis and matmul with k = 0 return garbage on
 *     wasm (uninitialised memory); broadcastTo to a zero-size shape is a no-op on all engines.
 *     These produce explicit zeros / -inf.
 *   - wasm maximum/minimum ignore a NaN second operand; wasm select is wrong on bool branches;
 *     wasm cast-to-bool keeps the value (2.7 -> 2, NaN -> 0). sign(NaN) is 0 everywhere.
 *   - tfjs-backend-wasm has no UnsortedSegmentSum kernel: scatterAdd uses ScatterNd (which sums
 *     duplicate indices), or a one-hot matmul where no engine kernel exists.
 *   - tfjs matMul only broadcasts batch dims when one side's batch is 1: other broadcasts are
 *     folded into the row dimension or made explicit.
 */
import {
  broadcastShapes,
  type DType,
  type Node,
  type NodeOf,
  type Primitive,
  sameShape,
  sizeOf,
  UnsupportedPrimitiveError,
} from '@moreau/core';
import * as tf from '@tensorflow/tfjs-core';
import type { EngineQuirks } from './engines.js';
import { roundToBfloat16, roundToFloat16 } from './half.js';

export interface LowerContext {
  readonly quirks: EngineQuirks;
  /** Graph dtype of each input of the node (tfjs dtypes lose float16/bfloat16). */
  readonly inputDtypes: readonly DType[];
}

/** Primitives with a lowering (graph inputs and constants are bound by the executable). */
type Lowered = Exclude<Primitive, 'input' | 'constant'>;
export type LoweredNode = Exclude<Node, NodeOf<'input' | 'constant'>>;

type Lowering<P extends Lowered = Lowered> = (
  x: readonly tf.Tensor[],
  node: NodeOf<P>,
  ctx: LowerContext,
) => tf.Tensor;

export function tfDtype(d: DType): 'float32' | 'int32' | 'bool' {
  return d === 'int32' ? 'int32' : d === 'bool' ? 'bool' : 'float32';
}

/** Zeros (or a fill value) of a node's shape and tfjs dtype. */
function filled(node: Pick<Node, 'shape' | 'dtype'>, value = 0): tf.Tensor {
  return tf.fill([...node.shape], value, tfDtype(node.dtype));
}

// ----- elementwise ----------------------------------------------------------------------------

const unary =
  (f: (x: tf.Tensor) => tf.Tensor): Lowering =>
  ([x]) =>
    f(x!);

const binary =
  (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): Lowering =>
  ([a, b]) =>
    f(a!, b!);

/** maximum/minimum that propagate NaN from either side (Math.max semantics). */
function minMax(f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): Lowering {
  return ([a, b], node, ctx) => {
    const y = f(a!, b!);
    if (!ctx.quirks.minMaxDropsNaN || node.dtype !== 'float32') return y;
    const nan = tf.logicalOr(tf.isNaN(a!), tf.isNaN(b!));
    return tf.where(nan, tf.scalar(Number.NaN), y);
  };
}

/** Comparisons: bool operands are compared as int32 (wasm mishandles bool binary kernels). */
function compare(f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): Lowering {
  return ([a, b]) => {
    if (a!.dtype === 'bool') return f(tf.cast(a!, 'int32'), tf.cast(b!, 'int32'));
    return f(a!, b!);
  };
}

// ----- matmul ---------------------------------------------------------------------------------

const lowerMatmul: Lowering<'matmul'> = ([a, b], node) => {
  const r = node.shape.length;
  const [m, k] = a!.shape.slice(-2) as [number, number];
  const n = b!.shape[r - 1]!;
  if (m === 0 || n === 0 || k === 0 || sizeOf(node.shape) === 0) return filled(node);
  if (r === 2) return tf.matMul(a!, b!);
  const ba = a!.shape.slice(0, -2);
  const bb = b!.shape.slice(0, -2);
  if (sameShape(ba, bb)) return tf.matMul(a!, b!);
  // b's trailing batch dims of size 1 against a's bigger ones: fold them into a's rows
  // (x [B, T, k] @ w [1, k, n], or grouped-query attention [B, G, r, T, d] @ [B, G, 1, d, T]).
  let j = bb.length;
  while (j > 0 && bb[j - 1] === 1) j--;
  if (sameShape(ba.slice(0, j), bb.slice(0, j))) {
    const fold = sizeOf(ba.slice(j));
    const a2 = tf.reshape(a!, [...ba.slice(0, j), fold * m, k]);
    const b2 = tf.reshape(b!, [...bb.slice(0, j), k, n]);
    return tf.reshape(tf.matMul(a2, b2), [...node.shape]);
  }
  // General case: materialise the broadcast explicitly.
  const batch = broadcastShapes('tfjs matmul', ba, bb);
  const a3 = sameShape(ba, batch) ? a! : tf.broadcastTo(a!, [...batch, m, k]);
  const b3 = sameShape(bb, batch) ? b! : tf.broadcastTo(b!, [...batch, k, n]);
  return tf.matMul(a3, b3);
};

// ----- reductions -----------------------------------------------------------------------------

function reduce(kind: 'sum' | 'max'): Lowering<'sum' | 'max'> {
  return ([x], node) => {
    const { axes, keepDims } = node.attrs;
    if (axes.length === 0) return tf.clone(x!);
    if (sizeOf(node.shape) === 0) return filled(node);
    if (axes.some((ax) => x!.shape[ax] === 0)) {
      return filled(node, kind === 'sum' ? 0 : Number.NEGATIVE_INFINITY);
    }
    return kind === 'sum' ? tf.sum(x!, [...axes], keepDims) : tf.max(x!, [...axes], keepDims);
  };
}

// ----- shape manipulation ---------------------------------------------------------------------

const lowerSlice: Lowering<'slice'> = ([x], node) => {
  if (node.shape.length === 0) return tf.clone(x!);
  if (sizeOf(node.shape) === 0) return filled(node);
  if (sameShape(node.shape, x!.shape)) return tf.clone(x!);
  return tf.slice(x!, [...node.attrs.starts], [...node.shape]);
};

const lowerPad: Lowering<'pad'> = ([x], node) => {
  const { before, after } = node.attrs;
  if (node.shape.length === 0 || sameShape(node.shape, x!.shape)) return tf.clone(x!);
  if (sizeOf(node.shape) === 0) return filled(node);
  if (sizeOf(x!.shape) === 0) return filled(node);
  return tf.pad(
    x!,
    before.map((b, i) => [b, after[i]!] as [number, number]),
    0,
  );
};

const lowerConcat: Lowering<'concat'> = (xs, node) => {
  const parts = xs.filter((t) => t.size > 0);
  if (parts.length === 0) return filled(node);
  if (parts.length === 1) return tf.clone(parts[0]!);
  return tf.concat([...parts], node.attrs.axis);
};

const lowerBroadcastTo: Lowering<'broadcastTo'> = ([x], node) => {
  if (sameShape(node.shape, x!.shape)) return tf.clone(x!);
  if (sizeOf(node.shape) === 0) return filled(node);
  if (x!.dtype === 'bool') return tf.cast(tf.broadcastTo(tf.cast(x!, 'int32'), [...node.shape]), 'bool');
  return tf.broadcastTo(x!, [...node.shape]);
};

// ----- indexing -------------------------------------------------------------------------------

const lowerGather: Lowering<'gather'> = ([x, idx], node) => {
  if (sizeOf(node.shape) === 0) return filled(node);
  return tf.gather(x!, idx!, 0);
};

const lowerScatterAdd: Lowering<'scatterAdd'> = ([u, idx], node, ctx) => {
  const { size } = node.attrs;
  const rest = node.shape.slice(1);
  const n = idx!.size;
  if (sizeOf(node.shape) === 0 || n === 0) return filled(node);
  const flatIdx = tf.reshape(idx!, [n]);
  const updates = tf.reshape(u!, [n, ...rest]);
  switch (ctx.quirks.scatterAdd) {
    case 'scatterNd':
      return tf.scatterND(tf.reshape(flatIdx, [n, 1]), updates, [size, ...rest]);
    case 'segmentSum':
      return tf.unsortedSegmentSum(updates, flatIdx as tf.Tensor1D, size);
    case 'oneHot':
      return scatterAddOneHot(updates, flatIdx, size, rest);
  }
};

/** scatterAdd as oneHot(indices)^T @ updates: [size, n] x [n, rest] (duplicates add up). */
export function scatterAddOneHot(
  updates: tf.Tensor,
  flatIdx: tf.Tensor,
  size: number,
  rest: readonly number[],
): tf.Tensor {
  const n = flatIdx.size;
  const oh = tf.cast(tf.oneHot(flatIdx as tf.Tensor1D, size), 'float32'); // [n, size]
  const u2 = tf.reshape(tf.cast(updates, 'float32'), [n, sizeOf(rest)]) as tf.Tensor2D;
  const out = tf.reshape(tf.matMul(oh as tf.Tensor2D, u2, true, false), [size, ...rest]);
  return updates.dtype === 'float32' ? out : tf.cast(out, updates.dtype);
}

// ----- dtype ----------------------------------------------------------------------------------

const lowerCast: Lowering<'cast'> = ([x], node, ctx) => {
  const from = ctx.inputDtypes[0]!;
  const { to } = node.attrs;
  const isHalf = (d: DType) => d === 'float16' || d === 'bfloat16';
  if (from === to) return tf.clone(x!);
  switch (to) {
    case 'float32':
      return isHalf(from) ? tf.clone(x!) : tf.cast(x!, 'float32');
    case 'float16':
      if (from === 'bool') return tf.cast(x!, 'float32');
      return roundToFloat16(x!.dtype === 'float32' ? x! : tf.cast(x!, 'float32'));
    case 'bfloat16':
      if (from === 'bool') return tf.cast(x!, 'float32');
      return roundToBfloat16(x!.dtype === 'float32' ? x! : tf.cast(x!, 'float32'));
    case 'int32':
      return tf.cast(x!, 'int32'); // truncates toward zero; bool -> 0/1
    case 'bool':
      if (from === 'bool') return tf.clone(x!);
      // x != 0 (NaN != 0 is true); tf.cast to bool keeps the value on wasm.
      return tf.notEqual(x!, tf.scalar(0, x!.dtype as 'float32' | 'int32'));
  }
};

// ----- the table ------------------------------------------------------------------------------

export const LOWERINGS: { readonly [P in Lowered]: Lowering<P> } = {
  neg: unary(tf.neg),
  exp: unary(tf.exp),
  log: unary(tf.log),
  sqrt: unary(tf.sqrt),
  abs: unary(tf.abs),
  // tfjs sign(NaN) is 0; IR (like Math.sign) keeps NaN.
  sign: unary((x) => tf.where(tf.isNaN(x), x, tf.sign(x))),
  sin: unary(tf.sin),
  cos: unary(tf.cos),
  reciprocal: unary(tf.reciprocal),
  sigmoid: unary(tf.sigmoid),
  tanh: unary(tf.tanh),
  stopGradient: unary(tf.clone),

  add: binary(tf.add),
  sub: binary(tf.sub),
  mul: binary(tf.mul),
  div: binary(tf.div),
  pow: binary(tf.pow),
  maximum: minMax(tf.maximum),
  minimum: minMax(tf.minimum),

  less: compare(tf.less),
  greater: compare(tf.greater),
  equal: compare(tf.equal),
  where: ([c, a, b], node, ctx) => {
    if (node.dtype === 'bool' && ctx.quirks.boolSelectBroken) {
      return tf.cast(tf.where(c!, tf.cast(a!, 'int32'), tf.cast(b!, 'int32')), 'bool');
    }
    return tf.where(c!, a!, b!);
  },

  matmul: lowerMatmul,
  sum: reduce('sum'),
  max: reduce('max'),

  reshape: ([x], node) => tf.reshape(x!, [...node.shape]),
  transpose: ([x], node) => {
    const { perm } = node.attrs;
    if (perm.every((p, i) => p === i)) return tf.clone(x!);
    if (sizeOf(node.shape) === 0) return filled(node);
    return tf.transpose(x!, [...perm]);
  },
  slice: lowerSlice,
  pad: lowerPad,
  concat: lowerConcat,
  broadcastTo: lowerBroadcastTo,

  gather: lowerGather,
  scatterAdd: lowerScatterAdd,

  cast: lowerCast,
};

/** Throws UnsupportedPrimitiveError naming the primitive and 'tfjs' when it has no lowering. */
export function checkLowered(op: string): void {
  if (!Object.hasOwn(LOWERINGS, op)) throw new UnsupportedPrimitiveError(op, 'tfjs');
}

/** Lowers one node with its primitive's lowering. */
export function lowerNode<P extends Lowered>(
  x: readonly tf.Tensor[],
  node: NodeOf<P>,
  ctx: LowerContext,
): tf.Tensor {
  const lowering: Lowering<P> = LOWERINGS[node.op];
  return lowering(x, node, ctx);
}
