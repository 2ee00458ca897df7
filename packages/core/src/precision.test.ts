import { describe, expect, it } from 'vitest';
import { float32ToBfloat16Bits, float32ToFloat16Bits, type HostTensor, tensor } from './dtype.js';
import { attrsOf, type Graph } from './ir.js';
import * as ops from './ops.js';
import {
  type ComputeDtype,
  emulatePrecision,
  PRECISION_PRESERVING,
  roundHost,
  roundHostArray,
} from './precision.js';
import { evaluateReference, ReferenceBackend } from './reference-backend.js';
import { Rng } from './rng.js';
import type { Tensor } from './tensor.js';
import { precisionProbe, probeTensor, representableIn, roundingMismatches } from './testing/precision.js';
import { jit, trace, valueAndGrad } from './transforms.js';

const HALF: readonly Exclude<ComputeDtype, 'float32'>[] = ['float16', 'bfloat16'];
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (b: number) => {
  u32[0] = b >>> 0;
  return f32[0]!;
};

/** Evaluates a graph as an IEEE float32 engine would (every float32 result rounded to float32). */
const run32 = (fn: (...xs: Tensor[]) => Tensor, dtype: ComputeDtype, ...inputs: HostTensor[]) =>
  evaluateReference(emulatePrecision(trace(fn, inputs).graph, dtype), inputs, { float32: true })[0]!;

describe('roundHost: core host conversions as the oracle', () => {
  it('rounds to nearest even, keeps the sign of zero, overflows float16 at 65520', () => {
    expect(roundHost(1 + 2 ** -11, 'float16')).toBe(1); // tie, even below
    expect(roundHost(1 + 3 * 2 ** -11, 'float16')).toBe(1 + 2 ** -9); // tie, even above
    expect(roundHost(2 ** -25, 'float16')).toBe(0); // subnormal tie to zero
    expect(Object.is(roundHost(-(2 ** -26), 'float16'), -0)).toBe(true);
    expect(roundHost(65519, 'float16')).toBe(65504);
    expect(roundHost(65520, 'float16')).toBe(Number.POSITIVE_INFINITY);
    expect(roundHost(1 + 2 ** -8, 'bfloat16')).toBe(1);
    expect(roundHost(2 ** -134, 'bfloat16')).toBe(0);
    expect(roundHost(3 * 2 ** -134, 'bfloat16')).toBe(2 ** -132);
    expect(roundHost(fromBits(0x7f7fffff), 'bfloat16')).toBe(Number.POSITIVE_INFINITY);
    const a = Float32Array.of(Number.NaN, 1.0009765625, -3e38);
    roundHostArray(a, 'bfloat16');
    expect(Number.isNaN(a[0]!)).toBe(true);
    expect([a[1], a[2]]).toEqual([1, roundHost(-3e38, 'bfloat16')]);
  });
});

describe('Veltkamp splitting rounds every normal float32 exactly (exhaustive over one binade, both signs)', () => {
  // The normal-range rounding is g = C*x, hi = g + (x - g) with C = 2^(24-p) + 1 in float32. Its
  // three operations scale exactly with x across binades (no overflow below 2^111, no subnormal
  // intermediates above the dtype's smallest normal), so [1, 2) and (-2, -1] decide every binade.
  it.each([
    ['float16', 11, float32ToFloat16Bits],
    ['bfloat16', 8, float32ToBfloat16Bits],
  ] as const)('%s', (dtype, p, toBits) => {
    const C = Math.fround(2 ** (24 - p) + 1);
    const fr = Math.fround;
    let bad = 0;
    for (const sign of [0, 0x80000000]) {
      for (let b = 0x3f800000; b < 0x40000000; b++) {
        const x = fromBits(b | sign);
        const g = fr(C * x);
        const hi = fr(g + fr(x - g));
        if (hi !== roundHost(x, dtype)) bad++;
      }
    }
    expect(bad).toBe(0);
    expect(toBits(1)).toBeGreaterThan(0);
  });
});

