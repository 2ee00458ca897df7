/**
 * The backend contract and its registry.
 *
 * A backend compiles IR graphs into executables and runs them. Backends never differentiate:
 * gradients arrive as ordinary nodes of the graph (see autodiff). Backends register by name with
 * a priority and a lazy async factory; `getBackend()` tries them best-first and, if all fail,
 * throws one error that lists every candidate and why it failed.
 */
import type { DType, HostTensor } from './dtype.js';
import { BackendUnavailableError, MoreauError } from './errors.js';
import type { Graph, ValueInfo } from './ir.js';

/** A tensor resident in a backend's memory (e.g. GPU), kept across runs until disposed. */
export interface DeviceTensor {
  readonly kind: 'device';
  readonly backend: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
  download(): Promise<HostTensor>;
  dispose(): void;
}

export type TensorInput = HostTensor | DeviceTensor;

export function isDeviceTensor(t: TensorInput): t is DeviceTensor {
  return (t as DeviceTensor).kind === 'device';
}

export interface Executable {
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  /** Runs the graph; inputs in graph-input order; outputs come back to the host. */
  run(inputs: readonly TensorInput[]): Promise<HostTensor[]>;
  dispose(): void;
}

export interface MemoryReport {
  /** Tensors the backend holds now (device tensors, cached weights). */
  readonly tensors: number;
  /** Bytes those tensors occupy, as far as the engine reports them. */
  readonly bytes: number;
  /** Compiled executables alive. */
  readonly executables: number;
  readonly [key: string]: number;
}

export interface CompileOptions {
  /**
   * Inputs whose values are fixed for the executable's lifetime (weights in inference), by input
   * index. A backend may bake them into the compiled artefact; callers still pass them to run().
   */
  readonly frozen?: ReadonlyMap<number, HostTensor>;
}

export interface Backend {
  readonly name: string;
  /** Human-readable device, e.g. 'cpu', 'cuda:0', 'wasm-simd'. */
  readonly device: string;
  /**
   * False for a backend whose float32 ops do not round each result to float32 (core's float64
   * reference interpreter): emulated half precision relies on IEEE float32 arithmetic and refuses
   * such a backend. Absent means true.
   */
  readonly roundsFloat32?: boolean;
  compile(graph: Graph, options?: CompileOptions): Promise<Executable>;
  upload(t: HostTensor): Promise<DeviceTensor>;
  memory(): MemoryReport;
  dispose(): Promise<void>;
}

export type BackendFactory = () => Promise<Backend>;

interface Registration {
  readonly name: string;
  readonly factory: BackendFactory;
  readonly priority: number;
}

const registry = new Map<string, Registration>();
const instances = new Map<string, Promise<Backend>>();

const NAME_RE = /^[a-z][a-z0-9-]*$/;

/**
 * Registers a backend factory. Re-registering the same name with the same factory is a no-op;
 * a different factory under an existing name is refused (unregister it first).
 */
export function registerBackend(name: string, factory: BackendFactory, priority = 0): void {
  if (!NAME_RE.test(name)) {
    throw new MoreauError(
      `registerBackend: name '${name}' must match ${NAME_RE} (lowercase, digits, dashes)`,
    );
  }
  if (typeof factory !== 'function')
    throw new MoreauError(`registerBackend('${name}'): factory must be a function`);
  if (!Number.isFinite(priority))
    throw new MoreauError(`registerBackend('${name}'): priority must be finite`);
  const existing = registry.get(name);
  if (existing) {
    if (existing.factory === factory && existing.priority === priority) return;
    throw new MoreauError(
      `registerBackend: '${name}' is already registered with a different factory or priority; call unregisterBackend('${name}') first`,
    );
  }
  registry.set(name, { name, factory, priority });
}

export function unregisterBackend(name: string): void {
  registry.delete(name);
  instances.delete(name);
}

/** Registered backend names, best (highest priority) first. */
export function listBackends(): string[] {
  return [...registry.values()].sort((a, b) => b.priority - a.priority).map((r) => r.name);
}

/**
 * The backend with this name, or the best one that can be created. Instances are cached: a
 * second call returns the same backend.
 */
export async function getBackend(name?: string): Promise<Backend> {
  const candidates = name ? [name] : listBackends();
  if (name && !registry.has(name)) {
    const known = listBackends();
    throw new BackendUnavailableError(
      `backend '${name}' is not registered; registered: ${known.length ? known.join(', ') : '(none — import @moreau/backend-ort or @moreau/backend-tfjs)'}`,
      [{ name, reason: 'not registered' }],
    );
  }
  if (candidates.length === 0) {
    throw new BackendUnavailableError(
      'no backend is registered: import @moreau/backend-ort or @moreau/backend-tfjs',
      [],
    );
  }
  const failures: { name: string; reason: string }[] = [];
  for (const c of candidates) {
    let p = instances.get(c);
    if (!p) {
      // Promise.resolve().then: a factory that throws synchronously fails like a rejected one.
      const factory = registry.get(c)!.factory;
      p = Promise.resolve().then(factory);
      instances.set(c, p);
    }
    try {
      return await p;
    } catch (err) {
      instances.delete(c);
      failures.push({ name: c, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  throw new BackendUnavailableError(
    `no backend could be created:\n${failures.map((f) => `  - ${f.name}: ${f.reason}`).join('\n')}`,
    failures,
  );
}
