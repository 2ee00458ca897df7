/**
 * End to end on the BUILT binary: `moreau prune tiny --criterion taylor --ratio 0.3`, then
 * `moreau tune` on part of the tiny model's held-out Brown documents (the other part is the
 * perplexity text): perplexity falls, the merged model reloads with the logits of the pruned model
 * plus the adapter, Ctrl-C saves a checkpoint and --resume ends with the uninterrupted run's
 * adapter bit for bit, `moreau eval --adapter` scores the unmerged adapter like the merged model
 * (perplexity and zero-shot) and `moreau generate --adapter` decodes like it.
 * Short runs (a few steps of 8 windows of 128 tokens); tools/tune-tiny.ts does the 200-step run.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type HostTensor, ModelExecutor, type Tensor, tensor } from '@moreau/core';
import { type LlamaModel, loadLoraAdapter, loadModel, readSafetensors } from '@moreau/models';
import { sharedPath } from '@moreau/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, hasDist, type Run, repoRoot, moreau as run } from './e2e-helpers.js';

if (!hasDist) console.warn(`moreau tune e2e tests skipped: ${BIN} is missing (run \`npm run build\` first)`);

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-tune-e2e-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const tmp = (name: string) => path.join(TMP, name);

/** The built binary, run in TMP. */
const moreau = (args: readonly string[], onStderr?: (all: string, child: ChildProcess) => void) =>
  run(args, { cwd: TMP, ...(onStderr ? { onStderr } : {}) });

// The tiny model's 25 held-out documents: 20 to tune on, 5 to measure perplexity on.
const heldout = readFileSync(path.join(repoRoot, 'packages/models/assets/tiny/heldout.txt'), 'utf8').split(
  '\n\n',
);
writeFileSync(tmp('train.txt'), heldout.slice(0, 20).join('\n\n'));
writeFileSync(tmp('eval.txt'), heldout.slice(20).join('\n\n'));

/** One short tuning run's flags (one ORT thread: a deterministic engine for the bit-exact resume). */
const TUNE = [
  '--data',
  'train.txt',
  '--max-steps',
  '8',
  '--batch-size',
  '8',
  '--micro-batch-size',
  '4',
  '--cutoff-len',
  '128',
  '--lr',
  '2e-3',
  '--warmup-steps',
  '2',
  '--save-steps',
  '2',
  '--threads',
  '1',
];

const ids = tensor(
  Int32Array.from({ length: 2 * 32 }, (_, i) => (i * 37 + 11) % 4096),
  [2, 32],
  'int32',
);

async function logits(model: LlamaModel): Promise<HostTensor> {
  const ort = await import('@moreau/backend-ort');
  const backend = await ort.createOrtBackend({ intraOpNumThreads: 1 });
  const exec = await ModelExecutor.create(model, { backend, mode: 'whole' });
  const [out] = await exec.forward(
    [ids],
    (head: (h: Tensor) => Tensor, h: Tensor) => ({ logits: head(h) }),
    'logits',
  );
  exec.dispose();
  await backend.dispose();
  return out!.logits!;
}

