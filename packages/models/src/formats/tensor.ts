/**
 * What the readers and writers add to @moreau/core's host tensors (HostTensor, DType, castHost, the
 * half-precision conversions all come from core): validating a tensor that came from a file, the
 * float-only cast of the `dtype` load options, typed views over raw file bytes, and the read() /
 * close() pair of the open* functions.
 */
import type { FileHandle } from 'node:fs/promises';
import {
  allocate,
  castHost,
  type DType,
  type FloatDType,
  type HostData,
  type HostTensor,
  isFloat,
  isLazyTensor,
  sizeOf,
} from '@moreau/core';
import { FormatError } from './errors.js';
import { readExactly } from './io.js';

const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int32', 'bool'];

type DataClass = new (from: ArrayBuffer | number) => HostData;

/** The typed-array class of a dtype's data, as core allocates it. */
function dataClass(dtype: DType): DataClass {
  return allocate(dtype, 0).constructor as DataClass;
}

/**
 * Check a tensor is self-consistent (a known dtype, dims are non-negative integers, the data is the
 * typed array of its dtype, length equals the product of the shape). Returns a description of the
 * problem, or undefined when fine. A lazy tensor's data is not read (core checks its length when it
 * loads).
 */
export function hostTensorProblem(t: HostTensor): string | undefined {
  if (!DTYPES.includes(t.dtype)) return `unknown dtype ${JSON.stringify(t.dtype)}`;
  if (!Array.isArray(t.shape) || t.shape.length > 8) return 'shape must be a list of at most 8 dimensions';
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      return `shape [${t.shape.join(', ')}] has a dimension that is not a non-negative integer`;
  }
  if (isLazyTensor(t)) return undefined;
  if (!(t.data instanceof dataClass(t.dtype)))
    return `dtype ${t.dtype} but data is a ${t.data.constructor.name}`;
  const n = sizeOf(t.shape);
  if (t.data.length !== n)
    return `shape [${t.shape.join(', ')}] needs ${n} elements but data has ${t.data.length}`;
  return undefined;
}

/**
 * The `dtype` option of the loaders: a floating-point tensor converted to `dtype` (core's castHost;
 * the same object when nothing changes); int32 / bool tensors, and any tensor when `dtype` is
 * undefined, are returned unchanged.
 */
export function castFloatTensor(t: HostTensor, dtype: FloatDType | undefined): HostTensor {
  return dtype && isFloat(t.dtype) ? castHost(t, dtype) : t;
}

/** The data of a `dtype` tensor as a typed array over `buf` (no copy). */
function dataFromBuffer(dtype: DType, buf: ArrayBuffer): HostData {
  return new (dataClass(dtype))(buf);
}

/** View of a tensor's data as bytes (no copy). */
export function dataBytes(data: HostData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Where one tensor lies in a file, as a format's header says. */
export interface StoredTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Absolute byte offset and byte length in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

/**
 * read() / close() over an open file whose tensors `locate` finds by name (it may throw a FormatError
 * for tensors it cannot read). read() returns a fresh tensor, converted to options.dtype when that is
 * given and the tensor is floating point; close() is idempotent; read() after close() is an error.
 */
export function tensorFileReader<Info>(
  fh: FileHandle,
  file: string,
  tensors: ReadonlyMap<string, Info>,
  locate: (name: string, info: Info) => StoredTensor,
): {
  read(name: string, options?: { dtype?: FloatDType }): Promise<HostTensor>;
  close(): Promise<void>;
} {
  let closed = false;
  return {
    async read(name, options = {}) {
      if (closed) throw new FormatError(file, `read(${name}) after close()`);
      const info = tensors.get(name);
      if (!info) throw new FormatError(file, `has no tensor named ${name}`);
      const { dtype, shape, offset, byteLength } = locate(name, info);
      const buf = new ArrayBuffer(byteLength);
      await readExactly(fh, file, new Uint8Array(buf), offset, `tensor ${name}`);
      return castFloatTensor(
        { dtype, shape: shape.slice(), data: dataFromBuffer(dtype, buf) },
        options.dtype,
      );
    },
    async close() {
      if (!closed) {
        closed = true;
        await fh.close();
      }
    },
  };
}
