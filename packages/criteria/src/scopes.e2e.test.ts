/**
 * Every scope on Karpathy's stories260K (5 layers, hidden 64, 8 heads over 4 KV heads, MLP 172,
 * tied embeddings; 260,032 parameters) at the ratios — channel 0.25 (hidden 48), layer 0.4
 * (3 layers), unstructured 0.5, 2:4 — with magnitude and taylor: the saved Hugging Face directory
 * reloads, its logits equal the in-memory pruned model's, parameter and non-zero counts are exact,
 * and the plan re-applies to the same parameters. Also: plan-v1 files written by the CLI before
 * version 2 apply unchanged (tensor hashes recorded then), and element plans are byte-identical
 * between whole and layer-streamed runs and between onnxruntime and tfjs.
 *
 * Reads ../shared (or MOREAU_SHARED) and skips with a message when the files are absent.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createOrtBackend } from '@moreau/backend-ort';
import { createTfjsBackend } from '@moreau/backend-tfjs';
import {
  applyPlan,
  type Backend,
  type CalibrationSet,
  countNonZero,
  countParams,
  type HostTensor,
  jit,
  type PruneScope,
  parsePlan,
  planToJSON,
  prune,
  sampleCalibration,
  sparsityReport,
  tensor,
} from '@moreau/core';
import {
  Llama2cTokenizer,
  type LlamaConfig,
  LlamaModel,
  llamaLogits,
  llamaLoss,
  loadHfDirectory,
  loadLlama2c,
  paramCount,
  saveHfDirectory,
} from '@moreau/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = process.env.MOREAU_SHARED ?? path.resolve(here, '../../../../shared');
const files = {
  model: path.join(shared, 'models/stories260K/stories260K.bin'),
  tokenizer: path.join(shared, 'models/stories260K/tok512.bin'),
  text: path.join(shared, 'data/tinystories/tinystories_validation_head.txt'),
};
const missing = Object.values(files).filter((f) => !existsSync(f));
if (missing.length > 0) {
  console.warn(`stories260K scope e2e tests skipped: missing ${missing.join(', ')} (set MOREAU_SHARED)`);
}
const SLOW = 300_000;

/** Parameters of stories260K per layer: 2 norms, q, k, v, o, gate, up, down. */
const LAYER = 2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64;
/** Zeroed weights when every row of every layer matrix loses half: rows of 64 lose 32, of 172 lose 86. */
const HALF = 5 * (64 * 32 + 2 * 32 * 32 + 64 * 32 + 3 * 172 * 32);

const SCOPES: readonly { scope: PruneScope; ratio: number; params: number; nonzero: number }[] = [
  {
    scope: 'channel',
    ratio: 0.25,
    // hidden 48: embed 512 x 48, final norm 48; per layer norms 2 x 48, q / o 64 x 48, k / v 32 x 48, MLP 3 x 172 x 48.
    params: 512 * 48 + 48 + 5 * (2 * 48 + 2 * 64 * 48 + 2 * 32 * 48 + 3 * 172 * 48),
    nonzero: 512 * 48 + 48 + 5 * (2 * 48 + 2 * 64 * 48 + 2 * 32 * 48 + 3 * 172 * 48),
  },
  { scope: 'layer', ratio: 0.4, params: 512 * 64 + 64 + 3 * LAYER, nonzero: 512 * 64 + 64 + 3 * LAYER },
  { scope: 'unstructured', ratio: 0.5, params: 260_032, nonzero: 260_032 - HALF },
  { scope: '2:4', ratio: 0.5, params: 260_032, nonzero: 260_032 - HALF },
];

