/**
 * The onnxruntime-node backend: compiles IR graphs to ONNX models, one InferenceSession per
 * (graph, input signature, frozen weights), and runs them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type * as Ort from 'onnxruntime-node';
import type {
  Backend,
  CompileOptions,
  DeviceTensor,
  DType,
  Executable,
  Graph,
  HostTensor,
  MemoryReport,
  TensorInput,
  ValueInfo,
} from './core.js';
import {
  graphHash,
  InputError,
  inputInfos,
  isDeviceTensor,
  MoreauError,
  outputInfos,
  ShapeError,
  sameShape,
  sizeOf,
} from './core.js';
import { checkSupported, lowerGraph } from './lower.js';
import { encodeModel } from './proto.js';
import { copyHost, fromOrt, type OrtModule, toOrt } from './tensors.js';

export type OrtExecutionProvider = 'cpu' | 'cuda';
export type OrtGraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'layout' | 'all';

export interface OrtBackendOptions {
  /** 'cuda' uses the CUDA execution provider when it is installed and works, else CPU (with a notice). Default 'cpu'. */
  readonly executionProvider?: OrtExecutionProvider;
  /** CUDA device ordinal (default 0). */
  readonly deviceId?: number;
  /** Threads inside one operator (default os.availableParallelism()). */
  readonly intraOpNumThreads?: number;
  /** Threads across independent operators (default 1: sequential execution). */
  readonly interOpNumThreads?: number;
  /** onnxruntime graph optimisation level (default 'all'). */
  readonly graphOptimizationLevel?: OrtGraphOptimizationLevel;
  /**
   * Let idle intra-op worker threads spin between operators (onnxruntime's default). Default
   * false: on a machine whose cores are shared (other processes, or fewer cores than threads),
   * spinning workers steal the time slices the working ones need; measured 1.3-3x slower runs of
   * small and mid-size graphs on a loaded 2-core machine. Set true on a dedicated machine.
   */
  readonly allowSpinning?: boolean;
  /**
   * onnxruntime's CPU memory arena (default true, onnxruntime's default). false returns every
   * intermediate and output buffer to the system after each run: lower resident memory between
   * runs of large graphs (e.g. a 1B-parameter gradient), at the cost of fresh pages each run.
   */
  readonly memoryArena?: boolean;
  /** Receives one-line notices (e.g. why CUDA was not used). Default: console.warn. */
  readonly onNotice?: (message: string) => void;
}

export interface OrtBackend extends Backend {
  readonly name: 'ort';
  /** The execution provider actually in use. */
  readonly executionProvider: OrtExecutionProvider;
  readonly intraOpNumThreads: number;
  readonly graphOptimizationLevel: OrtGraphOptimizationLevel;
  /** Core's report plus `sessions`: the onnxruntime sessions alive (executables compiled from the same graph share one). */
  memory(): MemoryReport & { readonly sessions: number };
}

let ortPromise: Promise<OrtModule> | undefined;

