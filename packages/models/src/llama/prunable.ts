/**
 * A LLaMA as core's PrunableModel: its parameters, its groups (attention KV groups and MLP channels
 * per layer, hidden channels, whole layers), its loss in IR, and how kept units cut it.
 */
import type {
  GroupCut,
  GroupKind,
  HostTensor,
  PrunableGroup,
  PrunableModel,
  StagedModel,
  Tensor,
} from '@moreau/core';
import type { LlamaConfig } from './config.js';
import { llamaCut } from './cut.js';
import { llamaGroups } from './groups.js';
import { llamaLoss, llamaStages } from './model.js';

export class LlamaModel implements PrunableModel {
  constructor(
    readonly config: LlamaConfig,
    readonly params: ReadonlyMap<string, HostTensor>,
  ) {}

  get numLayers(): number {
    return this.config.numHiddenLayers;
  }

  /** Groups of the given kinds (default all): attention and MLP per layer, hidden, whole layers. */
  groups(kinds?: readonly GroupKind[]): PrunableGroup[] {
    return llamaGroups(this.config, kinds ? { kinds } : {});
  }

  loss(params: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor {
    return llamaLoss(params, ids, this.config);
  }

  stages(): StagedModel {
    return llamaStages(this.config);
  }

  cut(cuts: readonly GroupCut[]): LlamaModel {
    const { config, params } = llamaCut(this.config, this.params, cuts);
    return new LlamaModel(config, params);
  }

  withParams(params: ReadonlyMap<string, HostTensor>): LlamaModel {
    return new LlamaModel(this.config, params);
  }
}