describe('emulatePrecision: the rounding composite on an IEEE float32 evaluator', () => {
  it.each(HALF)('%s: every probe value rounds exactly like the host conversion', (dtype) => {
    const probe = precisionProbe(dtype, new Rng(11), { random: 5000, sweep: 1 << 14 });
    const y = run32((x) => x, dtype, probeTensor(probe));
    expect(roundingMismatches(probe, y, dtype)).toEqual([]);
  });

  it.each(HALF)(
    '%s: IEEE ops on rounded inputs give the host-rounded float32 result, bit for bit',
    (dtype) => {
      const rng = new Rng(5);
      const n = 4000;
      const a = roundHostArray(rng.normalArray(n, 0, 3), dtype);
      const b = roundHostArray(rng.normalArray(n, 0, 3), dtype);
      const ta = tensor(a, [n]);
      const tb = tensor(b, [n]);
      const cases: [string, (x: Tensor, y: Tensor) => Tensor, (x: number, y: number) => number][] = [
        ['add', ops.add, (x, y) => x + y],
        ['sub', ops.sub, (x, y) => x - y],
        ['mul', ops.mul, (x, y) => x * y],
        ['div', ops.div, (x, y) => x / y],
        ['sqrt', (x) => ops.sqrt(ops.abs(x)), (x) => Math.sqrt(Math.abs(x))],
      ];
      for (const [name, f, host] of cases) {
        const got = run32(f, dtype, ta, tb).data as Float32Array;
        let bad = 0;
        for (let i = 0; i < n; i++) {
          const want = roundHost(Math.fround(host(a[i]!, b[i]!)), dtype);
          if (!Object.is(got[i], want)) bad++;
        }
        expect(bad, `${dtype} ${name}`).toBe(0);
      }
    },
  );

  it('rounds inputs, constants and computing ops; leaves data movement and non-float nodes alone', () => {
    const x = tensor([1.00048828125, 3], [2]); // 1 + 2^-11 rounds to 1 in float16
    const idx = tensor([1, 0], [2], 'int32');
    const fn = (a: Tensor, i: Tensor) => ({
      moved: ops.gather(ops.reshape(ops.neg(a), [2, 1]), i),
      sum: ops.add(a, ops.scalar(1.00048828125)),
      count: ops.cast(i, 'float32'),
      flag: ops.cast(ops.less(a, 2), 'float32'),
    });
    const g = trace(fn, [x, idx]).graph;
    const e = emulatePrecision(g, 'float16');
    expect(emulatePrecision(g, 'float32')).toBe(g);
    expect(e.inputs.map((id) => attrsOf(e.nodes[id]!, 'input').name)).toEqual(
      g.inputs.map((id) => attrsOf(g.nodes[id]!, 'input').name),
    );
    expect(e.outputNames).toEqual(g.outputNames);
    const outs = evaluateReference(e, [x, idx], { float32: true });
    const out = (name: string) => outs[e.outputNames.indexOf(name)]!;
    const [moved, sum, count, flag] = ['moved', 'sum', 'count', 'flag'].map(out);
    expect(Array.from(moved!.data)).toEqual([-3, -1]);
    expect(Array.from(sum!.data)).toEqual([2, 4]); // 1 + 1 (constant rounded on the host)
    expect(Array.from(count!.data)).toEqual([1, 0]);
    expect(Array.from(flag!.data)).toEqual([1, 0]);
    // Rounding after: the float input, add, and the int32 cast; not after neg, reshape, gather or
    // the bool cast. Each rounding contributes one Veltkamp multiply by 2^13 + 1.
    const veltkamps = e.nodes.filter(
      (n) => n.op === 'constant' && Array.from(e.constants.get(String(n.attrs.constant))!.data)[0] === 8193,
    );
    expect(veltkamps).toHaveLength(1); // one shared scalar constant
    const muls = e.nodes.filter((n) => n.op === 'mul' && n.inputs.includes(veltkamps[0]!.id));
    expect(muls).toHaveLength(3);
    for (const op of PRECISION_PRESERVING) expect(typeof op).toBe('string');
  });

  it('gradients are rounded too: a valueAndGrad graph gives representable loss and gradients', () => {
    const rng = new Rng(3);
    const w = tensor(rng.normalArray(24, 0, 0.7), [4, 6]);
    const xs = tensor(rng.normalArray(18, 0, 1), [3, 6]);
    const f = (p: Tensor, x: Tensor) => ops.mean(ops.tanh(ops.matmul(x, ops.mT(p))));
    for (const dtype of HALF) {
      const g = emulatePrecision(trace(valueAndGrad(f), [w, xs]).graph, dtype);
      const [loss, grad] = evaluateReference(g, [w, xs], { float32: true });
      expect(representableIn(loss!, dtype)).toBe(true);
      expect(representableIn(grad!, dtype)).toBe(true);
      const [l32] = evaluateReference(trace(valueAndGrad(f), [w, xs]).graph, [w, xs], { float32: true });
      const a = (loss!.data as Float32Array)[0]!;
      const b = (l32!.data as Float32Array)[0]!;
      expect(a).not.toBe(b);
      expect(Math.abs(a - b)).toBeLessThan(dtype === 'float16' ? 1e-2 : 5e-2);
    }
  });
});

describe('jit computeDtype', () => {
  const f = (x: Tensor) => ops.mul(x, 3);
  const x = tensor([1.0009765625, 1 / 3], [2]);

  it('runs the emulated graph, keyed by dtype, and shows it in lower()', async () => {
    const be = new ReferenceBackend({ float32: true });
    const half = jit<HostTensor>(f, { backend: be, computeDtype: 'bfloat16' });
    const full = jit<HostTensor>(f, { backend: be });
    const y = (await half(x)).data as Float32Array;
    expect(Array.from(y)).toEqual([3, roundHost(3 * roundHost(1 / 3, 'bfloat16'), 'bfloat16')]);
    expect((await full(x)).data[0]).toBe(Math.fround(3 * 1.0009765625));
    expect(opsOf(half.lower(x).graph).has('where')).toBe(true);
    expect(opsOf(full.lower(x).graph).has('where')).toBe(false);
    expect(half.cacheSize).toBe(1);
  });

  it('refuses the float64 reference interpreter and unknown dtypes', async () => {
    const g = jit(f, { backend: new ReferenceBackend(), computeDtype: 'float16' });
    await expect(g(x)).rejects.toThrow(/float16 is emulated with float32 arithmetic.*reference/);
    expect(() => jit(f, { computeDtype: 'float8' as ComputeDtype })).toThrow(
      /computeDtype must be one of float32, float16, bfloat16, got "float8"/,
    );
  });
});

function opsOf(graph: Graph): Set<string> {
  return new Set(graph.nodes.map((n) => n.op));
}
