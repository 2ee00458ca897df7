/**
 * Half-precision compute, emulated exactly on float32 engines.
 *
 * `emulatePrecision(graph, dtype)` rewrites a graph so that it computes what a model run with
 * PyTorch's `.half()` / `.bfloat16()` and float32 accumulation computes: every primitive is
 * evaluated in float32 from inputs that are exactly representable in `dtype`, and its output is
 * rounded to `dtype` (round to nearest, ties to even). Graph inputs are rounded where they enter,
 * float32 constants are rounded on the host, and the backward nodes that autodiff appended are
 * rounded like any other node, so gradients are rounded too.
 *
 * Primitives whose float32 output is always one of their input values (or 0, or ±1, or -inf)
 * cannot create new bits from representable inputs, so their outputs are left alone: reshape,
 * transpose, slice, concat, pad, broadcastTo, gather, where, stopGradient, neg, abs, sign,
 * maximum, minimum and max. Rounding them would be the identity.
 *
 * The rounding is a composite of primitives that every backend computes exactly (IEEE float32
 * multiply, add, subtract, divide by a power of two, compares, select), so no engine cast to a
 * half type is involved and every backend rounds a given float32 value to the same bits:
 *
 * - normal range: Veltkamp's splitting. With C = 2^s + 1 (s = 24 - p, p the significand bits of
 *   the dtype: 11 for float16, 8 for bfloat16), g = C*x, hi = g + (x - g) is x rounded to p
 *   significant bits, to nearest with ties to even. The three operations are exact scalings of
 *   each other across binades, so checking every float32 in [1, 2) and (-2, -1] (the tests do)
 *   proves it for every normal input.
 * - below the dtype's smallest normal (2^-14 / 2^-126) the grid is fixed (2^-24 / 2^-133):
 *   (x + B) - B with B = 1.5 * 2^(23-q), a float32 whose ulp is the grid step 2^-q, so float32
 *   addition rounds x to the grid, to nearest even. A zero result is x * 0 (keeps x's sign).
 * - float16 overflow: |x| >= 65520 (halfway past the largest float16, 65504) becomes ±inf.
 *   bfloat16 shares float32's exponent range: overflow to ±inf falls out of the arithmetic, and
 *   |x| >= 2^111 is scaled by 2^-32 first so that C*x cannot overflow.
 * - NaN stays NaN (x * 0), ±inf and ±0 come back unchanged.
 */
import type { Backend } from './backend.js';
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  type HostTensor,
} from './dtype.js';
import { InputError, MoreauError } from './errors.js';
import { attrsOf, type Graph, type Node } from './ir.js';
import * as ops from './ops.js';
import { GraphBuilder, type Tensor, withBuilder } from './tensor.js';

/** The dtype a model computes in: float32, or float16 / bfloat16 (emulated, see emulatePrecision). */
export type ComputeDtype = 'float32' | 'float16' | 'bfloat16';

export const COMPUTE_DTYPES: readonly ComputeDtype[] = ['float32', 'float16', 'bfloat16'];

/**
 * How a compute dtype ran: 'native' on engine kernels of that dtype, 'emulated' by rounding every
 * float32 op (emulatePrecision). float32 is always native; half precision is emulated on every
 * backend today (native kernels would need ORT's CUDA EP or tfjs-node-gpu).
 */
export type Precision = 'native' | 'emulated';

export interface ComputeMode {
  readonly computeDtype: ComputeDtype;
  readonly precision: Precision;
}

/** Validates a compute dtype option; the error names the field and the valid values. */
export function checkComputeDtype(value: unknown, field = 'computeDtype'): ComputeDtype {
  if (typeof value === 'string' && (COMPUTE_DTYPES as readonly string[]).includes(value)) {
    return value as ComputeDtype;
  }
  throw new InputError(
    `${field} must be one of ${COMPUTE_DTYPES.join(', ')}, got ${JSON.stringify(value)}`,
    undefined,
    field,
  );
}

/** Which precision a backend gives a compute dtype: native for float32, emulated otherwise (for now). */
export function precisionOf(_backend: Backend | undefined, dtype: ComputeDtype): Precision {
  return dtype === 'float32' ? 'native' : 'emulated';
}

/** The compute mode a backend runs a dtype in. */
export function computeMode(backend: Backend | undefined, dtype: ComputeDtype): ComputeMode {
  return { computeDtype: dtype, precision: precisionOf(backend, dtype) };
}

// ----- host rounding (the oracle) -------------------------------------------------------------

/** A number rounded to the dtype (to nearest, ties to even), as a float32 value. */
export function roundHost(value: number, dtype: ComputeDtype): number {
  switch (dtype) {
    case 'float32':
      return Math.fround(value);
    case 'float16':
      return float16BitsToFloat32(float32ToFloat16Bits(value));
    case 'bfloat16':
      return bfloat16BitsToFloat32(float32ToBfloat16Bits(value));
  }
}

/** Rounds float32 values to the dtype in place (NaN payloads survive); returns the array. */
export function roundHostArray(data: Float32Array, dtype: ComputeDtype): Float32Array {
  if (dtype === 'float32') return data;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isNaN(v)) data[i] = roundHost(v, dtype);
  }
  return data;
}

function roundHostTensor(t: HostTensor, dtype: ComputeDtype): HostTensor {
  return { dtype: t.dtype, shape: t.shape, data: roundHostArray(Float32Array.from(t.data), dtype) };
}

// ----- device rounding (a composite of exact primitives) --------------------------------------

