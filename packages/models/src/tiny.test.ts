/**
 * The embedded default model (assets/tiny, trained by tools/tiny-model/train.ts): its config, its
 * tokenizer, and its held-out perplexity on the first windows of heldout.txt, recomputed through
 * core's jit on onnxruntime and compared with the number in its model card.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Backend, type HostTensor, jit, ReferenceBackend } from '@moreau/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Checkpoint } from './formats/checkpoint.js';
import { loadHfDirectory } from './formats/hf-dir.js';
import { llamaTokenNll } from './llama/model.js';
import { loadTokenizer } from './tokenizers/load.js';
import type { Tokenizer } from './tokenizers/types.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../assets/tiny');
const SEQ = 128;

async function pickBackend(): Promise<Backend> {
  try {
    const ort = await import('@moreau/backend-ort');
    return await ort.createOrtBackend({ intraOpNumThreads: 2 });
  } catch (e) {
    console.warn(
      `tiny model test: onnxruntime unavailable (${(e as Error).message}); using the reference backend`,
    );
    return new ReferenceBackend();
  }
}

describe('embedded tiny model (assets/tiny)', () => {
  let ckpt: Checkpoint;
  let tok: Tokenizer;
  let backend: Backend;
  const card = readFileSync(path.join(dir, 'README.md'), 'utf8');
  const heldout = readFileSync(path.join(dir, 'heldout.txt'), 'utf8');

  beforeAll(async () => {
    [ckpt, tok, backend] = await Promise.all([
      loadHfDirectory(dir, { dtype: 'float32' }),
      loadTokenizer(dir),
      pickBackend(),
    ]);
  });
  afterAll(async () => {
    await backend?.dispose();
  });

  it('has the documented LLaMA shape, stored in float16', () => {
    const c = ckpt.config;
    expect(c).toMatchObject({
      vocabSize: 4096,
      numHiddenLayers: 4,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 1,
      maxPositionEmbeddings: 256,
    });
    expect(c.hiddenSize % c.numAttentionHeads).toBe(0);
    expect(c.intermediateSize % 8).toBe(0);
    expect(ckpt.sourceDtype).toBe('F16');
    expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
    expect(ckpt.tensors.get('model.embed_tokens.weight')!.shape).toEqual([4096, c.hiddenSize]);
  });

  it('loads its byte-level BPE tokenizer (BOS first, exact round trip)', () => {
    expect(tok.kind).toBe('hf');
    expect(tok.vocabSize).toBe(4096);
    expect(tok.bosId).toBe(0);
    const text = heldout.slice(0, 2000);
    const ids = tok.encode(text);
    expect(ids[0]).toBe(0);
    expect(ids.slice(1).every((i) => i >= 2 && i < 4096)).toBe(true);
    expect(tok.decode(ids)).toBe(text);
    expect(tok.decode(tok.encode('Naïve café — “quotes” 123'))).toBe('Naïve café — “quotes” 123');
  });

  it('reproduces the model card perplexity on the first held-out windows', async () => {
    const m = /First (\d+) windows PPL: ([\d.]+)/.exec(card);
    expect(m, 'model card line "First N windows PPL: X"').not.toBeNull();
    const n = Number(m![1]);
    const expected = Number(m![2]);
    // The card's protocol: the held-out text tokenized once (BOS first), non-overlapping windows.
    const ids = tok.encode(heldout.slice(0, 12 * n * SEQ));
    expect(ids.length).toBeGreaterThan(n * SEQ + 64);
    const data = Int32Array.from(ids.slice(0, n * SEQ));
    const nll = jit<HostTensor>((p, x) => llamaTokenNll(p, x, ckpt.config), { backend });
    const out = (await nll(Object.fromEntries(ckpt.tensors), { dtype: 'int32', shape: [n, SEQ], data }))
      .data as Float32Array;
    nll.dispose();
    expect(out.length).toBe(n * (SEQ - 1));
    const ppl = Math.exp(out.reduce((s, v) => s + v, 0) / out.length);
    expect(Math.abs(ppl / expected - 1)).toBeLessThan(0.01);
    // And far below the unigram baseline the card reports for the same windows.
    const row = new RegExp(`first ${n} windows \\| ${n} \\| \\d+ \\| [\\d.]+ \\| ([\\d.]+)`).exec(card);
    expect(row).not.toBeNull();
    expect(ppl).toBeLessThan(Number(row![1]) / 3);
  });
});
