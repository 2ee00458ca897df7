/**
 * Host tensors as the readers and writers see them. The shape is compatible with @moreau/core's
 * HostTensor: float16 / bfloat16 data are raw 16-bit patterns in a Uint16Array; bool is one byte (0/1).
 */
import {
  bfloat16ArrayToFloat32,
  float16ArrayToFloat32,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
} from './halfprecision.js';

export type HostDType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'bool';
export type FloatDType = 'float32' | 'float16' | 'bfloat16';
export type HostData = Float32Array | Uint16Array | Int32Array | Uint8Array;

/** A tensor in host memory, row-major (C order). */
export interface HostTensor {
  readonly dtype: HostDType;
  readonly shape: readonly number[];
  readonly data: HostData;
}

export const HOST_DTYPES: readonly HostDType[] = ['float32', 'float16', 'bfloat16', 'int32', 'bool'];

export function isFloatDType(dtype: HostDType): dtype is FloatDType {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16';
}

export function dtypeByteSize(dtype: HostDType): number {
  switch (dtype) {
    case 'float32':
    case 'int32':
      return 4;
    case 'float16':
    case 'bfloat16':
      return 2;
    case 'bool':
      return 1;
  }
}

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function allocateData(dtype: HostDType, n: number): HostData {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'bool':
      return new Uint8Array(n);
  }
}

/** The typed-array class a dtype's data must be. */
export function dataMatchesDType(dtype: HostDType, data: HostData): boolean {
  switch (dtype) {
    case 'float32':
      return data instanceof Float32Array;
    case 'float16':
    case 'bfloat16':
      return data instanceof Uint16Array;
    case 'int32':
      return data instanceof Int32Array;
    case 'bool':
      return data instanceof Uint8Array;
  }
}

/**
 * Check a tensor is self-consistent (dims are non-negative integers, data class fits the dtype, length
 * equals the product of the shape). Returns a description of the problem, or undefined when fine.
 */
export function hostTensorProblem(t: HostTensor): string | undefined {
  if (!HOST_DTYPES.includes(t.dtype)) return `unknown dtype ${JSON.stringify(t.dtype)}`;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      return `shape [${t.shape.join(', ')}] has a dimension that is not a non-negative integer`;
  }
  if (!dataMatchesDType(t.dtype, t.data)) return `dtype ${t.dtype} but data is a ${t.data.constructor.name}`;
  const n = numel(t.shape);
  if (t.data.length !== n)
    return `shape [${t.shape.join(', ')}] needs ${n} elements but data has ${t.data.length}`;
  return undefined;
}

/** The data as float32 (a copy for 16-bit types, the same array for float32). int32 / bool convert by value. */
export function toFloat32Data(t: HostTensor): Float32Array {
  switch (t.dtype) {
    case 'float32':
      return t.data as Float32Array;
    case 'float16':
      return float16ArrayToFloat32(t.data as Uint16Array);
    case 'bfloat16':
      return bfloat16ArrayToFloat32(t.data as Uint16Array);
    case 'int32':
    case 'bool':
      return Float32Array.from(t.data);
  }
}

/**
 * Convert a floating-point tensor to another floating-point dtype (exact round-to-nearest-even on the
 * host). Returns the same tensor object when the dtype already matches. int32 / bool tensors are
 * returned unchanged.
 */
export function castFloatTensor(t: HostTensor, dtype: FloatDType): HostTensor {
  if (t.dtype === dtype || !isFloatDType(t.dtype)) return t;
  if (t.dtype === 'float16' && dtype === 'bfloat16') {
    return {
      dtype,
      shape: t.shape,
      data: float32ArrayToBfloat16(float16ArrayToFloat32(t.data as Uint16Array)),
    };
  }
  if (t.dtype === 'bfloat16' && dtype === 'float16') {
    return {
      dtype,
      shape: t.shape,
      data: float32ArrayToFloat16(bfloat16ArrayToFloat32(t.data as Uint16Array)),
    };
  }
  const f32 = toFloat32Data(t);
  switch (dtype) {
    case 'float32':
      return { dtype, shape: t.shape, data: f32 };
    case 'float16':
      return { dtype, shape: t.shape, data: float32ArrayToFloat16(f32) };
    case 'bfloat16':
      return { dtype, shape: t.shape, data: float32ArrayToBfloat16(f32) };
  }
}

/** Bitwise equality of two tensors (dtype, shape and every data bit, so NaN payloads count). */
export function hostTensorsEqual(a: HostTensor, b: HostTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** View of a tensor's data as bytes (no copy). */
export function tensorBytes(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}
