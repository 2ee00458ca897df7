/**
 * `moreau tune`: LoRA recovery of a (pruned) model, as LLM-Pruner's post_training.py: perplexity
 * before, training with checkpoints (Ctrl-C saves one; --resume continues exactly), the merged
 * model as an HF directory, the adapter as a PEFT folder, perplexity after.
 */
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { findLoraTargets, InputError, mergeLora } from '@moreau/core';
import { LlamaModel, saveHfDirectory, saveLoraAdapter } from '@moreau/models';
import type { TuneFlags } from '../../program.js';
import { backendInfo, type CommandContext, openModel, withBackend } from '../context.js';
import { evaluate } from '../evaluate.js';
import { namedFiles, requireInputFiles } from '../flags.js';
import { entriesOf, PRUNE_OUTPUT } from '../output.js';
import { loraConfigFromFlags, runTuning, templateFromFlags, tuningDataFromFlags } from '../tuning.js';
import { modelSummary } from './info.js';

/** What an adapter folder holds: a folder holding only these is an earlier --adapter-out. */
const ADAPTER_OUTPUT = [/^adapter_config\.json$/, /^adapter_model\.safetensors$/];

/**
 * May an existing, non-empty output folder be replaced? Only with --overwrite, and only when it
 * holds nothing but what this command writes there (files moreau did not write are never deleted).
 */
function replacePolicy(overwrite: boolean, owned: readonly RegExp[]) {
  return async (dir: string): Promise<true | string> => {
    if (!overwrite) return 'already exists and is not empty (add --overwrite to replace it)';
    const foreign = ((await entriesOf(dir)) ?? []).filter((e) => !owned.some((r) => r.test(e)));
    if (foreign.length === 0) return true;
    return `holds files moreau tune does not write (${foreign
      .slice(0, 3)
      .map((f) => `'${f}'`)
      .join(', ')}${foreign.length > 3 ? ', ...' : ''}): choose a new directory`;
  };
}

/**
 * Checkpoints of an earlier run are continued with --resume or replaced with --overwrite, never
 * mixed with a new run's.
 */
async function checkCheckpointDir(dir: string, flags: TuneFlags): Promise<void> {
  const old = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^checkpoint-\d+$/.test(n));
  if (old.length === 0 || flags.resume) return;
  if (!flags.overwrite) {
    const last = Math.max(...old.map((n) => Number(n.slice('checkpoint-'.length))));
    throw new InputError(
      `--checkpoint-dir '${dir}' holds checkpoints of an earlier run: continue it with --resume ${join(dir, `checkpoint-${last}`)}, replace them with --overwrite, or choose another --checkpoint-dir`,
      dir,
      '--checkpoint-dir',
    );
  }
  for (const n of old) await rm(join(dir, n), { recursive: true, force: true });
}

