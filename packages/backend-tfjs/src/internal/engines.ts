/**
 * tfjs engines: detection, one-time initialisation per process, and activation.
 *
 * tfjs-core is a process-wide singleton with ONE active backend. Our policy: each engine is
 * initialised at most once per process (`initEngine` caches the promise), every Moreau backend
 * instance is bound to one engine, and every piece of work that creates tensors (upload, compile,
 * run) first makes its engine the active one with `activate()` — synchronously, then does all its
 * tensor work synchronously before the next `await`. Two instances on different engines (e.g.
 * wasm and cpu in one test process) can therefore interleave freely: no await ever separates the
 * switch from the work. Tensors created on one engine and used on another are moved by tfjs
 * itself (engine.moveData), so a device tensor stays valid whichever engine runs next.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { MoreauError } from '@moreau/core';
import * as tf from '@tensorflow/tfjs-core';

export type TfjsEngine = 'node-gpu' | 'node' | 'wasm' | 'cpu';

/** Detection order: the first engine that loads wins. */
export const ENGINE_ORDER: readonly TfjsEngine[] = ['node-gpu', 'node', 'wasm', 'cpu'];

export const ENGINE_PACKAGES: Readonly<Record<TfjsEngine, string>> = {
  'node-gpu': '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

/** The tfjs backend name each engine registers. */
export const TF_BACKEND_NAME: Readonly<Record<TfjsEngine, string>> = {
  'node-gpu': 'tensorflow',
  node: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

export interface EngineHandle {
  readonly engine: TfjsEngine;
  /** The tfjs backend name ('tensorflow', 'wasm', 'cpu'). */
  readonly tfName: string;
  /** Human-readable device: 'cuda', 'cpu-native', 'wasm-simd', 'wasm', 'cpu'. */
  readonly device: string;
  readonly version: string;
  /** Engine quirks the lowerings work around. */
  readonly quirks: EngineQuirks;
}

export interface EngineQuirks {
  /** maximum/minimum drop a NaN operand (XNNPACK on wasm). */
  readonly minMaxDropsNaN: boolean;
  /** select on bool branches gives wrong values (wasm). */
  readonly boolSelectBroken: boolean;
  /** How scatterAdd is lowered: ScatterNd (sums duplicates), UnsortedSegmentSum or one-hot matmul. */
  readonly scatterAdd: 'scatterNd' | 'segmentSum' | 'oneHot';
}

// ---------------------------------------------------------------------------------------------
// Module resolution that works from the ESM build, the CJS build (tsup shims import.meta.url)
// and from source under vitest.

declare const __filename: string | undefined;

let cachedRequire: NodeRequire | undefined;
export function localRequire(): NodeRequire {
  if (!cachedRequire) {
    const here = typeof __filename === 'string' && __filename ? __filename : import.meta.url;
    cachedRequire = createRequire(here);
  }
  return cachedRequire;
}

function isResolvable(spec: string): boolean {
  try {
    localRequire().resolve(spec);
    return true;
  } catch {
    return false;
  }
}

function packageVersion(spec: string): string {
  try {
    return String((localRequire()(`${spec}/package.json`) as { version?: string }).version ?? '?');
  } catch {
    return '?';
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

/** The folder holding the wasm binaries, with the trailing slash setWasmPaths needs. */
export function wasmBinaryDir(): string | undefined {
  try {
    const main = localRequire().resolve(ENGINE_PACKAGES.wasm); // .../dist/tf-backend-wasm.node.js
    const dir = path.dirname(main);
    return dir.endsWith(path.sep) ? dir : dir + path.sep;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Initialisation (once per engine per process)

export interface InitOptions {
  /** Folder (or URL prefix) of the tfjs wasm binaries; default: the installed package's dist/. */
  readonly wasmPath?: string;
}

const inits = new Map<TfjsEngine, Promise<EngineHandle>>();

/** Loads and initialises an engine once per process; rejects with the reason it is unavailable. */
export function initEngine(engine: TfjsEngine, options: InitOptions = {}): Promise<EngineHandle> {
  let p = inits.get(engine);
  if (!p) {
    p = doInit(engine, options);
    inits.set(engine, p);
    // A failed engine may be retried later (e.g. after installing a package).
    p.catch(() => inits.delete(engine));
  }
  return p;
}

async function setAndCheck(name: string, engine: TfjsEngine): Promise<void> {
  // setBackend resolves false (it does not throw) when the backend fails to initialise.
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (err) {
    throw new MoreauError(`tfjs engine '${engine}': tf.setBackend('${name}') threw: ${errorMessage(err)}`);
  }
  if (!ok || tf.getBackend() !== name) {
    throw new MoreauError(
      `tfjs engine '${engine}': tf.setBackend('${name}') returned false (initialisation failed)`,
    );
  }
}

function quietCpuWarning(): void {
  // The pure-JS cpu backend prints a "use tfjs-node" banner on first write; we report the engine
  // ourselves (backend.device, detectTfjsEngines), so silence it for our instance.
  const b = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (b && 'firstUse' in b) b.firstUse = false;
}

async function doInit(engine: TfjsEngine, options: InitOptions): Promise<EngineHandle> {
  const spec = ENGINE_PACKAGES[engine];
  const name = TF_BACKEND_NAME[engine];
  const req = localRequire();
  const scatter = (): EngineQuirks['scatterAdd'] =>
    tf.getKernel('ScatterNd', name)
      ? 'scatterNd'
      : tf.getKernel('UnsortedSegmentSum', name)
        ? 'segmentSum'
        : 'oneHot';

  if (engine === 'node-gpu' || engine === 'node') {
    const other: TfjsEngine = engine === 'node' ? 'node-gpu' : 'node';
    if (inits.has(other)) {
      throw new MoreauError(
        `tfjs engine '${engine}': ${ENGINE_PACKAGES[other]} already provides tfjs's 'tensorflow' backend in this process`,
      );
    }
    if (!isResolvable(spec)) {
      throw new MoreauError(
        `tfjs engine '${engine}': ${spec} is not installed (optional peer dependency; npm i ${spec}` +
          (engine === 'node-gpu' ? ', needs CUDA and cuDNN' : '') +
          ')',
      );
    }
    try {
      req(spec); // registers the 'tensorflow' backend (and loads libtensorflow)
    } catch (err) {
      throw new MoreauError(`tfjs engine '${engine}': loading ${spec} failed: ${errorMessage(err)}`);
    }
    if (!tf.engine().registryFactory.tensorflow) {
      throw new MoreauError(
        `tfjs engine '${engine}': ${spec} loaded but registered no 'tensorflow' backend with this @tensorflow/tfjs-core (${tf.version_core}); versions must match`,
      );
    }
    await setAndCheck(name, engine);
    let device = engine === 'node-gpu' ? 'cuda' : 'cpu-native';
    if (engine === 'node-gpu') {
      const be = tf.findBackend(name) as { isUsingGpuDevice?: boolean } | null;
      if (be && be.isUsingGpuDevice === false) device = 'cpu-native (tfjs-node-gpu found no usable GPU)';
    }
    return {
      engine,
      tfName: name,
      device,
      version: packageVersion(spec),
      quirks: { minMaxDropsNaN: false, boolSelectBroken: false, scatterAdd: scatter() },
    };
  }

  if (engine === 'wasm') {
    let wasmModule: { setWasmPaths?: (prefix: string) => void };
    try {
      wasmModule = req(spec);
    } catch (err) {
      throw new MoreauError(`tfjs engine 'wasm': loading ${spec} failed: ${errorMessage(err)}`);
    }
    // setWasmPaths must run before the backend initialises; once it has, the paths are fixed.
    if (!tf.engine().registry.wasm) {
      const dir = options.wasmPath ?? wasmBinaryDir();
      if (dir && wasmModule.setWasmPaths) {
        wasmModule.setWasmPaths(dir.endsWith('/') || dir.endsWith(path.sep) ? dir : `${dir}/`);
      }
      // Without a path the emscripten loader falls back to the package's own __dirname.
    }
    await setAndCheck(name, engine);
    let simd = false;
    try {
      simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    } catch {
      // flag unknown: report plain wasm
    }
    return {
      engine,
      tfName: name,
      device: simd ? 'wasm-simd' : 'wasm',
      version: packageVersion(spec),
      quirks: { minMaxDropsNaN: true, boolSelectBroken: true, scatterAdd: scatter() },
    };
  }

  // Pure-JS cpu: always available.
  try {
    req(spec);
  } catch (err) {
    throw new MoreauError(`tfjs engine 'cpu': loading ${spec} failed: ${errorMessage(err)}`);
  }
  await setAndCheck(name, engine);
  quietCpuWarning();
  return {
    engine,
    tfName: name,
    device: 'cpu',
    version: packageVersion(spec),
    quirks: { minMaxDropsNaN: false, boolSelectBroken: false, scatterAdd: scatter() },
  };
}

/**
 * Makes `handle`'s engine the active tfjs backend, synchronously. For an initialised backend
 * tf.setBackend does all its work before its first await, so the switch is effective on return;
 * we check that rather than trust it.
 */
export function activate(handle: EngineHandle): void {
  const name = handle.tfName;
  if (tf.getBackend() === name) return;
  const instance = tf.findBackend(name);
  if (!instance) {
    throw new MoreauError(`tfjs engine '${handle.engine}': tfjs backend '${name}' is no longer registered`);
  }
  tf.setBackend(name).catch(() => {});
  if (tf.getBackend() !== name || tf.backend() !== instance) {
    throw new MoreauError(`tfjs engine '${handle.engine}': could not make '${name}' the active tfjs backend`);
  }
}

/** Runs fn with the engine active; fn must be synchronous so no other work can interleave. */
export function withEngine<T>(handle: EngineHandle, fn: () => T): T {
  activate(handle);
  return fn();
}

// ---------------------------------------------------------------------------------------------
// Detection

export interface TfjsEngineStatus {
  readonly engine: TfjsEngine;
  /** The npm package that provides it. */
  readonly package: string;
  /** The package resolves from @moreau/backend-tfjs. */
  readonly installed: boolean;
  /** The engine loaded and initialised in this process. */
  readonly available: boolean;
  /** Its device string when available ('cuda', 'cpu-native', 'wasm-simd', 'cpu'). */
  readonly device?: string;
  readonly version?: string;
  /** Why it is not available. */
  readonly reason?: string;
}

export interface DetectOptions extends InitOptions {
  /**
   * Load and initialise each installed engine to prove it works (default true). With false only
   * package resolution is checked, nothing is loaded.
   */
  readonly load?: boolean;
}

/** What is installed and loadable, in detection order, and why not. Never throws. */
export async function detectTfjsEngines(options: DetectOptions = {}): Promise<TfjsEngineStatus[]> {
  const out: TfjsEngineStatus[] = [];
  const previous = tf.engine().backendName;
  for (const engine of ENGINE_ORDER) {
    const pkg = ENGINE_PACKAGES[engine];
    const installed = isResolvable(pkg);
    if (!installed) {
      out.push({
        engine,
        package: pkg,
        installed,
        available: false,
        reason: `${pkg} is not installed${engine === 'node-gpu' ? ' (npm i @tensorflow/tfjs-node-gpu; needs CUDA and cuDNN)' : engine === 'node' ? ' (npm i @tensorflow/tfjs-node)' : ''}`,
      });
      continue;
    }
    if (options.load === false) {
      out.push({
        engine,
        package: pkg,
        installed,
        available: false,
        version: packageVersion(pkg),
        reason: 'not loaded (load: false)',
      });
      continue;
    }
    if (engine === 'node' && out.find((s) => s.engine === 'node-gpu')?.available) {
      out.push({
        engine,
        package: pkg,
        installed,
        available: false,
        version: packageVersion(pkg),
        reason: 'not loaded: @tensorflow/tfjs-node-gpu already provides the native engine in this process',
      });
      continue;
    }
    try {
      const h = await initEngine(engine, options);
      out.push({ engine, package: pkg, installed, available: true, device: h.device, version: h.version });
    } catch (err) {
      out.push({
        engine,
        package: pkg,
        installed,
        available: false,
        version: packageVersion(pkg),
        reason: errorMessage(err),
      });
    }
  }
  // Detection initialises engines; leave the previously active one active.
  if (previous && previous !== tf.getBackend() && tf.findBackend(previous))
    tf.setBackend(previous).catch(() => {});
  return out;
}

/** Initialises the first engine of ENGINE_ORDER (from `from`) that works; lists every failure. */
export async function initBestEngine(
  options: InitOptions,
  order: readonly TfjsEngine[] = ENGINE_ORDER,
): Promise<EngineHandle> {
  const failures: string[] = [];
  for (const engine of order) {
    try {
      return await initEngine(engine, options);
    } catch (err) {
      failures.push(`  - ${engine}: ${errorMessage(err)}`);
    }
  }
  throw new MoreauError(`no tfjs engine could be initialised:\n${failures.join('\n')}`);
}
