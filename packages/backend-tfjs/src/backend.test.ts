import {
  evaluateReference,
  getBackend,
  type HostTensor,
  jit,
  listBackends,
  MoreauError,
  ops,
  ReferenceBackend,
  ShapeError,
  type Tensor,
  tensor,
  trace,
  valueAndGrad,
} from '@moreau/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTfjsBackend, detectTfjsEngines, type TfjsBackend } from './index.js';
import { wasmBinaryDir } from './internal/engines.js';

const x23 = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
const w34 = tensor(
  Array.from({ length: 12 }, (_, i) => (i - 6) / 4),
  [3, 4],
);

describe('tfjs backend', () => {
  let wasm: TfjsBackend;
  let cpu: TfjsBackend;
  beforeAll(async () => {
    wasm = await createTfjsBackend({ engine: 'wasm' });
    cpu = await createTfjsBackend({ engine: 'cpu' });
  });
  afterAll(async () => {
    await wasm.dispose();
    await cpu.dispose();
  });

  it('registers itself as tfjs with core on import', async () => {
    expect(listBackends()).toContain('tfjs');
    const b = await getBackend('tfjs');
    expect(b.name).toBe('tfjs');
    expect(['wasm-simd', 'wasm', 'cpu', 'cpu-native', 'cuda']).toContain(b.device);
  });

  it('detectTfjsEngines reports every engine with a reason when unavailable', async () => {
    const st = await detectTfjsEngines();
    expect(st.map((s) => s.engine)).toEqual(['node-gpu', 'node', 'wasm', 'cpu']);
    const byName = Object.fromEntries(st.map((s) => [s.engine, s]));
    expect(byName['node-gpu']!.available).toBe(false);
    expect(byName['node-gpu']!.reason).toMatch(/tfjs-node-gpu is not installed/);
    expect(byName.node!.reason).toMatch(/tfjs-node is not installed/);
    expect(byName.wasm).toMatchObject({ available: true, device: 'wasm-simd', installed: true });
    expect(byName.cpu).toMatchObject({ available: true, device: 'cpu' });
    const noLoad = await detectTfjsEngines({ load: false });
    expect(noLoad.find((s) => s.engine === 'wasm')!.reason).toMatch(/not loaded/);
  });

  it('auto picks the best loadable engine; forcing a missing one explains why', async () => {
    const auto = await createTfjsBackend();
    expect(auto.engine).toBe('wasm');
    await expect(createTfjsBackend({ engine: 'node-gpu' })).rejects.toThrow(/tfjs-node-gpu is not installed/);
    await expect(createTfjsBackend({ device: 'cuda' })).rejects.toThrow(/CUDA/);
    await expect(createTfjsBackend({ engine: 'metal' as never })).rejects.toThrow(
      /valid: node-gpu, node, wasm, cpu, auto/,
    );
    expect((await createTfjsBackend({ device: 'cpu' })).engine).toBe('wasm');
    await auto.dispose();
  });

  it('wasm binaries are located with a trailing slash', () => {
    const dir = wasmBinaryDir()!;
    expect(dir.endsWith('/')).toBe(true);
    expect(dir).toMatch(/tfjs-backend-wasm[/\\]dist[/\\]$/);
  });

  it('repeated runs leak no tensors; memory() reports tf.memory()', async () => {
    for (const be of [wasm, cpu]) {
      const f = (x: Tensor, w: Tensor) => {
        const h = ops.tanh(ops.matmul(x, w));
        return [ops.sum(ops.mul(h, h)), ops.max(h, [1]), h];
      };
      const { graph } = trace(f, [x23, w34]);
      const exe = await be.compile(graph);
      const dev = await be.upload(w34);
      await exe.run([x23, dev]);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 30; i++) await exe.run([x23, i % 2 ? dev : w34]);
      expect(tf.memory().numTensors).toBe(before);
      const m = be.memory();
      expect(m.tensors).toBe(tf.memory().numTensors);
      expect(m.bytes).toBe(tf.memory().numBytes);
      expect(m.executables).toBeGreaterThanOrEqual(1);
      expect(m.deviceTensors).toBe(1);
      exe.dispose();
      dev.dispose();
      expect(tf.memory().numTensors).toBeLessThan(before);
    }
  });

  it('device tensors round-trip (float16, bool, int32) and feed graphs; outputs never alias them', async () => {
    for (const be of [wasm, cpu]) {
      const h = tensor([0.5, -1.25, 2048], [3], 'float16');
      const d = await be.upload(h);
      expect(d.dtype).toBe('float16');
      expect(Array.from((await d.download()).data)).toEqual(Array.from(h.data));
      const b = await be.upload(tensor([1, 0, 1], [3], 'bool'));
      const bd = await b.download();
      expect(bd.data).toBeInstanceOf(Uint8Array);
      expect(Array.from(bd.data)).toEqual([1, 0, 1]);
      // identity graph: the output is the input device tensor; disposing run outputs must not kill it
      const { graph } = trace((a: Tensor) => [a, ops.cast(a, 'float32')], [h]);
      const exe = await be.compile(graph);
      const [o1, o2] = await exe.run([d]);
      expect(o1!.dtype).toBe('float16');
      expect(Array.from(o2!.data)).toEqual([0.5, -1.25, 2048]);
      (o2!.data as Float32Array)[0] = 99; // host copies are independent
      expect(Array.from((await d.download()).data)).toEqual(Array.from(h.data));
      const again = await exe.run([d]);
      expect(Array.from(again[1]!.data)).toEqual([0.5, -1.25, 2048]);
      exe.dispose();
      d.dispose();
      b.dispose();
      await expect(d.download()).rejects.toThrow(/disposed/);
    }
  });

  it('upload copies host data (the cpu engine would alias it)', async () => {
    const host = tensor([1, 2, 3], [3]);
    const d = await cpu.upload(host);
    (host.data as Float32Array)[0] = 42;
    expect(Array.from((await d.download()).data)).toEqual([1, 2, 3]);
    d.dispose();
  });

  it('backends on different engines interleave: each run activates its own engine', async () => {
    const { graph } = trace((x: Tensor, w: Tensor) => ops.sum(ops.matmul(x, w), [1]), [x23, w34]);
    const want = evaluateReference(graph, [x23, w34])[0]!;
    const ew = await wasm.compile(graph);
    const ec = await cpu.compile(graph);
    const dw = await wasm.upload(w34);
    const dc = await cpu.upload(w34);
    const runs: Promise<unknown>[] = [];
    const seen: string[] = [];
    for (let i = 0; i < 10; i++) {
      runs.push(ew.run([x23, i % 3 === 0 ? dc : dw]).then((r) => seen.push(`w${i}`) && r));
      runs.push(ec.run([x23, i % 3 === 0 ? dw : dc]).then((r) => seen.push(`c${i}`) && r));
    }
    const outs = (await Promise.all(runs)) as { data: Float32Array }[][];
    for (const o of outs) {
      const got = Array.from(o[0]!.data);
      got.forEach((v, i) => {
        expect(v).toBeCloseTo(want.data[i]!, 4);
      });
    }
    // the last run left its own engine active; a cpu run switches back
    await ec.run([x23, w34]);
    expect(tf.getBackend()).toBe('cpu');
    await ew.run([x23, w34]);
    expect(tf.getBackend()).toBe('wasm');
    for (const t of [dw, dc]) t.dispose();
    ew.dispose();
    ec.dispose();
  });

  it('frozen inputs are baked in at compile time', async () => {
    const { graph } = trace((x: Tensor, w: Tensor) => ops.matmul(x, w), [x23, w34]);
    const exe = await wasm.compile(graph, { frozen: new Map([[1, w34]]) });
    const want = evaluateReference(graph, [x23, w34])[0]!;
    const got = (await exe.run([x23, w34]))[0]!;
    Array.from(got.data).forEach((v, i) => {
      expect(v).toBeCloseTo(want.data[i]!, 5);
    });
    exe.dispose();
    await expect(wasm.compile(graph, { frozen: new Map([[1, x23]]) })).rejects.toThrow(ShapeError);
  });

  it('bfloat16 host data feeds a float32 input', async () => {
    const { graph } = trace((x: Tensor) => ops.mul(x, 2), [x23]);
    const exe = await cpu.compile(graph);
    const bf = tensor([1, 2, 3, 4, 5, 6.5], [2, 3], 'bfloat16');
    const [y] = await exe.run([bf]);
    expect(Array.from(y!.data)).toEqual([2, 4, 6, 8, 10, 13]);
    exe.dispose();
  });

  it('input validation: count, shape, dtype, foreign and disposed device tensors', async () => {
    const { graph } = trace((x: Tensor) => ops.exp(x), [x23]);
    const exe = await wasm.compile(graph);
    await expect(exe.run([])).rejects.toThrow(/takes 1 inputs, got 0/);
    await expect(exe.run([tensor([1, 2], [2])])).rejects.toThrow(/expects float32\[2, 3\]/);
    await expect(exe.run([tensor([1, 2, 3, 4, 5, 6], [2, 3], 'int32')])).rejects.toThrow(ShapeError);
    const foreign = {
      kind: 'device',
      backend: 'ort',
      shape: [2, 3],
      dtype: 'float32',
      download: async () => x23,
      dispose() {},
    };
    await expect(exe.run([foreign as never])).rejects.toThrow(/backend 'ort'/);
    const d = await wasm.upload(x23);
    d.dispose();
    await expect(exe.run([d])).rejects.toThrow(/disposed device tensor/);
    exe.dispose();
    await expect(exe.run([x23])).rejects.toThrow(MoreauError);
  });

  it('dispose releases executables and device tensors', async () => {
    const be = await createTfjsBackend({ engine: 'cpu' });
    const base = tf.memory().numTensors;
    const { graph } = trace((x: Tensor) => ops.add(x, 1), [x23]);
    await be.compile(graph); // holds one constant
    await be.upload(x23);
    expect(tf.memory().numTensors).toBe(base + 2);
    expect(be.memory()).toMatchObject({ executables: 1, deviceTensors: 1 });
    await be.dispose();
    expect(tf.memory().numTensors).toBe(base);
    await expect(be.compile(graph)).rejects.toThrow(/after dispose/);
  });

  it('jit + valueAndGrad: loss and gradients match the reference backend', async () => {
    const loss = (p: { w: Tensor; b: Tensor }, x: Tensor, t: Tensor) => {
      const logits = ops.add(ops.matmul(x, p.w), p.b);
      return ops.crossEntropy(logits, t);
    };
    const params = { w: w34, b: tensor([0.1, -0.2, 0.3, 0], [4]) };
    const targets = tensor([3, 1], [2], 'int32');
    const ref = jit(valueAndGrad(loss), { backend: new ReferenceBackend() });
    const [rv, rg] = (await ref(params, x23, targets)) as [HostTensor, Record<string, HostTensor>];
    for (const be of [wasm, cpu]) {
      const f = jit(valueAndGrad(loss), { backend: be });
      const [value, grads] = (await f(params, x23, targets)) as [HostTensor, Record<string, HostTensor>];
      expect(value.shape).toEqual([]);
      expect(value.data[0]).toBeCloseTo(rv.data[0]!, 5);
      for (const k of ['w', 'b']) {
        expect(grads[k]!.shape).toEqual(rg[k]!.shape);
        Array.from(grads[k]!.data).forEach((v, i) => {
          expect(v).toBeCloseTo(rg[k]!.data[i]!, 5);
        });
      }
      await f(params, x23, targets); // cached executable reused
      expect(f.cacheSize).toBe(1);
      f.dispose();
    }
  });
});
