/**
 * Peak memory and time of LoRA tuning at the TinyLlama-1.1B shape (22 layers, hidden 2048, 32 / 4
 * heads, MLP 5632, vocab 32000, untied head): a random model held in its storage dtype (bfloat16
 * by default, TinyLlama's), LoRA r 8 / alpha 16 / dropout 0.05 on all seven projections, `--steps`
 * optimizer steps of one micro-batch of 1 x `--seq` tokens, layer-streamed.
 *
 * The weights are generated one tensor at a time (counter-based normals, std 0.02) straight into
 * the storage dtype, so no float32 copy of the model ever exists; the peak resident memory
 * (VmHWM) is compared with the formula of packages/tune/README.md:
 *
 *   base weights (storage dtype) + 4 x adapter floats x 4 bytes (A/B, gradients, AdamW m, v)
 *   + the largest stage's weights in float32 (cast per stage) + the boundary activations
 *   (layers x B x T x hidden x 4 bytes) + one layer's forward / backward working set.
 *
 *   npx tsx tools/bench/tune-memory.ts [--steps 20] [--seq 256] [--micro 1] [--dtype bfloat16]
 *     [--mode streamed|whole|auto] [--threads N] [--out tools/bench/results/tune-tinyllama.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createOrtBackend } from '@moreau/backend-ort';
import {
  allStages,
  castHost,
  counterKey,
  DEFAULT_LORA_TARGETS,
  type FloatDType,
  fillCounterNormals,
  findLoraTargets,
  type HostTensor,
  sizeOf,
  tensor,
  tensorBytes,
} from '@moreau/core';
import { type LlamaConfig, LlamaModel, layerDims, llamaPreset } from '@moreau/models';
import { type Example, tuneLora } from '@moreau/tune';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '20' },
    seq: { type: 'string', default: '256' },
    micro: { type: 'string', default: '1' },
    dtype: { type: 'string', default: 'bfloat16' },
    mode: { type: 'string', default: 'streamed' },
    threads: { type: 'string' },
    out: { type: 'string', default: 'tools/bench/results/tune-tinyllama.json' },
  },
});
const STEPS = Number(args.steps);
const SEQ = Number(args.seq);
const MICRO = Number(args.micro);
const DTYPE = args.dtype as FloatDType;
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

function memory(): { rss: number; hwm: number } {
  const st = readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** The 1, 5 and 15-minute load averages. */
function loadAverage(): number[] {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

function log(line: string): void {
  const { rss, hwm } = memory();
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}  (rss ${MiB(rss)}, peak ${MiB(hwm)})`);
}

/** Every tensor of a LLaMA config with its shape, in Hugging Face names. */
function tensorShapes(c: LlamaConfig): [string, number[]][] {
  const h = c.hiddenSize;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocabSize, h]]];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const d = layerDims(c, l);
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.input_layernorm.weight`, [h]],
      [`${p}.self_attn.q_proj.weight`, [d.heads * c.headDim, h]],
      [`${p}.self_attn.k_proj.weight`, [d.kvHeads * c.headDim, h]],
      [`${p}.self_attn.v_proj.weight`, [d.kvHeads * c.headDim, h]],
      [`${p}.self_attn.o_proj.weight`, [h, d.heads * c.headDim]],
      [`${p}.post_attention_layernorm.weight`, [h]],
      [`${p}.mlp.gate_proj.weight`, [d.intermediate, h]],
      [`${p}.mlp.up_proj.weight`, [d.intermediate, h]],
      [`${p}.mlp.down_proj.weight`, [h, d.intermediate]],
    );
  }
  out.push(['model.norm.weight', [h]]);
  if (!c.tieWordEmbeddings) out.push(['lm_head.weight', [c.vocabSize, h]]);
  return out;
}

/** A random TinyLlama-shaped model in the storage dtype, one tensor at a time. */
function randomModel(): LlamaModel {
  const config = llamaPreset('tinyllama-1.1b');
  const params = new Map<string, HostTensor>();
  let i = 0;
  for (const [name, shape] of tensorShapes(config)) {
    const n = sizeOf(shape);
    const data = new Float32Array(n);
    if (shape.length === 1) data.fill(1);
    else {
      fillCounterNormals(counterKey(1, i, 0), 0, data);
      for (let j = 0; j < n; j++) data[j] = data[j]! * 0.02;
    }
    const t = tensor(data, shape, 'float32');
    params.set(name, DTYPE === 'float32' ? t : castHost(t, DTYPE));
    i++;
  }
  return new LlamaModel(config, params);
}

