import {
  type Backend,
  bfloat16ToFloat32,
  evaluateReference,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  type Graph,
  type HostTensor,
  type Node,
  ops,
  ShapeError,
  type Tensor,
  tensor,
  trace,
  UnsupportedPrimitiveError,
  valueAndGrad,
} from '@moreau/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOrtBackend, type OrtBackend } from './index.js';

let be: OrtBackend;
beforeAll(async () => {
  be = await createOrtBackend({ intraOpNumThreads: 2 });
});
afterAll(async () => {
  await be.dispose();
});

const f32 = (data: readonly number[], shape: readonly number[]) => tensor(data, shape, 'float32');
const i32 = (data: readonly number[], shape: readonly number[]) => tensor(data, shape, 'int32');
const bool = (data: readonly number[], shape: readonly number[]) => tensor(data, shape, 'bool');

/** Compiles and runs a traced function on ORT. */
async function runOrt(fn: (...xs: Tensor[]) => Tensor | Tensor[], args: HostTensor[], backend: Backend = be) {
  const { graph } = trace((...xs: Tensor[]) => fn(...xs), args);
  const exe = await backend.compile(graph);
  try {
    return { graph, out: await exe.run(args) };
  } finally {
    exe.dispose();
  }
}

function expectClose(actual: HostTensor, expected: HostTensor, tol = 1e-5) {
  expect(actual.dtype).toBe(expected.dtype);
  expect([...actual.shape]).toEqual([...expected.shape]);
  expect(actual.data.constructor).toBe(expected.data.constructor);
  expect(actual.data.length).toBe(expected.data.length);
  for (let i = 0; i < expected.data.length; i++) {
    const a = actual.data[i]!;
    const e = expected.data[i]!;
    if (Number.isNaN(e)) {
      expect(a, `element ${i}`).toBeNaN();
    } else if (!Number.isFinite(e) || actual.dtype === 'int32' || actual.dtype === 'bool') {
      expect(a, `element ${i}`).toBe(e);
    } else {
      expect(Math.abs(a - e), `element ${i}: ${a} vs ${e}`).toBeLessThanOrEqual(tol * (1 + Math.abs(e)));
    }
  }
}

/** ORT output must match core's reference interpreter, output by output. */
async function checkAgainstReference(
  fn: (...xs: Tensor[]) => Tensor | Tensor[],
  args: HostTensor[],
  tol = 1e-5,
) {
  const { graph, out } = await runOrt(fn, args);
  const ref = evaluateReference(graph, args);
  expect(out.length).toBe(ref.length);
  for (const [i, o] of out.entries()) expectClose(o, ref[i]!, tol);
  return out;
}

/** A graph built node by node (for shapes and attrs the tracer would not produce). */
function handGraph(
  spec: { op: string; inputs?: number[]; attrs?: Node['attrs']; shape: number[]; dtype: Node['dtype'] }[],
  outputs: number[],
  constants: Record<string, HostTensor> = {},
): Graph {
  const inputs: number[] = [];
  const nodes: Node[] = spec.map((s, id) => {
    if (s.op === 'input') inputs.push(id);
    // The op may name a primitive no backend knows (hence the cast).
    return {
      id,
      op: s.op,
      inputs: s.inputs ?? [],
      attrs: s.attrs ?? {},
      shape: s.shape,
      dtype: s.dtype,
    } as Node;
  });
  return {
    nodes,
    inputs,
    outputs,
    outputNames: outputs.map((_, i) => `out${i}`),
    constants: new Map(Object.entries(constants)),
  };
}

