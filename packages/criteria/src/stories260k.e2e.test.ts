/**
 * Every criterion on a real trained model, Karpathy's stories260K (llama2.c; 5 layers, 8 heads over
 * 4 KV heads, MLP 172), calibrated on the TinyStories validation head:
 *
 * - taylor on onnxruntime ranks units exactly like the plain-TypeScript reference backend;
 * - pruning at ratio 0.2 with every criterion follows the rounding rule, saves an HF directory that
 *   reloads with per-layer sizes and the same logits, and counts its parameters right;
 * - the same seed gives a byte-identical plan on onnxruntime and on tfjs (wasm);
 * - moreau / moreau-gs without noise are deterministic and match the loop written out here.
 *
 * Reads ../shared (or MOREAU_SHARED) and skips with a message when the files are absent.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createOrtBackend } from '@moreau/backend-ort';
import { createTfjsBackend } from '@moreau/backend-tfjs';
import {
  applyPlan,
  type Backend,
  type CalibrationSet,
  countParams,
  getCriterion,
  type HostTensor,
  jit,
  type PruneResult,
  parsePlan,
  planToJSON,
  prune,
  ReferenceBackend,
  resolveOptions,
  sampleCalibration,
  tensor,
  valueAndGrad,
} from '@moreau/core';
import {
  type Checkpoint,
  type LlamaConfig,
  LlamaModel,
  llamaLogits,
  llamaLoss,
  loadHfDirectory,
  paramCount,
  saveHfDirectory,
} from '@moreau/models';
import { haveStories260k, loadStories260k, sharedPath, TINYSTORIES_HEAD } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import './index.js';

const HAVE = haveStories260k('stories260K criteria e2e tests', TINYSTORIES_HEAD);

const SLOW = 300_000;
/** The criteria and the options they run with here (moreau shortened; moreau-gs at its defaults). */
const CRITERIA: readonly [string, Record<string, unknown>][] = [
  ['magnitude', {}],
  ['random', {}],
  ['taylor', {}],
  ['moreau', { iterations: 4, averageLast: 2 }],
  ['moreau-gs', {}],
];

/** Unit order by descending score, ties to the lower index (the order selection uses). */
const ranking = (s: ArrayLike<number>) =>
  Array.from({ length: s.length }, (_, i) => i).sort((a, b) => s[b]! - s[a]! || a - b);

/** 'attention/mlp' kept counts per layer, e.g. '3/137 3/137 ...'. */
const keptCounts = (r: PruneResult) =>
  r.plan.groups
    .map((d) => `${d.group.kind === 'mlp' ? '/' : ' '}${d.kept.length}`)
    .join('')
    .trim();

function bytesEqual(a: HostTensor, b: HostTensor): boolean {
  return Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
  );
}

