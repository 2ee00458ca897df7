/**
 * Robustness of pruning plans on stories260K (llama2.c's 260K-parameter TinyStories model): for
 * magnitude, taylor, moreau and moreau-gs at one ratio, the plan from the original weights is
 * compared with the plans from fp16 / bf16 round trips and Gaussian relative noise (IoU of the
 * pruned units, Spearman of the unit scores, perplexity of each pruned model).
 *
 *   npx tsx tools/robustness-stories260k.ts [--ratio 0.2] [--criteria magnitude,taylor,moreau,moreau-gs]
 *     [--perturbations fp16,bf16,gauss:0.01x3] [--backend ort|tfjs] [--threads 2]
 *     [--eval-windows 64] [--seq-len 128] [--calib-samples 4] [--seed 1] [--json out.json]
 *
 * Perplexity: the first --eval-windows non-overlapping windows of the tokenized TinyStories
 * validation head (BOS first). Calibration windows are drawn (seeded) from the tokens after that
 * region, one set per criterion, shared by all of its variants. Prints the markdown table and the
 * JSON report (shape: {ratio, results, baseline, dense}); progress goes to stderr.
 */

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadStories260k, makeBackend, shared } from './stories260k-setup.js';
import '@moreau/criteria';
import type { PrunableModel } from '@moreau/core';
import { formatRobustnessTable, lossPerplexity, perplexityWindows, readText, robustness } from '@moreau/eval';
import { LlamaModel } from '@moreau/models';

const { values } = parseArgs({
  options: {
    ratio: { type: 'string', default: '0.2' },
    criteria: { type: 'string', default: 'magnitude,taylor,moreau,moreau-gs' },
    perturbations: { type: 'string', default: 'fp16,bf16,gauss:0.01x3' },
    backend: { type: 'string', default: 'ort' },
    threads: { type: 'string', default: '2' },
    'eval-windows': { type: 'string', default: '64' },
    'seq-len': { type: 'string', default: '128' },
    'calib-samples': { type: 'string', default: '4' },
    seed: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
});

const seqLen = Number(values['seq-len']);
const evalWindows = Number(values['eval-windows']);

const { ckpt, tok } = await loadStories260k();
const stream = tok.encode(
  await readText(path.join(shared, 'data/tinystories/tinystories_validation_head.txt')),
  {
    bos: true,
  },
);
const windows = perplexityWindows(stream, seqLen, { limit: evalWindows });
const calibTokens = stream.slice(windows.length * seqLen);
const backend = await makeBackend(values.backend, Number(values.threads));
const model = new LlamaModel(ckpt.config, ckpt.tensors);
const t0 = performance.now();
let last = '';
const report = await robustness(model, {
  ratio: Number(values.ratio),
  criteria: values.criteria.split(',').map((s) => s.trim()),
  perturbations: values.perturbations.split(',').map((s) => s.trim()),
  calibration: {
    tokens: calibTokens,
    samples: Number(values['calib-samples']),
    seqLen,
    seed: Number(values.seed),
  },
  prune: { backend, seed: Number(values.seed) },
  evaluate: async (m: PrunableModel) => (await lossPerplexity(m, windows, { backend, batchSize: 8 })).ppl,
  onProgress: (p) => {
    const line = `[${((performance.now() - t0) / 1000).toFixed(0)}s] ${p.phase} ${p.done}/${p.total}`;
    if (line !== last) process.stderr.write(`${line}\n`);
    last = line;
  },
});
await backend.dispose();
const json = `${JSON.stringify(report, null, 2)}\n`;
if (values.json) writeFileSync(values.json, json);
console.log(
  `stories260K, ${backend.name}, ${windows.length} eval windows of ${seqLen} (TinyStories validation head), ` +
    `${values['calib-samples']} calibration windows of ${seqLen}, seed ${values.seed}, ` +
    `${((performance.now() - t0) / 1000).toFixed(0)} s\n`,
);
console.log(formatRobustnessTable(report));
console.log();
console.log(json);
