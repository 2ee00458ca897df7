import { describe, expect, it } from 'vitest';
import { gradients } from './autodiff.js';
import {
  type Backend,
  castHost,
  evaluateReference,
  type Graph,
  graphToJSON,
  graphToText,
  type HostTensor,
  jit,
  ops,
  ReferenceBackend,
  Rng,
  ShapeError,
  type Tensor,
  tensor,
  trace,
  valueAndGrad,
} from './index.js';
import { assertClose } from './testing/numerics.js';

/** A reference backend that counts compilations. */
function countingBackend(): Backend & { compiles: number } {
  const b = new ReferenceBackend() as ReferenceBackend & { compiles: number };
  b.compiles = 0;
  const compile = b.compile.bind(b);
  b.compile = async (g: Graph) => {
    b.compiles++;
    return compile(g);
  };
  return b;
}

const rng = new Rng(11);
const rand = (shape: number[]) => tensor(rng.normalArray(shape.reduce((p, d) => p * d, 1)), shape);
const values = (t: unknown) => Array.from((t as HostTensor).data);

describe('jit', () => {
  const f = (p: { w: Tensor; b: Tensor }, x: Tensor) => ops.mean(ops.square(ops.matmul(x, p.w).add(p.b)));

  it('compiles once per signature and reuses the executable for new weight values', async () => {
    const backend = countingBackend();
    const g = jit<[HostTensor, { w: HostTensor; b: HostTensor }]>(valueAndGrad(f), { backend });
    const x = rand([3, 4]);
    const p1 = { w: rand([4, 2]), b: rand([2]) };
    const p2 = { w: rand([4, 2]), b: rand([2]) };
    const [v1] = await g(p1, x);
    const [v2, g2] = await g(p2, x);
    expect(g.cacheSize).toBe(1);
    expect(backend.compiles).toBe(1);
    expect(values(v1)).not.toEqual(values(v2));
    // The cached executable computes with the new weights: compare with a fresh trace of p2.
    const traced = trace(valueAndGrad(f), [p2, x]);
    const [ev, egb, egw] = evaluateReference(traced.graph, [p2.b, p2.w, x]);
    assertClose(v2, ev!, { rtol: 0, atol: 0 }, 'value');
    assertClose(g2.b, egb!, { rtol: 0, atol: 0 }, 'd/db');
    assertClose(g2.w, egw!, { rtol: 0, atol: 0 }, 'd/dw');
    await g(p1, rand([5, 4]));
    expect(g.cacheSize).toBe(2);
    await g({ w: rand([4, 2]), b: rand([1, 2]) }, x);
    expect(g.cacheSize).toBe(3);
    expect(backend.compiles).toBe(3);
    g.dispose();
    expect(g.cacheSize).toBe(0);
  });

  it('keys the cache on static (non-tensor) arguments and tree structure too', async () => {
    const backend = countingBackend();
    const h = jit((x: Tensor, k: number) => ops.mul(x, k), { backend });
    const x = rand([2]);
    expect(values(await h(x, 2))).toEqual(Array.from(x.data, (v) => Math.fround(v * 2)));
    expect(values(await h(x, 3))).toEqual(Array.from(x.data, (v) => Math.fround(v * 3)));
    expect(h.cacheSize).toBe(2);
  });

  it('runs bfloat16 host data through the float32 graph (converted on the host)', async () => {
    const backend = countingBackend();
    const h = jit((x: Tensor) => ops.mul(x, 2), { backend });
    const x = rand([3]);
    const xb = castHost(x, 'bfloat16');
    const out = (await h(xb)) as HostTensor;
    expect(out.dtype).toBe('float32');
    expect(values(out)).toEqual(Array.from(castHost(xb, 'float32').data, (v) => v * 2));
    await h(x);
    expect(h.cacheSize).toBe(1);
    expect(h.lower(xb).graph.nodes[0]!.dtype).toBe('float32');
  });

  it('refuses bare specs at run time but traces them with lower()', async () => {
    const h = jit((x: Tensor) => ops.neg(x), { backend: new ReferenceBackend() });
    const spec = { shape: [2], dtype: 'float32' as const };
    expect(h.lower(spec).graph.nodes.map((n) => n.op)).toEqual(['input', 'neg']);
    await expect(h(spec)).rejects.toThrow(/not bare \{shape, dtype\} specs/);
  });
});

