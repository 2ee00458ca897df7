/**
 * Test-only helpers: where the shared real model / data files are (env MOREAU_SHARED, default
 * ../shared next to the repository), scratch directories, and catching a FormatError. Not exported
 * from the package.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect } from 'vitest';
import { FormatError } from './errors.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

export const SHARED_DIR = process.env.MOREAU_SHARED ?? resolve(repoRoot, '../shared');

/** Absolute path of a file under the shared folder. */
export function sharedPath(rel: string): string {
  return join(SHARED_DIR, rel);
}

/** Whether the shared files a test needs exist; logs why the test is skipped when not. */
export function haveShared(...rels: string[]): boolean {
  const missing = rels.filter((r) => !existsSync(sharedPath(r)));
  if (missing.length > 0) {
    console.warn(
      `[skip] shared test files not found: ${missing.map(sharedPath).join(', ')} ` +
        '(set MOREAU_SHARED to the folder holding models/ and data/)',
    );
    return false;
  }
  return true;
}

export const STORIES_BIN = 'models/stories260K/stories260K.bin';
export const STORIES_TOK = 'models/stories260K/tok512.bin';
export const TINY_GGUF = 'models/llama-2-tiny-random-gguf/llama-2-tiny-random.gguf';
export const TINYSTORIES_HEAD = 'data/tinystories/tinystories_validation_head.txt';
export const TINYSTORIES_SAMPLE = 'data/tinystories/cs336_tinystories_sample.txt';

/**
 * A scratch directory for the tests of one file: made before they run (beforeAll) and removed after
 * (afterAll). Returns its path getter, to call inside the tests.
 */
export function useScratchDir(): () => string {
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'moreau-formats-'));
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
