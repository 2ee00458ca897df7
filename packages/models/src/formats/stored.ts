/**
 * Tensors that live in checkpoint files. A reader describes each tensor by where its bytes are
 * (`StoredTensor`: file, offset, byte length, storage dtype, shape) and what loading does to them
 * (`TensorRecipe`: a row permutation, a dtype conversion). `materializeTensors` then either reads
 * them all now (eager) or wraps each in one of core's lazy tensors whose loader reads the bytes with
 * a positional read when the data is first needed (and again after the garbage collector dropped
 * it). Either way a tensor is held once, in its storage dtype unless a conversion was asked for.
 *
 * Every tensor's values are checked once for NaN / Infinity: eagerly at load, lazily when the data
 * is first read. A file that changed on disk since it was indexed is an error, not silent garbage.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import {
  availableMemory,
  bytesPerElement,
  castHost,
  type DType,
  type FloatDType,
  type HostData,
  type HostTensor,
  isFloat,
  lazyTensor,
  sizeOf,
} from '@moreau/core';
import { describeError, FormatError } from './errors.js';
import { openForRead, readExactly } from './io.js';

/** Size and modification time of a file when it was indexed. */
export interface FileStamp {
  readonly size: number;
  readonly mtimeMs: number;
}

/** Where one tensor's bytes are, as its file's header says. */
export interface StoredTensor {
  readonly file: string;
  /** The tensor's name in its file (for messages). */
  readonly name: string;
  readonly dtype: DType;
  /** Row-major shape. */
  readonly shape: readonly number[];
  /** Absolute byte offset and byte length in the file. */
  readonly offset: number;
  readonly byteLength: number;
  readonly stamp: FileStamp;
}

/** What loading does to a stored tensor's data, in order. */
export interface TensorRecipe {
  /** Rearrange the elements (same length and dtype), e.g. llama2.c / GGUF q/k rows to HF's order. */
  readonly transform?: (data: Float32Array | Uint16Array) => Float32Array | Uint16Array;
  /** Convert a floating-point tensor to this dtype. */
  readonly dtype?: FloatDType;
  /** Check the values for NaN / Infinity once (default true: model weights must be finite). */
  readonly checkFinite?: boolean;
}

/** A tensor to materialize: where it is and what to do with it. */
export interface TensorSource {
  readonly stored: StoredTensor;
  readonly recipe?: TensorRecipe;
}

/** Largest single read handed to the OS (Node limits one call to < 2 GiB). */
const MAX_IO = 1 << 30;

const DATA_CLASS: Record<DType, new (b: ArrayBuffer) => HostData> = {
  float32: Float32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int32: Int32Array,
  bool: Uint8Array,
};

/** The dtype a source has once loaded. */
export function loadedDtype(src: TensorSource): DType {
  const d = src.recipe?.dtype;
  return d && isFloat(src.stored.dtype) ? d : src.stored.dtype;
}

/** Bytes a source occupies once loaded. */
export function loadedBytes(src: TensorSource): number {
  return sizeOf(src.stored.shape) * bytesPerElement(loadedDtype(src));
}

/**
 * The index of the first NaN / Infinity in floating-point `data` of `dtype`, or -1. float16 and
 * bfloat16 are checked on their bits (exponent all ones).
 */
export function firstNonFinite(data: HostData, dtype: DType): number {
  if (dtype === 'float32') {
    const f = data as Float32Array;
    for (let i = 0; i < f.length; i++) {
      const v = f[i]!;
      if (v - v !== 0) return i;
    }
    return -1;
  }
  const mask = dtype === 'float16' ? 0x7c00 : dtype === 'bfloat16' ? 0x7f80 : 0;
  if (mask === 0) return -1;
  const h = data as Uint16Array;
  for (let i = 0; i < h.length; i++) if ((h[i]! & mask) === mask) return i;
  return -1;
}

function nonFiniteError(s: StoredTensor, data: HostData, dtype: DType, i: number, what: string): FormatError {
  const v = dtype === 'float32' ? (data as Float32Array)[i]! : (data as Uint16Array)[i]!;
  const isNan = dtype === 'float32' ? Number.isNaN(v) : (v & (dtype === 'float16' ? 0x3ff : 0x7f)) !== 0;
  const kind = isNan ? 'NaN' : v < 0 || (dtype !== 'float32' && v & 0x8000) ? '-Infinity' : 'Infinity';
  const cols = s.shape.length === 2 ? s.shape[1]! : 0;
  const at = cols > 0 ? ` (row ${Math.floor(i / cols)}, column ${i % cols})` : '';
  return new FormatError(s.file, `tensor ${s.name} ${what} ${kind} at element ${i}${at}`, {
    field: s.name,
  });
}

