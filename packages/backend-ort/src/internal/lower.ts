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
 */
import type { DType, Graph, HostTensor, Node } from './core.js';
import {
  bfloat16ToFloat32,
  float32ToFloat16Bits,
  MoreauError,
  sizeOf,
  UnsupportedPrimitiveError,
} from './core.js';
import { AttributeType, DataType } from './proto.js';

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

const UNARY: Record<string, string> = {
  neg: 'Neg',
  exp: 'Exp',
  log: 'Log',
  sqrt: 'Sqrt',
  abs: 'Abs',
  sign: 'Sign',
  sin: 'Sin',
  cos: 'Cos',
  reciprocal: 'Reciprocal',
  sigmoid: 'Sigmoid',
  tanh: 'Tanh',
};

const BINARY: Record<string, string> = {
  add: 'Add',
  sub: 'Sub',
  mul: 'Mul',
  div: 'Div',
  maximum: 'Max',
  minimum: 'Min',
  pow: 'Pow',
  less: 'Less',
  greater: 'Greater',
  equal: 'Equal',
};

const OTHER = [
  'input',
  'constant',
  'where',
  'matmul',
  'sum',
  'max',
  'reshape',
  'transpose',
  'slice',
  'pad',
  'concat',
  'broadcastTo',
  'gather',
  'scatterAdd',
  'cast',
  'stopGradient',
];

/** Every primitive this backend lowers. */
export const SUPPORTED_PRIMITIVES: ReadonlySet<string> = new Set([
  ...Object.keys(UNARY),
  ...Object.keys(BINARY),
  ...OTHER,
]);

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

function valueInfo(name: string, dtype: DType, shape: readonly number[]): Record<string, unknown> {
  return {
    name,
    type: { tensorType: { elemType: onnxType(dtype), shape: { dim: shape.map((d) => ({ dimValue: d })) } } },
  };
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

  /** A tensor of `shape` filled with `value` (ConstantOfShape: no big initializer). */
  fill(dtype: DType, shape: readonly number[], value: number): string {
    if (sizeOf(shape) === 0) return this.empty(dtype, shape);
    let one: HostTensor;
    if (dtype === 'int32') one = { dtype, shape: [1], data: Int32Array.of(value) };
    else if (dtype === 'bool') one = { dtype, shape: [1], data: Uint8Array.of(value ? 1 : 0) };
    else if (dtype === 'float16')
      one = { dtype, shape: [1], data: Uint16Array.of(float32ToFloat16Bits(value)) };
    else one = { dtype: 'float32', shape: [1], data: Float32Array.of(value) };
    return this.op('ConstantOfShape', [this.i64(shape)], { value: { tensor: tensorProto('value', one) } });
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
    if (!SUPPORTED_PRIMITIVES.has(n.op)) throw new UnsupportedPrimitiveError(n.op, backend);
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

const nums = (a: unknown) => a as readonly number[];

/** Primitives that broadcast their operands like ONNX's multidirectional broadcasting. */
const BROADCASTING = new Set([...Object.keys(BINARY), 'where']);

/** numpy broadcast of shapes, or undefined when they do not broadcast. */
function broadcastOf(shapes: readonly (readonly number[])[]): number[] | undefined {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const d = s[i]!;
      const k = rank - s.length + i;
      if (d === out[k] || d === 1) continue;
      if (out[k] !== 1) return undefined;
      out[k] = d;
    }
  }
  return out;
}

/**
 * broadcastTo nodes whose every consumer is a broadcasting elementwise op that produces the same
 * result from the un-expanded operand (its other operands already span the target shape): they
 * lower to nothing, so e.g. the gradient of a sum is never materialised at full size.
 */
function elidableBroadcasts(graph: Graph, live: Set<number>): Set<number> {
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
        const shapes = c.inputs.map((j) => (j === n.id ? src.shape : graph.nodes[j]!.shape));
        const b = broadcastOf(shapes);
        return b !== undefined && b.length === c.shape.length && b.every((d, i) => d === c.shape[i]);
      });
    if (ok) out.add(n.id);
  }
  return out;
}

