/**
 * One measurement of our stack, in a fresh process (run.ts starts one per case, task and backend,
 * so peak memory is that case's alone). Prints one JSON object on its last stdout line.
 *
 *   npx tsx tools/bench/ours.ts --case synthetic-60m --task fb|eval|moreau|matmul
 *     [--backend ort|tfjs] [--threads 2] [--repeats 3] [--iterations 10] [--ids ids.json]
 *
 * fb:      valueAndGrad of the mean cross-entropy w.r.t. every parameter (one compiled graph).
 * eval:    perplexity windows through @moreau/eval's scoringModelFromLlama (forward only, NLL).
 * moreau:  core's prune() with the moreau-gs criterion end to end (scoring + selection + cut).
 * matmul:  bare single-MatMul throughput on ORT at each distinct linear-layer shape of the model.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import {
  type Backend,
  type HostTensor,
  jit,
  ops,
  prune,
  type Tensor,
  tensor,
  trace,
  valueAndGrad,
} from '@moreau/core';
import { loadCase, matmulShapes } from './cases.js';

const { values } = parseArgs({
  options: {
    case: { type: 'string', default: 'synthetic-60m' },
    task: { type: 'string', default: 'fb' },
    backend: { type: 'string', default: 'ort' },
    threads: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    iterations: { type: 'string', default: '10' },
    ids: { type: 'string' },
    batch: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '2' },
    arena: { type: 'string', default: 'off' },
  },
});
const threads = Number(values.threads);

// Memory guard: the machine is shared, so stop this process (not a neighbour) before the kernel's
// OOM killer has to choose. A worker thread watches, since the main thread may be busy in a loop.
const minAvailable = Number(process.env.MOREAU_BENCH_MIN_AVAILABLE_MB ?? 1024) * 2 ** 20;
new Worker(
  `const { readFileSync, writeSync } = require('node:fs');
   setInterval(() => {
     const mi = readFileSync('/proc/meminfo', 'utf8');
     const avail = Number(/MemAvailable:\\s+(\\d+)/.exec(mi)[1]) * 1024;
     if (avail < ${minAvailable}) {
       const st = readFileSync('/proc/self/status', 'utf8');
       const rss = Number(/VmRSS:\\s+(\\d+)/.exec(st)[1]) * 1024;
       const hwm = Number(/VmHWM:\\s+(\\d+)/.exec(st)[1]) * 1024;
       writeSync(1, '\\n' + JSON.stringify({ error: 'stopped by the memory guard: MemAvailable fell below ${minAvailable / 2 ** 20} MiB', rssBytes: rss, peakRssBytes: hwm }) + '\\n');
       process.kill(process.pid, 'SIGKILL');
     }
   }, 200);`,
  { eval: true },
).unref();
const repeats = Number(values.repeats);

async function makeBackend(): Promise<Backend> {
  if (values.backend === 'tfjs') {
    const { createTfjsBackend } = await import('@moreau/backend-tfjs');
    return createTfjsBackend({ engine: 'wasm' });
  }
  const { createOrtBackend } = await import('@moreau/backend-ort');
  // moreau: large per-run outputs (every member's gradient); no arena keeps them between runs.
  return createOrtBackend({
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    ...(values.task === 'moreau' && values.arena !== 'on' ? { memoryArena: false } : {}),
  });
}

function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
}

const ids = values.ids
  ? (JSON.parse(readFileSync(values.ids, 'utf8')) as number[][] | number[][][])
  : undefined;
const t0 = performance.now();
const { config, params, modelBytes } = await loadCase(values.case!);
const loadSeconds = (performance.now() - t0) / 1000;
const out: Record<string, unknown> = {
  case: values.case,
  task: values.task,
  backend: values.backend,
  threads,
  loadSeconds,
  modelBytes,
  node: process.version,
};

if (values.task === 'fb') {
  const rows = ids as number[][];
  const B = rows.length;
  const T = rows[0]!.length;
  const backend = await makeBackend();
  out.device = backend.device;
  const x = tensor(Int32Array.from(rows.flat()), [B, T], 'int32');
  const { llamaLoss } = await import('@moreau/models');
  const p = Object.fromEntries(params);
  const f = jit(
    valueAndGrad((w: Record<string, Tensor>, input: Tensor) => llamaLoss(w, input, config)),
    { backend },
  );
  let t = performance.now();
  let [value] = (await f(p, x)) as [HostTensor, unknown];
  out.firstCallSeconds = (performance.now() - t) / 1000;
  const seconds: number[] = [];
  for (let r = 0; r < repeats; r++) {
    t = performance.now();
    [value] = (await f(p, x)) as [HostTensor, unknown];
    seconds.push((performance.now() - t) / 1000);
  }
  out.loss = (value.data as Float32Array)[0];
  out.seconds = seconds;
  out.tokens = B * T;
} else if (values.task === 'eval') {
  const windows = ids as number[][];
  const backend = await makeBackend();
  out.device = backend.device;
  const { scoringModelFromLlama, perplexity } = await import('@moreau/eval');
  const batch = Number(values.batch);
  const model = scoringModelFromLlama(params, config, backend, { batchSize: batch });
  const T = windows[0]!.length;
  const stream = windows.flat();
  let t = performance.now();
  let r = await perplexity(model, stream, { seqLen: T, batchSize: batch });
  out.firstCallSeconds = (performance.now() - t) / 1000;
  const seconds: number[] = [];
  for (let k = 0; k < repeats; k++) {
    t = performance.now();
    r = await perplexity(model, stream, { seqLen: T, batchSize: batch });
    seconds.push((performance.now() - t) / 1000);
  }
  out.nll = r.nll;
  out.positions = r.tokens;
  out.tokens = windows.length * T;
  out.seconds = seconds;
} else if (values.task === 'moreau') {
  await import('@moreau/criteria');
  const { LlamaModel } = await import('@moreau/models');
  const batches = ids as number[][][];
  const iterations = Number(values.iterations);
  const backend = await makeBackend();
  out.device = backend.device;
  const model = new LlamaModel(config, params);
  const phases: Record<string, number> = {};
  let last = performance.now();
  const t = performance.now();
  const result = await prune(model, {
    criterion: 'moreau-gs',
    options: { iterations },
    ratio: 0.2,
    seed: 1,
    calibration: { iterations: batches.slice(0, iterations) },
    backend,
    includeScores: true,
    onProgress: (p) => {
      const now = performance.now();
      phases[`${p.phase} ${p.done}/${p.total}`] = (now - last) / 1000;
      last = now;
    },
  });
  out.seconds = [(performance.now() - t) / 1000];
  out.iterations = iterations;
  out.exec = result.mode; // whole | streamed: which executor mode the default 'auto' picked
  out.phaseSeconds = phases;
  // A digest of every kept index: equal digests = the same pruning decisions.
  let h = 0x811c9dc5;
  for (const d of result.plan.groups) {
    for (const k of [...d.kept, d.group.kind === 'attention' ? -1 : -2])
      h = Math.imul(h ^ (k & 0xffff), 0x01000193) >>> 0;
  }
  out.planDigest = h.toString(16);
  const first = (kind: string) =>
    result.plan.groups.find((d) => d.group.layer === 0 && d.group.kind === kind);
  out.planLayer0 = { attention: first('attention')?.kept.length, mlp: first('mlp')?.kept.length };
} else if (values.task === 'matmul') {
  // Bare MatMul [M, K] x [K, N] on ORT at each distinct forward linear shape of the model.
  const backend = await makeBackend();
  out.device = backend.device;
  const M = Number(values.batch);
  const secs = Number(values.seconds);
  const rates: { k: number; n: number; m: number; gflops: number }[] = [];
  for (const { k, n } of matmulShapes(config)) {
    const a = tensor(new Float32Array(M * k).fill(0.01), [M, k], 'float32');
    const b = tensor(new Float32Array(k * n).fill(0.02), [k, n], 'float32');
    const g = trace((x: Tensor, y: Tensor) => ops.matmul(x, y), [a, b]);
    const exe = await backend.compile(g.graph);
    for (let i = 0; i < 3; i++) await exe.run([a, b]);
    let runs = 0;
    const start = performance.now();
    let best = Number.POSITIVE_INFINITY;
    while (performance.now() - start < secs * 1000 || runs < 5) {
      const s = performance.now();
      await exe.run([a, b]);
      best = Math.min(best, performance.now() - s);
      runs++;
    }
    const mean = (performance.now() - start) / runs;
    rates.push({ m: M, k, n, gflops: (2 * M * k * n) / (mean * 1e6) });
    out.bestGflops = Math.max((out.bestGflops as number) ?? 0, (2 * M * k * n) / (best * 1e6));
    exe.dispose();
  }
  out.rates = rates;
} else {
  throw new Error(`unknown task '${values.task}'`);
}
out.peakRssBytes = peakRss();
console.log(JSON.stringify(out));
process.exit(0);
