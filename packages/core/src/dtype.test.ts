import { describe, expect, it } from 'vitest';
import { bfloat16BitsToFloat32, float16BitsToFloat32 } from './dtype.js';
import {
  bfloat16ToFloat32,
  castHost,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToBfloat16Bits,
  float32ToFloat16,
  float32ToFloat16Bits,
  hostTensorsEqual,
  tensor,
} from './index.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The float32 whose bit pattern is `bits`. */
const fromBits = (bits: number) => {
  u32[0] = bits >>> 0;
  return f32[0]!;
};
const bitsOf = (v: number) => {
  f32[0] = v;
  return u32[0]!;
};
const hex = (v: number) => `0x${v.toString(16).padStart(4, '0')}`;

describe('float16 conversions', () => {
  it.each([
    ['+0', 0, 0x0000],
    ['-0', -0, 0x8000],
    ['1', 1, 0x3c00],
    ['-2', -2, 0xc000],
    ['max finite 65504', 65504, 0x7bff],
    ['65519 rounds down to 65504', 65519, 0x7bff],
    ['65520 (halfway to 65536) ties to even: inf', 65520, 0x7c00],
    ['1e5 overflows to inf', 1e5, 0x7c00],
    ['-1e5 overflows to -inf', -1e5, 0xfc00],
    ['+inf', Number.POSITIVE_INFINITY, 0x7c00],
    ['-inf', Number.NEGATIVE_INFINITY, 0xfc00],
    ['min normal 2^-14', 2 ** -14, 0x0400],
    ['largest subnormal 1023 * 2^-24', 1023 * 2 ** -24, 0x03ff],
    ['min subnormal 2^-24', 2 ** -24, 0x0001],
    ['-min subnormal', -(2 ** -24), 0x8001],
    ['2^-25 (halfway to the min subnormal) ties to even: 0', 2 ** -25, 0x0000],
    ['1.5 * 2^-25 rounds up to the min subnormal', 1.5 * 2 ** -25, 0x0001],
    ['3 * 2^-25 (halfway between subnormals 1 and 2) ties to even: 2', 3 * 2 ** -25, 0x0002],
    ['2^-26 underflows to 0', 2 ** -26, 0x0000],
    ['-1e-10 underflows to -0', -1e-10, 0x8000],
    ['1 + 2^-11 (halfway) ties to even: 1', 1 + 2 ** -11, 0x3c00],
    ['1 + 3 * 2^-11 (halfway) ties to even: 1 + 2^-9', 1 + 3 * 2 ** -11, 0x3c02],
    ['just above halfway rounds up', 1 + 2 ** -11 + 2 ** -23, 0x3c01],
    ['2047.9 rounds up to 2048, carrying into the exponent', 2047.9, 0x6800],
    [
      'a float64 just above halfway rounds up (no double rounding through float32)',
      1 + 2 ** -11 + 2 ** -40,
      0x3c01,
    ],
  ])('%s', (_what, value, bits) => {
    expect(hex(float32ToFloat16Bits(value))).toBe(hex(bits));
  });

  it('keeps NaN a NaN (quiet), including payloads that live only in the low bits', () => {
    for (const bits of [0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0xff800001]) {
      const h = float32ToFloat16Bits(fromBits(bits));
      expect((h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0, `${bits.toString(16)} -> ${hex(h)}`).toBe(true);
      expect(h & 0x0200).toBe(0x0200);
      expect(Number.isNaN(float16BitsToFloat32(h))).toBe(true);
    }
  });

  it('keeps the sign and top payload bits of a NaN in the array forms', () => {
    const narrow = float32ToFloat16(new Float32Array(Uint32Array.from([0x7fa00001, 0xffc00000]).buffer));
    expect(Array.from(narrow, hex)).toEqual(['0x7f00', '0xfe00']); // quiet bit + payload 0x100; sign kept
    const wide = new Uint32Array(float16ToFloat32(Uint16Array.from([0x7f00, 0xfe01, 0x7c01])).buffer);
    expect(Array.from(wide, (b) => b.toString(16))).toEqual(['7fe00000', 'ffc02000', '7f802000']);
  });

  it('round-trips all 65536 bit patterns through float32 exactly (NaNs stay NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = float16ToFloat32(all);
    const back = float32ToFloat16(wide);
    let nans = 0;
    for (let h = 0; h < 65536; h++) {
      const v = float16BitsToFloat32(h);
      const nanPattern = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (nanPattern) {
        nans++;
        if (!Number.isNaN(v) || !Number.isNaN(wide[h]!) || !Number.isNaN(float16BitsToFloat32(back[h]!))) {
          throw new Error(`NaN pattern ${hex(h)} lost`);
        }
        continue;
      }
      // Exact in float32, the array form agrees, and the way back restores the bits (incl. -0, inf).
      if (Math.fround(v) !== v || !Object.is(wide[h], v) || float32ToFloat16Bits(v) !== h || back[h] !== h) {
        throw new Error(`${hex(h)} -> ${v} -> ${hex(float32ToFloat16Bits(v))}`);
      }
    }
    expect(nans).toBe(2 * 1023);
  });

  it('rounds every halfway point to even and its float32 neighbours to the nearer value', () => {
    for (const sign of [0, 0x8000]) {
      for (let h = 0; h < 0x7bff; h++) {
        const lo = float16BitsToFloat32(h | sign);
        const hi = float16BitsToFloat32((h + 1) | sign);
        const mid = (lo + hi) / 2; // 12 significant bits: exact in float32
        const even = h % 2 === 0 ? h : h + 1;
        const below = fromBits(bitsOf(mid) - 1); // toward zero
        const above = fromBits(bitsOf(mid) + 1); // away from zero
        if (
          float32ToFloat16Bits(mid) !== (even | sign) ||
          float32ToFloat16Bits(below) !== (h | sign) ||
          float32ToFloat16Bits(above) !== ((h + 1) | sign)
        ) {
          throw new Error(`halfway between ${hex(h | sign)} and ${hex((h + 1) | sign)} (${mid}) misrounded`);
        }
      }
    }
  });
});