/** Loads onnxruntime-node on first use (so importing this package never loads native code). */
export function loadOrt(): Promise<OrtModule> {
  ortPromise ??= import('onnxruntime-node')
    .then((m) => ((m as { default?: OrtModule }).default ?? m) as OrtModule)
    .catch((err: unknown) => {
      ortPromise = undefined;
      throw new MoreauError(
        `ort: cannot load onnxruntime-node: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
  return ortPromise;
}

const CUDA_LIB: Record<string, string> = {
  linux: 'libonnxruntime_providers_cuda.so',
  win32: 'onnxruntime_providers_cuda.dll',
};

/** Directory of onnxruntime-node's native binaries, if it can be found. */
function ortBinDir(): string | undefined {
  try {
    const req = createRequire(import.meta.url);
    const pkg = req.resolve('onnxruntime-node/package.json');
    return path.join(path.dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** A one-node model (Identity on float32 [1]) used to probe an execution provider. */
function probeModel(): Uint8Array {
  const vi = (name: string) => ({
    name,
    type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } },
  });
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'probe',
      node: [{ opType: 'Identity', input: ['x'], output: ['y'] }],
      input: [vi('x')],
      output: [vi('y')],
    },
  });
}

/** Why CUDA cannot be used here, or undefined when a CUDA session can be created. */
async function cudaUnavailableReason(ort: OrtModule, deviceId: number): Promise<string | undefined> {
  const listed =
    (ort as unknown as { listSupportedBackends?: () => { name: string }[] }).listSupportedBackends?.() ?? [];
  if (!listed.some((b) => b.name === 'cuda')) {
    return `this onnxruntime-node build (${process.platform}/${process.arch}) has no CUDA execution provider`;
  }
  const lib = CUDA_LIB[process.platform];
  const dir = ortBinDir();
  if (lib && dir && !existsSync(path.join(dir, lib))) {
    return "onnxruntime-node's CUDA binaries are not installed (re-run its install with --onnxruntime-node-install=cuda12)";
  }
  try {
    const s = await ort.InferenceSession.create(probeModel(), {
      executionProviders: [{ name: 'cuda', deviceId }],
      logSeverityLevel: 4,
    });
    await s.release();
    return undefined;
  } catch (err) {
    return `the CUDA execution provider failed to start: ${firstLine(err)}`;
  }
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
}

/**
 * Execution providers usable from this process, best first: always 'cpu'; 'cuda' when
 * onnxruntime-node's CUDA binaries are installed and a CUDA session can be created.
 */
export async function ortAvailableProviders(): Promise<OrtExecutionProvider[]> {
  const ort = await loadOrt();
  return (await cudaUnavailableReason(ort, 0)) === undefined ? ['cuda', 'cpu'] : ['cpu'];
}

// ---------------------------------------------------------------------------------------------

interface SessionSlot {
  readonly key: string;
  readonly promise: Promise<SessionEntry>;
  /** Executables (and compiles in flight) using the session. */
  refs: number;
}

interface SessionEntry {
  /** null when every output is zero-size: nothing to run. */
  readonly session: Ort.InferenceSession | null;
  readonly feeds: readonly { readonly index: number; readonly name: string }[];
  readonly fetches: readonly (string | null)[];
  readonly fetchNames: readonly string[];
  readonly outputs: readonly ValueInfo[];
  readonly modelBytes: number;
}

/**
 * A tensor held for the ORT CPU execution provider: the ort.Tensor that run() feeds (host memory;
 * bfloat16 already widened to float32). Kept across runs until disposed.
 */
class OrtDeviceTensor implements DeviceTensor {
  readonly kind = 'device' as const;
  readonly backend = 'ort';
  private disposed = false;

  constructor(
    private readonly owner: OrtBackendImpl,
    readonly shape: readonly number[],
    readonly dtype: DType,
    private ortValue: Ort.Tensor | undefined,
    readonly bytes: number,
  ) {}

  /** The ORT tensor to feed. */
  value(): Ort.Tensor {
    if (this.disposed || !this.ortValue) throw new MoreauError('ort: this device tensor was disposed');
    return this.ortValue;
  }

  async download(): Promise<HostTensor> {
    return copyHost(fromOrt(this.value(), this.dtype, this.shape));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ortValue?.dispose();
    this.ortValue = undefined;
    this.owner.released(this);
  }
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function checkInput(info: ValueInfo, t: TensorInput, i: number): void {
  // bfloat16 data may feed a float32 input (it is widened on the host, as in core's reference).
  const dtypeOk = t.dtype === info.dtype || (t.dtype === 'bfloat16' && info.dtype === 'float32');
  if (!dtypeOk || !sameShape(t.shape, info.shape)) {
    throw new ShapeError(
      `ort: input ${i} ('${info.name}') must be ${info.dtype} ${fmt(info.shape)}, got ${t.dtype} ${fmt(t.shape)}`,
    );
  }
}

/** A cheap content hash of frozen weights, for the session cache key. */
function frozenKey(frozen: ReadonlyMap<number, HostTensor> | undefined): string {
  if (!frozen || frozen.size === 0) return '';
  let h = 0x811c9dc5;
  const parts: string[] = [];
  for (const [i, t] of [...frozen].sort((a, b) => a[0] - b[0])) {
    const d = t.data;
    const words =
      d.byteLength % 4 === 0 && d.byteOffset % 4 === 0
        ? new Uint32Array(d.buffer, d.byteOffset, d.byteLength / 4)
        : Uint32Array.from(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    for (let k = 0; k < words.length; k++) h = Math.imul(h ^ words[k]!, 0x01000193) >>> 0;
    parts.push(`${i}:${t.dtype}${fmt(t.shape)}`);
  }
  return `frozen(${parts.join(';')}#${h.toString(16)})`;
}

class OrtBackendImpl implements OrtBackend {
  readonly name = 'ort' as const;
  readonly device: string;
  private readonly sessions = new Map<string, SessionSlot>();
  private readonly tensors = new Set<OrtDeviceTensor>();
  private tensorBytes = 0;
  private liveExecutables = 0;
  private disposed = false;

  constructor(
    private readonly ort: OrtModule,
    readonly executionProvider: OrtExecutionProvider,
    private readonly deviceId: number,
    readonly intraOpNumThreads: number,
    private readonly interOpNumThreads: number,
    readonly graphOptimizationLevel: OrtGraphOptimizationLevel,
    private readonly allowSpinning: boolean,
    private readonly memoryArena: boolean,
  ) {
    this.device = executionProvider === 'cuda' ? `cuda:${deviceId}` : 'cpu';
  }

  private sessionOptions(): Ort.InferenceSession.SessionOptions {
    return {
      executionProviders:
        this.executionProvider === 'cuda' ? [{ name: 'cuda', deviceId: this.deviceId }, 'cpu'] : ['cpu'],
      intraOpNumThreads: this.intraOpNumThreads,
      interOpNumThreads: this.interOpNumThreads,
      executionMode: 'sequential',
      graphOptimizationLevel: this.graphOptimizationLevel,
      logSeverityLevel: 3,
      enableCpuMemArena: this.memoryArena,
      extra: { session: { intra_op: { allow_spinning: this.allowSpinning ? '1' : '0' } } },
    };
  }

  private alive(): void {
    if (this.disposed) throw new MoreauError('ort: this backend was disposed');
  }

  async compile(graph: Graph, options: CompileOptions = {}): Promise<Executable> {
    this.alive();
    checkSupported(graph, 'ort');
    const inputs = inputInfos(graph);
    const outputs = outputInfos(graph);
    const key = `${graphHash(graph)}|${inputs.map((v) => `${v.dtype}${fmt(v.shape)}`).join(',')}|${frozenKey(options.frozen)}`;
    let slot = this.sessions.get(key);
    if (!slot) {
      const created: SessionSlot = { key, promise: this.createSession(graph, outputs, options), refs: 0 };
      created.promise.catch(() => {
        if (this.sessions.get(key) === created) this.sessions.delete(key);
      });
      this.sessions.set(key, created);
      slot = created;
    }
    // Counted before awaiting, so a concurrent dispose() cannot release the session under us.
    slot.refs++;
    let entry: SessionEntry;
    try {
      entry = await slot.promise;
    } catch (err) {
      slot.refs--;
      throw err;
    }
    this.liveExecutables++;
    let open = true;
    const held = slot;
    const exe: Executable = {
      inputs,
      outputs,
      run: (values) => {
        if (!open) return Promise.reject(new MoreauError('ort: this executable was disposed'));
        return this.run(entry, inputs, values);
      },
      dispose: () => {
        if (!open) return;
        open = false;
        this.liveExecutables--;
        this.release(held);
      },
    };
    return exe;
  }

  private async createSession(
    graph: Graph,
    outputs: readonly ValueInfo[],
    options: CompileOptions,
  ): Promise<SessionEntry> {
    const lowered = lowerGraph(graph, {
      inputNames: graph.inputs.map((_, i) => `in${i}`),
      outputNames: graph.outputs.map((_, i) => `out${i}`),
      ...(options.frozen ? { frozen: options.frozen } : {}),
      graphName: `moreau_${graphHash(graph)}`,
    });
    const fetchNames = [...new Set(lowered.fetches.filter((f): f is string => f !== null))];
    let session: Ort.InferenceSession | null = null;
    let modelBytes = 0;
    if (fetchNames.length > 0) {
      const bytes = encodeModel(lowered.model);
      modelBytes = bytes.byteLength;
      try {
        session = await this.ort.InferenceSession.create(bytes, this.sessionOptions());
      } catch (err) {
        throw new MoreauError(
          `ort: onnxruntime rejected the lowered graph (${graph.nodes.length} nodes, ops: ${[...new Set(graph.nodes.map((n) => n.op))].join(', ')}): ${firstLine(err)}`,
        );
      }
    }
    return {
      session,
      feeds: lowered.feeds,
      fetches: lowered.fetches,
      fetchNames,
      outputs,
      modelBytes,
    };
  }

  private release(slot: SessionSlot): void {
    slot.refs--;
    if (slot.refs > 0) return;
    if (this.sessions.get(slot.key) === slot) this.sessions.delete(slot.key);
    slot.promise.then((e) => e.session?.release()).catch(() => {});
  }

  private async run(
    entry: SessionEntry,
    infos: readonly ValueInfo[],
    values: readonly TensorInput[],
  ): Promise<HostTensor[]> {
    this.alive();
    if (values.length !== infos.length) {
      throw new ShapeError(`ort: the graph takes ${infos.length} inputs, got ${values.length}`);
    }
    for (const [i, v] of values.entries()) checkInput(infos[i]!, v, i);
    let results: Ort.InferenceSession.OnnxValueMapType = {};
    if (entry.session) {
      const feeds: Record<string, Ort.Tensor> = {};
      for (const { index, name } of entry.feeds) feeds[name] = await this.feedValue(values[index]!);
      results = await entry.session.run(feeds, entry.fetchNames as string[]);
    }
    const seen = new Set<string>();
    return entry.fetches.map((name, i) => {
      const info = entry.outputs[i]!;
      if (name === null) return { dtype: info.dtype, shape: [...info.shape], data: allocate(info.dtype) };
      const t = fromOrt(results[name] as Ort.Tensor, info.dtype, info.shape);
      if (seen.has(name)) return copyHost(t);
      seen.add(name);
      return t;
    });
  }

  private async feedValue(v: TensorInput): Promise<Ort.Tensor> {
    if (!isDeviceTensor(v)) return toOrt(this.ort, v);
    if (v instanceof OrtDeviceTensor) {
      if (!this.tensors.has(v))
        throw new MoreauError('ort: this device tensor belongs to another (or a disposed) ort backend');
      return v.value();
    }
    return toOrt(this.ort, await v.download());
  }

  async upload(t: HostTensor): Promise<DeviceTensor> {
    this.alive();
    if (sizeOf(t.shape) !== t.data.length) {
      throw new InputError(
        `ort.upload: shape ${fmt(t.shape)} holds ${sizeOf(t.shape)} elements but the data has ${t.data.length}`,
      );
    }
    // A private copy (bfloat16 is copied anyway when it is widened).
    const value = toOrt(this.ort, t.dtype === 'bfloat16' ? t : copyHost(t));
    const bytes = (value.data as ArrayBufferView).byteLength;
    const d = new OrtDeviceTensor(this, [...t.shape], t.dtype, value, bytes);
    this.tensors.add(d);
    this.tensorBytes += bytes;
    return d;
  }

  /** Called by a device tensor when it is disposed. */
  released(t: OrtDeviceTensor): void {
    if (this.tensors.delete(t)) this.tensorBytes -= t.bytes;
  }

  memory(): MemoryReport & { readonly sessions: number } {
    return {
      tensors: this.tensors.size,
      bytes: this.tensorBytes,
      executables: this.liveExecutables,
      sessions: this.sessions.size,
    };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.tensors]) t.dispose();
    const slots = [...this.sessions.values()];
    this.sessions.clear();
    this.liveExecutables = 0;
    const entries = await Promise.allSettled(slots.map((slot) => slot.promise));
    await Promise.all(
      entries.map((e) =>
        e.status === 'fulfilled' && e.value.session ? e.value.session.release().catch(() => {}) : undefined,
      ),
    );
  }
}

function allocate(dtype: DType): HostTensor['data'] {
  switch (dtype) {
    case 'float32':
      return new Float32Array(0);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(0);
    case 'int32':
      return new Int32Array(0);
    case 'bool':
      return new Uint8Array(0);
  }
}

const LEVELS: readonly OrtGraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'layout', 'all'];

/**
 * Creates an onnxruntime-node backend. With `executionProvider: 'cuda'` it uses CUDA when
 * onnxruntime-node's CUDA binaries are installed and a CUDA session starts; otherwise it falls
 * back to CPU and reports why through `onNotice` (default console.warn).
 */
export async function createOrtBackend(options: OrtBackendOptions = {}): Promise<OrtBackend> {
  const requested = options.executionProvider ?? 'cpu';
  if (requested !== 'cpu' && requested !== 'cuda') {
    throw new InputError(`ort: executionProvider must be 'cpu' or 'cuda', got '${String(requested)}'`);
  }
  const level = options.graphOptimizationLevel ?? 'all';
  if (!LEVELS.includes(level)) {
    throw new InputError(
      `ort: graphOptimizationLevel must be one of ${LEVELS.join(', ')}, got '${String(level)}'`,
    );
  }
  const threads = options.intraOpNumThreads ?? os.availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) {
    throw new InputError(`ort: intraOpNumThreads must be a positive integer, got ${threads}`);
  }
  const interThreads = options.interOpNumThreads ?? 1;
  if (!Number.isInteger(interThreads) || interThreads < 1) {
    throw new InputError(`ort: interOpNumThreads must be a positive integer, got ${interThreads}`);
  }
  const deviceId = options.deviceId ?? 0;
  if (!Number.isInteger(deviceId) || deviceId < 0) {
    throw new InputError(`ort: deviceId must be a non-negative integer, got ${deviceId}`);
  }
  const notice = options.onNotice ?? ((m: string) => console.warn(m));
  const ort = await loadOrt();
  let provider: OrtExecutionProvider = 'cpu';
  if (requested === 'cuda') {
    const reason = await cudaUnavailableReason(ort, deviceId);
    if (reason === undefined) provider = 'cuda';
    else notice(`ort: CUDA requested but unavailable: ${reason}; running on CPU`);
  }
  return new OrtBackendImpl(
    ort,
    provider,
    deviceId,
    threads,
    interThreads,
    level,
    options.allowSpinning ?? false,
    options.memoryArena ?? true,
  );
}
