import { join } from 'node:path';
import {
  applyPlan,
  type CriterionDiagnostics,
  countParams,
  type DiagnosticValue,
  type FloatDType,
  InputError,
  type PrunableModel,
  type PruneResult,
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
  calibrationChoice,
  checkCriterionScopes,
  checkPlanFlags,
  criterionFromFlags,
  dtypeFlag,
  namedFiles,
  planOptionsFromFlags,
  presetFlag,
  rankingFlag,
  requireInputFiles,
  resolvedPreset,
  scoringSettings,
  textSourceOptions,
  UsageError,
} from '../flags.js';
import { dirState, guardDir, writeFileAtomic, writeJsonAtomic } from '../output.js';
import { sparsityFile } from '../sparsity.js';
import { latencyOf, latencySettings, MACS_COUNTED, macsOf, macsSeqLen } from '../speed.js';

/** All layers, [0, L): the default layer range. */
const allLayers = (L: number): [number, number] => [0, L];

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
  for (const [, file] of texts) textSourceOptions(flags, file);
  await loadPlugins(flags.plugin);
  checkPlanFlags(flags);
  const preset = presetFlag(flags);
  const scope = parseScope(flags.scope).name;
  // LLM-Pruner's keep-first rule scores nothing: no criterion.
  const scoring =
    flags.plan || flags.keepFirst !== undefined
      ? undefined
      : criterionFromFlags(flags.criterion, flags.opt, preset);
  if (scoring) checkCriterionScopes([scoring.criterion.name], [scope]);
  rankingFlag(flags);
  requireInputFiles(flags, { '--eval-ppl': texts });
  await checkOutDir(flags.out, flags.overwrite);

  const loaded = await openModel(source, flags);
  const resolved = resolvedPreset(preset, loaded.model.config);
  await withBackend(ctx, async (run) => {
    const paramsBefore = countParams(loaded.model.params);
    progress.note(
      `model ${source}: ${paramsBefore.toLocaleString('en-US')} parameters; backend ${run.backend.name} (${run.backend.device})`,
    );
    if (resolved)
      progress.note(
        `preset ${resolved.name} (${resolved.source.repository}@${resolved.source.commit}): ${resolved.criterion}, ratio ${resolved.ratio}, ${resolved.calibration.samples} ${resolved.calibration.sampling} x ${resolved.calibration.seqLen} tokens, layers ${resolved.attnLayers.join(':')} (explicit flags win)`,
      );

    let plan: PruningPlan;
    let pruned: PrunableModel;
    let settings: Record<string, DiagnosticValue> | null = null;
    let diagnostics: readonly CriterionDiagnostics[] = [];
    let warnings: readonly string[] = [];
    if (flags.plan) {
      plan = await readPlanFile(flags.plan);
      pruned = applyPlan(loaded.model, plan);
    } else if (!scoring) {
      ({ plan, model: pruned } = await prune(loaded.model, {
        ...planOptionsFromFlags(flags, scope),
        keepFirst: flags.keepFirst,
        signal: run.signal,
        onProgress: progress.update,
      }));
    } else {
      const { criterion, options, resolved: values } = scoring;
      const choice = calibrationChoice(flags, resolved);
      const iterations = criterion.calibrationIterations?.(values) ?? 1;
      const calibration = criterion.requires.calibration
        ? await calibrationFromFlags(loaded, flags, iterations, choice)
        : undefined;
      // N:M fixes its own ratio, N / M.
      const parsed = parseScope(scope);
      const ratio = parsed.kind === 'n:m' ? parsed.n / parsed.m : (flags.ratio ?? resolved?.ratio);
      if (ratio === undefined) throw new UsageError("required option '--ratio <r>' not specified");
      const selection = planOptionsFromFlags(flags, scope, { preset: resolved });
      const layers = allLayers(loaded.model.config.numHiddenLayers);
      // The provenance goes into the plan's settings (and the --json result).
      settings = scoringSettings(flags, resolved, {
        criterion: criterion.name,
        options: values,
        ratio,
        reduction: selection.reduction ?? criterion.defaultReduction,
        attnLayers: selection.attnLayers ?? layers,
        mlpLayers: selection.mlpLayers ?? layers,
        scope,
        ranking: parsed.kind === 'block' ? (selection.ranking ?? 'local') : null,
        calibration: calibration
          ? {
              ...choice,
              source: flags.calibTokens || flags.calib || loaded.defaultText || null,
              iterations: calibration.iterations.length,
            }
          : null,
      });
      const result: PruneResult = await prune(loaded.model, {
        ...selection,
        criterion,
        options,
        ratio,
        calibration,
        backend: run.backend,
        steps: flags.steps,
        includeScores: flags.planScores,
        settings,
        signal: run.signal,
        onProgress: progress.update,
      });
      ({ plan, model: pruned, diagnostics, warnings } = result);
      for (const w of warnings) progress.warn(w);
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
    const T = macsSeqLen(flags);
    const macsDense = macsOf(loaded.model.config, T);
    const macsPruned = macsOf(model.config, T);
    const latencyDense = await latencyOf(run, loaded.model, 'dense');
    const latencyPruned = await latencyOf(run, model, 'pruned');
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
      settings,
      // Without the mask bitsets (--plan-out has them): a 7B model's would not fit in one string.
      plan: { ...JSON.parse(planToJSON({ ...plan, masks: [] })), masks: plan.masks.map((m) => m.param) },
      diagnostics,
      warnings,
      macs: {
        seq_len: T,
        counted: MACS_COUNTED,
        dense: macsDense,
        pruned: macsPruned,
        left: macsPruned.total / macsDense.total,
      },
      latency:
        latencyDense && latencyPruned
          ? {
              ...latencySettings(flags),
              dense: latencyDense,
              pruned: latencyPruned,
              speedup: latencyDense.seconds / latencyPruned.seconds,
            }
          : null,
      ppl: evals.ppl,
      nll: evals.nll,
      tokens: evals.tokens,
      seconds: (performance.now() - started) / 1000,
    };
    const g = (x: number) => `${(x / 1e9).toFixed(x < 1e8 ? 4 : 2)} G`;
    ctx.out(
      `pruned ${source} at scope ${plan.scope} with ${plan.criterion?.name ?? `keep-first ${plan.keepFirst}`} at ratio ${plan.ratio}: ${paramsBefore.toLocaleString('en-US')} -> ${nonzeroAfter.toLocaleString('en-US')} ${sparsity ? 'non-zero ' : ''}parameters (${(100 * result.params_left).toFixed(2)}%)\nsaved to ${flags.out}${sparsity ? ' (with sparsity.json)' : ''}\n` +
        `MACs per ${T} tokens: ${g(macsDense.total)} -> ${g(macsPruned.total)} (${(100 * result.macs.left).toFixed(2)}%)\n` +
        (result.latency
          ? `latency ${result.latency.batch}x${result.latency.seq_len}: ${(1000 * result.latency.dense.seconds).toFixed(2)} ms -> ${(1000 * result.latency.pruned.seconds).toFixed(2)} ms (x${result.latency.speedup.toFixed(2)})\n`
          : '') +
        Object.entries(evals.ppl)
          .map(([k, v]) => `ppl ${k}: ${v.toFixed(4)}\n`)
          .join(''),
    );
    if (flags.json) await writeJsonAtomic(flags.json, result);
  });
}