describe('bfloat16 conversions', () => {
  it.each([
    ['+0', 0, 0x0000],
    ['-0', -0, 0x8000],
    ['1', 1, 0x3f80],
    ['-2', -2, 0xc000],
    ['+inf', Number.POSITIVE_INFINITY, 0x7f80],
    ['-inf', Number.NEGATIVE_INFINITY, 0xff80],
    ['max finite bfloat16', bfloat16BitsToFloat32(0x7f7f), 0x7f7f],
    ['max finite float32 rounds up to inf', fromBits(0x7f7fffff), 0x7f80],
    ['1 + 2^-8 (halfway) ties to even: 1', fromBits(0x3f808000), 0x3f80],
    ['halfway above an odd value ties to even: up', fromBits(0x3f818000), 0x3f82],
    ['just above halfway rounds up', fromBits(0x3f808001), 0x3f81],
    ['just below halfway rounds down', fromBits(0x3f807fff), 0x3f80],
    ['subnormal halfway to the min subnormal ties to 0', fromBits(0x00008000), 0x0000],
    ['subnormal halfway above an odd one ties up', fromBits(0x00018000), 0x0002],
    ['min subnormal bfloat16 is exact', fromBits(0x00010000), 0x0001],
    [
      'a float64 just above halfway rounds up (no double rounding through float32)',
      1 + 2 ** -8 + 2 ** -40,
      0x3f81,
    ],
    ['a float64 beyond the float32 range overflows to inf', 1e39, 0x7f80],
  ])('%s', (_what, value, bits) => {
    expect(hex(float32ToBfloat16Bits(value))).toBe(hex(bits));
  });

  it('keeps NaN a NaN (quiet), including payloads that truncation would turn into inf', () => {
    const bits = [0x7fc00000, 0xffc00000, 0x7f800001, 0x7f80ffff, 0xff800001];
    const arr = float32ToBfloat16(new Float32Array(Uint32Array.from(bits).buffer));
    bits.forEach((b, i) => {
      for (const h of [float32ToBfloat16Bits(fromBits(b)), arr[i]!]) {
        expect(Number.isNaN(bfloat16BitsToFloat32(h)), `${b.toString(16)} -> ${hex(h)}`).toBe(true);
        expect(h & 0x0040).toBe(0x0040);
      }
    });
  });

  it('round-trips all 65536 bit patterns through float32 exactly (NaNs stay NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = bfloat16ToFloat32(all);
    const back = float32ToBfloat16(wide);
    for (let h = 0; h < 65536; h++) {
      const v = bfloat16BitsToFloat32(h);
      if (Number.isNaN(v)) {
        if (!Number.isNaN(bfloat16BitsToFloat32(back[h]!))) throw new Error(`NaN pattern ${hex(h)} lost`);
        continue;
      }
      if (!Object.is(wide[h], v) || float32ToBfloat16Bits(v) !== h || back[h] !== h) {
        throw new Error(`${hex(h)} -> ${v} -> ${hex(float32ToBfloat16Bits(v))}`);
      }
    }
  });

  it('rounds every halfway point to even, and the array form agrees with the scalar form', () => {
    const mids: number[] = [];
    const expected: number[] = [];
    for (const sign of [0, 0x8000]) {
      for (let h = 0; h < 0x7f7f; h++) {
        const b = ((h | sign) << 16) >>> 0;
        const even = h % 2 === 0 ? h : h + 1;
        mids.push(fromBits(b + 0x8000), fromBits(b + 0x7fff), fromBits(b + 0x8001));
        expected.push(even | sign, h | sign, (h + 1) | sign);
      }
    }
    const arr = float32ToBfloat16(Float32Array.from(mids));
    for (let i = 0; i < mids.length; i++) {
      if (float32ToBfloat16Bits(mids[i]!) !== expected[i] || arr[i] !== expected[i]) {
        throw new Error(
          `${mids[i]} -> ${hex(float32ToBfloat16Bits(mids[i]!))}, expected ${hex(expected[i]!)}`,
        );
      }
    }
  });
});

