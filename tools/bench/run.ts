/**
 * Benchmarks of our stack against PyTorch CPU, and memory at TinyLlama scale (issue 10).
 *
 *   npx tsx tools/bench/run.ts [--cases stories260k,synthetic-60m | all] [--tasks fb,eval,moreau,mfu]
 *     [--backends ort,tfjs,torch] [--threads 2] [--repeats 3] [--rounds 1] [--iterations 10]
 *     [--tinyllama-iterations 2] [--baseline tmp/bench-baseline/tsconfig.json] [--out tools/bench/results]
 *     [--name latest] [--torch-omp-active]
 *
 * Every measurement runs in a fresh child process (ours: tools/bench/ours.ts through tsx; PyTorch:
 * tools/bench/torch_ref.py through a python3 that can import torch, found at run time), so peak
 * memory is that case's alone. Timings are the best of `repeats` inside each child (after a warm-up
 * call that compiles), and the best over `rounds` children; ratios compare runs made back to back
 * in this invocation, which is what matters on a shared machine. Writes NAME.json and NAME.md
 * under --out, with machine information and the load average around every measurement.
 *
 * --ours-tsconfig PATH runs our side from another tree the same way (e.g. a snapshot taken while
 * the sources are being edited).
 *
 * --baseline PATH also runs our side against another source tree (a tsconfig whose paths map
 * @moreau/* to it), reported as "ours (baseline)": before/after numbers from one run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Rng } from '@moreau/core';
import { Llama2cTokenizer, writeSafetensors } from '@moreau/models';
import { STORIES_TOK, sharedPath, TINYSTORIES_HEAD } from '../../test-utils/shared.js';
import {
  CASES,
  caseConfig,
  forwardFlops,
  loadCase,
  matmulShapes,
  repoRoot,
  SYNTHETIC_SEED,
  stories260kPath,
} from './cases.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: 'stories260k,synthetic-60m' },
    tasks: { type: 'string', default: 'fb,eval,moreau,mfu' },
    backends: { type: 'string', default: 'ort,tfjs,torch' },
    threads: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '1' },
    iterations: { type: 'string', default: '10' },
    'tinyllama-iterations': { type: 'string', default: '2' },
    'tinyllama-torch': { type: 'boolean', default: false },
    baseline: { type: 'string' },
    'ours-tsconfig': { type: 'string' },
    out: { type: 'string', default: path.join(repoRoot, 'tools/bench/results') },
    name: { type: 'string', default: 'latest' },
    'torch-omp-active': { type: 'boolean', default: false },
    'eval-windows': { type: 'string', default: '32' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '128' },
  },
});

const list = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
const cases = values.cases === 'all' ? [...CASES] : list(values.cases!);
for (const c of cases)
  if (!(CASES as readonly string[]).includes(c))
    throw new Error(`unknown case '${c}'; valid: ${CASES.join(', ')}, all`);
const tasks = new Set(list(values.tasks!));
const backends = new Set(list(values.backends!));
const threads = Number(values.threads);
const repeats = Number(values.repeats);
const rounds = Number(values.rounds);
const B = Number(values.batch);
const T = Number(values.seq);
const workDir = path.join(os.tmpdir(), 'moreau-bench');
mkdirSync(workDir, { recursive: true });
mkdirSync(values.out!, { recursive: true });

const log = (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const load = () => os.loadavg().map((v) => Number(v.toFixed(2)));

// ----- machine --------------------------------------------------------------------------------

const ortVersion = (
  JSON.parse(readFileSync(path.join(repoRoot, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as {
    version: string;
  }
).version;
const machine = {
  cpu: os.cpus()[0]?.model,
  logicalCpus: os.cpus().length,
  memBytes: os.totalmem(),
  freeMemBytesAtStart: os.freemem(),
  platform: `${os.platform()} ${os.release()}`,
  node: process.version,
  onnxruntimeNode: ortVersion,
  threads,
  loadAtStart: load(),
  openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null,
  openblasL2Size: process.env.OPENBLAS_L2_SIZE ?? null,
};

// ----- python + torch (detected at run time) --------------------------------------------------

const torchEnv: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads) };
// Set on some processors for old OpenBLAS builds; they slow a current BLAS: unset both for torch.
delete torchEnv.OPENBLAS_CORETYPE;
delete torchEnv.OPENBLAS_L2_SIZE;
// On a shared machine, spinning OpenMP workers lose their time slices; passive waiting is fairer.
if (!values['torch-omp-active']) torchEnv.OMP_WAIT_POLICY = 'PASSIVE';

let python: { exe: string; torch: string; defaultThreads: number } | undefined;
let torchSkip: string | undefined;
if (backends.has('torch')) {
  const candidates = [process.env.MOREAU_BENCH_PYTHON, 'python3', '/usr/bin/python3'].filter(
    (x): x is string => Boolean(x),
  );
  for (const exe of [...new Set(candidates)]) {
    const r = spawnSync(exe, [path.join(repoRoot, 'tools/bench/torch_ref.py'), '--probe'], {
      encoding: 'utf8',
      env: torchEnv,
    });
    if (r.status === 0) {
      const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as { torch: string; threads: number };
      python = { exe, torch: p.torch, defaultThreads: p.threads };
      break;
    }
  }
  if (!python) {
    torchSkip =
      'PyTorch skipped: no python3 that can import torch (Debian: apt-get install -y python3-torch libopenblas0-openmp; or set MOREAU_BENCH_PYTHON)';
    log(torchSkip);
  } else
    log(
      `PyTorch ${python.torch} via ${python.exe} (default threads ${python.defaultThreads}; running with ${threads})`,
    );
}

// ----- inputs ---------------------------------------------------------------------------------

/** Token ids: stories260K reads TinyStories text; the synthetic models draw seeded ids. */
async function tokenStream(caseName: string, vocab: number, n: number): Promise<number[]> {
  if (caseName === 'stories260k') {
    const tok = await Llama2cTokenizer.load(sharedPath(STORIES_TOK), vocab);
    const text = readFileSync(sharedPath(TINYSTORIES_HEAD), 'utf8');
    const ids = tok.encode(text, { bos: true });
    if (ids.length < n) throw new Error(`TinyStories head has ${ids.length} tokens, need ${n}`);
    return ids.slice(0, n);
  }
  const rng = new Rng(1234);
  return Array.from({ length: n }, () => rng.int(vocab));
}

