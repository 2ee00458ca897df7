/**
 * IR graph -> ONNX ModelProto (as a plain object for protobufjs). One lowering per primitive, in
 * the order of ir.ts. Opset 17 (ScatterElements with reduction 'add' needs >= 16).
 *
 * Representation choices:
 * - bfloat16 values are carried as float32 (onnxruntime-node accepts no bfloat16 tensors from JS):
 *   bf16 inputs / constants / frozen weights are widened on the host, a cast *to* bfloat16 rounds
 *   through Cast(BFLOAT16) -> Cast(FLOAT), and bf16 outputs are narrowed back on the host.
 * - float16 inputs are fed as FLOAT16 tensors; compute is float32, int32 and bool.
 * - Every node with a zero-size output becomes an empty constant, so ORT never runs a kernel on a
 *   zero-size tensor; nodes that turn empty inputs into non-empty outputs (sum, max, matmul with
 *   k = 0, pad, concat, scatterAdd of no updates) are folded the same way.
 * - Export with symbolic sizes (`options.symbolic`, see symbolic.ts): a size that varies is read at
 *   run time from the graph input that carries it (Shape), combined with Mul / Add where it is a
 *   product or a sum, and fed to Reshape / Expand / Slice / Pad / ConstantOfShape as a tensor; the
 *   file declares such dimensions by name (dim_param). Only statically empty values are folded.
 */
import type { DType, Graph, HostTensor, Node, NodeOf, Primitive } from './core.js';
import {
  bfloat16ToFloat32,
  broadcastShapes,
  float32ToFloat16Bits,
  MoreauError,
  sameShape,
  sizeOf,
  UnsupportedPrimitiveError,
} from './core.js';
import { AttributeType, DataType } from './proto.js';
import { type Dim, dimKey, dimsEqual, isStatic, type SymbolicGraph } from './symbolic.js';

export const OPSET = 17;
export const IR_VERSION = 8;

/** ONNX element type carrying each IR dtype (bfloat16 travels as float32). */
export function onnxType(dtype: DType): number {
  switch (dtype) {
    case 'float32':
    case 'bfloat16':
      return DataType.FLOAT;
    case 'float16':
      return DataType.FLOAT16;
    case 'int32':
      return DataType.INT32;
    case 'bool':
      return DataType.BOOL;
  }
}

export interface LowerOptions {
  /** ONNX names of the graph inputs, by input index. */
  readonly inputNames: readonly string[];
  /** ONNX names of the graph outputs, by output index (must be unique when `inlineAll`). */
  readonly outputNames: readonly string[];
  /** Inputs baked in as initializers, by input index. */
  readonly frozen?: ReadonlyMap<number, HostTensor>;
  /**
   * Standalone model (export): declare every input (even zero-size ones) and every output (even
   * zero-size or repeated ones). Otherwise zero-size inputs are folded into constants and
   * zero-size / repeated outputs are left for the caller to synthesise on the host.
   */
  readonly inlineAll?: boolean;
  readonly graphName?: string;
  readonly docString?: string;
  /**
   * Export with symbolic sizes: `graph` must be `symbolic.graph`; varying sizes are computed at run
   * time and named in the file by `dimParam(symbol)` (default: the symbol).
   */
  readonly symbolic?: SymbolicGraph;
  readonly dimParam?: (symbol: string) => string;
  /**
   * int32 inputs the file declares as int64 (by input index), cast to int32 on entry: token ids and
   * masks as the ONNX ecosystem passes them.
   */
  readonly int64Inputs?: ReadonlySet<number>;
  /** broadcastTo nodes to lower to nothing (default: computed from this graph's shapes). */
  readonly elidable?: ReadonlySet<number>;
}

export interface LoweredModel {
  /** A ModelProto-shaped object for protobufjs. */
  readonly model: Record<string, unknown>;
  /** Graph inputs fed at run time: graph input index and ONNX input name. */
  readonly feeds: readonly { readonly index: number; readonly name: string }[];
  /**
   * Per graph output: the ONNX output to read (repeated names are repeated outputs), or null for
   * a zero-size output the caller builds on the host.
   */
  readonly fetches: readonly (string | null)[];
}

