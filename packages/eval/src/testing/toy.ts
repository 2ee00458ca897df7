/**
 * Toy components for unit tests: a character tokenizer and a context-free ("unigram") scoring
 * model whose log-likelihoods are easy to compute by hand.
 */
import type { TextEncoder } from '../internal/perplexity.js';
import type { ScoringModel, TokenScores } from '../internal/scoring-model.js';

/** Characters -> ids 1.. ; id 0 is BOS. */
export function charTokenizer(alphabet: string): TextEncoder & { vocabSize: number } {
  const chars = [...alphabet];
  const index = new Map(chars.map((c, i) => [c, i + 1]));
  return {
    vocabSize: chars.length + 1,
    bosId: 0,
    encode(text, options = {}) {
      const ids = [...text].map((c) => {
        const id = index.get(c);
        if (id === undefined) throw new Error(`toy tokenizer: no id for ${JSON.stringify(c)}`);
        return id;
      });
      return options.bos === false ? ids : [0, ...ids];
    },
    decode: (ids) =>
      ids
        .filter((i) => i > 0)
        .map((i) => chars[i - 1])
        .join(''),
  };
}

/**
 * Every position predicts token v with probability probs[v], whatever the context. Records the
 * windows it was called with.
 */
export function unigramModel(
  probs: readonly number[],
  options: { maxLength?: number; batchSize?: number; eosId?: number } = {},
): ScoringModel & { calls: number[][][] } {
  const calls: number[][][] = [];
  const logits = Float32Array.from(probs, (p) => (p > 0 ? Math.log(p) : -1e9));
  const argmax = probs.indexOf(Math.max(...probs));
  const scores = (batch: readonly (readonly number[])[]): TokenScores[] => {
    calls.push(batch.map((w) => [...w]));
    return batch.map((w) => ({
      nll: Float32Array.from(w.slice(1), (t) => -Math.log(probs[t]!)),
      greedy: Uint8Array.from(w.slice(1), (t) => (t === argmax ? 1 : 0)),
    }));
  };
  return {
    calls,
    vocabSize: probs.length,
    maxLength: options.maxLength ?? 64,
    batchSize: options.batchSize ?? 4,
    bosId: 0,
    ...(options.eosId !== undefined ? { eosId: options.eosId } : {}),
    tokenNll: async (batch) => scores(batch).map((s) => s.nll),
    tokenScores: async (batch) => scores(batch),
    logitsAt: async (batch) => batch.map(() => logits.slice()),
  };
}
