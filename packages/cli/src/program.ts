/**
 * The `moreau` command line: every command's flags, their defaults, their help and their parsed
 * type, declared once here. Parsing and validation live in internal/flags.ts; the commands in
 * internal/commands/. To add a command: declare it and its flags interface here, add its key to
 * Handlers, and implement it in internal/commands/ taking (model, CommandContext<ItsFlags>).
 */
import { Command, Option } from 'commander';
import {
  collect,
  collectPath,
  parseBatchShape,
  parseIntArg,
  parseJsonTarget,
  parseLayerRange,
  parseNumberArg,
  parsePath,
  parseRanking,
  parseRatio,
  parseScopeArg,
} from './internal/flags.js';

/** What --perturb accepts (robustness and compare). */
const PERTURB_HELP =
  'fp16, bf16 (weights cast and back), gauss:EPSxK (K draws of relative weight noise), compute:float16, compute:bfloat16 (scored in that compute dtype, compared with float32 and with each other), seed:K (K other seeds of the criterion itself; seed:3 is added for stochastic criteria unless listed, seed:0 drops it), calib:K (K other calibration draws)';

/** The flags given on the command line (the rest carry their declared defaults). */
export interface Explicit {
  readonly explicit?: ReadonlySet<string>;
}

/** Adds `explicit` (the keys whose value came from the command line) to a command's parsed flags. */
function withExplicit<F extends object>(flags: F, cmd: Command): F & Explicit {
  const explicit = new Set(Object.keys(flags).filter((k) => cmd.getOptionValueSource(k) === 'cli'));
  return { ...flags, explicit };
}

/** Flags of every command that loads a model. */
export interface ModelFlags {
  readonly tokenizer?: string;
  readonly backend: 'ort' | 'tfjs' | 'auto';
  readonly device?: string;
  readonly threads?: number;
  readonly quiet: boolean;
}

function modelOptions(cmd: Command): Command {
  return cmd
    .argument(
      '<model>',
      "HF directory, llama2c .bin (with --tokenizer), .gguf file, or a shipped model name ('tiny')",
    )
    .option(
      '--tokenizer <file>',
      'tokenizer for a llama2.c checkpoint (tok.bin) or an override for other formats',
      parsePath('--tokenizer'),
    )
    .addOption(
      new Option('--backend <name>', 'tensor engine').choices(['ort', 'tfjs', 'auto']).default('auto'),
    )
    .option(
      '--device <device>',
      'ort: cpu | cuda (default cpu); tfjs: cuda or an engine node-gpu | node | wasm | cpu (default: best available)',
    )
    .option('--threads <n>', 'intra-op threads for ort (default: all cores)', parseIntArg('--threads'))
    .option('-q, --quiet', 'no progress output on stderr', false);
}

/** How a command runs the model: --exec (every command that runs one). */
export interface ExecFlags {
  readonly exec: 'auto' | 'whole' | 'streamed';
}

function execOption(cmd: Command): Command {
  return cmd.addOption(
    new Option(
      '--exec <mode>',
      'run the model as one graph (whole), a layer at a time (streamed: memory bounded by a layer), or pick by the memory available (auto)',
    )
      .choices(['auto', 'whole', 'streamed'])
      .default('auto'),
  );
}

/** The dtype a command computes in: --compute-dtype (commands that score, evaluate or generate). */
export interface ComputeFlags {
  readonly computeDtype: 'float32' | 'float16' | 'bfloat16';
}

function computeDtypeOption(cmd: Command, what: string): Command {
  return cmd.addOption(
    new Option(
      '--compute-dtype <dtype>',
      `compute dtype of ${what}: float32, or float16 / bfloat16 emulated exactly on the float32 engines (each op computed in float32 from inputs rounded to the dtype, its output rounded to nearest even: .half() / .bfloat16() with float32 accumulation; several times slower; --json records the mode)`,
    )
      .choices(['float32', 'float16', 'bfloat16'])
      .default('float32'),
  );
}

