/**
 * Exact conversions between float32 and the two 16-bit float formats, on raw bit patterns.
 *
 * float32 -> float16 / bfloat16 round to nearest, ties to even; values beyond the largest finite
 * half round to infinity (as IEEE 754 requires); float16 subnormals are produced and read exactly;
 * infinities keep their sign; NaN stays NaN (sign and the top payload bits are kept, and the result
 * is forced quiet so a payload that would truncate to zero cannot turn into infinity).
 * float16 / bfloat16 -> float32 is exact (every half value is a float32 value).
 *
 * Bulk functions work on the bit patterns of the input (a Uint32Array view), so they are exact for
 * every input including NaN payloads. Self-contained: no imports.
 */

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 bit pattern -> float16 bit pattern, round to nearest even. */
export function float32BitsToFloat16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) {
    // Inf or NaN. A NaN keeps its top 10 payload bits and gets the quiet bit.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  if (exp >= 113) {
    // Normal in float16 range (or overflow): rebias 127 -> 15, round 23 -> 10 mantissa bits.
    let h = ((exp - 112) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is correct
    return h >= 0x7c00 ? sign | 0x7c00 : sign | h;
  }
  if (exp >= 102) {
    // float16 subnormal: value = m * 2^(exp - 150) with the implicit bit; units of 2^-24.
    const m = mant | 0x800000;
    const shift = 126 - exp; // 14 .. 24
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (h & 1) !== 0)) h++; // may become the smallest normal: correct
    return sign | h;
  }
  // |x| <= 2^-25 (ties to even go to zero) or a float32 subnormal: signed zero.
  return sign;
}

/** float16 bit pattern -> float32 bit pattern (exact). */
export function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalise. value = mant * 2^-24.
  let e = 113; // exponent field if mant had its leading bit at position 10
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** float32 bit pattern -> bfloat16 bit pattern, round to nearest even. */
export function float32BitsToBfloat16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    // NaN: keep sign and top payload bits, force quiet so it cannot become Inf.
    return ((bits >>> 16) | 0x40) & 0xffff;
  }
  const lsb = (bits >>> 16) & 1;
  // Overflow past the largest finite bfloat16 carries into the exponent and gives Inf, as it should.
  return (((bits >>> 0) + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** bfloat16 bit pattern -> float32 bit pattern (exact). */
export function bfloat16BitsToFloat32Bits(h: number): number {
  return ((h & 0xffff) << 16) >>> 0;
}

/** A number (rounded to float32 first, as storing it in a Float32Array would) -> float16 bits. */
export function float32ToFloat16Bits(x: number): number {
  f32Scratch[0] = x;
  return float32BitsToFloat16Bits(u32Scratch[0]!);
}

/** float16 bits -> number (exact). */
export function float16BitsToFloat32(h: number): number {
  u32Scratch[0] = float16BitsToFloat32Bits(h);
  return f32Scratch[0]!;
}

/** A number (rounded to float32 first) -> bfloat16 bits. */
export function float32ToBfloat16Bits(x: number): number {
  f32Scratch[0] = x;
  return float32BitsToBfloat16Bits(u32Scratch[0]!);
}

/** bfloat16 bits -> number (exact). */
export function bfloat16BitsToFloat32(h: number): number {
  u32Scratch[0] = bfloat16BitsToFloat32Bits(h);
  return f32Scratch[0]!;
}

let f16Table: Uint32Array | undefined;
function float16Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = float16BitsToFloat32Bits(h);
  }
  return f16Table;
}

function u32View(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function checkLength(what: string, src: { length: number }, dst: { length: number }): void {
  if (dst.length !== src.length) {
    throw new RangeError(`${what}: output has ${dst.length} elements, input has ${src.length}`);
  }
}

/** Bulk float32 -> float16 bit patterns. */
export function float32ArrayToFloat16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  checkLength('float32ArrayToFloat16', src, dst);
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) dst[i] = float32BitsToFloat16Bits(bits[i]!);
  return dst;
}

/** Bulk float16 bit patterns -> float32. */
export function float16ArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  checkLength('float16ArrayToFloat32', src, dst);
  const table = float16Table();
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return dst;
}

/** Bulk float32 -> bfloat16 bit patterns. */
export function float32ArrayToBfloat16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  checkLength('float32ArrayToBfloat16', src, dst);
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) dst[i] = float32BitsToBfloat16Bits(bits[i]!);
  return dst;
}

/** Bulk bfloat16 bit patterns -> float32. */
export function bfloat16ArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  checkLength('bfloat16ArrayToFloat32', src, dst);
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return dst;
}
