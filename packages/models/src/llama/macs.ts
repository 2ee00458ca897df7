/**
 * Multiply-accumulates of a LLaMA forward pass, counted analytically from the per-layer dimensions
 * (pruned models included) the way LLM-Pruner's and MoreauPruner's `test_speedup.py` counts them
 * with ptflops (input 1 x 64 by default; LLaMA-7B gives 424.02 G, the papers' figure):
 *
 * - attention (test_speedup's LlamaAttention hook): the q, k, v, o projections (T·h·out per
 *   projection), rotary embedding 2·(T·H·d)·2, scores and values H·(T²·d + T² + T²·d) (QKᵀ,
 *   softmax, AV over the full T x T square, no causal halving);
 * - MLP: gate, up and down projections (T·h·i each) and SiLU (T·i);
 * - RMSNorm: 2·T·h per norm (two per layer and the final one);
 * - the LM head: T·h·V.
 *
 * Not counted (as in ptflops): the embedding lookup, residual adds and the gate·up product. With
 * grouped-query attention the k and v projections count the KV heads' width (test_speedup's hook
 * assumes multi-head attention, which is the same thing for LLaMA-1/2 7B).
 */
import { type LlamaConfig, layerDims } from './config.js';

export interface LlamaMacs {
  /** Sequence length the count is for (attention grows with it). */
  readonly seqLen: number;
  /** MACs of one forward pass over seqLen tokens. */
  readonly total: number;
  /** total / seqLen. */
  readonly perToken: number;
  /** The total split by what computes it. */
  readonly breakdown: {
    readonly attentionProjections: number;
    readonly attentionScores: number;
    readonly rotary: number;
    readonly mlpProjections: number;
    readonly mlpActivation: number;
    readonly norms: number;
    readonly lmHead: number;
  };
}

/** MACs of one forward pass of `seqLen` tokens (default 64, test_speedup's input). */
export function llamaMacs(config: LlamaConfig, seqLen = 64): LlamaMacs {
  if (!Number.isInteger(seqLen) || seqLen < 1)
    throw new RangeError(`llamaMacs: seqLen must be a positive integer, got ${seqLen}`);
  const T = seqLen;
  const h = config.hiddenSize;
  const d = config.headDim;
  const b = {
    attentionProjections: 0,
    attentionScores: 0,
    rotary: 0,
    mlpProjections: 0,
    mlpActivation: 0,
    norms: 2 * T * h, // the final norm
    lmHead: T * h * config.vocabSize,
  };
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const { heads, kvHeads, intermediate } = layerDims(config, l);
    b.attentionProjections += T * h * (2 * heads * d + 2 * kvHeads * d);
    b.attentionScores += heads * (2 * T * T * d + T * T);
    b.rotary += 2 * (T * heads * d) * 2;
    b.mlpProjections += 3 * T * h * intermediate;
    b.mlpActivation += T * intermediate;
    b.norms += 2 * (2 * T * h);
  }
  const total = Object.values(b).reduce((s, v) => s + v, 0);
  return { seqLen: T, total, perToken: total / T, breakdown: b };
}