describe('elementwise', () => {
  it('unary ops follow the reference; log/sqrt of negatives are NaN, log(0) = -inf', async () => {
    const x = f32([-2, -0.5, 0, 0.25, 1, 3, Number.NaN], [7]);
    const out = await checkAgainstReference(
      (x) => [
        ops.neg(x),
        ops.exp(x),
        ops.log(x),
        ops.sqrt(x),
        ops.abs(x),
        ops.sign(x),
        ops.sin(x),
        ops.cos(x),
        ops.reciprocal(x),
        ops.sigmoid(x),
        ops.tanh(x),
      ],
      [x],
    );
    expect(out[2]!.data[0]).toBeNaN();
    expect(out[2]!.data[2]).toBe(Number.NEGATIVE_INFINITY);
    expect(out[3]!.data[1]).toBeNaN();
    expect(out[5]!.data[6]).toBeNaN(); // sign(NaN) = NaN
  });

  it('binary float ops broadcast (numpy rules)', async () => {
    const a = f32([1, 2, 3, 4, 5, 6], [2, 1, 3]);
    const b = f32([0.5, -1, 2, 4], [4, 1]);
    await checkAgainstReference(
      (a, b) => [
        ops.add(a, b),
        ops.sub(a, b),
        ops.mul(a, b),
        ops.div(a, b),
        ops.maximum(a, b),
        ops.minimum(a, b),
      ],
      [a, b],
    );
    await checkAgainstReference((a, b) => ops.pow(ops.abs(a), b), [a, b], 1e-5);
  });

  it('maximum / minimum propagate NaN', async () => {
    const a = f32([Number.NaN, 1, 2], [3]);
    const b = f32([0, Number.NaN, 1], [3]);
    await checkAgainstReference((a, b) => [ops.maximum(a, b), ops.minimum(a, b)], [a, b]);
  });

  it('int32 arithmetic stays int32 (wrap-around and negatives)', async () => {
    const a = i32([7, -7, 2147483647, 0], [4]);
    const b = i32([2, 3, 1, -5], [4]);
    const out = await checkAgainstReference(
      (a, b) => [ops.add(a, b), ops.sub(a, b), ops.mul(a, b), ops.maximum(a, b), ops.minimum(a, b)],
      [a, b],
    );
    expect(out[0]!.data).toBeInstanceOf(Int32Array);
    expect([...out[0]!.data]).toEqual([9, -4, -2147483648, -5]);
  });

  it('comparisons and where give bool tensors of 0/1 (float, int32 and bool operands)', async () => {
    const a = f32([1, 2, 3, Number.NaN], [4]);
    const b = f32([2, 2, 2, 2], [4]);
    const out = await checkAgainstReference(
      (a, b) => [ops.less(a, b), ops.greater(a, b), ops.equal(a, b), ops.where(ops.less(a, b), a, b)],
      [a, b],
    );
    expect(out[0]!.dtype).toBe('bool');
    expect(out[0]!.data).toBeInstanceOf(Uint8Array);
    expect([...out[0]!.data]).toEqual([1, 0, 0, 0]);
    await checkAgainstReference(
      (x, y) => [ops.less(x, y), ops.greater(x, y), ops.equal(x, y)],
      [i32([1, 5, -3], [3]), i32([2], [1])],
    );
    const p = bool([1, 0, 1, 0], [4]);
    const q = bool([1, 1, 0, 0], [4]);
    const bo = await checkAgainstReference(
      (p, q) => [ops.less(p, q), ops.greater(p, q), ops.equal(p, q), ops.where(p, q, p)],
      [p, q],
    );
    expect([...bo[2]!.data]).toEqual([1, 0, 0, 1]);
    // where with int32 branches and a broadcast condition
    await checkAgainstReference(
      (c, x, y) => ops.where(c, x, y),
      [bool([1, 0], [2, 1]), i32([1, 2, 3], [3]), i32([-1], [1])],
    );
  });
});

