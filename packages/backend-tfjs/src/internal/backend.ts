/**
 * The tfjs Backend: compiles an IR graph into a list of lowered steps and runs them inside one
 * tf.tidy scope. Device tensors are kept tf.Tensors. See engines.ts for how several instances on
 * different engines share tfjs's global active backend.
 */
import {
  attrsOf,
  type Backend,
  bfloat16ToFloat32,
  type CompileOptions,
  type DeviceTensor,
  type DType,
  type Executable,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  type Graph,
  type HostTensor,
  inputInfos,
  isDeviceTensor,
  type MemoryReport,
  MoreauError,
  outputInfos,
  ShapeError,
  sameShape,
  sizeOf,
  type TensorInput,
  type ValueInfo,
} from '@moreau/core';
import * as tf from '@tensorflow/tfjs-core';
import { type EngineHandle, type TfjsEngine, withEngine } from './engines.js';
import { checkLowered, type LowerContext, type LoweredNode, lowerNode, tfDtype } from './lower.js';

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Host data -> a tfjs tensor of the compute dtype (half types widened to float32 on the host). */
function hostToTf(t: HostTensor, copy: boolean): tf.Tensor {
  const shape = [...t.shape];
  switch (t.dtype) {
    case 'float16':
      return tf.tensor(float16ToFloat32(t.data as Uint16Array), shape, 'float32');
    case 'bfloat16':
      return tf.tensor(bfloat16ToFloat32(t.data as Uint16Array), shape, 'float32');
    case 'float32':
      return tf.tensor(copy ? (t.data as Float32Array).slice() : (t.data as Float32Array), shape, 'float32');
    case 'int32':
      return tf.tensor(copy ? (t.data as Int32Array).slice() : (t.data as Int32Array), shape, 'int32');
    case 'bool':
      return tf.tensor(copy ? (t.data as Uint8Array).slice() : (t.data as Uint8Array), shape, 'bool');
  }
}

/** tfjs values -> a host tensor of the graph dtype (half types narrowed on the host). */
function tfDataToHost(
  data: tf.TypedArray | unknown,
  dtype: DType,
  shape: readonly number[],
  copy: boolean,
): HostTensor {
  const s = [...shape];
  switch (dtype) {
    case 'float32': {
      const d =
        data instanceof Float32Array
          ? copy
            ? data.slice()
            : data
          : Float32Array.from(data as ArrayLike<number>);
      return { dtype, shape: s, data: d };
    }
    case 'float16':
      return { dtype, shape: s, data: float32ToFloat16(Float32Array.from(data as ArrayLike<number>)) };
    case 'bfloat16':
      return { dtype, shape: s, data: float32ToBfloat16(Float32Array.from(data as ArrayLike<number>)) };
    case 'int32': {
      const d =
        data instanceof Int32Array
          ? copy
            ? data.slice()
            : data
          : Int32Array.from(data as ArrayLike<number>);
      return { dtype, shape: s, data: d };
    }
    case 'bool':
      return { dtype, shape: s, data: Uint8Array.from(data as ArrayLike<number>, (v) => (v ? 1 : 0)) };
  }
}

/** May a host/device tensor of dtype `given` feed a graph input of dtype `wanted`? (bfloat16 feeds float32.) */
function dtypeFeeds(given: DType, wanted: DType): boolean {
  return given === wanted || (given === 'bfloat16' && wanted === 'float32');
}

export class TfjsDeviceTensor implements DeviceTensor {
  readonly kind = 'device' as const;
  readonly backend = 'tfjs';
  private disposed = false;
  constructor(
    /** The kept tfjs tensor (float32 for half dtypes). */
    readonly tensor: tf.Tensor,
    readonly shape: readonly number[],
    readonly dtype: DType,
    private readonly owner: TfjsBackendImpl,
  ) {}

  get isDisposed(): boolean {
    return this.disposed || this.tensor.isDisposed;
  }

  async download(): Promise<HostTensor> {
    if (this.isDisposed) throw new MoreauError('tfjs: download() of a disposed device tensor');
    // Reading works whatever engine is active: tfjs reads through the tensor's owning backend.
    const data = await this.tensor.data();
    return tfDataToHost(data, this.dtype, this.shape, true);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.tensor.dispose();
    this.owner.release(this);
  }
}

interface Step {
  readonly node: LoweredNode;
  readonly ctx: LowerContext;
  /** Inputs whose last use is this step (disposed after it, if the run created them). */
  readonly frees: readonly number[];
  /** The output has no elements. */
  readonly empty: boolean;
}

class TfjsExecutable implements Executable {
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  private disposed = false;

  constructor(
    private readonly backend: TfjsBackendImpl,
    private readonly graph: Graph,
    private readonly steps: readonly Step[],
    /** Kept tensors for constants and frozen inputs, by node id. */
    private readonly fixed: ReadonlyMap<number, tf.Tensor>,
    private readonly freesAfterInputs: readonly number[],
  ) {
    this.inputs = inputInfos(graph);
    this.outputs = outputInfos(graph);
  }

