/**
 * Evaluates stories260K with @moreau/eval: perplexity on the TinyStories validation head,
 * WikiText-2 raw (test) and PTB (test) with LLM-Pruner's protocol, and zero-shot accuracy on the
 * seven standard tasks plus LAMBADA with lm-evaluation-harness's protocol.
 *
 *   npx tsx tools/eval-stories260k.ts [--backend ort|tfjs] [--threads 2] [--seq-len 128]
 *     [--ppl-limit N] [--task-limit N] [--tasks boolq,piqa,...] [--skip-ppl] [--skip-tasks] [--json out.json]
 *
 * Progress goes to stderr; a markdown table and the JSON results go to stdout.
 */

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  evaluateTask,
  loadTask,
  type PerplexityResult,
  perplexity,
  readText,
  STANDARD_TASKS,
  scoringModelFromLlama,
  type TaskResult,
} from '@moreau/eval';
import { loadStories260k, makeBackend, shared } from './stories260k-setup.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'ort' },
    threads: { type: 'string', default: '2' },
    'seq-len': { type: 'string', default: '128' },
    'batch-size': { type: 'string', default: '8' },
    'ppl-limit': { type: 'string' },
    'task-limit': { type: 'string' },
    tasks: { type: 'string', default: [...STANDARD_TASKS, 'lambada_openai'].join(',') },
    'skip-ppl': { type: 'boolean', default: false },
    'skip-tasks': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));

const { ckpt, tok } = await loadStories260k();
const backend = await makeBackend(values.backend, Number(values.threads));
const model = scoringModelFromLlama(ckpt.tensors, ckpt.config, backend, {
  batchSize: Number(values['batch-size']),
});
const t0 = performance.now();
const progress = (p: { phase: string; done: number; total: number }) => {
  if (p.done === p.total || p.done % 50 === 0)
    process.stderr.write(
      `[${((performance.now() - t0) / 1000).toFixed(0)}s] ${p.phase} ${p.done}/${p.total}\n`,
    );
};

const ppl: Record<string, PerplexityResult> = {};
if (!values['skip-ppl']) {
  const texts = {
    tinystories: 'data/tinystories/tinystories_validation_head.txt',
    'wikitext2-raw': 'data/wikitext-2-raw/wiki.test.raw',
    'ptb-test': 'data/ptb/ptb.test.txt',
  };
  for (const [name, file] of Object.entries(texts)) {
    const stream = tok.encode(await readText(path.join(shared, file)), { bos: true });
    const limit = num(values['ppl-limit']);
    ppl[name] = await perplexity(model, stream, {
      seqLen: Number(values['seq-len']),
      ...(limit !== undefined ? { limit } : {}),
      onProgress: (p) => progress({ ...p, phase: `ppl ${name}` }),
    });
  }
}
type Summary<T> = T extends unknown ? Omit<T, 'logprobs'> : never;
const zeroShot: Record<string, Summary<TaskResult>> = {};
if (!values['skip-tasks']) {
  for (const name of values.tasks.split(',')) {
    const limit = num(values['task-limit']);
    const { logprobs: _, ...r } = await evaluateTask(model, tok, await loadTask(shared, name), {
      ...(limit !== undefined ? { limit } : {}),
      onProgress: progress,
    });
    zeroShot[name] = r;
  }
}
model.dispose();
await backend.dispose();

const secs = ((performance.now() - t0) / 1000).toFixed(0);
console.log(`stories260K on ${backend.name} (${backend.device}), ${secs} s\n`);
if (Object.keys(ppl).length) {
  console.log(`| text | seq-len | windows | predicted tokens | NLL | PPL |\n|---|---|---|---|---|---|`);
  for (const [k, r] of Object.entries(ppl))
    console.log(
      `| ${k} | ${r.seqLen} | ${r.windows} | ${r.tokens} | ${r.nll.toFixed(4)} | ${r.ppl.toFixed(3)} |`,
    );
  console.log();
}
if (Object.keys(zeroShot).length) {
  console.log(`| task | n | acc | acc_norm | ppl |\n|---|---|---|---|---|`);
  for (const [k, r] of Object.entries(zeroShot)) {
    const norm = r.kind === 'multiple_choice' ? r.acc_norm.toFixed(4) : '';
    const p = r.kind === 'loglikelihood' ? r.ppl.toExponential(3) : '';
    console.log(`| ${k} | ${r.n} | ${r.acc.toFixed(4)} ± ${r.acc_stderr.toFixed(4)} | ${norm} | ${p} |`);
  }
  console.log();
}
const json = `${JSON.stringify({ backend: backend.name, ppl, zeroShot }, null, 2)}\n`;
if (values.json) writeFileSync(values.json, json);
console.log(json);
