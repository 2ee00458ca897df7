/**
 * The `moreau` command line: flags, defaults and help for every command. Handlers live in
 * commands/; this file only declares the contract.
 */
import { Command, InvalidArgumentError, Option } from 'commander';

export class UsageError extends Error {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly command?: Command,
  ) {
    super(message);
  }
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function parseRatio(value: string): number {
  const r = Number(value);
  if (value.trim() === '' || !Number.isFinite(r) || r < 0 || r >= 1) {
    throw new InvalidArgumentError(`ratio must be a number in [0, 1), got '${value}'`);
  }
  return r;
}

export function parseIntArg(name: string, min = 1) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${value}'`);
    return n;
  };
}

export function parseNumberArg(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n))
      throw new InvalidArgumentError(`${name} must be a number, got '${value}'`);
    return n;
  };
}

export function parseLayerRange(value: string): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(value);
  if (!m || Number(m[1]) > Number(m[2]))
    throw new InvalidArgumentError(`layer range must be A:B with A <= B (half-open), got '${value}'`);
  return [Number(m[1]), Number(m[2])];
}

/** NAME=VALUE pairs (for --ppl, --task, --opt). */
export function parsePair(flag: string, value: string): [string, string] {
  const i = value.indexOf('=');
  if (i <= 0 || i === value.length - 1) throw new UsageError(`${flag} expects NAME=VALUE, got '${value}'`);
  return [value.slice(0, i), value.slice(i + 1)];
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

function evalOptions(cmd: Command, pplFlag = '--ppl'): Command {
  return cmd
    .option(
      `${pplFlag} <NAME=FILE>`,
      'perplexity text (txt, jsonl with "text", parquet); repeatable',
      collect,
      [],
    )
    .option('--seq-len <n>', 'perplexity window length', parseIntArg('--seq-len', 2), 128)
    .option('--limit <n>', 'evaluate at most N windows / items per set', parseIntArg('--limit'))
    .option('--batch-size <n>', 'windows per forward pass', parseIntArg('--batch-size'), 8);
}

function calibOptions(cmd: Command): Command {
  return cmd
    .option('--calib <file>', "calibration text (default: the model's shipped held-out text, else required)")
    .option('--calib-samples <n>', 'calibration windows per iteration', parseIntArg('--calib-samples'), 4)
    .option('--calib-seq-len <n>', 'tokens per calibration window', parseIntArg('--calib-seq-len', 2), 128)
    .option('--calib-tokens <file>', 'replay exact windows: {"iterations": [[[ids...], ...], ...]}')
    .option('--save-calib <file>', 'write the windows used, in the --calib-tokens format')
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
    .option('--global', 'rank units globally across layers instead of per layer', false)
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
    .option('--plugin <module>', 'load a criterion plugin module (path or package); repeatable', collect, []);
}

export interface Handlers {
  info(model: string, opts: Record<string, unknown>): Promise<void>;
  eval(model: string, opts: Record<string, unknown>): Promise<void>;
  prune(model: string, opts: Record<string, unknown>): Promise<void>;
  compare(model: string, opts: Record<string, unknown>): Promise<void>;
  robustness(model: string, opts: Record<string, unknown>): Promise<void>;
  export(model: string, opts: Record<string, unknown>): Promise<void>;
  generate(model: string, opts: Record<string, unknown>): Promise<void>;
  criteria(opts: Record<string, unknown>): Promise<void>;
}

export function buildProgram(handlers: Handlers, version: string): Command {
  const program = new Command('moreau')
    .description(
      'Structured pruning of LLaMA-family models: MoreauPruner, Taylor, magnitude and random criteria, head to head',
    )
    .version(version)
    .configureHelp({ showGlobalOptions: true, sortOptions: false })
    .exitOverride();

  modelOptions(program.command('info').description('parameters, layers and per-layer sizes of a model'))
    .option('--json <file>', 'also write the result as JSON')
    .action((m, o) => handlers.info(m, o));

  evalOptions(modelOptions(program.command('eval').description('perplexity and zero-shot accuracy')))
    .option(
      '--task <NAME=FILE>',
      'zero-shot task: boolq | piqa | hellaswag | winogrande | arc_easy | arc_challenge | openbookqa | lambada; repeatable',
      collect,
      [],
    )
    .option('--json <file>', 'write the results as JSON')
    .action((m, o) => handlers.eval(m, o));

  calibOptions(
    modelOptions(program.command('prune').description('score with a criterion, prune, save an HF directory')),
  )
    .option(
      '--criterion <name>',
      'magnitude | random | taylor | moreau | moreau-gs | a plugin criterion (required unless --plan)',
    )
    .option(
      '--ratio <r>',
      'fraction of units to prune in each pruned layer, in [0, 1) (required unless --plan)',
      parseRatio,
    )
    .requiredOption('--out <dir>', 'output HF directory (written atomically)')
    .option('--overwrite', 'replace --out if it already exists', false)
    .option(
      '--steps <n>',
      'iterative pruning: reach the ratio in N score-and-cut steps',
      parseIntArg('--steps'),
      1,
    )
    .option('--plan-out <file>', 'write the pruning plan JSON')
    .option('--plan <file>', 'apply this saved plan instead of scoring')
    .option(
      '--dtype <dtype>',
      'storage dtype of the saved weights: float32 | float16 | bfloat16 (default: as loaded)',
    )
    .option('--eval-ppl <NAME=FILE>', 'evaluate perplexity of the pruned model; repeatable', collect, [])
    .option('--seq-len <n>', 'perplexity window length', parseIntArg('--seq-len', 2), 128)
    .option('--limit <n>', 'evaluate at most N windows', parseIntArg('--limit'))
    .option('--json <file>', 'write the result as JSON')
    .action((m, o) => handlers.prune(m, o));

  evalOptions(
    calibOptions(
      modelOptions(
        program.command('compare').description('prune with every criterion at every ratio and report'),
      ),
    ),
  )
    .requiredOption('--criteria <list>', 'comma-separated criteria, e.g. magnitude,taylor,moreau,moreau-gs')
    .requiredOption('--ratios <list>', 'comma-separated ratios, e.g. 0.1,0.2,0.3')
    .requiredOption('--report <dir>', 'report directory: report.json, report.md, report.html, charts')
    .option('--task <NAME=FILE>', 'zero-shot task to evaluate each pruned model on; repeatable', collect, [])
    .option(
      '--robustness',
      'also run the robustness analysis at each ratio (perplexity on the first --ppl text, at most --limit windows, default 32)',
      false,
    )
    .option('--perturb <list>', 'robustness perturbations', 'fp16,bf16,gauss:0.01x3')
    .action((m, o) => handlers.compare(m, o));

  evalOptions(
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
    .requiredOption('--ratio <r>', 'pruning ratio', parseRatio)
    .option('--perturb <list>', 'perturbations: fp16, bf16, gauss:EPSxK', 'fp16,bf16,gauss:0.01x3')
    .option('--json <file>', 'write the result as JSON')
    .action((m, o) => handlers.robustness(m, o));

  modelOptions(program.command('export').description('write a standalone ONNX model (input_ids -> logits)'))
    .requiredOption('--onnx <file>', 'output .onnx file')
    .option('--seq-len <n>', 'sequence length of the exported graph', parseIntArg('--seq-len'), 128)
    .option('--batch <n>', 'batch size of the exported graph', parseIntArg('--batch'), 1)
    .action((m, o) => handlers.export(m, o));

  modelOptions(program.command('generate').description('generate text (temperature 0 = greedy)'))
    .option('--prompt <text>', 'prompt; empty starts from BOS', '')
    .option('--max-tokens <n>', 'tokens to generate', parseIntArg('--max-tokens'), 64)
    .option('--temperature <t>', 'sampling temperature; 0 is greedy', parseNumberArg('--temperature'), 0)
    .option('--top-p <p>', 'nucleus sampling mass', parseNumberArg('--top-p'), 1)
    .option('--top-k <k>', 'sample among the k most likely tokens (0 = all)', parseIntArg('--top-k', 0), 0)
    .option('--seed <n>', 'sampling seed', parseIntArg('--seed', 0), 1)
    .action((m, o) => handlers.generate(m, o));

  program
    .command('criteria')
    .description('list the registered criteria and their options')
    .option('--plugin <module>', 'load a criterion plugin module first; repeatable', collect, [])
    .option('--json <file>', 'write the list as JSON')
    .action((o) => handlers.criteria(o));

  program.addHelpText(
    'after',
    `
Every command prints results on stdout and progress on stderr (--quiet silences it).
Run 'moreau <command> --help' for a command's flags and their defaults.

Exit status: 0 ok, 1 runtime error (the message names the file, field or option),
2 usage error (with the command's help), 130 interrupted (Ctrl-C; nothing half-written is left).`,
  );
  for (const c of [program, ...program.commands]) {
    c.exitOverride().showHelpAfterError(true);
    c.configureOutput({
      outputError: (str, write) => write(`moreau${c === program ? '' : ` ${c.name()}`}: ${str}`),
    });
    for (const o of c.options) {
      if (o.mandatory && !o.description.endsWith('(required)')) o.description = `${o.description} (required)`;
    }
  }
  return program;
}