const INF = Number.POSITIVE_INFINITY;

/**
 * x rounded on the fixed grid of multiples of 2^-q (|x| below the dtype's smallest normal):
 * (x + B) - B with B = 1.5 * 2^(23-q), whose float32 ulp is 2^-q, so the float32 adder rounds x to
 * the grid, to nearest even (|x| < 2^-q+23 keeps x + B in B's binade). The sign of a zero result is
 * not kept (the caller's job).
 */
function roundFixedGrid(x: Tensor, q: number): Tensor {
  const b = 1.5 * 2 ** (23 - q);
  return ops.sub(ops.add(x, b), b);
}

/** x rounded to `bits` significant bits by Veltkamp's splitting (x normal, C*x finite). */
function veltkamp(x: Tensor, bits: number): Tensor {
  const g = ops.mul(x, 2 ** (24 - bits) + 1);
  return ops.add(g, ops.sub(x, g));
}

/**
 * x (float32) rounded to float16 or bfloat16, to nearest with ties to even, as float32 values.
 * A composite of exact float32 primitives (see the file comment); float32 returns x.
 *
 * Zeros: every value the rounding sends to ±0 (|x| at most half the smallest subnormal, ±0
 * itself) takes x * 0, selected by the *second* branch of the last `where`. The first branch of
 * onnxruntime's CPU Where turns -0 into +0 (it merges the two selections with `x != 0 ? x : y`), so
 * no -0 the result keeps may pass through a first branch. NaN also takes x * 0 (NaN).
 */
export function roundTo(x: Tensor, dtype: ComputeDtype): Tensor {
  if (x.dtype !== 'float32') throw new MoreauError(`roundTo: needs a float32 tensor, got ${x.dtype}`);
  if (dtype === 'float32') return x;
  const a = ops.abs(x);
  let r: Tensor;
  let zeroBelow: number;
  if (dtype === 'float16') {
    const y = ops.where(ops.less(a, 2 ** -14), roundFixedGrid(x, 24), veltkamp(x, 11));
    r = ops.where(ops.less(a, 65520), y, ops.mul(x, INF)); // |x| >= 65520: ±inf
    zeroBelow = 2 ** -25;
  } else {
    // |x| >= 2^111 is rounded at 2^-32 times its size (exact scalings) so that C*x stays finite;
    // overflow to ±inf then comes out of the scaling back.
    const fits = ops.less(a, 2 ** 111);
    const big = 2 ** 32;
    const split = veltkamp(ops.where(fits, x, ops.mul(x, 1 / big)), 8);
    const normal = ops.where(fits, split, ops.mul(split, big));
    const y = ops.where(ops.less(a, 2 ** -126), roundFixedGrid(x, 133), normal);
    r = ops.where(ops.less(a, INF), y, x); // ±inf stays
    zeroBelow = 2 ** -134;
  }
  return ops.where(ops.greater(a, zeroBelow), r, ops.mul(x, 0));
}

// ----- the graph transform --------------------------------------------------------------------

/** Primitives whose float32 output is an input value, 0, ±1 or -inf: representable when the inputs are. */
export const PRECISION_PRESERVING: ReadonlySet<string> = new Set([
  'reshape',
  'transpose',
  'slice',
  'concat',
  'pad',
  'broadcastTo',
  'gather',
  'where',
  'stopGradient',
  'neg',
  'abs',
  'sign',
  'maximum',
  'minimum',
  'max',
]);

function needsRounding(node: Node, graph: Graph, dtype: ComputeDtype): boolean {
  if (node.dtype !== 'float32' || PRECISION_PRESERVING.has(node.op)) return false;
  if (node.op === 'cast') {
    const from = graph.nodes[node.inputs[0]!]!.dtype;
    // bool -> 0/1, float32 -> float32 (already rounded), float16 -> float32 under float16.
    return !(from === 'bool' || from === 'float32' || (from === 'float16' && dtype === 'float16'));
  }
  return true;
}

/**
 * The graph computed in `dtype` (see the file comment): rounds float32 graph inputs where they
 * enter, float32 constants on the host, and the output of every float32 node that can carry new
 * bits. Input order, names and dtypes and the outputs are unchanged. float32 returns the graph.
 */
export function emulatePrecision(graph: Graph, dtype: ComputeDtype): Graph {
  checkComputeDtype(dtype, 'dtype');
  if (dtype === 'float32') return graph;
  const b = new GraphBuilder();
  const value = new Array<Tensor>(graph.nodes.length);
  return withBuilder(b, () => {
    for (const id of graph.inputs) {
      const n = graph.nodes[id]!;
      const t = b.input(attrsOf(n, 'input').name, n.shape, n.dtype);
      value[id] = n.dtype === 'float32' ? roundTo(t, dtype) : t;
    }
    for (const n of graph.nodes) {
      if (n.op === 'input') continue;
      if (n.op === 'constant') {
        const c = graph.constants.get(String(n.attrs.constant));
        if (!c) throw new MoreauError(`emulatePrecision: constant '${n.attrs.constant}' is missing`);
        value[n.id] = b.constant(c.dtype === 'float32' ? roundHostTensor(c, dtype) : c);
        continue;
      }
      const out = b.emit(
        n.op,
        n.inputs.map((i) => value[i]!),
        n.attrs,
      );
      value[n.id] = needsRounding(n, graph, dtype) ? roundTo(out, dtype) : out;
    }
    return b.finish(
      graph.outputs.map((o) => value[o]!),
      graph.outputNames,
    );
  });
}
