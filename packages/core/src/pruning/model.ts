/** The contract between a model package and the pruning engine. */
import { type HostTensor, sizeOf } from '../dtype.js';
import type { LoraAdapters } from '../lora.js';
import type { StagedModel } from '../stream/staged-model.js';
import type { Tensor } from '../tensor.js';
import { cutGroups, type PrunableGroup } from './groups.js';

export interface PrunableModel {
  readonly numLayers: number;
  /** Every parameter by name; float tensors in any storage dtype. */
  readonly params: ReadonlyMap<string, HostTensor>;
  /** The prunable groups of the current (possibly already pruned) model. */
  groups(): PrunableGroup[];
  /** Mean next-token cross-entropy of int32 ids [B, T], as an IR function of the parameters. */
  loss(params: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor;
  /** The model with these (already cut) parameters after keeping `kept` units of each group id. */
  withPruned(params: Map<string, HostTensor>, kept: ReadonlyMap<string, readonly number[]>): PrunableModel;
  /**
   * The model as stages (embedding, layers, head) for layer-streamed execution; models without it
   * always run as one graph. Must compute the same loss as `loss`.
   */
  stages?(): StagedModel;
  /**
   * The model with LoRA adapters (core's lora.ts): its params are this model's (the same tensors)
   * plus the adapters, and its loss and stages apply them (with dropout when a stage receives
   * `<local>.lora_dropout` masks as inputs). Models without it cannot be LoRA-tuned.
   */
  withLora?(adapters: LoraAdapters): PrunableModel;
}

/** Cuts a model to the kept units of each listed group id; other groups stay whole. */
export function cutModel(model: PrunableModel, kept: ReadonlyMap<string, readonly number[]>): PrunableModel {
  return model.withPruned(cutGroups(model.params, model.groups(), kept), kept);
}

/** Total number of elements over all parameters. */
export function countParams(params: ReadonlyMap<string, HostTensor>): number {
  let n = 0;
  for (const t of params.values()) n += sizeOf(t.shape);
  return n;
}