const bytesOf = (t: HostTensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
const sha = (t: HostTensor) => createHash('sha256').update(bytesOf(t)).digest('hex').slice(0, 16);

describe.skipIf(missing.length > 0)('every scope on stories260K', () => {
  let model: LlamaModel;
  let ids: number[];
  let ort: Backend;
  let tmp: string;
  let calibration: CalibrationSet;
  let heldout: HostTensor;
  const report: string[] = [];

  const logitsOf = async (config: LlamaConfig, params: ReadonlyMap<string, HostTensor>) => {
    const f = jit((p, x) => llamaLogits(p, x, config), { backend: ort });
    const out = (await f(Object.fromEntries(params), heldout)) as HostTensor;
    f.dispose();
    return out;
  };
  const lossOf = async (config: LlamaConfig, params: ReadonlyMap<string, HostTensor>) => {
    const f = jit((p, x) => llamaLoss(p, x, config), { backend: ort });
    const out = (await f(Object.fromEntries(params), heldout)) as HostTensor;
    f.dispose();
    return (out.data as Float32Array)[0]!;
  };

  beforeAll(async () => {
    const ckpt = await loadLlama2c(files.model);
    const tok = await Llama2cTokenizer.load(files.tokenizer, ckpt.config.vocabSize);
    ids = tok.encode(readFileSync(files.text, 'utf8'), { bos: true });
    model = new LlamaModel(ckpt.config, ckpt.tensors);
    ort = await createOrtBackend({ intraOpNumThreads: 2 });
    tmp = await mkdtemp(path.join(tmpdir(), 'moreau-scopes-e2e-'));
    calibration = sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 1 });
    const windows = sampleCalibration(ids, { samples: 8, seqLen: 128, seed: 2 }).iterations[0]!;
    heldout = tensor(Int32Array.from(windows.flat()), [8, 128], 'int32');
  }, SLOW);
  afterAll(async () => {
    if (report.length)
      console.log(`stories260K by scope (held-out loss on 8 x 128 tokens):\n${report.join('\n')}`);
    await ort?.dispose();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('stories260K has no exact zeros to begin with (non-zero counts below are exact)', async () => {
    expect(countParams(model.params)).toBe(260_032);
    expect(countNonZero(model.params)).toBe(260_032);
    const loss = await lossOf(model.config, model.params);
    report.push(
      `dense             params 260032; loss ${loss.toFixed(4)} (ppl ${Math.exp(loss).toFixed(2)})`,
    );
  });

  for (const { scope, ratio, params, nonzero } of SCOPES) {
    for (const criterion of ['magnitude', 'taylor']) {
      it(
        `${scope} ${criterion}: saved model reloads with equal logits, exact counts, plan re-applies`,
        async () => {
          const t0 = performance.now();
          const result = await prune(model, {
            criterion,
            ...(scope === '2:4' ? {} : { ratio }),
            scope,
            calibration,
            backend: ort,
          });
          const ms = performance.now() - t0;
          const pruned = result.model as LlamaModel;
          expect(countParams(pruned.params)).toBe(params);
          expect(paramCount(pruned.config)).toBe(params);
          expect(countNonZero(pruned.params)).toBe(nonzero);
          if (scope === 'channel') {
            expect(pruned.config.hiddenSize).toBe(48);
            expect(pruned.config.headDim).toBe(8);
          }
          if (scope === 'layer') expect(pruned.config.numHiddenLayers).toBe(3);
          if (scope === '2:4') {
            const sp = sparsityReport(pruned.params);
            const layerMatrices = sp.matrices.filter((m) => m.param.includes('.layers.'));
            expect(layerMatrices.every((m) => m.nm[4]! >= 2)).toBe(true);
            expect(sp.matrices.find((m) => m.param === 'model.embed_tokens.weight')!.zeros).toBe(0);
          }

          const dir = path.join(tmp, `${scope.replace(':', '-')}-${criterion}`);
          await saveHfDirectory(dir, {
            config: pruned.config,
            tensors: new Map(pruned.params),
            format: 'hf',
            sourceDtype: 'F32',
          });
          const back = await loadHfDirectory(dir);
          expect(back.config).toEqual(pruned.config);
          expect(countParams(back.tensors)).toBe(params);
          expect(countNonZero(back.tensors)).toBe(nonzero);
          for (const [k, t] of pruned.params)
            expect(bytesOf(back.tensors.get(k)!).equals(bytesOf(t)), k).toBe(true);
          const inMemory = await logitsOf(pruned.config, pruned.params);
          expect(bytesOf(await logitsOf(back.config, back.tensors)).equals(bytesOf(inMemory))).toBe(true);

          const again = applyPlan(model, parsePlan(planToJSON(result.plan), 'plan.json')) as LlamaModel;
          expect(again.config).toEqual(pruned.config);
          for (const [k, t] of pruned.params)
            expect(bytesOf(again.params.get(k)!).equals(bytesOf(t)), k).toBe(true);

          const loss = await lossOf(pruned.config, pruned.params);
          expect(Number.isFinite(loss)).toBe(true);
          report.push(
            `${scope.padEnd(12)} ${String(ratio).padEnd(4)} ${criterion.padEnd(9)} params ${params} non-zero ${nonzero}; ` +
              `loss ${loss.toFixed(4)} (ppl ${Math.exp(loss).toFixed(2)}); ${ms.toFixed(0)} ms`,
          );
        },
        SLOW,
      );
    }
  }

  it(
    'block-influence removes the layers that turn the residual stream least',
    async () => {
      const {
        plan,
        model: pruned,
        scores,
      } = await prune(model, {
        criterion: 'block-influence',
        ratio: 0.4,
        scope: 'layer',
        calibration,
        backend: ort,
      });
      const bi = [0, 1, 2, 3, 4].map((l) => scores.get(`layer.${l}`)![0]!);
      const kept = plan.groups.filter((d) => d.kept.length).map((d) => d.group.layer);
      const best = [...bi.keys()]
        .sort((a, b) => bi[b]! - bi[a]! || a - b)
        .slice(0, 3)
        .sort();
      expect(kept).toEqual(best);
      const loss = await lossOf((pruned as LlamaModel).config, pruned.params);
      report.push(
        `layer        0.4  block-influence BI ${bi.map((v) => v.toFixed(4)).join(' ')}; kept ${kept}; loss ${loss.toFixed(4)} (ppl ${Math.exp(loss).toFixed(2)})`,
      );
    },
    SLOW,
  );

  it(
    'keep-first 3 (LLM-Pruner) keeps layers 0..2',
    async () => {
      const { plan, model: pruned } = await prune(model, { scope: 'layer', keepFirst: 3 });
      expect(plan.groups.map((d) => d.kept.length)).toEqual([1, 1, 1, 0, 0]);
      expect(pruned.params.get('model.layers.2.mlp.up_proj.weight')).toBe(
        model.params.get('model.layers.2.mlp.up_proj.weight'),
      );
      const loss = await lossOf((pruned as LlamaModel).config, pruned.params);
      report.push(`layer        keep-first 3    loss ${loss.toFixed(4)} (ppl ${Math.exp(loss).toFixed(2)})`);
    },
    SLOW,
  );

  it.each(['plan-v1-magnitude', 'plan-v1-taylor-global'])(
    '%s.json, written by the CLI before plan version 2, applies unchanged',
    (name) => {
      const file = path.join(here, 'fixtures', `${name}.json`);
      const want = JSON.parse(
        readFileSync(path.join(here, 'fixtures', `${name}.hashes.json`), 'utf8'),
      ) as Record<string, { shape: number[]; sha256: string }>;
      const plan = parsePlan(readFileSync(file, 'utf8'), file);
      expect(plan.version).toBe(2);
      const pruned = applyPlan(model, plan);
      expect([...pruned.params.keys()].sort()).toEqual(Object.keys(want).sort());
      for (const [k, t] of pruned.params) {
        expect(t.shape, k).toEqual(want[k]!.shape);
        expect(sha(t), k).toBe(want[k]!.sha256);
      }
    },
  );

  it(
    'element plans are byte-identical whole vs layer-streamed, and onnxruntime vs tfjs',
    async () => {
      for (const scope of ['unstructured', '2:4'] as const) {
        const opts = { criterion: 'taylor', ...(scope === '2:4' ? {} : { ratio: 0.5 }), scope, calibration };
        const whole = await prune(model, { ...opts, backend: ort, mode: 'whole' });
        const streamed = await prune(model, { ...opts, backend: ort, mode: 'streamed' });
        expect(streamed.mode).toBe('streamed');
        expect(planToJSON(streamed.plan)).toBe(planToJSON(whole.plan));
        const tfjs = await createTfjsBackend({ engine: 'wasm' });
        try {
          const other = await prune(model, { ...opts, backend: tfjs });
          expect(planToJSON(other.plan)).toBe(planToJSON(whole.plan));
        } finally {
          await tfjs.dispose();
        }
      }
    },
    SLOW,
  );
});
