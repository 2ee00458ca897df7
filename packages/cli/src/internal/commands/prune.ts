import { existsSync, realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import {
  applyPlan,
  type ComputeMode,
  type CriterionDiagnostics,
  countParams,
  type DiagnosticValue,
  type ExecMode,
  type FloatDType,
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
  computeInfo,
  loadPlugins,
  openModel,
  withBackend,
} from '../context.js';
import { evaluate } from '../evaluate.js';
import {
  calibrationChoice,
  checkCriterionScopes,
  checkPlanFlags,
  checkStateDir,
  checkWindowLength,
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
import { entriesOf, PRUNE_OUTPUT } from '../output.js';
import { sparsityFile } from '../sparsity.js';
import { latencyOf, latencySettings, MACS_COUNTED, macsOf, macsSeqLen } from '../speed.js';

/** All layers, [0, L): the default layer range. */
const allLayers = (L: number): [number, number] => [0, L];

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
  // Without --out only the plan is written (--plan-out): a 7B model's scores need no pruned copy.
  const out = flags.out;
  if (out === undefined && flags.planOut === undefined)
    throw new UsageError(
      "required option '--out <dir>' not specified (or --plan-out <file> to write only the plan)",
    );
  if (out === undefined && (flags.overwrite || flags.force || flags.dtype))
    throw new UsageError(
      `${flags.overwrite ? '--overwrite' : flags.force ? '--force' : '--dtype'} applies to --out, which is not given`,
    );
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
  checkStateDir(flags.stateDir);
  if (flags.force && !flags.overwrite) throw new UsageError('--force only applies with --overwrite');
  const replace = outDirPolicy(flags, source);
  // Every destination is checked before any work: a read-only --plan-out fails now, not after --out.
  if (out !== undefined) await ctx.outputs.checkDir('--out', out, { replace });
  await ctx.outputs.checkFile('--plan-out', flags.planOut);
  await ctx.outputs.checkFile('--save-calib', flags.saveCalib);
  await ctx.outputs.checkFile('--json', flags.json);

  const loaded = await openModel(source, flags);
  const resolved = resolvedPreset(preset, loaded.model.config);
  // Calibration windows longer than the model's context: a usage error before any work.
  if (scoring?.criterion.requires.calibration && !flags.calibTokens) {
    const { seqLen } = calibrationChoice(flags, resolved);
    checkWindowLength('--calib-seq-len', seqLen, loaded.model.config.maxPositionEmbeddings);
  }
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
    let exec: ExecMode | null = null;
    // What ran: the scoring's mode when a criterion scored, else the evaluation's (same dtype).
    let compute: ComputeMode | undefined;
    if (flags.plan) {
      plan = await readPlanFile(flags.plan);
      pruned = applyPlan(loaded.model, plan, { file: flags.plan });
    } else if (!scoring) {
      ({ plan, model: pruned } = await prune(loaded.model, {
        ...planOptionsFromFlags(flags, scope),
        computeDtype: flags.computeDtype,
        keepFirst: flags.keepFirst,
        signal: run.signal,
        onProgress: progress.update,
      }));
    } else {
      const { criterion, options, resolved: values } = scoring;
      const choice = calibrationChoice(flags, resolved);
      const iterations = criterion.calibrationIterations?.(values) ?? 1;
      const calibration = criterion.requires.calibration
        ? await calibrationFromFlags(loaded, flags, iterations, choice, ctx.outputs)
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
        computeDtype: flags.computeDtype,
        steps: flags.steps,
        includeScores: flags.planScores,
        settings,
        signal: run.signal,
        onProgress: progress.update,
      });
      ({ plan, model: pruned, diagnostics, warnings, compute } = result);
      for (const w of warnings) progress.warn(w);
      if (criterion.requires.gradients) {
        exec = result.mode;
        progress.note(
          `scored ${exec === 'whole' ? 'with the model as one graph' : 'layer by layer'} (exec ${exec}${compute && compute.computeDtype !== 'float32' ? `; compute ${compute.computeDtype} ${compute.precision}` : ''})`,
        );
      }
    }
    // Unstructured and N:M models are dense files with zeros: sparsity.json says where.
    const sparsity = plan.masks.length ? sparsityFile(plan, pruned.params) : undefined;
    const model = pruned as LlamaModel;
    // Staged: --out, --plan-out and --json are put in place together once everything succeeded.
    // (outDirPolicy was checked before the work started.)
    if (out !== undefined) {
      progress.note(`saving ${out}`);
      await saveHfDirectory(
        out,
        {
          config: model.config,
          tensors: new Map(model.params),
          format: 'hf',
          sourceDtype: loaded.sourceDtype,
        },
        {
          dtype: flags.dtype as FloatDType | undefined,
          tokenizerFiles: loaded.tokenizer.toFiles(),
          ...(sparsity ? { extraFiles: { 'sparsity.json': `${JSON.stringify(sparsity, null, 2)}\n` } } : {}),
          overwrite: true,
          transaction: ctx.outputs.tx,
        },
      );
    }
    if (flags.planOut) {
      const chunks = planToJSONChunks(plan);
      await ctx.outputs.file('--plan-out', flags.planOut, async (fh) => {
        for (const chunk of chunks) await fh.write(chunk);
      });
    }
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
      exec,
      ...(evals.exec ? { eval_exec: evals.exec } : {}),
      compute: computeInfo(run.backend, flags.computeDtype, compute ?? evals.compute),
      scope: plan.scope,
      criterion: plan.criterion,
      ratio: plan.ratio,
      params_before: paramsBefore,
      params_after: paramsAfter,
      nonzero_after: nonzeroAfter,
      params_left: nonzeroAfter / paramsBefore,
      out: out ?? null,
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
      `pruned ${source} at scope ${plan.scope} with ${plan.criterion?.name ?? `keep-first ${plan.keepFirst}`} at ratio ${plan.ratio}: ${paramsBefore.toLocaleString('en-US')} -> ${nonzeroAfter.toLocaleString('en-US')} ${sparsity ? 'non-zero ' : ''}parameters (${(100 * result.params_left).toFixed(2)}%)\n${out !== undefined ? `saved to ${out}${sparsity ? ' (with sparsity.json)' : ''}` : `plan written to ${flags.planOut} (no --out: no model saved)`}\n` +
        `MACs per ${T} tokens: ${g(macsDense.total)} -> ${g(macsPruned.total)} (${(100 * result.macs.left).toFixed(2)}%)\n` +
        (result.latency
          ? `latency ${result.latency.batch}x${result.latency.seq_len}: ${(1000 * result.latency.dense.seconds).toFixed(2)} ms -> ${(1000 * result.latency.pruned.seconds).toFixed(2)} ms (x${result.latency.speedup.toFixed(2)})\n`
          : '') +
        Object.entries(evals.ppl)
          .map(([k, v]) => `ppl ${k}: ${v.toFixed(4)}\n`)
          .join(''),
    );
    if (flags.json) await ctx.outputs.writeJson(flags.json, result);
  });
}
