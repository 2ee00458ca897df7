/** The contract between a model package and the pruning engine. */
import { type HostTensor, sizeOf } from '../dtype.js';
import { InputError } from '../errors.js';
import type { LoraAdapters } from '../lora.js';
import type { StagedModel } from '../stream/staged-model.js';
import type { Tensor } from '../tensor.js';
import type { GroupCut, GroupKind, PrunableGroup } from './groups.js';

export interface PrunableModel {
  readonly numLayers: number;
  /** Every parameter by name; float tensors in any storage dtype. */
  readonly params: ReadonlyMap<string, HostTensor>;
  /**
   * The prunable groups of the current (possibly already pruned) model, of the given kinds or of
   * every kind it describes. The kinds a model returns are the scopes it can be pruned at.
   */
  groups(kinds?: readonly GroupKind[]): PrunableGroup[];
  /** Mean next-token cross-entropy of int32 ids [B, T], as an IR function of the parameters. */
  loss(params: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor;
  /**
   * The model after keeping `kept` units of each listed group (other groups stay whole). Slice
   * groups are cut with core's `cutGroups`; a 'layer' group with nothing kept removes its layer
   * (the model renumbers the layers after it).
   */
  cut(cuts: readonly GroupCut[]): PrunableModel;
  /** The same model with other values for its parameters (same names and shapes). */
  withParams(params: ReadonlyMap<string, HostTensor>): PrunableModel;
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
  const byId = new Map(model.groups().map((g) => [g.id, g]));
  const cuts: GroupCut[] = [];
  for (const [id, units] of kept) {
    const group = byId.get(id);
    if (!group) {
      throw new InputError(`cut: no group '${id}'; groups: ${[...byId.keys()].slice(0, 8).join(', ')}, ...`);
    }
    cuts.push({ group, kept: units });
  }
  return model.cut(cuts);
}

/** Total number of elements over all parameters. */
export function countParams(params: ReadonlyMap<string, HostTensor>): number {
  let n = 0;
  for (const t of params.values()) n += sizeOf(t.shape);
  return n;
}
