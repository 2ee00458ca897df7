/**
 * @moreau/backend-tfjs: runs Moreau IR graphs on TensorFlow.js.
 *
 * Engines, best first: @tensorflow/tfjs-node-gpu (CUDA), @tensorflow/tfjs-node (native CPU),
 * @tensorflow/tfjs-backend-wasm (SIMD), @tensorflow/tfjs-backend-cpu (pure JS). The two tfjs-node
 * packages are optional peer dependencies, loaded only if installed.
 *
 * Importing this module registers the backend as 'tfjs' (priority 50) with core's registry. The
 * registered factory picks the engine from MOREAU_TFJS_ENGINE (node-gpu | node | wasm | cpu | auto)
 * or detects the best one.
 */
import { type Backend, listBackends, MoreauError, registerBackend } from '@moreau/core';
import { TfjsBackendImpl, type TfjsBackendInfo } from './internal/backend.js';
import {
  type DetectOptions,
  detectTfjsEngines as detect,
  ENGINE_ORDER,
  initBestEngine,
  initEngine,
  type TfjsEngine,
  type TfjsEngineStatus,
} from './internal/engines.js';

export type { DetectOptions, TfjsBackendInfo, TfjsEngine, TfjsEngineStatus };

export interface TfjsBackendOptions {
  /** Force an engine; default 'auto' (node-gpu > node > wasm > cpu, first that loads). */
  readonly engine?: TfjsEngine | 'auto';
  /**
   * Pick by device instead: 'cuda' forces node-gpu; 'cpu' is the best non-GPU engine
   * (node > wasm > cpu); 'wasm' forces wasm. Ignored when `engine` is given.
   */
  readonly device?: 'cuda' | 'gpu' | 'cpu' | 'wasm';
  /** Folder or URL prefix of the tfjs wasm binaries; default: the installed package's dist/. */
  readonly wasmPath?: string;
}

/** A tfjs Backend; `engine` says which tfjs engine it runs on, `device` e.g. 'cuda', 'wasm-simd', 'cpu'. */
export interface TfjsBackend extends Backend {
  readonly name: 'tfjs';
  readonly engine: TfjsEngine;
  readonly info: TfjsBackendInfo;
}

const ENGINES: readonly string[] = [...ENGINE_ORDER, 'auto'];

function engineOrder(options: TfjsBackendOptions): readonly TfjsEngine[] {
  const engine = options.engine ?? 'auto';
  if (!ENGINES.includes(engine)) {
    throw new MoreauError(`createTfjsBackend: unknown engine '${engine}'; valid: ${ENGINES.join(', ')}`);
  }
  if (engine !== 'auto') return [engine];
  switch (options.device) {
    case undefined:
      return ENGINE_ORDER;
    case 'cuda':
    case 'gpu':
      return ['node-gpu'];
    case 'cpu':
      return ['node', 'wasm', 'cpu'];
    case 'wasm':
      return ['wasm'];
    default:
      throw new MoreauError(`createTfjsBackend: unknown device '${options.device}'; valid: cuda, cpu, wasm`);
  }
}

/**
 * Creates a tfjs backend on the requested (or best available) engine. Engines are initialised
 * once per process; several backends may coexist, even on different engines: each switches
 * tfjs's global active backend to its own engine, synchronously, before it touches tensors.
 */
export async function createTfjsBackend(options: TfjsBackendOptions = {}): Promise<TfjsBackend> {
  const order = engineOrder(options);
  const init = { ...(options.wasmPath ? { wasmPath: options.wasmPath } : {}) };
  const handle = order.length === 1 ? await initEngine(order[0]!, init) : await initBestEngine(init, order);
  const wantsGpu =
    (options.engine ?? 'auto') === 'auto' && (options.device === 'cuda' || options.device === 'gpu');
  if (wantsGpu && handle.device !== 'cuda') {
    throw new MoreauError(
      `createTfjsBackend: device '${options.device}' requested but tfjs-node-gpu runs on ${handle.device}`,
    );
  }
  return new TfjsBackendImpl(handle) as TfjsBackend;
}

/**
 * Which tfjs engines are installed and loadable here, in detection order, with the reason for
 * each one that is not. Loads (initialises) every installed engine unless `load: false`.
 */
export function detectTfjsEngines(options: DetectOptions = {}): Promise<TfjsEngineStatus[]> {
  return detect(options);
}

/** Engine for the registered 'tfjs' factory: MOREAU_TFJS_ENGINE, else auto. */
function engineFromEnv(): TfjsEngine | 'auto' {
  const v = (typeof process !== 'undefined' ? process.env.MOREAU_TFJS_ENGINE : undefined)?.trim();
  if (!v) return 'auto';
  if (!ENGINES.includes(v)) {
    throw new MoreauError(`MOREAU_TFJS_ENGINE='${v}' is not a tfjs engine; valid: ${ENGINES.join(', ')}`);
  }
  return v as TfjsEngine | 'auto';
}

const tfjsFactory = () => createTfjsBackend({ engine: engineFromEnv() });

if (!listBackends().includes('tfjs')) registerBackend('tfjs', tfjsFactory, 50);
