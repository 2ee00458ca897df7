/**
 * The same traced function (core's LLaMA-like block: loss and gradients as one valueAndGrad
 * graph) on tfjs (wasm and cpu), onnxruntime and the float64 reference backend.
 */
import {
  type Backend,
  type HostTensor,
  jit,
  ReferenceBackend,
  toFloat32Data,
  valueAndGrad,
} from '@moreau/core';
import { llamaLikeBlock, relativeError } from '@moreau/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTfjsBackend } from './index.js';

const LOSS_RTOL = 1e-5;
const GRAD_RTOL = 1e-4;

type Result = [HostTensor, unknown];

function leaves(tree: unknown, path = ''): [string, HostTensor][] {
  if (tree && typeof tree === 'object' && 'dtype' in tree && 'shape' in tree)
    return [[path, tree as HostTensor]];
  if (Array.isArray(tree)) return tree.flatMap((v, i) => leaves(v, `${path}.${i}`));
  if (tree && typeof tree === 'object') {
    return Object.keys(tree)
      .sort()
      .flatMap((k) => leaves((tree as Record<string, unknown>)[k], `${path}.${k}`));
  }
  return [];
}

function compare(a: Result, b: Result, what: string): void {
  const la = toFloat32Data(a[0])[0]!;
  const lb = toFloat32Data(b[0])[0]!;
  expect(Math.abs(la - lb) / Math.abs(lb), `${what}: loss ${la} vs ${lb}`).toBeLessThanOrEqual(LOSS_RTOL);
  const ga = leaves(a[1]);
  const gb = leaves(b[1]);
  expect(ga.map(([p]) => p)).toEqual(gb.map(([p]) => p));
  const bad = ga
    .map(([p, t], i) => [p, relativeError(t, gb[i]![1])] as const)
    .filter(([, rel]) => !(rel <= GRAD_RTOL))
    .map(([p, rel]) => `${p}: ${rel.toExponential(2)}`);
  expect(bad, `${what}: gradients over rel ${GRAD_RTOL}`).toEqual([]);
}

describe('cross-backend: llama-like block loss and gradients', () => {
  const block = llamaLikeBlock({ layers: 2, seqLen: 8 });
  const fn = valueAndGrad(block.fn);
  const results = new Map<string, Result>();
  const backends: [string, Backend][] = [];

  async function run(name: string, backend: Backend): Promise<Result> {
    const f = jit<Result>(fn, { backend });
    try {
      const r = await f(block.params, ...block.inputs);
      results.set(name, r);
      return r;
    } finally {
      f.dispose();
    }
  }

  beforeAll(async () => {
    backends.push(
      ['wasm', await createTfjsBackend({ engine: 'wasm' })],
      ['cpu', await createTfjsBackend({ engine: 'cpu' })],
    );
    await run('reference', new ReferenceBackend());
  });
  afterAll(async () => {
    for (const [, b] of backends) await b.dispose();
  });

  it.each(['wasm', 'cpu'])('tfjs %s matches the reference backend', async (engine) => {
    const be = backends.find(([n]) => n === engine)![1];
    compare(await run(engine, be), results.get('reference')!, `tfjs ${engine} vs reference`);
  });

  it('tfjs matches onnxruntime', async (ctx) => {
    let ort: Backend;
    try {
      const mod = await import('@moreau/backend-ort');
      ort = await mod.createOrtBackend();
    } catch (err) {
      ctx.skip(`@moreau/backend-ort unavailable: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    try {
      const r = await run('ort', ort);
      for (const engine of ['wasm', 'cpu']) {
        const ours = results.get(engine) ?? (await run(engine, backends.find(([n]) => n === engine)![1]));
        compare(ours, r, `tfjs ${engine} vs ort`);
      }
    } finally {
      await ort.dispose();
    }
  });
});

/**
 * Emulated half precision (jit's computeDtype) on the same block. The rounding is exact on every
 * engine (the conformance suite checks it bit for bit), so the engines agree wherever their float32
 * primitives agree before rounding. Matmul / reduction accumulation order and exp / log
 * implementations are the engines' own, and a float32 difference of an ulp or two lands on the
 * other side of a rounding boundary with probability about 2^-16 (bfloat16) / 2^-13 (float16) per
 * value. On this block: bfloat16 is bit-identical on all three engines; float16 is bit-identical
 * between onnxruntime and tfjs wasm, while tfjs cpu (which accumulates sums and matmuls in float64)
 * rounds one reduction to a neighbouring float16 value and a few gradient elements follow.
 */
describe('cross-backend: llama-like block in emulated half precision', () => {
  const block = llamaLikeBlock({ layers: 2, seqLen: 8 });
  const fn = valueAndGrad(block.fn);
  const engines: [string, Backend][] = [];

  const bitsOf = (r: Result) =>
    [r[0], ...leaves(r[1]).map(([, t]) => t)].map((t) => new Uint32Array(toFloat32Data(t).slice().buffer));
  /** Elements whose bits differ, of all loss and gradient elements. */
  const differing = (a: Result, b: Result) => {
    const x = bitsOf(a);
    const y = bitsOf(b);
    let diff = 0;
    let total = 0;
    x.forEach((u, i) => {
      total += u.length;
      u.forEach((v, k) => {
        if (v !== y[i]![k]) diff++;
      });
    });
    return { diff, total };
  };

  beforeAll(async () => {
    engines.push(
      ['wasm', await createTfjsBackend({ engine: 'wasm' })],
      ['cpu', await createTfjsBackend({ engine: 'cpu' })],
    );
    try {
      const mod = await import('@moreau/backend-ort');
      engines.push(['ort', await mod.createOrtBackend({ intraOpNumThreads: 2 })]);
    } catch {
      // Without onnxruntime the ort comparisons below skip.
    }
  });
  afterAll(async () => {
    for (const [, b] of engines) await b.dispose();
  });

  const runOn = async (name: string, dtype: 'float16' | 'bfloat16'): Promise<Result> => {
    const f = jit<Result>(fn, { backend: engines.find(([n]) => n === name)![1], computeDtype: dtype });
    try {
      return await f(block.params, ...block.inputs);
    } finally {
      f.dispose();
    }
  };

  const cases = [
    ['bfloat16', 'wasm', 'ort', 0],
    ['bfloat16', 'cpu', 'ort', 0],
    ['bfloat16', 'wasm', 'cpu', 0],
    ['float16', 'wasm', 'ort', 0],
    ['float16', 'cpu', 'ort', 0.005],
  ] as const;
  for (const [dtype, a, b, share] of cases) {
    it(`${dtype}: tfjs ${a} vs ${b}: loss bit-identical, at most ${share} of the elements differ`, async (ctx) => {
      if (!engines.some(([n]) => n === b)) {
        ctx.skip('@moreau/backend-ort unavailable');
        return;
      }
      const ra = await runOn(a, dtype);
      const rb = await runOn(b, dtype);
      expect(toFloat32Data(ra[0])[0], 'loss').toBe(toFloat32Data(rb[0])[0]);
      const { diff, total } = differing(ra, rb);
      console.log(`${dtype} ${a} vs ${b}: ${diff} of ${total} elements differ in their bits`);
      expect(diff).toBeLessThanOrEqual(Math.floor(share * total));
      if (diff > 0) compare(ra, rb, `${dtype} ${a} vs ${b}`);
    });
  }
});
