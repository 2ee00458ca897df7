/**
 * MACs and forward latency of dense and pruned models (prune --json, compare and the report), as
 * LLM-Pruner's and MoreauPruner's test_speedup.py reports them.
 */
import { forwardLatency, type LatencyResult } from '@moreau/eval';
import { type LlamaConfig, type LlamaModel, llamaMacs } from '@moreau/models';
import type { LatencyFlags } from '../program.js';
import type { BackendContext } from './context.js';

/** What a MACs count includes (written next to every count). */
export const MACS_COUNTED =
  "test_speedup.py's ptflops count: q/k/v/o projections, rotary, QK^T + softmax + AV over the full T x T square, gate/up/down projections, SiLU, RMSNorms (2 per element), the LM head; not the embedding lookup, residual adds or the gate*up product";

/** The sequence length MACs are counted at: --latency's T, else 64 (test_speedup's 1 x 64 input). */
export function macsSeqLen(flags: LatencyFlags): number {
  return flags.latency?.[1] ?? 64;
}

export interface MacsRecord {
  /** MACs of one forward pass of seq_len tokens. */
  readonly total: number;
  readonly per_token: number;
}

export function macsOf(config: LlamaConfig, seqLen: number): MacsRecord {
  const m = llamaMacs(config, seqLen);
  return { total: m.total, per_token: m.perToken };
}

export interface LatencyRecord {
  /** Median seconds per batch x seq_len forward pass. */
  readonly seconds: number;
  readonly min_seconds: number;
  readonly tokens_per_second: number;
}

const record = (r: LatencyResult): LatencyRecord => ({
  seconds: r.seconds,
  min_seconds: r.minSeconds,
  tokens_per_second: r.tokensPerSecond,
});

/** Times the model's forward pass when --latency asks for it (else undefined). */
export async function latencyOf(
  { flags, backend, signal, progress }: BackendContext<LatencyFlags>,
  model: LlamaModel,
  what: string,
): Promise<LatencyRecord | undefined> {
  if (!flags.latency) return undefined;
  const [batch, seqLen] = flags.latency;
  progress.note(`timing the ${what} model: ${batch} x ${seqLen} tokens`);
  return record(await forwardLatency(model.params, model.config, backend, { batch, seqLen, signal }));
}

/** The settings the latency numbers were measured at. */
export function latencySettings(flags: LatencyFlags) {
  return flags.latency ? { batch: flags.latency[0], seq_len: flags.latency[1], repeats: 5, warmup: 1 } : null;
}
