/**
 * What the stories260K tool scripts share: a backend; the shared-data folder, the model and its
 * tokenizer come from the tests' set-up (test-utils/shared.ts).
 */
import type { Backend } from '@moreau/core';

export { loadStories260k, SHARED_DIR as shared } from '../test-utils/shared.js';

export async function makeBackend(name: string | undefined, threads: number): Promise<Backend> {
  if (name === 'tfjs') {
    const { createTfjsBackend } = await import('@moreau/backend-tfjs');
    return createTfjsBackend();
  }
  const { createOrtBackend } = await import('@moreau/backend-ort');
  return createOrtBackend({ intraOpNumThreads: threads });
}
