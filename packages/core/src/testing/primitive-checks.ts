/**
 * Conformance checks of single primitives: forward cases and gradients against the float64
 * reference (and finite differences), and what a backend must do when it lacks a lowering.
 */
import {
  evaluateReference,
  isFloat,
  ops,
  outputInfos,
  PRIMITIVES,
  Rng,
  type Tensor,
  trace,
  valueAndGrad,
} from '@moreau/core';
import { expect, it } from 'vitest';
import { FORWARD_CASES, GRAD_CASES, type GradCase, NON_DIFFERENTIABLE, type OpCase } from './cases.js';
import { assertClose, finiteDifferenceGradients, randomTensor, type Tolerance } from './numerics.js';
import { opsUsed, runOn, type Suite, seedOf } from './suite.js';

/** Finite-difference tolerance: |g - fd| <= FD_ATOL + FD_RTOL * |fd| (fd: central, float64, h = 1e-3). */
export const FD_TOL: Tolerance = { rtol: 1e-3, atol: 1e-4 };

export const lowTitle = (p: string) => `lowering: ${p}`;

export function coverageCheck(): void {
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
}

/** A case's tolerance, never tighter than the suite's unless the case asks for exact (0). */
function caseTol(suite: Suite, t?: Tolerance): Tolerance {
  return {
    rtol: t?.rtol === 0 ? 0 : Math.max(t?.rtol ?? 0, suite.tol.rtol),
    atol: t?.atol === 0 ? 0 : Math.max(t?.atol ?? 0, suite.tol.atol),
  };
}

export function forwardCheck(suite: Suite, c: OpCase): void {
  suite.test('primitives', c.title, [c.prim], async (skipIfUses) => {
    const inputs = c.make(new Rng(seedOf(c.title)));
    const { graph } = trace(c.fn, inputs);
    if (!opsUsed(graph).has(c.prim)) throw new Error(`case '${c.title}' does not exercise '${c.prim}'`);
    skipIfUses(graph);
    const expected = evaluateReference(graph, inputs);
    const actual = await runOn(suite.be(), graph, inputs);
    expect(actual.length).toBe(expected.length);
    assertClose(actual[0]!, expected[0]!, caseTol(suite, c.tol), c.title);
  });
}

export function gradCheck(suite: Suite, c: GradCase): void {
  suite.test('gradients', c.title, [c.prim], async (skipIfUses) => {
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
    const actual = await runOn(suite.be(), graph, inputs);
    expect(actual.length).toBe(1 + argnums.length);
    assertClose(actual[0]!, expected[0]!, caseTol(suite), `${c.title}: loss`);
    const fd = c.noFd ? undefined : finiteDifferenceGradients(loss, inputs, argnums, c.h ?? 1e-3);
    argnums.forEach((k, j) => {
      assertClose(
        actual[1 + j]!,
        expected[1 + j]!,
        caseTol(suite),
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

function isUnsupported(err: unknown): err is Error & { primitive: string; backend: string } {
  return err instanceof Error && err.name === 'UnsupportedPrimitiveError';
}

export function loweringCheck(suite: Suite, p: string): void {
  const { skip } = suite;
  const title = lowTitle(p);
  const c = FORWARD_CASES.find((x) => x.prim === p);
  const reason = skip[title] ?? skip.lowerings;
  if (reason !== undefined || !c) {
    it.skip(`${title} [skipped: ${reason ?? 'no case'}]`, () => {});
    return;
  }
  it(title, async () => {
    const be = suite.be();
    const inputs = c.make(new Rng(seedOf(c.title)));
    const { graph } = trace(c.fn, inputs);
    try {
      await runOn(be, graph, inputs);
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      if (skip[err.primitive] === undefined) {
        throw new Error(
          `backend '${be.name}' has no lowering for '${err.primitive}' and '${err.primitive}' is not in skip ` +
            `(add it with a reason if that is intended): ${err.message}`,
        );
      }
      expect(err.backend, 'UnsupportedPrimitiveError.backend').toBe(be.name);
      expect(err.message).toContain(err.primitive);
      expect(err.message).toContain(be.name);
    }
  });
}
