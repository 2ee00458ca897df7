/**
 * Shape presets of well-known LLaMA-family models (no weights), parameter counting and seeded random
 * initialisation for tests, benchmarks and the synthetic model.
 */
import { type HostTensor, InputError, Rng } from '@moreau/core';
import { expectedTensorShapes, type LlamaConfig } from './config.js';

const base = {
  ropeTheta: 10000,
  tieWordEmbeddings: false,
  bosTokenId: 1,
  eosTokenId: 2,
} as const;

const llama7bShape = {
  vocabSize: 32000,
  hiddenSize: 4096,
  intermediateSize: 11008,
  numHiddenLayers: 32,
  numAttentionHeads: 32,
  numKeyValueHeads: 32,
  headDim: 128,
} as const;

export const LLAMA_PRESETS = {
  /** LLaMA-1 7B (huggyllama/llama-7b, decapoda): the MoreauPruner / LLM-Pruner reference model. */
  'llama-7b': { ...base, ...llama7bShape, rmsNormEps: 1e-6, maxPositionEmbeddings: 2048 },
  /** LLaMA-1 13B. */
  'llama-13b': {
    ...base,
    vocabSize: 32000,
    hiddenSize: 5120,
    intermediateSize: 13824,
    numHiddenLayers: 40,
    numAttentionHeads: 40,
    numKeyValueHeads: 40,
    headDim: 128,
    rmsNormEps: 1e-6,
    maxPositionEmbeddings: 2048,
  },
  /** Llama-2 7B (meta-llama/Llama-2-7b-hf). */
  'llama-2-7b': { ...base, ...llama7bShape, rmsNormEps: 1e-5, maxPositionEmbeddings: 4096 },
  /**
   * Llama-3 8B with the Llama-3.1 long-context RoPE scaling (meta-llama/Llama-3.1-8B): GQA with 8 KV
   * heads, 128256 vocab, theta 500000, rope_scaling llama3 (factor 8, low 1, high 4, original 8192).
   */
  'llama-3-8b': {
    ...base,
    vocabSize: 128256,
    hiddenSize: 4096,
    intermediateSize: 14336,
    numHiddenLayers: 32,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 128,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    ropeScaling: {
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
    maxPositionEmbeddings: 131072,
    bosTokenId: 128000,
    eosTokenId: 128001,
  },
  /** Vicuna-7B (lmsys/vicuna-7b-v1.3, LLaMA-1 based; same shapes as llama-7b). */
  'vicuna-7b': { ...base, ...llama7bShape, rmsNormEps: 1e-6, maxPositionEmbeddings: 2048 },
  /** TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T). */
  'tinyllama-1.1b': {
    ...base,
    vocabSize: 32000,
    hiddenSize: 2048,
    intermediateSize: 5632,
    numHiddenLayers: 22,
    numAttentionHeads: 32,
    numKeyValueHeads: 4,
    headDim: 64,
    rmsNormEps: 1e-5,
    maxPositionEmbeddings: 2048,
  },
  /** A ~58M-parameter LLaMA shape (untied head) for benchmarks and the synthetic model. */
  'synthetic-60m': {
    ...base,
    vocabSize: 32000,
    hiddenSize: 512,
    intermediateSize: 1376,
    numHiddenLayers: 8,
    numAttentionHeads: 8,
    numKeyValueHeads: 8,
    headDim: 64,
    rmsNormEps: 1e-6,
    maxPositionEmbeddings: 2048,
  },
} as const satisfies Record<string, LlamaConfig>;

export type LlamaPresetName = keyof typeof LLAMA_PRESETS;

export const LLAMA_PRESET_NAMES = Object.keys(LLAMA_PRESETS) as LlamaPresetName[];

/** A fresh (mutable, deep-copied) config of a preset; the error lists the valid names. */
export function llamaPreset(name: LlamaPresetName | (string & {})): LlamaConfig {
  const p = (LLAMA_PRESETS as Record<string, LlamaConfig>)[name];
  if (!p) {
    throw new InputError(`unknown LLaMA preset '${name}'; valid presets: ${LLAMA_PRESET_NAMES.join(', ')}`);
  }
  return structuredClone(p) as LlamaConfig;
}

/** Number of parameters of a config (per-layer sizes honoured; a tied head is counted once). */
export function paramCount(config: LlamaConfig): number {
  let n = 0;
  for (const shape of expectedTensorShapes(config).values()) n += shape.reduce((p, d) => p * d, 1);
  return n;
}

export interface RandomInitOptions {
  /** Standard deviation of the matrices (default 0.02, HF's initializer_range). */
  readonly std?: number;
}

/**
 * Seeded random weights: every matrix N(0, std^2) drawn from core's Rng in the canonical tensor
 * order, every RMSNorm weight 1. float32 host tensors under HF names (lm_head absent when tied).
 */
export function randomInit(
  config: LlamaConfig,
  seed: number,
  options: RandomInitOptions = {},
): Map<string, HostTensor> {
  const std = options.std ?? 0.02;
  const rng = new Rng(seed);
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of expectedTensorShapes(config)) {
    const n = shape.reduce((p, d) => p * d, 1);
    const data = shape.length === 1 ? new Float32Array(n).fill(1) : rng.normalArray(n, 0, std);
    out.set(name, { dtype: 'float32', shape, data });
  }
  return out;
}
