/**
 * The evaluation harness on a real trained model, Karpathy's stories260K, on both engines:
 * perplexity on TinyStories / WikiText-2 raw / PTB, zero-shot on the seven standard tasks and
 * LAMBADA (with small limits: 2 shared cores), greedy generation against llama2.c's documented
 * output, and the same numbers on onnxruntime and tfjs.
 */

import { readFileSync } from 'node:fs';
import type { Backend } from '@moreau/core';
import type { Checkpoint, Llama2cTokenizer } from '@moreau/models';
import { haveStories260k, loadStories260k, SHARED_DIR, STORIES_DOC, sharedPath } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  evaluateTask,
  generate,
  loadTask,
  perplexity,
  readText,
  type ScoringModel,
  STANDARD_TASKS,
  scoringModelFromLlama,
} from './index.js';

const texts = {
  tinystories: 'data/tinystories/tinystories_validation_head.txt',
  wikitext2: 'data/wikitext-2-raw/wiki.test.raw',
  ptb: 'data/ptb/ptb.test.txt',
};
const HAVE = haveStories260k(
  'stories260K evaluation e2e tests',
  STORIES_DOC,
  ...Object.values(texts),
  'data/zeroshot/boolq.jsonl',
  'data/hellaswag/hellaswag_val_full.txt',
  'data/zeroshot_original/openbookqa_main_test.tsv',
);

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);

describe.skipIf(!HAVE)('stories260K evaluation (ort and tfjs)', () => {
  let ckpt: Checkpoint;
  let tok: Llama2cTokenizer;
  const backends: Backend[] = [];
  const models: Record<string, ScoringModel> = {};

  beforeAll(async () => {
    ({ ckpt, tok } = await loadStories260k());
    const { createOrtBackend } = await import('@moreau/backend-ort');
    const { createTfjsBackend } = await import('@moreau/backend-tfjs');
    const ort = await createOrtBackend({ intraOpNumThreads: 2 });
    const tfjs = await createTfjsBackend({ device: 'cpu' });
    backends.push(ort, tfjs);
    models.ort = scoringModelFromLlama(ckpt.tensors, ckpt.config, ort, { batchSize: 4 });
    models.tfjs = scoringModelFromLlama(ckpt.tensors, ckpt.config, tfjs, { batchSize: 4 });
  });
  afterAll(async () => {
    for (const m of Object.values(models)) m.dispose?.();
    for (const b of backends) await b.dispose();
  });

  it('perplexity on TinyStories, WikiText-2 raw and PTB (first 4 windows of 128) agrees across engines', async () => {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, file] of Object.entries(texts)) {
      const stream = tok.encode(await readText(sharedPath(file)), { bos: true });
      const r = {
        ort: await perplexity(models.ort!, stream, { seqLen: 128, limit: 4 }),
        tfjs: await perplexity(models.tfjs!, stream, { seqLen: 128, limit: 4 }),
      };
      expect(r.ort.tokens).toBe(4 * 127);
      expect(rel(r.ort.nll, r.tfjs.nll)).toBeLessThan(1e-5);
      out[name] = { ort: r.ort.ppl, tfjs: r.tfjs.ppl };
    }
    console.log('stories260K PPL (4 windows of 128):', JSON.stringify(out));
    expect(out.tinystories!.ort).toBeGreaterThan(2);
    expect(out.tinystories!.ort).toBeLessThan(8);
    expect(out.wikitext2!.ort).toBeGreaterThan(out.tinystories!.ort!);
    expect(out.ptb!.ort).toBeGreaterThan(out.tinystories!.ort!);
  });

  it('zero-shot on the seven tasks and LAMBADA (first items) agrees across engines', async () => {
    const table: Record<string, unknown> = {};
    for (const name of [...STANDARD_TASKS, 'lambada_openai']) {
      const task = await loadTask(SHARED_DIR, name);
      // boolq's passages fill the 512-token window: keep it to 2 items (tfjs-wasm is slow there).
      const limit = name === 'boolq' ? 2 : 3;
      const ort = await evaluateTask(models.ort!, tok, task, { limit });
      const tfjs = await evaluateTask(models.tfjs!, tok, task, { limit });
      expect(tfjs.n).toBe(limit);
      const a = ort.logprobs.flat();
      const b = tfjs.logprobs.flat();
      a.forEach((v, i) => {
        expect(rel(v, b[i]!), `${name} logprob ${i}`).toBeLessThan(1e-5);
      });
      expect(tfjs.acc).toBe(ort.acc);
      if (ort.kind === 'multiple_choice' && tfjs.kind === 'multiple_choice') {
        expect(tfjs.acc_norm).toBe(ort.acc_norm);
        table[name] = { acc: ort.acc, acc_norm: ort.acc_norm };
      } else if (ort.kind === 'loglikelihood') table[name] = { acc: ort.acc, ppl: ort.ppl };
    }
    console.log('stories260K zero-shot (first 2-3 items):', JSON.stringify(table));
  });

  it("greedy generation from BOS reproduces llama2.c's documented output; sampling is seeded", async () => {
    const doc = readFileSync(sharedPath(STORIES_DOC), 'utf8');
    const start = doc.indexOf('Once upon a time, there was a little girl named Lily.');
    const expected = doc.slice(start, start + 120);
    const streamed: number[] = [];
    // run.c stops at BOS (its story separator).
    const g = await generate(models.ort!, [tok.bosId!], {
      maxNewTokens: 80,
      stopTokens: [tok.bosId!],
      onToken: (id) => streamed.push(id),
    });
    expect(streamed).toEqual(g.tokens);
    expect(tok.decode(g.tokens).slice(0, 120)).toBe(expected);
    const sample = () =>
      generate(models.ort!, [tok.bosId!], { maxNewTokens: 24, temperature: 1, topP: 0.9, seed: 133742 });
    const [a, b] = [await sample(), await sample()];
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(g.tokens.slice(0, a.tokens.length));
  });
});
