/**
 * Emulated half-precision compute (computeDtype) on Karpathy's stories260K:
 *
 * - the held-out NLL in bfloat16 / float16 differs from float32 by a small, non-zero amount, and is
 *   the same number on onnxruntime and on tfjs (wasm);
 * - a taylor plan computed in bfloat16 records its compute dtype, and is byte-identical on
 *   onnxruntime and on tfjs (wasm);
 * - a float16 overflow (residual stream scaled past float16's range) stops prune() with an error
 *   naming the dtype, the loss and the parameter, instead of a NaN plan;
 * - the cost of emulation: one whole-model gradient pass in each dtype, timed (printed).
 *
 * Reads ../shared (or MOREAU_SHARED) and skips with a message when the files are absent.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createOrtBackend } from '@moreau/backend-ort';
import { createTfjsBackend } from '@moreau/backend-tfjs';
import {
  type Backend,
  type ComputeDtype,
  type HostTensor,
  InputError,
  jit,
  ModelExecutor,
  planToJSON,
  prune,
  roundHost,
  sampleCalibration,
  tensor,
} from '@moreau/core';
import {
  type Checkpoint,
  Llama2cTokenizer,
  LlamaModel,
  llamaLoss,
  llamaTokenNll,
  loadLlama2c,
} from '@moreau/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import './index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const shared = process.env.MOREAU_SHARED ?? path.resolve(repoRoot, '../shared');
const files = {
  model: path.join(shared, 'models/stories260K/stories260K.bin'),
  tokenizer: path.join(shared, 'models/stories260K/tok512.bin'),
  text: path.join(shared, 'data/tinystories/tinystories_validation_head.txt'),
};
const missing = Object.values(files).filter((f) => !existsSync(f));
if (missing.length > 0) {
  console.warn(
    `stories260K compute-dtype e2e tests skipped: missing ${missing.join(', ')} (set MOREAU_SHARED to the shared folder)`,
  );
}

const SLOW = 300_000;
const HALF = ['bfloat16', 'float16'] as const;

describe.skipIf(missing.length > 0)('emulated half precision on stories260K', () => {
  let ckpt: Checkpoint;
  let model: LlamaModel;
  let ids: number[];
  let heldout: HostTensor;
  let ort: Backend;
  let wasm: Backend;
  const nll = new Map<string, number>();

  const nllOf = async (backend: Backend, computeDtype: ComputeDtype, m: LlamaModel = model) => {
    const f = jit((p, x) => llamaLoss(p, x, m.config), { backend, computeDtype });
    try {
      const out = (await f(Object.fromEntries(m.params), heldout)) as HostTensor;
      return (out.data as Float32Array)[0]!;
    } finally {
      f.dispose();
    }
  };

  /** Mean of the per-token NLLs (each computed, and rounded, in the dtype), averaged on the host in float64. */
  const meanTokenNll = async (backend: Backend, computeDtype: ComputeDtype) => {
    const f = jit((p, x) => llamaTokenNll(p, x, model.config), { backend, computeDtype });
    try {
      const out = (await f(Object.fromEntries(model.params), heldout)) as HostTensor;
      const d = out.data as Float32Array;
      return d.reduce((s, v) => s + v, 0) / d.length;
    } finally {
      f.dispose();
    }
  };

  beforeAll(async () => {
    ckpt = await loadLlama2c(files.model);
    const tok = await Llama2cTokenizer.load(files.tokenizer, ckpt.config.vocabSize);
    ids = tok.encode(readFileSync(files.text, 'utf8'), { bos: true });
    model = new LlamaModel(ckpt.config, ckpt.tensors);
    ort = await createOrtBackend({ intraOpNumThreads: 2 });
    wasm = await createTfjsBackend({ engine: 'wasm' });
    const windows = sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 2 }).iterations[0]!;
    heldout = tensor(Int32Array.from(windows.flat()), [4, 128], 'int32');
  }, SLOW);
  afterAll(async () => {
    await ort?.dispose();
    await wasm?.dispose();
  });

  it(
    'held-out NLL: bfloat16 and float16 differ from float32 by a small non-zero amount, equal on ort and tfjs',
    async () => {
      for (const dtype of ['float32', ...HALF] as const) nll.set(dtype, await nllOf(ort, dtype));
      const f32 = nll.get('float32')!;
      const host32 = await meanTokenNll(ort, 'float32');
      for (const dtype of HALF) {
        const v = nll.get(dtype)!;
        const host = await meanTokenNll(ort, dtype);
        console.log(
          `stories260K held-out NLL (4 x 128 tokens, ort): ${dtype} ${v} vs float32 ${f32} ` +
            `(difference ${(v - f32).toExponential(3)}, ${((100 * (v - f32)) / f32).toFixed(3)} %); ` +
            `per-token NLLs averaged on the host: ${dtype} ${host.toFixed(6)} vs float32 ${host32.toFixed(6)} ` +
            `(difference ${(host - host32).toExponential(3)})`,
        );
        expect(host).not.toBe(host32);
        expect(Math.abs(host - host32) / host32).toBeLessThan(0.02);
        expect(roundHost(v, dtype)).toBe(v);
        expect(v).not.toBe(f32);
        expect(Math.abs(v - f32) / f32).toBeLessThan(0.02);
        const onWasm = await nllOf(wasm, dtype);
        console.log(`  ${dtype} on tfjs (wasm): ${onWasm}`);
        expect(onWasm).toBe(v);
      }
    },
    SLOW,
  );

  it(
    'taylor in bfloat16: the plan records the compute dtype, byte-identical on ort and tfjs (wasm)',
    async () => {
      const calibration = sampleCalibration(ids, { samples: 4, seqLen: 64, seed: 1 });
      const opts = {
        criterion: 'taylor',
        ratio: 0.2,
        calibration,
        seed: 1,
        computeDtype: 'bfloat16',
      } as const;
      const a = await prune(model, { ...opts, backend: ort });
      const b = await prune(model, { ...opts, backend: wasm });
      const f32 = await prune(model, { ...opts, computeDtype: 'float32', backend: ort });
      expect(a.compute).toEqual({ computeDtype: 'bfloat16', precision: 'emulated' });
      expect(a.plan.compute).toEqual(a.compute);
      expect(f32.plan.compute).toBeUndefined();
      expect(planToJSON(a.plan)).toBe(planToJSON(b.plan));
      const kept = (r: typeof a) => r.plan.groups.map((d) => d.kept);
      const differs = JSON.stringify(kept(a)) !== JSON.stringify(kept(f32));
      console.log(
        `taylor 4x64 at 0.2: the bfloat16 plan ${differs ? 'differs from' : 'equals'} the float32 plan`,
      );
    },
    SLOW,
  );

  it(
    'a float16 overflow stops prune() with an error naming the dtype, the loss and the parameter',
    async () => {
      // The final RMSNorm's weight 1e5x larger: its output (the LM head's input) passes 65504, which
      // float32 represents and float16 does not (the logits overflow to inf, their log-sum-exp to NaN).
      const params = new Map(ckpt.tensors);
      const norm = params.get('model.norm.weight')!;
      params.set('model.norm.weight', {
        ...norm,
        data: Float32Array.from(norm.data as Float32Array, (v) => v * 1e5),
      });
      const big = new LlamaModel(ckpt.config, params);
      const calibration = sampleCalibration(ids, { samples: 2, seqLen: 64, seed: 1 });
      const opts = { criterion: 'taylor', ratio: 0.2, calibration, seed: 1, backend: ort } as const;
      const f32 = await prune(big, opts); // fine in float32
      expect([...f32.scores.values()].every((s) => s.every(Number.isFinite))).toBe(true);
      const err = await prune(big, { ...opts, computeDtype: 'float16' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      const message = (err as Error).message;
      console.log(`float16 overflow: ${message}`);
      expect(message).toMatch(
        /^criterion 'taylor' computing in float16 \(emulated\): the gradient of '[\w.]+' is non-finite \(NaN at element \d+\); the loss was \S+\. float16 overflows above 65504/,
      );
    },
    SLOW,
  );

  it(
    'the cost of emulation: one whole-model gradient pass per dtype (compile and run times printed)',
    async () => {
      const calibration = sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 3 });
      const batch = tensor(Int32Array.from(calibration.iterations[0]!.flat()), [4, 128], 'int32');
      const rows: string[] = [];
      const perPass = new Map<string, number>();
      for (const [name, backend] of [
        ['ort', ort],
        ['tfjs-wasm', wasm],
      ] as const) {
        for (const computeDtype of ['float32', ...HALF] as const) {
          const exec = await ModelExecutor.create(model, { backend, mode: 'whole', computeDtype });
          const pass = () => exec.lossAndGradients(batch, { wanted: () => true, consume: () => {} });
          try {
            let t = performance.now();
            await pass(); // compiles
            const first = performance.now() - t;
            const runs = name === 'ort' ? 5 : 1;
            t = performance.now();
            for (let i = 0; i < runs; i++) await pass();
            const ms = (performance.now() - t) / runs;
            perPass.set(`${name}:${computeDtype}`, ms);
            rows.push(
              `${name} ${computeDtype}: first pass (with compile) ${first.toFixed(0)} ms, then ${ms.toFixed(1)} ms per pass` +
                (computeDtype === 'float32'
                  ? ''
                  : ` (${(ms / perPass.get(`${name}:float32`)!).toFixed(1)}x float32)`),
            );
          } finally {
            exec.dispose();
          }
        }
      }
      console.log(`stories260K gradient pass, 4 x 128 tokens:\n  ${rows.join('\n  ')}`);
      expect(perPass.size).toBe(6);
    },
    SLOW,
  );
});
