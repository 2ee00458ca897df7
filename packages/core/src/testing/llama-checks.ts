/**
 * Conformance checks on a small LLaMA-like decoder block: its loss and every gradient against the
 * float64 reference, and the gradients against finite differences along random directions.
 */
import {
  type Backend,
  type Graph,
  type HostTensor,
  jit,
  ops,
  ReferenceBackend,
  Rng,
  type Tensor,
  tensor,
  toFloat32Data,
  trace,
  valueAndGrad,
} from '@moreau/core';
import { expect } from 'vitest';
import { llamaLikeBlock } from './llama.js';
import { relativeError } from './numerics.js';
import { type Suite, seedOf } from './suite.js';

const LLAMA_LOSS_RTOL = 1e-5;
const LLAMA_GRAD_RTOL = 1e-4;
const LLAMA_FD_RTOL = 1e-3;

export const LLAMA_TESTS = [
  `llama-like block: loss matches the reference (relative error <= ${LLAMA_LOSS_RTOL})`,
  `llama-like block: every gradient matches the reference (norm-wise relative error <= ${LLAMA_GRAD_RTOL})`,
  `llama-like block: gradients match central finite differences along random directions (relative error <= ${LLAMA_FD_RTOL})`,
] as const;

/** Leaves of a nested object / array tree with their dotted paths. */
export function leaves(tree: unknown, path = ''): [string, HostTensor][] {
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

export function llamaChecks(suite: Suite): void {
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
    ours ??= run(suite.be());
    return ours;
  };
  const skipIfUsesBlock = (skipIfUses: (g: Graph) => void) =>
    skipIfUses(trace(vg, [block.params, ...block.inputs]).graph);

  suite.test('llama-like block', LLAMA_TESTS[0], [], async (skipIfUses) => {
    skipIfUsesBlock(skipIfUses);
    const [[v], [e]] = await Promise.all([onBackend(), reference()]);
    const a = toFloat32Data(v)[0]!;
    const b = toFloat32Data(e)[0]!;
    expect(Number.isFinite(b)).toBe(true);
    const rel = Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
    expect(rel, `loss ${a} vs reference ${b}`).toBeLessThanOrEqual(LLAMA_LOSS_RTOL);
  });

  suite.test('llama-like block', LLAMA_TESTS[1], [], async (skipIfUses) => {
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

  suite.test('llama-like block', LLAMA_TESTS[2], [], async (skipIfUses) => {
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