type AttrValue = number | string | readonly number[] | { tensor: Record<string, unknown> };

interface OnnxNode {
  readonly opType: string;
  readonly input: string[];
  readonly output: string[];
  readonly name: string;
  readonly attribute?: Record<string, unknown>[];
}

function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A TensorProto holding a host tensor (raw little-endian bytes; bfloat16 widened to float32). */
export function tensorProto(name: string, t: HostTensor): Record<string, unknown> {
  let data: ArrayBufferView = t.data;
  if (t.dtype === 'bfloat16') data = bfloat16ToFloat32(t.data as Uint16Array);
  else if (t.dtype === 'bool') data = Uint8Array.from(t.data as Uint8Array, (v) => (v ? 1 : 0));
  return {
    name,
    dims: [...t.shape],
    dataType: onnxType(t.dtype),
    ...(data.byteLength ? { rawData: bytesOf(data) } : {}),
  };
}

function valueInfo(
  name: string,
  elemType: number,
  shape: readonly Dim[],
  dimParam: (d: Dim) => string = dimKey,
): Record<string, unknown> {
  const dim = shape.map((d) => (isStatic(d) ? { dimValue: d } : { dimParam: dimParam(d) }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

function attribute(name: string, v: AttrValue): Record<string, unknown> {
  if (typeof v === 'number') {
    return Number.isInteger(v)
      ? { name, type: AttributeType.INT, i: v }
      : { name, type: AttributeType.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: [...v] };
  return { name, type: AttributeType.TENSOR, t: (v as { tensor: Record<string, unknown> }).tensor };
}

class OnnxGraph {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: Record<string, unknown>[] = [];
  private counter = 0;
  private readonly i64Cache = new Map<string, string>();

  fresh(prefix: string): string {
    return `${prefix}__${this.counter++}`;
  }

  op(opType: string, input: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    const out = output ?? this.fresh(opType.toLowerCase());
    const attribute_ = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    this.nodes.push({
      opType,
      input,
      output: [out],
      name: `${opType}_${this.nodes.length}`,
      ...(attribute_.length ? { attribute: attribute_ } : {}),
    });
    return out;
  }

  initializer(name: string, t: HostTensor): string {
    this.initializers.push(tensorProto(name, t));
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, pads), shared between nodes. */
  i64(values: readonly number[]): string {
    const key = values.join(',');
    let name = this.i64Cache.get(key);
    if (!name) {
      name = this.fresh('i64');
      const data = BigInt64Array.from(values, (v) => BigInt(v));
      this.initializers.push({
        name,
        dims: [values.length],
        dataType: DataType.INT64,
        rawData: bytesOf(data),
      });
      this.i64Cache.set(key, name);
    }
    return name;
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    return this.initializer(this.fresh('scalar'), {
      dtype: 'float32',
      shape: [],
      data: Float32Array.of(value),
    });
  }

  /**
   * Sizes as a 1-D int64 tensor: a shared constant when static, else computed at run time by
   * `symbolicSizes` (set for an export with symbolic sizes).
   */
  sizes(dims: readonly Dim[]): string {
    if (dims.every(isStatic)) return this.i64(dims);
    if (!this.symbolicSizes)
      throw new MoreauError('ort: internal error: symbolic sizes outside a symbolic export');
    return this.symbolicSizes(dims);
  }

  symbolicSizes?: (dims: readonly Dim[]) => string;

  /** A tensor of `shape` filled with `value` (ConstantOfShape: no big initializer). */
  fill(dtype: DType, shape: readonly Dim[], value: number): string {
    if (shape.every(isStatic) && sizeOf(shape) === 0) return this.empty(dtype, shape);
    let one: HostTensor;
    if (dtype === 'int32') one = { dtype, shape: [1], data: Int32Array.of(value) };
    else if (dtype === 'bool') one = { dtype, shape: [1], data: Uint8Array.of(value ? 1 : 0) };
    else if (dtype === 'float16')
      one = { dtype, shape: [1], data: Uint16Array.of(float32ToFloat16Bits(value)) };
    else one = { dtype: 'float32', shape: [1], data: Float32Array.of(value) };
    return this.op('ConstantOfShape', [this.sizes(shape)], { value: { tensor: tensorProto('value', one) } });
  }

  /** An empty (zero-size) constant. */
  empty(dtype: DType, shape: readonly number[]): string {
    const name = this.fresh('empty');
    this.initializers.push({ name, dims: [...shape], dataType: onnxType(dtype) });
    return name;
  }
}

/** Throws UnsupportedPrimitiveError for the first primitive this backend cannot lower. */
export function checkSupported(graph: Graph, backend: string): void {
  for (const n of graph.nodes) {
    if (n.op !== 'input' && !Object.hasOwn(LOWERINGS, n.op))
      throw new UnsupportedPrimitiveError(n.op, backend);
  }
}

/** Nodes that some output depends on. */
function liveNodes(graph: Graph): Set<number> {
  const live = new Set<number>(graph.outputs);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    if (live.has(i)) for (const j of graph.nodes[i]!.inputs) live.add(j);
  }
  return live;
}

/** Primitives that broadcast their operands like ONNX's multidirectional broadcasting. */
const BROADCASTING: ReadonlySet<Primitive> = new Set<Primitive>([
  'add',
  'sub',
  'mul',
  'div',
  'maximum',
  'minimum',
  'pow',
  'less',
  'greater',
  'equal',
  'where',
]);

/**
 * broadcastTo nodes whose every consumer is a broadcasting elementwise op that produces the same
 * result from the un-expanded operand (its other operands already span the target shape): they
 * lower to nothing, so e.g. the gradient of a sum is never materialised at full size.
 */
export function elidableBroadcasts(graph: Graph, live: Set<number> = liveNodes(graph)): Set<number> {
  const consumers = new Map<number, Node[]>();
  for (const n of graph.nodes) {
    if (!live.has(n.id)) continue;
    for (const j of n.inputs) {
      const list = consumers.get(j);
      if (list) list.push(n);
      else consumers.set(j, [n]);
    }
  }
  const outputs = new Set(graph.outputs);
  const out = new Set<number>();
  for (const n of graph.nodes) {
    if (n.op !== 'broadcastTo' || !live.has(n.id) || outputs.has(n.id)) continue;
    const src = graph.nodes[n.inputs[0]!]!;
    if (sizeOf(src.shape) === 0 || sizeOf(n.shape) === 0) continue;
    const users = consumers.get(n.id) ?? [];
    const ok =
      users.length > 0 &&
      users.every((c) => {
        if (!BROADCASTING.has(c.op)) return false;
        // They broadcast, as src broadcasts to n.shape: does the result still span c.shape?
        const shapes = c.inputs.map((j) => (j === n.id ? src.shape : graph.nodes[j]!.shape));
        return sameShape(broadcastShapes('ort', ...shapes), c.shape);
      });
    if (ok) out.add(n.id);
  }
  return out;
}

export function lowerGraph(graph: Graph, options: LowerOptions, backend = 'ort'): LoweredModel {
  checkSupported(graph, backend);
  const sym = options.symbolic;
  if (sym && sym.graph !== graph) {
    throw new MoreauError('ort: internal error: options.symbolic describes another graph');
  }
  const g = new OnnxGraph();
  const names = new Map<number, string>();
  const live = liveNodes(graph);
  const inlineAll = options.inlineAll ?? false;
  const graphInputs: Record<string, unknown>[] = [];
  const feeds: { index: number; name: string }[] = [];
  const val = (id: number) => {
    const n = names.get(id);
    if (n === undefined)
      throw new MoreauError(`ort: internal error: value %${id} used before it was lowered`);
    return n;
  };
  const shape = (id: number): readonly Dim[] => sym?.shapes[id] ?? graph.nodes[id]!.shape;
  // Empty means statically empty: a symbolic size may be 0 at run time, and ONNX handles that.
  const isEmpty = (id: number) => shape(id).some((d) => d === 0);
  const attr = (node: Node, key: string): readonly Dim[] => {
    const a = sym?.attrs.get(node.id)?.[key];
    if (a) return a;
    const v = (node.attrs as Record<string, unknown>)[key];
    return Array.isArray(v) ? (v as number[]) : [v as number];
  };
  const elided = options.elidable ?? elidableBroadcasts(graph, live);
  const dimName = (d: Dim) => (isStatic(d) ? String(d) : d.format(options.dimParam ?? ((s2) => s2)));
  const int64 = options.int64Inputs ?? new Set<number>();
  if (sym?.dynamic) g.symbolicSizes = symbolicSizes(g, sym, options.inputNames);

  for (const node of graph.nodes) {
    if (node.op === 'input') {
      const index = Number(node.attrs.index);
      const name = options.inputNames[index] ?? `input_${index}`;
      const frozen = options.frozen?.get(index);
      if (frozen) {
        if (!sameShape(frozen.shape, node.shape)) {
          throw new MoreauError(
            `ort: frozen input ${index} ('${node.attrs.name}') has shape [${frozen.shape.join(', ')}], the graph expects [${node.shape.join(', ')}]`,
          );
        }
        if (frozen.dtype !== node.dtype && !(frozen.dtype === 'bfloat16' && node.dtype === 'float32')) {
          throw new MoreauError(
            `ort: frozen input ${index} ('${node.attrs.name}') is ${frozen.dtype}, the graph expects ${node.dtype}`,
          );
        }
        if (live.has(node.id) || inlineAll) names.set(node.id, g.initializer(name, frozen));
      } else if (!inlineAll && !live.has(node.id)) {
        // An unused input is neither declared nor fed.
      } else if (!inlineAll && isEmpty(node.id)) {
        names.set(node.id, g.empty(node.dtype, node.shape));
      } else if (int64.has(index)) {
        if (node.dtype !== 'int32')
          throw new MoreauError(
            `ort: input ${index} ('${name}') is ${node.dtype}; only int32 inputs can be int64`,
          );
        graphInputs.push(valueInfo(name, DataType.INT64, shape(node.id), dimName));
        feeds.push({ index, name });
        names.set(node.id, g.op('Cast', [name], { to: DataType.INT32 }));
      } else {
        graphInputs.push(valueInfo(name, onnxType(node.dtype), shape(node.id), dimName));
        feeds.push({ index, name });
        names.set(node.id, name);
      }
      continue;
    }
    if (!live.has(node.id)) continue;
    if (isEmpty(node.id)) {
      names.set(node.id, g.empty(node.dtype, node.shape));
      continue;
    }
    if (elided.has(node.id)) {
      names.set(node.id, val(node.inputs[0]!));
      continue;
    }
    names.set(node.id, lowerNode(node, { g, graph, val, isEmpty, shape, attr }));
  }

  // Outputs: an Identity per output name (ORT folds them away).
  const graphOutputs: Record<string, unknown>[] = [];
  const fetches: (string | null)[] = [];
  const byNode = new Map<number, string>();
  graph.outputs.forEach((id, i) => {
    const node = graph.nodes[id]!;
    if (!inlineAll) {
      if (isEmpty(id)) {
        fetches.push(null);
        return;
      }
      const seen = byNode.get(id);
      if (seen) {
        fetches.push(seen);
        return;
      }
    }
    const name = options.outputNames[i] ?? `output_${i}`;
    g.op('Identity', [val(id)], {}, name);
    graphOutputs.push(valueInfo(name, onnxType(node.dtype), shape(id), dimName));
    byNode.set(id, name);
    fetches.push(name);
  });

  const model = {
    irVersion: IR_VERSION,
    producerName: 'moreau',
    producerVersion: '0.1.0',
    opsetImport: [{ domain: '', version: OPSET }],
    ...(options.docString ? { docString: options.docString } : {}),
    graph: {
      name: options.graphName ?? 'moreau',
      node: g.nodes,
      initializer: g.initializers,
      input: graphInputs,
      output: graphOutputs,
    },
  };
  return { model, feeds, fetches };
}

/**
 * Run-time sizes of a symbolic export: each symbol is read once from the graph input that carries it
 * (Shape with start / end: a 1-D int64 of one element), each polynomial is built from them with Mul
 * and Add, and a shape is the Concat of its dimensions (runs of static ones as one constant). All
 * cached, so a size used by many nodes is computed once.
 */
function symbolicSizes(
  g: OnnxGraph,
  sym: SymbolicGraph,
  inputNames: readonly string[],
): (dims: readonly Dim[]) => string {
  const symbolValue = new Map<string, string>();
  const dimValue = new Map<string, string>();
  const shapeValue = new Map<string, string>();
  const readSymbol = (s: string): string => {
    let v = symbolValue.get(s);
    if (!v) {
      const src = sym.sources.find((x) => x.symbol === s)!;
      const input = inputNames[src.input] ?? `input_${src.input}`;
      v = g.op('Shape', [input], { start: src.axis, end: src.axis + 1 });
      symbolValue.set(s, v);
    }
    return v;
  };
  const one = (d: Dim): string => {
    if (isStatic(d)) return g.i64([d]);
    const key = d.key;
    let v = dimValue.get(key);
    if (!v) {
      let sum: string | undefined;
      for (const [mono, c] of d.terms) {
        let term: string | undefined;
        for (const s of mono === '' ? [] : mono.split('*')) {
          term = term === undefined ? readSymbol(s) : g.op('Mul', [term, readSymbol(s)]);
        }
        if (term === undefined) term = g.i64([c]);
        else if (c !== 1) term = g.op('Mul', [term, g.i64([c])]);
        sum = sum === undefined ? term : g.op('Add', [sum, term]);
      }
      v = sum ?? g.i64([0]);
      dimValue.set(key, v);
    }
    return v;
  };
  return (dims) => {
    const key = dims.map(dimKey).join(',');
    let v = shapeValue.get(key);
    if (!v) {
      const parts: string[] = [];
      let run: number[] = [];
      for (const d of dims) {
        if (isStatic(d)) {
          run.push(d);
          continue;
        }
        if (run.length) parts.push(g.i64(run));
        run = [];
        parts.push(one(d));
      }
      if (run.length) parts.push(g.i64(run));
      v = parts.length === 1 ? parts[0]! : g.op('Concat', parts, { axis: 0 });
      shapeValue.set(key, v);
    }
    return v;
  };
}

/** What a lowering works with: the ONNX graph being built and the IR values lowered so far. */
interface LowerContext {
  readonly g: OnnxGraph;
  readonly graph: Graph;
  /** ONNX name of an IR value. */
  readonly val: (id: number) => string;
  /** Whether an IR value has no elements (statically). */
  readonly isEmpty: (id: number) => boolean;
  /** An IR value's shape, symbolic where the export leaves sizes open. */
  readonly shape: (id: number) => readonly Dim[];
  /** A size attribute of a node (reshape.shape, slice.starts, ...), symbolic where sizes are open. */
  readonly attr: (node: Node, key: string) => readonly Dim[];
}

/** Primitives with a lowering (graph inputs become ONNX graph inputs or initializers in lowerGraph). */
type Lowered = Exclude<Primitive, 'input'>;
/** Lowers one node; returns the ONNX name of its value. */
type Lowering<P extends Lowered = Lowered> = (node: NodeOf<P>, c: LowerContext) => string;

type Inputs = Pick<Node, 'inputs'>;
/** The ONNX name of a node's first input, its IR node, and an Identity of it. */
const x = (node: Inputs, c: LowerContext) => c.val(node.inputs[0]!);
const inNode = (node: Inputs, c: LowerContext) => c.graph.nodes[node.inputs[0]!]!;
const identity = (node: Inputs, c: LowerContext) => c.g.op('Identity', [x(node, c)]);

const unary =
  (opType: string): Lowering =>
  (node, c) =>
    c.g.op(opType, [x(node, c)]);

const binary =
  (opType: string): Lowering =>
  (node, c) =>
    c.g.op(opType, [c.val(node.inputs[0]!), c.val(node.inputs[1]!)]);

/** ONNX Less / Greater take no bool inputs: bool operands are compared as int32. */
const compare =
  (opType: string): Lowering =>
  (node, c) => {
    let l = c.val(node.inputs[0]!);
    let r = c.val(node.inputs[1]!);
    if (inNode(node, c).dtype === 'bool') {
      l = c.g.op('Cast', [l], { to: DataType.INT32 });
      r = c.g.op('Cast', [r], { to: DataType.INT32 });
    }
    return c.g.op(opType, [l, r]);
  };

const reduce: Lowering<'sum' | 'max'> = (node, c) => {
  const { g } = c;
  const { axes } = node.attrs;
  if (axes.length === 0) return identity(node, c);
  if (c.isEmpty(node.inputs[0]!)) {
    // Reducing an empty axis: the identity of the reduction.
    return g.fill(node.dtype, c.shape(node.id), node.op === 'sum' ? 0 : Number.NEGATIVE_INFINITY);
  }
  const keepdims = node.attrs.keepDims ? 1 : 0;
  if (node.op === 'sum') return g.op('ReduceSum', [x(node, c), g.i64(axes)], { keepdims });
  // ReduceMax skips NaN on CPU; IR max propagates it. A slice's sum of squares is NaN exactly
  // when the slice holds a NaN (squares are >= 0, so infinities cannot cancel into NaN), and
  // it is one fused pass with a reduced-size result (no full-size IsNaN mask).
  const m = g.op('ReduceMax', [x(node, c)], { axes, keepdims });
  const sq = g.op('ReduceSumSquare', [x(node, c)], { axes, keepdims });
  return g.op('Where', [g.op('IsNaN', [sq]), g.scalar(Number.NaN), m]);
};

/** One lowering per primitive, in the order of core's ir.ts. */
const LOWERINGS: { readonly [P in Lowered]: Lowering<P> } = {
  constant: (node, { g, graph }) => {
    const t = graph.constants.get(node.attrs.constant);
    if (!t) throw new MoreauError(`ort: constant '${node.attrs.constant}' is missing from graph.constants`);
    return g.initializer(g.fresh(`const_${node.attrs.constant}`), t);
  },
  neg: unary('Neg'),
  exp: unary('Exp'),
  log: unary('Log'),
  sqrt: unary('Sqrt'),
  abs: unary('Abs'),
  sign: unary('Sign'),
  sin: unary('Sin'),
  cos: unary('Cos'),
  reciprocal: unary('Reciprocal'),
  sigmoid: unary('Sigmoid'),
  tanh: unary('Tanh'),
  stopGradient: identity,

  add: binary('Add'),
  sub: binary('Sub'),
  mul: binary('Mul'),
  div: binary('Div'),
  maximum: binary('Max'),
  minimum: binary('Min'),
  pow: binary('Pow'),
  less: compare('Less'),
  greater: compare('Greater'),
  equal: binary('Equal'),
  where: (node, { g, val }) => {
    const [c, a, b] = node.inputs.map(val) as [string, string, string];
    if (node.dtype !== 'bool') return g.op('Where', [c, a, b]);
    // onnxruntime's CPU Where has no bool kernel: select as uint8.
    const u8 = (v: string) => g.op('Cast', [v], { to: DataType.UINT8 });
    return g.op('Cast', [g.op('Where', [c, u8(a), u8(b)])], { to: DataType.BOOL });
  },

  matmul: (node, { g, val, isEmpty, shape }) => {
    const [a, b] = node.inputs as [number, number];
    // k = 0: the product is all zeros.
    if (isEmpty(a) || isEmpty(b)) return g.fill(node.dtype, shape(node.id), 0);
    return g.op('MatMul', [val(a), val(b)]);
  },
  sum: reduce,
  max: reduce,

  reshape: (node, c) => c.g.op('Reshape', [x(node, c), c.g.sizes(c.attr(node, 'shape'))]),
  transpose: (node, c) => {
    const { perm } = node.attrs;
    if (perm.every((p, i) => p === i)) return identity(node, c);
    return c.g.op('Transpose', [x(node, c)], { perm });
  },
  slice: (node, c) => {
    const starts = c.attr(node, 'starts');
    const ends = c.attr(node, 'ends');
    const dims = c.shape(node.inputs[0]!);
    const axes: number[] = [];
    for (let i = 0; i < dims.length; i++) {
      if (starts[i] !== 0 || dimKey(ends[i]!) !== dimKey(dims[i]!)) axes.push(i);
    }
    if (axes.length === 0) return identity(node, c);
    const { g } = c;
    return g.op('Slice', [
      x(node, c),
      g.sizes(axes.map((i) => starts[i]!)),
      g.sizes(axes.map((i) => ends[i]!)),
      g.i64(axes),
    ]);
  },
  pad: (node, c) => {
    const pads = [...c.attr(node, 'before'), ...c.attr(node, 'after')];
    if (c.isEmpty(node.inputs[0]!)) return c.g.fill(node.dtype, c.shape(node.id), 0);
    if (pads.every((p) => p === 0)) return identity(node, c);
    return c.g.op('Pad', [x(node, c), c.g.sizes(pads)], { mode: 'constant' });
  },
  concat: (node, { g, val, isEmpty }) => {
    // Only statically empty parts are dropped; ONNX concatenates run-time empty ones (a cache of length 0).
    const parts = node.inputs.filter((id) => !isEmpty(id));
    if (parts.length === 1) return g.op('Identity', [val(parts[0]!)]);
    return g.op('Concat', parts.map(val), { axis: node.attrs.axis });
  },
  broadcastTo: (node, c) => {
    const target = c.attr(node, 'shape');
    if (dimsEqual(c.shape(node.inputs[0]!), target)) return identity(node, c);
    return c.g.op('Expand', [x(node, c), c.g.sizes(target)]);
  },

  gather: (node, { g, val }) => g.op('Gather', [val(node.inputs[0]!), val(node.inputs[1]!)], { axis: 0 }),
  scatterAdd: lowerScatterAdd,

  cast: (node, c) => lowerCast(c.g, inNode(node, c).dtype, node.attrs.to, x(node, c)),
};

/** Every primitive this backend lowers. */
export const SUPPORTED_PRIMITIVES: ReadonlySet<string> = new Set(['input', ...Object.keys(LOWERINGS)]);

function lowerNode<P extends Lowered>(node: NodeOf<P>, c: LowerContext): string {
  const lowering: Lowering<P> = LOWERINGS[node.op];
  return lowering(node, c);
}

/**
 * scatterAdd(updates [...idx, ...rest], indices [...idx]) -> zeros [size, ...rest] plus updates.
 *
 * Lowered as ScatterElements(axis 0, reduction 'add') on [size, R] with the indices broadcast to
 * [N, R], not as ScatterND: onnxruntime's CPU ScatterND splits the update rows across threads,
 * which races when indices repeat (onnxruntime#18048), while ScatterElements only parallelises
 * across the independent inner positions.
 */
function lowerScatterAdd(node: NodeOf<'scatterAdd'>, c: LowerContext): string {
  const { g, graph, val, isEmpty } = c;
  const [uid, iid] = node.inputs as [number, number];
  if (![node.id, uid, iid].every((id) => c.shape(id).every(isStatic))) {
    throw new MoreauError(
      `ort: scatterAdd %${node.id} has symbolic sizes, which the ONNX export does not lower`,
    );
  }
  if (isEmpty(uid)) return g.fill(node.dtype, node.shape, 0);
  const idxShape = graph.nodes[iid]!.shape;
  const n = sizeOf(idxShape);
  const size = node.shape[0]!;
  const r = sizeOf(node.shape.slice(1));
  const updates = g.op('Reshape', [val(uid), g.i64([n, r])]);
  let idx = g.op('Reshape', [val(iid), g.i64([n, 1])]);
  if (r !== 1) idx = g.op('Expand', [idx, g.i64([n, r])]);
  const zeros = g.fill(node.dtype, [size, r], 0);
  const scattered = g.op('ScatterElements', [zeros, idx, updates], { axis: 0, reduction: 'add' });
  return g.op('Reshape', [scattered, g.i64(node.shape)]);
}

function lowerCast(g: OnnxGraph, from: DType, to: DType, x: string): string {
  // bfloat16 travels as float32, so a bf16 source is a float32 source.
  const src: DType = from === 'bfloat16' ? 'float32' : from;
  if (to === 'bfloat16') {
    if (from === 'bfloat16') return g.op('Identity', [x]);
    const f = src === 'float32' ? x : g.op('Cast', [x], { to: DataType.FLOAT });
    return g.op('Cast', [g.op('Cast', [f], { to: DataType.BFLOAT16 })], { to: DataType.FLOAT });
  }
  if (src === to) return g.op('Identity', [x]);
  return g.op('Cast', [x], { to: onnxType(to) });
}
