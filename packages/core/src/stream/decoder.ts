/**
 * Incremental decoding on a model executor: tokens are appended to a sequence whose per-layer
 * caches (keys and values for a LLaMA) live on the host, so each new token costs one pass over
 * one position instead of a pass over the whole prefix.
 *
 * Whole mode runs embedding, every layer step and the head as one graph; streamed mode runs them
 * a stage at a time, fetching each stage's weights as it goes (memory bounded by a layer). Graphs
 * are compiled per (new tokens, cache capacity); capacities grow in buckets (32, 64, 128, ...).
 */
import type { TensorInput } from '../backend.js';
import { type HostTensor, tensor } from '../dtype.js';
import { InputError, throwIfAborted } from '../errors.js';
import * as ops from '../ops.js';
import type { Tensor } from '../tensor.js';
import type { Jitted } from '../transforms.js';
import { capacityFor, LayerCache } from './kv-cache.js';
import type { IncrementalDecoding, Stage, StagedModel, StageParams } from './staged-model.js';

/** What a decoder needs from its executor. */
export interface DecoderRuntime {
  readonly mode: 'whole' | 'streamed';
  readonly staged: StagedModel;
  readonly signal?: AbortSignal;
  /** The compiled function cached under `key` (made from `fn` on first use). */
  jitted<R>(key: string, fn: (...args: any[]) => unknown): Jitted<R>;
  /** Every weight by the model's names (whole mode). */
  allWeights(): Promise<Record<string, TensorInput>>;
  /** One stage's weights by its local names (streamed mode). */
  stageWeights(stage: Stage): Promise<Record<string, TensorInput>>;
}

const localParams = (stage: Stage, all: Readonly<Record<string, Tensor>>): Record<string, Tensor> =>
  Object.fromEntries(Object.entries(stage.params).map(([local, name]) => [local, all[name]!]));

/** The head on the last position only: hidden [B, n, H] -> logits [B, V]. */
function lastLogits(staged: StagedModel, p: StageParams, h: Tensor): Tensor {
  const [B, n] = h.shape as [number, number];
  const logits = staged.headFn(p, ops.slice(h, 1, n - 1, n));
  return ops.reshape(logits, [B, logits.shape[2]!]);
}

export class Decoder {
  private readonly decoding: IncrementalDecoding;
  private caches: LayerCache[] | undefined;
  private filled = 0;

  constructor(
    private readonly rt: DecoderRuntime,
    /** Rows decoded together (each its own sequence, all of the same length). */
    readonly batch = 1,
  ) {
    const d = rt.staged.decoding;
    if (!d) throw new InputError('this model offers no incremental decoding (its stages have no caches)');
    this.decoding = d;
  }

  /** Positions decoded so far. */
  get length(): number {
    return this.filled;
  }

  /** Bytes the caches occupy now. */
  get cacheBytes(): number {
    return (this.caches ?? []).reduce((a, c) => a + c.bytes, 0);
  }

  /** Forgets the sequence (the caches are kept for reuse). */
  reset(): void {
    this.filled = 0;
  }

  /**
   * Runs int32 ids [batch, n] at the next n positions; returns the next-token logits after the
   * last of them, [batch, vocab].
   */
  async append(ids: HostTensor): Promise<HostTensor> {
    if (ids.dtype !== 'int32' || ids.shape.length !== 2 || ids.shape[0] !== this.batch || ids.shape[1]! < 1) {
      throw new InputError(
        `decoder: ids must be int32 [${this.batch}, n >= 1], got ${ids.dtype} [${ids.shape.join(', ')}]`,
      );
    }
    throwIfAborted(this.rt.signal);
    const n = ids.shape[1]!;
    const start = this.filled;
    const { staged } = this.rt;
    const decoding = this.decoding;
    const capacity = capacityFor(start + n, this.decoding.maxPositions);
    if (!this.caches) {
      this.caches = staged.layers.map(
        (l) => new LayerCache(this.decoding.cache(l.key), this.batch, capacity),
      );
    } else if (capacity > this.caches[0]!.capacity) {
      for (const c of this.caches) c.grow(capacity, start);
    }
    const caches = this.caches;
    const at = tensor(Int32Array.of(start), [1], 'int32');
    let logits: HostTensor;
    if (this.rt.mode === 'whole') {
      const f = this.rt.jitted<{ logits: HostTensor; entries: HostTensor[][] }>(
        'decode-whole',
        (p: Record<string, Tensor>, x: Tensor, cache: Tensor[][], s: Tensor) => {
          let h = staged.embedFn(localParams(staged.embed, p), x);
          const entries: Tensor[][] = [];
          staged.layers.forEach((layer, l) => {
            const r = decoding.layerStepFn(layer.key)(localParams(layer, p), h, cache[l]!, s);
            h = r.hidden;
            entries.push([...r.entries]);
          });
          return { logits: lastLogits(staged, localParams(staged.head, p), h), entries };
        },
      );
      const r = await f(
        await this.rt.allWeights(),
        ids,
        caches.map((c) => c.tensors()),
        at,
      );
      r.entries.forEach((e, l) => {
        caches[l]!.write(e, start);
      });
      logits = r.logits;
    } else {
      const embed = this.rt.jitted<HostTensor>('embed', (p: StageParams, x: Tensor) => staged.embedFn(p, x));
      let h = await embed(await this.rt.stageWeights(staged.embed), ids);
      for (let l = 0; l < staged.layers.length; l++) {
        throwIfAborted(this.rt.signal);
        const layer = staged.layers[l]!;
        const step = this.rt.jitted<{ hidden: HostTensor; entries: HostTensor[] }>(
          `decode-layer:${layer.key}`,
          (p: StageParams, x: Tensor, cache: Tensor[], s: Tensor) => {
            const r = decoding.layerStepFn(layer.key)(p, x, cache, s);
            return { hidden: r.hidden, entries: [...r.entries] };
          },
        );
        const r = await step(await this.rt.stageWeights(layer), h, caches[l]!.tensors(), at);
        caches[l]!.write(r.entries, start);
        h = r.hidden;
      }
      const head = this.rt.jitted<HostTensor>('decode-head', (p: StageParams, x: Tensor) =>
        lastLogits(staged, p, x),
      );
      logits = await head(await this.rt.stageWeights(staged.head), h);
    }
    this.filled = start + n;
    return logits;
  }
}
