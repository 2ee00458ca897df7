import { join } from 'node:path';
import {
  applyPlan,
  countParams,
  type FloatDType,
  InputError,
  type PrunableModel,
  type PruneScope,
  type PruningPlan,
  parseScope,
  planToJSON,
  planToJSONChunks,
  prune,
  readPlanFile,
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
  checkCriterionScopes,
  checkPlanFlags,
  criterionFromFlags,
  dtypeFlag,
  namedFiles,
  planOptionsFromFlags,
  rankingFlag,
  requireInputFiles,
} from '../flags.js';
import { dirState, guardDir, writeFileAtomic, writeJsonAtomic } from '../output.js';
import { sparsityFile } from '../sparsity.js';

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
  const scoring =
    flags.plan || flags.criterion === undefined ? undefined : criterionFromFlags(flags.criterion, flags.opt);
  if (scoring) checkCriterionScopes([scoring.criterion.name], [flags.scope as PruneScope]);
  rankingFlag(flags);
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
    if (flags.plan) {
      plan = await readPlanFile(flags.plan);
      pruned = applyPlan(loaded.model, plan);
    } else {
      const criterion = scoring?.criterion;
      const calibration = criterion?.requires.calibration
        ? await calibrationFromFlags(loaded, flags, criterion.calibrationIterations?.(scoring!.resolved) ?? 1)
        : undefined;
      ({ plan, model: pruned } = await prune(loaded.model, {
        ...planOptionsFromFlags(flags, parseScope(flags.scope).name),
        ...(scoring ? { criterion: scoring.criterion, options: scoring.options } : {}),
        ...(flags.ratio !== undefined ? { ratio: flags.ratio } : {}),
        ...(flags.keepFirst !== undefined ? { keepFirst: flags.keepFirst } : {}),
        calibration,
        backend: run.backend,
        steps: flags.steps,
        includeScores: flags.planScores,
        signal: run.signal,
        onProgress: progress.update,
      }));
    }
    // Unstructured and N:M models are dense files with zeros: sparsity.json says where.
    const sparsity = plan.masks.length ? sparsityFile(plan, pruned.params) : undefined;
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
      if (sparsity) await writeJsonAtomic(join(flags.out, 'sparsity.json'), sparsity);
    } finally {
      unguard();
    }
    if (flags.planOut) await writeFileAtomic(flags.planOut, planToJSONChunks(plan));
    const evals = await evaluate(run, model, loaded.tokenizer, texts);
    const paramsAfter = countParams(model.params);
    // Zeroed weights are not parameters left: element scopes count non-zeros.
    const nonzeroAfter = sparsity?.nonzero ?? paramsAfter;
    const result = {
      model: source,
      backend: backendInfo(run.backend),
      scope: plan.scope,
      criterion: plan.criterion,
      ratio: plan.ratio,
      params_before: paramsBefore,
      params_after: paramsAfter,
      nonzero_after: nonzeroAfter,
      params_left: nonzeroAfter / paramsBefore,
      out: flags.out,
      // Without the mask bitsets (--plan-out has them): a 7B model's would not fit in one string.
      plan: { ...JSON.parse(planToJSON({ ...plan, masks: [] })), masks: plan.masks.map((m) => m.param) },
      ppl: evals.ppl,
      nll: evals.nll,
      tokens: evals.tokens,
      seconds: (performance.now() - started) / 1000,
    };
    ctx.out(
      `pruned ${source} at scope ${plan.scope} with ${plan.criterion?.name ?? `keep-first ${plan.keepFirst}`} at ratio ${plan.ratio}: ${paramsBefore.toLocaleString('en-US')} -> ${nonzeroAfter.toLocaleString('en-US')} ${sparsity ? 'non-zero ' : ''}parameters (${(100 * result.params_left).toFixed(2)}%)\nsaved to ${flags.out}${sparsity ? ' (with sparsity.json)' : ''}\n` +
        Object.entries(evals.ppl)
          .map(([k, v]) => `ppl ${k}: ${v.toFixed(4)}\n`)
          .join(''),
    );
    if (flags.json) await writeJsonAtomic(flags.json, result);
  });
}
