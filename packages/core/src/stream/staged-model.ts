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
  /** Incremental decoding with a cache per layer (generation); absent: generation recomputes. */
  readonly decoding?: IncrementalDecoding;
}

/**
 * One cache tensor of a layer (e.g. its keys or its values): its shape for `batch` rows and room
 * for `capacity` positions, and the axis the positions run along. Caches are float32.
 */
export interface CacheSpec {
  readonly shape: (batch: number, capacity: number) => number[];
  readonly axis: number;
}

/**
 * What a model offers for incremental decoding. Each layer keeps fixed-capacity caches; a step
 * runs n new tokens at positions start .. start + n - 1 through a layer: they attend to the first
 * `start` cached positions and causally to each other. The step returns only the new entries; the
 * caller writes them into its caches at `start` (so graphs take the caches as plain inputs and
 * are compiled once per (n, capacity): capacities grow in buckets).
 */
export interface IncrementalDecoding {
  /** Positions the model can attend over (its context length). */
  readonly maxPositions: number;
  /** The caches of the layers with this stage key. */
  cache(key: string): readonly CacheSpec[];
  /**
   * The layers with this key on n new positions: hidden [B, n, H], that layer's caches (each
   * [..capacity..] per its spec), start int32 [1]. Returns hidden [B, n, H] and, per cache, its
   * n new entries (the cache's shape with n along the position axis).
   */
  layerStepFn(
    key: string,
  ): (p: StageParams, h: Tensor, cache: readonly Tensor[], start: Tensor) => DecodeStep;
}

export interface DecodeStep {
  readonly hidden: Tensor;
  readonly entries: readonly Tensor[];
}

/** Every stage in forward order. */
export function allStages(m: StagedModel): Stage[] {
  return [m.embed, ...m.layers, m.head];
}
