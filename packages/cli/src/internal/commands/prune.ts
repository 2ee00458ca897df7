import { readFile } from 'node:fs/promises';
import {
  applyPlan,
  countParams,
  type FloatDType,
  InputError,
  type PrunableModel,
  type PruningPlan,
  parsePlan,
  planToJSON,
  prune,
} from '@moreau/core';
import { type LlamaModel, saveHfDirectory } from '@moreau/models';
import type { PruneFlags } from '../../program.js';
import {
  backendInfo,
  type CommandContext,
  calibrationFromFlags,
  loadPlugins,
  openModel,
  withBackend,
} from '../context.js';
import { evaluate } from '../evaluate.js';
import {
  checkPlanFlags,
  criterionFromFlags,
  dtypeFlag,
  namedFiles,
  planOptionsFromFlags,
  requireInputFiles,
} from '../flags.js';
import { dirState, guardDir, writeFileAtomic, writeJsonAtomic } from '../output.js';

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

export async function pruneCommand(source: string, ctx: CommandContext<PruneFlags>) {
  const started = performance.now();
  const { flags, progress } = ctx;
  dtypeFlag(flags.dtype);
  const texts = namedFiles('--eval-ppl', flags.evalPpl);
  await loadPlugins(flags.plugin);
  checkPlanFlags(flags);
  const scoring = flags.plan ? undefined : criterionFromFlags(flags.criterion!, flags.opt);
  requireInputFiles(flags, { '--eval-ppl': texts });
  await checkOutDir(flags.out, flags.overwrite);

  const loaded = await openModel(source, flags);
  await withBackend(ctx, async (run) => {
    const paramsBefore = countParams(loaded.model.params);
    progress.note(
      `model ${source}: ${paramsBefore.toLocaleString('en-US')} parameters; backend ${run.backend.name} (${run.backend.device})`,
    );

    let plan: PruningPlan;
    let pruned: PrunableModel;
    if (!scoring) {
      plan = parsePlan(await readFile(flags.plan!, 'utf8'), flags.plan);
      pruned = applyPlan(loaded.model, plan);
    } else {
      const { criterion, options, resolved } = scoring;
      const calibration = criterion.requires.calibration
        ? await calibrationFromFlags(loaded, flags, criterion.calibrationIterations?.(resolved) ?? 1)
        : undefined;
      ({ plan, model: pruned } = await prune(loaded.model, {
        ...planOptionsFromFlags(flags),
        criterion,
        options,
        ratio: flags.ratio!,
        calibration,
        backend: run.backend,
        steps: flags.steps,
        signal: run.signal,
        onProgress: progress.update,
      }));
    }
    const model = pruned as LlamaModel;
    progress.note(`saving ${flags.out}`);
    const unguard = guardDir(flags.out);
    try {
      await saveHfDirectory(
        flags.out,
        {
          config: model.config,
          tensors: new Map(model.params),
          format: 'hf',
          sourceDtype: loaded.sourceDtype,
        },
        {
          dtype: flags.dtype as FloatDType | undefined,
          tokenizerFiles: loaded.tokenizer.toFiles(),
          overwrite: flags.overwrite,
        },
      );
    } finally {
      unguard();
    }
    if (flags.planOut) await writeFileAtomic(flags.planOut, planToJSON(plan));
    const evals = await evaluate(run, model, loaded.tokenizer, texts);
    const paramsAfter = countParams(model.params);
    const result = {
      model: source,
      backend: backendInfo(run.backend),
      criterion: plan.criterion,
      ratio: plan.ratio,
      params_before: paramsBefore,
      params_after: paramsAfter,
      params_left: paramsAfter / paramsBefore,
      out: flags.out,
      plan: JSON.parse(planToJSON(plan)),
      ppl: evals.ppl,
      nll: evals.nll,
      tokens: evals.tokens,
      seconds: (performance.now() - started) / 1000,
    };
    ctx.out(
      `pruned ${source} with ${plan.criterion.name} at ratio ${plan.ratio}: ${paramsBefore.toLocaleString('en-US')} -> ${paramsAfter.toLocaleString('en-US')} parameters (${(100 * result.params_left).toFixed(2)}%)\nsaved to ${flags.out}\n` +
        Object.entries(evals.ppl)
          .map(([k, v]) => `ppl ${k}: ${v.toFixed(4)}\n`)
          .join(''),
    );
    if (flags.json) await writeJsonAtomic(flags.json, result);
  });
}
