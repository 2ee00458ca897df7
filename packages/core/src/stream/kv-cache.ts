/**
 * The host side of incremental decoding: one layer's caches (e.g. keys and values) as float32
 * arrays of a fixed capacity, written where a step put new entries and grown by copying when the
 * sequence outgrows them. Graphs read them as ordinary inputs (zero-copy where the engine allows).
 */
import { type HostTensor, sizeOf, tensor } from '../dtype.js';
import { InputError } from '../errors.js';
import type { CacheSpec } from './staged-model.js';

/** Smallest capacity bucket; capacities double from here (one step graph per bucket). */
export const MIN_CAPACITY = 32;

/** The capacity bucket that holds `length` positions: 32, 64, 128, ..., capped at `max`. */
export function capacityFor(length: number, max: number): number {
  if (length > max) throw new InputError(`a sequence of ${length} positions exceeds the model's ${max}`);
  let c = MIN_CAPACITY;
  while (c < length) c *= 2;
  return Math.min(c, max);
}

export class LayerCache {
  private data: Float32Array[];
  private shapes: number[][];

  constructor(
    private readonly specs: readonly CacheSpec[],
    private readonly batch: number,
    private cap: number,
  ) {
    this.shapes = specs.map((s) => s.shape(batch, cap));
    this.data = this.shapes.map((s) => new Float32Array(sizeOf(s)));
  }

  get capacity(): number {
    return this.cap;
  }

  /** The caches as graph inputs. */
  tensors(): HostTensor[] {
    return this.data.map((d, i) => tensor(d, this.shapes[i]!, 'float32'));
  }

  /** Bytes the caches occupy. */
  get bytes(): number {
    return this.data.reduce((a, d) => a + d.byteLength, 0);
  }

  /** Writes each cache's new entries (n positions along its axis) at positions start .. start + n - 1. */
  write(entries: readonly HostTensor[], start: number): void {
    entries.forEach((e, i) => {
      const axis = this.specs[i]!.axis;
      const shape = this.shapes[i]!;
      const n = e.shape[axis]!;
      if (start + n > this.cap) throw new InputError(`cache write past its capacity ${this.cap}`);
      copyAlong(e.data as Float32Array, n, 0, this.data[i]!, this.cap, start, shape, axis, n);
    });
  }

  /** Grows to `capacity` positions, keeping the first `length`. */
  grow(capacity: number, length: number): void {
    if (capacity <= this.cap) return;
    const shapes = this.specs.map((s) => s.shape(this.batch, capacity));
    const data = shapes.map((s) => new Float32Array(sizeOf(s)));
    data.forEach((d, i) => {
      const axis = this.specs[i]!.axis;
      copyAlong(this.data[i]!, this.cap, 0, d, capacity, 0, shapes[i]!, axis, length);
    });
    this.data = data;
    this.shapes = shapes;
    this.cap = capacity;
  }
}

/**
 * Copies `count` positions along `axis` from src (that axis `srcLen` long, from `srcAt`) to dst
 * (that axis `dstLen` long, to `dstAt`); the other axes are those of `shape`.
 */
function copyAlong(
  src: Float32Array,
  srcLen: number,
  srcAt: number,
  dst: Float32Array,
  dstLen: number,
  dstAt: number,
  shape: readonly number[],
  axis: number,
  count: number,
): void {
  const outer = sizeOf(shape.slice(0, axis));
  const inner = sizeOf(shape.slice(axis + 1));
  for (let o = 0; o < outer; o++) {
    const from = (o * srcLen + srcAt) * inner;
    dst.set(src.subarray(from, from + count * inner), (o * dstLen + dstAt) * inner);
  }
}
