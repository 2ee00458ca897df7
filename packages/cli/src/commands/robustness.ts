import {
  type Backend,
  type CalibrationSet,
  getCriterion,
  type PrunableModel,
  resolveOptions,
} from '@moreau/core';
import {
  formatRobustnessTable,
  lossPerplexity,
  parsePerturbation,
  perplexityWindows,
  perturbationName,
  type RobustnessReport,
  robustness,
} from '@moreau/eval';
import type { LoadedModel } from '@moreau/models';
import { writeJsonAtomic } from '../output.js';
import { UsageError } from '../program.js';
import type { ProgressReporter } from '../progress.js';
import {
  calibrationTokens,
  loadPlugins,
  namedFiles,
  type Opts,
  openBackend,
  openModel,
  readTextSource,
  replayedCalibration,
  requireInputFiles,
} from './context.js';

export function listFlag(flag: string, value: unknown): string[] {
  const items = String(value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new UsageError(`${flag} needs a comma-separated list`);
  return items;
}

/** --perturb: every item parsed now, so a typo is a usage error before any work. */
export function perturbFlag(value: unknown): string[] {
  return listFlag('--perturb', value ?? 'fp16,bf16,gauss:0.01x3').map((p) => {
    try {
      return perturbationName(parsePerturbation(p));
    } catch (e) {
      throw new UsageError(`--perturb: ${(e as Error).message}`);
    }
  });
}

/** Criteria names checked against the registry (usage error listing valid ones). */
export function criteriaFlag(value: unknown): string[] {
  const names = listFlag('--criteria', value);
  for (const n of names) {
    try {
      getCriterion(n);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  return names;
}

/**
 * --opt KEY=VALUE for one criterion of a multi-criterion run: applied where the criterion
 * documents KEY; a key that no listed criterion documents is reported by checkOptKeys.
 */
export function optionsFor(name: string, pairs: readonly string[] = []): Record<string, string> {
  const c = getCriterion(name);
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`--opt expects KEY=VALUE, got '${p}'`);
    const k = p.slice(0, i);
    if (k in c.options) out[k] = p.slice(i + 1);
  }
  try {
    resolveOptions(c, out);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return out;
}

/** Every --opt key must belong to at least one of the criteria. */
export function checkOptKeys(criteria: readonly string[], pairs: readonly string[] = []): void {
  for (const p of pairs) {
    const k = p.slice(0, Math.max(0, p.indexOf('=')));
    if (!criteria.some((n) => k in getCriterion(n).options)) {
      throw new UsageError(
        `--opt ${k}: none of ${criteria.join(', ')} has this option; valid: ${[...new Set(criteria.flatMap((n) => Object.keys(getCriterion(n).options)))].join(', ')}`,
      );
    }
  }
}

/**
 * Perplexity of pruned models on `file`, default the first --ppl text (else the calibration /
 * shipped text), in at most --limit windows (default 32).
 */
export async function pplEvaluator(loaded: LoadedModel, opts: Opts, backend: Backend, file?: string) {
  if (file === undefined) {
    const texts = namedFiles('--ppl', opts.ppl);
    file = texts[0]?.[1] ?? (opts.calib ? String(opts.calib) : loaded.defaultText);
  }
  if (!file) throw new UsageError('robustness needs an evaluation text: pass --ppl NAME=FILE');
  const stream = loaded.tokenizer.encode(await readTextSource(file), { bos: true });
  const windows = perplexityWindows(stream, opts.seqLen ?? 128, { limit: opts.limit ?? 32 });
  return (model: PrunableModel, signal?: AbortSignal) =>
    lossPerplexity(model, windows, {
      backend,
      batchSize: opts.batchSize ?? 8,
      ...(signal ? { signal } : {}),
    }).then((r) => r.ppl);
}

export async function runRobustness(
  loaded: LoadedModel,
  backend: Backend,
  ratio: number,
  criteria: readonly string[],
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
  shared: { calibration?: CalibrationSet; evalText?: string } = {},
): Promise<RobustnessReport> {
  const evaluate = await pplEvaluator(loaded, opts, backend, shared.evalText);
  // The same windows for every perturbation of a criterion: given, replayed, or drawn from one stream.
  const needsCalibration = criteria.some((n) => getCriterion(n).requires.calibration);
  const calibration = needsCalibration
    ? (shared.calibration ??
      (await replayedCalibration(loaded, opts)) ?? {
        tokens: await calibrationTokens(loaded, opts),
        samples: opts.calibSamples ?? 4,
        seqLen: opts.calibSeqLen ?? 128,
        seed: opts.seed ?? 1,
      })
    : undefined;
  return robustness(loaded.model, {
    ratio,
    criteria: criteria.map((name) => ({ name, options: optionsFor(name, opts.opt) })),
    perturbations: perturbFlag(opts.perturb),
    ...(calibration ? { calibration } : {}),
    evaluate,
    prune: {
      backend,
      seed: opts.seed ?? 1,
      ranking: opts.global ? 'global' : 'local',
      ...(opts.attnLayers ? { attnLayers: opts.attnLayers } : {}),
      ...(opts.mlpLayers ? { mlpLayers: opts.mlpLayers } : {}),
      ...(opts.reduction ? { reduction: opts.reduction } : {}),
    },
    signal,
    onProgress: progress.update,
  });
}

export async function robustnessCommand(
  source: string,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
) {
  await loadPlugins(opts.plugin);
  const criteria = criteriaFlag(opts.criteria);
  checkOptKeys(criteria, opts.opt);
  for (const c of criteria) optionsFor(c, opts.opt);
  perturbFlag(opts.perturb);
  requireInputFiles(opts, { '--ppl': namedFiles('--ppl', opts.ppl) });
  const loaded = await openModel(source, opts);
  const backend = await openBackend(opts, progress);
  try {
    const report = await runRobustness(loaded, backend, opts.ratio, criteria, opts, progress, signal);
    process.stdout.write(`${formatRobustnessTable(report)}\n`);
    if (opts.json) await writeJsonAtomic(String(opts.json), report);
  } finally {
    await backend.dispose();
  }
}
