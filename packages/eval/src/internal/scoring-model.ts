/**
 * The model contract the evaluators are written against.
 *
 * Every evaluator in this package (perplexity, zero-shot, generation) only needs next-token
 * scores of token windows, so it takes a `ScoringModel`: any language model that can score
 * equal-length windows qualifies, whatever its architecture or engine. staged-scoring.ts runs any
 * staged model (LLaMA included) this way on core's executor.
 */
import { type ExecMode, InputError } from '@moreau/core';

/** Scores of one window's predicted positions t = 0 .. T-2 (position t predicts token t + 1). */
export interface TokenScores {
  /** -log p(w[t + 1] | w[0..t]). */
  readonly nll: Float32Array;
  /** 1 where w[t + 1] is the model's argmax at position t (greedy decoding would pick it). */
  readonly greedy: Uint8Array;
}

export interface ScoringModel {
  readonly vocabSize: number;
  /** The longest window (in tokens) the model accepts: its context length. */
  readonly maxLength: number;
  readonly bosId?: number;
  readonly eosId?: number;
  /** Rows per call the model is tuned for; evaluators batch by it (default 8). */
  readonly batchSize?: number;
  /**
   * Per-position NLL of a batch of equal-length windows (T >= 2): one Float32Array of T - 1
   * values per window.
   */
  tokenNll(batch: readonly (readonly number[])[], signal?: AbortSignal): Promise<Float32Array[]>;
  /** NLL plus greedy flags (LAMBADA's last-word accuracy needs them). */
  tokenScores?(batch: readonly (readonly number[])[], signal?: AbortSignal): Promise<TokenScores[]>;
  /**
   * Next-token logits (length vocabSize) at `positions[i]` of row i, for equal-length rows. Rows
   * may be right-padded past the position: a causal model ignores what follows it. Generation
   * needs this.
   */
  logitsAt?(
    batch: readonly (readonly number[])[],
    positions: readonly number[],
    signal?: AbortSignal,
  ): Promise<Float32Array[]>;
  /**
   * Windows of this length the model wants per call, given that the evaluator has `total` of them
   * (evaluators group their windows by it; they default to batchSize). A layer-streamed model
   * reads its weights once per call, so it asks for as many as fit in memory.
   */
  windowsPerCall?(length: number, total?: number): Promise<number>;
  /** Starts incremental decoding (a cache per layer): generation then costs one position a token. */
  startDecoding?(signal?: AbortSignal): Promise<DecodingSession>;
  /** How the model ran ('whole' graph or layer-'streamed'), once it has run. */
  readonly exec?: ExecMode;
  /** Frees compiled executables and uploaded weights. */
  dispose?(): void;
}

/** One sequence being decoded. */
export interface DecodingSession {
  /** Positions decoded so far. */
  readonly length: number;
  /** Appends tokens; returns the next-token logits after the last of them (length vocabSize). */
  append(ids: readonly number[]): Promise<Float32Array>;
}

/** Checks a batch of windows: non-empty, equal lengths, integer ids in [0, vocab). */
export function checkWindows(
  batch: readonly (readonly number[])[],
  vocabSize: number,
  minLength = 2,
  maxLength = Number.POSITIVE_INFINITY,
): number {
  if (batch.length === 0) throw new InputError('expected at least one window');
  const T = batch[0]!.length;
  if (T < minLength || T > maxLength) {
    throw new InputError(`windows must hold ${minLength}..${maxLength} tokens, got ${T}`);
  }
  for (const w of batch) {
    if (w.length !== T) throw new InputError(`windows must have equal lengths, got ${T} and ${w.length}`);
    for (const id of w) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new InputError(`token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
    }
  }
  return T;
}
