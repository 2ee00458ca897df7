import { type CalibrationSet, getCriterion, type PrunableModel, parseScope } from '@moreau/core';
import {
  formatRobustnessTable,
  lossPerplexity,
  perplexityWindows,
  type RobustnessReport,
  robustness,
} from '@moreau/eval';
import type { LoadedModel } from '@moreau/models';
import type { CalibFlags, EvalFlags, RobustnessFlags } from '../../program.js';
import {
  type BackendContext,
  type CommandContext,
  calibrationTokens,
  loadPlugins,
  openModel,
  readTextSource,
  replayedCalibration,
  withBackend,
} from '../context.js';
import {
  checkCriterionScopes,
  criteriaFlag,
  criteriaOptions,
  namedFiles,
  perturbFlag,
  planOptionsFromFlags,
  rankingFlag,
  requireInputFiles,
  UsageError,
} from '../flags.js';
import { writeJsonAtomic } from '../output.js';

/** Windows the pruned models' perplexity is measured on when --limit is not given. */
const ROBUSTNESS_WINDOWS = 32;

export interface RobustnessRun {
  readonly ratio: number;
  /** The selection flags' prune options at the run's scope (planOptionsFromFlags). */
  readonly selection: ReturnType<typeof planOptionsFromFlags>;
  /** Each criterion with its --opt options. */
  readonly criteria: readonly { name: string; options: Record<string, string> }[];
  readonly perturbations: readonly string[];
  /** Evaluation text (default: --calib, else the model's shipped held-out text). */
  readonly evalText?: string;
  /** Windows shared by every criterion (default: replayed from --calib-tokens, else drawn per criterion). */
  readonly calibration?: CalibrationSet;
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
  const stream = loaded.tokenizer.encode(await readTextSource(file), { bos: true });
  const windows = perplexityWindows(stream, flags.seqLen, { limit: flags.limit ?? ROBUSTNESS_WINDOWS });
  const evaluate = (model: PrunableModel, signal?: AbortSignal) =>
    lossPerplexity(model, windows, { backend, batchSize: flags.batchSize, signal }).then((r) => r.ppl);
  const needsCalibration = run.criteria.some((c) => getCriterion(c.name).requires.calibration);
  const calibration = needsCalibration
    ? (run.calibration ??
      (await replayedCalibration(loaded, flags)) ?? {
        tokens: await calibrationTokens(loaded, flags),
        samples: flags.calibSamples,
        seqLen: flags.calibSeqLen,
        seed: flags.seed,
      })
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
  const names = criteriaFlag(flags.criteria);
  const criteria = criteriaOptions(names, flags.opt);
  const perturbations = perturbFlag(flags.perturb);
  const texts = namedFiles('--ppl', flags.ppl);
  requireInputFiles(flags, { '--ppl': texts });
  const scope = parseScope(flags.scope);
  // N:M fixes the ratio itself (N / M).
  const ratio = scope.kind === 'n:m' ? scope.n / scope.m : flags.ratio;
  if (ratio === undefined) throw new UsageError("required option '--ratio <r>' not specified");
  if (scope.kind === 'n:m' && flags.ratio !== undefined)
    throw new UsageError(`--scope ${scope.name} zeroes ${scope.n} of every ${scope.m} weights: drop --ratio`);
  checkCriterionScopes(names, [scope.name]);
  rankingFlag(flags);
  const loaded = await openModel(source, flags);
  await withBackend(ctx, async (run) => {
    const report = await runRobustness(run, loaded, {
      ratio,
      selection: planOptionsFromFlags(flags, scope.name),
      criteria,
      perturbations,
      evalText: texts[0]?.[1],
    });
    ctx.out(`${formatRobustnessTable(report)}\n`);
    if (flags.json) await writeJsonAtomic(flags.json, report);
  });
}
