/**
 * The WebAssembly SIMD counter-noise kernel (counter-noise.wat) behind the same interface as the
 * JavaScript reference: arrays of any length go through a fixed scratch buffer in the module's
 * memory, a chunk at a time, so the values never depend on the chunking.
 *
 * Under Node, a large perturbInto (Moreau perturbs every parameter twice per iteration, so this is
 * most of a streamed run's host time) is shared with helper threads, one per further core, each
 * with its own instance: a slice of the arrays is staged in shared memory and every thread takes
 * chunks of it until none are left. Any thread computes any chunk to the same bits.
 */
import { MoreauError } from '../errors.js';
import { pairCounter } from './counter-noise-ref.js';
import { NOISE_WASM_BASE64 } from './counter-noise-wasm-bytes.js';

/** Elements per chunk: two float32 regions of this size (values, deltas) in the module's memory. */
export const CHUNK = 16384;
/**
 * Elements per chunk of a shared call: even, so every chunk of a call starts at the same pair
 * offset (0 or 1) and a chunk's place follows from its index alone.
 */
const SPAN = CHUNK - 2;
/** Elements staged in shared memory at a time (64 chunks, 4 MiB per array). */
const SLICE = 64 * SPAN;
/** Calls shorter than this stay on the calling thread (the hand-over would cost more). */
const MIN_SHARED = 4 * SPAN;
/** A helper that has not finished its chunks by then has stopped: the call fails instead of hanging. */
const HELPER_TIMEOUT_MS = 60_000;

type Fill = (
  zp: number,
  n4: number,
  lo: number,
  hi: number,
  k0: number,
  k1: number,
  k2: number,
  k3: number,
) => void;
type Perturb = (
  wp: number,
  dp: number,
  n4: number,
  lo: number,
  hi: number,
  k0: number,
  k1: number,
  k2: number,
  k3: number,
  s: number,
) => void;

interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (
    module: object,
    imports: object,
  ) => {
    exports: { fill: Fill; perturb: Perturb; memory: { buffer: ArrayBuffer; grow(pages: number): number } };
  };
}

/** One instance of the module and its scratch (values, then deltas: CHUNK float32 each). */
interface Instance {
  readonly fill: Fill;
  readonly perturb: Perturb;
  readonly mem: Float32Array;
  /** Whether the delta region holds -0s (what a call without delta adds: x + -0 = x for every x). */
  deltaIsNegZero: boolean;
}

/** Chunks [0, chunks) of out = perturb(w, delta) for stream elements from `start`, SPAN apart. */
interface PerturbJob {
  readonly out: Float32Array | Float64Array;
  readonly w: Float32Array | Float64Array;
  readonly delta: Float32Array | Float64Array | undefined;
  readonly std: number;
  readonly key: readonly [number, number, number, number];
  readonly start: number;
  readonly chunks: number;
  /** Shared counters: [next chunk to take, chunks finished] (shared jobs only). */
  readonly ticket?: Int32Array;
}

// The next two functions also run in helper threads (their source is sent there), so they use
// nothing from outside their bodies: constants come in as arguments.

/** A new instance of the module with a scratch of two regions of `chunk` float32 values. */
function instantiateKernel(wasm: WasmApi, bytes: Uint8Array, chunk: number): Instance {
  const { exports } = new wasm.Instance(new wasm.Module(bytes), {});
  const page = 65536;
  const need = 2 * chunk * 4;
  const have = exports.memory.buffer.byteLength;
  if (have < need) exports.memory.grow(Math.ceil((need - have) / page)); // once, at start-up
  return {
    fill: exports.fill,
    perturb: exports.perturb,
    mem: new Float32Array(exports.memory.buffer, 0, 2 * chunk),
    deltaIsNegZero: false,
  };
}

/**
 * Chunk c of a job: elements [c span, (c + 1) span) of out. The scratch holds whole pairs from
 * pair floor(e0 / 2), so element e0 sits at scratch index e0 % 2; the kernel computes whole groups
 * of 4 pairs (the excess lanes are discarded).
 */
