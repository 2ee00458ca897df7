import { type HostTensor, jit, ReferenceBackend, type Tensor, tensor } from '@moreau/core';
import { llamaTargetNll, randomInit } from '@moreau/models';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { scoringModelFromLlama } from './internal/scoring-model.js';
import type { MultipleChoiceItem, ZeroShotTask } from './internal/tasks.js';
import { encodeRequest, evaluateTask, multipleChoiceMetrics, scoreRequests } from './internal/zeroshot.js';
import { charTokenizer, unigramModel } from './testing/toy.js';

// Alphabet ' ' a b c q -> ids 1..5 (0 is BOS). Every position predicts:
// ' ' 1/4, a 1/8, b 1/2, c 1/16, q 1/16 (BOS never).
const tok = charTokenizer(' abcq');
const probs = [0, 1 / 4, 1 / 8, 1 / 2, 1 / 16, 1 / 16];
const LN2 = Math.log(2);

const mc = (context: string, choices: string[], gold: number): MultipleChoiceItem => ({
  requests: choices.map((c) => ({ context, continuation: ` ${c}` })),
  gold,
  normTexts: choices,
});

// Log-likelihoods by hand (in units of ln 2): ' ' = -2, a = -3, b = -1, c = -4.
const items = [
  mc('q', ['a', 'bbbb'], 0), // -5 vs -6: acc right; per byte -5 vs -1.5: acc_norm wrong
  mc('qq', ['b', 'bbbbbb'], 0), // -3 vs -8: acc right; per byte -3 vs -1.33: acc_norm wrong
  mc('a', ['bbbb', 'a'], 0), // -6 vs -5: acc wrong; per byte -1.5 vs -5: acc_norm right
];
const expectedLl = [
  [-5, -6],
  [-3, -8],
  [-6, -5],
];
const handSet: ZeroShotTask = { name: 'hand', kind: 'multiple_choice', items };

describe('zero-shot multiple choice', () => {
  it('acc / acc_norm on a hand-made 3-item set with hand-computed log-likelihoods', async () => {
    const model = unigramModel(probs);
    const r = await evaluateTask(model, tok, handSet);
    if (r.kind !== 'multiple_choice') throw new Error('expected multiple choice');
    r.logprobs.forEach((lls, k) => {
      lls.forEach((ll, c) => {
        expect(ll / LN2).toBeCloseTo(expectedLl[k]![c]!, 5);
      });
    });
    expect(r.n).toBe(3);
    expect(r.acc).toBeCloseTo(2 / 3, 12);
    expect(r.acc_norm).toBeCloseTo(1 / 3, 12);
    expect(multipleChoiceMetrics(items, expectedLl)).toEqual({ acc: 2 / 3, acc_norm: 1 / 3, n: 3 });
  });

  it('acc_norm divides by UTF-8 bytes of the choice text', () => {
    // 'é' is 2 bytes: -3 / 2 = -1.5 beats -2 / 1.
    const it1 = { gold: 0, normTexts: ['é', 'x'] };
    expect(multipleChoiceMetrics([it1], [[-3, -2]])).toEqual({ acc: 0, acc_norm: 1, n: 1 });
  });

  it('encodes like the harness: trailing context spaces move to the continuation', () => {
    expect(encodeRequest(tok, { context: 'q ', continuation: 'a' })).toEqual({
      tokens: [0, 5, 1, 2],
      continuationLength: 2,
    });
    expect(encodeRequest(tok, { context: 'q', continuation: ' a' }, { bos: false })).toEqual({
      tokens: [5, 1, 2],
      continuationLength: 2,
    });
    // Left truncation to the window keeps the continuation.
    expect(encodeRequest(tok, { context: 'qqqqq', continuation: ' ab' }, { maxLength: 4 })).toEqual({
      tokens: [5, 1, 2, 3],
      continuationLength: 3,
    });
    // An empty context conditions on BOS.
    expect(encodeRequest(tok, { context: '', continuation: 'a' }, { bos: false })).toEqual({
      tokens: [0, 2],
      continuationLength: 1,
    });
  });

  it('shares rows between choices that are prefixes of each other, and duplicates', async () => {
    const model = unigramModel(probs);
    const reqs = [
      { context: 'q', continuation: ' b' },
      { context: 'q', continuation: ' bb' },
      { context: 'q', continuation: ' b' },
      { context: 'a', continuation: ' c' },
    ].map((r) => encodeRequest(tok, r));
    const shared = await scoreRequests(model, reqs, { groups: [[0, 1, 2], [3]] });
    const rows = model.calls.flat().length;
    expect(rows).toBe(2); // ' bb' serves ' b' twice; 'a c' alone
    const alone = await scoreRequests(unigramModel(probs), reqs);
    expect(shared.map((s) => s.logprob)).toEqual(alone.map((s) => s.logprob));
    expect(shared[1]!.logprob / LN2).toBeCloseTo(-4, 6);
  });

  it('LAMBADA-style tasks: greedy accuracy and the harness perplexity', async () => {
    // b is the argmax: ' b' and ' bb' are greedy only if ' ' were the argmax too, so none is.
    const model = unigramModel([0, 0.05, 0.05, 0.8, 0.05, 0.05]);
    const task: ZeroShotTask = {
      name: 'lam',
      kind: 'loglikelihood',
      items: [
        { context: 'q', continuation: 'b' }, // no space: the single token 'b' is greedy
        { context: 'q', continuation: ' b' },
      ],
    };
    const r = await evaluateTask(model, tok, task);
    if (r.kind !== 'loglikelihood') throw new Error('expected loglikelihood');
    expect(r.acc).toBe(0.5);
    const ll = [Math.log(0.8), Math.log(0.05) + Math.log(0.8)];
    expect(r.ppl).toBeCloseTo(Math.exp(-(ll[0]! + ll[1]!) / 2), 4);
  });

  it('respects limit and abort', async () => {
    const r = await evaluateTask(unigramModel(probs), tok, handSet, { limit: 2 });
    expect(r.n).toBe(2);
    const ac = new AbortController();
    ac.abort();
    await expect(evaluateTask(unigramModel(probs), tok, handSet, { signal: ac.signal })).rejects.toThrow();
  });
});

