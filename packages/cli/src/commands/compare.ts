/**
 * `moreau compare`: prunes with every criterion at every ratio in memory, evaluates each pruned
 * model, optionally runs the robustness analysis, and writes a report directory atomically.
 *
 * A criterion's unit scores do not depend on the ratio (the ratio only decides how many units the
 * selection keeps), so each criterion scores the model once; the other ratios re-select from those
 * scores. The plans are exactly those `moreau prune` makes with the same flags.
 */
import {
  type CalibrationSet,
  type Criterion,
  countParams,
  getCriterion,
  type PruneResult,
  type PruningPlan,
  planToJSON,
  prune,
  resolveOptions,
} from '@moreau/core';
import { scoringModelFromLlama } from '@moreau/eval';
import type { LlamaModel, LoadedModel } from '@moreau/models';
import { parseRatio, UsageError } from '../program.js';
import type { ProgressReporter } from '../progress.js';
import { textSummary } from '../report/render.js';
import type { CompareRun, TaskScores } from '../report/types.js';
import { checkReportDir, writeReport } from '../report/write.js';
import { VERSION } from '../version.js';
import {
  backendInfo,
  calibrationFromFlags,
  loadPlugins,
  namedFiles,
  type Opts,
  openBackend,
  openModel,
  requireInputFiles,
} from './context.js';
import { taskFlags, zeroShot } from './eval.js';
import { type PplResults, perplexities } from './evaluate.js';
import {
  checkOptKeys,
  criteriaFlag,
  listFlag,
  optionsFor,
  perturbFlag,
  runRobustness,
} from './robustness.js';

/** --ratios: each in [0, 1), no duplicates, kept in the given order. */
export function ratiosFlag(value: unknown): number[] {
  const ratios = listFlag('--ratios', value).map((r) => {
    try {
      return parseRatio(r);
    } catch (e) {
      throw new UsageError(`--ratios: ${(e as Error).message}`);
    }
  });
  if (new Set(ratios).size !== ratios.length)
    throw new UsageError(`--ratios: a ratio is listed twice in '${value}'`);
  return ratios;
}

/** The same criterion, scoring from scores computed earlier (plans are identical; no recomputation). */
function fromScores(criterion: Criterion, scores: ReadonlyMap<string, Float64Array>): Criterion {
  return {
    name: criterion.name,
    description: criterion.description,
    options: criterion.options,
    defaultReduction: criterion.defaultReduction,
    channelMode: (o) => criterion.channelMode(o),
    requires: { gradients: false, calibration: false },
    score: async (ctx) => ({
      unitScores: ctx.groups.map((g) => {
        const s = scores.get(g.id);
        if (!s || s.length !== g.units) throw new Error(`compare: no cached scores for group ${g.id}`);
        return s;
      }),
    }),
  };
}

async function evaluateModel(
  model: LlamaModel,
  loaded: LoadedModel,
  texts: readonly [string, string][],
  tasks: readonly [string, string][],
  backend: Awaited<ReturnType<typeof openBackend>>,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
): Promise<PplResults & { tasks: Record<string, TaskScores> }> {
  const ppl = await perplexities(
    model.params,
    model.config,
    loaded.tokenizer,
    texts,
    backend,
    opts,
    progress,
    signal,
  );
  let taskScores: Record<string, TaskScores> = {};
  if (tasks.length) {
    const scorer = scoringModelFromLlama(model.params, model.config, backend, {
      batchSize: opts.batchSize ?? 8,
    });
    try {
      taskScores = await zeroShot(scorer, loaded.tokenizer, tasks, opts, progress, signal);
    } finally {
      scorer.dispose();
    }
  }
  return { ...ppl, tasks: taskScores };
}

const seconds = (since: number) => (performance.now() - since) / 1000;

