/**
 * The shared folder of real models and data (env MOREAU_SHARED, default ../shared next to the
 * repository) and the stories260K set-up. No vitest here, so the tools/ scripts use it too.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Checkpoint, Llama2cTokenizer, loadLlama2c } from '@moreau/models';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The shared folder holding models/ and data/: $MOREAU_SHARED, default <repo>/../shared. */
export const SHARED_DIR = path.resolve(process.env.MOREAU_SHARED ?? path.join(repoRoot, '../shared'));

/** Absolute path of a file under the shared folder (an absolute `rel` is returned as it is). */
export function sharedPath(rel: string): string {
  return path.resolve(SHARED_DIR, rel);
}

/**
 * Whether every file in `rels` (relative to the shared folder, or absolute) exists; when not, warns
 * that `what` is skipped and names the missing files.
 */
export function haveShared(what: string, ...rels: string[]): boolean {
  const missing = rels.map(sharedPath).filter((f) => !existsSync(f));
  if (missing.length > 0) {
    console.warn(`${what} skipped: missing ${missing.join(', ')} (set MOREAU_SHARED to the shared folder)`);
  }
  return missing.length === 0;
}

export const STORIES_BIN = 'models/stories260K/stories260K.bin';
export const STORIES_TOK = 'models/stories260K/tok512.bin';
/** llama2.c's documented greedy output of stories260K. */
export const STORIES_DOC = 'models/stories260K/llama2c_doc_stories260K.md';
export const TINY_GGUF = 'models/llama-2-tiny-random-gguf/llama-2-tiny-random.gguf';
export const TINYSTORIES_HEAD = 'data/tinystories/tinystories_validation_head.txt';
export const TINYSTORIES_SAMPLE = 'data/tinystories/cs336_tinystories_sample.txt';

/** haveShared for stories260K's model and tokenizer and the `extra` files a test reads besides. */
export function haveStories260k(what: string, ...extra: string[]): boolean {
  return haveShared(what, STORIES_BIN, STORIES_TOK, ...extra);
}

/** Karpathy's stories260K (llama2.c) and its tok512 tokenizer, sized to the model's vocabulary. */
export async function loadStories260k(): Promise<{ ckpt: Checkpoint; tok: Llama2cTokenizer }> {
  const ckpt = await loadLlama2c(sharedPath(STORIES_BIN));
  const tok = await Llama2cTokenizer.load(sharedPath(STORIES_TOK), ckpt.config.vocabSize);
  return { ckpt, tok };
}
