/**
 * The WebAssembly SIMD counter-noise kernel (counter-noise.wat) behind the same interface as the
 * JavaScript reference: arrays of any length go through a fixed scratch buffer in the module's
 * memory, a chunk at a time, so the values never depend on the chunking.
 */
import { pairCounter } from './counter-noise-ref.js';
import { NOISE_WASM_BASE64 } from './counter-noise-wasm-bytes.js';

/** Elements per chunk: two float32 regions of this size (values, deltas) in the module's memory. */
export const CHUNK = 16384;
const PAGE = 65536;

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
  const { exports } = new wasm.Instance(new wasm.Module(bytes), {});
  const need = 2 * CHUNK * 4;
  const have = exports.memory.buffer.byteLength;
  if (have < need) exports.memory.grow(Math.ceil((need - have) / PAGE)); // once, at start-up
  const { fill: wasmFill, perturb: wasmPerturb } = exports;
  const mem = new Float32Array(exports.memory.buffer, 0, 2 * CHUNK);
  const dBytes = CHUNK * 4;
  // Without delta the kernel adds -0 (x + -0 = x for every x): the delta region holds -0s until
  // a call with delta overwrites it.
  let deltaIsNegZero = false;

  // Chunk c covers elements [e0, e0 + take) of the stream; the scratch holds whole pairs from
  // pair floor(e0 / 2), so element e0 sits at scratch index e0 % 2. A chunk is at most CHUNK
  // scratch elements, rounded up to whole groups of 4 pairs (CHUNK is a multiple of 8).
  const chunks = (
    start: number,
    n: number,
    body: (done: number, off: number, take: number, n4: number, lo: number, hi: number) => void,
  ) => {
    for (let done = 0; done < n; ) {
      const e0 = start + done;
      const off = e0 % 2;
      const take = Math.min(n - done, CHUNK - off);
      const [lo, hi] = pairCounter((e0 - off) / 2);
      body(done, off, take, Math.ceil((off + take) / 8), lo, hi);
      done += take;
    }
  };

  return {
    fill(key, start, out) {
      chunks(start, out.length, (done, off, take, n4, lo, hi) => {
        wasmFill(0, n4, lo, hi, key[0], key[1], key[2], key[3]);
        out.set(mem.subarray(off, off + take), done);
      });
    },
    perturb(out, w, delta, std, key, start) {
      chunks(start, out.length, (done, off, take, n4, lo, hi) => {
        mem.set(w.subarray(done, done + take), off);
        if (delta) {
          mem.set(delta.subarray(done, done + take), CHUNK + off);
          deltaIsNegZero = false;
        } else if (!deltaIsNegZero) {
          mem.fill(-0, CHUNK);
          deltaIsNegZero = true;
        }
        wasmPerturb(0, dBytes, n4, lo, hi, key[0], key[1], key[2], key[3], std);
        out.set(mem.subarray(off, off + take), done);
      });
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
