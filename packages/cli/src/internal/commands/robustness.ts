import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  type CalibrationSet,
  type ExecMode,
  getCriterion,
  type PrunableModel,
  parseScope,
  type ResolvedPreset,
  sampleCalibration,
  sampleCalibrationPatches,
} from '@moreau/core';
import {
  type CalibrationDraw,
  formatRobustnessTable,
  lossPerplexity,
  perplexityWindows,
  type RobustnessOptions,
  type RobustnessReport,
  type RobustnessSweepReport,
  robustness,
  robustnessSweep,
  type SweepAxis,
} from '@moreau/eval';
import type { LoadedModel } from '@moreau/models';
import type { CalibFlags, EvalFlags, ExecFlags, RobustnessFlags, StateFlags } from '../../program.js';
import { VERSION } from '../../version.js';
import {
  type BackendContext,
  backendInfo,
  type CommandContext,
  calibrationText,
  calibrationTokens,
  loadPlugins,
  openModel,
  readTextSource,
  replayedCalibration,
  withBackend,
} from '../context.js';
import {
  calibrationChoice,
  checkCriterionScopes,
  checkStateDir,
  checkWindowLength,
  criteriaFlag,
  criteriaOptions,
  namedFiles,
  perturbFlag,
  planOptionsFromFlags,
  presetFlag,
  rankingFlag,
  requireInputFiles,
  resolvedPreset,
  sweepFlags,
  textSourceOptions,
  UsageError,
} from '../flags.js';
import { markdownTable } from '../report/render.js';
import {
  type RobustnessDocument,
  type RobustnessHead,
  robustnessWarnings,
  sweepTable,
  writeRobustnessReport,
} from '../report/robustness.js';
import { checkReportDir } from '../report/write.js';
import { modelSummary } from './info.js';

/** Windows the pruned models' perplexity is measured on when --limit is not given. */
export const ROBUSTNESS_WINDOWS = 32;

export interface RobustnessRun {
  readonly ratio: number;
  /** The selection flags' prune options at the run's scope (planOptionsFromFlags). */
  readonly selection: ReturnType<typeof planOptionsFromFlags>;
  /** Each criterion with its --opt options (over the preset's). */
  readonly criteria: readonly { name: string; options: Record<string, string | number | boolean> }[];
  readonly perturbations: readonly string[];
  /** Evaluation text (default: --calib, else the model's shipped held-out text). */
  readonly evalText?: string;
  /**
   * The reference's windows (compare's shared set); other seeds are drawn as the flags say. Default:
   * replayed from --calib-tokens (fixed for every seed), else drawn per criterion and seed.
   */
  readonly calibration?: CalibrationSet;
  /** --preset, resolved for the model: its layer ranges, reduction and calibration draw. */
  readonly preset?: ResolvedPreset;
  /** --sweep: the analysis at every grid point. */
  readonly sweep?: readonly SweepAxis[];
}

/** What the evaluation used (for the report). */
export interface RobustnessEvaluation {
  readonly file: string;
  readonly windows: number;
}

/**
 * The calibration windows of a criterion at a seed: replayed windows for every seed, else compare's
 * shared set at the reference seed, else a fresh draw (windows or patches, as the flags and preset
 * say) with the criterion's iterations. The text is read and tokenized once.
 */
async function calibrationSource(
  flags: CalibFlags,
  loaded: LoadedModel,
  run: RobustnessRun,
): Promise<RobustnessOptions['calibration']> {
  const replayed = await replayedCalibration(loaded, flags);
  if (replayed) return replayed;
  const choice = calibrationChoice(flags, run.preset);
  let tokens: number[] | undefined;
  let text: string | undefined;
  const draw: CalibrationDraw = async (criterion, options, seed) => {
    if (run.calibration && seed === flags.seed) return run.calibration;
    const o = {
      samples: choice.samples,
      seqLen: choice.seqLen,
      iterations: criterion.calibrationIterations?.(options) ?? 1,
      seed,
    };
    if (choice.sampling === 'windows') {
      tokens ??= await calibrationTokens(loaded, flags);
      return sampleCalibration(tokens, o);
    }
    text ??= await calibrationText(loaded, flags);
    return sampleCalibrationPatches(text, (patch) => loaded.tokenizer.encode(patch, { bos: true }), o);
  };
  return draw;
}

