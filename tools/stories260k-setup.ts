/** What the stories260K tool scripts share: the shared-data folder, the model, its tokenizer, a backend. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '@moreau/core';
import { Llama2cTokenizer, loadLlama2c } from '@moreau/models';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const shared = process.env.MOREAU_SHARED ?? path.resolve(repoRoot, '../shared');

export async function makeBackend(name: string | undefined, threads: number): Promise<Backend> {
  if (name === 'tfjs') {
    const { createTfjsBackend } = await import('@moreau/backend-tfjs');
    return createTfjsBackend();
  }
  const { createOrtBackend } = await import('@moreau/backend-ort');
  return createOrtBackend({ intraOpNumThreads: threads });
}

export async function loadStories260k() {
  const ckpt = await loadLlama2c(path.join(shared, 'models/stories260K/stories260K.bin'));
  const tok = await Llama2cTokenizer.load(
    path.join(shared, 'models/stories260K/tok512.bin'),
    ckpt.config.vocabSize,
  );
  return { ckpt, tok };
}
