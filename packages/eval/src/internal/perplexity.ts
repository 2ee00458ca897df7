/**
 * Perplexity with LLM-Pruner's protocol: the documents are joined with "\n\n" and tokenized once
 * (with BOS when the tokenizer adds one), the token stream is cut into non-overlapping windows of
 * seqLen tokens, and PPL = exp(mean NLL over every predicted position of every window). A window
 * of L tokens predicts L - 1 of them (its first token is context only).
 *
 * The trailing partial window (fewer than seqLen tokens) is dropped by default, as LLM-Pruner
 * does (`nsamples = numel // seq_len`); `tail: 'score'` scores it as one more, shorter window
 * (one extra compiled shape) when it holds at least 2 tokens.
 */
import { InputError, type Progress, throwIfAborted } from '@moreau/core';
import type { ScoringModel } from './scoring-model.js';

export interface PerplexityOptions {
  /** Window length in tokens (default 128). */
  readonly seqLen?: number;
  /** Windows per model call (default the model's batchSize, else 8). */
  readonly batchSize?: number;
  /** Score at most this many windows (the first ones), for quick runs. */
  readonly limit?: number;
  /** What to do with the trailing partial window: 'drop' (default, LLM-Pruner) or 'score'. */
  readonly tail?: 'drop' | 'score';
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
}

export interface PerplexityResult {
  /** Mean NLL (nats) over the predicted positions. */
  readonly nll: number;
  readonly ppl: number;
  /** Predicted positions the mean runs over. */
  readonly tokens: number;
  readonly windows: number;
  readonly seqLen: number;
  /** Tokens in the whole stream (before windowing and the limit). */
  readonly streamTokens: number;
}

/** The non-overlapping windows of a token stream (LLM-Pruner's cut). */
export function perplexityWindows(
  stream: ArrayLike<number>,
  seqLen: number,
  options: { limit?: number; tail?: 'drop' | 'score' } = {},
): number[][] {
  if (!Number.isInteger(seqLen) || seqLen < 2) {
    throw new InputError(`seqLen must be an integer >= 2, got ${seqLen}`, undefined, 'seqLen');
  }
  const out: number[][] = [];
  const full = Math.floor(stream.length / seqLen);
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  for (let i = 0; i < full && out.length < limit; i++) {
    out.push(Array.from({ length: seqLen }, (_, j) => stream[i * seqLen + j]!));
  }
  const rest = stream.length - full * seqLen;
  if (options.tail === 'score' && rest >= 2 && out.length < limit) {
    out.push(Array.from({ length: rest }, (_, j) => stream[full * seqLen + j]!));
  }
  return out;
}

/** Perplexity of a token stream (see the module comment for the protocol). */
export async function perplexity(
  model: ScoringModel,
  stream: ArrayLike<number>,
  options: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const seqLen = options.seqLen ?? 128;
  if (seqLen > model.maxLength) {
    throw new InputError(
      `seqLen ${seqLen} exceeds the model's context of ${model.maxLength}`,
      undefined,
      'seqLen',
    );
  }
  const windows = perplexityWindows(stream, seqLen, options);
  if (windows.length === 0) {
    throw new InputError(
      `the text has ${stream.length} tokens, fewer than one window of ${seqLen}`,
      undefined,
      'seqLen',
    );
  }
  const B = options.batchSize ?? model.batchSize ?? 8;
  let sum = 0;
  let count = 0;
  // Full windows first in batches of B; a shorter tail window goes alone.
  const groups: number[][][] = [];
  const full = windows.filter((w) => w.length === seqLen);
  for (let i = 0; i < full.length; i += B) groups.push(full.slice(i, i + B));
  const tail = windows.filter((w) => w.length !== seqLen);
  if (tail.length) groups.push(tail);
  let done = 0;
  for (const g of groups) {
    throwIfAborted(options.signal);
    const nll = await model.tokenNll(g, options.signal);
    for (const row of nll) {
      for (const v of row) sum += v;
      count += row.length;
    }
    done += g.length;
    options.onProgress?.({ phase: 'perplexity', done, total: windows.length });
  }
  const mean = sum / count;
  return {
    nll: mean,
    ppl: Math.exp(mean),
    tokens: count,
    windows: windows.length,
    seqLen,
    streamTokens: stream.length,
  };
}

/** Minimal tokenizer surface the evaluators use (the @moreau/models Tokenizer satisfies it). */
export interface TextEncoder {
  readonly bosId?: number;
  readonly eosId?: number;
  encode(text: string, options?: { bos?: boolean; eos?: boolean }): number[];
  decode?(ids: readonly number[]): string;
}

/** Tokenizes `text` once (BOS when the tokenizer has one, unless `bos: false`) and runs perplexity. */
export async function textPerplexity(
  model: ScoringModel,
  tokenizer: TextEncoder,
  text: string,
  options: PerplexityOptions & { readonly bos?: boolean } = {},
): Promise<PerplexityResult> {
  const stream = tokenizer.encode(text, { bos: options.bos ?? true });
  return perplexity(model, stream, options);
}