/**
 * The robustness analysis at one ratio (or over a --sweep grid): perplexity of pruned models on
 * the evaluation text, in at most --limit windows (default 32).
 */
export async function runRobustness(
  ctx: BackendContext<CalibFlags & EvalFlags & ExecFlags & StateFlags>,
  loaded: LoadedModel,
  run: RobustnessRun & { sweep: readonly SweepAxis[] },
): Promise<RobustnessSweepReport & { evaluation: RobustnessEvaluation; exec: ExecMode | null }>;
export async function runRobustness(
  ctx: BackendContext<CalibFlags & EvalFlags & ExecFlags & StateFlags>,
  loaded: LoadedModel,
  run: RobustnessRun,
): Promise<RobustnessReport & { evaluation: RobustnessEvaluation; exec: ExecMode | null }>;
export async function runRobustness(
  ctx: BackendContext<CalibFlags & EvalFlags & ExecFlags & StateFlags>,
  loaded: LoadedModel,
  run: RobustnessRun,
): Promise<
  (RobustnessReport | RobustnessSweepReport) & { evaluation: RobustnessEvaluation; exec: ExecMode | null }
> {
  const { flags, backend } = ctx;
  const file = run.evalText ?? (flags.calib || loaded.defaultText);
  if (!file) throw new UsageError('robustness needs an evaluation text: pass --ppl NAME=FILE');
  checkWindowLength('--seq-len', flags.seqLen, loaded.model.config.maxPositionEmbeddings);
  const stream = loaded.tokenizer.encode(await readTextSource(file, textSourceOptions(flags, file)), {
    bos: true,
  });
  const windows = perplexityWindows(stream, flags.seqLen, { limit: flags.limit ?? ROBUSTNESS_WINDOWS });
  let exec: ExecMode | null = null;
  const evaluate = async (model: PrunableModel, signal?: AbortSignal) => {
    const r = await lossPerplexity(model, windows, {
      backend,
      batchSize: flags.batchSize,
      exec: flags.exec,
      signal,
    });
    exec = r.exec;
    return r.ppl;
  };
  const needsCalibration = run.criteria.some((c) => getCriterion(c.name).requires.calibration);
  if (needsCalibration) {
    const choice = calibrationChoice(flags, run.preset);
    checkWindowLength('--calib-seq-len', choice.seqLen, loaded.model.config.maxPositionEmbeddings);
  }
  const options: RobustnessOptions = {
    ratio: run.ratio,
    criteria: run.criteria,
    perturbations: run.perturbations,
    calibration: needsCalibration ? await calibrationSource(flags, loaded, run) : undefined,
    evaluate,
    prune: { ...run.selection, backend },
    signal: ctx.signal,
    onProgress: ctx.progress.update,
  };
  const evaluation = { file, windows: windows.length };
  if (run.sweep?.length)
    return { ...(await robustnessSweep(loaded.model, { ...options, sweep: run.sweep })), evaluation, exec };
  return { ...(await robustness(loaded.model, options)), evaluation, exec };
}

