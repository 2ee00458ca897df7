/**
 * The reference backend: a plain TypeScript interpreter of the IR computing in float64. It is the
 * oracle the conformance suite compares real backends against, and the engine of
 * finite-difference checks. It is slow by design and never chosen as a product backend.
 */
import type { Backend, DeviceTensor, Executable, MemoryReport, TensorInput } from './backend.js';
import { isDeviceTensor } from './backend.js';
import {
  bfloat16ToFloat32,
  type DType,
  float16ToFloat32,
  float32ToFloat16,
  type HostTensor,
} from './dtype.js';
import { MoreauError, ShapeError } from './errors.js';
import { primitiveRule, type RefValue } from './internal/registry.js';
import { type Graph, inputInfos, outputInfos } from './ir.js';
import './primitives.js';

function toRef(t: HostTensor, expected: DType): RefValue {
  let data: RefValue['data'];
  switch (t.dtype) {
    case 'float32':
      data = Float64Array.from(t.data as Float32Array);
      break;
    case 'float16':
      data = Float64Array.from(float16ToFloat32(t.data as Uint16Array));
      break;
    case 'bfloat16':
      data = Float64Array.from(bfloat16ToFloat32(t.data as Uint16Array));
      break;
    default:
      data = t.data as Int32Array | Uint8Array;
  }
  // bfloat16 host data feeds a float32 input (no backend computes in bfloat16).
  const dtype = t.dtype === 'bfloat16' ? 'float32' : t.dtype;
  if (dtype !== expected)
    throw new ShapeError(`reference: input dtype ${t.dtype} does not match the graph's ${expected}`);
  return { shape: t.shape, dtype, data };
}

function fromRef(v: RefValue): HostTensor {
  switch (v.dtype) {
    case 'float32':
      return { dtype: 'float32', shape: v.shape, data: Float32Array.from(v.data as Float64Array) };
    case 'float16':
      return {
        dtype: 'float16',
        shape: v.shape,
        data: float32ToFloat16(Float32Array.from(v.data as Float64Array)),
      };
    case 'int32':
      return { dtype: 'int32', shape: v.shape, data: Int32Array.from(v.data) };
    case 'bool':
      return { dtype: 'bool', shape: v.shape, data: Uint8Array.from(v.data) };
    default:
      throw new MoreauError(`reference: cannot output dtype ${v.dtype}`);
  }
}

export interface ReferenceOptions {
  /**
   * Round every float32 node's output to float32 (Math.fround), as an IEEE float32 engine does,
   * instead of carrying float64 through the graph. Emulated half precision (jit's computeDtype)
   * needs it: its rounding relies on float32 arithmetic. Default false (the float64 oracle).
   */
  readonly float32?: boolean;
}

function froundValue(v: RefValue): RefValue {
  if (v.dtype !== 'float32') return v;
  const src = v.data as Float64Array;
  const data = new Float64Array(src.length);
  for (let i = 0; i < src.length; i++) data[i] = Math.fround(src[i]!);
  return { shape: v.shape, dtype: v.dtype, data };
}

/**
 * Runs a graph in float64 and returns every output (floats rounded to float32 at the end), or with
 * `float32`, rounding every float32 value to float32 as it is computed.
 */
export function evaluateReference(
  graph: Graph,
  inputs: readonly HostTensor[],
  options: ReferenceOptions = {},
): HostTensor[] {
  if (inputs.length !== graph.inputs.length) {
    throw new ShapeError(`reference: graph takes ${graph.inputs.length} inputs, got ${inputs.length}`);
  }
  const values = new Array<RefValue | undefined>(graph.nodes.length);
  // Free each value after its last use to bound memory on bigger graphs.
  const lastUse = new Array<number>(graph.nodes.length).fill(-1);
  for (const n of graph.nodes) for (const i of n.inputs) lastUse[i] = n.id;
  for (const o of graph.outputs) lastUse[o] = graph.nodes.length;
  for (const n of graph.nodes) {
    if (n.op === 'input') {
      const t = inputs[n.attrs.index]!;
      if (t.shape.length !== n.shape.length || t.shape.some((d, i) => d !== n.shape[i])) {
        throw new ShapeError(
          `reference: input '${n.attrs.name}' has shape [${t.shape}], expected [${n.shape}]`,
        );
      }
      values[n.id] = toRef(t, n.dtype);
    } else if (n.op === 'constant') {
      values[n.id] = toRef(graph.constants.get(n.attrs.constant)!, n.dtype);
    } else {
      const args = n.inputs.map((i) => values[i]!);
      const v = primitiveRule(n.op).reference(args, n.attrs, n);
      values[n.id] = options.float32 ? froundValue(v) : v;
    }
    for (const i of n.inputs) if (lastUse[i] === n.id) values[i] = undefined;
  }
  return graph.outputs.map((o) => fromRef(values[o]!));
}

class ReferenceDeviceTensor implements DeviceTensor {
  readonly kind = 'device' as const;
  readonly backend = 'reference';
  constructor(
    readonly host: HostTensor,
    private readonly owner: ReferenceBackend,
  ) {}
  get shape() {
    return this.host.shape;
  }
  get dtype() {
    return this.host.dtype;
  }
  async download() {
    return this.host;
  }
  dispose() {
    this.owner.release(this);
  }
}

export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly device: string;
  /** False unless created with { float32: true } (see ReferenceOptions). */
  readonly roundsFloat32: boolean;
  private readonly held = new Set<ReferenceDeviceTensor>();
  private executables = 0;

  constructor(private readonly options: ReferenceOptions = {}) {
    this.roundsFloat32 = options.float32 ?? false;
    this.device = this.roundsFloat32 ? 'cpu (float32-rounding interpreter)' : 'cpu (float64 interpreter)';
  }

  async compile(graph: Graph): Promise<Executable> {
    this.executables++;
    let disposed = false;
    return {
      inputs: inputInfos(graph),
      outputs: outputInfos(graph),
      run: async (inputs: readonly TensorInput[]) => {
        if (disposed) throw new MoreauError('reference: executable used after dispose()');
        const hosts = await Promise.all(inputs.map((t) => (isDeviceTensor(t) ? t.download() : t)));
        return evaluateReference(graph, hosts, this.options);
      },
      dispose: () => {
        if (!disposed) this.executables--;
        disposed = true;
      },
    };
  }

  async upload(t: HostTensor): Promise<DeviceTensor> {
    const d = new ReferenceDeviceTensor(t, this);
    this.held.add(d);
    return d;
  }

  release(t: ReferenceDeviceTensor): void {
    this.held.delete(t);
  }

  memory(): MemoryReport {
    let bytes = 0;
    for (const t of this.held) bytes += t.host.data.byteLength;
    return { tensors: this.held.size, bytes, executables: this.executables };
  }

  async dispose(): Promise<void> {
    this.held.clear();
  }
}
