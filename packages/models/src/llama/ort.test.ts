/** The LLaMA graph on onnxruntime agrees with core's float64 reference backend. */
import {
  type Backend,
  type HostTensor,
  jit,
  ReferenceBackend,
  Rng,
  type Tensor,
  tensor,
  valueAndGrad,
} from '@moreau/core';
import { smallConfig } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LlamaParams, llamaLoss } from './model.js';
import { randomInit } from './presets.js';
import { cutLlamaModel, smallLlama3Scaling } from './test-fixtures.js';

let ort: Backend | undefined;
let reason = '';
try {
  const mod = await import('@moreau/backend-ort');
  ort = await mod.createOrtBackend({ intraOpNumThreads: 1 });
} catch (e) {
  reason = (e as Error).message;
  console.warn(`llama ORT test skipped: onnxruntime backend unavailable (${reason})`);
}

const config = smallConfig({ ropeScaling: smallLlama3Scaling });

describe.skipIf(!ort)('llama graph on onnxruntime', () => {
  let reference: Backend;
  beforeAll(() => {
    reference = new ReferenceBackend();
  });
  afterAll(async () => {
    await ort?.dispose();
  });

  it('loss and gradients equal the reference backend (loss rel 1e-5), also for a cut model', async () => {
    const base = randomInit(config, 3, { std: 0.3 });
    const cut = cutLlamaModel(config, base, { 'layer.1.attention': [0], 'layer.0.mlp': [1, 3, 5] });
    for (const [params, c] of [
      [base, config],
      [cut.params, cut.config],
    ] as const) {
      const rng = new Rng(8);
      const ids = tensor(
        Array.from({ length: 2 * 9 }, () => rng.int(c.vocabSize)),
        [2, 9],
        'int32',
      );
      const fn = valueAndGrad((p: LlamaParams, x: Tensor) => llamaLoss(p, x, c));
      const p = Object.fromEntries(params);
      const [v1, g1] = (await jit(fn, { backend: ort })(p, ids)) as [HostTensor, Record<string, HostTensor>];
      const [v2, g2] = (await jit(fn, { backend: reference })(p, ids)) as [
        HostTensor,
        Record<string, HostTensor>,
      ];
      const a = v1.data[0] as number;
      const b = v2.data[0] as number;
      expect(Math.abs(a - b) / b).toBeLessThan(1e-5);
      for (const name of Object.keys(g2)) {
        const x = g1[name]!.data as Float32Array;
        const y = g2[name]!.data as Float32Array;
        let scale = 0;
        for (const v of y) scale = Math.max(scale, Math.abs(v));
        for (let i = 0; i < y.length; i++)
          expect(Math.abs(x[i]! - y[i]!), name).toBeLessThan(1e-4 * scale + 1e-7);
      }
    }
  });
});
