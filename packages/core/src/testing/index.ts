/**
 * @moreau/core/testing — the conformance suite every backend package runs, and its helpers.
 *
 *   import { describeBackendConformance } from '@moreau/core/testing';
 *   describeBackendConformance('ort', async () => createOrtBackend(), {
 *     skip: { 'cast: float32 -> float16 output': 'reason', pow: 'reason' },
 *   });
 *
 * Everything is compared against core's float64 reference interpreter on seeded inputs, so a
 * failure reproduces exactly. Tolerances are stated in the test titles.
 *
 * Use it from ESM test files (as vitest runs them): vitest refuses to be require()d, so the CJS
 * build of this entry only loads where vitest itself can be loaded.
 */
import {
  type Backend,
  type ComputeDtype,
  evaluateReference,
  type Graph,
  type HostTensor,
  isFloat,
  jit,
  ops,
  opsUsed,
  outputInfos,
  PRIMITIVES,
  ReferenceBackend,
  Rng,
  roundHost as roundHostValue,
  type Tensor,
  tensor,
  toFloat32Data,
  trace,
  valueAndGrad,
} from '@moreau/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORWARD_CASES, GRAD_CASES, type GradCase, NON_DIFFERENTIABLE, type OpCase } from './cases.js';
import { llamaLikeBlock } from './llama.js';
import {
  assertClose,
  finiteDifferenceGradients,
  randomTensor,
  relativeError,
  type Tolerance,
} from './numerics.js';
import { precisionProbe, probeTensor, representableIn, roundingMismatches } from './precision.js';

export type { GradCase, OpCase } from './cases.js';
export { FORWARD_CASES, GRAD_CASES, NON_DIFFERENTIABLE } from './cases.js';
export type { LlamaLikeBlock, LlamaLikeConfig, LlamaLikeLayer, LlamaLikeParams } from './llama.js';
export { DEFAULT_LLAMA_LIKE_CONFIG, llamaLikeBlock, ropeTables } from './llama.js';
export type { RandomTensorOptions, Tolerance } from './numerics.js';
export { assertClose, finiteDifferenceGradients, randomTensor, relativeError } from './numerics.js';
export { precisionProbe, probeTensor, representableIn, roundingMismatches } from './precision.js';

export interface ConformanceOptions {
  /**
   * Tests to skip, each with the reason (shown in the report). A key is a test title, a primitive
   * name (skips its forward and gradient cases, and any test whose graph uses it; its `lowering:`
   * test then passes only if the backend throws UnsupportedPrimitiveError for it) or a group:
   * 'primitives', 'gradients', 'lowerings', 'contract', 'llama-like block'. Unknown keys throw, so
   * a typo cannot silently skip nothing.
   */
  readonly skip?: Readonly<Record<string, string>>;
  /** Relative tolerance of primitive outputs and gradients against the reference (default 1e-5). */
  readonly rtol?: number;
  /** Absolute tolerance of primitive outputs and gradients against the reference (default 1e-6). */
  readonly atol?: number;
}

export const CONFORMANCE_GROUPS = [
  'primitives',
  'gradients',
  'lowerings',
  'contract',
  'llama-like block',
  'precision',
] as const;

/** Finite-difference tolerance: |g - fd| <= FD_ATOL + FD_RTOL * |fd| (fd: central, float64, h = 1e-3). */
const FD_TOL: Tolerance = { rtol: 1e-3, atol: 1e-4 };
const LLAMA_LOSS_RTOL = 1e-5;
const LLAMA_GRAD_RTOL = 1e-4;
const LLAMA_FD_RTOL = 1e-3;
const EXACT: Tolerance = { rtol: 0, atol: 0 };

const CONTRACT_TESTS = [
  'contract: compile reports the graph inputs and outputs',
  'contract: upload/download round-trips float32',
  'contract: upload/download round-trips int32',
  'contract: upload/download round-trips bool',
  'contract: upload/download round-trips float16',
  'contract: run accepts device tensors and keeps them across runs',
  'contract: memory() counts uploads and executables',
  'contract: an executable survives disposing another',
  'contract: graph plumbing (input as output, repeated output, constant outputs, unused input, int and bool outputs)',
  'contract: jit compiles once per signature and reuses it for new weights',
] as const;