describe('host tensors', () => {
  it('validates data type, length and shape', () => {
    expect(() => tensor(new Float32Array(3), [2, 2])).toThrow(/holds 4 elements but the data has 3/);
    expect(() => tensor(new Int32Array(4), [2, 2], 'float32')).toThrow(
      /needs a Float32Array, got a Int32Array/,
    );
    expect(() => tensor([1, 2], [-2])).toThrow(/invalid shape/);
    expect(tensor([], [0, 3]).data.length).toBe(0);
  });

  it('stores bool values as 0 / 1 and half precision as rounded bits', () => {
    expect(Array.from(tensor([2, 0, -1, Number.NaN], [4], 'bool').data)).toEqual([1, 0, 1, 1]);
    expect(Array.from(tensor([1, 65520], [2], 'float16').data)).toEqual([0x3c00, 0x7c00]);
    expect(Array.from(tensor([1], [1], 'bfloat16').data)).toEqual([0x3f80]);
  });

  it('castHost truncates floats toward zero for int32 and tests != 0 for bool', () => {
    const t = tensor([-2.7, -0.5, 0, 0.5, 2.7], [5]);
    expect(Array.from(castHost(t, 'int32').data)).toEqual([-2, 0, 0, 0, 2]);
    expect(Array.from(castHost(t, 'bool').data)).toEqual([1, 1, 0, 1, 1]);
    const h = castHost(t, 'float16');
    expect(h.dtype).toBe('float16');
    expect(Array.from(castHost(h, 'float32').data)).toEqual(
      Array.from(float16ToFloat32(h.data as Uint16Array)),
    );
  });

  it('hostTensorsEqual compares dtype, shape and every bit', () => {
    const a = tensor([1, -0, Number.NaN, 2], [2, 2]);
    expect(hostTensorsEqual(a, tensor([1, -0, Number.NaN, 2], [2, 2]))).toBe(true);
    expect(hostTensorsEqual(a, tensor([1, 0, Number.NaN, 2], [2, 2]))).toBe(false); // -0 is not +0
    expect(hostTensorsEqual(a, tensor([1, -0, Number.NaN, 2], [4]))).toBe(false);
    expect(hostTensorsEqual(a, castHost(a, 'int32'))).toBe(false);
    const u = tensor(new Uint16Array([1, 2]), [2], 'float16');
    expect(hostTensorsEqual(u, tensor(new Uint16Array([1, 2]), [2], 'bfloat16'))).toBe(false);
    const view = new Uint16Array(new Uint16Array([9, 1, 2]).buffer, 2, 2); // a view at an offset
    expect(hostTensorsEqual(u, tensor(view, [2], 'float16'))).toBe(true);
  });
});