/** An unmerged LoRA adapter applied at inference: --adapter (eval, generate). */
export interface AdapterFlags {
  readonly adapter?: string;
}

function adapterOption(cmd: Command): Command {
  return cmd.option(
    '--adapter <dir>',
    "a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors, e.g. tune's --adapter-out) applied unmerged on top of the model",
    parsePath('--adapter'),
  );
}

/** Where criterion state spills when it does not fit in memory (commands that score with a criterion). */
export interface StateFlags {
  readonly stateDir?: string;
}

function stateDirOption(cmd: Command): Command {
  return cmd.option(
    '--state-dir <dir>',
    'where criterion state goes when it does not fit in memory (default: a temporary folder)',
  );
}

/** How perplexity texts are read (every command that measures perplexity). */
export interface TextFlags {
  readonly pplJoin?: 'rows' | 'document';
  readonly field?: string;
}

function textOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--ppl-join <how>',
        'how a perplexity text is assembled: rows (each line a row as the HF wikitext script yields it, rows joined by "\\n\\n" as LLM-Pruner does) | document (a text file is one document); jsonl / parquet rows are always rows (default: document for text files)',
      ).choices(['rows', 'document']),
    )
    .option('--field <name>', 'jsonl field / parquet column holding the text (default: text; PTB: sentence)');
}

/** Flags of the commands that evaluate perplexity and zero-shot tasks. */
export interface EvalFlags extends TextFlags {
  readonly ppl: string[];
  readonly seqLen: number;
  readonly limit?: number;
  readonly batchSize: number;
}

function evalOptions(cmd: Command): Command {
  return textOptions(
    cmd
      .option('--ppl <NAME=FILE>', 'perplexity text (txt, jsonl, parquet); repeatable', collect, [])
      .option('--seq-len <n>', 'perplexity window length', parseIntArg('--seq-len', 2), 128)
      .option('--limit <n>', 'evaluate at most N windows / items per set', parseIntArg('--limit'))
      .option('--batch-size <n>', 'windows per forward pass', parseIntArg('--batch-size'), 8),
  );
}

/** Flags of the commands that score zero-shot tasks. */
export interface TaskFlags {
  readonly task: string[];
  readonly zeroshotProtocol: 'current' | 'harness-2023';
}

function taskOptions(cmd: Command, help: string): Command {
  return cmd
    .option('--task <NAME=FILE>', help, collect, [])
    .addOption(
      new Option(
        '--zeroshot-protocol <p>',
        "zero-shot tokenization: current (lm-eval v0.4 pair encoding, BOS) | harness-2023 (the papers' bundled harness: no BOS, context and continuation encoded apart)",
      )
        .choices(['current', 'harness-2023'])
        .default('current'),
    );
}

/** Flags of the commands that score with a criterion: calibration, selection, criterion options. */
export interface CalibFlags extends Explicit {
  readonly preset?: string;
  readonly calib?: string;
  readonly calibSampling: 'windows' | 'patches';
  readonly calibSamples: number;
  readonly calibSeqLen: number;
  readonly calibTokens?: string;
  readonly saveCalib?: string;
  readonly seed: number;
  readonly attnLayers?: [number, number];
  readonly mlpLayers?: [number, number];
  readonly global: boolean;
  readonly ranking?: string;
  readonly keepLowRatio?: number;
  readonly reduction?: string;
  readonly opt: string[];
  readonly plugin: string[];
}

function calibOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--preset <name>',
        "a published setup's defaults (criterion, options, ratio, calibration, layers; explicit flags win): moreaupruner | moreaupruner-paper | llm-pruner (see 'moreau criteria')",
      ).choices(['moreaupruner', 'moreaupruner-paper', 'llm-pruner']),
    )
    .option(
      '--calib <file>',
      "calibration text (default: the model's shipped held-out text, else required)",
      parsePath('--calib'),
    )
    .addOption(
      new Option(
        '--calib-sampling <how>',
        'windows: cut from the text tokenized once | patches: random 8 x L-character patches, each tokenized with BOS and cut to L tokens (the released MoreauPruner)',
      )
        .choices(['windows', 'patches'])
        .default('windows'),
    )
    .option('--calib-samples <n>', 'calibration windows per iteration', parseIntArg('--calib-samples'), 4)
    .option('--calib-seq-len <n>', 'tokens per calibration window', parseIntArg('--calib-seq-len', 2), 128)
    .option(
      '--calib-tokens <file>',
      'replay exact windows: {"iterations": [[[ids...], ...], ...]}',
      parsePath('--calib-tokens'),
    )
    .option(
      '--save-calib <file>',
      'write the windows used, in the --calib-tokens format',
      parsePath('--save-calib'),
    )
    .option(
      '--seed <n>',
      'seed for calibration windows, noise and random scores',
      parseIntArg('--seed', 0),
      1,
    )
    .option(
      '--attn-layers <A:B>',
      'half-open layer range for attention pruning (default: all)',
      parseLayerRange,
    )
    .option('--mlp-layers <A:B>', 'half-open layer range for MLP pruning (default: all)', parseLayerRange)
    .option('--global', 'the same as --ranking global-per-kind (kept from before --ranking)', false)
    .option(
      '--ranking <r>',
      'block scope: which units compete: local (per layer) | global-per-kind (heads with heads, channels with channels) | global-pool (heads and channels in one pool, as the released MoreauPruner code) (default: local)',
      parseRanking,
    )
    .option(
      '--keep-low-ratio <r>',
      "unstructured and N:M scopes: keep this fraction of the would-be-zeroed weights at random, seeded (the reference's keep_low_ratio; default 0)",
      parseRatio,
    )
    .option(
      '--reduction <r>',
      'reduction across group members: sum | mean | max | prod | first (default: per criterion)',
    )
    .option(
      '--opt <KEY=VALUE>',
      'criterion option, e.g. variant=param_mix, noiseStd=0; repeatable',
      collect,
      [],
    )
    .option(
      '--plugin <module>',
      'load a criterion plugin module (path or package); repeatable',
      collectPath('--plugin'),
      [],
    );
}

/** The LoRA and training flags `tune` and `compare --tune-data` share (LLM-Pruner's defaults). */
export interface TuneTrainFlags {
  readonly template?: string;
  readonly loraR: number;
  readonly loraAlpha: number;
  readonly loraDropout: number;
  readonly loraTargets: string;
  readonly epochs: number;
  readonly lr: number;
  readonly microBatchSize: number;
  readonly cutoffLen: number;
  readonly warmupSteps: number;
  readonly maxSteps?: number;
  readonly trainOnInputs: boolean;
  readonly valSetSize: number;
  readonly evalSteps: number;
}

