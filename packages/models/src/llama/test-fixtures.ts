/** Test-only helpers of the LLaMA graph tests. Not exported from the package. */
import { cutModel, type HostTensor } from '@moreau/core';
import type { Llama3RopeScaling, LlamaConfig } from './config.js';
import { LlamaModel } from './prunable.js';

/** A small GQA config (4 query heads / 2 kv heads, untied head) for tests; `over` replaces fields. */
export function smallConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    vocabSize: 50,
    hiddenSize: 32,
    intermediateSize: 24,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 64,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenId: 2,
    ...over,
  };
}

/** llama3 rope scaling (factor 8, low / high frequency factors 1 / 4) over smallConfig's 64 positions. */
export const smallLlama3Scaling: Llama3RopeScaling = {
  type: 'llama3',
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 64,
};

/** Core's cut applied to a LlamaModel: group id ('layer.<i>.attention' / '.mlp') -> kept units. */
export function cutLlamaModel(
  config: LlamaConfig,
  params: ReadonlyMap<string, HostTensor>,
  kept: Readonly<Record<string, readonly number[]>>,
): LlamaModel {
  return cutModel(new LlamaModel(config, params), new Map(Object.entries(kept))) as LlamaModel;
}
