/**
 * The pieces of training and evaluating the tiny model that train.ts and its checks share:
 * the config, batch sampling, perplexity (LLM-Pruner's windows), the unigram baseline and greedy
 * generation, all through core's jit on a backend.
 */
import { type Backend, type HostTensor, jit, type Rng } from '@moreau/core';
import { type LlamaConfig, llamaLogits, llamaTokenNll } from '@moreau/models';

export interface TinyShape {
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly maxSeq: number;
}

export function tinyConfig(s: TinyShape): LlamaConfig {
  return {
    vocabSize: s.vocab,
    hiddenSize: s.hidden,
    intermediateSize: s.intermediate,
    numHiddenLayers: s.layers,
    numAttentionHeads: s.heads,
    numKeyValueHeads: s.kvHeads,
    headDim: s.hidden / s.heads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: s.maxSeq,
    tieWordEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: 1,
  };
}

/** `batch` random windows of `seq` tokens from a token stream, as int32 [batch, seq]. */
export function sampleBatch(stream: Int32Array, batch: number, seq: number, rng: Rng): HostTensor {
  const data = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const start = rng.int(stream.length - seq + 1);
    data.set(stream.subarray(start, start + seq), b * seq);
  }
  return { dtype: 'int32', shape: [batch, seq], data };
}

/** Non-overlapping windows of `seq` tokens (the tail shorter than a window is dropped). */
export function windows(stream: Int32Array, seq: number, limit = Number.POSITIVE_INFINITY): Int32Array[] {
  const out: Int32Array[] = [];
  for (let s = 0; s + seq <= stream.length && out.length < limit; s += seq)
    out.push(stream.subarray(s, s + seq));
  return out;
}

export interface PplResult {
  /** exp(mean NLL) over every next-token position of every window. */
  readonly ppl: number;
  readonly meanNll: number;
  /** Scored positions (windows * (seq - 1)). */
  readonly tokens: number;
  readonly windows: number;
}

type Params = Readonly<Record<string, HostTensor>>;

/**
 * Perplexity of `wins` (each predicts its tokens 1..seq-1 from the ones before, as LLM-Pruner),
 * evaluated `batch` windows per call (the last call padded with copies and ignored).
 */
export async function perplexity(
  backend: Backend,
  params: Params,
  config: LlamaConfig,
  wins: readonly Int32Array[],
  batch = 8,
): Promise<PplResult> {
  const seq = wins[0]!.length;
  const nll = jit<HostTensor>((p, ids) => llamaTokenNll(p, ids, config), { backend });
  let sum = 0;
  let count = 0;
  for (let i = 0; i < wins.length; i += batch) {
    const n = Math.min(batch, wins.length - i);
    const data = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) data.set(wins[i + Math.min(b, n - 1)]!, b * seq);
    const out = await nll(params, { dtype: 'int32', shape: [batch, seq], data });
    const v = out.data as Float32Array;
    for (let k = 0; k < n * (seq - 1); k++) sum += v[k]!;
    count += n * (seq - 1);
  }
  nll.dispose();
  return { ppl: Math.exp(sum / count), meanNll: sum / count, tokens: count, windows: wins.length };
}

/** Unigram model with add-one smoothing: p(t) = (count(t) + 1) / (N + V). */
export function unigramLogProbs(stream: Int32Array, vocab: number): Float64Array {
  const counts = new Float64Array(vocab);
  for (const t of stream) counts[t]!++;
  const denom = stream.length + vocab;
  return counts.map((c) => Math.log((c + 1) / denom));
}

/** The unigram baseline on exactly the positions `perplexity` scores. */
export function unigramPerplexity(logp: Float64Array, wins: readonly Int32Array[]): PplResult {
  let sum = 0;
  let count = 0;
  for (const w of wins) {
    for (let k = 1; k < w.length; k++) {
      sum -= logp[w[k]!]!;
      count++;
    }
  }
  return { ppl: Math.exp(sum / count), meanNll: sum / count, tokens: count, windows: wins.length };
}

/**
 * Greedy continuation of `prompt` (token ids) by `steps` tokens. Runs a fixed-length window
 * (positions after the prefix are padding, invisible to a causal model), so one graph is compiled.
 */
export async function greedy(
  backend: Backend,
  params: Params,
  config: LlamaConfig,
  prompt: readonly number[],
  steps: number,
  stopId?: number,
): Promise<number[]> {
  const width = Math.min(config.maxPositionEmbeddings, prompt.length + steps);
  const logits = jit<HostTensor>((p, ids) => llamaLogits(p, ids, config), { backend });
  const ids = [...prompt];
  const vocab = config.vocabSize;
  for (let s = 0; s < steps && ids.length < width; s++) {
    const data = new Int32Array(width);
    data.set(ids);
    const out = (await logits(params, { dtype: 'int32', shape: [1, width], data })).data as Float32Array;
    const row = out.subarray((ids.length - 1) * vocab, ids.length * vocab);
    let best = 0;
    for (let v = 1; v < vocab; v++) if (row[v]! > row[best]!) best = v;
    ids.push(best);
    if (best === stopId) break;
  }
  logits.dispose();
  return ids.slice(prompt.length);
}
