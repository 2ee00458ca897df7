import {
  evaluateReference,
  float32ToBfloat16,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  type Graph,
  type HostTensor,
  type Node,
  ops,
  PRIMITIVES,
  Rng,
  type Tensor,
  tensor,
  trace,
  UnsupportedPrimitiveError,
} from '@moreau/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTfjsBackend, type TfjsBackend } from './index.js';
import { roundToBfloat16 } from './internal/half.js';
import { LOWERINGS, scatterAddOneHot } from './internal/lower.js';

const rng = new Rng(7);
function randn(shape: number[], scale = 1): HostTensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (rng.nextUint32() / 2 ** 32 - 0.5) * 2 * scale;
  return tensor(data, shape);
}
const f32 = (v: number[], shape: number[]) => tensor(v, shape, 'float32');
const i32 = (v: number[], shape: number[]) => tensor(v, shape, 'int32');
const b8 = (v: number[], shape: number[]) => tensor(v, shape, 'bool');

function close(actual: HostTensor, expected: HostTensor, rtol = 1e-5, atol = 1e-6): void {
  expect(actual.dtype).toBe(expected.dtype);
  expect(actual.shape).toEqual(expected.shape);
  expect(actual.data.constructor).toBe(expected.data.constructor);
  for (let i = 0; i < expected.data.length; i++) {
    const a = actual.data[i]!;
    const e = expected.data[i]!;
    if (Number.isNaN(e)) {
      if (!Number.isNaN(a)) throw new Error(`element ${i}: expected NaN, got ${a}`);
    } else if (!Number.isFinite(e) || expected.dtype !== 'float32') {
      if (a !== e) throw new Error(`element ${i}: expected ${e}, got ${a}`);
    } else if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      throw new Error(`element ${i}: expected ${e}, got ${a}`);
    }
  }
}

async function check(
  backend: TfjsBackend,
  fn: (...xs: Tensor[]) => Tensor | Tensor[],
  args: HostTensor[],
  rtol?: number,
): Promise<Graph> {
  const { graph } = trace(fn, args);
  const exe = await backend.compile(graph);
  try {
    const got = await exe.run(args);
    const want = evaluateReference(graph, args);
    expect(got.length).toBe(want.length);
    got.forEach((g, i) => {
      close(g, want[i]!, rtol);
    });
  } finally {
    exe.dispose();
  }
  return graph;
}

const engines = ['wasm', 'cpu'] as const;