const chunk = <X>(xs: X[], size: number): X[][] =>
  Array.from({ length: Math.floor(xs.length / size) }, (_, i) => xs.slice(i * size, (i + 1) * size));

/** Weights spec for the python side (identical weights: llama2.c read in python, or our safetensors). */
async function torchWeights(caseName: string): Promise<Record<string, unknown>> {
  if (caseName === 'stories260k') return { kind: 'llama2c', path: stories260kPath };
  if (caseName === 'synthetic-60m') {
    const file = path.join(workDir, `synthetic-60m-seed${SYNTHETIC_SEED}.safetensors`);
    if (!existsSync(file)) {
      log(`writing ${file} (randomInit seed ${SYNTHETIC_SEED}) for the python side`);
      const { params } = await loadCase(caseName);
      await writeSafetensors(file, params);
    }
    return { kind: 'safetensors', path: file };
  }
  // TinyLlama shape: same shapes, torch's own random weights (FLOPs are what matter there).
  return { kind: 'random', seed: SYNTHETIC_SEED };
}

// ----- children -------------------------------------------------------------------------------

interface Measured {
  side: string;
  ok: boolean;
  error?: string;
  loadBefore: number[];
  loadAfter: number[];
  wallSeconds: number;
  [k: string]: unknown;
}

function runChild(
  side: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutS: number,
): Measured {
  const loadBefore = load();
  const t = performance.now();
  const r = spawnSync(cmd, args, {
    cwd: repoRoot,
    env,
    encoding: 'utf8',
    timeout: timeoutS * 1000,
    maxBuffer: 64 << 20,
  });
  const wallSeconds = (performance.now() - t) / 1000;
  const base = { side, loadBefore, loadAfter: load(), wallSeconds };
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status === 0 && last.startsWith('{')) return { ...base, ok: true, ...(JSON.parse(last) as object) };
  const why = r.error
    ? String(r.error.message)
    : r.signal
      ? `killed by ${r.signal}${r.signal === 'SIGKILL' ? ' (out of memory?)' : ''}`
      : `exit ${r.status}`;
  const tail = `${r.stderr ?? ''}`.trim().split('\n').slice(-6).join(' | ');
  let reported: Record<string, unknown> = {};
  try {
    if (last.startsWith('{')) reported = JSON.parse(last) as Record<string, unknown>;
  } catch {}
  const error = typeof reported.error === 'string' ? `${reported.error} (${why})` : `${why}: ${tail}`;
  log(`${side} failed: ${error}`);
  return { ...base, ...reported, ok: false, error: error.slice(0, 2000) };
}

