/**
 * LoRA tuning as `tune` and `compare --tune-data` run it: the LoRA config and data from the flags,
 * a progress bar with the loss and tokens/s, notes for validation losses and checkpoints.
 */
import { checkLoraConfig, InputError, type LoraConfig, type PrunableModel } from '@moreau/core';
import type { Tokenizer } from '@moreau/models';
import {
  loadTemplate,
  loadTuningData,
  type PromptTemplate,
  type TuneOptions,
  type TuneResult,
  type TuningData,
  tuneLora,
} from '@moreau/tune';
import type { TuneTrainFlags } from '../program.js';
import type { BackendContext } from './context.js';
import { UsageError } from './flags.js';
import type { ProgressReporter } from './progress.js';

/** --lora-r / --lora-alpha / --lora-dropout / --lora-targets as a LoRA config (usage errors). */
export function loraConfigFromFlags(flags: TuneTrainFlags): LoraConfig {
  const targets = flags.loraTargets
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (new Set(targets).size !== targets.length)
    throw new UsageError(`--lora-targets: a module is listed twice in '${flags.loraTargets}'`);
  const config = { r: flags.loraR, alpha: flags.loraAlpha, dropout: flags.loraDropout, targets };
  try {
    checkLoraConfig(config);
  } catch (e) {
    throw new UsageError(`--lora-${(e as InputError).field ?? 'targets'}: ${(e as Error).message}`);
  }
  if (!(flags.epochs > 0)) throw new UsageError(`--epochs must be positive, got ${flags.epochs}`);
  if (!(flags.lr >= 0)) throw new UsageError(`--lr must be a non-negative number, got ${flags.lr}`);
  return config;
}

/** The prompt template of --template (undefined: the embedded Alpaca-LoRA one). */
export async function templateFromFlags(flags: TuneTrainFlags): Promise<PromptTemplate | undefined> {
  return flags.template ? loadTemplate(flags.template) : undefined;
}

/** Reads and tokenizes the data file, with a note saying what was read. */
export async function tuningDataFromFlags(
  file: string,
  tokenizer: Tokenizer,
  flags: TuneTrainFlags,
  seed: number,
  progress: ProgressReporter,
  template?: PromptTemplate,
): Promise<TuningData> {
  const data = await loadTuningData(file, tokenizer, {
    ...(template ? { template } : {}),
    cutoffLen: flags.cutoffLen,
    trainOnInputs: flags.trainOnInputs,
    valSetSize: flags.valSetSize,
    seed,
  });
  const what =
    data.kind === 'instructions'
      ? `${data.read} instruction records`
      : `${data.read} windows of ${flags.cutoffLen} tokens`;
  const extra = [
    data.truncated ? `${data.truncated} cut at ${flags.cutoffLen} tokens` : '',
    data.skipped ? `${data.skipped} left out: no response token within the cutoff` : '',
  ].filter(Boolean);
  progress.note(
    `data ${file}: ${what} -> ${data.train.length} training / ${data.validation.length} validation examples${extra.length ? ` (${extra.join('; ')})` : ''}`,
  );
  return data;
}

/** Runs tuneLora with the CLI's progress (bar: loss, tokens/s; notes: validation, checkpoints). */
export async function runTuning(
  run: BackendContext<unknown>,
  model: PrunableModel,
  data: TuningData,
  options: Omit<TuneOptions, 'backend' | 'signal' | 'onProgress' | 'onEvent'>,
): Promise<TuneResult> {
  const { progress } = run;
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  try {
    return await tuneLora(model, data, {
      ...options,
      backend: run.backend,
      signal: run.signal,
      onProgress: (p) =>
        progress.update({
          phase: 'tune',
          done: p.step,
          total: p.totalSteps,
          detail: `loss ${p.loss.toFixed(4)} | lr ${p.lr.toExponential(2)} | ${fmt(p.tokensPerSecond)} tok/s`,
        }),
      onEvent: (e) => {
        if (e.kind === 'start') {
          progress.note(
            `tuning ${e.totalSteps} steps${e.step ? ` from step ${e.step}` : ''} (${e.mode === 'whole' ? 'whole graph' : 'layer-streamed'})`,
          );
        } else if (e.kind === 'eval') progress.note(`step ${e.step}: validation loss ${e.loss.toFixed(4)}`);
        else if (e.reason === 'aborted') {
          progress.note(`interrupted: checkpoint saved to ${e.dir} (continue with --resume ${e.dir})`);
        } else progress.note(`step ${e.step}: checkpoint ${e.dir}`);
      },
    });
  } catch (e) {
    if (e instanceof InputError && e.field === 'valSetSize')
      throw new UsageError(`--val-set-size: ${e.message}`);
    throw e;
  }
}
