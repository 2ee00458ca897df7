import {
  type CalibrationSet,
  getCriterion,
  type PrunableModel,
  parseScope,
  type ResolvedPreset,
  sampleCalibrationPatches,
} from '@moreau/core';
import {
  formatRobustnessTable,
  lossPerplexity,
  perplexityWindows,
  type RobustnessOptions,
  type RobustnessReport,
  robustness,
} from '@moreau/eval';
import type { LoadedModel } from '@moreau/models';
import type { CalibFlags, EvalFlags, RobustnessFlags } from '../../program.js';
import {
  type BackendContext,
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
  criteriaFlag,
  criteriaOptions,
  namedFiles,
  perturbFlag,
  planOptionsFromFlags,
  presetFlag,
  rankingFlag,
  requireInputFiles,
  resolvedPreset,
  textSourceOptions,
  UsageError,
} from '../flags.js';
import { writeJsonAtomic } from '../output.js';

/** Windows the pruned models' perplexity is measured on when --limit is not given. */
const ROBUSTNESS_WINDOWS = 32;

export interface RobustnessRun {
  readonly ratio: number;
  /** The selection flags' prune options at the run's scope (planOptionsFromFlags). */
  readonly selection: ReturnType<typeof planOptionsFromFlags>;
  /** Each criterion with its --opt options (over the preset's). */
  readonly criteria: readonly { name: string; options: Record<string, string | number | boolean> }[];
  readonly perturbations: readonly string[];
  /** Evaluation text (default: --calib, else the model's shipped held-out text). */
  readonly evalText?: string;
  /** Windows shared by every criterion (default: replayed from --calib-tokens, else drawn per criterion). */
  readonly calibration?: CalibrationSet;
  /** --preset, resolved for the model: its layer ranges, reduction and calibration draw. */
  readonly preset?: ResolvedPreset;
}

/**
 * The robustness analysis at one ratio: perplexity of pruned models on the evaluation text, in at
 * most --limit windows (default 32); calibration windows shared by every perturbation.
 */
export async function runRobustness(
  ctx: BackendContext<CalibFlags & EvalFlags>,
  loaded: LoadedModel,
  run: RobustnessRun,
): Promise<RobustnessReport> {
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
  const choice = calibrationChoice(flags, run.preset);
  const drawn = async (): Promise<RobustnessOptions['calibration']> => {
    if (choice.sampling === 'windows')
      return {
        tokens: await calibrationTokens(loaded, flags),
        samples: choice.samples,
        seqLen: choice.seqLen,
        seed: flags.seed,
      };
    // Patches: one draw per criterion, as many iterations as it uses (the text is read once).
    const text = await calibrationText(loaded, flags);
    return (criterion, options) =>
      sampleCalibrationPatches(text, (patch) => loaded.tokenizer.encode(patch, { bos: true }), {
        samples: choice.samples,
        seqLen: choice.seqLen,
        iterations: criterion.calibrationIterations?.(options) ?? 1,
        seed: flags.seed,
      });
  };
  const calibration = needsCalibration
    ? (run.calibration ?? (await replayedCalibration(loaded, flags)) ?? (await drawn()))
    : undefined;
  return robustness(loaded.model, {
    ratio: run.ratio,
    criteria: run.criteria,
    perturbations: run.perturbations,
    calibration,
    evaluate,
    prune: { ...run.selection, backend },
    signal: ctx.signal,
    onProgress: ctx.progress.update,
  });
}

export async function robustnessCommand(source: string, ctx: CommandContext<RobustnessFlags>) {
  const { flags } = ctx;
  await loadPlugins(flags.plugin);
  const preset = presetFlag(flags);
  const names = criteriaFlag(flags.criteria);
  const criteria = criteriaOptions(names, flags.opt, preset);
  const perturbations = perturbFlag(flags.perturb);
  const texts = namedFiles('--ppl', flags.ppl);
  requireInputFiles(flags, { '--ppl': texts });
  const scope = parseScope(flags.scope);
  // N:M fixes the ratio itself (N / M).
  const ratio = scope.kind === 'n:m' ? scope.n / scope.m : (flags.ratio ?? preset?.ratio);
  if (ratio === undefined) throw new UsageError("required option '--ratio <r>' not specified");
  if (scope.kind === 'n:m' && flags.ratio !== undefined)
    throw new UsageError(`--scope ${scope.name} zeroes ${scope.n} of every ${scope.m} weights: drop --ratio`);
  checkCriterionScopes(names, [scope.name]);
  rankingFlag(flags);
  const loaded = await openModel(source, flags);
  const resolved = resolvedPreset(preset, loaded.model.config);
  await withBackend(ctx, async (run) => {
    const report = await runRobustness(run, loaded, {
      ratio,
      selection: planOptionsFromFlags(flags, scope.name, resolved ? { preset: resolved } : {}),
      criteria,
      perturbations,
      evalText: texts[0]?.[1],
      ...(resolved ? { preset: resolved } : {}),
    });
    ctx.out(`${formatRobustnessTable(report)}\n`);
    if (flags.json) await writeJsonAtomic(flags.json, report);
  });
}
