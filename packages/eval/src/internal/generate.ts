/**
 * Text generation: greedy or sampled (temperature, top-k, top-p with the seeded core Rng), until a
 * stop token or a token budget.
 *
 * There is no KV cache: every step recomputes the whole prefix, O(T^2) attention work per new
 * token (O(T^3) for a sequence). To avoid compiling a graph per length, the prefix is right-padded
 * to a length bucket (capped at the model's context) and the
 * logits are read at the last real position; causal attention keeps the padding from affecting
 * them. Buckets are 32, 48, 64, 96, 128, 192, 256, ... (see lengthBucket), so a sequence of n
 * tokens compiles about 2 log2(n / 32) graphs and pads at most a third of a window.
 */
import { InputError, Rng, throwIfAborted } from '@moreau/core';
import { lengthBucket } from './buckets.js';
import type { ScoringModel } from './scoring-model.js';

export interface GenerateOptions {
  /** New tokens at most (default 256). */
  readonly maxNewTokens?: number;
  /** 0 (default) is greedy argmax; otherwise logits are divided by it before sampling. */
  readonly temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined: all). */
  readonly topK?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches p (default 1). */
  readonly topP?: number;
  /** Seed of the sampling Rng (default 0). */
  readonly seed?: number;
  /** Token ids that end generation (not included in the output); default [model.eosId]. */
  readonly stopTokens?: readonly number[];
  /** Smallest length bucket of the compiled windows (default 32; see lengthBucket). */
  readonly bucket?: number;
  readonly signal?: AbortSignal;
  /** Called with every new token as it is produced. */
  readonly onToken?: (id: number) => void;
}

export interface GenerateResult {
  /** The new tokens (without the prompt and without the stop token). */
  readonly tokens: number[];
  /** 'stop': a stop token; 'length': maxNewTokens; 'context': the model's context is full. */
  readonly reason: 'stop' | 'length' | 'context';
}

/**
 * Picks the next token from logits: argmax at temperature 0, else a draw from the tempered
 * distribution restricted by top-k, then top-p (Hugging Face's order). Ties go to the lower id.
 */
export function sampleToken(
  logits: ArrayLike<number>,
  rng: Rng | undefined,
  options: Pick<GenerateOptions, 'temperature' | 'topK' | 'topP'> = {},
): number {
  const temperature = options.temperature ?? 0;
  const V = logits.length;
  if (temperature <= 0 || !rng) {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v]! > logits[best]!) best = v;
    return best;
  }
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = options.topK && options.topK > 0 ? Math.min(options.topK, V) : V;
  const kept = order.slice(0, k);
  const max = logits[kept[0]!]!;
  const probs = kept.map((v) => Math.exp((logits[v]! - max) / temperature));
  const total = probs.reduce((a, b) => a + b, 0);
  for (let i = 0; i < probs.length; i++) probs[i] = probs[i]! / total;
  const topP = options.topP ?? 1;
  let n = probs.length;
  if (topP < 1) {
    let cum = 0;
    for (let i = 0; i < probs.length; i++) {
      cum += probs[i]!;
      if (cum >= topP) {
        n = i + 1;
        break;
      }
    }
  }
  const mass = probs.slice(0, n).reduce((a, b) => a + b, 0);
  let u = rng.uniform() * mass;
  for (let i = 0; i < n; i++) {
    u -= probs[i]!;
    if (u < 0) return kept[i]!;
  }
  return kept[n - 1]!;
}

/** Generates a continuation of `prompt` (token ids; include BOS yourself if the model needs it). */
export async function generate(
  model: ScoringModel,
  prompt: readonly number[],
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  if (!model.logitsAt) throw new InputError('generate: the model has no logitsAt()');
  if (prompt.length === 0) throw new InputError('generate: the prompt needs at least one token (e.g. BOS)');
  const maxNew = options.maxNewTokens ?? 256;
  const bucket = options.bucket ?? 32;
  const stops = new Set(options.stopTokens ?? (model.eosId !== undefined ? [model.eosId] : []));
  const rng = (options.temperature ?? 0) > 0 ? new Rng(options.seed ?? 0) : undefined;
  const ids = [...prompt];
  const out: number[] = [];
  while (out.length < maxNew) {
    throwIfAborted(options.signal);
    if (ids.length > model.maxLength) return { tokens: out, reason: 'context' };
    const T = lengthBucket(ids.length, bucket, model.maxLength);
    const window = ids.slice();
    while (window.length < T) window.push(0);
    const [logits] = await model.logitsAt([window], [ids.length - 1], options.signal);
    const next = sampleToken(logits!, rng, options);
    if (stops.has(next)) return { tokens: out, reason: 'stop' };
    ids.push(next);
    out.push(next);
    options.onToken?.(next);
  }
  return { tokens: out, reason: 'length' };
}
