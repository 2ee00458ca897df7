/**
 * What emulated half precision costs: one whole-model forward + backward (every parameter's
 * gradient, ModelExecutor in 'whole' mode) per compute dtype, on each backend. Prints a table and
 * JSON (times in ms, the compile included in the first pass only).
 *
 *   npx tsx tools/bench-compute-dtype.ts [--cases stories260k,synthetic-60m] [--backends ort,tfjs]
 *                                        [--repeats 3] [--rounds 2] [--threads 2]
 *
 * Each round runs every dtype in turn (float32, bfloat16, float16) with `repeats` timed passes after
 * a warm-up pass that compiles; the best round is kept, which damps the noise of a shared machine.
 * The load average is printed with the results.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { type Backend, type ComputeDtype, ModelExecutor, Rng, tensor } from '@moreau/core';
import { LlamaModel } from '@moreau/models';
import { loadCase } from './bench/cases.js';
import { makeBackend } from './stories260k-setup.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: 'stories260k,synthetic-60m' },
    backends: { type: 'string', default: 'ort,tfjs' },
    repeats: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '128' },
  },
});
const repeats = Number(values.repeats);
const rounds = Number(values.rounds);
const threads = Number(values.threads);
const [B, T] = [Number(values.batch), Number(values.seq)];
const DTYPES: readonly ComputeDtype[] = ['float32', 'bfloat16', 'float16'];

interface Row {
  case: string;
  backend: string;
  dtype: ComputeDtype;
  firstMs: number;
  passMs: number;
  loss: number;
}

const rows: Row[] = [];
for (const name of values.cases.split(',')) {
  const { config, params } = await loadCase(name);
  const model = new LlamaModel(config, params);
  const rng = new Rng(7);
  const ids = tensor(
    Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize)),
    [B, T],
    'int32',
  );
  for (const backendName of values.backends.split(',')) {
    const backend: Backend = await makeBackend(backendName, threads);
    const best = new Map<ComputeDtype, Row>();
    for (let round = 0; round < rounds; round++) {
      for (const dtype of DTYPES) {
        const exec = await ModelExecutor.create(model, { backend, mode: 'whole', computeDtype: dtype });
        const pass = () => exec.lossAndGradients(ids, { wanted: () => true, consume: () => {} });
        let t = performance.now();
        const loss = await pass();
        const firstMs = performance.now() - t;
        t = performance.now();
        for (let i = 0; i < repeats; i++) await pass();
        const passMs = (performance.now() - t) / repeats;
        exec.dispose();
        const prev = best.get(dtype);
        if (!prev || passMs < prev.passMs) {
          best.set(dtype, { case: name, backend: backendName, dtype, firstMs, passMs, loss });
        }
      }
    }
    rows.push(...best.values());
    await backend.dispose();
  }
}

const base = (r: Row) =>
  rows.find((x) => x.case === r.case && x.backend === r.backend && x.dtype === 'float32')!;
console.log(`| case | backend | dtype | first pass (compiles) ms | pass ms | vs float32 | loss |`);
console.log('|---|---|---|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${r.case} | ${r.backend} | ${r.dtype} | ${r.firstMs.toFixed(0)} | ${r.passMs.toFixed(1)} | ` +
      `${(r.passMs / base(r).passMs).toFixed(2)}x | ${r.loss} |`,
  );
}
console.log(
  JSON.stringify({ batch: B, seq: T, threads, repeats, rounds, loadavg: os.loadavg(), rows }, null, 2),
);