function tuneTrainOptions(cmd: Command): Command {
  return cmd
    .option(
      '--template <file>',
      "prompt template JSON (prompt_input, prompt_no_input, response_split); default Alpaca-LoRA's",
    )
    .option('--lora-r <n>', 'LoRA rank', parseIntArg('--lora-r'), 8)
    .option(
      '--lora-alpha <a>',
      'LoRA alpha (the update is scaled by alpha / r)',
      parseNumberArg('--lora-alpha'),
      16,
    )
    .option(
      '--lora-dropout <p>',
      "dropout on the adapters' input while training, in [0, 1)",
      parseNumberArg('--lora-dropout'),
      0.05,
    )
    .option(
      '--lora-targets <list>',
      'projections to adapt',
      'q_proj,k_proj,v_proj,o_proj,gate_proj,down_proj,up_proj',
    )
    .option('--epochs <n>', 'epochs over the training examples', parseNumberArg('--epochs'), 2)
    .option(
      '--lr <rate>',
      'peak learning rate (linear warmup, then linear decay to 0)',
      parseNumberArg('--lr'),
      1e-4,
    )
    .option(
      '--micro-batch-size <n>',
      'examples per forward / backward pass',
      parseIntArg('--micro-batch-size'),
      4,
    )
    .option(
      '--cutoff-len <n>',
      'longest example in tokens (longer ones are cut, without EOS)',
      parseIntArg('--cutoff-len', 2),
      256,
    )
    .option('--warmup-steps <n>', 'steps of linear warmup', parseIntArg('--warmup-steps', 0), 100)
    .option(
      '--max-steps <n>',
      'stop after N optimizer steps (overrides --epochs)',
      parseIntArg('--max-steps'),
    )
    .option('--train-on-inputs', 'loss on prompt and response (default)', true)
    .option('--no-train-on-inputs', 'loss on the response only')
    .option(
      '--val-set-size <n>',
      'examples held out for the validation loss',
      parseIntArg('--val-set-size', 0),
      0,
    )
    .option('--eval-steps <n>', 'validation loss every N steps', parseIntArg('--eval-steps'), 100);
}

// The parsed flags of each command: commander's camelCase keys, with the defaults declared below.
export type InfoFlags = ModelFlags & { readonly json?: string };
export type EvalCommandFlags = ModelFlags &
  EvalFlags &
  TaskFlags &
  ExecFlags &
  ComputeFlags &
  AdapterFlags & { readonly json?: string };
/** --latency BxT: measure the forward latency of the dense and pruned models at batch x length. */
export interface LatencyFlags {
  readonly latency?: [number, number];
}
export interface PruneFlags
  extends ModelFlags,
    CalibFlags,
    TextFlags,
    LatencyFlags,
    ExecFlags,
    ComputeFlags,
    StateFlags {
  readonly criterion?: string;
  readonly ratio?: number;
  readonly scope: string;
  readonly keepFirst?: number;
  readonly planScores: boolean;
  /** Undefined with --plan-out: only the plan is written. */
  readonly out?: string;
  readonly overwrite: boolean;
  readonly force: boolean;
  readonly steps: number;
  readonly planOut?: string;
  readonly plan?: string;
  readonly dtype?: string;
  readonly evalPpl: string[];
  readonly seqLen: number;
  readonly limit?: number;
  readonly json?: string;
}
export interface CompareFlags
  extends ModelFlags,
    CalibFlags,
    EvalFlags,
    TaskFlags,
    LatencyFlags,
    ExecFlags,
    ComputeFlags,
    StateFlags,
    TuneTrainFlags {
  readonly tuneData?: string;
  readonly tuneBatchSize: number;
  readonly criteria: string;
  readonly ratios: string;
  readonly scopes: string;
  readonly report: string;
  readonly robustness: boolean;
  readonly perturb: string;
  readonly json?: string;
}
export interface RobustnessFlags extends ModelFlags, CalibFlags, EvalFlags, ExecFlags, StateFlags {
  readonly criteria: string;
  readonly ratio?: number;
  readonly scope: string;
  readonly perturb: string;
  /** KEY=V1,V2,... per swept criterion option (the grid is every combination). */
  readonly sweep: string[];
  readonly report?: string;
  readonly json?: string;
}
export interface TuneFlags extends ModelFlags, TuneTrainFlags {
  readonly data: string;
  readonly batchSize: number;
  readonly seed: number;
  readonly saveSteps: number;
  readonly checkpointDir?: string;
  readonly resume?: string;
  readonly out: string;
  readonly adapterOut?: string;
  readonly overwrite: boolean;
  readonly evalPpl: string[];
  readonly seqLen: number;
  readonly limit?: number;
  readonly json?: string;
}
export type ExportFlags = ModelFlags & {
  readonly onnx: string;
  readonly withPast?: boolean;
  readonly overwrite: boolean;
  readonly json?: string;
};
export interface GenerateFlags extends ModelFlags, ExecFlags, ComputeFlags, AdapterFlags {
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly seed: number;
  readonly json?: string;
}
export type CriteriaFlags = { readonly plugin: string[]; readonly json?: string };
export interface InitFlags {
  readonly preset: string;
  readonly dtype: 'float32' | 'float16' | 'bfloat16';
  readonly out: string;
  readonly seed: number;
  readonly layers?: number;
  readonly overwrite: boolean;
  readonly quiet: boolean;
  readonly json?: string;
}