export async function robustnessCommand(source: string, ctx: CommandContext<RobustnessFlags>) {
  const started = performance.now();
  const loadStart = loadavg();
  const { flags } = ctx;
  await loadPlugins(flags.plugin);
  const preset = presetFlag(flags);
  const names = criteriaFlag(flags.criteria, { unique: true });
  const criteria = criteriaOptions(names, flags.opt, preset);
  const perturbations = perturbFlag(flags.perturb);
  const sweep = sweepFlags(flags.sweep, criteria, flags.opt);
  const texts = namedFiles('--ppl', flags.ppl);
  requireInputFiles(flags, { '--ppl': texts });
  checkStateDir(flags.stateDir);
  const scope = parseScope(flags.scope);
  // N:M fixes the ratio itself (N / M).
  const ratio = scope.kind === 'n:m' ? scope.n / scope.m : (flags.ratio ?? preset?.ratio);
  if (ratio === undefined) throw new UsageError("required option '--ratio <r>' not specified");
  if (scope.kind === 'n:m' && flags.ratio !== undefined)
    throw new UsageError(`--scope ${scope.name} zeroes ${scope.n} of every ${scope.m} weights: drop --ratio`);
  checkCriterionScopes(names, [scope.name]);
  rankingFlag(flags);
  await ctx.outputs.checkFile('--json', flags.json);
  if (flags.report) await checkReportDir(flags.report, ctx.outputs);
  const loaded = await openModel(source, flags);
  const resolved = resolvedPreset(preset, loaded.model.config);
  const selection = planOptionsFromFlags(flags, scope.name, resolved ? { preset: resolved } : {});
  await withBackend(ctx, async (run) => {
    const { evaluation, ...report } = await runRobustness(run, loaded, {
      ratio,
      selection,
      criteria,
      perturbations,
      evalText: texts[0]?.[1],
      ...(resolved ? { preset: resolved } : {}),
      sweep,
    });
    for (const w of robustnessWarnings(report)) run.progress.warn(w);
    const table =
      'grid' in report
        ? `ratio ${report.ratio}${report.dense ? `, dense PPL ${report.dense.ppl.toFixed(3)}` : ''}; IoU with each criterion's reference plan at that setting\n${markdownTable(sweepTable(report))}`
        : formatRobustnessTable(report);
    ctx.out(`${table}\n`);
    if (!flags.json && !flags.report) return;
    const m = modelSummary(loaded);
    const choice = calibrationChoice(flags, resolved);
    const cpu = cpus();
    const head: RobustnessHead = {
      format: 'moreau-robustness-report',
      version: 1,
      created: new Date().toISOString(),
      moreau: VERSION,
      model: { source: m.source, format: m.format, dtype: m.dtype, params: m.params, layers: m.layers },
      backend: backendInfo(run.backend),
      settings: {
        preset: resolved?.name ?? null,
        criteria: names,
        ratio,
        scope: scope.name,
        perturbations,
        sweep: sweep.length ? sweep : null,
        calibration: criteria.some((c) => getCriterion(c.name).requires.calibration)
          ? flags.calibTokens
            ? { source: flags.calibTokens, sampling: 'replayed', samples: null, seq_len: null }
            : {
                source: flags.calib || loaded.defaultText || null,
                sampling: choice.sampling,
                samples: choice.samples,
                seq_len: choice.seqLen,
              }
          : null,
        seed: flags.seed,
        ranking: selection.ranking ?? 'local',
        attn_layers: selection.attnLayers ?? null,
        mlp_layers: selection.mlpLayers ?? null,
        reduction: selection.reduction ?? null,
        ppl_text: evaluation.file,
        seq_len: flags.seqLen,
        windows: evaluation.windows,
      },
      machine: {
        cpus: cpu.length,
        cpu_model: cpu[0]?.model ?? 'unknown',
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        loadavg_start: loadStart,
        loadavg_end: loadavg(),
      },
      seconds: (performance.now() - started) / 1000,
    };
    const doc = { ...head, ...report } as RobustnessDocument;
    if (flags.json) await ctx.outputs.writeJson(flags.json, doc);
    if (flags.report) {
      await writeRobustnessReport(flags.report, doc, ctx.outputs);
      ctx.out(`\nreport: ${join(flags.report, 'report.md')}\n`);
    }
  });
}
