import { existsSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import {
  applyPlan,
  countParams,
  type FloatDType,
  type PrunableModel,
  type PruningPlan,
  parsePlan,
  planToJSON,
  prune,
} from '@moreau/core';
import { readTextFile } from '@moreau/eval';
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
  UsageError,
} from '../flags.js';
import { entriesOf } from '../output.js';

/** What `moreau prune` writes into --out: a directory holding only these is an earlier output. */
const PRUNE_OUTPUT = [
  /^config\.json$/,
  /^generation_config\.json$/,
  /^model\.safetensors$/,
  /^model\.safetensors\.index\.json$/,
  /^model-\d+-of-\d+\.safetensors$/,
  /^tokenizer\.(json|bin|model)$/,
  /^tokenizer_config\.json$/,
  /^special_tokens_map\.json$/,
];

/** The real path of `p`, or its absolute path when it does not exist. */
const real = (p: string) => {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
};
/** Is `inner` the same as `outer` or inside it? */
const within = (inner: string, outer: string) => inner === outer || inner.startsWith(`${outer}${sep}`);

/**
 * --out may be new or empty; it is replaced only with --overwrite, and then only when it holds an
 * earlier output of this command (config, weights, tokenizer files and nothing else) or --force
 * is given. Never the input model's own directory (or one holding an input), the working
 * directory or one above it. Checked before any work, and again just before the commit.
 */
function outDirPolicy(flags: PruneFlags, source: string) {
  const inputs = [source, flags.tokenizer, flags.plan, flags.calib, flags.calibTokens].filter(
    (f): f is string => f !== undefined && existsSync(f),
  );
  return async (dir: string): Promise<true | string> => {
    const target = real(dir);
    const input = inputs.find((f) => within(real(f), target));
    if (input !== undefined) {
      return input === source
        ? 'is the input model itself: write the pruned model elsewhere'
        : `holds an input of this run ('${input}'): write the pruned model elsewhere`;
    }
    if (within(real(process.cwd()), target))
      return 'is the working directory or above it: choose a new directory';
    if (!flags.overwrite) return 'already exists and is not empty (add --overwrite to replace it)';
    if (flags.force) return true;
    const foreign = ((await entriesOf(dir)) ?? []).filter((e) => !PRUNE_OUTPUT.some((r) => r.test(e)));
    if (foreign.length) {
      return `holds files moreau prune does not write (${foreign
        .slice(0, 3)
        .map((f) => `'${f}'`)
        .join(', ')}${foreign.length > 3 ? ', ...' : ''}): add --force to replace it anyway`;
    }
    return true;
  };
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
  if (flags.force && !flags.overwrite) throw new UsageError('--force only applies with --overwrite');
  const replace = outDirPolicy(flags, source);
  // Every destination is checked before any work: a read-only --plan-out fails now, not after --out.
  await ctx.outputs.checkDir('--out', flags.out, { replace });
  await ctx.outputs.checkFile('--plan-out', flags.planOut);
  await ctx.outputs.checkFile('--save-calib', flags.saveCalib);
  await ctx.outputs.checkFile('--json', flags.json);

  const loaded = await openModel(source, flags);
  await withBackend(ctx, async (run) => {
    const paramsBefore = countParams(loaded.model.params);
    progress.note(
      `model ${source}: ${paramsBefore.toLocaleString('en-US')} parameters; backend ${run.backend.name} (${run.backend.device})`,
    );

    let plan: PruningPlan;
    let pruned: PrunableModel;
    if (!scoring) {
      plan = parsePlan(await readTextFile(flags.plan!, 'plan file'), flags.plan);
      pruned = applyPlan(loaded.model, plan);
    } else {
      const { criterion, options, resolved } = scoring;
      const calibration = criterion.requires.calibration
        ? await calibrationFromFlags(
            loaded,
            flags,
            criterion.calibrationIterations?.(resolved) ?? 1,
            ctx.outputs,
          )
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
    // Staged: --out, --plan-out and --json are put in place together once everything succeeded.
    // (outDirPolicy was checked before the work started.)
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
        overwrite: true,
        transaction: ctx.outputs.tx,
      },
    );
    if (flags.planOut) await ctx.outputs.file('--plan-out', flags.planOut, planToJSON(plan));
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
    if (flags.json) await ctx.outputs.writeJson(flags.json, result);
  });
}
