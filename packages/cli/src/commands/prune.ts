import { readFile } from 'node:fs/promises';
import {
  applyPlan,
  countParams,
  InputError,
  type PrunableModel,
  type PruningPlan,
  parsePlan,
  planToJSON,
  prune,
} from '@moreau/core';
import { type LlamaModel, saveHfDirectory } from '@moreau/models';
import { dirState, guardDir, writeFileAtomic, writeJsonAtomic } from '../output.js';
import { UsageError } from '../program.js';
import type { ProgressReporter } from '../progress.js';
import {
  backendInfo,
  calibrationFromFlags,
  criterionFromFlags,
  loadPlugins,
  namedFiles,
  type Opts,
  openBackend,
  openModel,
  requireInputFiles,
} from './context.js';
import { perplexities } from './evaluate.js';

const DTYPES = ['float32', 'float16', 'bfloat16'] as const;

/** --out must be new, empty, or replaced on purpose (--overwrite); checked before any work. */
async function checkOutDir(out: string, overwrite: boolean): Promise<void> {
  const state = await dirState(out);
  if (state === 'file') throw new InputError(`--out '${out}' is a file, not a directory`, out, '--out');
  if (state === true && !overwrite) {
    throw new InputError(
      `--out '${out}' already exists and is not empty (add --overwrite to replace it)`,
      out,
      '--out',
    );
  }
}

export async function pruneCommand(
  source: string,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
) {
  const started = performance.now();
  if (opts.dtype && !DTYPES.includes(opts.dtype))
    throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got '${opts.dtype}'`);
  const texts = namedFiles('--eval-ppl', opts.evalPpl);
  await loadPlugins(opts.plugin);
  if (opts.plan) {
    for (const flag of ['criterion', 'ratio', 'calibTokens', 'calib', 'saveCalib']) {
      if (opts[flag] !== undefined) {
        throw new UsageError(
          `--plan applies a saved plan as it is: drop --${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
        );
      }
    }
    if ((opts.steps ?? 1) !== 1 || (opts.opt ?? []).length)
      throw new UsageError('--plan applies a saved plan as it is: drop --steps / --opt');
  } else {
    if (opts.criterion === undefined)
      throw new UsageError("required option '--criterion <name>' not specified (or give --plan FILE)");
    if (opts.ratio === undefined)
      throw new UsageError("required option '--ratio <r>' not specified (or give --plan FILE)");
  }
  const { criterion, options, resolved } = opts.plan
    ? { criterion: undefined, options: {}, resolved: {} }
    : criterionFromFlags(String(opts.criterion), opts.opt ?? []);
  requireInputFiles(opts, { '--eval-ppl': texts });
  const out = String(opts.out);
  await checkOutDir(out, Boolean(opts.overwrite));

  const loaded = await openModel(source, opts);
  const backend = await openBackend(opts, progress);
  try {
    const paramsBefore = countParams(loaded.model.params);
    progress.note(
      `model ${source}: ${paramsBefore.toLocaleString('en-US')} parameters; backend ${backend.name} (${backend.device})`,
    );

    let plan: PruningPlan;
    let pruned: PrunableModel;
    if (opts.plan) {
      const file = String(opts.plan);
      plan = parsePlan(await readFile(file, 'utf8'), file);
      pruned = applyPlan(loaded.model, plan);
    } else {
      if (!criterion) throw new UsageError('--criterion is required');
      const calibration = criterion.requires.calibration
        ? await calibrationFromFlags(loaded, opts, criterion.calibrationIterations?.(resolved) ?? 1)
        : undefined;
      const result = await prune(loaded.model, {
        criterion,
        options,
        ratio: opts.ratio,
        seed: opts.seed ?? 1,
        ranking: opts.global ? 'global' : 'local',
        ...(opts.attnLayers ? { attnLayers: opts.attnLayers } : {}),
        ...(opts.mlpLayers ? { mlpLayers: opts.mlpLayers } : {}),
        ...(opts.reduction ? { reduction: opts.reduction } : {}),
        ...(calibration ? { calibration } : {}),
        backend,
        steps: opts.steps ?? 1,
        signal,
        onProgress: progress.update,
      });
      plan = result.plan;
      pruned = result.model;
    }
    const model = pruned as LlamaModel;
    progress.note(`saving ${out}`);
    const unguard = guardDir(out);
    try {
      await saveHfDirectory(
        out,
        {
          config: model.config,
          tensors: new Map(model.params),
          format: 'hf',
          sourceDtype: loaded.sourceDtype,
        },
        {
          ...(opts.dtype ? { dtype: opts.dtype } : {}),
          tokenizerFiles: loaded.tokenizer.toFiles(),
          overwrite: Boolean(opts.overwrite),
        },
      );
    } finally {
      unguard();
    }
    if (opts.planOut) await writeFileAtomic(String(opts.planOut), planToJSON(plan));
    const evals = await perplexities(
      model.params,
      model.config,
      loaded.tokenizer,
      texts,
      backend,
      opts,
      progress,
      signal,
    );
    const paramsAfter = countParams(model.params);
    const result = {
      model: source,
      backend: backendInfo(backend),
      criterion: plan.criterion,
      ratio: plan.ratio,
      params_before: paramsBefore,
      params_after: paramsAfter,
      params_left: paramsAfter / paramsBefore,
      out,
      plan: JSON.parse(planToJSON(plan)),
      ppl: evals.ppl,
      nll: evals.nll,
      tokens: evals.tokens,
      seconds: (performance.now() - started) / 1000,
    };
    process.stdout.write(
      `pruned ${source} with ${plan.criterion?.name ?? 'keep-first'} at ratio ${plan.ratio}: ${paramsBefore.toLocaleString('en-US')} -> ${paramsAfter.toLocaleString('en-US')} parameters (${(100 * result.params_left).toFixed(2)}%)\nsaved to ${out}\n` +
        Object.entries(evals.ppl)
          .map(([k, v]) => `ppl ${k}: ${v.toFixed(4)}\n`)
          .join(''),
    );
    if (opts.json) await writeJsonAtomic(String(opts.json), result);
  } finally {
    await backend.dispose();
  }
}
