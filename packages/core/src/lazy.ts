/**
 * Lazy host tensors: shape and dtype are known up front, the data is produced when first read
 * (bytes read from a checkpoint file, slices cut from another lazy tensor). This is how a model
 * larger than memory is held: each tensor in its storage dtype, read when a layer needs it.
 *
 * The data is held through a WeakRef: while any caller keeps the array, every read returns that
 * same array (so `t.data[i]` in a loop reads the file once), and once nobody does, the garbage
 * collector may drop it and the next read loads it again.
 */
import type { DType, HostData, HostTensor } from './dtype.js';
import { bytesPerElement, sizeOf } from './dtype.js';
import { MoreauError } from './errors.js';

class LazyTensor implements HostTensor {
  private ref: WeakRef<HostData> | undefined;

  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    private readonly load: () => HostData,
  ) {}

  get data(): HostData {
    const held = this.ref?.deref();
    if (held) return held;
    const data = this.load();
    if (data.length !== sizeOf(this.shape)) {
      throw new MoreauError(
        `lazy tensor [${this.shape.join(', ')}] ${this.dtype}: the loader returned ${data.length} elements`,
      );
    }
    this.ref = new WeakRef(data);
    return data;
  }
}

/** A host tensor whose data is loaded on first read (and again after the collector drops it). */
export function lazyTensor(shape: readonly number[], dtype: DType, load: () => HostData): HostTensor {
  return new LazyTensor([...shape], dtype, load);
}

export function isLazyTensor(t: HostTensor): boolean {
  return t instanceof LazyTensor;
}

/** Bytes a tensor occupies in its dtype, without reading a lazy tensor's data. */
export function tensorBytes(t: Pick<HostTensor, 'shape' | 'dtype'>): number {
  return sizeOf(t.shape) * bytesPerElement(t.dtype);
}
