/**
 * Moreau from code: load Karpathy's stories260K (llama2.c), prune 20 % of its attention KV groups
 * and MLP channels with Moreau-GS on onnxruntime, compare the held-out loss before and after, and
 * save the pruned model as a Hugging Face directory together with its pruning plan.
 *
 *   npx tsx examples/programmatic/src/prune-stories260k.ts [--shared DIR] [--out DIR] [--ratio R]
 *       [--criterion NAME] [--iterations N] [--seed S]
 *
 * Defaults: --shared ../shared (or $MOREAU_SHARED), --out pruned-stories260k, --ratio 0.2,
 * --criterion moreau-gs with its default options (10 proximal steps).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
// Importing a backend package registers it ('ort'); importing the criteria registers the built-ins.
import '@moreau/backend-ort';
import '@moreau/criteria';
import {
  countParams,
  getBackend,
  getCriterion,
  type HostTensor,
  jit,
  planToJSON,
  prune,
  resolveOptions,
  sampleCalibration,
  tensor,
} from '@moreau/core';
import {
  Llama2cTokenizer,
  type LlamaConfig,
  LlamaModel,
  llamaLoss,
  loadLlama2c,
  saveHfDirectory,
} from '@moreau/models';

const { values: args } = parseArgs({
  options: {
    shared: { type: 'string', default: process.env.MOREAU_SHARED ?? '../shared' },
    out: { type: 'string', default: 'pruned-stories260k' },
    ratio: { type: 'string', default: '0.2' },
    criterion: { type: 'string', default: 'moreau-gs' },
    iterations: { type: 'string' },
    seed: { type: 'string', default: '1' },
  },
});
const shared = path.resolve(args.shared!);
const ratio = Number(args.ratio);
const seed = Number(args.seed);

// 1. The model, its tokenizer and some in-domain text.
const ckpt = await loadLlama2c(path.join(shared, 'models/stories260K/stories260K.bin'));
const tokenizer = await Llama2cTokenizer.load(
  path.join(shared, 'models/stories260K/tok512.bin'),
  ckpt.config.vocabSize,
);
const text = await readFile(path.join(shared, 'data/tinystories/tinystories_validation_head.txt'), 'utf8');
const ids = tokenizer.encode(text, { bos: true });
// Calibrate on the first half of the text, evaluate on the second.
const half = Math.floor(ids.length / 2);
const model = new LlamaModel(ckpt.config, ckpt.tensors);
const backend = await getBackend('ort');
console.log(
  `stories260K: ${ckpt.config.numHiddenLayers} layers, ${countParams(model.params)} parameters; ` +
    `${ids.length} tokens of TinyStories; backend ${backend.name} (${backend.device})`,
);

// 2. Held-out loss: mean next-token cross-entropy over 16 non-overlapping windows of 128 tokens.
const SEQ = 128;
const WINDOWS = 16;
const heldout = tensor(Int32Array.from(ids.slice(half, half + SEQ * WINDOWS)), [WINDOWS, SEQ], 'int32');
async function heldoutLoss(config: LlamaConfig, params: ReadonlyMap<string, HostTensor>): Promise<number> {
  const f = jit((p, x) => llamaLoss(p, x, config), { backend });
  const out = (await f(Object.fromEntries(params), heldout)) as HostTensor;
  f.dispose();
  return (out.data as Float32Array)[0]!;
}
const before = await heldoutLoss(ckpt.config, model.params);

// 3. Score and prune. The criterion says how many calibration iterations it draws windows for.
const criterion = getCriterion(args.criterion!);
const options = args.iterations ? { iterations: args.iterations } : {};
const iterations = criterion.calibrationIterations?.(resolveOptions(criterion, options)) ?? 1;
const calibration = sampleCalibration(ids.slice(0, half), { samples: 4, seqLen: SEQ, seed, iterations });
const t0 = performance.now();
let lastPhase = '';
const { plan, model: pruned } = await prune(model, {
  criterion,
  options,
  ratio,
  seed,
  calibration,
  backend,
  onProgress: (p) => {
    if (p.phase !== lastPhase || p.done === p.total) console.log(`  ${p.phase}: ${p.done}/${p.total}`);
    lastPhase = p.phase;
  },
});
const seconds = (performance.now() - t0) / 1000;
const prunedModel = pruned as LlamaModel;
const after = await heldoutLoss(prunedModel.config, prunedModel.params);

const n0 = countParams(model.params);
const n1 = countParams(prunedModel.params);
console.log(`${criterion.name} at ratio ${ratio}: ${seconds.toFixed(1)} s`);
for (const d of plan.groups) {
  console.log(
    d.group.kind === 'attention'
      ? `  layer ${d.group.layer}: KV groups kept ${JSON.stringify(d.kept)} of ${d.total}`
      : `  layer ${d.group.layer}: MLP channels kept ${d.kept.length} of ${d.total}`,
  );
}
console.log(`parameters: ${n0} -> ${n1} (${((100 * n1) / n0).toFixed(2)} % left)`);
console.log(
  `held-out loss: ${before.toFixed(4)} -> ${after.toFixed(4)} (perplexity ${Math.exp(before).toFixed(3)} -> ${Math.exp(after).toFixed(3)})`,
);

// 4. Save: an HF directory with per-layer sizes in config.json (plus the llama2.c tokenizer), and
// the plan, which `moreau prune --plan` or applyPlan() can re-apply to the original model.
const out = path.resolve(args.out!);
await saveHfDirectory(
  out,
  { config: prunedModel.config, tensors: new Map(prunedModel.params), format: 'hf', sourceDtype: 'F32' },
  { tokenizerFiles: tokenizer.toFiles(), overwrite: true },
);
await writeFile(`${out}.plan.json`, planToJSON(plan));
console.log(`saved ${out}/ and ${out}.plan.json`);
await backend.dispose();
