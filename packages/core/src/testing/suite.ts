/** What every family of conformance checks shares: the backend under test, skips and tolerances. */
import type { Backend, Graph, HostTensor } from '@moreau/core';
import { it } from 'vitest';
import type { Tolerance } from './numerics.js';

export const CONFORMANCE_GROUPS = [
  'primitives',
  'gradients',
  'lowerings',
  'contract',
  'llama-like block',
  'precision',
] as const;

export type ConformanceGroup = (typeof CONFORMANCE_GROUPS)[number];

/** One backend's run of the suite: the backend under test, what to skip, the tolerance. */
export class Suite {
  /** Set in beforeAll, cleared in afterAll. */
  backend: Backend | undefined;

  constructor(
    readonly name: string,
    /** Skipped tests, primitives and groups, each with its reason. */
    readonly skip: Readonly<Record<string, string>>,
    /** Tolerance of primitive outputs and gradients against the reference. */
    readonly tol: Required<Tolerance>,
  ) {}

  be(): Backend {
    if (!this.backend)
      throw new Error(`conformance '${this.name}': the backend was not created (see the beforeAll failure)`);
    return this.backend;
  }

  /**
   * Registers a test, statically skipped when its title, group or one of its primitives is in skip;
   * `skipIfUses` skips it at run time when a graph it builds uses a skipped primitive.
   */
  test(
    group: ConformanceGroup,
    title: string,
    prims: readonly string[],
    body: (skipIfUses: (graph: Graph) => void) => Promise<void>,
  ): void {
    const skip = this.skip;
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
  }
}

export const opsUsed = (graph: Graph) => new Set<string>(graph.nodes.map((n) => n.op));

/** 32-bit FNV-1a of a title: each case draws from its own stream, independent of the others. */
export function seedOf(title: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < title.length; i++) h = Math.imul(h ^ title.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export async function runOn(
  backend: Backend,
  graph: Graph,
  inputs: readonly HostTensor[],
): Promise<HostTensor[]> {
  const exe = await backend.compile(graph);
  try {
    return await exe.run(inputs);
  } finally {
    exe.dispose();
  }
}
