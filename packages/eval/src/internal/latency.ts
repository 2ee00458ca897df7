/**
 * Forward latency of a LLaMA model: the wall time of one logits pass over a batch x length block
 * of token ids, on a backend, as the papers' speed tables measure a pruned model against its dense
 * original. The weights are uploaded first and the graph compiled by a warm-up call; each timed
 * call is one executable run (ids in, [B, T, vocab] float32 logits back on the host).
 */
import {
  type Backend,
  type DeviceTensor,
  getBackend,
  type HostTensor,
  InputError,
  jit,
  type Tensor,
  tensor,
  throwIfAborted,
  toFloat32Data,
} from '@moreau/core';
import { type LlamaConfig, type LlamaParams, llamaLogits } from '@moreau/models';

export interface LatencyOptions {
  /** Rows per call (default 1). */
  readonly batch?: number;
  /** Tokens per row (default 64, test_speedup.py's input length). */
  readonly seqLen?: number;
  /** Timed calls after the warm-up (default 5). */
  readonly repeats?: number;
  /** Untimed calls first (default 1: compiles the graph). */
  readonly warmup?: number;
  readonly signal?: AbortSignal;
}

export interface LatencyResult {
  readonly batch: number;
  readonly seqLen: number;
  readonly repeats: number;
  /** Median seconds per forward pass. */
  readonly seconds: number;
  readonly meanSeconds: number;
  readonly minSeconds: number;
  /** Tokens per second at the median: batch * seqLen / seconds. */
  readonly tokensPerSecond: number;
}

type Params = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

const positive = (name: string, v: number, min: number) => {
  if (!Number.isInteger(v) || v < min)
    throw new InputError(`${name} must be an integer >= ${min}, got ${v}`, undefined, name);
};

/** Times `repeats` forward passes of a batch x seqLen block of ids (all 1, as test_speedup.py feeds). */
export async function forwardLatency(
  params: Params,
  config: LlamaConfig,
  backend?: Backend | string,
  options: LatencyOptions = {},
): Promise<LatencyResult> {
  const B = options.batch ?? 1;
  const T = options.seqLen ?? 64;
  const repeats = options.repeats ?? 5;
  const warmup = options.warmup ?? 1;
  positive('batch', B, 1);
  positive('seqLen', T, 1);
  positive('repeats', repeats, 1);
  positive('warmup', warmup, 0);
  if (T > config.maxPositionEmbeddings)
    throw new InputError(
      `seqLen ${T} is longer than the model's ${config.maxPositionEmbeddings} positions`,
      undefined,
      'seqLen',
    );
  const b = typeof backend === 'object' ? backend : await getBackend(backend);
  const entries = params instanceof Map ? [...params] : Object.entries(params as Record<string, HostTensor>);
  const uploaded: DeviceTensor[] = [];
  const fn = jit((p: LlamaParams, ids: Tensor) => llamaLogits(p, ids, config), { backend: b });
  try {
    const weights: Record<string, DeviceTensor> = {};
    for (const [k, t] of entries) {
      const d = await b.upload(t.dtype === 'float32' ? t : tensor(toFloat32Data(t), t.shape, 'float32'));
      uploaded.push(d);
      weights[k] = d;
    }
    const ids = tensor(new Int32Array(B * T).fill(1), [B, T], 'int32');
    for (let i = 0; i < warmup; i++) {
      throwIfAborted(options.signal);
      await fn(weights, ids);
    }
    const times: number[] = [];
    for (let i = 0; i < repeats; i++) {
      throwIfAborted(options.signal);
      const t0 = performance.now();
      await fn(weights, ids);
      times.push((performance.now() - t0) / 1000);
    }
    const sorted = [...times].sort((x, y) => x - y);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    return {
      batch: B,
      seqLen: T,
      repeats,
      seconds: median,
      meanSeconds: times.reduce((s, x) => s + x, 0) / times.length,
      minSeconds: sorted[0]!,
      tokensPerSecond: (B * T) / median,
    };
  } finally {
    fn.dispose();
    for (const d of uploaded) d.dispose();
  }
}