const tsx = path.join(repoRoot, 'node_modules/.bin/tsx');
function ours(label: string, tsconfig: string | undefined, args: string[], timeoutS: number): Measured {
  const a = [
    ...(tsconfig ? ['--tsconfig', tsconfig] : []),
    path.join(repoRoot, 'tools/bench/ours.ts'),
    ...args,
    '--threads',
    String(threads),
  ];
  return runChild(
    label,
    tsx,
    a,
    { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=8192`.trim() },
    timeoutS,
  );
}

function torch(spec: Record<string, unknown>, file: string, timeoutS: number): Measured | undefined {
  if (!python) return undefined;
  writeFileSync(file, JSON.stringify(spec));
  return runChild(
    'torch',
    python.exe,
    [path.join(repoRoot, 'tools/bench/torch_ref.py'), file],
    torchEnv,
    timeoutS,
  );
}

function addRound(rec: Record<string, unknown>, key: string, m: Measured): void {
  const runs = (rec[key] as Measured[] | undefined) ?? [];
  runs.push(m);
  rec[key] = runs;
}

/** Best over rounds (lowest min-time); keeps every round's raw record. */
function best(runs: Measured[]): Measured & { rounds: Measured[] } {
  const okRuns = runs.filter((r) => r.ok);
  const pick = okRuns.length
    ? okRuns.reduce((a, b) => (minOf(a) <= minOf(b) ? a : b))
    : runs[runs.length - 1]!;
  return { ...pick, rounds: runs };
}
const minOf = (r: Measured) =>
  Math.min(...((r.seconds as number[] | undefined) ?? [Number.POSITIVE_INFINITY]));
const medianOf = (r: Measured) => {
  const s = [...((r.seconds as number[] | undefined) ?? [])].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : Number.NaN;
};

// ----- the run --------------------------------------------------------------------------------

const results: Record<string, unknown> = {
  when: new Date().toISOString(),
  machine,
  options: {
    cases,
    tasks: [...tasks],
    backends: [...backends],
    threads,
    repeats,
    rounds,
    batch: B,
    seqLen: T,
    iterations: Number(values.iterations),
    tinyllamaIterations: Number(values['tinyllama-iterations']),
    baseline: values.baseline ?? null,
    torchOmpWaitPolicy: torchEnv.OMP_WAIT_POLICY ?? 'default',
  },
  torch: python
    ? { python: python.exe, version: python.torch, defaultThreads: python.defaultThreads }
    : { skipped: torchSkip ?? 'not requested' },
  cases: {} as Record<string, unknown>,
};
const oursSides: [string, string | undefined][] = [
  ['ours', values['ours-tsconfig']],
  ...(values.baseline ? ([['ours (baseline)', values.baseline]] as [string, string][]) : []),
];

for (const caseName of cases) {
  const config = await caseConfig(caseName);
  const tiny = caseName === 'tinyllama-shape';
  const out: Record<string, unknown> = { config, modelBytes: 0 };
  (results.cases as Record<string, unknown>)[caseName] = out;
  const weights = backends.has('torch') && python ? await torchWeights(caseName) : undefined;
  const idsFile = (what: string) => path.join(workDir, `${caseName}-${what}.json`);
  const bigTimeout = tiny ? 3 * 3600 : 3600;

  // 1. forward + backward of the mean cross-entropy.
  if (tasks.has('fb') && !tiny) {
    const ids = chunk(await tokenStream(caseName, config.vocabSize, B * T), T);
    writeFileSync(idsFile('fb'), JSON.stringify(ids));
    const rec: Record<string, unknown> = { tokens: B * T, flops: 3 * forwardFlops(config, B, T) };
    for (let r = 0; r < rounds; r++) {
      for (const [label, tsconfig] of oursSides) {
        if (backends.has('ort')) {
          log(`${caseName} fb ${label} ort (round ${r + 1})`);
          addRound(
            rec,
            `${label} ort`,
            ours(
              label,
              tsconfig,
              [
                '--case',
                caseName,
                '--task',
                'fb',
                '--backend',
                'ort',
                '--ids',
                idsFile('fb'),
                '--repeats',
                String(repeats),
              ],
              bigTimeout,
            ),
          );
        }
      }
      if (backends.has('tfjs')) {
        log(`${caseName} fb ours tfjs (round ${r + 1})`);
        addRound(
          rec,
          'ours tfjs',
          ours(
            'ours',
            values['ours-tsconfig'],
            [
              '--case',
              caseName,
              '--task',
              'fb',
              '--backend',
              'tfjs',
              '--ids',
              idsFile('fb'),
              '--repeats',
              String(Math.min(repeats, 2)),
            ],
            bigTimeout,
          ),
        );
      }
      if (weights) {
        log(`${caseName} fb torch (round ${r + 1})`);
        const m = torch(
          { task: 'fb', config, weights, threads, repeats, warmup: 1, ids },
          idsFile('fb-spec'),
          bigTimeout,
        );
        if (m) addRound(rec, 'torch', m);
      }
    }
    for (const k of Object.keys(rec)) if (Array.isArray(rec[k])) rec[k] = best(rec[k] as Measured[]);
    out.fb = rec;
  }

  // 2. evaluation throughput (forward only, NLL).
  if (tasks.has('eval') && !tiny) {
    const nWin = Number(values['eval-windows']);
    const windows = chunk(await tokenStream(caseName, config.vocabSize, nWin * T), T);
    writeFileSync(idsFile('eval'), JSON.stringify(windows));
    const rec: Record<string, unknown> = { tokens: windows.length * T, windows: windows.length, batch: 8 };
    for (let r = 0; r < rounds; r++) {
      for (const [label, tsconfig] of oursSides) {
        if (backends.has('ort')) {
          log(`${caseName} eval ${label} ort (round ${r + 1})`);
          addRound(
            rec,
            `${label} ort`,
            ours(
              label,
              tsconfig,
              [
                '--case',
                caseName,
                '--task',
                'eval',
                '--backend',
                'ort',
                '--ids',
                idsFile('eval'),
                '--repeats',
                String(repeats),
                '--batch',
                '8',
              ],
              bigTimeout,
            ),
          );
        }
      }
      if (backends.has('tfjs')) {
        log(`${caseName} eval ours tfjs (round ${r + 1})`);
        addRound(
          rec,
          'ours tfjs',
          ours(
            'ours',
            values['ours-tsconfig'],
            [
              '--case',
              caseName,
              '--task',
              'eval',
              '--backend',
              'tfjs',
              '--ids',
              idsFile('eval'),
              '--repeats',
              String(Math.min(repeats, 2)),
              '--batch',
              '8',
            ],
            bigTimeout,
          ),
        );
      }
      if (weights) {
        log(`${caseName} eval torch (round ${r + 1})`);
        const m = torch(
          { task: 'eval', config, weights, threads, repeats, warmup: 1, batch: 8, ids: windows },
          idsFile('eval-spec'),
          bigTimeout,
        );
        if (m) addRound(rec, 'torch', m);
      }
    }
    for (const k of Object.keys(rec)) if (Array.isArray(rec[k])) rec[k] = best(rec[k] as Measured[]);
    out.eval = rec;
  }

  // 3 + 4 (+ 5 for the TinyLlama shape). moreau-gs scoring end to end, peak memory.
  if (tasks.has('moreau')) {
    const iterations = tiny ? Number(values['tinyllama-iterations']) : Number(values.iterations);
    const stream = await tokenStream(caseName, config.vocabSize, iterations * B * T);
    const batches = chunk(chunk(stream, T), B).slice(0, iterations);
    writeFileSync(idsFile('moreau'), JSON.stringify(batches));
    const rec: Record<string, unknown> = { iterations, tokensPerIteration: B * T };
    for (const [label, tsconfig] of oursSides) {
      if (!backends.has('ort')) continue;
      if (tiny && label !== 'ours') continue;
      log(`${caseName} moreau-gs ${label} ort (${iterations} iterations)`);
      rec[`${label} ort`] = ours(
        label,
        tsconfig,
        [
          '--case',
          caseName,
          '--task',
          'moreau',
          '--backend',
          'ort',
          '--ids',
          idsFile('moreau'),
          '--iterations',
          String(iterations),
        ],
        bigTimeout,
      );
    }
    if (weights && (!tiny || values['tinyllama-torch'])) {
      log(`${caseName} moreau-gs torch (${iterations} iterations)`);
      rec.torch = torch(
        {
          task: 'moreau',
          config,
          weights,
          threads,
          ids: batches,
          moreau: { iterations, averageLast: 5, noiseStd: 0.05, lr: 2e-4, soft: 5e-6 },
        },
        idsFile('moreau-spec'),
        bigTimeout,
      );
    }
    out.moreau = rec;
  }

  // MFU: bare ORT MatMul at the model's linear shapes, against the forward + backward above.
  if (tasks.has('mfu') && backends.has('ort') && !tiny) {
    log(`${caseName} bare MatMul on ort`);
    out.matmul = ours(
      'ours',
      values['ours-tsconfig'],
      [
        '--case',
        caseName,
        '--task',
        'matmul',
        '--backend',
        'ort',
        '--batch',
        String(B * T),
        '--seconds',
        '2',
      ],
      1800,
    );
  }
  out.modelBytes =
    (
      Object.values(out).find((v) => typeof v === 'object' && v !== null && 'modelBytes' in (v as object)) as
        | { modelBytes?: number }
        | undefined
    )?.modelBytes ?? 0;
}
results.loadAtEnd = load();

// ----- summary --------------------------------------------------------------------------------

writeFileSync(path.join(values.out!, `${values.name}.json`), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(path.join(values.out!, `${values.name}.md`), summarize(results));
log(`wrote ${path.join(values.out!, `${values.name}.json`)} and .md`);

function summarize(res: Record<string, unknown>): string {
  const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');
  const gb = (x: number) => `${(x / 2 ** 30).toFixed(2)} GiB`;
  const lines: string[] = [];
  const m = res.machine as typeof machine;
  lines.push(`# Benchmark results (${res.when})`, '');
  lines.push(
    `Machine: ${m.cpu}, ${m.logicalCpus} logical CPUs, ${gb(m.memBytes)} RAM, ${m.platform}; Node ${m.node}, onnxruntime-node ${m.onnxruntimeNode}; ${m.threads} threads on every side.`,
  );
  const t = res.torch as { version?: string; python?: string; skipped?: string };
  lines.push(
    t.version
      ? `PyTorch ${t.version} (${t.python}), OMP_WAIT_POLICY=${(res.options as { torchOmpWaitPolicy: string }).torchOmpWaitPolicy}.`
      : `PyTorch: ${t.skipped}.`,
  );
  lines.push(
    `Load average (1/5/15 min) at start ${m.loadAtStart.join(' / ')}, at end ${(res.loadAtEnd as number[]).join(' / ')}. Timings are best-of-N in fresh processes; ratios are ours / PyTorch from this run (for times: lower is better; for throughput: higher is better).`,
    '',
  );
  const caseRec = res.cases as Record<string, Record<string, unknown>>;
  const loadOf = (r: Measured) => (r?.loadBefore ? r.loadBefore[0]!.toFixed(1) : '—');

  lines.push('## Forward + backward (mean cross-entropy, all parameters), tokens/s', '');
  lines.push(
    '| model | side | best s | median s | tokens/s | loss | vs PyTorch (tokens/s ratio) | load (1 min) |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const [name, c] of Object.entries(caseRec)) {
    const fb = c.fb as Record<string, Measured & { rounds?: Measured[] }> | undefined;
    if (!fb) continue;
    const tokens = fb.tokens as unknown as number;
    const torchRate = fb.torch?.ok ? tokens / minOf(fb.torch) : Number.NaN;
    for (const [side, r] of Object.entries(fb)) {
      if (typeof r !== 'object' || !('side' in r)) continue;
      const rate = r.ok ? tokens / minOf(r) : Number.NaN;
      lines.push(
        `| ${name} | ${side} | ${r.ok ? f(minOf(r), 3) : `failed: ${String(r.error).slice(0, 80)}`} | ${f(medianOf(r), 3)} | ${f(rate, 1)} | ${r.ok ? f(r.loss as number, 5) : '—'} | ${side === 'torch' ? '1.00' : f(rate / torchRate)} | ${loadOf(r)} |`,
      );
    }
    if (fb.torch?.ok && fb['ours ort']?.ok) {
      const d = Math.abs((fb.torch.loss as number) - (fb['ours ort'].loss as number));
      lines.push(
        `| ${name} | loss check | | | | |diff| = ${d.toExponential(2)} | ${d < 1e-3 ? 'agree' : 'DISAGREE'} | |`,
      );
    }
  }
  lines.push('');

  lines.push('## Perplexity evaluation (forward only, NLL), tokens/s', '');
  lines.push(
    '| model | side | best s | tokens/s | mean NLL | vs PyTorch | load (1 min) |',
    '|---|---|---|---|---|---|---|',
  );
  for (const [name, c] of Object.entries(caseRec)) {
    const ev = c.eval as Record<string, Measured> | undefined;
    if (!ev) continue;
    const tokens = ev.tokens as unknown as number;
    const torchRate = ev.torch?.ok ? tokens / minOf(ev.torch) : Number.NaN;
    for (const [side, r] of Object.entries(ev)) {
      if (typeof r !== 'object' || !('side' in r)) continue;
      const rate = r.ok ? tokens / minOf(r) : Number.NaN;
      lines.push(
        `| ${name} | ${side} | ${r.ok ? f(minOf(r), 3) : `failed: ${String(r.error).slice(0, 80)}`} | ${f(rate, 1)} | ${r.ok ? f(r.nll as number, 5) : '—'} | ${side === 'torch' ? '1.00' : f(rate / torchRate)} | ${loadOf(r)} |`,
      );
    }
  }
  lines.push('');

  lines.push('## moreau-gs scoring end to end (4 x 128 tokens per iteration) and peak memory', '');
  lines.push(
    '| model | side | exec | iterations | wall s | vs PyTorch (time ratio) | peak RSS | fp32 model | peak / model | load (1 min) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const [name, c] of Object.entries(caseRec)) {
    const mo = c.moreau as Record<string, Measured> | undefined;
    if (!mo) continue;
    const torchS = mo.torch?.ok ? minOf(mo.torch) : Number.NaN;
    for (const [side, r] of Object.entries(mo)) {
      if (typeof r !== 'object' || r === null || !('side' in r)) continue;
      const s = r.ok ? minOf(r) : Number.NaN;
      const model = (r.modelBytes as number) ?? Number.NaN;
      const peak = (r.peakRssBytes as number) ?? Number.NaN;
      lines.push(
        `| ${name} | ${side} | ${(r.exec as string | undefined) ?? '—'} | ${mo.iterations} | ${r.ok ? f(s, 1) : `failed: ${String(r.error).slice(0, 120)}`} | ${side === 'torch' ? '1.00' : f(s / torchS)} | ${r.ok ? gb(peak) : '—'} | ${Number.isFinite(model) ? gb(model) : '—'} | ${r.ok ? f(peak / model, 2) : '—'} | ${loadOf(r)} |`,
      );
    }
  }
  lines.push('');

  const mfuRows: string[] = [];
  for (const [name, c] of Object.entries(caseRec)) {
    const mm = c.matmul as Measured | undefined;
    const fb = c.fb as Record<string, Measured> | undefined;
    if (!mm?.ok || !fb?.['ours ort']?.ok) continue;
    const config = c.config as Parameters<typeof matmulShapes>[0];
    const rates = mm.rates as { k: number; n: number; gflops: number }[];
    // FLOP-weighted harmonic mean of the bare rates over the model's linear shapes.
    let flops = 0;
    let secs = 0;
    for (const s of matmulShapes(config)) {
      const r = rates.find((x) => x.k === s.k && x.n === s.n);
      if (!r) continue;
      const fl = 2 * (fb.tokens as unknown as number) * s.k * s.n * s.count;
      flops += fl;
      secs += fl / (r.gflops * 1e9);
    }
    const bare = flops / secs / 1e9;
    const achieved = (fb.flops as unknown as number) / minOf(fb['ours ort']) / 1e9;
    mfuRows.push(
      `| ${name} | ${f(achieved, 1)} | ${f(bare, 1)} | ${f(mm.bestGflops as number, 1)} | ${f((100 * achieved) / bare, 1)}% | ${loadOf(mm)} |`,
    );
  }
  if (mfuRows.length) {
    lines.push('## Model FLOPs utilisation of forward + backward on ORT', '');
    lines.push(
      'Matmul FLOPs (3 x forward: linear layers + attention products) per second, against bare single-MatMul throughput at the same shapes ([B*T, K] x [K, N]) measured in this run.',
      '',
    );
    lines.push(
      '| model | fwd+bwd GFLOP/s | bare MatMul GFLOP/s (mean, FLOP-weighted) | bare best | MFU | load (1 min) |',
      '|---|---|---|---|---|---|',
    );
    lines.push(...mfuRows, '');
  }
  return `${lines.join('\n')}\n`;
}