describe('matmul and reductions', () => {
  it('matmul: 2-D, batched with broadcast batch dims', async () => {
    const a = f32(
      Array.from({ length: 2 * 3 * 4 }, (_, i) => (i % 7) - 3),
      [2, 1, 3, 4],
    );
    const b = f32(
      Array.from({ length: 5 * 4 * 2 }, (_, i) => (i % 5) * 0.5),
      [1, 5, 4, 2],
    );
    const [y] = await checkAgainstReference((a, b) => ops.matmul(a, b), [a, b]);
    expect(y!.shape).toEqual([2, 5, 3, 2]);
    const [z] = await checkAgainstReference(
      (a, b) => ops.matmul(a, b),
      [f32([1, 2, 3, 4], [2, 2]), f32([1, 0, 0, 1], [2, 2])],
    );
    expect([...z!.data]).toEqual([1, 2, 3, 4]);
  });

  it('sum / max with keepDims, over all axes, and NaN in max', async () => {
    const x = f32([1, 5, -2, 4, 0, 3, 9, -1, 2, 8, 7, 6], [2, 3, 2]);
    const out = await checkAgainstReference(
      (x) => [
        ops.sum(x, [1], true),
        ops.sum(x, [0, 2]),
        ops.sum(x),
        ops.max(x, [1], true),
        ops.max(x, [2]),
        ops.max(x),
      ],
      [x],
    );
    expect(out[0]!.shape).toEqual([2, 1, 2]);
    expect(out[2]!.shape).toEqual([]);
    expect(out[2]!.data[0]).toBe(42);
    expect(out[3]!.shape).toEqual([2, 1, 2]);
    expect([...out[3]!.data]).toEqual([1, 5, 9, 8]);
    await checkAgainstReference((x) => ops.max(x, [1], true), [f32([1, Number.NaN, 3, 4], [2, 2])]);
  });

  it('reductions over an empty axis list are the identity', async () => {
    const g = handGraph(
      [
        { op: 'input', attrs: { name: 'x', index: 0 }, shape: [2, 2], dtype: 'float32' },
        { op: 'sum', inputs: [0], attrs: { axes: [], keepDims: false }, shape: [2, 2], dtype: 'float32' },
        { op: 'max', inputs: [0], attrs: { axes: [], keepDims: true }, shape: [2, 2], dtype: 'float32' },
      ],
      [1, 2],
    );
    const exe = await be.compile(g);
    const x = f32([1, 2, 3, 4], [2, 2]);
    const out = await exe.run([x]);
    exe.dispose();
    expect([...out[0]!.data]).toEqual([1, 2, 3, 4]);
    expect([...out[1]!.data]).toEqual([1, 2, 3, 4]);
  });
});