function maxAbsDiff(a: HostTensor, b: HostTensor): number {
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

async function adapterHex(dir: string): Promise<Record<string, string>> {
  const { tensors } = await readSafetensors(path.join(dir, 'adapter_model.safetensors'));
  return Object.fromEntries(
    [...tensors].map(([n, t]) => [n, Buffer.from((t.data as Float32Array).buffer).toString('hex')]),
  );
}

describe.skipIf(!hasDist)('moreau tune (built binary, tiny model)', () => {
  let tuned: Run;
  beforeAll(async () => {
    const pruned = await moreau([
      'prune',
      'tiny',
      '--criterion',
      'taylor',
      '--ratio',
      '0.3',
      '--out',
      'P',
      '-q',
    ]);
    expect(pruned.code, pruned.stderr).toBe(0);
    tuned = await moreau([
      'tune',
      'P',
      ...TUNE,
      '--out',
      'T',
      '--adapter-out',
      'A',
      '--eval-ppl',
      'heldout=eval.txt',
      '--json',
      'tune.json',
    ]);
  });

  it('lowers held-out perplexity and writes the merged model, the PEFT adapter and checkpoints', () => {
    expect(tuned.code, tuned.stderr).toBe(0);
    const r = JSON.parse(readFileSync(tmp('tune.json'), 'utf8'));
    expect(r.steps).toBe(8);
    expect(r.ppl_after.heldout).toBeLessThan(r.ppl_before.heldout);
    expect(tuned.stdout).toMatch(/ppl heldout: \d+\.\d+ -> \d+\.\d+/);
    expect(r.history).toHaveLength(8);
    expect(readdirSync(tmp('T')).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const cfg = JSON.parse(readFileSync(tmp('A/adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0.05,
    });
    expect(readdirSync(tmp('T-checkpoints')).sort()).toEqual([
      'checkpoint-2',
      'checkpoint-4',
      'checkpoint-6',
    ]);
  });

  it('the merged model reloads with the logits of the pruned model plus the adapter', async () => {
    const P = (await loadModel(tmp('P'))).model;
    const T = (await loadModel(tmp('T'))).model;
    const A = await loadLoraAdapter(tmp('A'));
    expect(T.config).toEqual(P.config); // per-layer dims kept
    const unmerged = await logits(P.withLora(A));
    const merged = await logits(T);
    const untuned = await logits(P);
    const moved = maxAbsDiff(untuned, unmerged);
    expect(moved).toBeGreaterThan(1e-2);
    // Only the float16 rounding of the merged weights separates them.
    expect(maxAbsDiff(merged, unmerged)).toBeLessThan(moved / 20);
  });

  it('eval --adapter scores the unmerged adapter as the merged model (ppl and zero-shot), not as the base', async () => {
    // Zero-shot on the shared task files when they are there (perplexity always).
    const lambada = sharedPath('data/zeroshot/lambada_openai.jsonl');
    const arc = sharedPath('data/zeroshot/arc_easy.jsonl');
    const haveTasks = existsSync(lambada) && existsSync(arc);
    if (!haveTasks) console.warn(`eval --adapter: zero-shot part skipped (${lambada}, ${arc} missing)`);
    const tasks = haveTasks ? ['--task', `lambada=${lambada}`, '--task', `arc_easy=${arc}`] : [];
    const evalJson = async (name: string, model: readonly string[]) => {
      const r = await moreau([
        'eval',
        ...model,
        '--ppl',
        'heldout=eval.txt',
        ...tasks,
        '--limit',
        '20',
        '--json',
        `${name}.json`,
      ]);
      expect(r.code, r.stderr).toBe(0);
      return { r, j: JSON.parse(readFileSync(tmp(`${name}.json`), 'utf8')) };
    };
    const P = await evalJson('eval-P', ['P']);
    const T = await evalJson('eval-T', ['T']);
    const PA = await evalJson('eval-PA', ['P', '--adapter', 'A']);
    expect(PA.r.stderr).toMatch(/adapter A \(LoRA r 8, alpha 16 on q_proj, .*\), unmerged/);
    expect(PA.j.adapter).toEqual({
      dir: 'A',
      base_model: 'P',
      r: 8,
      lora_alpha: 16,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj', 'up_proj'],
    });
    expect(P.j.adapter).toBeNull();
    expect(PA.j.model).toEqual(P.j.model); // the base model's summary; the adapter is its own entry
    // T's weights are P's (float16) + (alpha / r) B A rounded to float16: each merged weight is
    // off by at most half an ulp, 2^-11 ~ 4.9e-4 relative, with independent signs, so the mean
    // NLL (log perplexity) of T and of P + the unmerged adapter agree far closer than 2^-11
    // relative would allow even if all roundings added up. Tolerance: 1e-3 nats (perplexity
    // within 0.1 %), while the adapter itself must move the NLL by more than 10x that.
    // Measured: |T - P+A| ~ 2e-5 nats; |P - P+A| ~ 5e-2 (heldout), ~1e-2 (lambada).
    const TOL = 1e-3;
    const nll = (e: typeof P) => e.j.nll.heldout as number;
    expect(Math.abs(nll(PA) - nll(T))).toBeLessThan(TOL);
    expect(Math.abs(nll(PA) - nll(P))).toBeGreaterThan(10 * TOL);
    expect(PA.j.ppl.heldout).toBeCloseTo(Math.exp(nll(PA)), 6);
    if (haveTasks) {
      // lambada's perplexity of the target words: the same comparison in log space.
      const lam = (e: typeof P) => Math.log(e.j.tasks.lambada.ppl as number);
      expect(Math.abs(lam(PA) - lam(T))).toBeLessThan(TOL);
      expect(Math.abs(lam(PA) - lam(P))).toBeGreaterThan(5 * TOL);
      // Multiple choice: an item flips only when two choices tie within the rounding.
      expect(PA.j.tasks.arc_easy.n).toBe(20);
      expect(Math.abs(PA.j.tasks.arc_easy.acc - T.j.tasks.arc_easy.acc)).toBeLessThanOrEqual(1 / 20);
    }
  }, 120_000);

  it('generate --adapter decodes greedily as the merged model', async () => {
    const gen = async (name: string, model: readonly string[], exec = 'auto') => {
      const r = await moreau([
        'generate',
        ...model,
        '--prompt',
        'The dog',
        '--max-tokens',
        '24',
        '--exec',
        exec,
        '--json',
        `${name}.json`,
        '-q',
      ]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(readFileSync(tmp(`${name}.json`), 'utf8'));
    };
    const P = await gen('gen-P', ['P']);
    const T = await gen('gen-T', ['T']);
    const PA = await gen('gen-PA', ['P', '--adapter', 'A']);
    const PAs = await gen('gen-PAs', ['P', '--adapter', 'A'], 'streamed');
    expect(PA.adapter).toMatchObject({ dir: 'A', r: 8 });
    expect(PA.generated_ids).toEqual(T.generated_ids);
    expect(PAs.generated_ids).toEqual(T.generated_ids);
    expect(PA.generated_ids).not.toEqual(P.generated_ids);
  }, 120_000);

  it('eval / generate --adapter refuse a folder that does not fit, naming it and the tensor', async () => {
    // The adapter of the pruned P on the unpruned tiny model: the shapes differ.
    const misfit = await moreau(['eval', 'tiny', '--adapter', 'A', '--ppl', 'heldout=eval.txt']);
    expect(misfit.code).toBe(1);
    expect(misfit.stderr).toMatch(
      /--adapter 'A' does not fit the model: LoRA adapter of model\.layers\.\d+\.\w+\.\w+_proj\.weight: expected .*lora_A\.weight \[8, \d+\] and .*lora_B\.weight \[\d+, 8\], got \[/,
    );
    const missing = await moreau(['generate', 'P', '--adapter', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--adapter: folder 'nope' not found/);
    const file = await moreau(['eval', 'P', '--adapter', 'eval.txt', '--ppl', 'heldout=eval.txt']);
    expect(file.code).toBe(1);
    expect(file.stderr).toMatch(/--adapter: 'eval\.txt' is a file/);
    const notPeft = await moreau(['eval', 'P', '--adapter', 'P', '--ppl', 'heldout=eval.txt']);
    expect(notPeft.code).toBe(1);
    expect(notPeft.stderr).toMatch(/adapter_config\.json: cannot read the adapter config/);
  });

  it('Ctrl-C saves a checkpoint; --resume ends with the uninterrupted adapter, bit for bit', async () => {
    let sent = false;
    const interrupted = await moreau(
      ['tune', 'P', ...TUNE, '--out', 'T2', '--checkpoint-dir', 'ck2'],
      (err, child) => {
        if (!sent && /step 2: checkpoint/.test(err)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    );
    expect(interrupted.code, interrupted.stderr).toBe(130);
    expect(interrupted.stderr).toMatch(/interrupted: checkpoint saved to .*ck2[\\/]checkpoint-\d+/);
    expect(existsSync(tmp('T2'))).toBe(false);
    const last = Math.max(...readdirSync(tmp('ck2')).map((n) => Number(n.split('-')[1])));
    expect(last).toBeGreaterThanOrEqual(2);
    const resumed = await moreau([
      'tune',
      'P',
      ...TUNE,
      '--resume',
      path.join('ck2', `checkpoint-${last}`),
      '--out',
      'T3',
      '--adapter-out',
      'A3',
      '--checkpoint-dir',
      'ck3',
    ]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(new RegExp(`tuning 8 steps from step ${last}`));
    expect(await adapterHex(tmp('A3'))).toEqual(await adapterHex(tmp('A')));
  });

  it('refuses a resume with other flags, naming them', async () => {
    const r = await moreau([
      'tune',
      'P',
      ...TUNE,
      '--lr',
      '1e-3',
      '--resume',
      'T-checkpoints/checkpoint-2',
      '--out',
      'T4',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/other settings: lr 0\.002 \(now 0\.001\)/);
    // A new run does not mix its checkpoints with an earlier run's.
    const mixed = await moreau(['tune', 'P', ...TUNE, '--out', 'T5', '--checkpoint-dir', 'T-checkpoints']);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toMatch(
      /holds checkpoints of an earlier run: continue it with --resume T-checkpoints[\\/]checkpoint-6/,
    );
  });

  it('compare --tune-data adds a tuned row per pruned model and dashed lines to the chart', async () => {
    const r = await moreau([
      'compare',
      'tiny',
      '--criteria',
      'taylor,magnitude',
      '--ratios',
      '0.3',
      '--ppl',
      'heldout=eval.txt',
      '--limit',
      '8',
      '--tune-data',
      'train.txt',
      '--max-steps',
      '3',
      '--tune-batch-size',
      '8',
      '--cutoff-len',
      '64',
      '--lr',
      '5e-3',
      '--warmup-steps',
      '1',
      '--report',
      'R',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(tmp('R/report.json'), 'utf8'));
    expect(report.settings.tuning).toMatchObject({
      data: 'train.txt',
      kind: 'text',
      lora_r: 8,
      max_steps: 3,
    });
    for (const run of report.runs) {
      expect(run.tuned.steps).toBe(3);
      expect(run.tuned.ppl.heldout).toBeGreaterThan(0);
      expect(run.tuned.ppl.heldout).not.toBe(run.ppl.heldout);
    }
    expect(r.stdout).toMatch(/\| taylor \+LoRA +\| +0\.3 \|/);
    expect(readFileSync(tmp('R/report.md'), 'utf8')).toMatch(/magnitude \+LoRA/);
    expect(readFileSync(tmp('R/perplexity_vs_ratio.svg'), 'utf8')).toMatch(/stroke-dasharray="6,4"/);
  });
});
