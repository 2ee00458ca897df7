import { describe, expect, it } from 'vitest';
import '../primitives.js';
import { tensor } from '../dtype.js';
import * as ops from '../ops.js';
import { trace } from '../transforms.js';
import { peakBytes } from './estimate.js';
import { capacityFor, LayerCache } from './kv-cache.js';

describe('memory estimates', () => {
  it('peakBytes frees each value after its last use and ignores inputs', () => {
    // a [100] -> b = a*2 (400 B) -> c = b+1 (400 B; b freed) -> d = sum(c) (4 B): peak b + c.
    const g = trace((a) => ops.sum(ops.add(ops.mul(a, 2), 1)), [{ shape: [100], dtype: 'float32' }]).graph;
    const constants = [...g.constants.values()].reduce((s, t) => s + t.data.length * 4, 0);
    expect(peakBytes(g)).toBe(constants + 800);
  });
});

describe('key / value caches', () => {
  it('capacities double from 32, capped at the context', () => {
    expect([1, 32, 33, 64, 65, 200].map((n) => capacityFor(n, 256))).toEqual([32, 32, 64, 64, 128, 256]);
    expect(capacityFor(100, 100)).toBe(100);
    expect(() => capacityFor(101, 100)).toThrow(/101 positions exceeds the model's 100/);
  });

  it('writes new entries along the position axis and keeps them when growing', () => {
    const spec = { shape: (b: number, c: number) => [b, 2, c, 3], axis: 2 };
    const cache = new LayerCache([spec], 1, 4);
    // Two positions of [1, 2, n, 3]: values h*100 + t*10 + i.
    const entry = (n: number, t0: number) =>
      tensor(
        Float32Array.from({ length: 2 * n * 3 }, (_, k) => {
          const h = Math.floor(k / (n * 3));
          const t = Math.floor((k % (n * 3)) / 3);
          return h * 100 + (t0 + t) * 10 + (k % 3);
        }),
        [1, 2, n, 3],
      );
    cache.write([entry(2, 0)], 0);
    cache.write([entry(1, 2)], 2);
    cache.grow(8, 3);
    expect(cache.capacity).toBe(8);
    const [t] = cache.tensors();
    expect(t!.shape).toEqual([1, 2, 8, 3]);
    const at = (h: number, p: number) => Array.from(t!.data.slice((h * 8 + p) * 3, (h * 8 + p + 1) * 3));
    expect(at(0, 2)).toEqual([20, 21, 22]);
    expect(at(1, 1)).toEqual([110, 111, 112]);
    expect(at(1, 3)).toEqual([0, 0, 0]);
    expect(() => cache.write([entry(2, 7)], 7)).toThrow(/past its capacity/);
  });
});
