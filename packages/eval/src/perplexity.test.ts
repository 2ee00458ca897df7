import { describe, expect, it } from 'vitest';
import { perplexity, perplexityWindows, textPerplexity } from './internal/perplexity.js';
import { charTokenizer, unigramModel } from './testing/toy.js';

describe('perplexity (LLM-Pruner protocol)', () => {
  const stream = Array.from({ length: 23 }, (_, i) => 1 + (i % 3));

  it('cuts non-overlapping windows and drops the partial tail by default', () => {
    const w = perplexityWindows(stream, 5);
    expect(w.length).toBe(4);
    expect(w[1]).toEqual(stream.slice(5, 10));
    expect(perplexityWindows(stream, 5, { tail: 'score' }).at(-1)).toEqual(stream.slice(20));
    expect(perplexityWindows(stream, 5, { limit: 2 }).length).toBe(2);
    expect(perplexityWindows(stream.slice(0, 21), 5, { tail: 'score' }).length).toBe(4); // 1-token tail: nothing to predict
    expect(() => perplexityWindows(stream, 1)).toThrow(/seqLen/);
  });

  it('is exp(mean NLL) over every predicted position', async () => {
    const probs = [0, 0.5, 0.25, 0.25];
    const model = unigramModel(probs, { batchSize: 3 });
    const r = await perplexity(model, stream, { seqLen: 5 });
    // Predicted tokens: positions 1..4 of each of the 4 windows.
    let s = 0;
    for (let w = 0; w < 4; w++) for (let j = 1; j < 5; j++) s -= Math.log(probs[stream[w * 5 + j]!]!);
    expect(r.tokens).toBe(16);
    expect(r.windows).toBe(4);
    expect(r.streamTokens).toBe(23);
    expect(r.nll).toBeCloseTo(s / 16, 6);
    expect(r.ppl).toBeCloseTo(Math.exp(s / 16), 6);
    expect(model.calls.map((c) => c.length)).toEqual([3, 1]);
    const withTail = await perplexity(unigramModel(probs), stream, { seqLen: 5, tail: 'score' });
    expect(withTail.tokens).toBe(18);
  });

  it('tokenizes once with BOS and reports progress', async () => {
    const tok = charTokenizer('ab');
    const seen: number[] = [];
    const r = await textPerplexity(unigramModel([0, 0.5, 0.5]), tok, 'abababab', {
      seqLen: 3,
      batchSize: 1,
      onProgress: (p) => seen.push(p.done),
    });
    expect(r.streamTokens).toBe(9);
    expect(r.windows).toBe(3);
    expect(r.ppl).toBeCloseTo(2, 6);
    expect(seen).toEqual([1, 2, 3]);
    await expect(perplexity(unigramModel([0, 1]), [1], { seqLen: 2 })).rejects.toThrow(
      /fewer than one window/,
    );
  });
});
