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
import { type Backend, PRIMITIVES } from '@moreau/core';
import { afterAll, beforeAll, describe } from 'vitest';
import { FORWARD_CASES, GRAD_CASES } from './cases.js';
import { CONTRACT_TESTS, contractChecks } from './contract-checks.js';
import { LLAMA_TESTS, llamaChecks } from './llama-checks.js';
import type { Tolerance } from './numerics.js';
import { PRECISION_TESTS, precisionChecks } from './precision-checks.js';
import {
  coverageCheck,
  FD_TOL,
  forwardCheck,
  gradCheck,
  loweringCheck,
  lowTitle,
} from './primitive-checks.js';
import { CONFORMANCE_GROUPS, Suite } from './suite.js';

export type { LlamaLikeBlock, LlamaLikeConfig, LlamaLikeLayer, LlamaLikeParams } from './llama.js';
export { llamaLikeBlock } from './llama.js';
export type { RandomTensorOptions, Tolerance } from './numerics.js';
export { assertClose, finiteDifferenceGradients, randomTensor, relativeError } from './numerics.js';
export { precisionProbe, probeTensor, representableIn, roundingMismatches } from './precision.js';
export interface ConformanceOptions {
  /**
   * Tests to skip, each with the reason (shown in the report). A key is a test title, a primitive
   * name (skips its forward and gradient cases, and any test whose graph uses it; its `lowering:`
   * test then passes only if the backend throws UnsupportedPrimitiveError for it) or a group:
   * 'primitives', 'gradients', 'lowerings', 'contract', 'llama-like block', 'precision'. Unknown keys throw, so
   * a typo cannot silently skip nothing.
   */
  readonly skip?: Readonly<Record<string, string>>;
  /** Relative tolerance of primitive outputs and gradients against the reference (default 1e-5). */
  readonly rtol?: number;
  /** Absolute tolerance of primitive outputs and gradients against the reference (default 1e-6). */
  readonly atol?: number;
}

export { CONFORMANCE_GROUPS } from './suite.js';

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

  const suite = new Suite(name, skip, tol);

  describe(`backend conformance: ${name}`, () => {
    beforeAll(async () => {
      suite.backend = await makeBackend();
    });
    afterAll(async () => {
      await suite.backend?.dispose();
      suite.backend = undefined;
    });

    describe('coverage', coverageCheck);

    describe(`primitives (vs float64 reference; |a - e| <= ${tol.atol} + ${tol.rtol} |e| unless the case says otherwise; NaN and inf positions must match)`, () => {
      for (const c of FORWARD_CASES) forwardCheck(suite, c);
    });

    describe(`gradients (vs reference VJPs at |a - e| <= ${tol.atol} + ${tol.rtol} |e|; vs central finite differences, float64, h = 1e-3, at |g - fd| <= ${FD_TOL.atol} + ${FD_TOL.rtol} |fd|)`, () => {
      for (const c of GRAD_CASES) gradCheck(suite, c);
    });

    describe('lowerings (a missing lowering throws UnsupportedPrimitiveError naming primitive and backend; allowed only when skipped)', () => {
      for (const p of PRIMITIVES) loweringCheck(suite, p);
    });

    describe('contract', () => contractChecks(suite));

    describe('llama-like block', () => llamaChecks(suite));

    describe('precision (emulated half precision)', () => precisionChecks(suite));
  });
}