  async run(inputs: readonly TensorInput[]): Promise<HostTensor[]> {
    // Everything up to the first await is synchronous: engine switch, uploads, the whole graph.
    if (this.disposed) throw new MoreauError('tfjs: executable used after dispose()');
    this.backend.checkAlive();
    const graph = this.graph;
    if (inputs.length !== graph.inputs.length) {
      throw new ShapeError(`tfjs: the graph takes ${graph.inputs.length} inputs, got ${inputs.length}`);
    }
    inputs.forEach((t, i) => {
      const want = this.inputs[i]!;
      if (!t || typeof t !== 'object' || !Array.isArray(t.shape)) {
        throw new ShapeError(`tfjs: input ${i} ('${want.name}') is not a tensor`);
      }
      if (!sameShape(t.shape, want.shape) || !dtypeFeeds(t.dtype, want.dtype)) {
        throw new ShapeError(
          `tfjs: input ${i} ('${want.name}') is ${t.dtype}${fmt(t.shape)}, the graph expects ${want.dtype}${fmt(want.shape)}`,
        );
      }
      if (isDeviceTensor(t)) {
        if (!(t instanceof TfjsDeviceTensor)) {
          throw new MoreauError(
            `tfjs: input ${i} ('${want.name}') is a device tensor of backend '${t.backend}'; download it or upload it to tfjs`,
          );
        }
        if (t.isDisposed)
          throw new MoreauError(`tfjs: input ${i} ('${want.name}') is a disposed device tensor`);
      }
    });

    const outs = withEngine(this.backend.handle, () => tf.tidy(() => this.execute(inputs)));
    try {
      const copy = this.backend.handle.engine === 'cpu'; // the cpu engine hands out its own buffers
      const datas = await Promise.all(outs.map((t) => t.data()));
      return datas.map((d, i) => tfDataToHost(d, this.outputs[i]!.dtype, this.outputs[i]!.shape, copy));
    } finally {
      for (const t of outs) t.dispose();
    }
  }

  private execute(inputs: readonly TensorInput[]): tf.Tensor[] {
    const { nodes } = this.graph;
    const values = new Array<tf.Tensor | undefined>(nodes.length);
    const owned = new Uint8Array(nodes.length); // created by this run: may be freed early
    const free = (ids: readonly number[]) => {
      for (const id of ids) {
        if (owned[id]) {
          values[id]?.dispose();
          values[id] = undefined;
          owned[id] = 0;
        }
      }
    };
    for (const id of this.graph.inputs) {
      const fixed = this.fixed.get(id);
      if (fixed) {
        values[id] = fixed;
        continue;
      }
      const t = inputs[attrsOf(nodes[id]!, 'input').index]!;
      if (t instanceof TfjsDeviceTensor) {
        values[id] = t.tensor;
      } else {
        values[id] = hostToTf(t as HostTensor, false);
        owned[id] = 1;
      }
    }
    for (const [id, t] of this.fixed) values[id] = t;
    free(this.freesAfterInputs);

    for (const step of this.steps) {
      const { node } = step;
      const args = node.inputs.map((i) => values[i]!);
      // A zero-size result needs no computation (and several tfjs kernels mishandle it).
      let out = step.empty ? tf.zeros([...node.shape], tfDtype(node.dtype)) : lowerNode(args, node, step.ctx);
      // A lowering must return a fresh tensor: aliasing an input would break early freeing.
      if (args.includes(out)) out = tf.clone(out);
      if (out.dtype !== tfDtype(node.dtype) || !sameShape(out.shape, node.shape)) {
        throw new MoreauError(
          `tfjs: internal error: lowering of '${node.op}' (node %${node.id}) gave ${out.dtype}${fmt(out.shape)}, expected ${tfDtype(node.dtype)}${fmt(node.shape)}`,
        );
      }
      values[node.id] = out;
      owned[node.id] = 1;
      free(step.frees);
    }
    // Outputs not created by this run (inputs, constants) are cloned so the caller may dispose them.
    return this.graph.outputs.map((id) => (owned[id] ? values[id]! : tf.clone(values[id]!)));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.fixed.values()) t.dispose();
    this.backend.forget(this);
  }
}

export interface TfjsBackendInfo {
  readonly engine: TfjsEngine;
  /** tfjs's name for the active backend ('tensorflow', 'wasm', 'cpu'). */
  readonly tfBackend: string;
  readonly version: string;
  /** How scatterAdd is lowered on this engine. */
  readonly scatterAdd: string;
}

export class TfjsBackendImpl implements Backend {
  readonly name = 'tfjs';
  readonly device: string;
  readonly engine: TfjsEngine;
  private readonly held = new Set<TfjsDeviceTensor>();
  private readonly executables = new Set<TfjsExecutable>();
  private disposed = false;