function perturbChunk(k: Instance, job: PerturbJob, c: number, span: number, chunk: number): void {
  const d0 = c * span;
  const take = Math.min(job.out.length - d0, span);
  const e0 = job.start + d0;
  const off = e0 % 2;
  const pair = (e0 - off) / 2;
  k.mem.set(job.w.subarray(d0, d0 + take), off);
  if (job.delta) {
    k.mem.set(job.delta.subarray(d0, d0 + take), chunk + off);
    k.deltaIsNegZero = false;
  } else if (!k.deltaIsNegZero) {
    k.mem.fill(-0, chunk);
    k.deltaIsNegZero = true;
  }
  const [k0, k1, k2, k3] = job.key;
  k.perturb(
    0,
    chunk * 4,
    Math.ceil((off + take) / 8),
    pair >>> 0,
    Math.floor(pair / 4294967296) >>> 0,
    k0,
    k1,
    k2,
    k3,
    job.std,
  );
  job.out.set(k.mem.subarray(off, off + take), d0);
}

/** A helper thread: takes chunks of every job it is sent until the job's ticket runs out. */
const helperSource = `
const { parentPort, workerData } = require('node:worker_threads');
var __name = (f) => f; // a transpiler's helper, should it have named the functions below
const instantiateKernel = ${instantiateKernel.toString()};
const perturbChunk = ${perturbChunk.toString()};
const k = instantiateKernel(WebAssembly, workerData.bytes, workerData.chunk);
parentPort.on('message', (job) => {
  for (let c = Atomics.add(job.ticket, 0, 1); c < job.chunks; c = Atomics.add(job.ticket, 0, 1)) {
    perturbChunk(k, job, c, workerData.span, workerData.chunk);
    Atomics.add(job.ticket, 1, 1);
    Atomics.notify(job.ticket, 1);
  }
});
parentPort.postMessage('ready');
`;

interface Helpers {
  readonly threads: { postMessage(job: PerturbJob): void }[];
  /** Resolves with the number of helpers that started. */
  readonly ready: Promise<number>;
  /** Staging of a slice in shared memory: values (also the output), deltas. */
  readonly w: Float32Array;
  readonly delta: Float32Array;
}

/** Helper threads, one per core beyond the first (none outside Node or on one core). */
function startHelpers(bytes: Uint8Array): Helpers | null {
  const proc = (globalThis as { process?: NodeJS.Process }).process;
  const threads = proc?.getBuiltinModule?.('node:worker_threads');
  const os = proc?.getBuiltinModule?.('node:os');
  const wanted = Number(proc?.env.MOREAU_NOISE_THREADS ?? (os ? os.availableParallelism() : 1)) - 1;
  if (!threads || !(wanted >= 1) || typeof SharedArrayBuffer === 'undefined') return null;
  const started: Helpers['threads'] = [];
  const ready: Promise<boolean>[] = [];
  for (let i = 0; i < Math.min(wanted, 7); i++) {
    const worker = new threads.Worker(helperSource, {
      eval: true,
      workerData: { bytes, chunk: CHUNK, span: SPAN },
    });
    worker.unref(); // never keeps the process alive
    ready.push(
      new Promise((resolve) => {
        worker.once('message', () => resolve(true));
        worker.once('error', () => resolve(false));
      }),
    );
    started.push(worker);
  }
  const shared = () => new Float32Array(new SharedArrayBuffer(SLICE * 4));
  return {
    threads: started,
    ready: Promise.all(ready).then((ok) => ok.filter(Boolean).length),
    w: shared(),
    delta: shared(),
  };
}

export interface NoiseKernel {
  fill(key: readonly [number, number, number, number], start: number, out: Float32Array | Float64Array): void;
  perturb(
    out: Float32Array | Float64Array,
    w: Float32Array | Float64Array,
    delta: Float32Array | Float64Array | undefined,
    std: number,
    key: readonly [number, number, number, number],
    start: number,
  ): void;
  /** Resolves with the number of helper threads that share large calls (0: none). */
  helpersReady(): Promise<number>;
  /** Chunks the helper threads computed in the latest perturb call (for tests and benchmarks). */
  readonly lastHelperChunks: number;
}

