/**
 * The ScoringModel over core's executor: whole and layer-streamed mode give the same perplexity,
 * zero-shot scores (with LAMBADA's greedy flags) and logits (rel 1e-5) on a pruned GQA model with
 * uneven layer sizes stored in float16; batches follow the work, not --batch-size; generation
 * with a cache per layer equals full recomputation and stays seeded; a run that cannot fit is
 * refused with the numbers; scoringModelFromLlama(model) applies the LoRA adapters a model
 * carries (unmerged), scoring as the merged model.
 */
import {
  type Backend,
  castHost,
  cutModel,
  findLoraTargets,
  type Graph,
  initLora,
  MemoryLimitError,
  mergeLora,
  ReferenceBackend,
  Rng,
  tensor,
} from '@moreau/core';
import { type LlamaConfig, LlamaModel, randomInit } from '@moreau/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callRows, MAX_CHUNK, planCalls } from './internal/batching.js';
import { generate } from './internal/generate.js';
import { perplexity } from './internal/perplexity.js';
import type { ScoringModel } from './internal/scoring-model.js';
import {
  type StagedScoringOptions,
  scoringModelFromLlama,
  scoringModelFromStages,
} from './internal/staged-scoring.js';
import type { ZeroShotTask } from './internal/tasks.js';
import { evaluateTask } from './internal/zeroshot.js';
import { charTokenizer } from './testing/toy.js';

const config: LlamaConfig = {
  vocabSize: 7,
  hiddenSize: 16,
  intermediateSize: 20,
  numHiddenLayers: 3,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: 48,
  tieWordEmbeddings: false,
  bosTokenId: 0,
  eosTokenId: 6,
};

/** A pruned GQA model (uneven heads and MLP widths per layer), weights stored in float16. */
function prunedHalfModel(): LlamaModel {
  const base = new LlamaModel(config, randomInit(config, 3, { std: 0.4 }));
  const cut = cutModel(
    base,
    new Map([
      ['layer.1.attention', [0]],
      ['layer.0.mlp', [1, 2, 5, 8, 13, 19]],
      ['layer.2.mlp', [0, 7, 9]],
    ]),
  );
  return cut.withParams(new Map([...cut.params].map(([k, t]) => [k, castHost(t, 'float16')]))) as LlamaModel;
}

let backend: Backend;
beforeAll(async () => {
  const ort = await import('@moreau/backend-ort');
  backend = await ort.createOrtBackend({ intraOpNumThreads: 2 });
});
afterAll(async () => {
  await backend?.dispose();
});

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);
const model = prunedHalfModel();
const scorer = (exec: 'whole' | 'streamed', over: StagedScoringOptions = {}) =>
  scoringModelFromStages(model, { backend, exec, batchSize: 3, bosId: 0, eosId: 6, ...over });

describe('scoringModelFromStages: whole and streamed agree', () => {
  const rng = new Rng(4);
  const stream = Array.from({ length: 300 }, () => rng.int(config.vocabSize));

  it('perplexity (many windows: streamed runs them layer-major in chunks)', async () => {
    const whole = scorer('whole');
    const streamed = scorer('streamed');
    const a = await perplexity(whole, stream, { seqLen: 16 });
    const b = await perplexity(streamed, stream, { seqLen: 16 });
    expect(whole.exec).toBe('whole');
    expect(streamed.exec).toBe('streamed');
    expect(a.windows).toBe(18);
    expect(rel(a.nll, b.nll)).toBeLessThan(1e-5);
    // Whole mode asks for batchSize windows per call; streamed for as many as memory allows.
    expect(await whole.windowsPerCall(16, 18)).toBe(3);
    expect(await streamed.windowsPerCall(16, 18)).toBe(MAX_CHUNK);
    expect(await streamed.windowsPerCall(20, 2)).toBe(MAX_CHUNK);
    whole.dispose();
    streamed.dispose();
  });

  it('zero-shot scores with greedy flags, and logits at positions', async () => {
    const tok = charTokenizer(' abcde');
    const task: ZeroShotTask = {
      name: 'lambada-like',
      kind: 'loglikelihood',
      items: ['abca', 'bbbbbdd', 'e', 'cadeccadebbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbe'].map(
        (c, i) => ({
          context: c,
          continuation: ` ${'abcde'[i]}`,
        }),
      ),
    };
    const [whole, streamed] = [scorer('whole'), scorer('streamed')];
    const a = await evaluateTask(whole, tok, task, { bucket: 4 });
    const b = await evaluateTask(streamed, tok, task, { bucket: 4 });
    a.logprobs.flat().forEach((v, i) => {
      expect(rel(v, b.logprobs.flat()[i]!)).toBeLessThan(1e-5);
    });
    expect(b.acc).toBe(a.acc);
    const rows = [
      [0, 1, 2, 3, 4, 5],
      [0, 6, 6, 1, 0, 2],
      [0, 3, 3, 3, 3, 3],
      [0, 5, 4, 3, 2, 1],
    ];
    const sa = await whole.tokenScores(rows);
    const sb = await streamed.tokenScores(rows);
    sa.forEach((s, r) => {
      expect(Array.from(sb[r]!.greedy)).toEqual(Array.from(s.greedy));
      s.nll.forEach((v, t) => {
        expect(rel(v, sb[r]!.nll[t]!)).toBeLessThan(1e-5);
      });
    });
    const la = await whole.logitsAt(rows, [0, 5, 2, 3]);
    const lb = await streamed.logitsAt(rows, [0, 5, 2, 3]);
    la.forEach((l, r) => {
      l.forEach((v, i) => {
        expect(Math.abs(v - lb[r]![i]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(v)));
      });
    });
    whole.dispose();
    streamed.dispose();
  });
});

