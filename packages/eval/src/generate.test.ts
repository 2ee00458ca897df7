import { Rng } from '@moreau/core';
import { describe, expect, it } from 'vitest';
import { generate, sampleToken } from './internal/generate.js';
import type { ScoringModel } from './internal/scoring-model.js';

/** Next token = (last + 1) mod V, as a one-hot-ish logit row; records window lengths. */
function counter(V: number, maxLength = 64): ScoringModel & { lengths: number[] } {
  const lengths: number[] = [];
  return {
    lengths,
    vocabSize: V,
    maxLength,
    eosId: 0,
    tokenNll: async () => [],
    logitsAt: async (batch, positions) =>
      batch.map((w, i) => {
        lengths.push(w.length);
        const out = new Float32Array(V).fill(-5);
        out[(w[positions[i]!]! + 1) % V] = 5;
        return out;
      }),
  };
}

describe('generation', () => {
  it('greedy decoding stops at EOS, pads to length buckets', async () => {
    const m = counter(8);
    const r = await generate(m, [1, 2], { bucket: 4 });
    expect(r).toEqual({ tokens: [3, 4, 5, 6, 7], reason: 'stop' });
    expect(m.lengths).toEqual([4, 4, 4, 6, 6, 8]);
    expect((await generate(counter(8), [1], { maxNewTokens: 2 })).reason).toBe('length');
    // A full context still predicts one more token (from position maxLength - 1).
    expect(await generate(counter(100, 5), [1], { maxNewTokens: 20 })).toEqual({
      tokens: [2, 3, 4, 5, 6],
      reason: 'context',
    });
  });

  it('top-k / top-p restrict the candidates; the seed fixes the draws', () => {
    const logits = [0, 3, 2.9, -1, 1];
    expect(sampleToken(logits, undefined)).toBe(1);
    const rng = new Rng(5);
    for (let i = 0; i < 50; i++)
      expect([1, 2]).toContain(sampleToken(logits, rng, { temperature: 1, topK: 2 }));
    for (let i = 0; i < 50; i++) expect(sampleToken(logits, rng, { temperature: 1, topP: 0.01 })).toBe(1);
    const draw = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 20 }, () => sampleToken(logits, r, { temperature: 2 }));
    };
    expect(draw(3)).toEqual(draw(3));
    expect(new Set(draw(3)).size).toBeGreaterThan(2);
  });

  it('sampled generation is reproducible with a seed', async () => {
    const m: ScoringModel = {
      vocabSize: 4,
      maxLength: 64,
      tokenNll: async () => [],
      logitsAt: async (batch) => batch.map(() => Float32Array.from([0, 0, 0, 0])),
    };
    const a = await generate(m, [1], { temperature: 1, seed: 9, maxNewTokens: 30, stopTokens: [] });
    const b = await generate(m, [1], { temperature: 1, seed: 9, maxNewTokens: 30, stopTokens: [] });
    expect(a.tokens).toEqual(b.tokens);
    expect(new Set(a.tokens).size).toBe(4);
  });
});
