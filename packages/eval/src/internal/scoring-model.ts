/**
 * The model contract the evaluators are written against, and its LLaMA adapter.
 *
 * Every evaluator in this package (perplexity, zero-shot, generation) only needs next-token
 * scores of token windows, so it takes a `ScoringModel`: any language model that can score
 * equal-length windows qualifies, whatever its architecture or engine.
 */
import {
  type Backend,
  type DeviceTensor,
  getBackend,
  type HostTensor,
  InputError,
  type Jitted,
  jit,
  ops,
  type Tensor,
  tensor,
  throwIfAborted,
  toFloat32Data,
} from '@moreau/core';
import { type LlamaConfig, llamaLogits, llamaShiftedLogits } from '@moreau/models';

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
  /** Frees compiled executables and uploaded weights. */
  dispose?(): void;
}

export interface LlamaScoringOptions {
  /**
   * Rows per executable call (default 8). A smaller batch is padded with copies of its first row,
   * so each window length compiles exactly one graph.
   */
  readonly batchSize?: number;
  /** Context length; default config.maxPositionEmbeddings. */
  readonly maxLength?: number;
  /** Keep the weights on the backend between calls (default true). */
  readonly uploadWeights?: boolean;
}

/** What scoringModelFromLlama returns: a ScoringModel with every optional method. */
export type LlamaScoringModel = ScoringModel &
  Required<Pick<ScoringModel, 'tokenScores' | 'logitsAt' | 'dispose' | 'batchSize'>>;

type Params = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

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

/**
 * A ScoringModel running the LLaMA IR graph (`llamaLogits` of @moreau/models) through core's jit
 * on a backend. One graph is compiled per window length (the batch dimension is fixed by padding),
 * and the float32 weights are uploaded once.
 */
export function scoringModelFromLlama(
  params: Params,
  config: LlamaConfig,
  backend?: Backend | string,
  options: LlamaScoringOptions = {},
): LlamaScoringModel {
  const B = options.batchSize ?? 8;
  if (!Number.isInteger(B) || B < 1) throw new InputError(`batchSize must be a positive integer, got ${B}`);
  const maxLength = options.maxLength ?? config.maxPositionEmbeddings;
  const V = config.vocabSize;
  const entries = params instanceof Map ? [...params] : Object.entries(params as Record<string, HostTensor>);
  const host: Record<string, HostTensor> = {};
  for (const [k, t] of entries) {
    host[k] = t.dtype === 'float32' ? t : tensor(toFloat32Data(t), t.shape, 'float32');
  }

  let backendP: Promise<Backend> | undefined;
  const resolve = () => {
    backendP ??= typeof backend === 'object' ? Promise.resolve(backend) : getBackend(backend);
    return backendP;
  };
  let weightsP: Promise<Record<string, HostTensor | DeviceTensor>> | undefined;
  const uploaded: DeviceTensor[] = [];
  const weights = () => {
    weightsP ??= (async () => {
      if (options.uploadWeights === false) return host;
      const b = await resolve();
      const out: Record<string, HostTensor | DeviceTensor> = {};
      for (const [k, t] of Object.entries(host)) {
        const d = await b.upload(t);
        uploaded.push(d);
        out[k] = d;
      }
      return out;
    })();
    return weightsP;
  };

  const scoreFn = (p: Record<string, Tensor>, ids: Tensor) => {
    const T = ids.shape[1]!;
    const logits = llamaShiftedLogits(p, ids, config);
    const picked = ops.pickLast(logits, ops.slice(ids, 1, 1, T));
    const nll = ops.sub(ops.logSumExp(logits, -1), picked);
    const best = ops.max(logits, -1);
    // 1 when the target's logit is below the maximum (not greedy).
    const miss = ops.cast(ops.less(picked, best), 'float32');
    return { nll, miss };
  };
  const logitsFn = (p: Record<string, Tensor>, ids: Tensor, pos: Tensor) => {
    const T = ids.shape[1]!;
    const logits = llamaLogits(p, ids, config); // [B, T, V]
    const sel = ops.reshape(ops.oneHotMask(pos, T), [ids.shape[0]!, T, 1]);
    return ops.sum(ops.where(sel, logits, 0), 1); // [B, V]
  };
  const score: Jitted<{ nll: HostTensor; miss: HostTensor }> = jit(scoreFn, { backend });
  const atFn: Jitted<HostTensor> = jit(logitsFn, { backend });

  const padRows = (batch: readonly (readonly number[])[], T: number) => {
    const ids = new Int32Array(B * T);
    for (let r = 0; r < B; r++) ids.set(batch[r] ?? batch[0]!, r * T);
    return tensor(ids, [B, T], 'int32');
  };

  async function tokenScores(
    batch: readonly (readonly number[])[],
    signal?: AbortSignal,
  ): Promise<TokenScores[]> {
    const T = checkWindows(batch, V, 2, maxLength);
    const w = await weights();
    const out: TokenScores[] = [];
    for (let start = 0; start < batch.length; start += B) {
      throwIfAborted(signal);
      const chunk = batch.slice(start, start + B);
      const r = await score(w, padRows(chunk, T));
      const nll = r.nll.data as Float32Array;
      const miss = r.miss.data as Float32Array;
      for (let i = 0; i < chunk.length; i++) {
        out.push({
          nll: nll.slice(i * (T - 1), (i + 1) * (T - 1)),
          greedy: Uint8Array.from(miss.subarray(i * (T - 1), (i + 1) * (T - 1)), (m) => (m > 0 ? 0 : 1)),
        });
      }
    }
    return out;
  }

  return {
    vocabSize: V,
    maxLength,
    bosId: config.bosTokenId,
    eosId: config.eosTokenId,
    batchSize: B,
    tokenScores,
    async tokenNll(batch, signal) {
      return (await tokenScores(batch, signal)).map((s) => s.nll);
    },
    async logitsAt(batch, positions, signal) {
      const T = checkWindows(batch, V, 1, maxLength);
      if (positions.length !== batch.length) throw new InputError('logitsAt: one position per row');
      for (const p of positions) {
        if (!Number.isInteger(p) || p < 0 || p >= T)
          throw new InputError(`logitsAt: position ${p} outside [0, ${T})`);
      }
      const w = await weights();
      const out: Float32Array[] = [];
      for (let start = 0; start < batch.length; start += B) {
        throwIfAborted(signal);
        const chunk = batch.slice(start, start + B);
        const pos = new Int32Array(B);
        for (let r = 0; r < B; r++) pos[r] = positions[start + r] ?? positions[start]!;
        const r = await atFn(w, padRows(chunk, T), tensor(pos, [B], 'int32'));
        const data = r.data as Float32Array;
        for (let i = 0; i < chunk.length; i++) out.push(data.slice(i * V, (i + 1) * V));
      }
      return out;
    },
    dispose() {
      score.dispose();
      atFn.dispose();
      for (const d of uploaded.splice(0)) d.dispose();
      weightsP = undefined;
    },
  };
}