/** What each command does with its model argument and its parsed flags (commands/ implements them). */
export interface Handlers {
  info(model: string, flags: InfoFlags): Promise<void>;
  eval(model: string, flags: EvalCommandFlags): Promise<void>;
  prune(model: string, flags: PruneFlags): Promise<void>;
  compare(model: string, flags: CompareFlags): Promise<void>;
  tune(model: string, flags: TuneFlags): Promise<void>;
  robustness(model: string, flags: RobustnessFlags): Promise<void>;
  export(model: string, flags: ExportFlags): Promise<void>;
  generate(model: string, flags: GenerateFlags): Promise<void>;
  criteria(flags: CriteriaFlags): Promise<void>;
  init(flags: InitFlags): Promise<void>;
}

const SCOPE_LIST = 'block | channel | layer | unstructured | N:M (e.g. 2:4)';
const SCOPE_HELP = `what a pruned unit is: ${SCOPE_LIST}. block: attention KV groups and MLP channels per layer; channel: hidden channels of the whole model; layer: whole decoder layers; unstructured: single weights, per row; N:M: N of every M consecutive weights`;

/**
 * The program. Each command's flags are declared here once, with their defaults; the interface of
 * the same name above is their parsed type (commander yields exactly these keys).
 */
export function buildProgram(handlers: Handlers, version: string): Command {
  const program = new Command('moreau')
    .description(
      'Structured pruning of LLaMA-family models: MoreauPruner, Taylor, magnitude and random criteria, head to head',
    )
    .version(version)
    .configureHelp({ showGlobalOptions: true, sortOptions: false })
    .exitOverride();

  modelOptions(program.command('info').description('parameters, layers and per-layer sizes of a model'))
    .option('--json <file>', 'also write the result as JSON (- for stdout)', parseJsonTarget)
    .action((m, o: InfoFlags) => handlers.info(m, o));

  adapterOption(
    computeDtypeOption(
      execOption(
        taskOptions(
          evalOptions(modelOptions(program.command('eval').description('perplexity and zero-shot accuracy'))),
          'zero-shot task: boolq | piqa | hellaswag | winogrande | arc_easy | arc_challenge | openbookqa | lambada; repeatable',
        ),
      ),
      'evaluation',
    ),
  )
    .option('--json <file>', 'write the results as JSON (- for stdout)', parseJsonTarget)
    .action((m, o: EvalCommandFlags) => handlers.eval(m, o));

  const prune = calibOptions(
    modelOptions(program.command('prune').description('score with a criterion, prune, save an HF directory')),
  )
    .option(
      '--criterion <name>',
      'magnitude | random | taylor | moreau | moreau-gs | block-influence | a plugin criterion (required unless --plan, --preset or --keep-first)',
    )
    .option(
      '--ratio <r>',
      "fraction to prune, in [0, 1): of each group's units (block, channel), of the layers (layer), of each weight row (unstructured) (required unless --plan, --preset, --keep-first or N:M)",
      parseRatio,
    )
    .option('--scope <s>', SCOPE_HELP, parseScopeArg, 'block')
    .option(
      '--keep-first <n>',
      "layer scope, LLM-Pruner's rule: keep layers 0..N-1 and remove the rest (no criterion, no ratio)",
      parseIntArg('--keep-first'),
    )
    .option(
      '--out <dir>',
      'output HF directory (written atomically); required unless --plan-out is given (then only the plan is written)',
      parsePath('--out'),
    )
    .option(
      '--overwrite',
      'replace --out if it already exists and holds an earlier output of moreau prune',
      false,
    )
    .option('--force', 'with --overwrite: replace --out even if it holds other files', false)
    .option(
      '--steps <n>',
      'iterative pruning: reach the ratio in N score-and-cut steps',
      parseIntArg('--steps'),
      1,
    )
    .option('--plan-out <file>', 'write the pruning plan JSON', parsePath('--plan-out'))
    .option(
      '--plan-scores',
      "write scores into the plan: unit scores, or (unstructured, N:M) each matrix's float32 salience instead of its mask bitset",
      false,
    )
    .option('--plan <file>', 'apply this saved plan instead of scoring', parsePath('--plan'))
    .option(
      '--dtype <dtype>',
      'storage dtype of the saved weights: float32 | float16 | bfloat16 (default: as loaded)',
    )
    .option('--eval-ppl <NAME=FILE>', 'evaluate perplexity of the pruned model; repeatable', collect, [])
    .option('--seq-len <n>', 'perplexity window length', parseIntArg('--seq-len', 2), 128)
    .option('--limit <n>', 'evaluate at most N windows', parseIntArg('--limit'))
    .option(
      '--latency <BxT>',
      'also time a forward pass of batch B x T tokens, dense and pruned (e.g. 1x64; MACs are always counted)',
      parseBatchShape,
    )
    .option('--json <file>', 'write the result as JSON (- for stdout)', parseJsonTarget);
  stateDirOption(
    computeDtypeOption(execOption(textOptions(prune)), 'scoring (gradients included) and --eval-ppl'),
  ).action((m, o: PruneFlags, cmd: Command) => handlers.prune(m, withExplicit(o, cmd)));

  const compare = evalOptions(
    calibOptions(
      modelOptions(
        program.command('compare').description('prune with every criterion at every ratio and report'),
      ),
    ),
  )
    .requiredOption('--criteria <list>', 'comma-separated criteria, e.g. magnitude,taylor,moreau,moreau-gs')
    .requiredOption(
      '--ratios <list>',
      'comma-separated ratios, e.g. 0.1,0.2,0.3 (N:M scopes run once, at N/M)',
    )
    .option('--scopes <list>', `comma-separated scopes, one chart each: ${SCOPE_LIST}`, 'block')
    .requiredOption(
      '--report <dir>',
      'report directory: report.json, report.md, report.html, charts (an earlier report is replaced)',
      parsePath('--report'),
    )
    .option(
      '--latency <BxT>',
      'also time a forward pass of batch B x T tokens of every model (e.g. 1x64; MACs are always counted)',
      parseBatchShape,
    )
    .option(
      '--robustness',
      'also run the robustness analysis at each ratio (perplexity on the first --ppl text, at most --limit windows, default 32)',
      false,
    )
    .option('--perturb <list>', `robustness perturbations (${PERTURB_HELP})`, 'fp16,bf16,gauss:0.01x3')
    .option(
      '--tune-data <file>',
      'also LoRA-tune every pruned model on this data and report it as a tuned row',
      parsePath('--tune-data'),
    )
    .option(
      '--tune-batch-size <n>',
      'examples per tuning step (with --tune-data)',
      parseIntArg('--tune-batch-size'),
      64,
    )
    .option('--json <file>', 'also write report.json here (- for stdout)', parseJsonTarget);
  // compare --tune-data takes the tuning flags of `tune` (its --batch-size and --seed are compare's own).
  stateDirOption(
    computeDtypeOption(
      execOption(
        taskOptions(tuneTrainOptions(compare), 'zero-shot task to evaluate each pruned model on; repeatable'),
      ),
      'scoring and evaluation (not --robustness, whose reference is float32: use its compute:D perturbations; not --tune-data)',
    ),
  ).action((m, o: CompareFlags, cmd: Command) => handlers.compare(m, withExplicit(o, cmd)));

  tuneTrainOptions(
    modelOptions(
      program
        .command('tune')
        .description('LoRA recovery tuning (LLM-Pruner post_training): merged HF directory + PEFT adapter'),
    ),
  )
    .requiredOption(
      '--data <file>',
      'Alpaca-format JSON / JSONL (instruction, input, output), or text (txt, jsonl "text", parquet)',
      parsePath('--data'),
    )
    .option(
      '--batch-size <n>',
      'examples per optimizer step (gradients accumulated over micro-batches)',
      parseIntArg('--batch-size'),
      64,
    )
    .option(
      '--seed <n>',
      'seed of the adapters, the data order, the split and dropout',
      parseIntArg('--seed', 0),
      1,
    )
    .option('--save-steps <n>', 'checkpoint every N steps', parseIntArg('--save-steps'), 200)
    .option(
      '--checkpoint-dir <dir>',
      'where checkpoint-<step> folders go (default: <out>-checkpoints)',
      parsePath('--checkpoint-dir'),
    )
    .option(
      '--resume <dir>',
      'continue from a checkpoint folder (same flags and data)',
      parsePath('--resume'),
    )
    .requiredOption(
      '--out <dir>',
      'the merged model: an HF directory (written atomically)',
      parsePath('--out'),
    )
    .option('--adapter-out <dir>', 'also write the adapter as a PEFT folder', parsePath('--adapter-out'))
    .option('--overwrite', 'replace --out / --adapter-out if they exist', false)
    .option('--eval-ppl <NAME=FILE>', 'perplexity before and after tuning; repeatable', collect, [])
    .option('--seq-len <n>', 'perplexity window length', parseIntArg('--seq-len', 2), 128)
    .option('--limit <n>', 'evaluate at most N windows', parseIntArg('--limit'))
    .option('--json <file>', 'write the result as JSON (- for stdout)', parseJsonTarget)
    .action((m, o: TuneFlags) => handlers.tune(m, o));

  const robustness = evalOptions(
    calibOptions(
      modelOptions(
        program
          .command('robustness')
          .description(
            "how far each criterion's plan moves under weight perturbation (perplexity on the first --ppl text, at most --limit windows, default 32)",
          ),
      ),
    ),
  )
    .requiredOption('--criteria <list>', 'comma-separated criteria')
    .option('--ratio <r>', 'pruning ratio (required unless the scope is N:M)', parseRatio)
    .option('--scope <s>', SCOPE_HELP, parseScopeArg, 'block')
    .option('--perturb <list>', `perturbations: ${PERTURB_HELP}`, 'fp16,bf16,gauss:0.01x3')
    .option(
      '--sweep <KEY=V1,V2,...>',
      'repeat the analysis for each value of a criterion option (e.g. lr=2e-4,2e-3); repeatable: the grid is every combination; each criterion takes the keys it has',
      collect,
      [],
    )
    .option('--report <dir>', 'also write report.json, report.md and the chart (SVG, PNG) to this directory')
    .option('--json <file>', 'write the result as JSON (- for stdout)', parseJsonTarget);
  stateDirOption(execOption(robustness)).action((m, o: RobustnessFlags, cmd: Command) =>
    handlers.robustness(m, withExplicit(o, cmd)),
  );

  modelOptions(
    program
      .command('export')
      .description(
        'write a standalone ONNX model: int64 input_ids + attention_mask [batch, seq] -> logits [batch, seq, vocab], any batch and length (Optimum / transformers.js names)',
      ),
  )
    .requiredOption('--onnx <file>', 'output .onnx file', parsePath('--onnx'))
    .option('--overwrite', 'replace --onnx if the file exists', false)
    .option(
      '--with-past',
      'add the key/value cache: past_key_values.{i}.key/value inputs, present.{i}.key/value outputs',
      false,
    )
    .option('--json <file>', 'write what was exported as JSON (- for stdout)', parseJsonTarget)
    .action((m, o: ExportFlags) => handlers.export(m, o));

  const generate = modelOptions(
    program.command('generate').description('generate text (temperature 0 = greedy)'),
  )
    .option('--prompt <text>', 'prompt; empty starts from BOS', '')
    .option('--max-tokens <n>', 'tokens to generate', parseIntArg('--max-tokens'), 64)
    .option(
      '--temperature <t>',
      'sampling temperature, >= 0; 0 is greedy',
      parseNumberArg('--temperature', { min: 0 }),
      0,
    )
    .option(
      '--top-p <p>',
      'nucleus sampling mass, in (0, 1]',
      parseNumberArg('--top-p', { min: 0, minExclusive: true, max: 1 }),
      1,
    )
    .option('--top-k <k>', 'sample among the k most likely tokens (0 = all)', parseIntArg('--top-k', 0), 0)
    .option('--seed <n>', 'sampling seed', parseIntArg('--seed', 0), 1)
    .option('--json <file>', 'write the prompt, text and token ids as JSON (- for stdout)', parseJsonTarget);
  adapterOption(computeDtypeOption(execOption(generate), 'generation')).action((m, o: GenerateFlags) =>
    handlers.generate(m, o),
  );

  program
    .command('criteria')
    .description('list the registered criteria and their options')
    .option(
      '--plugin <module>',
      'load a criterion plugin module first; repeatable',
      collectPath('--plugin'),
      [],
    )
    .option('--json <file>', 'write the list as JSON (- for stdout)', parseJsonTarget)
    .action((o: CriteriaFlags) => handlers.criteria(o));

  program
    .command('init')
    .description(
      'write a random model of a preset shape (HF directory: sharded safetensors, config.json, a generated byte-level tokenizer), one tensor at a time',
    )
    .requiredOption(
      '--preset <name>',
      'llama-7b | llama-13b | llama-2-7b | llama-3-8b | vicuna-7b | tinyllama-1.1b | synthetic-60m',
    )
    .addOption(
      new Option('--dtype <dtype>', 'storage dtype of the weights')
        .choices(['float32', 'float16', 'bfloat16'])
        .default('float16'),
    )
    .requiredOption('--out <dir>', 'output HF directory (written atomically)', parsePath('--out'))
    .option('--seed <n>', 'seed of the random weights', parseIntArg('--seed', 0), 1)
    .option(
      '--layers <n>',
      "keep only the first N decoder layers (default: the preset's)",
      parseIntArg('--layers'),
    )
    .option('--overwrite', 'replace --out if it already exists and holds an earlier model output', false)
    .option('-q, --quiet', 'no progress output on stderr', false)
    .option('--json <file>', 'write what was written as JSON (- for stdout)', parseJsonTarget)
    .action((o: InitFlags) => handlers.init(o));

  program.addHelpText(
    'after',
    `
Every command prints results on stdout and progress on stderr (--quiet silences it).
--json - prints the JSON result on stdout instead (the text results then go to stderr).
Run 'moreau <command> --help' for a command's flags and their defaults.

Exit status: 0 ok (every output complete), 1 runtime error (the message names the file, field
or option), 2 usage error, 130 interrupted (Ctrl-C / SIGTERM; every output is as before the
run; a second Ctrl-C stops at once).`,
  );
  for (const c of [program, ...program.commands]) {
    c.exitOverride().showHelpAfterError(
      `(run 'moreau${c === program ? '' : ` ${c.name()}`} --help' for ${c === program ? 'the commands' : 'its flags'})`,
    );
    c.configureOutput({
      outputError: (str, write) => write(`moreau${c === program ? '' : ` ${c.name()}`}: ${str}`),
    });
    for (const o of c.options) {
      if (o.mandatory && !o.description.endsWith('(required)')) o.description = `${o.description} (required)`;
    }
  }
  return program;
}