describe('zero-shot through the LLaMA adapter', () => {
  const config = smallConfig({
    vocabSize: 6,
    hiddenSize: 8,
    intermediateSize: 12,
    numAttentionHeads: 2,
    numKeyValueHeads: 1,
    headDim: 4,
    maxPositionEmbeddings: 24,
    bosTokenId: 0,
    eosTokenId: 0,
  });
  const params = randomInit(config, 7, { std: 0.5 });

  it('matches log-likelihoods computed separately on the reference backend', async () => {
    const backend = new ReferenceBackend();
    const model = scoringModelFromLlama(params, config, backend, { batchSize: 2 });
    const task: ZeroShotTask = {
      name: 'tiny',
      kind: 'multiple_choice',
      items: [
        mc('q', ['a', 'ab', 'abc'], 2),
        mc('qa b', ['c', 'cc'], 0),
        mc('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', ['a q'], 0), // longer than the window: truncated
      ],
    };
    const r = await evaluateTask(model, tok, task, { bucket: 4 });
    if (r.kind !== 'multiple_choice') throw new Error('expected multiple choice');
    // Independent: one unpadded row per request, targets given explicitly.
    const f = jit(
      (p: Record<string, Tensor>, ids: Tensor, tg: Tensor) => llamaTargetNll(p, ids, tg, config),
      {
        backend,
      },
    );
    const p = Object.fromEntries(params) as Record<string, HostTensor>;
    let k = 0;
    for (const item of task.items) {
      if (!('requests' in item)) continue;
      for (let c = 0; c < item.requests.length; c++) {
        const req = item.requests[c]!;
        let full = tok.encode(req.context + req.continuation);
        const contLen = full.length - tok.encode(req.context).length;
        full = full.slice(-config.maxPositionEmbeddings);
        const T = full.length - 1;
        const nll = (await f(
          p,
          tensor(Int32Array.from(full.slice(0, -1)), [1, T], 'int32'),
          tensor(Int32Array.from(full.slice(1)), [1, T], 'int32'),
        )) as HostTensor;
        const d = nll.data as Float32Array;
        let ll = 0;
        for (let j = T - Math.min(contLen, T); j < T; j++) ll -= d[j]!;
        expect(r.logprobs[k]![c]!).toBeCloseTo(ll, 4);
      }
      k++;
    }
    model.dispose();
  });
});