describe('batches follow the work', () => {
  it('planCalls: rows capped by the batch size, the work and the memory budget; chunks by the budget', () => {
    const call = { fixed: 1000, perRow: 100 };
    const plan = (over: Partial<Parameters<typeof planCalls>[0]>) =>
      planCalls({ mode: 'whole', call, perWindow: 10, budget: 1e9, batchSize: 1000, work: 5000, ...over });
    expect(plan({})).toEqual({ rows: 1000, chunk: 1000 });
    // --batch-size 1000 on one window: one row.
    expect(plan({ work: 1 })).toEqual({ rows: 1, chunk: 1 });
    // 1000 rows asked for, room for 20.
    expect(plan({ budget: 3000 })).toEqual({ rows: 20, chunk: 20 });
    // No room at all: one row at a time, still.
    expect(plan({ mode: 'streamed', budget: -5, batchSize: 8 })).toEqual({ rows: 1, chunk: 1 });
    expect(plan({ mode: 'streamed', budget: 2800, batchSize: 8 })).toEqual({ rows: 8, chunk: 100 });
    expect(plan({ mode: 'streamed', perWindow: 1, batchSize: 8 }).chunk).toBe(MAX_CHUNK);
  });

  it('callRows: calls of the row count, the last padded with its first window', () => {
    expect(callRows(7, 3)).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [6, 6, 6],
    ]);
    expect(callRows(2, 2)).toEqual([[0, 1]]);
    expect(callRows(0, 4)).toEqual([]);
  });

  it('--batch-size 1000 on one window compiles one-row graphs, in both modes', async () => {
    for (const exec of ['whole', 'streamed'] as const) {
      const graphs: Graph[] = [];
      const ref = new ReferenceBackend();
      const spy = Object.assign(Object.create(ref), {
        compile: (g: Graph) => {
          graphs.push(g);
          return ref.compile(g);
        },
      }) as Backend;
      const m = scoringModelFromStages(model, { backend: spy, exec, batchSize: 1000 });
      const r = await perplexity(
        m,
        Array.from({ length: 40 }, (_, i) => i % 7),
        { seqLen: 16, limit: 1 },
      );
      expect(r.windows).toBe(1);
      const ids = graphs.flatMap((g) => g.inputs.map((i) => g.nodes[i]!)).filter((n) => n.dtype === 'int32');
      expect(ids.length).toBeGreaterThan(0);
      for (const n of ids) expect(n.shape[0]).toBe(1);
      m.dispose();
    }
  });

  it('a run that cannot fit even layer-streamed is refused before it starts, with both numbers', async () => {
    const m = scorer('auto' as never, { availableBytes: 1000 });
    const err = await m.tokenNll([[0, 1, 2, 3]]).catch((e) => e);
    expect(err).toBeInstanceOf(MemoryLimitError);
    expect(err.message).toMatch(
      /evaluating this model layer by layer needs an estimated [\d.]+ KiB, but 1\.0 KiB is available/,
    );
  });
});

