/**
 * End-to-end checks of the LLaMA graph on a real trained model, Karpathy's stories260K (llama2.c):
 * greedy decoding from BOS reproduces llama2.c's documented output, and the NLL on the TinyStories
 * validation head matches an independently computed value. Runs on onnxruntime (the reference
 * backend when onnxruntime is unavailable, much slower).
 */
import { readFileSync } from 'node:fs';
import { type Backend, type HostTensor, jit, ReferenceBackend, tensor } from '@moreau/core';
import {
  haveStories260k,
  loadStories260k,
  STORIES_DOC,
  sharedPath,
  TINYSTORIES_HEAD,
} from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Checkpoint } from '../formats/checkpoint.js';
import type { Llama2cTokenizer } from '../tokenizers/llama2c.js';
import { llamaLogits, llamaTokenNll } from './model.js';

const HAVE = haveStories260k('stories260K e2e tests', STORIES_DOC, TINYSTORIES_HEAD);

/** Seconds on onnxruntime; on the reference backend about 12 s per 512-token window and 1 s per greedy step. */
const SLOW = 600_000;

async function pickBackend(): Promise<Backend> {
  try {
    const ort = await import('@moreau/backend-ort');
    return await ort.createOrtBackend({ intraOpNumThreads: 2 });
  } catch (e) {
    console.warn(
      `stories260K e2e: onnxruntime unavailable (${(e as Error).message}); using the slow reference backend`,
    );
    return new ReferenceBackend();
  }
}

describe.skipIf(!HAVE)('stories260K (llama2.c) end to end', () => {
  let ckpt: Checkpoint;
  let tok: Llama2cTokenizer;
  let backend: Backend;
  let params: Record<string, HostTensor>;

  beforeAll(async () => {
    ({ ckpt, tok } = await loadStories260k());
    backend = await pickBackend();
    params = Object.fromEntries(ckpt.tensors) as Record<string, HostTensor>;
  });
  afterAll(async () => {
    await backend?.dispose();
  });

  it(
    'greedy decoding from BOS reproduces llama2.c run.c output (first 200 characters)',
    async () => {
      const doc = readFileSync(sharedPath(STORIES_DOC), 'utf8');
      const start = doc.indexOf('Once upon a time, there was a little girl named Lily.');
      expect(start).toBeGreaterThan(0);
      const expected = doc.slice(start, start + 200);
      // One compiled graph: a fixed window, positions after the prefix are padding (causal attention
      // keeps them from affecting earlier logits).
      const T = 96;
      const f = jit((p, ids) => llamaLogits(p, ids, ckpt.config), { backend });
      const ids = [tok.bosId];
      const t0 = performance.now();
      let text = '';
      while (ids.length < T) {
        const window = new Int32Array(T);
        window.set(ids);
        const logits = (await f(params, tensor(window, [1, T], 'int32'))) as HostTensor;
        const V = ckpt.config.vocabSize;
        const row = (logits.data as Float32Array).subarray((ids.length - 1) * V, ids.length * V);
        let best = 0;
        for (let v = 1; v < V; v++) if (row[v]! > row[best]!) best = v;
        if (best === tok.bosId) break; // run.c stops at BOS
        ids.push(best);
        text = tok.decode(ids);
        if (text.length >= 200) break;
      }
      console.log(
        `stories260K greedy on ${backend.name}: ${ids.length - 1} tokens in ${(performance.now() - t0).toFixed(0)} ms`,
      );
      expect(text.slice(0, 200)).toBe(expected);
    },
    SLOW,
  );

  it(
    'NLL over the first 8 512-token windows of the TinyStories validation head is 1.3266',
    async () => {
      const ids = tok.encode(readFileSync(sharedPath(TINYSTORIES_HEAD), 'utf8'), { bos: true });
      const W = 512;
      const n = 8;
      expect(ids.length).toBeGreaterThan(W * n);
      const batch = tensor(Int32Array.from(ids.slice(0, W * n)), [n, W], 'int32');
      const f = jit((p, x) => llamaTokenNll(p, x, ckpt.config), { backend });
      const t0 = performance.now();
      const nll = (await f(params, batch)) as HostTensor;
      const ms = performance.now() - t0;
      const d = nll.data as Float32Array;
      let s = 0;
      for (const v of d) s += v;
      const mean = s / d.length;
      console.log(
        `stories260K NLL on ${backend.name}: ${mean.toFixed(6)} over ${d.length} positions in ${ms.toFixed(0)} ms`,
      );
      expect(nll.shape).toEqual([n, W - 1]);
      expect(Math.abs(mean - 1.3266)).toBeLessThan(1e-4);
    },
    SLOW,
  );
});
