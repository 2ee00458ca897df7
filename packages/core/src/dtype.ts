/**
 * Data types and host tensors.
 *
 * Compute happens in float32 / int32 / bool. float16 and bfloat16 are storage types: their data is
 * the raw 16-bit pattern in a Uint16Array, converted exactly (round-to-nearest-even) on the host.
 */

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'bool';

/** The floating-point dtypes (float16 and bfloat16 are storage types; compute is float32). */
export type FloatDType = 'float32' | 'float16' | 'bfloat16';

export type HostData = Float32Array | Uint16Array | Int32Array | Uint8Array;

/** A tensor whose data lives in host memory. Row-major (C order). */
export interface HostTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: HostData;
}

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16';
}

export function bytesPerElement(dtype: DType): number {
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

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function allocate(dtype: DType, n: number): HostData {
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

function checkData(dtype: DType, shape: readonly number[], data: HostData): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`tensor: invalid shape [${shape.join(', ')}]`);
  }
  const expected: Record<DType, string> = {
    float32: 'Float32Array',
    float16: 'Uint16Array',
    bfloat16: 'Uint16Array',
    int32: 'Int32Array',
    bool: 'Uint8Array',
  };
  if (data.constructor.name !== expected[dtype]) {
    throw new TypeError(`tensor: dtype ${dtype} needs a ${expected[dtype]}, got a ${data.constructor.name}`);
  }
  if (data.length !== sizeOf(shape)) {
    throw new RangeError(
      `tensor: shape [${shape.join(', ')}] holds ${sizeOf(shape)} elements but the data has ${data.length}`,
    );
  }
}

/** Builds a host tensor; plain number arrays are copied into the dtype's typed array. */
export function tensor(
  data: HostData | readonly number[] | readonly boolean[],
  shape: readonly number[],
  dtype: DType = 'float32',
): HostTensor {
  let typed: HostData;
  if (ArrayBuffer.isView(data)) {
    typed = data as HostData;
  } else {
    const n = (data as readonly unknown[]).length;
    typed = allocate(dtype, n);
    const src = data as readonly (number | boolean)[];
    if (dtype === 'float16' || dtype === 'bfloat16') {
      const f = Float32Array.from(src, Number);
      typed = dtype === 'float16' ? float32ToFloat16(f) : float32ToBfloat16(f);
    } else if (dtype === 'bool') {
      for (let i = 0; i < n; i++) typed[i] = Number(src[i]) !== 0 ? 1 : 0; // as castHost: NaN is true
    } else {
      for (let i = 0; i < n; i++) (typed as Float32Array)[i] = Number(src[i]);
    }
  }
  checkData(dtype, shape, typed);
  return { dtype, shape: [...shape], data: typed };
}

export function scalar(value: number, dtype: DType = 'float32'): HostTensor {
  return tensor([value], [], dtype);
}

export function zeros(shape: readonly number[], dtype: DType = 'float32'): HostTensor {
  return { dtype, shape: [...shape], data: allocate(dtype, sizeOf(shape)) };
}

// ---------------------------------------------------------------------------------------------
// Exact half-precision conversions. Reinterpreting through a shared buffer gives the raw bits.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The float32 bits of `value`, rounded to odd when `value` (a float64) is not a float32: a second
 * rounding to a format with fewer than 22 fraction bits is then correctly rounded, with no double
 * rounding (1 + 2^-11 + 2^-40 must round up to float16, not tie to even through float32).
 */
function f32BitsRoundToOdd(value: number): number {
  f32[0] = value;
  let x = u32[0]!;
  const r = f32[0]!;
  if (r !== value && Number.isFinite(r) && !Number.isNaN(value)) {
    if (Math.abs(r) > Math.abs(value)) x = (x - 1) >>> 0; // truncate toward zero
    x = (x | 1) >>> 0; // sticky bit
  }
  return x;
}

/**
 * A number (float32 or float64) -> IEEE binary16 bits, round-to-nearest-even; overflow -> inf;
 * NaN stays NaN (quiet).
 */
export function float32ToFloat16Bits(value: number): number {
  const x = f32BitsRoundToOdd(value);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-one mantissa right, rounding to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // may carry into the exponent: correct
  return sign | h;
}

/** float16 bits -> float32 bits (exact; a NaN keeps its sign and payload). */
function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal half: normalise (value = mant * 2^-24).
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

export function float16BitsToFloat32(h: number): number {
  u32[0] = float16BitsToFloat32Bits(h & 0xffff);
  return f32[0]!;
}

/** A number (float32 or float64) -> bfloat16 bits, round-to-nearest-even; NaN stays NaN (quiet). */
export function float32ToBfloat16Bits(value: number): number {
  const x = f32BitsRoundToOdd(value);
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bfloat16BitsToFloat32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

export function float32ToFloat16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = float32ToFloat16Bits(src[i]!);
  return out;
}

/** float16 bits -> float32 bits for all 65536 patterns, built on first use (256 KiB). */
let f16Table: Uint32Array | undefined;

/** Exact, by table lookup on the bits (so NaN payloads survive); fast enough for whole checkpoints. */
export function float16ToFloat32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  f16Table ??= Uint32Array.from({ length: 65536 }, (_, h) => float16BitsToFloat32Bits(h));
  const table = f16Table;
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]!]!;
  return out;
}

export function float32ToBfloat16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) out[i] = ((x >>> 16) | 0x40) & 0xffff;
    else out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

export function bfloat16ToFloat32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

/** Converts a host tensor to another dtype on the host (floats round-to-nearest-even; to bool: != 0). */
export function castHost(t: HostTensor, dtype: DType): HostTensor {
  if (t.dtype === dtype) return t;
  const asF32 = toFloat32Data(t);
  let data: HostData;
  switch (dtype) {
    case 'float32':
      data = asF32;
      break;
    case 'float16':
      data = float32ToFloat16(asF32);
      break;
    case 'bfloat16':
      data = float32ToBfloat16(asF32);
      break;
    case 'int32':
      data = Int32Array.from(asF32, (v) => Math.trunc(v));
      break;
    case 'bool':
      data = Uint8Array.from(asF32, (v) => (v !== 0 ? 1 : 0));
      break;
  }
  return { dtype, shape: [...t.shape], data };
}

/**
 * The tensor's values as float32: written into `out` when given (it must have the tensor's length),
 * else a copy unless the tensor already is float32.
 */
export function toFloat32Data(t: HostTensor, out?: Float32Array): Float32Array {
  switch (t.dtype) {
    case 'float32':
      if (!out) return t.data as Float32Array;
      out.set(t.data as Float32Array);
      return out;
    case 'float16':
      return float16ToFloat32(t.data as Uint16Array, out);
    case 'bfloat16':
      return bfloat16ToFloat32(t.data as Uint16Array, out);
    default:
      if (!out) return Float32Array.from(t.data as Int32Array | Uint8Array);
      out.set(t.data as Int32Array | Uint8Array);
      return out;
  }
}

/** Bitwise equality of two host tensors: dtype, shape and every data bit (so NaN payloads and -0 count). */
export function hostTensorsEqual(a: HostTensor, b: HostTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