describe('generation with a cache per layer', () => {
  /** The same model without incremental decoding: generation recomputes the prefix every token. */
  const recomputing = (m: ScoringModel): ScoringModel => ({ ...m, startDecoding: undefined });

  it('greedy and sampled tokens equal full recomputation, in both modes; the seed fixes the draws', async () => {
    for (const exec of ['whole', 'streamed'] as const) {
      const m = scorer(exec);
      const options = { maxNewTokens: 40, stopTokens: [] };
      const cached = await generate(m, [0, 3], options);
      const full = await generate(recomputing(m), [0, 3], options);
      expect(cached).toEqual(full);
      expect(cached.tokens).toHaveLength(40);
      const sampled = { ...options, temperature: 1, topK: 5, topP: 0.9, seed: 7 };
      const s1 = await generate(m, [0], sampled);
      const s2 = await generate(m, [0], sampled);
      expect(s1).toEqual(s2);
      expect(await generate(recomputing(m), [0], sampled)).toEqual(s1);
      expect(new Set(s1.tokens).size).toBeGreaterThan(2);
      m.dispose();
    }
  });

  it('stops when the context is full', async () => {
    const m = scorer('streamed');
    const r = await generate(m, [0, 1, 2], { maxNewTokens: 100, stopTokens: [] });
    expect(r.reason).toBe('context');
    expect(r.tokens).toHaveLength(config.maxPositionEmbeddings - 3 + 1);
    m.dispose();
  });
});

describe('scoringModelFromLlama with LoRA adapters (withLora)', () => {
  // The pruned model in float32 (so the merged weights are not rounded) with adapters on three
  // projections, B random (fresh adapters have B = 0 and change nothing).
  const base = model.withParams(
    new Map([...model.params].map(([k, t]) => [k, castHost(t, 'float32')])),
  ) as LlamaModel;
  const lora = { r: 2, alpha: 4, dropout: 0, targets: ['q_proj', 'v_proj', 'down_proj'] };
  const rng = new Rng(9);
  const params = new Map(
    [...initLora(findLoraTargets(base.params, lora.targets), lora.r, 5)].map(([n, t]) =>
      n.endsWith('lora_B.weight')
        ? [
            n,
            tensor(
              Float32Array.from(t.data, () => rng.normal() * 0.3),
              t.shape,
              'float32',
            ),
          ]
        : [n, t],
    ),
  );
  const adapters = { config: lora, params };
  const adapted = base.withLora(adapters);
  const merged = new LlamaModel(base.config, mergeLora(base.params, adapters));
  const stream = Array.from({ length: 120 }, () => rng.int(config.vocabSize));

  it('scores and decodes as the merged model, whole and streamed; the params form is the base', async () => {
    const opts = (exec: 'whole' | 'streamed') => ({ exec, batchSize: 3 });
    const ref = scoringModelFromLlama(merged, backend, opts('whole'));
    const want = await perplexity(ref, stream, { seqLen: 16 });
    const greedy = await generate(ref, [0, 3], { maxNewTokens: 20, stopTokens: [] });
    for (const exec of ['whole', 'streamed'] as const) {
      const m = scoringModelFromLlama(adapted, backend, opts(exec));
      const got = await perplexity(m, stream, { seqLen: 16 });
      expect(m.exec).toBe(exec);
      expect(rel(got.nll, want.nll)).toBeLessThan(1e-5);
      expect(await generate(m, [0, 3], { maxNewTokens: 20, stopTokens: [] })).toEqual(greedy);
      m.dispose();
    }
    // The adapters matter, and (params, config) scores the base model (adapter tensors ignored).
    const plain = scoringModelFromLlama(adapted.params, base.config, backend, opts('whole'));
    const alone = scoringModelFromLlama(base, backend, opts('whole'));
    const baseNll = (await perplexity(alone, stream, { seqLen: 16 })).nll;
    expect(rel((await perplexity(plain, stream, { seqLen: 16 })).nll, baseNll)).toBeLessThan(1e-6);
    expect(rel(baseNll, want.nll)).toBeGreaterThan(1e-3);
    alone.dispose();
    plain.dispose();
    ref.dispose();
  });
});
