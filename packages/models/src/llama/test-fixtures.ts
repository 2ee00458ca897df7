/** Test-only helpers of the LLaMA graph tests. Not exported from the package. */
import { cutModel, type HostTensor } from '@moreau/core';
import type { Llama3RopeScaling, LlamaConfig } from './config.js';
import { LlamaModel } from './prunable.js';

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