describe('shape ops', () => {
  const x = f32(
    Array.from({ length: 24 }, (_, i) => i),
    [2, 3, 4],
  );
  it('reshape / transpose / slice / pad / concat / broadcastTo', async () => {
    await checkAgainstReference(
      (x) => [
        ops.reshape(x, [6, 4]),
        ops.transpose(x, [2, 0, 1]),
        ops.slice(x, [0, 1, 1], [2, 3, 3]),
        ops.pad(x, [1, 0, 2], [0, 2, 1]),
        ops.concat([x, ops.mul(x, 2), x], 1),
        ops.broadcastTo(ops.slice(x, [0, 0, 0], [1, 1, 4]), [3, 2, 5, 4]),
      ],
      [x],
    );
  });

  it('shape ops on int32 and bool tensors', async () => {
    const n = i32([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = bool([1, 0, 0, 1, 1, 0], [2, 3]);
    await checkAgainstReference(
      (n, b) => [
        ops.transpose(n, [1, 0]),
        ops.pad(n, [1, 0], [0, 1]),
        ops.concat([n, n], 0),
        ops.slice(b, [0, 1], [2, 3]),
        ops.pad(b, [0, 1], [1, 0]),
        ops.concat([b, b], 1),
        ops.broadcastTo(ops.reshape(b, [1, 2, 3]), [2, 2, 3]),
      ],
      [n, b],
    );
  });
});

describe('gather and scatterAdd', () => {
  const table = f32(
    Array.from({ length: 5 * 3 }, (_, i) => i * 0.5),
    [5, 3],
  );
  it('gather rows with int32 indices of rank 0, 1 and 2', async () => {
    const out = await checkAgainstReference(
      (t, i0, i1, i2) => [ops.gather(t, i0), ops.gather(t, i1), ops.gather(t, i2)],
      [table, i32([4], []), i32([0, 4, 4, 1], [4]), i32([3, 0, 2, 2, 1, 0], [2, 3])],
    );
    expect(out[0]!.shape).toEqual([3]);
    expect(out[2]!.shape).toEqual([2, 3, 3]);
    // int32 table, 1-D table
    await checkAgainstReference((t, i) => ops.gather(t, i), [i32([10, 20, 30], [3]), i32([2, 0, 2], [3])]);
  });

  it('scatterAdd adds duplicates, with more updates than rows', async () => {
    const idx = i32([1, 1, 3, 1, 0, 3, 1], [7]);
    const upd = f32(
      Array.from({ length: 7 * 2 }, (_, i) => i + 1),
      [7, 2],
    );
    const [y] = await checkAgainstReference((u, i) => ops.scatterAdd(u, i, 4), [upd, idx]);
    // row 1 gets updates 0, 1, 3, 6: (1+3+7+13, 2+4+8+14)
    expect([...y!.data]).toEqual([9, 10, 24, 28, 0, 0, 16, 18]);
    // rank-2 indices, rank-0 index, 1-D updates
    await checkAgainstReference(
      (u, i) => ops.scatterAdd(u, i, 3),
      [f32([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 2, 3]), i32([2, 2, 0, 2], [2, 2])],
    );
    await checkAgainstReference((u, i) => ops.scatterAdd(u, i, 3), [f32([5, 6], [2]), i32([1], [])]);
    await checkAgainstReference(
      (u, i) => ops.scatterAdd(u, i, 2),
      [f32([1, 2, 3], [3]), i32([1, 1, 1], [3])],
    );
  });

  it('scatterAdd with many duplicate indices is exact and deterministic across threads', async () => {
    const n = 20000;
    const width = 64;
    const indices = Int32Array.from({ length: n }, (_, i) => (i * 7919) % 3);
    const upd = new Float32Array(n * width).fill(1);
    const { graph } = trace(
      (u: Tensor, i: Tensor) => ops.scatterAdd(u, i, 4),
      [
        { shape: [n, width], dtype: 'float32' },
        { shape: [n], dtype: 'int32' },
      ],
    );
    const exe = await be.compile(graph);
    const counts = [0, 0, 0, 0];
    for (const i of indices) counts[i]!++;
    for (let rep = 0; rep < 3; rep++) {
      const [y] = await exe.run([
        { dtype: 'float32', shape: [n, width], data: upd },
        { dtype: 'int32', shape: [n], data: indices },
      ]);
      for (let r = 0; r < 4; r++)
        for (let c = 0; c < width; c++) expect(y!.data[r * width + c]).toBe(counts[r]);
    }
    exe.dispose();
  });
});

describe('casts and storage dtypes', () => {
  it('float -> int32 truncates toward zero; -> bool is != 0; bool / int32 -> float', async () => {
    const x = f32([-2.7, -0.5, 0, 0.5, 2.7, 1e3], [6]);
    const out = await checkAgainstReference(
      (x) => [ops.cast(x, 'int32'), ops.cast(x, 'bool'), ops.cast(ops.cast(x, 'bool'), 'float32')],
      [x],
    );
    expect([...out[0]!.data]).toEqual([-2, 0, 0, 0, 2, 1000]);
    expect([...out[1]!.data]).toEqual([1, 1, 0, 1, 1, 1]);
    await checkAgainstReference((n) => [ops.cast(n, 'float32'), ops.cast(n, 'bool')], [i32([-3, 0, 7], [3])]);
  });

  it('float16 inputs are fed directly and cast to float32', async () => {
    const vals = [0.1, -2.5, 65504, 1e-6, 2.5625];
    const h: HostTensor = { dtype: 'float16', shape: [5], data: float32ToFloat16(Float32Array.from(vals)) };
    const [y] = await checkAgainstReference((h) => ops.mul(ops.cast(h, 'float32'), 2), [h]);
    const expected = float16ToFloat32(h.data as Uint16Array).map((v) => v * 2);
    expect([...y!.data]).toEqual([...expected]);
  });

  it('float16 weights can be moved around before the cast (gather, transpose, slice, pad, empty pad)', async () => {
    const w: HostTensor = {
      dtype: 'float16',
      shape: [4, 3],
      data: float32ToFloat16(Float32Array.from({ length: 12 }, (_, i) => i / 3 - 1)),
    };
    const empty: HostTensor = { dtype: 'float16', shape: [0, 3], data: new Uint16Array(0) };
    const out = await checkAgainstReference(
      (w, e, idx) => [
        ops.cast(ops.gather(w, idx), 'float32'),
        ops.cast(ops.transpose(w, [1, 0]), 'float32'),
        ops.cast(ops.pad(ops.slice(w, [1, 0], [3, 2]), [1, 0], [0, 1]), 'float32'),
        ops.cast(ops.pad(e, [2, 0], [0, 0]), 'float32'),
        ops.pad(e, [1, 0], [0, 0]),
      ],
      [w, empty, i32([3, 0, 3], [3])],
    );
    expect([...out[3]!.data]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(out[4]!.dtype).toBe('float16');
    expect([...out[4]!.data]).toEqual([0, 0, 0]);
  });

  it('casting float32 -> float16 rounds to nearest even and comes back as raw bits', async () => {
    const x = f32([0.1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000, -1e-8], [5]);
    const { out } = await runOrt((x) => ops.cast(x, 'float16'), [x]);
    expect(out[0]!.dtype).toBe('float16');
    expect(out[0]!.data).toBeInstanceOf(Uint16Array);
    expect([...out[0]!.data]).toEqual([...float32ToFloat16(x.data as Float32Array)]);
  });

  it('bfloat16 data feeds float32 inputs (widened on the host), and bfloat16 graph inputs work too', async () => {
    const vals = Float32Array.from([1.5, -3.25, 1e30, 0.1]);
    const bf: HostTensor = { dtype: 'bfloat16', shape: [4], data: float32ToBfloat16(vals) };
    const widened = bfloat16ToFloat32(bf.data as Uint16Array);
    // core's convention: bf16 host data into a float32 graph input
    const { graph } = trace((x: Tensor) => ops.mul(x, 2), [{ shape: [4], dtype: 'float32' }]);
    const exe = await be.compile(graph);
    const [y] = await exe.run([bf]);
    exe.dispose();
    expect([...y!.data]).toEqual([...widened].map((v) => v * 2));
    // a graph input declared bfloat16, cast to float32
    const g = handGraph(
      [
        { op: 'input', attrs: { name: 'w', index: 0 }, shape: [4], dtype: 'bfloat16' },
        { op: 'cast', inputs: [0], attrs: { to: 'float32' }, shape: [4], dtype: 'float32' },
      ],
      [1, 0],
    );
    const exe2 = await be.compile(g);
    const [z, same] = await exe2.run([bf]);
    exe2.dispose();
    expect([...z!.data]).toEqual([...widened]);
    expect(same!.dtype).toBe('bfloat16');
    expect([...same!.data]).toEqual([...bf.data]);
  });

  it('casting float32 -> bfloat16 rounds like core (round to nearest even)', async () => {
    const x = f32([0.1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.3e38, -7.77], [5]);
    const g = handGraph(
      [
        { op: 'input', attrs: { name: 'x', index: 0 }, shape: [5], dtype: 'float32' },
        { op: 'cast', inputs: [0], attrs: { to: 'bfloat16' }, shape: [5], dtype: 'bfloat16' },
        { op: 'cast', inputs: [1], attrs: { to: 'float32' }, shape: [5], dtype: 'float32' },
      ],
      [1, 2],
    );
    const exe = await be.compile(g);
    const [b, back] = await exe.run([x]);
    exe.dispose();
    const bits = float32ToBfloat16(x.data as Float32Array);
    expect([...b!.data]).toEqual([...bits]);
    expect([...back!.data]).toEqual([...bfloat16ToFloat32(bits)]);
  });
});

describe('scalars and empty tensors', () => {
  it('scalar inputs and outputs (shape [])', async () => {
    const out = await checkAgainstReference(
      (a, b) => [ops.add(a, b), ops.mul(a, ops.sum(b)), ops.reshape(a, [1, 1])],
      [f32([3], []), f32([1, 2, 3], [3])],
    );
    expect(out[0]!.shape).toEqual([3]);
    expect(out[1]!.shape).toEqual([]);
  });

  it('zero-size inputs and outputs, sum over an empty axis = 0, max over an empty axis = -inf', async () => {
    const e = f32([], [0, 3]);
    const out = await checkAgainstReference(
      (e, w) => [
        ops.sum(e, [0]),
        ops.sum(e, [0], true),
        ops.max(e, [0]),
        ops.mul(e, 2),
        ops.transpose(e, [1, 0]),
        ops.matmul(ops.transpose(e, [1, 0]), ops.slice(w, [0, 0], [0, 2])),
        ops.concat([e, ops.slice(w, [0, 0], [1, 3])], 0),
        ops.pad(e, [1, 0], [0, 0]),
        ops.scatterAdd(e, ops.cast(ops.sum(e, [1]), 'int32'), 2),
        ops.gather(w, ops.cast(ops.sum(e, [1]), 'int32')),
      ],
      [e, f32([1, 2, 3, 4, 5, 6], [2, 3])],
    );
    expect([...out[0]!.data]).toEqual([0, 0, 0]);
    expect(out[1]!.shape).toEqual([1, 3]);
    expect([...out[2]!.data]).toEqual([
      Number.NEGATIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ]);
    expect(out[3]!.shape).toEqual([0, 3]);
    expect(out[3]!.data).toBeInstanceOf(Float32Array);
    expect(out[5]!.shape).toEqual([3, 2]);
    expect([...out[5]!.data]).toEqual([0, 0, 0, 0, 0, 0]);
    expect([...out[6]!.data]).toEqual([1, 2, 3]);
    expect([...out[7]!.data]).toEqual([0, 0, 0]);
    expect([...out[8]!.data]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(out[9]!.shape).toEqual([0, 3]);
  });

  it('a graph whose outputs are all empty needs no session', async () => {
    const { out } = await runOrt((e) => ops.mul(e, 2), [i32([], [2, 0])]);
    expect(out[0]!.shape).toEqual([2, 0]);
    expect(out[0]!.data).toBeInstanceOf(Int32Array);
  });
});

describe('outputs', () => {
  it('repeated outputs are independent copies; inputs and constants can be outputs', async () => {
    const x = f32([1, 2], [2]);
    const { graph } = trace(
      (x: Tensor) => {
        const y = ops.mul(x, 3);
        return [y, y, x, ops.scalar(7)];
      },
      [x],
    );
    const exe = await be.compile(graph);
    const [a, b, c, d] = await exe.run([x]);
    exe.dispose();
    expect([...a!.data]).toEqual([3, 6]);
    expect(b!.data).not.toBe(a!.data);
    (a!.data as Float32Array)[0] = 99;
    expect([...b!.data]).toEqual([3, 6]);
    expect([...c!.data]).toEqual([1, 2]);
    expect(c!.data).not.toBe(x.data);
    expect(d!.shape).toEqual([]);
    expect([...d!.data]).toEqual([7]);
  });
});

describe('autodiff graphs', () => {
  it('a forward + backward graph (embedding, matmul, rmsNorm, cross-entropy) matches the reference', async () => {
    const vocab = 11;
    const dim = 8;
    const rng = (i: number) => Math.sin(i * 12.9898) * 0.5;
    const params = {
      emb: f32(
        Array.from({ length: vocab * dim }, (_, i) => rng(i)),
        [vocab, dim],
      ),
      w: f32(
        Array.from({ length: dim * dim }, (_, i) => rng(i + 1000)),
        [dim, dim],
      ),
      norm: f32(
        Array.from({ length: dim }, (_, i) => 1 + 0.1 * i),
        [dim],
      ),
    };
    const tokens = i32([1, 3, 3, 7, 0, 10, 3, 2], [2, 4]);
    const targets = i32([3, 3, 7, 0, 10, 3, 2, 2], [2, 4]);
    const loss = (p: typeof params, tok: Tensor, tgt: Tensor) => {
      const P = p as unknown as Record<string, Tensor>;
      const h = ops.gather(P.emb!, tok);
      const z = ops.silu(ops.linear(ops.rmsNorm(h, P.norm!, 1e-5), P.w!));
      const logits = ops.matmul(ops.reshape(z, [8, dim]), ops.transpose(P.emb!, [1, 0]));
      return ops.crossEntropy(ops.reshape(logits, [2, 4, vocab]), tgt);
    };
    const { graph } = trace((p, tok, tgt) => valueAndGrad(loss)(p, tok, tgt), [params, tokens, targets]);
    const args = [params.emb, params.norm, params.w, tokens, targets];
    const exe = await be.compile(graph);
    const out = await exe.run(args);
    exe.dispose();
    const ref = evaluateReference(graph, args);
    for (const [i, o] of out.entries()) expectClose(o, ref[i]!, 1e-4);
  });
});

describe('compile cache, frozen weights, device tensors, memory', () => {
  const fn = (x: Tensor, w: Tensor) => ops.matmul(x, w);
  const x = f32([1, 2, 3, 4], [2, 2]);
  const w1 = f32([1, 0, 0, 1], [2, 2]);
  const w2 = f32([0, 1, 1, 0], [2, 2]);

  it('one session per graph + signature; new weights reuse it', async () => {
    const local = await createOrtBackend({ intraOpNumThreads: 1 });
    const { graph } = trace(fn, [x, w1]);
    const e1 = await local.compile(graph);
    const e2 = await local.compile(trace(fn, [x, w2]).graph);
    expect(local.memory()).toMatchObject({ executables: 2, sessions: 1 });
    expect([...(await e1.run([x, w1]))[0]!.data]).toEqual([1, 2, 3, 4]);
    expect([...(await e2.run([x, w2]))[0]!.data]).toEqual([2, 1, 4, 3]);
    await local.compile(trace(fn, [f32([1, 2], [1, 2]), w1]).graph);
    expect(local.memory()).toMatchObject({ executables: 3, sessions: 2 });
    e1.dispose();
    e1.dispose();
    expect(local.memory()).toMatchObject({ executables: 2, sessions: 2 });
    e2.dispose();
    expect(local.memory()).toMatchObject({ executables: 1, sessions: 1 });
    await expect(e2.run([x, w1])).rejects.toThrow(/disposed/);
    await local.dispose();
    expect(local.memory()).toMatchObject({ executables: 0, sessions: 0 });
  });

  it('concurrent compiles share one session; disposing one executable mid-compile keeps it alive', async () => {
    const local = await createOrtBackend({ intraOpNumThreads: 1 });
    const { graph } = trace(fn, [x, w1]);
    const [a, b] = await Promise.all([local.compile(graph), local.compile(graph)]);
    expect(local.memory()).toMatchObject({ executables: 2, sessions: 1 });
    const pending = local.compile(graph);
    a.dispose();
    b.dispose();
    const c = await pending;
    expect(local.memory()).toMatchObject({ executables: 1, sessions: 1 });
    expect([...(await c.run([x, w2]))[0]!.data]).toEqual([2, 1, 4, 3]);
    c.dispose();
    await local.dispose();
  });

  it('frozen inputs become initializers: callers still pass them, values are baked in', async () => {
    const { graph } = trace(fn, [x, w1]);
    const frozen = await be.compile(graph, { frozen: new Map([[1, w2]]) });
    const plain = await be.compile(graph);
    const before = be.memory().sessions;
    const frozen1 = await be.compile(graph, { frozen: new Map([[1, w1]]) });
    expect(be.memory().sessions).toBe(before + 1);
    expect([...(await frozen.run([x, w2]))[0]!.data]).toEqual([2, 1, 4, 3]);
    expect([...(await frozen1.run([x, w1]))[0]!.data]).toEqual([1, 2, 3, 4]);
    expect([...(await plain.run([x, w2]))[0]!.data]).toEqual([2, 1, 4, 3]);
    frozen.dispose();
    frozen1.dispose();
    plain.dispose();
  });

  it('upload / download / run with device tensors; memory() tracks them', async () => {
    const local = await createOrtBackend({ intraOpNumThreads: 1 });
    const dx = await local.upload(x);
    const dw = await local.upload({
      dtype: 'bfloat16',
      shape: [2, 2],
      data: float32ToBfloat16(w2.data as Float32Array),
    });
    expect(dx).toMatchObject({ kind: 'device', backend: 'ort', dtype: 'float32', shape: [2, 2] });
    expect(local.memory()).toMatchObject({ tensors: 2, bytes: 32 });
    const exe = await local.compile(trace(fn, [x, w1]).graph);
    expect([...(await exe.run([dx, dw]))[0]!.data]).toEqual([2, 1, 4, 3]);
    expect([...(await exe.run([dx, w1]))[0]!.data]).toEqual([1, 2, 3, 4]);
    const back = await dx.download();
    expect([...back.data]).toEqual([1, 2, 3, 4]);
    expect(back.data).not.toBe(x.data);
    dx.dispose();
    expect(local.memory()).toMatchObject({ tensors: 1, bytes: 16, executables: 1 });
    await expect(exe.run([dx, dw])).rejects.toThrow(/disposed/);
    await local.dispose();
    expect(local.memory()).toMatchObject({ tensors: 0, bytes: 0 });
  });

  it('rejects inputs of the wrong shape or dtype, naming the input', async () => {
    const exe = await be.compile(trace(fn, [x, w1]).graph);
    await expect(exe.run([x, f32([1, 2], [1, 2])])).rejects.toThrow(ShapeError);
    await expect(exe.run([x, i32([1, 2, 3, 4], [2, 2])])).rejects.toThrow(
      /input 1 \('1'\) must be float32 \[2, 2\]/,
    );
    await expect(exe.run([x])).rejects.toThrow(/takes 2 inputs/);
    exe.dispose();
  });

  it('an unknown primitive is an UnsupportedPrimitiveError naming it and the backend', async () => {
    const g = handGraph(
      [
        { op: 'input', attrs: { name: 'x', index: 0 }, shape: [4], dtype: 'float32' },
        { op: 'fft', inputs: [0], shape: [4], dtype: 'float32' },
      ],
      [1],
    );
    const err = await be.compile(g).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedPrimitiveError);
    expect(err).toMatchObject({ primitive: 'fft', backend: 'ort' });
  });
});
