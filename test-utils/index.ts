/**
 * @moreau/test-utils: the set-up the tests of every package share. Not a package: a root-level
 * module that vitest (vitest.config.ts) and tsc (tsconfig.json paths) resolve by alias, so it is
 * never built or published. See CONTRIBUTING.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, type LlamaConfig } from '@moreau/models';
import { afterAll, beforeAll, expect } from 'vitest';

export * from './shared.js';

/** A small GQA config (4 query heads / 2 kv heads, untied head) for tests; `over` replaces fields. */
export function smallConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    vocabSize: 50,
    hiddenSize: 32,
    intermediateSize: 24,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 64,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenId: 2,
    ...over,
  };
}

/**
 * A scratch directory for the tests of one file: made before they run (beforeAll) and removed after
 * (afterAll). Returns its path getter, to call inside the tests.
 */
export function useScratchDir(): () => string {
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'moreau-test-'));
  });
  afterAll(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));
  return () => {
    if (dir === undefined) throw new Error('useScratchDir: the directory exists only while the tests run');
    return dir;
  };
}

/** The FormatError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function formatError(p: Promise<unknown>): Promise<FormatError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(FormatError);
  return e as FormatError;
}