/** Turn a tensor's raw bytes into its loaded data: typed view, finiteness check, transform, cast. */
function decode(src: TensorSource, buf: ArrayBuffer, firstTime: boolean): HostData {
  const s = src.stored;
  const check = firstTime && src.recipe?.checkFinite !== false;
  const raw = new DATA_CLASS[s.dtype](buf);
  if (check && isFloat(s.dtype)) {
    const i = firstNonFinite(raw, s.dtype);
    if (i >= 0) throw nonFiniteError(s, raw, s.dtype, i, 'has a non-finite value:');
  }
  let data = raw;
  const t = src.recipe?.transform;
  if (t && (s.dtype === 'float32' || s.dtype === 'float16' || s.dtype === 'bfloat16')) {
    data = t(raw as Float32Array | Uint16Array);
  }
  const to = loadedDtype(src);
  if (to !== s.dtype) {
    data = castHost({ dtype: s.dtype, shape: s.shape, data }, to).data;
    if (check) {
      const i = firstNonFinite(data, to);
      if (i >= 0) throw nonFiniteError(s, data, to, i, `overflows ${to}:`);
    }
  }
  return data;
}

function changedError(s: StoredTensor, now: FileStamp): FormatError {
  return new FormatError(
    s.file,
    `changed on disk since the model was loaded (was ${s.stamp.size} bytes, now ${now.size}); load it again`,
  );
}

function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** Read a stored tensor's bytes synchronously (the lazy path: core's lazy tensors load synchronously). */
function readStoredSync(s: StoredTensor): ArrayBuffer {
  let fd: number;
  try {
    fd = openSync(s.file, 'r');
  } catch (e) {
    throw new FormatError(s.file, `cannot open to read tensor ${s.name} (${describeError(e)})`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    const now = { size: st.size, mtimeMs: st.mtimeMs };
    if (!sameStamp(now, s.stamp)) throw changedError(s, now);
    const buf = new ArrayBuffer(s.byteLength);
    const dst = new Uint8Array(buf);
    let done = 0;
    while (done < dst.length) {
      const n = readSync(fd, dst, done, Math.min(MAX_IO, dst.length - done), s.offset + done);
      if (n === 0) {
        throw new FormatError(
          s.file,
          `truncated: tensor ${s.name} needs bytes ${s.offset}..${s.offset + s.byteLength} but the file ends at byte ${s.offset + done}`,
        );
      }
      done += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** A lazy tensor over a stored tensor: read (and checked, the first time) when its data is needed. */
export function lazyStoredTensor(src: TensorSource): HostTensor {
  let checked = false;
  return lazyTensor(src.stored.shape, loadedDtype(src), () => {
    const data = decode(src, readStoredSync(src.stored), !checked);
    checked = true;
    return data;
  });
}

/** Read every source now (one open per file, reads in file order). */
async function readAllNow(sources: ReadonlyMap<string, TensorSource>): Promise<Map<string, HostTensor>> {
  const byFile = new Map<string, [string, TensorSource][]>();
  for (const e of sources) {
    const list = byFile.get(e[1].stored.file) ?? [];
    list.push(e);
    byFile.set(e[1].stored.file, list);
  }
  const loaded = new Map<string, HostTensor>();
  for (const [file, list] of byFile) {
    const { fh } = await openForRead(file);
    try {
      const st = await fh.stat();
      const first = list[0]![1].stored;
      const now = { size: st.size, mtimeMs: st.mtimeMs };
      if (!sameStamp(now, first.stamp)) throw changedError(first, now);
      list.sort((a, b) => a[1].stored.offset - b[1].stored.offset);
      for (const [name, src] of list) loaded.set(name, await readNow(fh, src));
    } finally {
      await fh.close();
    }
  }
  return new Map([...sources.keys()].map((n) => [n, loaded.get(n)!]));
}

async function readNow(fh: FileHandle, src: TensorSource): Promise<HostTensor> {
  const s = src.stored;
  const buf = new ArrayBuffer(s.byteLength);
  await readExactly(fh, s.file, new Uint8Array(buf), s.offset, `tensor ${s.name}`);
  return { dtype: loadedDtype(src), shape: [...s.shape], data: decode(src, buf, true) };
}

/** The `lazy` option of the loaders. */
export type LazyOption = boolean | 'auto';

/** The fraction of available memory above which 'auto' loads lazily. */
export const LAZY_AUTO_FRACTION = 0.25;

/**
 * Whether to load lazily: `true` / `false` as given; 'auto' (the default) when the weights, in the
 * dtype they are loaded as, exceed a quarter of the memory available now (Linux MemAvailable).
 */
export async function decideLazy(option: LazyOption | undefined, bytes: number): Promise<boolean> {
  if (option === true || option === false) return option;
  return bytes > LAZY_AUTO_FRACTION * (await availableMemory());
}

/**
 * Tensors for every source: lazy (nothing read now) or read now, by the `lazy` option and the total
 * size. Names keep the order of `sources`.
 */
export async function materializeTensors(
  sources: ReadonlyMap<string, TensorSource>,
  lazy: LazyOption | undefined,
): Promise<{ tensors: Map<string, HostTensor>; lazy: boolean }> {
  let bytes = 0;
  for (const s of sources.values()) bytes += loadedBytes(s);
  if (await decideLazy(lazy, bytes)) {
    return { tensors: new Map([...sources].map(([n, s]) => [n, lazyStoredTensor(s)])), lazy: true };
  }
  return { tensors: await readAllNow(sources), lazy: false };
}

/** The stamp of an open file. */
export async function stampOf(fh: FileHandle): Promise<FileStamp> {
  const st = await fh.stat();
  return { size: st.size, mtimeMs: st.mtimeMs };
}