describe('valueAndGrad', () => {
  const run = (fn: (...a: any[]) => unknown, args: unknown[]) =>
    jit(fn, { backend: new ReferenceBackend() })(...args) as Promise<any>;

  it('un-broadcasts gradients to the shapes of broadcast operands', async () => {
    const x = rand([3, 4]);
    const f = (b: Tensor) => ops.sum(ops.add(ops.constant(x), b));
    for (const [shape, want] of [
      [[4], [3, 3, 3, 3]],
      [
        [1, 4],
        [3, 3, 3, 3],
      ],
      [
        [3, 1],
        [4, 4, 4],
      ],
      [[], [12]],
      [[1, 1], [12]],
    ] as [number[], number[]][]) {
      const [, g] = await run(valueAndGrad(f), [rand(shape)]);
      expect([...g.shape], `shape ${shape}`).toEqual(shape);
      expect(values(g), `shape ${shape}`).toEqual(want);
    }
  });

  it('accumulates gradients where a value fans out', async () => {
    const x = tensor([1, -2, 3], [3]);
    const [, g1] = await run(
      valueAndGrad((a: Tensor) => ops.sum(ops.mul(a, a))),
      [x],
    );
    expect(values(g1)).toEqual([2, -4, 6]);
    const [, g2] = await run(
      valueAndGrad((a: Tensor) => ops.sum(ops.add(ops.add(a, a), ops.neg(a)))),
      [x],
    );
    expect(values(g2)).toEqual([1, 1, 1]);
    const [, g3] = await run(
      valueAndGrad((a: Tensor) => ops.sum(ops.mul(ops.exp(a), a))),
      [x],
    );
    values(g3).forEach((v, i) => {
      const a = x.data[i]!;
      expect(v).toBeCloseTo(Math.exp(a) * (1 + a), 4);
    });
  });

  it('gives zeros to unused float inputs, null to int inputs, and float32 to float16 inputs', async () => {
    const p = {
      used: tensor([1, 2], [2]),
      unused: rand([2, 3]),
      blocked: tensor([5], [1]),
      idx: tensor([1, 0], [2], 'int32'),
      half: castHost(tensor([0.5, 0.25], [2]), 'float16'),
    };
    const f = (q: Record<string, Tensor>) =>
      ops.sum(
        ops.mul(
          ops.mul(ops.gather(q.used!, q.idx!), ops.stopGradient(q.blocked!)),
          ops.cast(q.half!, 'float32'),
        ),
      );
    const [value, g] = await run(valueAndGrad(f), [p]);
    expect(values(value)).toEqual([2 * 5 * 0.5 + 1 * 5 * 0.25]);
    expect(values(g.used)).toEqual([5 * 0.25, 5 * 0.5]);
    expect(g.unused.dtype).toBe('float32');
    expect([...g.unused.shape]).toEqual([2, 3]);
    expect(values(g.unused)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(values(g.blocked)).toEqual([0]);
    expect(g.idx).toBeNull();
    expect(g.half.dtype).toBe('float32');
    expect(values(g.half)).toEqual([10, 5]);
  });

  it('passes aux through with hasAux and differentiates several argnums', async () => {
    const f = (a: Tensor, b: Tensor, c: Tensor) => {
      const y = ops.sum(ops.mul(ops.mul(a, b), c));
      return [y, { doubled: ops.mul(a, 2), note: 'static' }] as const;
    };
    const a = tensor([1, 2], [2]);
    const b = tensor([3, 4], [2]);
    const c = tensor([5, 6], [2]);
    const [[value, aux], grads] = await run(valueAndGrad(f, { hasAux: true, argnums: [0, 2] }), [a, b, c]);
    expect(values(value)).toEqual([1 * 3 * 5 + 2 * 4 * 6]);
    expect(values(aux.doubled)).toEqual([2, 4]);
    expect(aux.note).toBe('static');
    expect(grads).toHaveLength(2);
    expect(values(grads[0])).toEqual([15, 24]);
    expect(values(grads[1])).toEqual([3, 8]);
    const [, gb] = await run(
      valueAndGrad((x: Tensor, y: Tensor) => ops.sum(ops.mul(x, y)), { argnums: 1 }),
      [a, b],
    );
    expect(values(gb)).toEqual([1, 2]);
  });

  it('refuses non-scalar outputs and out-of-range argnums', () => {
    const x = rand([2]);
    expect(() =>
      trace(
        valueAndGrad((a: Tensor) => ops.mul(a, 2)),
        [x],
      ),
    ).toThrow(ShapeError);
    expect(() =>
      trace(
        valueAndGrad((a: Tensor) => ops.sum(a), { argnums: 3 }),
        [x],
      ),
    ).toThrow(/argnum 3 out of range/);
  });

  it('gradients() works on a graph after its trace has ended', () => {
    let y: Tensor | undefined;
    let xs: Tensor | undefined;
    trace(
      (a: Tensor) => {
        xs = a;
        y = ops.sum(ops.mul(a, a));
        return y;
      },
      [rand([2])],
    );
    const [g] = gradients(y!, [xs!]);
    expect([...g!.shape]).toEqual([2]);
  });
});

describe('graph building', () => {
  it('keeps the constant -0 apart from 0', () => {
    const x = tensor([1, 2], [2]);
    const { graph } = trace((a: Tensor) => [ops.div(1, ops.mul(a, 0)), ops.div(1, ops.mul(a, -0))], [x]);
    const [pos, neg] = evaluateReference(graph, [x]);
    expect(values(pos)).toEqual([Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY]);
    expect(values(neg)).toEqual([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]);
  });

  it('wraps int32 products like int32 hardware in the reference', () => {
    const a = tensor([123456789, -7], [2], 'int32');
    const b = tensor([987654321, 3], [2], 'int32');
    const { graph } = trace((x: Tensor, y: Tensor) => ops.mul(x, y), [a, b]);
    expect(values(evaluateReference(graph, [a, b])[0])).toEqual([Math.imul(123456789, 987654321), -21]);
  });

  it('refuses bfloat16 inside a graph', () => {
    expect(() => trace((a: Tensor) => ops.cast(a, 'bfloat16'), [rand([2])])).toThrow(/castHost/);
  });

  it('renders a small block as readable JSON and text (op names, shapes, dtypes)', () => {
    const block = (p: { w: Tensor; g: Tensor }, x: Tensor) =>
      ops.sum(ops.rmsNorm(ops.linear(x, p.w), p.g, 1e-6));
    const { graph } = trace(block, [{ w: rand([3, 4]), g: rand([3]) }, rand([2, 4])]);
    const json = graphToJSON(graph) as any;
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
    expect(json.inputs).toEqual([
      { name: '0.g', shape: [3], dtype: 'float32' },
      { name: '0.w', shape: [3, 4], dtype: 'float32' },
      { name: '1', shape: [2, 4], dtype: 'float32' },
    ]);
    expect(json.outputs).toEqual([{ name: 'value', shape: [], dtype: 'float32' }]);
    const ops_ = json.nodes.map((n: { op: string }) => n.op);
    for (const op of ['input', 'transpose', 'matmul', 'mul', 'sum', 'div', 'add', 'sqrt'])
      expect(ops_).toContain(op);
    const mm = json.nodes.find((n: { op: string }) => n.op === 'matmul');
    expect(mm).toMatchObject({ shape: [2, 3], dtype: 'float32' });
    expect(mm.inputs).toHaveLength(2);
    expect(json.nodes.find((n: { op: string }) => n.op === 'transpose').attrs).toEqual({ perm: [1, 0] });
    const c = Object.values(json.constants)[0] as { dtype: string; shape: number[]; values: number[] };
    expect(c).toMatchObject({ dtype: 'float32', shape: [] });
    expect(c.values).toHaveLength(1);
    const text = graphToText(graph);
    expect(text).toMatch(/%\d+ = matmul\(%\d+, %\d+\) : \[2,3\] float32/);
    expect(text).toMatch(/\{perm=\[1,0\]\}/);
    expect(text.split('\n').at(-1)).toMatch(/^return value=%\d+$/);
  });
});
