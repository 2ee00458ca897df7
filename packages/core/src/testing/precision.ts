/**
 * Probes for emulated half precision: float32 values that exercise every branch of the rounding
 * (ties at every exponent, both grids of the subnormal range, the overflow boundary, NaN / inf /
 * -0) plus a sweep over the whole float32 bit space, and a bit-exact check of a backend's result
 * against core's host conversions.
 */
import { type ComputeDtype, type HostTensor, type Rng, roundHost, tensor } from '@moreau/core';

const bits = new Uint32Array(1);
const asFloat = new Float32Array(bits.buffer);

function fromBits(b: number): number {
  bits[0] = b >>> 0;
  return asFloat[0]!;
}

function toBits(v: number): number {
  asFloat[0] = v;
  return bits[0]!;
}

/** Significand bits (with the implicit one) and exponent range of the half formats. */
const FORMAT = {
  float16: { p: 11, minExp: -14, maxExp: 15 },
  bfloat16: { p: 8, minExp: -126, maxExp: 127 },
} as const;

/**
 * Probe values for rounding float32 to `dtype`: hand-picked edges, exact ties and their float32
 * neighbours at every exponent (normal and subnormal grids, both signs), `random` random bit
 * patterns and a strided sweep of `sweep` patterns over all 2^32 (NaN patterns included).
 */
export function precisionProbe(
  dtype: Exclude<ComputeDtype, 'float32'>,
  rng: Rng,
  { random = 20_000, sweep = 1 << 16 }: { random?: number; sweep?: number } = {},
): Float32Array {
  const { p, minExp, maxExp } = FORMAT[dtype];
  const out: number[] = [];
  const push = (v: number) => {
    out.push(v, -v);
  };
  const pushBits = (b: number) => {
    out.push(fromBits(b), fromBits((b | 0x80000000) >>> 0));
  };
  const neighbours = (v: number) => {
    const b = toBits(v);
    for (const d of [-2, -1, 0, 1, 2]) if (b + d >= 0 && b + d < 0x7f800000) pushBits(b + d);
  };
  // Edges.
  for (const v of [0, 1, 2, 0.5, 1 / 3, Math.PI, 1e-5, 1e-8, 1e-30, 1e-40, 1e-45, 3.4028234663852886e38])
    push(v);
  out.push(Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN);
  pushBits(0x7fc12345); // NaN with a payload
  pushBits(0x00000001); // smallest float32 subnormal
  pushBits(0x007fffff); // largest float32 subnormal
  pushBits(0x7f7fffff); // float32 max
  // Overflow boundary and the dtype's largest values.
  const maxFinite = (2 - 2 ** (1 - p)) * 2 ** maxExp;
  const halfway = (2 - 2 ** -p) * 2 ** maxExp;
  for (const v of [maxFinite, halfway]) neighbours(v);
  if (dtype === 'float16') for (const v of [65536, 1e5, 131072, 1e10, 6e4]) push(v);
  // Ties (exactly halfway between two representable values) and neighbours, at every exponent.
  const drop = 24 - p; // float32 fraction bits below the dtype's last bit
  for (let e = minExp; e <= maxExp; e++) {
    for (let k = 0; k < 4; k++) {
      const mant = k < 2 ? k : rng.int(1 << (p - 1)); // even and odd last bits, and random ones
      const b = ((e + 127) << 23) | (mant << drop) | (1 << (drop - 1));
      for (const d of [-1, 0, 1]) pushBits(b + d);
    }
  }
  // Subnormal grid of the dtype: multiples of 2^(minExp - p + 1), ties at the odd half-multiples.
  const quantumExp = minExp - p + 1;
  for (let j = 1; j < 2 ** (p + 1); j += j < 64 ? 1 : 1 + rng.int(16)) {
    neighbours(j * 2 ** (quantumExp - 1));
  }
  // Random patterns and a strided sweep of the whole bit space.
  for (let i = 0; i < random; i++) out.push(fromBits(rng.nextUint32()));
  const stride = Math.floor(2 ** 32 / sweep);
  for (let i = 0; i < sweep; i++) out.push(fromBits(i * stride + rng.int(stride)));
  return Float32Array.from(out);
}

/**
 * Describes every element of `actual` that is not `input` rounded to `dtype` bit for bit by core's
 * host conversion (a NaN input must give a NaN); empty when all match. Lists up to `limit`.
 */
export function roundingMismatches(
  input: Float32Array,
  actual: HostTensor,
  dtype: ComputeDtype,
  limit = 10,
): string[] {
  const got = actual.data as Float32Array;
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < input.length; i++) {
    const x = input[i]!;
    const y = got[i]!;
    const ok = Number.isNaN(x) ? Number.isNaN(y) : toBits(y) === toBits(roundHost(x, dtype));
    if (ok) continue;
    count++;
    if (bad.length < limit) {
      const hex = (v: number) => `0x${toBits(v).toString(16).padStart(8, '0')}`;
      bad.push(`${x} (${hex(x)}) -> ${y} (${hex(y)}), expected ${roundHost(x, dtype)}`);
    }
  }
  if (count > limit) bad.push(`... ${count - limit} more`);
  return bad;
}

/** The probe as a host tensor. */
export function probeTensor(values: Float32Array): HostTensor {
  return tensor(values, [values.length], 'float32');
}

/** True when every value of the tensor is NaN or exactly representable in the dtype. */
export function representableIn(t: HostTensor, dtype: ComputeDtype): boolean {
  const d = t.data as Float32Array;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (!Number.isNaN(v) && roundHost(v, dtype) !== v) return false;
  }
  return true;
}