  constructor(readonly handle: EngineHandle) {
    this.device = handle.device;
    this.engine = handle.engine;
  }

  get info(): TfjsBackendInfo {
    return {
      engine: this.engine,
      tfBackend: this.handle.tfName,
      version: this.handle.version,
      scatterAdd: this.handle.quirks.scatterAdd,
    };
  }

  checkAlive(): void {
    if (this.disposed) throw new MoreauError('tfjs: backend used after dispose()');
  }

  async compile(graph: Graph, options: CompileOptions = {}): Promise<Executable> {
    this.checkAlive();
    const { nodes } = graph;
    // Check every lowering first: an unsupported primitive fails compile, naming it.
    for (const n of nodes) if (n.op !== 'input' && n.op !== 'constant') checkLowered(n.op);
    for (const n of nodes) {
      if (n.op === 'constant' && !graph.constants.has(n.attrs.constant)) {
        throw new MoreauError(`tfjs: node %${n.id} refers to a missing constant '${n.attrs.constant}'`);
      }
    }
    // Last use of every value; outputs live to the end.
    const lastUse = new Array<number>(nodes.length).fill(-1);
    for (const n of nodes) for (const i of n.inputs) lastUse[i] = n.id;
    for (const o of graph.outputs) lastUse[o] = Number.POSITIVE_INFINITY;
    const freesAt = new Map<number, number[]>();
    const freesAfterInputs: number[] = [];
    nodes.forEach((_n, id) => {
      if (lastUse[id] === -1)
        freesAfterInputs.push(id); // unused (e.g. an ignored input)
      else if (Number.isFinite(lastUse[id]!)) {
        const at = lastUse[id]!;
        if (!freesAt.has(at)) freesAt.set(at, []);
        freesAt.get(at)!.push(id);
      }
    });
    const steps: Step[] = [];
    for (const n of nodes) {
      if (n.op === 'input' || n.op === 'constant') continue;
      steps.push({
        node: n,
        ctx: {
          quirks: this.handle.quirks,
          inputDtypes: n.inputs.map((i) => nodes[i]!.dtype),
        },
        frees: freesAt.get(n.id) ?? [],
        empty: sizeOf(n.shape) === 0,
      });
    }
    // Constants and frozen inputs are uploaded once and kept for the executable's lifetime.
    const fixed = withEngine(this.handle, () => {
      const m = new Map<number, tf.Tensor>();
      try {
        for (const n of nodes) {
          if (n.op === 'constant')
            m.set(n.id, tf.keep(hostToTf(graph.constants.get(n.attrs.constant)!, true)));
        }
        for (const [index, t] of options.frozen ?? []) {
          const id = graph.inputs[index];
          if (id === undefined) throw new ShapeError(`tfjs: frozen input ${index} does not exist`);
          const n = nodes[id]!;
          if (!sameShape(t.shape, n.shape) || !dtypeFeeds(t.dtype, n.dtype)) {
            throw new ShapeError(
              `tfjs: frozen input ${index} ('${attrsOf(n, 'input').name}') is ${t.dtype}${fmt(t.shape)}, the graph expects ${n.dtype}${fmt(n.shape)}`,
            );
          }
          m.set(id, tf.keep(hostToTf(t, true)));
        }
      } catch (err) {
        for (const t of m.values()) t.dispose();
        throw err;
      }
      return m;
    });
    const exe = new TfjsExecutable(this, graph, steps, fixed, freesAfterInputs);
    this.executables.add(exe);
    return exe;
  }

  async upload(t: HostTensor): Promise<DeviceTensor> {
    this.checkAlive();
    if (sizeOf(t.shape) !== t.data.length) {
      throw new ShapeError(`tfjs: upload of ${t.dtype}${fmt(t.shape)} with ${t.data.length} values`);
    }
    // keep(): survive any tidy scope the caller may be in. The cpu engine would alias host data.
    const tensor = withEngine(this.handle, () => tf.keep(hostToTf(t, this.engine === 'cpu')));
    const d = new TfjsDeviceTensor(tensor, [...t.shape], t.dtype, this);
    this.held.add(d);
    return d;
  }

  release(t: TfjsDeviceTensor): void {
    this.held.delete(t);
  }

  forget(e: TfjsExecutable): void {
    this.executables.delete(e);
  }

  memory(): MemoryReport {
    const m = tf.memory() as tf.MemoryInfo & { numDataBuffers?: number };
    let deviceBytes = 0;
    for (const t of this.held) deviceBytes += t.tensor.size * (t.tensor.dtype === 'bool' ? 1 : 4);
    return {
      tensors: m.numTensors,
      bytes: m.numBytes,
      executables: this.executables.size,
      dataBuffers: m.numDataBuffers ?? 0,
      deviceTensors: this.held.size,
      deviceTensorBytes: deviceBytes,
    };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    for (const e of [...this.executables]) e.dispose();
    for (const t of [...this.held]) t.dispose();
    this.disposed = true;
  }
}
