/**
 * A model as a sequence of stages — embedding, decoder layers, head — for layer-streamed execution.
 * Each stage is a pure function of its own parameters (under local names) and the activation it
 * receives, so one compiled graph serves every stage with the same key (every layer of one shape),
 * and the executor can run the model a layer at a time: forward keeping only the activations between
 * stages, backward recomputing each stage from its saved input.
 */
import type { Tensor } from '../tensor.js';

export interface Stage {
  /** Stages with equal keys compute the same function (same shapes): they share compiled graphs. */
  readonly key: string;
  /** The stage's parameters: local name (what the stage function sees) -> the model's name. */
  readonly params: Readonly<Record<string, string>>;
}

export type StageParams = Readonly<Record<string, Tensor>>;

export interface StagedModel {
  readonly embed: Stage;
  readonly layers: readonly Stage[];
  readonly head: Stage;
  /** int32 ids [B, T] -> hidden states [B, T, H]. */
  embedFn(p: StageParams, ids: Tensor): Tensor;
  /** The function of the layers with this key: hidden [B, T, H] -> hidden [B, T, H]. */
  layerFn(key: string): (p: StageParams, h: Tensor) => Tensor;
  /** Hidden states [B, T, H] -> next-token logits [B, T, V] (final norm and output layer). */
  headFn(p: StageParams, h: Tensor): Tensor;
}

/** Every stage in forward order. */
export function allStages(m: StagedModel): Stage[] {
  return [m.embed, ...m.layers, m.head];
}