/** Element count of every tensor in a safetensors file, read straight from its JSON header. */
async function safetensorsElements(file: string): Promise<number> {
  const bytes = await readFile(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { shape?: number[] }
  >;
  let n = 0;
  for (const [name, info] of Object.entries(header)) {
    if (name !== '__metadata__') n += info.shape!.reduce((p, d) => p * d, 1);
  }
  return n;
}

describe.skipIf(!HAVE)('criteria on stories260K (llama2.c) end to end', () => {
  let ckpt: Checkpoint;
  let model: LlamaModel;
  let ids: number[];
  let ort: Backend;
  let tmp: string;
  /** Held-out windows (another seed than calibration) for the loss before / after. */
  let heldout: HostTensor;
  const ortRuns = new Map<string, Promise<{ result: PruneResult; ms: number }>>();

  const calibrationFor = (name: string, options: Record<string, unknown>): CalibrationSet => {
    const c = getCriterion(name);
    const iterations = c.calibrationIterations?.(resolveOptions(c, options)) ?? 1;
    return sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 1, iterations });
  };
  /** prune at 0.2 on onnxruntime, once per criterion (several tests look at the same run). */
  const runOrt = (name: string, options: Record<string, unknown>) => {
    let run = ortRuns.get(name);
    if (!run) {
      run = (async () => {
        const calibration = calibrationFor(name, options);
        const t0 = performance.now();
        const result = await prune(model, {
          criterion: name,
          options,
          ratio: 0.2,
          calibration,
          backend: ort,
          seed: 1,
        });
        return { result, ms: performance.now() - t0 };
      })();
      ortRuns.set(name, run);
    }
    return run;
  };
  const lossOf = async (config: LlamaConfig, params: ReadonlyMap<string, HostTensor>) => {
    const f = jit((p, x) => llamaLoss(p, x, config), { backend: ort });
    const out = (await f(Object.fromEntries(params), heldout)) as HostTensor;
    f.dispose();
    return (out.data as Float32Array)[0]!;
  };

  beforeAll(async () => {
    const stories = await loadStories260k();
    ckpt = stories.ckpt;
    ids = stories.tok.encode(readFileSync(sharedPath(TINYSTORIES_HEAD), 'utf8'), { bos: true });
    model = new LlamaModel(ckpt.config, ckpt.tensors);
    ort = await createOrtBackend({ intraOpNumThreads: 2 });
    tmp = await mkdtemp(path.join(tmpdir(), 'moreau-criteria-e2e-'));
    const windows = sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 2 }).iterations[0]!;
    heldout = tensor(Int32Array.from(windows.flat()), [4, 128], 'int32');
  }, SLOW);
  afterAll(async () => {
    await ort?.dispose();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it(
    'taylor param_first ranks every unit the same on onnxruntime and on the reference backend',
    async () => {
      // The reference backend is slow (about 25 s for 4 x 128 tokens): 2 windows of 64 here.
      const calibration = sampleCalibration(ids, { samples: 2, seqLen: 64, seed: 1 });
      const opts = { criterion: 'taylor', ratio: 0.2, calibration, seed: 1 } as const;
      const t0 = performance.now();
      const a = await prune(model, { ...opts, backend: ort });
      const t1 = performance.now();
      const b = await prune(model, { ...opts, backend: new ReferenceBackend() });
      const t2 = performance.now();
      console.log(
        `taylor 2x64 on stories260K: ort ${(t1 - t0).toFixed(0)} ms, reference ${(t2 - t1).toFixed(0)} ms`,
      );
      expect(planToJSON(a.plan)).toBe(planToJSON(b.plan));
      let maxRel = 0;
      for (const [id, sa] of a.scores) {
        const sb = b.scores.get(id)!;
        expect(ranking(sa), id).toEqual(ranking(sb));
        const scale = Math.max(...sa);
        sa.forEach((v, i) => {
          maxRel = Math.max(maxRel, Math.abs(v - sb[i]!) / scale);
        });
      }
      console.log(
        `taylor unit scores, ort vs reference: max difference ${maxRel.toExponential(2)} of the largest`,
      );
      expect(maxRel).toBeLessThan(1e-4);
    },
    SLOW,
  );

  it(
    'every criterion at ratio 0.2: rounding rule, HF round trip with per-layer sizes and equal logits, parameter count',
    async () => {
      const before = countParams(model.params);
      expect(before).toBe(paramCount(ckpt.config));
      const lossBefore = await lossOf(ckpt.config, model.params);
      const logitIds = tensor(Int32Array.from(ids.slice(1000, 1128)), [2, 64], 'int32');
      const logitsOf = async (config: LlamaConfig, params: ReadonlyMap<string, HostTensor>) => {
        const f = jit((p, x) => llamaLogits(p, x, config), { backend: ort });
        const out = (await f(Object.fromEntries(params), logitIds)) as HostTensor;
        f.dispose();
        return out;
      };
      const report: string[] = [`loss on held-out windows before pruning: ${lossBefore.toFixed(4)}`];
      for (const [name, options] of CRITERIA) {
        const { result, ms } = await runOrt(name, options);
        const { plan } = result;
        const pruned = result.model as LlamaModel;
        // KV groups: 4 -> floor(3.2) = 3; MLP channels: 172 -> floor(137.6) = 137, in every layer.
        expect(plan.groups).toHaveLength(10);
        for (const d of plan.groups) {
          expect(d.total).toBe(d.group.kind === 'attention' ? 4 : 172);
          expect(d.kept).toHaveLength(d.group.kind === 'attention' ? 3 : 137);
        }
        expect(plan.criterion).toEqual({ name, options: resolveOptions(getCriterion(name), options) });
        expect(pruned.config.layerHeadNum).toEqual([6, 6, 6, 6, 6]);
        expect(pruned.config.layerKvHeadNum).toEqual([3, 3, 3, 3, 3]);
        expect(pruned.config.layerInterSize).toEqual([137, 137, 137, 137, 137]);
        // Per layer: q and o lose 16 x 64, k and v 8 x 64, the MLP 3 x 35 x 64.
        const after = countParams(pruned.params);
        expect(after).toBe(before - 5 * (2 * 16 * 64 + 2 * 8 * 64 + 3 * 35 * 64));
        expect(after).toBe(paramCount(pruned.config));

        // Save, reload: the same per-layer sizes, the same tensors, the same logits.
        const dir = path.join(tmp, name);
        await saveHfDirectory(dir, {
          config: pruned.config,
          tensors: new Map(pruned.params),
          format: 'hf',
          sourceDtype: 'F32',
        });
        expect(await safetensorsElements(path.join(dir, 'model.safetensors'))).toBe(after);
        const back = await loadHfDirectory(dir);
        expect(back.config.layerHeadNum).toEqual([6, 6, 6, 6, 6]);
        expect(back.config.layerKvHeadNum).toEqual([3, 3, 3, 3, 3]);
        expect(back.config.layerInterSize).toEqual([137, 137, 137, 137, 137]);
        expect(countParams(back.tensors)).toBe(after);
        for (const [k, t] of pruned.params) expect(bytesEqual(back.tensors.get(k)!, t), k).toBe(true);
        const inMemory = await logitsOf(pruned.config, pruned.params);
        const reloaded = await logitsOf(back.config, back.tensors);
        expect(inMemory.shape).toEqual([2, 64, 512]);
        expect(bytesEqual(reloaded, inMemory)).toBe(true);

        // A saved plan re-applies to the same parameters; applying it again is an error.
        const again = applyPlan(model, parsePlan(planToJSON(plan), `${name}.plan.json`));
        for (const [k, t] of pruned.params) expect(bytesEqual(again.params.get(k)!, t), k).toBe(true);
        expect(() => applyPlan(pruned, plan)).toThrow(/layer 0 attention: .*was the plan already applied/);

        const lossAfter = await lossOf(pruned.config, pruned.params);
        expect(Number.isFinite(lossAfter)).toBe(true);
        report.push(
          `${name.padEnd(9)} ${JSON.stringify(options).padEnd(34)} ${ms.toFixed(0).padStart(6)} ms on ${ort.name}; ` +
            `kept ${keptCounts(result)}; params ${before} -> ${after}; held-out loss ${lossAfter.toFixed(4)}; ` +
            `attention kept ${JSON.stringify(plan.groups.filter((d) => d.group.kind === 'attention').map((d) => d.kept))}`,
        );
      }
      console.log(`stories260K at ratio 0.2:\n${report.join('\n')}`);
    },
    SLOW,
  );

  it(
    'the same seed gives a byte-identical plan on onnxruntime and tfjs (wasm) for magnitude, taylor and moreau-gs',
    async () => {
      const tfjs = await createTfjsBackend({ engine: 'wasm' });
      try {
        for (const [name, options] of CRITERIA.filter(([n]) =>
          ['magnitude', 'taylor', 'moreau-gs'].includes(n),
        )) {
          const { result } = await runOrt(name, options);
          const t0 = performance.now();
          const other = await prune(model, {
            criterion: name,
            options,
            ratio: 0.2,
            calibration: calibrationFor(name, options),
            backend: tfjs,
            seed: 1,
          });
          console.log(`${name} on tfjs (${tfjs.device}): ${(performance.now() - t0).toFixed(0)} ms`);
          expect(planToJSON(other.plan), name).toBe(planToJSON(result.plan));
        }
      } finally {
        await tfjs.dispose();
      }
    },
    SLOW,
  );

  describe('moreau without noise and with fixed windows', () => {
    const base = {
      iterations: 3,
      averageLast: 2,
      noiseStd: 0,
      freshCalibration: false,
      lr: 0.01,
      lambda: 0.2,
    };

    /** The proximal loop written out with gradients from a separately compiled valueAndGrad(llamaLoss). */
    async function byHand(exact: boolean, calibration: CalibrationSet, perturb: 'all' | 'members') {
      const f = jit(
        valueAndGrad((p: Record<string, any>, x: any) => llamaLoss(p, x, ckpt.config)),
        { backend: ort },
      );
      const windows = calibration.iterations[0]!;
      const x = tensor(Int32Array.from(windows.flat()), [windows.length, windows[0]!.length], 'int32');
      const groups = model.groups(['attention', 'mlp']);
      const members =
        perturb === 'all'
          ? [...model.params.keys()]
          : [...new Set(groups.flatMap((g) => g.members.map((m) => m.param)))];
      const w = (m: string) => model.params.get(m)!.data as Float32Array;
      const delta = new Map(members.map((m) => [m, new Float32Array(w(m).length)]));
      const avg = new Map(members.map((m) => [m, new Float64Array(w(m).length)]));
      for (let t = 0; t < base.iterations; t++) {
        const point: Record<string, HostTensor> = Object.fromEntries(model.params);
        for (const m of members) {
          const d = delta.get(m)!;
          point[m] = { ...model.params.get(m)!, data: w(m).map((v, i) => v + d[i]!) };
        }
        const [, grads] = (await f(point, x)) as [HostTensor, Record<string, HostTensor>];
        for (const m of members) {
          const d = delta.get(m)!;
          const g = grads[m]!.data as Float32Array;
          for (let i = 0; i < d.length; i++)
            d[i] = d[i]! - base.lr * (exact ? g[i]! + d[i]! / base.lambda : g[i]!);
          if (t >= base.iterations - base.averageLast) {
            const a = avg.get(m)!;
            for (let i = 0; i < d.length; i++) a[i]! += d[i]! / base.averageLast;
          }
        }
      }
      f.dispose();
      // Importance |w * average delta| summed over every row / column slice of each unit.
      const scores = new Map<string, number[]>();
      for (const g of groups) {
        scores.set(
          g.id,
          Array.from({ length: g.units }, (_, u) => {
            let s = 0;
            for (const m of g.members) {
              const [rows, cols] = model.params.get(m.param)!.shape as [number, number];
              const wm = w(m.param);
              const a = avg.get(m.param)!;
              for (let j = m.offset + u * m.span; j < m.offset + (u + 1) * m.span; j++) {
                if (m.axis === 0)
                  for (let c = 0; c < cols; c++) s += Math.abs(wm[j * cols + c]! * a[j * cols + c]!);
                else for (let r = 0; r < rows; r++) s += Math.abs(wm[r * cols + j]! * a[r * cols + j]!);
              }
            }
            return s;
          }),
        );
      }
      return scores;
    }

    // (moreau-gs's loop, with noise, is checked on a tiny model in criteria.test.ts.)
    it.each([
      ['moreau', 'reference', 'all'],
      ['moreau', 'exact', 'all'],
      ['moreau', 'reference', 'members'],
    ] as const)(
      '%s proximal=%s perturb=%s: two runs are equal and match the loop written out',
      async (name, proximal, perturb) => {
        const calibration = sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 1 });
        const options = { ...base, proximal, perturb };
        const run = () =>
          prune(model, { criterion: name, options, ratio: 0.2, calibration, backend: ort, seed: 1 });
        const t0 = performance.now();
        const first = await run();
        const ms = performance.now() - t0;
        const second = await run();
        expect(planToJSON(second.plan)).toBe(planToJSON(first.plan));
        for (const [id, s] of first.scores) expect([...second.scores.get(id)!], id).toEqual([...s]);

        const want = await byHand(proximal === 'exact', calibration, perturb);
        let maxRel = 0;
        for (const [id, w] of want) {
          const got = first.scores.get(id)!;
          const scale = Math.max(...w);
          w.forEach((v, i) => {
            maxRel = Math.max(maxRel, Math.abs(got[i]! - v) / scale);
          });
        }
        console.log(
          `${name} proximal=${proximal} perturb=${perturb} (3 steps, no noise): ${ms.toFixed(0)} ms; unit scores vs the loop written out: ` +
            `max difference ${maxRel.toExponential(2)} of the largest`,
        );
        expect(maxRel).toBeLessThan(1e-4);
      },
      SLOW,
    );
  });
});