export async function tuneCommand(source: string, ctx: CommandContext<TuneFlags>) {
  const started = performance.now();
  const { flags, progress } = ctx;
  const lora = loraConfigFromFlags(flags);
  const texts = namedFiles('--eval-ppl', flags.evalPpl);
  requireInputFiles(flags, { '--eval-ppl': texts });
  for (const [flag, file] of [
    ['--data', flags.data],
    ['--template', flags.template],
    ['--resume', flags.resume],
  ] as const) {
    if (file !== undefined && !existsSync(file))
      throw new InputError(`${flag}: '${file}' not found`, file, flag);
  }
  const outReplace = replacePolicy(flags.overwrite, PRUNE_OUTPUT);
  const adapterReplace = replacePolicy(flags.overwrite, ADAPTER_OUTPUT);
  await ctx.outputs.checkDir('--out', flags.out, { replace: outReplace });
  if (flags.adapterOut)
    await ctx.outputs.checkDir('--adapter-out', flags.adapterOut, { replace: adapterReplace });
  await ctx.outputs.checkFile('--json', flags.json);
  const template = await templateFromFlags(flags);
  const checkpointDir = flags.checkpointDir ?? `${flags.out.replace(/[\\/]+$/, '')}-checkpoints`;
  await checkCheckpointDir(checkpointDir, flags);

  const loaded = await openModel(source, flags);
  const base = loaded.model;
  findLoraTargets(base.params, lora.targets); // a --lora-targets typo fails before any work
  const data = await tuningDataFromFlags(flags.data, loaded.tokenizer, flags, flags.seed, progress, template);
  await withBackend(ctx, async (run) => {
    progress.note(`model ${source}; backend ${run.backend.name} (${run.backend.device})`);
    // Perplexity windows go 8 per pass (the scorer's default), not --batch-size (the tuning batch).
    const evalRun = {
      ...run,
      flags: { seqLen: flags.seqLen, ...(flags.limit ? { limit: flags.limit } : {}) },
    };
    progress.prefix = 'before: ';
    const before = await evaluate(evalRun, base, loaded.tokenizer, texts);
    progress.prefix = '';
    const result = await runTuning(run, base, data, {
      lora,
      lr: flags.lr,
      epochs: flags.epochs,
      batchSize: flags.batchSize,
      microBatchSize: flags.microBatchSize,
      warmupSteps: flags.warmupSteps,
      ...(flags.maxSteps !== undefined ? { maxSteps: flags.maxSteps } : {}),
      seed: flags.seed,
      evalSteps: flags.evalSteps,
      saveSteps: flags.saveSteps,
      checkpointDir,
      ...(flags.resume ? { resume: flags.resume } : {}),
      maxLength: Math.min(flags.cutoffLen, base.config.maxPositionEmbeddings),
      baseModel: loaded.path,
    });

    // Outputs: the adapter (PEFT) and the merged model, staged in the run's transaction.
    if (flags.adapterOut) {
      await saveLoraAdapter(flags.adapterOut, result.adapters, {
        baseModel: loaded.path,
        overwrite: true,
        transaction: ctx.outputs.tx,
      });
    }
    progress.note(`saving the merged model to ${flags.out}`);
    const merged = new LlamaModel(base.config, mergeLora(base.params, result.adapters));
    await saveHfDirectory(
      flags.out,
      {
        config: merged.config,
        tensors: new Map(merged.params),
        format: 'hf',
        sourceDtype: loaded.sourceDtype,
      },
      { tokenizerFiles: loaded.tokenizer.toFiles(), overwrite: true, transaction: ctx.outputs.tx },
    );
    progress.prefix = 'after: ';
    const after = await evaluate(evalRun, merged, loaded.tokenizer, texts);
    progress.prefix = '';

    const last = result.history.at(-1);
    const lines = [
      `tuned ${source}: ${result.steps} steps, ${result.tokens.toLocaleString('en-US')} tokens in ${result.seconds.toFixed(1)} s; final training loss ${last ? last.loss.toFixed(4) : '-'}`,
      ...(result.evals.length
        ? [`validation loss ${result.evals.at(-1)!.loss.toFixed(4)} (step ${result.evals.at(-1)!.step})`]
        : []),
      `merged model saved to ${flags.out}`,
      ...(flags.adapterOut ? [`adapter saved to ${flags.adapterOut}`] : []),
      ...Object.keys(after.ppl).map(
        (k) => `ppl ${k}: ${before.ppl[k]!.toFixed(4)} -> ${after.ppl[k]!.toFixed(4)}`,
      ),
    ];
    ctx.out(`${lines.join('\n')}\n`);
    if (flags.json) {
      await ctx.outputs.writeJson(flags.json, {
        model: modelSummary(loaded),
        backend: backendInfo(run.backend),
        data: {
          file: flags.data,
          kind: data.kind,
          read: data.read,
          train: data.train.length,
          validation: data.validation.length,
          truncated: data.truncated,
          skipped: data.skipped,
        },
        settings: {
          lora_r: lora.r,
          lora_alpha: lora.alpha,
          lora_dropout: lora.dropout,
          lora_targets: lora.targets,
          epochs: flags.epochs,
          lr: flags.lr,
          batch_size: flags.batchSize,
          micro_batch_size: flags.microBatchSize,
          cutoff_len: flags.cutoffLen,
          warmup_steps: flags.warmupSteps,
          max_steps: flags.maxSteps ?? null,
          train_on_inputs: flags.trainOnInputs,
          val_set_size: flags.valSetSize,
          seed: flags.seed,
          resume: flags.resume ?? null,
        },
        mode: result.mode,
        steps: result.steps,
        total_steps: result.totalSteps,
        tokens: result.tokens,
        train_seconds: result.seconds,
        history: result.history,
        evals: result.evals,
        ppl_before: before.ppl,
        ppl_after: after.ppl,
        nll_before: before.nll,
        nll_after: after.nll,
        out: flags.out,
        adapter_out: flags.adapterOut ?? null,
        checkpoint_dir: checkpointDir,
        seconds: (performance.now() - started) / 1000,
      });
    }
  });
}