export async function compareCommand(
  source: string,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
) {
  const started = performance.now();
  // Every flag is checked before the model loads: a typo costs nothing.
  await loadPlugins(opts.plugin);
  const criteria = criteriaFlag(opts.criteria);
  if (new Set(criteria).size !== criteria.length)
    throw new UsageError(`--criteria: a criterion is listed twice in '${opts.criteria}'`);
  const ratios = ratiosFlag(opts.ratios);
  checkOptKeys(criteria, opts.opt);
  const options = new Map(criteria.map((c) => [c, optionsFor(c, opts.opt)] as const));
  const tasks = taskFlags(opts.task);
  const perturbations = opts.robustness ? perturbFlag(opts.perturb) : null;
  let texts = namedFiles('--ppl', opts.ppl);
  requireInputFiles(opts, { '--ppl': texts, '--task': tasks });
  const reportDir = String(opts.report);
  await checkReportDir(reportDir);

  const loaded = await openModel(source, opts);
  if (texts.length === 0 && loaded.defaultText) texts = [['heldout', loaded.defaultText]];
  if (texts.length === 0 && tasks.length === 0) {
    throw new UsageError(
      `compare needs --ppl NAME=FILE or --task NAME=FILE: '${source}' ships no held-out text`,
    );
  }
  if (perturbations && texts.length === 0)
    throw new UsageError('--robustness needs a perplexity text: pass --ppl NAME=FILE');
  const backend = await openBackend(opts, progress);
  try {
    const paramsBefore = countParams(loaded.model.params);
    progress.note(
      `model ${source}: ${paramsBefore.toLocaleString('en-US')} parameters; backend ${backend.name} (${backend.device}); ${criteria.length} ${criteria.length === 1 ? 'criterion' : 'criteria'} x ${ratios.length} ${ratios.length === 1 ? 'ratio' : 'ratios'}`,
    );
    // One calibration set for every criterion (as many fresh iterations as the hungriest needs):
    // every criterion sees the same first windows, and --save-calib writes exactly what was used.
    const needCalibration = criteria.filter((c) => getCriterion(c).requires.calibration);
    const iterations = Math.max(
      1,
      ...needCalibration.map((c) => {
        const crit = getCriterion(c);
        return crit.calibrationIterations?.(resolveOptions(crit, options.get(c))) ?? 1;
      }),
    );
    const calibration: CalibrationSet | undefined = needCalibration.length
      ? await calibrationFromFlags(loaded, opts, iterations)
      : undefined;

    const total = 1 + criteria.length * ratios.length;
    let step = 0;
    const label = (what: string) => {
      step++;
      progress.prefix = `[${step}/${total}] ${what}: `;
    };

    label('dense');
    const denseStart = performance.now();
    const dense = await evaluateModel(loaded.model, loaded, texts, tasks, backend, opts, progress, signal);
    const denseSeconds = seconds(denseStart);

    const runs: CompareRun[] = [];
    const plans = new Map<string, string>();
    for (const name of criteria) {
      const criterion = getCriterion(name);
      const base = {
        options: options.get(name)!,
        seed: opts.seed ?? 1,
        ranking: (opts.global ? 'global' : 'local') as 'global' | 'local',
        ...(opts.attnLayers ? { attnLayers: opts.attnLayers } : {}),
        ...(opts.mlpLayers ? { mlpLayers: opts.mlpLayers } : {}),
        ...(opts.reduction ? { reduction: opts.reduction } : {}),
        backend,
        signal,
        onProgress: progress.update,
      };
      let cached: Criterion | undefined;
      let scoreSeconds = 0;
      for (const ratio of ratios) {
        label(`${name} ${ratio}`);
        const t0 = performance.now();
        let result: PruneResult;
        let cutSeconds = 0;
        if (!cached) {
          result = await prune(loaded.model, {
            ...base,
            criterion,
            ratio,
            ...(criterion.requires.calibration && calibration ? { calibration } : {}),
          });
          scoreSeconds = seconds(t0);
          cached = fromScores(criterion, result.scores);
        } else {
          result = await prune(loaded.model, { ...base, criterion: cached, ratio });
          cutSeconds = seconds(t0);
        }
        const model = result.model as LlamaModel;
        const t1 = performance.now();
        const ev = await evaluateModel(model, loaded, texts, tasks, backend, opts, progress, signal);
        const evalSeconds = seconds(t1);
        const planFile = `plans/${name}-${ratio}.json`;
        plans.set(planFile, planToJSON(result.plan as PruningPlan));
        const paramsAfter = countParams(model.params);
        runs.push({
          criterion: name,
          ratio,
          params_after: paramsAfter,
          params_left: paramsAfter / paramsBefore,
          ppl: ev.ppl,
          nll: ev.nll,
          tasks: ev.tasks,
          seconds: scoreSeconds + cutSeconds + evalSeconds,
          score_seconds: scoreSeconds,
          eval_seconds: evalSeconds,
          plan: planFile,
        });
      }
    }

    let robustness: Record<string, Awaited<ReturnType<typeof runRobustness>>> | undefined;
    if (perturbations) {
      robustness = {};
      for (const ratio of ratios) {
        progress.prefix = `robustness ${ratio}: `;
        robustness[String(ratio)] = await runRobustness(
          loaded,
          backend,
          ratio,
          criteria,
          opts,
          progress,
          signal,
          {
            ...(calibration ? { calibration } : {}),
            evalText: texts[0]![1],
          },
        );
      }
    }
    progress.prefix = '';
    progress.note(`writing the report to ${reportDir}`);

    const calibFile = opts.calibTokens
      ? String(opts.calibTokens)
      : opts.calib
        ? String(opts.calib)
        : (loaded.defaultText ?? null);
    const { report } = await writeReport(
      reportDir,
      {
        format: 'moreau-compare-report',
        version: 1,
        created: new Date().toISOString(),
        moreau: VERSION,
        model: {
          source,
          format: loaded.format,
          params: paramsBefore,
          layers: loaded.model.config.numHiddenLayers,
          heads: loaded.model.config.numAttentionHeads,
          kv_heads: loaded.model.config.numKeyValueHeads,
          intermediate_size: loaded.model.config.intermediateSize,
          vocab_size: loaded.model.config.vocabSize,
        },
        backend: backendInfo(backend),
        settings: {
          criteria,
          ratios,
          options: Object.fromEntries(
            criteria.map((c) => [c, resolveOptions(getCriterion(c), options.get(c))]),
          ),
          ppl_texts: Object.fromEntries(texts),
          tasks: Object.fromEntries(tasks),
          seq_len: opts.seqLen ?? 128,
          limit: opts.limit ?? null,
          calibration: calibration
            ? {
                source: calibFile,
                samples: opts.calibTokens
                  ? (calibration.iterations[0]?.length ?? null)
                  : (opts.calibSamples ?? 4),
                seq_len: opts.calibTokens
                  ? (calibration.iterations[0]?.[0]?.length ?? null)
                  : (opts.calibSeqLen ?? 128),
                iterations: calibration.iterations.length,
              }
            : null,
          seed: opts.seed ?? 1,
          scope: opts.global ? 'global' : 'local',
          attn_layers: opts.attnLayers ?? null,
          mlp_layers: opts.mlpLayers ?? null,
          perturbations,
        },
        dense: {
          params: paramsBefore,
          ppl: dense.ppl,
          nll: dense.nll,
          tokens: dense.tokens,
          tasks: dense.tasks,
          seconds: denseSeconds,
        },
        runs,
        ...(robustness ? { robustness } : {}),
        seconds: seconds(started),
      },
      plans,
    );
    process.stdout.write(textSummary(report));
    process.stdout.write(
      `\nreport: ${reportDir}/report.html (report.json, report.md, ${report.charts.join(', ')})\n`,
    );
  } finally {
    progress.prefix = '';
    await backend.dispose();
  }
}
