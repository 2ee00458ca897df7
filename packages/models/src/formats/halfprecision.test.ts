import { describe, expect, it } from 'vitest';
import {
  bfloat16ArrayToFloat32,
  bfloat16BitsToFloat32,
  float16ArrayToFloat32,
  float16BitsToFloat32,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  float32BitsToBfloat16Bits,
  float32BitsToFloat16Bits,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
} from './halfprecision.js';

const f16 = float32ToFloat16Bits;
const bf16 = float32ToBfloat16Bits;
const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

/** Reference: nearest float16 by search over all finite positive halves, ties to even. */
const positiveHalves = Array.from({ length: 0x7c00 }, (_, h) => float16BitsToFloat32(h));
function refF16(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(Math.fround(x));
  const max = positiveHalves[0x7bff]!;
  const halfUlpAboveMax = 2 ** 15 * 2 ** -11; // (65536 - 65504) / 2
  if (a >= max + halfUlpAboveMax) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (positiveHalves[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === 0x7bff) return sign | lo;
  const down = positiveHalves[lo]!;
  const up = positiveHalves[lo + 1]!;
  if (a - down < up - a) return sign | lo;
  if (a - down > up - a) return sign | (lo + 1);
  return sign | (lo % 2 === 0 ? lo : lo + 1);
}

describe('float16', () => {
  it('converts ordinary values exactly', () => {
    expect(f16(1)).toBe(0x3c00);
    expect(f16(-2)).toBe(0xc000);
    expect(f16(0.5)).toBe(0x3800);
    expect(f16(0)).toBe(0x0000);
    expect(f16(-0)).toBe(0x8000);
    expect(float16BitsToFloat32(0x3555)).toBe(0.333251953125);
  });

  it('rounds ties to even', () => {
    expect(f16(1 + 2 ** -11)).toBe(0x3c00); // halfway between 1 and 1 + 2^-10 -> even (1)
    expect(f16(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway between mantissa 1 and 2 -> 2
    expect(f16(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above halfway -> up
    expect(f16(2047.5)).toBe(0x6800); // tie carries into the exponent -> 2048
    expect(f16(2046.5)).toBe(0x67fe); // tie -> even 2046
  });

  it('handles max finite, overflow to infinity and infinities', () => {
    expect(f16(65504)).toBe(0x7bff);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(f16(65519.996)).toBe(0x7bff); // below the halfway point to 65536
    expect(f16(65520)).toBe(0x7c00); // halfway rounds to even = infinity
    expect(f16(1e6)).toBe(0x7c00);
    expect(f16(-1e6)).toBe(0xfc00);
    expect(f16(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(f16(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    expect(float16BitsToFloat32(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(float16BitsToFloat32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
  });

  it('handles subnormals', () => {
    expect(f16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(f16(2 ** -25)).toBe(0x0000); // tie -> even (zero)
    expect(f16(-(2 ** -25))).toBe(0x8000);
    expect(f16(2 ** -25 * 1.0000001)).toBe(0x0001); // just above the tie
    expect(f16(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 -> 2
    expect(f16(1023 * 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(float16BitsToFloat32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f16(2 ** -14 - 2 ** -26)).toBe(0x0400); // rounds up from the subnormal range into the normals
    expect(f16(1e-30)).toBe(0x0000);
    expect(f16(1e-45)).toBe(0x0000); // float32 subnormal
  });

  it('keeps NaN a NaN (sign and payload kept, never infinity)', () => {
    expect(isF16NaN(f16(Number.NaN))).toBe(true);
    expect(Number.isNaN(float16BitsToFloat32(0x7e00))).toBe(true);
    expect(Number.isNaN(float16BitsToFloat32(0x7c01))).toBe(true); // signalling NaN pattern
    // float32 NaN whose payload lies only in the low 13 bits would truncate to Inf without the quiet bit.
    expect(isF16NaN(float32BitsToFloat16Bits(0x7f800001))).toBe(true);
    expect(float32BitsToFloat16Bits(0xffc00000) & 0x8000).toBe(0x8000);
    const bits = new Uint32Array([0x7fa00001]);
    const h = float32ArrayToFloat16(new Float32Array(bits.buffer))[0]!;
    expect(h).toBe(0x7e00 | 0x100); // quiet bit + top payload bits (0x7fa00001 >>> 13 & 0x3ff = 0x100)
  });

  it('round-trips every float16 bit pattern through float32', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f32 = float16ArrayToFloat32(all);
    const back = float32ArrayToFloat16(f32);
    for (let h = 0; h < 65536; h++) {
      if (isF16NaN(h)) expect(isF16NaN(back[h]!)).toBe(true);
      else if (back[h] !== h) expect.fail(`0x${h.toString(16)} -> ${f32[h]} -> 0x${back[h]!.toString(16)}`);
      if (!isF16NaN(h) && f32[h] !== float16BitsToFloat32(h)) expect.fail(`bulk and scalar differ at ${h}`);
    }
  });

  it('matches a brute-force nearest-even reference on random float32 values', () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const xs = new Float32Array(20000);
    for (let i = 0; i < xs.length; i++) {
      const e = Math.floor(rand() * 50) - 30; // 2^-30 .. 2^19: subnormals, normals, overflow
      xs[i] = (rand() < 0.5 ? -1 : 1) * (1 + rand()) * 2 ** e;
    }
    const got = float32ArrayToFloat16(xs);
    for (let i = 0; i < xs.length; i++) {
      const want = refF16(xs[i]!);
      if (got[i] !== want)
        expect.fail(`${xs[i]}: got 0x${got[i]!.toString(16)}, want 0x${want.toString(16)}`);
    }
  });
});

describe('bfloat16', () => {
  it('converts and rounds ties to even', () => {
    expect(bf16(1)).toBe(0x3f80);
    expect(bf16(-2)).toBe(0xc000);
    expect(bf16(1 + 2 ** -8)).toBe(0x3f80); // halfway -> even
    expect(bf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // halfway -> even (up)
    expect(bf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(bfloat16BitsToFloat32(0x3f81)).toBe(1 + 2 ** -7);
    expect(bf16(-0)).toBe(0x8000);
  });

  it('handles max finite, overflow and infinities', () => {
    const maxFinite = (2 - 2 ** -7) * 2 ** 127;
    expect(bf16(maxFinite)).toBe(0x7f7f);
    expect(bfloat16BitsToFloat32(0x7f7f)).toBe(maxFinite);
    expect(bf16(3.4028234663852886e38)).toBe(0x7f80); // float32 max rounds past the halfway point -> Inf
    expect(bf16(-3.4028234663852886e38)).toBe(0xff80);
    expect(bf16(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(bf16(Number.NEGATIVE_INFINITY)).toBe(0xff80);
  });

  it('handles subnormals exactly', () => {
    expect(float32BitsToBfloat16Bits(0x00000001)).toBe(0x0000);
    expect(float32BitsToBfloat16Bits(0x00008000)).toBe(0x0000); // tie -> even
    expect(float32BitsToBfloat16Bits(0x00018000)).toBe(0x0002); // tie -> even (up)
    expect(float32BitsToBfloat16Bits(0x000116c2)).toBe(0x0001);
    expect(bfloat16BitsToFloat32(0x0001)).toBe(2 ** -133);
  });

  it('keeps NaN a NaN, including payloads that would truncate to Inf', () => {
    expect(isBf16NaN(bf16(Number.NaN))).toBe(true);
    expect(isBf16NaN(float32BitsToBfloat16Bits(0x7f800001))).toBe(true);
    expect(isBf16NaN(float32BitsToBfloat16Bits(0xff800001))).toBe(true);
    expect(float32BitsToBfloat16Bits(0xff800001) & 0x8000).toBe(0x8000);
    expect(Number.isNaN(bfloat16BitsToFloat32(0x7fc0))).toBe(true);
    const bits = new Uint32Array([0x7f800001, 0x7fc12345]);
    const out = float32ArrayToBfloat16(new Float32Array(bits.buffer));
    expect(isBf16NaN(out[0]!) && isBf16NaN(out[1]!)).toBe(true);
    expect(out[1]).toBe(0x7fc1);
  });

  it('round-trips every bfloat16 bit pattern through float32', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ArrayToBfloat16(bfloat16ArrayToFloat32(all));
    for (let h = 0; h < 65536; h++) {
      if (isBf16NaN(h)) expect(isBf16NaN(back[h]!)).toBe(true);
      else if (back[h] !== h) expect.fail(`0x${h.toString(16)} -> 0x${back[h]!.toString(16)}`);
    }
  });

  it('rejects mismatched output lengths', () => {
    expect(() => float32ArrayToBfloat16(new Float32Array(2), new Uint16Array(3))).toThrow(/3 elements/);
  });
});
