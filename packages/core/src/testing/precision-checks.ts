/**
 * Emulated half precision (jit's computeDtype): rounding bit for bit like core's host conversions,
 * IEEE ops exact, and the LLaMA-like block computing in float16 / bfloat16.
 */
import {
  type ComputeDtype,
  type HostTensor,
  jit,
  ops,
  Rng,
  roundHost as roundHostValue,
  type Tensor,
  tensor,
  toFloat32Data,
  valueAndGrad,
} from '@moreau/core';
import { expect } from 'vitest';
import { llamaLikeBlock } from './llama.js';
import { leaves } from './llama-checks.js';
import { precisionProbe, probeTensor, representableIn, roundingMismatches } from './precision.js';
import { type Suite, seedOf } from './suite.js';

const HALF_DTYPES = ['float16', 'bfloat16'] as const;
/** Values per rounding probe: edges, ties at every exponent, random bit patterns and a sweep. */
const PROBE = { random: 50_000, sweep: 1 << 18 } as const;
const IEEE_OPS: readonly [string, (a: Tensor, b: Tensor) => Tensor, (a: number, b: number) => number][] = [
  ['add', ops.add, (a, b) => a + b],
  ['sub', ops.sub, (a, b) => a - b],
  ['mul', ops.mul, (a, b) => a * b],
  ['div', ops.div, (a, b) => a / b],
  ['sqrt', (a) => ops.sqrt(ops.abs(a)), (a) => Math.sqrt(Math.abs(a))],
];
/** |emulated loss - float32 loss| of the llama-like block, relative (a few units of the dtype). */
const PRECISION_LOSS_RTOL = { float16: 1e-2, bfloat16: 5e-2 } as const;

export const PRECISION_TESTS = [
  ...HALF_DTYPES.map(
    (d) =>
      `precision: ${d} rounding of ${PROBE.random + PROBE.sweep}+ float32 values (ties at every exponent, subnormals, overflow, NaN / inf / -0) matches core's host conversion bit for bit`,
  ),
  ...HALF_DTYPES.map(
    (d) =>
      `precision: add, sub, mul, div, sqrt emulated in ${d} equal the host-rounded float32 results bit for bit`,
  ),
  ...HALF_DTYPES.map(
    (d) =>
      `precision: llama-like block in ${d}: loss and every gradient representable in ${d}, loss within ${PRECISION_LOSS_RTOL[d]} (relative) of float32`,
  ),
] as const;

export function precisionChecks(suite: Suite): void {
  const runJit = async (fn: (...xs: any[]) => unknown, dtype: ComputeDtype, args: unknown[]) => {
    const g = jit<any>(fn, { backend: suite.be(), computeDtype: dtype });
    try {
      return await g(...args);
    } finally {
      g.dispose();
    }
  };
  HALF_DTYPES.forEach((dtype, i) => {
    suite.test('precision', PRECISION_TESTS[i]!, [], async () => {
      const probe = precisionProbe(dtype, new Rng(seedOf(PRECISION_TESTS[i]!)), PROBE);
      const y = (await runJit((x: Tensor) => x, dtype, [probeTensor(probe)])) as HostTensor;
      expect(roundingMismatches(probe, y, dtype)).toEqual([]);
    });
  });
  HALF_DTYPES.forEach((dtype, i) => {
    const title = PRECISION_TESTS[2 + i]!;
    suite.test('precision', title, [], async () => {
      const rng = new Rng(seedOf(title));
      const n = 20_000;
      // Wide magnitudes (products and quotients reach the subnormal and overflow ranges).
      const draw = () =>
        Float32Array.from(rng.normalArray(n), (v) => roundHostValue(v * 2 ** (rng.int(40) - 20), dtype));
      const a = draw();
      const b = draw();
      const bad: string[] = [];
      for (const [name, f, host] of IEEE_OPS) {
        const y = (await runJit(f, dtype, [tensor(a, [n]), tensor(b, [n])])) as HostTensor;
        const got = y.data as Float32Array;
        for (let k = 0; k < n && bad.length < 10; k++) {
          const want = roundHostValue(Math.fround(host(a[k]!, b[k]!)), dtype);
          if (!Object.is(got[k], want) && !(Number.isNaN(want) && Number.isNaN(got[k]))) {
            bad.push(`${name}(${a[k]}, ${b[k]}) = ${got[k]}, expected ${want}`);
          }
        }
      }
      expect(bad).toEqual([]);
    });
  });
  const block = llamaLikeBlock();
  const vg = valueAndGrad(block.fn);
  HALF_DTYPES.forEach((dtype, i) => {
    suite.test('precision', PRECISION_TESTS[4 + i]!, [], async () => {
      const [loss, grads] = (await runJit(vg, dtype, [block.params, ...block.inputs])) as [
        HostTensor,
        unknown,
      ];
      const [loss32] = (await runJit(vg, 'float32', [block.params, ...block.inputs])) as [
        HostTensor,
        unknown,
      ];
      expect(representableIn(loss, dtype), 'loss').toBe(true);
      const all = leaves(grads);
      expect(all.length).toBe(leaves(block.params).length);
      for (const [path, g] of all) {
        expect(representableIn(g, dtype), path).toBe(true);
        expect((g.data as Float32Array).every(Number.isFinite), path).toBe(true);
      }
      const a = toFloat32Data(loss)[0]!;
      const b = toFloat32Data(loss32)[0]!;
      expect(Math.abs(a - b) / Math.abs(b), `${dtype} loss ${a} vs float32 ${b}`).toBeLessThanOrEqual(
        PRECISION_LOSS_RTOL[dtype],
      );
    });
  });
}