function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function instantiate(): NoiseKernel | null {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (!wasm) return null;
  const bytes = decodeBase64(NOISE_WASM_BASE64);
  // An engine without SIMD rejects the module: the caller falls back to the JS reference.
  if (!wasm.validate(bytes)) return null;
  const main = instantiateKernel(wasm, bytes, CHUNK);
  let helpers: Helpers | null | undefined;
  let helperChunks = 0;

  /** Runs a job on this thread alone. */
  const runHere = (job: PerturbJob) => {
    for (let c = 0; c < job.chunks; c++) perturbChunk(main, job, c, SPAN, CHUNK);
  };
  /** Runs a staged job with the helpers; returns the chunks they took. */
  const runShared = (h: Helpers, job: PerturbJob & { ticket: Int32Array }) => {
    for (const t of h.threads) t.postMessage(job);
    let mine = 0;
    for (let c = Atomics.add(job.ticket, 0, 1); c < job.chunks; c = Atomics.add(job.ticket, 0, 1)) {
      perturbChunk(main, job, c, SPAN, CHUNK);
      Atomics.add(job.ticket, 1, 1);
      mine++;
    }
    const deadline = Date.now() + HELPER_TIMEOUT_MS;
    for (let done = Atomics.load(job.ticket, 1); done < job.chunks; done = Atomics.load(job.ticket, 1)) {
      if (Date.now() > deadline) {
        throw new MoreauError(
          `counter noise: a helper thread did not finish its chunks within ${HELPER_TIMEOUT_MS / 1000} s (set MOREAU_NOISE_THREADS=1 to compute on one thread)`,
        );
      }
      Atomics.wait(job.ticket, 1, done, 100);
    }
    return job.chunks - mine;
  };

  return {
    fill(key, start, out) {
      for (let done = 0; done < out.length; ) {
        const e0 = start + done;
        const off = e0 % 2;
        const take = Math.min(out.length - done, CHUNK - off);
        const [lo, hi] = pairCounter((e0 - off) / 2);
        main.fill(0, Math.ceil((off + take) / 8), lo, hi, key[0], key[1], key[2], key[3]);
        out.set(main.mem.subarray(off, off + take), done);
        done += take;
      }
    },
    perturb(out, w, delta, std, key, start) {
      const n = out.length;
      helperChunks = 0;
      if (n >= MIN_SHARED) helpers ??= startHelpers(bytes);
      if (n < MIN_SHARED || !helpers) {
        runHere({ out, w, delta, std, key, start, chunks: Math.ceil(n / SPAN) });
        return;
      }
      // A slice at a time: stage w (and delta) in shared memory, perturb it in place there with
      // the helpers, copy the result out. Helpers that have not started yet simply take nothing.
      for (let s0 = 0; s0 < n; s0 += SLICE) {
        const len = Math.min(SLICE, n - s0);
        const sw = helpers.w.subarray(0, len);
        sw.set(w.subarray(s0, s0 + len));
        const sd = delta ? helpers.delta.subarray(0, len) : undefined;
        sd?.set(delta!.subarray(s0, s0 + len));
        const ticket = new Int32Array(new SharedArrayBuffer(8));
        const job = {
          out: sw,
          w: sw,
          delta: sd,
          std,
          key,
          start: start + s0,
          chunks: Math.ceil(len / SPAN),
          ticket,
        };
        helperChunks += runShared(helpers, job);
        out.set(sw, s0);
      }
    },
    helpersReady() {
      helpers ??= startHelpers(bytes);
      return helpers?.ready ?? Promise.resolve(0);
    },
    get lastHelperChunks() {
      return helperChunks;
    },
  };
}

let kernel: NoiseKernel | null | undefined;

/** The WebAssembly kernel, or null where the engine has no WebAssembly SIMD. */
export function noiseKernel(): NoiseKernel | null {
  if (kernel === undefined) {
    try {
      kernel = instantiate();
    } catch {
      kernel = null;
    }
  }
  return kernel;
}
