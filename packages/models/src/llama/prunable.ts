/**
 * A LLaMA as core's PrunableModel: its parameters, its attention and MLP groups, its loss in IR,
 * and how it rebuilds itself (new per-layer config) after a cut.
 */
import type { HostTensor, PrunableGroup, PrunableModel, StagedModel, Tensor } from '@moreau/core';
import type { LlamaConfig } from './config.js';
import { llamaConfigAfterCut, llamaGroups } from './groups.js';
import { llamaLoss } from './model.js';
import { llamaStages } from './stages.js';

export class LlamaModel implements PrunableModel {
  constructor(
    readonly config: LlamaConfig,
    readonly params: ReadonlyMap<string, HostTensor>,
  ) {}

  get numLayers(): number {
    return this.config.numHiddenLayers;
  }

  /** Attention (KV-group) and MLP-channel groups of every layer. */
  groups(): PrunableGroup[] {
    return llamaGroups(this.config, { kinds: ['attention', 'mlp'] });
  }

  loss(params: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor {
    return llamaLoss(params, ids, this.config);
  }

  stages(): StagedModel {
    return llamaStages(this.config);
  }

  withPruned(params: Map<string, HostTensor>, kept: ReadonlyMap<string, readonly number[]>): LlamaModel {
    return new LlamaModel(llamaConfigAfterCut(this.config, kept), params);
  }
}
