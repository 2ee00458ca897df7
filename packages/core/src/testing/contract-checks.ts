/**
 * Conformance checks of the Backend contract: compile reports, upload / download round trips,
 * device-tensor inputs, memory reports, executables that outlive each other, graph plumbing and
 * jit reuse.
 */
import {
  evaluateReference,
  type HostTensor,
  jit,
  ops,
  ReferenceBackend,
  Rng,
  type Tensor,
  tensor,
  trace,
  valueAndGrad,
} from '@moreau/core';
import { expect } from 'vitest';
import { assertClose, randomTensor, type Tolerance } from './numerics.js';
import { runOn, type Suite, seedOf } from './suite.js';

const EXACT: Tolerance = { rtol: 0, atol: 0 };

export const CONTRACT_TESTS = [
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

export function contractChecks(suite: Suite): void {
  const rng = new Rng(seedOf('contract'));
  const x = randomTensor(rng, [3, 4]);
  const w = randomTensor(rng, [4, 2]);

  suite.test('contract', CONTRACT_TESTS[0], [], async (skipIfUses) => {
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
    const exe = await suite.be().compile(graph);
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
    suite.test('contract', CONTRACT_TESTS[1 + i]!, [], async () => {
      const d = await suite.be().upload(t);
      try {
        expect(d.kind).toBe('device');
        expect(d.backend).toBe(suite.be().name);
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

  suite.test('contract', CONTRACT_TESTS[5], [], async (skipIfUses) => {
    const { graph } = trace((a: Tensor, b: Tensor) => ops.tanh(ops.matmul(a, b)), [x, w]);
    skipIfUses(graph);
    const expected = evaluateReference(graph, [x, w]);
    const exe = await suite.be().compile(graph);
    const dw = await suite.be().upload(w);
    try {
      const x2 = randomTensor(rng, [3, 4]);
      const [y1] = await exe.run([x, dw]);
      assertClose(y1!, expected[0]!, suite.tol, 'run with a device weight');
      const [y2] = await exe.run([x2, dw]);
      assertClose(
        y2!,
        evaluateReference(graph, [x2, w])[0]!,
        suite.tol,
        'second run with the same device weight',
      );
      const dx = await suite.be().upload(x);
      try {
        const [y3] = await exe.run([dx, dw]);
        assertClose(y3!, expected[0]!, suite.tol, 'run with every input on the device');
      } finally {
        dx.dispose();
      }
    } finally {
      dw.dispose();
      exe.dispose();
    }
  });

  suite.test('contract', CONTRACT_TESTS[6], [], async () => {
    const m0 = suite.be().memory();
    for (const v of [m0.tensors, m0.bytes, m0.executables]) expect(Number.isFinite(v)).toBe(true);
    const d = await suite.be().upload(randomTensor(rng, [64, 64]));
    const m1 = suite.be().memory();
    expect(m1.tensors).toBeGreaterThan(m0.tensors);
    expect(m1.bytes).toBeGreaterThanOrEqual(m0.bytes);
    d.dispose();
    expect(suite.be().memory().tensors).toBeLessThan(m1.tensors);
    const { graph } = trace((a: Tensor) => ops.neg(a), [x]);
    const exe = await suite.be().compile(graph);
    expect(suite.be().memory().executables).toBeGreaterThan(m0.executables);
    exe.dispose();
    expect(suite.be().memory().executables).toBe(m0.executables);
  });

  suite.test('contract', CONTRACT_TESTS[7], [], async (skipIfUses) => {
    const g1 = trace((a: Tensor) => ops.exp(a), [x]).graph;
    const g2 = trace((a: Tensor) => ops.sin(a), [x]).graph;
    skipIfUses(g1);
    skipIfUses(g2);
    const e1 = await suite.be().compile(g1);
    const e2 = await suite.be().compile(g2);
    e1.dispose();
    try {
      const [y] = await e2.run([x]);
      assertClose(y!, evaluateReference(g2, [x])[0]!, suite.tol, 'the surviving executable');
    } finally {
      e2.dispose();
    }
  });

  suite.test('contract', CONTRACT_TESTS[8], [], async (skipIfUses) => {
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
    const actual = await runOn(suite.be(), graph, inputs);
    expect(actual.length).toBe(expected.length);
    expected.forEach((e, i) => {
      assertClose(actual[i]!, e, EXACT, `output '${graph.outputNames[i]}'`);
    });
  });

  suite.test('contract', CONTRACT_TESTS[9], [], async (skipIfUses) => {
    const f = (p: { w: Tensor; b: Tensor }, xs: Tensor) =>
      ops.mean(ops.square(ops.add(ops.matmul(xs, p.w), p.b)));
    const params = () => ({ w: randomTensor(rng, [4, 2]), b: randomTensor(rng, [2]) });
    skipIfUses(trace(valueAndGrad(f), [params(), x]).graph);
    const g = jit<[HostTensor, { w: HostTensor; b: HostTensor }]>(valueAndGrad(f), { backend: suite.be() });
    const r = jit<[HostTensor, { w: HostTensor; b: HostTensor }]>(valueAndGrad(f), {
      backend: new ReferenceBackend(),
    });
    try {
      const check = async (p: { w: HostTensor; b: HostTensor }, xs: HostTensor, what: string) => {
        const [v, gr] = await g(p, xs);
        const [ev, egr] = await r(p, xs);
        assertClose(v, ev, suite.tol, `${what}: value`);
        assertClose(gr.w, egr.w, suite.tol, `${what}: d/dw`);
        assertClose(gr.b, egr.b, suite.tol, `${what}: d/db`);
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