export function lowerGraph(graph: Graph, options: LowerOptions, backend = 'ort'): LoweredModel {
  checkSupported(graph, backend);
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
  const isEmpty = (id: number) => sizeOf(graph.nodes[id]!.shape) === 0;
  const elided = elidableBroadcasts(graph, live);

  for (const node of graph.nodes) {
    if (node.op === 'input') {
      const index = Number(node.attrs.index);
      const name = options.inputNames[index] ?? `input_${index}`;
      const frozen = options.frozen?.get(index);
      if (frozen) {
        if (frozen.shape.length !== node.shape.length || frozen.shape.some((d, i) => d !== node.shape[i])) {
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
      } else {
        graphInputs.push(valueInfo(name, node.dtype, node.shape));
        feeds.push({ index, name });
        names.set(node.id, name);
      }
      continue;
    }
    if (!live.has(node.id)) continue;
    if (sizeOf(node.shape) === 0) {
      names.set(node.id, g.empty(node.dtype, node.shape));
      continue;
    }
    if (elided.has(node.id)) {
      names.set(node.id, val(node.inputs[0]!));
      continue;
    }
    names.set(node.id, lowerNode(g, graph, node, val, isEmpty));
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
    graphOutputs.push(valueInfo(name, node.dtype, node.shape));
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

function lowerNode(
  g: OnnxGraph,
  graph: Graph,
  node: Node,
  val: (id: number) => string,
  isEmpty: (id: number) => boolean,
): string {
  const ins = node.inputs;
  const inNode = (k: number) => graph.nodes[ins[k]!]!;
  const x = () => val(ins[0]!);
  const a = node.attrs;

  const unary = UNARY[node.op];
  if (unary) return g.op(unary, [x()]);
  const binary = BINARY[node.op];
  if (binary) {
    let l = val(ins[0]!);
    let r = val(ins[1]!);
    // ONNX Less / Greater take no bool inputs: compare as int32.
    if ((node.op === 'less' || node.op === 'greater') && inNode(0).dtype === 'bool') {
      l = g.op('Cast', [l], { to: DataType.INT32 });
      r = g.op('Cast', [r], { to: DataType.INT32 });
    }
    return g.op(binary, [l, r]);
  }

  switch (node.op) {
    case 'constant': {
      const t = graph.constants.get(String(a.constant));
      if (!t) throw new MoreauError(`ort: constant '${a.constant}' is missing from graph.constants`);
      return g.initializer(g.fresh(`const_${a.constant}`), t);
    }
    case 'stopGradient':
      return g.op('Identity', [x()]);
    case 'where': {
      if (node.dtype !== 'bool') return g.op('Where', [val(ins[0]!), val(ins[1]!), val(ins[2]!)]);
      // onnxruntime's CPU Where has no bool kernel: select as uint8.
      const u8 = (k: number) => g.op('Cast', [val(ins[k]!)], { to: DataType.UINT8 });
      return g.op('Cast', [g.op('Where', [val(ins[0]!), u8(1), u8(2)])], { to: DataType.BOOL });
    }
    case 'matmul':
      // k = 0: the product is all zeros.
      if (isEmpty(ins[0]!) || isEmpty(ins[1]!)) return g.fill(node.dtype, node.shape, 0);
      return g.op('MatMul', [val(ins[0]!), val(ins[1]!)]);
    case 'sum':
    case 'max': {
      const axes = nums(a.axes);
      if (axes.length === 0) return g.op('Identity', [x()]);
      if (isEmpty(ins[0]!)) {
        // Reducing an empty axis: the identity of the reduction.
        return g.fill(node.dtype, node.shape, node.op === 'sum' ? 0 : Number.NEGATIVE_INFINITY);
      }
      const keepdims = a.keepDims ? 1 : 0;
      if (node.op === 'sum') return g.op('ReduceSum', [x(), g.i64(axes)], { keepdims });
      // ReduceMax skips NaN on CPU; IR max propagates it. A slice's sum of squares is NaN exactly
      // when the slice holds a NaN (squares are >= 0, so infinities cannot cancel into NaN), and
      // it is one fused pass with a reduced-size result (no full-size IsNaN mask).
      const m = g.op('ReduceMax', [x()], { axes, keepdims });
      const sq = g.op('ReduceSumSquare', [x()], { axes, keepdims });
      return g.op('Where', [g.op('IsNaN', [sq]), g.scalar(Number.NaN), m]);
    }
    case 'reshape':
      return g.op('Reshape', [x(), g.i64(nums(a.shape))]);
    case 'transpose': {
      const perm = nums(a.perm);
      if (perm.every((p, i) => p === i)) return g.op('Identity', [x()]);
      return g.op('Transpose', [x()], { perm });
    }
    case 'slice': {
      const starts = nums(a.starts);
      const ends = nums(a.ends);
      const dims = inNode(0).shape;
      const axes: number[] = [];
      for (let i = 0; i < dims.length; i++) if (starts[i] !== 0 || ends[i] !== dims[i]) axes.push(i);
      if (axes.length === 0) return g.op('Identity', [x()]);
      return g.op('Slice', [
        x(),
        g.i64(axes.map((i) => starts[i]!)),
        g.i64(axes.map((i) => ends[i]!)),
        g.i64(axes),
      ]);
    }
    case 'pad': {
      const before = nums(a.before);
      const after = nums(a.after);
      if (isEmpty(ins[0]!)) return g.fill(node.dtype, node.shape, 0);
      if ([...before, ...after].every((p) => p === 0)) return g.op('Identity', [x()]);
      return g.op('Pad', [x(), g.i64([...before, ...after])], { mode: 'constant' });
    }
    case 'concat': {
      const parts = ins.filter((id) => !isEmpty(id));
      if (parts.length === 1) return g.op('Identity', [val(parts[0]!)]);
      return g.op('Concat', parts.map(val), { axis: Number(a.axis) });
    }
    case 'broadcastTo': {
      const from = inNode(0).shape;
      const shape = nums(a.shape);
      if (from.length === shape.length && from.every((d, i) => d === shape[i]))
        return g.op('Identity', [x()]);
      return g.op('Expand', [x(), g.i64(shape)]);
    }
    case 'gather':
      return g.op('Gather', [val(ins[0]!), val(ins[1]!)], { axis: 0 });
    case 'scatterAdd':
      return lowerScatterAdd(g, graph, node, val, isEmpty);
    case 'cast':
      return lowerCast(g, inNode(0).dtype, a.to as DType, x());
  }
  throw new UnsupportedPrimitiveError(node.op, 'ort');
}

/**
 * scatterAdd(updates [...idx, ...rest], indices [...idx]) -> zeros [size, ...rest] plus updates.
 *
 * Lowered as ScatterElements(axis 0, reduction 'add') on [size, R] with the indices broadcast to
 * [N, R], not as ScatterND: onnxruntime's CPU ScatterND splits the update rows across threads,
 * which races when indices repeat (onnxruntime#18048), while ScatterElements only parallelises
 * across the independent inner positions.
 */
function lowerScatterAdd(
  g: OnnxGraph,
  graph: Graph,
  node: Node,
  val: (id: number) => string,
  isEmpty: (id: number) => boolean,
): string {
  const [uid, iid] = node.inputs as [number, number];
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
