/**
 * Test-only helpers: where the shared real model / data files are (env MOREAU_SHARED, default
 * ../shared next to the repository), and scratch directories. Not exported from the package.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** A fresh scratch directory and its cleanup. */
export async function scratchDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'moreau-formats-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
