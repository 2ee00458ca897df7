import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  type CalibrationSet,
  getCriterion,
  type PrunableModel,
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
import type { CalibFlags, EvalFlags, RobustnessFlags } from '../../program.js';
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
  criteriaFlag,
  criteriaOptions,
  namedFiles,
  perturbFlag,
  planOptionsFromFlags,
  presetFlag,
  requireInputFiles,
  resolvedPreset,
  sweepFlags,
  textSourceOptions,
  UsageError,
} from '../flags.js';
import { writeJsonAtomic } from '../output.js';
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
const ROBUSTNESS_WINDOWS = 32;

export interface RobustnessRun {
  readonly ratio: number;
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
  ctx: BackendContext<CalibFlags & EvalFlags>,
  loaded: LoadedModel,
  run: RobustnessRun & { sweep: readonly SweepAxis[] },
): Promise<RobustnessSweepReport & { evaluation: RobustnessEvaluation }>;
export async function runRobustness(
  ctx: BackendContext<CalibFlags & EvalFlags>,
  loaded: LoadedModel,
  run: RobustnessRun,
): Promise<RobustnessReport & { evaluation: RobustnessEvaluation }>;
export async function runRobustness(
  ctx: BackendContext<CalibFlags & EvalFlags>,
  loaded: LoadedModel,
  run: RobustnessRun,
): Promise<(RobustnessReport | RobustnessSweepReport) & { evaluation: RobustnessEvaluation }> {
  const { flags, backend } = ctx;
  const file = run.evalText ?? (flags.calib || loaded.defaultText);
  if (!file) throw new UsageError('robustness needs an evaluation text: pass --ppl NAME=FILE');
  const stream = loaded.tokenizer.encode(await readTextSource(file, textSourceOptions(flags, file)), {
    bos: true,
  });
  const windows = perplexityWindows(stream, flags.seqLen, { limit: flags.limit ?? ROBUSTNESS_WINDOWS });
  const evaluate = (model: PrunableModel, signal?: AbortSignal) =>
    lossPerplexity(model, windows, { backend, batchSize: flags.batchSize, signal }).then((r) => r.ppl);
  const needsCalibration = run.criteria.some((c) => getCriterion(c.name).requires.calibration);
  const options: RobustnessOptions = {
    ratio: run.ratio,
    criteria: run.criteria,
    perturbations: run.perturbations,
    calibration: needsCalibration ? await calibrationSource(flags, loaded, run) : undefined,
    evaluate,
    prune: { ...planOptionsFromFlags(flags, run.preset), backend },
    signal: ctx.signal,
    onProgress: ctx.progress.update,
  };
  const evaluation = { file, windows: windows.length };
  if (run.sweep?.length)
    return { ...(await robustnessSweep(loaded.model, { ...options, sweep: run.sweep })), evaluation };
  return { ...(await robustness(loaded.model, options)), evaluation };
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
  if (flags.report) await checkReportDir(flags.report);
  const loaded = await openModel(source, flags);
  const resolved = resolvedPreset(preset, loaded.model.config);
  await withBackend(ctx, async (run) => {
    const { evaluation, ...report } = await runRobustness(run, loaded, {
      ratio: flags.ratio,
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
    const selection = planOptionsFromFlags(flags, resolved);
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
        ratio: flags.ratio,
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
        scope: selection.scope ?? 'local',
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
    if (flags.json) await writeJsonAtomic(flags.json, doc);
    if (flags.report) {
      await writeRobustnessReport(flags.report, doc);
      ctx.out(`\nreport: ${join(flags.report, 'report.md')}\n`);
    }
  });
}