async function main(): Promise<void> {
  const loadStart = loadAverage();
  log(`TinyLlama shape, ${DTYPE} weights, ${STEPS} steps of ${MICRO} x ${SEQ} tokens, ${args.mode}`);
  const t0 = performance.now();
  const model = randomModel();
  const genSeconds = (performance.now() - t0) / 1000;
  const afterWeights = memory();
  log(`weights generated in ${genSeconds.toFixed(1)} s`);

  const config = model.config;
  let base = 0;
  for (const t of model.params.values()) base += tensorBytes(t);
  const targets = findLoraTargets(model.params, DEFAULT_LORA_TARGETS);
  const adapterFloats = targets.reduce((s, t) => s + 8 * (t.in + t.out), 0);
  const staged = model.stages();
  const largestStage = Math.max(
    ...allStages(staged).map((s) =>
      Object.values(s.params).reduce((n, p) => n + sizeOf(model.params.get(p)!.shape) * 4, 0),
    ),
  );
  const boundary = config.numHiddenLayers * MICRO * SEQ * config.hiddenSize * 4;
  const formula = { base, training_state: 4 * adapterFloats * 4, largest_stage_f32: largestStage, boundary };
  const formulaTotal = Object.values(formula).reduce((a, b) => a + b, 0);

  // Random windows: one micro-batch per step (batch = micro), every token a label.
  let seed = 7;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
  const examples: Example[] = Array.from({ length: STEPS * MICRO }, () => ({
    ids: Int32Array.from({ length: SEQ }, () => 2 + (rand() % (config.vocabSize - 2))),
    labels: new Uint8Array(SEQ).fill(1),
  }));

  const backend = await createOrtBackend(args.threads ? { intraOpNumThreads: Number(args.threads) } : {});
  const stepSeconds: number[] = [];
  let last = performance.now();
  const tTrain = performance.now();
  const result = await tuneLora(
    model,
    { train: examples },
    {
      backend,
      lora: { r: 8, alpha: 16, dropout: 0.05, targets: DEFAULT_LORA_TARGETS },
      batchSize: MICRO,
      microBatchSize: MICRO,
      maxSteps: STEPS,
      warmupSteps: 2,
      mode: args.mode as 'streamed' | 'whole' | 'auto',
      onProgress: (p) => {
        const now = performance.now();
        stepSeconds.push((now - last) / 1000);
        last = now;
        log(`step ${p.step}/${p.totalSteps}: loss ${p.loss.toFixed(4)}, ${stepSeconds.at(-1)!.toFixed(1)} s`);
      },
    },
  );
  const trainSeconds = (performance.now() - tTrain) / 1000;
  await backend.dispose();
  const end = memory();
  const sorted = [...stepSeconds].sort((a, b) => a - b);
  const out = {
    case: 'tinyllama-1.1b shape (random weights)',
    dtype: DTYPE,
    mode: result.mode,
    steps: result.steps,
    micro_batch: MICRO,
    seq_len: SEQ,
    adapter_params: adapterFloats,
    formula_bytes: formula,
    formula_total_bytes: formulaTotal,
    rss_after_weights_bytes: afterWeights.rss,
    peak_rss_bytes: end.hwm,
    peak_over_formula: end.hwm / formulaTotal,
    weights_seconds: genSeconds,
    train_seconds: trainSeconds,
    first_step_seconds: stepSeconds[0],
    median_step_seconds: sorted[Math.floor(sorted.length / 2)],
    tokens_per_second: (STEPS * MICRO * SEQ) / trainSeconds,
    loss_first: result.history[0]!.loss,
    loss_last: result.history.at(-1)!.loss,
    step_seconds: stepSeconds,
    load_average_1min: loadAverage()[0],
    load_average_start: loadStart,
    load_average_end: loadAverage(),
    cores: (await import('node:os')).cpus().length,
    date: new Date().toISOString(),
  };
  writeFileSync(args.out!, `${JSON.stringify(out, null, 2)}\n`);
  console.log(JSON.stringify(out, null, 2));
  console.log(
    `peak RSS ${MiB(end.hwm)} (formula ${MiB(formulaTotal)}: base ${MiB(base)} + adapters/optimizer ${MiB(formula.training_state)} + largest stage f32 ${MiB(largestStage)} + boundary ${MiB(boundary)}); ` +
      `${trainSeconds.toFixed(0)} s for ${STEPS} steps (median ${out.median_step_seconds!.toFixed(1)} s/step)`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