const LLAMA_TESTS = [
  `llama-like block: loss matches the reference (relative error <= ${LLAMA_LOSS_RTOL})`,
  `llama-like block: every gradient matches the reference (norm-wise relative error <= ${LLAMA_GRAD_RTOL})`,
  `llama-like block: gradients match central finite differences along random directions (relative error <= ${LLAMA_FD_RTOL})`,
] as const;

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

const PRECISION_TESTS = [
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

const lowTitle = (p: string) => `lowering: ${p}`;

/** 32-bit FNV-1a of a title: each case draws from its own stream, independent of the others. */
function seedOf(title: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < title.length; i++) h = Math.imul(h ^ title.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

async function runOn(backend: Backend, graph: Graph, inputs: readonly HostTensor[]): Promise<HostTensor[]> {
  const exe = await backend.compile(graph);
  try {
    return await exe.run(inputs);
  } finally {
    exe.dispose();
  }
}

function isUnsupported(err: unknown): err is Error & { primitive: string; backend: string } {
  return err instanceof Error && err.name === 'UnsupportedPrimitiveError';
}

/** Leaves of a nested object / array tree with their dotted paths. */
function leaves(tree: unknown, path = ''): [string, HostTensor][] {
  if (tree && typeof tree === 'object' && 'dtype' in tree && 'shape' in tree)
    return [[path, tree as HostTensor]];
  if (Array.isArray(tree)) return tree.flatMap((v, i) => leaves(v, path ? `${path}.${i}` : String(i)));
  if (tree && typeof tree === 'object') {
    return Object.keys(tree)
      .sort()
      .flatMap((k) => leaves((tree as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
  }
  return [];
}

/** Maps the host-tensor leaves of a tree, visiting them in the order of `leaves` (sorted keys). */
function mapLeaves(tree: unknown, f: (t: HostTensor) => HostTensor): any {
  if (tree && typeof tree === 'object' && 'dtype' in tree && 'shape' in tree) return f(tree as HostTensor);
  if (Array.isArray(tree)) return tree.map((v) => mapLeaves(v, f));
  if (tree && typeof tree === 'object') {
    const keys = Object.keys(tree).sort();
    return Object.fromEntries(keys.map((k) => [k, mapLeaves((tree as Record<string, unknown>)[k], f)]));
  }
  return tree;
}

/**
 * Registers the conformance suite for a backend as vitest `describe` / `it` blocks:
 *  - primitives: every primitive in PRIMITIVES against the float64 reference on seeded random
 *    inputs and edge cases (broadcasting, size-1 and zero-size axes, scalars, NaN / inf positions,
 *    int32 arithmetic, bool outputs, float16 through cast);
 *  - gradients: every differentiable primitive's VJP on the backend against the reference's and
 *    against central finite differences of a random-cotangent-weighted sum;
 *  - lowerings: a missing lowering must be an UnsupportedPrimitiveError naming the primitive and
 *    the backend, and is allowed only for primitives listed in `skip`;
 *  - contract: upload / download, device-tensor inputs, memory reports, graph plumbing, jit reuse;
 *  - llama-like block: loss and gradients of a small LLaMA-like decoder block;
 *  - precision: emulated float16 / bfloat16 (jit's computeDtype) rounds bit for bit like core's host
 *    conversions, IEEE ops stay exact, and the LLaMA-like block runs in both dtypes.
 */
export function describeBackendConformance(
  name: string,
  makeBackend: () => Promise<Backend>,
  options: ConformanceOptions = {},
): void {
  const skip = options.skip ?? {};
  const tol: Required<Tolerance> = { rtol: options.rtol ?? 1e-5, atol: options.atol ?? 1e-6 };
  const known = new Set<string>([
    ...PRIMITIVES,
    ...CONFORMANCE_GROUPS,
    ...FORWARD_CASES.map((c) => c.title),
    ...GRAD_CASES.map((c) => c.title),
    ...PRIMITIVES.map(lowTitle),
    ...CONTRACT_TESTS,
    ...LLAMA_TESTS,
    ...PRECISION_TESTS,
  ]);
  const unknown = Object.keys(skip).filter((k) => !known.has(k));
  if (unknown.length) {
    throw new Error(
      `describeBackendConformance('${name}'): skip keys ${unknown.map((k) => `'${k}'`).join(', ')} name no test, ` +
        `primitive or group; groups: ${CONFORMANCE_GROUPS.join(', ')}; primitives: ${PRIMITIVES.join(', ')}`,
    );
  }

  const caseTol = (t?: Tolerance): Tolerance => ({
    rtol: t?.rtol === 0 ? 0 : Math.max(t?.rtol ?? 0, tol.rtol),
    atol: t?.atol === 0 ? 0 : Math.max(t?.atol ?? 0, tol.atol),
  });

  let backend: Backend | undefined;
  const be = (): Backend => {
    if (!backend)
      throw new Error(`conformance '${name}': the backend was not created (see the beforeAll failure)`);
    return backend;
  };

  /** Registers a test, statically skipped when its title, group or one of its primitives is in skip. */
  const test = (
    group: (typeof CONFORMANCE_GROUPS)[number],
    title: string,
    prims: readonly string[],
    body: (skipIfUses: (graph: Graph) => void) => Promise<void>,
  ) => {
    const reason = skip[title] ?? skip[group] ?? prims.map((p) => skip[p]).find((r) => r !== undefined);
    if (reason !== undefined) {
      it.skip(`${title} [skipped: ${reason}]`, () => {});
      return;
    }
    it(title, async (ctx) => {
      const skipIfUses = (graph: Graph) => {
        const used = [...opsUsed(graph)].filter((op) => skip[op] !== undefined);
        if (used.length)
          ctx.skip(`uses skipped primitive ${used.map((op) => `${op} (${skip[op]})`).join(', ')}`);
      };
      await body(skipIfUses);
    });
  };

  describe(`backend conformance: ${name}`, () => {
    beforeAll(async () => {
      backend = await makeBackend();
    });
    afterAll(async () => {
      await backend?.dispose();
      backend = undefined;
    });

    describe('coverage', () => {
      it('every primitive has forward cases, a lowering test, and gradient cases if differentiable', () => {
        for (const p of PRIMITIVES) {
          expect(
            FORWARD_CASES.some((c) => c.prim === p),
            `forward cases for '${p}'`,
          ).toBe(true);
          if (!NON_DIFFERENTIABLE.includes(p)) {
            expect(
              GRAD_CASES.some((c) => c.prim === p),
              `gradient cases for '${p}'`,
            ).toBe(true);
          }
        }
      });
    });

    describe(`primitives (vs float64 reference; |a - e| <= ${tol.atol} + ${tol.rtol} |e| unless the case says otherwise; NaN and inf positions must match)`, () => {
      for (const c of FORWARD_CASES) forwardTest(c);
    });

    describe(`gradients (vs reference VJPs at |a - e| <= ${tol.atol} + ${tol.rtol} |e|; vs central finite differences, float64, h = 1e-3, at |g - fd| <= ${FD_TOL.atol} + ${FD_TOL.rtol} |fd|)`, () => {
      for (const c of GRAD_CASES) gradTest(c);
    });

    describe('lowerings (a missing lowering throws UnsupportedPrimitiveError naming primitive and backend; allowed only when skipped)', () => {
      for (const p of PRIMITIVES) loweringTest(p);
    });

    describe('contract', contractTests);

    describe('llama-like block', llamaTests);

    describe('precision (emulated half precision)', precisionTests);
  });

  function forwardTest(c: OpCase) {
    test('primitives', c.title, [c.prim], async (skipIfUses) => {
      const inputs = c.make(new Rng(seedOf(c.title)));
      const { graph } = trace(c.fn, inputs);
      if (!opsUsed(graph).has(c.prim)) throw new Error(`case '${c.title}' does not exercise '${c.prim}'`);
      skipIfUses(graph);
      const expected = evaluateReference(graph, inputs);
      const actual = await runOn(be(), graph, inputs);
      expect(actual.length).toBe(expected.length);
      assertClose(actual[0]!, expected[0]!, caseTol(c.tol), c.title);
    });
  }

  function gradTest(c: GradCase) {
    test('gradients', c.title, [c.prim], async (skipIfUses) => {
      const rng = new Rng(seedOf(c.title));
      const inputs = c.make(rng);
      const argnums = c.argnums ?? inputs.flatMap((t, i) => (isFloat(t.dtype) ? [i] : []));
      const forward = trace(c.fn, inputs).graph;
      if (!opsUsed(forward).has(c.prim)) throw new Error(`case '${c.title}' does not exercise '${c.prim}'`);
      // A random cotangent reduces the output to a scalar that weighs every element differently.
      const cot = randomTensor(rng, outputInfos(forward)[0]!.shape, 'float32', { lo: -1, hi: 1 });
      const loss = (...xs: Tensor[]) => ops.sum(ops.mul(c.fn(...xs), ops.constant(cot)));
      const { graph } = trace(valueAndGrad(loss, { argnums: [...argnums] }), inputs);
      skipIfUses(graph);
      const expected = evaluateReference(graph, inputs);
      const actual = await runOn(be(), graph, inputs);
      expect(actual.length).toBe(1 + argnums.length);
      assertClose(actual[0]!, expected[0]!, caseTol(), `${c.title}: loss`);
      const fd = c.noFd ? undefined : finiteDifferenceGradients(loss, inputs, argnums, c.h ?? 1e-3);
      argnums.forEach((k, j) => {
        assertClose(
          actual[1 + j]!,
          expected[1 + j]!,
          caseTol(),
          `${c.title}: d/d(arg ${k}) vs the reference VJP`,
        );
        if (fd)
          assertClose(
            actual[1 + j]!,
            fd[j]!,
            FD_TOL,
            `${c.title}: d/d(arg ${k}) vs central finite differences`,
          );
      });
    });
  }

  function loweringTest(p: string) {
    const title = lowTitle(p);
    const c = FORWARD_CASES.find((x) => x.prim === p);
    const reason = skip[title] ?? skip.lowerings;
    if (reason !== undefined || !c) {
      it.skip(`${title} [skipped: ${reason ?? 'no case'}]`, () => {});
      return;
    }
    it(title, async () => {
      const inputs = c.make(new Rng(seedOf(c.title)));
      const { graph } = trace(c.fn, inputs);
      try {
        await runOn(be(), graph, inputs);
      } catch (err) {
        if (!isUnsupported(err)) throw err;
        if (skip[err.primitive] === undefined) {
          throw new Error(
            `backend '${be().name}' has no lowering for '${err.primitive}' and '${err.primitive}' is not in skip ` +
              `(add it with a reason if that is intended): ${err.message}`,
          );
        }
        expect(err.backend, 'UnsupportedPrimitiveError.backend').toBe(be().name);
        expect(err.message).toContain(err.primitive);
        expect(err.message).toContain(be().name);
      }
    });
  }

  function contractTests() {
    const rng = new Rng(seedOf('contract'));
    const x = randomTensor(rng, [3, 4]);
    const w = randomTensor(rng, [4, 2]);

    test('contract', CONTRACT_TESTS[0], [], async (skipIfUses) => {
      const k = tensor([1, 2], [2], 'int32');
      const { graph } = trace(
        (a: Tensor, b: Tensor, idx: Tensor) => ({
          y: ops.matmul(a, b),
          i: ops.neg(ops.cast(idx, 'float32')),
        }),
        [x, w, k],
        ['x', 'w', 'idx'],
      );
      skipIfUses(graph);
      const exe = await be().compile(graph);
      try {
        expect(exe.inputs.map((v) => ({ ...v, shape: [...v.shape] }))).toEqual([
          { name: 'x', shape: [3, 4], dtype: 'float32' },
          { name: 'w', shape: [4, 2], dtype: 'float32' },
          { name: 'idx', shape: [2], dtype: 'int32' },
        ]);
        expect(exe.outputs.map((v) => ({ ...v, shape: [...v.shape] }))).toEqual([
          { name: 'i', shape: [2], dtype: 'float32' },
          { name: 'y', shape: [3, 2], dtype: 'float32' },
        ]);
      } finally {
        exe.dispose();
      }
    });

    const roundTrips: [string, HostTensor][] = [
      ['float32', tensor([1.5, -0, Number.NaN, Number.POSITIVE_INFINITY, 1e-40, -3.25], [2, 3])],
      ['int32', tensor([0, -1, 2147483647, -2147483648, 7, 9], [3, 2], 'int32')],
      ['bool', tensor([1, 0, 0, 1], [4], 'bool')],
      ['float16', tensor(Uint16Array.from([0x3c00, 0x8000, 0x7bff, 0x0001, 0x7c00, 0xc000]), [6], 'float16')],
    ];
    roundTrips.forEach(([dtype, t], i) => {
      test('contract', CONTRACT_TESTS[1 + i]!, [], async () => {
        const d = await be().upload(t);
        try {
          expect(d.kind).toBe('device');
          expect(d.backend).toBe(be().name);
          expect(d.dtype).toBe(dtype);
          expect([...d.shape]).toEqual([...t.shape]);
          const back = await d.download();
          // Subnormal float32 values may be flushed by an engine; everything else must be bit-exact.
          assertClose(back, t, dtype === 'float32' ? { rtol: 0, atol: 1e-38 } : EXACT, `${dtype} round trip`);
        } finally {
          d.dispose();
        }
      });
    });

    test('contract', CONTRACT_TESTS[5], [], async (skipIfUses) => {
      const { graph } = trace((a: Tensor, b: Tensor) => ops.tanh(ops.matmul(a, b)), [x, w]);
      skipIfUses(graph);
      const expected = evaluateReference(graph, [x, w]);
      const exe = await be().compile(graph);
      const dw = await be().upload(w);
      try {
        const x2 = randomTensor(rng, [3, 4]);
        const [y1] = await exe.run([x, dw]);
        assertClose(y1!, expected[0]!, tol, 'run with a device weight');
        const [y2] = await exe.run([x2, dw]);
        assertClose(
          y2!,
          evaluateReference(graph, [x2, w])[0]!,
          tol,
          'second run with the same device weight',
        );
        const dx = await be().upload(x);
        try {
          const [y3] = await exe.run([dx, dw]);
          assertClose(y3!, expected[0]!, tol, 'run with every input on the device');
        } finally {
          dx.dispose();
        }
      } finally {
        dw.dispose();
        exe.dispose();
      }
    });

    test('contract', CONTRACT_TESTS[6], [], async () => {
      const m0 = be().memory();
      for (const v of [m0.tensors, m0.bytes, m0.executables]) expect(Number.isFinite(v)).toBe(true);
      const d = await be().upload(randomTensor(rng, [64, 64]));
      const m1 = be().memory();
      expect(m1.tensors).toBeGreaterThan(m0.tensors);
      expect(m1.bytes).toBeGreaterThanOrEqual(m0.bytes);
      d.dispose();
      expect(be().memory().tensors).toBeLessThan(m1.tensors);
      const { graph } = trace((a: Tensor) => ops.neg(a), [x]);
      const exe = await be().compile(graph);
      expect(be().memory().executables).toBeGreaterThan(m0.executables);
      exe.dispose();
      expect(be().memory().executables).toBe(m0.executables);
    });

    test('contract', CONTRACT_TESTS[7], [], async (skipIfUses) => {
      const g1 = trace((a: Tensor) => ops.exp(a), [x]).graph;
      const g2 = trace((a: Tensor) => ops.sin(a), [x]).graph;
      skipIfUses(g1);
      skipIfUses(g2);
      const e1 = await be().compile(g1);
      const e2 = await be().compile(g2);
      e1.dispose();
      try {
        const [y] = await e2.run([x]);
        assertClose(y!, evaluateReference(g2, [x])[0]!, tol, 'the surviving executable');
      } finally {
        e2.dispose();
      }
    });

    test('contract', CONTRACT_TESTS[8], [], async (skipIfUses) => {
      const k = tensor([3, -1, 4], [3], 'int32');
      const unused = randomTensor(rng, [2]);
      const c = randomTensor(rng, [2, 2]);
      const { graph } = trace(
        (a: Tensor, idx: Tensor, _unused: Tensor) => ({
          a_again: a,
          a_same: a,
          const_tensor: ops.constant(c),
          const_scalar: ops.scalar(2.5),
          ints: idx,
          flags: ops.less(a, 0),
          neg: ops.neg(a),
        }),
        [x, k, unused],
      );
      skipIfUses(graph);
      const inputs = [x, k, unused];
      const expected = evaluateReference(graph, inputs);
      const actual = await runOn(be(), graph, inputs);
      expect(actual.length).toBe(expected.length);
      expected.forEach((e, i) => {
        assertClose(actual[i]!, e, EXACT, `output '${graph.outputNames[i]}'`);
      });
    });

    test('contract', CONTRACT_TESTS[9], [], async (skipIfUses) => {
      const f = (p: { w: Tensor; b: Tensor }, xs: Tensor) =>
        ops.mean(ops.square(ops.add(ops.matmul(xs, p.w), p.b)));
      const params = () => ({ w: randomTensor(rng, [4, 2]), b: randomTensor(rng, [2]) });
      skipIfUses(trace(valueAndGrad(f), [params(), x]).graph);
      const g = jit<[HostTensor, { w: HostTensor; b: HostTensor }]>(valueAndGrad(f), { backend: be() });
      const r = jit<[HostTensor, { w: HostTensor; b: HostTensor }]>(valueAndGrad(f), {
        backend: new ReferenceBackend(),
      });
      try {
        const check = async (p: { w: HostTensor; b: HostTensor }, xs: HostTensor, what: string) => {
          const [v, gr] = await g(p, xs);
          const [ev, egr] = await r(p, xs);
          assertClose(v, ev, tol, `${what}: value`);
          assertClose(gr.w, egr.w, tol, `${what}: d/dw`);
          assertClose(gr.b, egr.b, tol, `${what}: d/db`);
        };
        await check(params(), x, 'first call');
        await check(params(), x, 'new weight values');
        expect(g.cacheSize).toBe(1);
        await check(params(), randomTensor(rng, [5, 4]), 'new batch size');
        expect(g.cacheSize).toBe(2);
      } finally {
        g.dispose();
        r.dispose();
      }
    });
  }

  function precisionTests() {
    const runJit = async (fn: (...xs: any[]) => unknown, dtype: ComputeDtype, args: unknown[]) => {
      const g = jit<any>(fn, { backend: be(), computeDtype: dtype });
      try {
        return await g(...args);
      } finally {
        g.dispose();
      }
    };
    HALF_DTYPES.forEach((dtype, i) => {
      test('precision', PRECISION_TESTS[i]!, [], async () => {
        const probe = precisionProbe(dtype, new Rng(seedOf(PRECISION_TESTS[i]!)), PROBE);
        const y = (await runJit((x: Tensor) => x, dtype, [probeTensor(probe)])) as HostTensor;
        expect(roundingMismatches(probe, y, dtype)).toEqual([]);
      });
    });
    HALF_DTYPES.forEach((dtype, i) => {
      const title = PRECISION_TESTS[2 + i]!;
      test('precision', title, [], async () => {
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
      test('precision', PRECISION_TESTS[4 + i]!, [], async () => {
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

  function llamaTests() {
    const block = llamaLikeBlock();
    const vg = valueAndGrad(block.fn);
    type Result = [HostTensor, unknown];
    let ours: Promise<Result> | undefined;
    let theirs: Promise<Result> | undefined;
    const run = (b: Backend) => {
      const g = jit<Result>(vg, { backend: b });
      return g(block.params, ...block.inputs).finally(() => g.dispose());
    };
    const reference = () => {
      theirs ??= run(new ReferenceBackend());
      return theirs;
    };
    const onBackend = () => {
      ours ??= run(be());
      return ours;
    };
    const skipIfUsesBlock = (skipIfUses: (g: Graph) => void) =>
      skipIfUses(trace(vg, [block.params, ...block.inputs]).graph);

    test('llama-like block', LLAMA_TESTS[0], [], async (skipIfUses) => {
      skipIfUsesBlock(skipIfUses);
      const [[v], [e]] = await Promise.all([onBackend(), reference()]);
      const a = toFloat32Data(v)[0]!;
      const b = toFloat32Data(e)[0]!;
      expect(Number.isFinite(b)).toBe(true);
      const rel = Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
      expect(rel, `loss ${a} vs reference ${b}`).toBeLessThanOrEqual(LLAMA_LOSS_RTOL);
    });

    test('llama-like block', LLAMA_TESTS[1], [], async (skipIfUses) => {
      skipIfUsesBlock(skipIfUses);
      const [[, g], [, e]] = await Promise.all([onBackend(), reference()]);
      const got = leaves(g);
      const want = leaves(e);
      expect(got.map(([p]) => p)).toEqual(want.map(([p]) => p));
      expect(want.length).toBe(leaves(block.params).length);
      const bad: string[] = [];
      got.forEach(([path, t], i) => {
        const ref = want[i]![1];
        expect(t.dtype, path).toBe(ref.dtype);
        expect([...t.shape], path).toEqual([...ref.shape]);
        const rel = relativeError(t, ref);
        if (!(rel <= LLAMA_GRAD_RTOL)) bad.push(`${path}: ${rel.toExponential(2)}`);
      });
      expect(bad, 'gradients over the norm-wise relative tolerance').toEqual([]);
    });

    test('llama-like block', LLAMA_TESTS[2], [], async (skipIfUses) => {
      skipIfUsesBlock(skipIfUses);
      const [, g] = await onBackend();
      const ref = new ReferenceBackend();
      const diff = jit<HostTensor>(
        (pp: any, pm: any, ids: Tensor) => ops.sub(block.fn(pp, ids), block.fn(pm, ids)),
        { backend: ref },
      );
      const gradLeaves = leaves(g);
      const h = 1e-3;
      const rng = new Rng(seedOf(LLAMA_TESTS[2]));
      try {
        for (let dir = 0; dir < 2; dir++) {
          const v = mapLeaves(block.params, (t) => tensor(rng.normalArray(t.data.length), t.shape));
          const vLeaves = leaves(v);
          const shift = (sign: number) => {
            let j = 0;
            return mapLeaves(block.params, (t) => {
              const d = toFloat32Data(vLeaves[j++]![1]);
              const base = toFloat32Data(t);
              return tensor(
                Float32Array.from(base, (b, i) => b + sign * h * d[i]!),
                t.shape,
              );
            });
          };
          const plus = shift(1);
          const minus = shift(-1);
          const pl = leaves(plus);
          const mi = leaves(minus);
          // Directional derivative along the step actually taken (x+ - x-, after float32 rounding).
          let predicted = 0;
          gradLeaves.forEach(([, gt], li) => {
            const gd = toFloat32Data(gt);
            const a = toFloat32Data(pl[li]![1]);
            const b = toFloat32Data(mi[li]![1]);
            for (let i = 0; i < gd.length; i++) predicted += gd[i]! * (a[i]! - b[i]!);
          });
          const measured = toFloat32Data(await diff(plus, minus, ...block.inputs))[0]!;
          const rel = Math.abs(predicted - measured) / Math.max(Math.abs(measured), 1e-30);
          expect(rel, `direction ${dir}: g.dx ${predicted} vs L(x+) - L(x-) ${measured}`).toBeLessThanOrEqual(
            LLAMA_FD_RTOL,
          );
        }
      } finally {
        diff.dispose();
      }
    });
  }
}
