/**
 * The graph IR: what tracing produces, what autodiff extends, what a backend compiles.
 *
 * A graph is a list of nodes in topological order. Every node has exactly one output with a
 * static shape and dtype. Compute dtypes are float32, int32 and bool; float16 may appear only as
 * a graph input and as a `cast` source or target (weights stored in half precision). bfloat16
 * never appears: `trace` turns bfloat16 leaves into float32 inputs and `jit` converts their data
 * on the host.
 *
 * Every primitive's inputs, attributes and semantics are in `PrimitiveAttrs` below: the contract
 * every backend lowering must honour. Broadcasting is numpy's.
 */
import type { DType, HostTensor } from './dtype.js';
import { ShapeError } from './errors.js';

/** Elementwise on float32; log/sqrt of negatives give NaN, log(0) = -inf. */
export type UnaryPrimitive =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'abs'
  | 'sign'
  | 'sin'
  | 'cos'
  | 'reciprocal'
  | 'sigmoid'
  | 'tanh';

/**
 * add sub mul div maximum minimum pow: elementwise, broadcasting, same dtype (add/sub/mul/maximum/
 * minimum also int32). less greater equal: broadcasting compare of two same-dtype inputs -> bool.
 */
export type BinaryPrimitive =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'maximum'
  | 'minimum'
  | 'pow'
  | 'less'
  | 'greater'
  | 'equal';

export type NoAttrs = Readonly<Record<string, never>>;
type ReduceAttrs = { readonly axes: readonly number[]; readonly keepDims: boolean };

/**
 * The attributes of each primitive, by name. Primitives with no attributes:
 *   unary and binary ops (above);
 *   where        (cond: bool, a, b) broadcasting -> a where cond else b
 *   matmul       (a [..., m, k], b [..., k, n]) same rank >= 2, batch dims broadcast -> [..., m, n]
 *   gather       (x [n, ...rest], indices: int32 [...idx]) -> [...idx, ...rest]; rows of axis 0
 *   stopGradient identity forward, no gradient
 */
export interface PrimitiveAttrs
  extends Record<UnaryPrimitive | BinaryPrimitive | 'where' | 'matmul' | 'gather' | 'stopGradient', NoAttrs> {
  /** The index-th graph input. */
  input: { readonly name: string; readonly index: number };
  /** Key into graph.constants (a HostTensor). */
  constant: { readonly constant: string };
  /** Axes sorted and non-negative; the sum of an empty axis is 0; empty `axes` reduces nothing. */
  sum: ReduceAttrs;
  /** As sum; the max of an empty axis is -inf. */
  max: ReduceAttrs;
  reshape: { readonly shape: readonly number[] };
  transpose: { readonly perm: readonly number[] };
  /** One entry per axis, step 1, 0 <= start <= end <= dim. */
  slice: { readonly starts: readonly number[]; readonly ends: readonly number[] };
  /** One entry per axis, non-negative, zero padding. */
  pad: { readonly before: readonly number[]; readonly after: readonly number[] };
  /** Two or more inputs joined along `axis`. */
  concat: { readonly axis: number };
  /** numpy broadcast of the input to `shape`. */
  broadcastTo: { readonly shape: readonly number[] };
  /**
   * (updates [...idx, ...rest], indices: int32 [...idx]) -> zeros [size, ...rest] with updates
   * added at their rows (duplicates add up).
   */
  scatterAdd: { readonly size: number };
  /** float -> int truncates toward zero; to bool is != 0. */
  cast: { readonly to: DType };
}

export type Primitive = keyof PrimitiveAttrs;

/** A node of primitive P: its `attrs` are P's. */
export interface NodeOf<P extends Primitive> {
  readonly id: number;
  readonly op: P;
  readonly inputs: readonly number[];
  readonly attrs: PrimitiveAttrs[P];
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** A node of any primitive; testing `op` narrows `attrs`. */
export type Node = { [P in Primitive]: NodeOf<P> }[Primitive];

/** The attributes of a node that must be an `op` node (a ShapeError otherwise). */
export function attrsOf<P extends Primitive>(node: Node, op: P): PrimitiveAttrs[P] {
  if (node.op !== op) throw new ShapeError(`node %${node.id} is '${node.op}', expected '${op}'`);
  return node.attrs as PrimitiveAttrs[P];
}

export interface ValueInfo {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export interface Graph {
  readonly nodes: readonly Node[];
  /** Node ids of the graph inputs, in call order (each is an `input` node). */
  readonly inputs: readonly number[];
  /** Node ids of the graph outputs, in order (a node may appear more than once). */
  readonly outputs: readonly number[];
  /** Output names, parallel to `outputs`. */
  readonly outputNames: readonly string[];
  readonly constants: ReadonlyMap<string, HostTensor>;
}

export function inputInfos(graph: Graph): ValueInfo[] {
  return graph.inputs.map((id) => {
    const n = graph.nodes[id]!;
    return { name: attrsOf(n, 'input').name, shape: n.shape, dtype: n.dtype };
  });
}

export function outputInfos(graph: Graph): ValueInfo[] {
  return graph.outputs.map((id, i) => {
    const n = graph.nodes[id]!;
    return { name: graph.outputNames[i]!, shape: n.shape, dtype: n.dtype };
  });
}

/** Readable JSON: one line per node with op, inputs, attrs, shape and dtype; constants by shape only. */
export function graphToJSON(graph: Graph): object {
  return {
    inputs: inputInfos(graph),
    outputs: outputInfos(graph),
    nodes: graph.nodes.map((n) => ({
      id: n.id,
      op: n.op,
      ...(n.inputs.length ? { inputs: n.inputs } : {}),
      ...(Object.keys(n.attrs).length ? { attrs: n.attrs } : {}),
      shape: n.shape,
      dtype: n.dtype,
    })),
    constants: Object.fromEntries(
      [...graph.constants].map(([k, t]) => [
        k,
        t.data.length <= 8
          ? { dtype: t.dtype, shape: t.shape, values: Array.from(t.data) }
          : { dtype: t.dtype, shape: t.shape },
      ]),
    ),
  };
}

/** Pretty text dump: `%12 = matmul(%10, %11) [4,8] float32`. */
export function graphToText(graph: Graph): string {
  const lines = graph.nodes.map((n) => {
    const attrs = Object.entries(n.attrs)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(',')}]` : String(v)}`)
      .join(' ');
    const args = n.inputs.map((i) => `%${i}`).join(', ');
    return `%${n.id} = ${n.op}(${args})${attrs ? ` {${attrs}}` : ''} : [${n.shape.join(',')}] ${n.dtype}`;
  });
  lines.push(`return ${graph.outputs.map((o, i) => `${graph.outputNames[i]}=%${o}`).join(', ')}`);
  return lines.join('\n');
}

/** A stable structural hash of a graph (FNV-1a over its JSON and constant bytes). */
export function graphHash(graph: Graph): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x5bd1e995;
  const feed = (s: string) => {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
      h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
    }
  };
  feed(JSON.stringify({ n: graph.nodes, i: graph.inputs, o: graph.outputs, names: graph.outputNames }));
  for (const [k, t] of graph.constants) {
    feed(`${k}:${t.dtype}:${t.shape.join('x')}`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    for (let i = 0; i < bytes.length; i++) {
      h1 = Math.imul(h1 ^ bytes[i]!, 0x01000193) >>> 0;
      h2 = Math.imul(h2 ^ bytes[i]!, 0x5bd1e995) >>> 0;
    }
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}