describe.each(engines)('lowerings on %s', (engine) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ engine });
  });

  it('reports its engine and device', () => {
    expect(be.name).toBe('tfjs');
    expect(be.engine).toBe(engine);
    expect(be.device).toBe(engine === 'wasm' ? 'wasm-simd' : 'cpu');
  });

  it('has a lowering for every core primitive', () => {
    const missing = PRIMITIVES.filter((p) => !(p in LOWERINGS));
    expect(missing).toEqual([]);
  });

  it('unary ops, including NaN/-inf edge values', async () => {
    const x = f32([-2, -1, -0.5, 0, 0.5, 1, 3, Number.NaN, Number.POSITIVE_INFINITY], [9]);
    for (const op of [
      'neg',
      'exp',
      'log',
      'sqrt',
      'abs',
      'sign',
      'sin',
      'cos',
      'reciprocal',
      'sigmoid',
      'tanh',
    ] as const) {
      await check(be, (a) => (ops as any)[op](a), [x]);
    }
    await check(be, (a) => ops.stopGradient(a), [x]);
  });

  it('binary float ops broadcast, NaN propagates through maximum/minimum', async () => {
    const a = f32([1, -2, Number.NaN, 4, 0, 2.5], [2, 3]);
    const b = f32([0.5, Number.NaN, 3], [3]);
    for (const op of ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'pow'] as const) {
      await check(be, (x, y) => (ops as any)[op](x, y), [a, b]);
      await check(be, (x, y) => (ops as any)[op](y, x), [a, b]);
    }
    await check(be, (x) => ops.pow(x, 2), [randn([5])]);
  });

  it('int32 arithmetic (wrapping) and comparisons', async () => {
    const a = i32([7, -7, 100000, 2147483647, 0], [5]);
    const b = i32([2, 3, 100000, 1, -5], [5]);
    for (const op of ['add', 'sub', 'mul', 'maximum', 'minimum', 'less', 'greater', 'equal'] as const) {
      await check(be, (x, y) => (ops as any)[op](x, y), [a, b]);
    }
  });

  it('comparisons and where (float, bool branches, broadcasting)', async () => {
    const a = f32([1, 2, 3, Number.NaN, 5, 6], [2, 3]);
    const b = f32([2, 2, 2], [3]);
    await check(be, (x, y) => [ops.less(x, y), ops.greater(x, y), ops.equal(x, y)], [a, b]);
    const c = b8([1, 0, 1], [3]);
    await check(be, (cond, x, y) => ops.where(cond, x, y), [c, a, b]);
    await check(be, (cond, x) => ops.where(cond, x, 0), [b8([1, 0], [2, 1]), a]);
    // bool branches (broken select on wasm) and bool comparisons
    const p = b8([1, 0, 1, 0], [4]);
    const q = b8([1, 1, 0, 0], [4]);
    await check(be, (cond, x, y) => ops.where(cond, x, y), [b8([0, 1, 0, 1], [4]), p, q]);
    await check(be, (x, y) => ops.equal(x, y), [p, q]);
  });

  it('matmul: 2-D, batched, broadcast batch dims, empty', async () => {
    await check(be, (a, b) => ops.matmul(a, b), [randn([3, 4]), randn([4, 5])]);
    await check(be, (a, b) => ops.matmul(a, b), [randn([2, 3, 4]), randn([2, 4, 5])]);
    await check(be, (a, b) => ops.matmul(a, b), [randn([2, 3, 4]), randn([1, 4, 5])]);
    await check(be, (a, b) => ops.matmul(a, b), [randn([1, 3, 4]), randn([2, 4, 5])]);
    await check(be, (a, b) => ops.matmul(a, b), [randn([2, 2, 3, 4]), randn([2, 1, 4, 5])]); // GQA-style
    await check(be, (a, b) => ops.matmul(a, b), [randn([2, 1, 3, 4]), randn([1, 3, 4, 2])]); // both ways
    await check(be, (a, b) => ops.matmul(a, b), [randn([3, 0]), randn([0, 2])]); // k = 0 -> zeros
    await check(be, (a, b) => ops.matmul(a, b), [randn([0, 3]), randn([3, 2])]);
    await check(be, (a, b) => ops.matmul(a, b), [randn([2, 0, 3]), randn([2, 3, 0])]);
  });

  it('sum and max: axes, keepDims, empty axes, NaN, -inf', async () => {
    const x = randn([2, 3, 4]);
    for (const keep of [false, true]) {
      await check(be, (a) => [ops.sum(a, [1], keep), ops.max(a, [0, 2], keep), ops.sum(a, undefined, keep)], [
        x,
      ]);
    }
    const nan = f32([1, Number.NaN, 3, 4, 5, 6, Number.NaN, 0], [4, 2]);
    await check(be, (a) => [ops.max(a, [0]), ops.max(a, [1]), ops.sum(a, [0])], [nan]);
    const negInf = f32(
      [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, Number.NEGATIVE_INFINITY],
      [2, 2],
    );
    await check(be, (a) => ops.max(a, [1]), [negInf]);
    const empty = f32([], [0, 3]);
    await check(be, (a) => [ops.sum(a, [0]), ops.max(a, [0]), ops.sum(a, [1]), ops.sum(a)], [empty]);
    // sum over no axes is the identity
    const g = trace((a: Tensor) => a.builder.emit('sum', [a], { axes: [], keepDims: false }), [x]).graph;
    const exe = await be.compile(g);
    close((await exe.run([x]))[0]!, x);
    exe.dispose();
  });

  it('scalars', async () => {
    const s = f32([2.5], []);
    await check(be, (a) => [ops.add(a, 1), ops.sum(a), ops.reshape(a, [1, 1]), ops.broadcastTo(a, [2, 2])], [
      s,
    ]);
    const g = trace((a: Tensor) => a.builder.emit('slice', [a], { starts: [], ends: [] }), [s]).graph;
    const exe = await be.compile(g);
    close((await exe.run([s]))[0]!, s);
    exe.dispose();
  });

  it('shape ops: reshape, transpose, slice, pad, concat, broadcastTo (incl. empty and bool)', async () => {
    const x = randn([2, 3, 4]);
    await check(be, (a) => ops.reshape(a, [6, 4]), [x]);
    await check(be, (a) => ops.transpose(a, [2, 0, 1]), [x]);
    await check(be, (a) => ops.slice(a, [0, 1, 1], [2, 3, 3]), [x]);
    await check(be, (a) => ops.slice(a, [0, 1, 1], [2, 1, 3]), [x]); // empty slice
    await check(be, (a) => ops.pad(a, [1, 0, 2], [0, 1, 0]), [x]);
    await check(be, (a, b) => ops.concat([a, b, a], 1), [x, randn([2, 1, 4])]);
    await check(be, (a, b) => ops.concat([a, b], 1), [x, f32([], [2, 0, 4])]);
    await check(be, (a) => ops.broadcastTo(a, [2, 2, 3, 4]), [x]);
    await check(be, (a) => ops.broadcastTo(a, [0, 3]), [randn([1, 3])]);
    const bools = b8([1, 0, 1, 1, 0, 0], [2, 3]);
    await check(
      be,
      (a) => [
        ops.transpose(a, [1, 0]),
        ops.slice(a, [0, 1], [2, 3]),
        ops.pad(a, [1, 0], [0, 1]),
        ops.broadcastTo(a, [2, 2, 3]),
        ops.concat([a, a], 0),
      ],
      [bools],
    );
    await check(be, (a) => [ops.reshape(a, [0, 3]), ops.exp(a), ops.transpose(a, [1, 0])], [f32([], [3, 0])]);
  });

  it('gather and scatterAdd (duplicates add up; multi-dim indices; empty)', async () => {
    const table = randn([5, 3]);
    const idx = i32([4, 0, 0, 2, 4, 4], [2, 3]);
    await check(be, (t, i) => ops.gather(t, i), [table, idx]);
    await check(be, (u, i) => ops.scatterAdd(u, i, 5), [randn([2, 3, 3]), idx]);
    await check(be, (u, i) => ops.scatterAdd(u, i, 6), [randn([6]), i32([1, 1, 1, 5, 0, 1], [6])]);
    await check(be, (u, i) => ops.scatterAdd(u, i, 4), [f32([], [0, 2]), i32([], [0])]);
    await check(be, (t, i) => ops.gather(t, i), [table, i32([], [0])]);
    await check(be, (t, i) => ops.gather(t, i), [i32([1, 2, 3], [3]), i32([2, 2], [2])]);
  });

  it('scatterAdd via one-hot matmul matches', () => {
    const out = tf.tidy(() => {
      const u = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
      return scatterAddOneHot(u, tf.tensor1d([2, 0, 2], 'int32'), 4, [2]).arraySync();
    });
    expect(out).toEqual([
      [3, 4],
      [0, 0],
      [6, 8],
      [0, 0],
    ]);
  });

  it('cast: float->int truncates, to bool is != 0, half rounding', async () => {
    const x = f32([2.7, -2.7, 0, -0, Number.NaN, 0.5, 1e5, -3.99], [8]);
    await check(
      be,
      (a) => [ops.cast(a, 'int32'), ops.cast(a, 'bool'), ops.cast(ops.cast(a, 'int32'), 'float32')],
      [x],
    );
    await check(be, (a) => [ops.cast(a, 'float32'), ops.cast(a, 'bool')], [i32([3, 0, -1], [3])]);
    await check(be, (a) => [ops.cast(a, 'float32'), ops.cast(a, 'int32')], [b8([1, 0], [2])]);
  });

  it('cast to float16 rounds to nearest even exactly like the host conversion', async () => {
    const vals: number[] = [
      0,
      1,
      -1,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      1 + 2 ** -11 + 2 ** -20,
      2048 + 1,
      2048 + 3,
      65504,
      65519.9,
      65520,
      1e6,
      -1e6,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      1.5 * 2 ** -25,
      3 * 2 ** -26,
      1e-30,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
      0.1,
      -0.3,
      3.3,
      1023.75,
      2 ** 15,
    ];
    const r = new Rng(3);
    for (let i = 0; i < 300; i++) vals.push((r.nextUint32() / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 24));
    const x = f32(vals, [vals.length]);
    const { graph } = trace((a: Tensor) => ops.cast(a, 'float16'), [x]);
    const exe = await be.compile(graph);
    const [h] = await exe.run([x]);
    exe.dispose();
    expect(h!.dtype).toBe('float16');
    const want = Uint16Array.from(vals, (v) => float32ToFloat16Bits(v));
    const got = Array.from(h!.data);
    const bad = got
      .map((g, i) => [i, vals[i], g, want[i]])
      .filter(([, v, g, w]) => g !== w && !(Number.isNaN(v) && (g! & 0x7c00) === 0x7c00 && g! & 0x3ff));
    expect(bad).toEqual([]);
  });

  it('device rounding to bfloat16 matches the host conversion (core forbids cast to bfloat16 in graphs)', () => {
    const r = new Rng(5);
    const vals: number[] = [
      0,
      1,
      1 + 2 ** -8,
      1 + 3 * 2 ** -8,
      3.4028234663852886e38,
      1e-40,
      -2.5e-39,
      123.456,
      -1e-45,
    ];
    for (let i = 0; i < 200; i++) vals.push((r.nextUint32() / 2 ** 32 - 0.5) * 2 ** ((i % 60) - 30));
    const got = tf.tidy(() => roundToBfloat16(tf.tensor1d(vals)).dataSync() as Float32Array);
    expect(Array.from(float32ToBfloat16(got))).toEqual(
      Array.from(Float32Array.from(vals), (v) => float32ToBfloat16Bits(v)),
    );
  });

  it('float16 graph inputs are widened on the host; cast from float16 is exact', async () => {
    const h = tensor([1.5, -2.25, 65504, 0.000061], [4], 'float16');
    await check(be, (a) => [ops.mul(ops.cast(a, 'float32'), 2), a], [h]);
  });

  it('unsupported primitive -> UnsupportedPrimitiveError naming it and tfjs', async () => {
    const x = randn([2]);
    const { graph } = trace((a: Tensor) => ops.exp(a), [x]);
    const bad: Graph = {
      ...graph,
      // A primitive no backend knows (hence the cast).
      nodes: graph.nodes.map((n) => (n.op === 'exp' ? ({ ...n, op: 'erf' } as unknown as Node) : n)),
    };
    const err = await be.compile(bad).catch((e) => e);
    expect(err).toBeInstanceOf(UnsupportedPrimitiveError);
    expect(err.primitive).toBe('erf');
    expect(err.backend).toBe('tfjs');
  });

  it('a small composite: log-softmax cross-entropy and its gradient graph', async () => {
    const logits = randn([4, 7], 3);
    const targets = i32([0, 6, 3, 3], [4]);
    await check(be, (l, t) => ops.crossEntropy(l, t), [logits, targets]);
    await check(be, (l) => ops.softmax(l), [logits]);
  });
});
