/**
 * `moreau compare`: prunes with every criterion at every scope and ratio in memory, evaluates each
 * pruned model, optionally runs the robustness analysis, and writes a report directory atomically
 * (one chart per scope).
 *
 * At the unit scopes (block, channel, layer) a criterion's unit scores do not depend on the ratio
 * (the ratio only decides how many units the selection keeps), so each criterion scores the model
 * once per scope; the other ratios re-select from those scores. The element scopes (unstructured,
 * N:M) turn salience into masks as it arrives and score again per ratio; N:M runs once, at N / M.
 * The plans are exactly those `moreau prune` makes with the same flags.
 */
import { existsSync } from 'node:fs';
import {
  type CalibrationSet,
  type Criterion,
  countNonZero,
  countParams,
  type ExecMode,
  getCriterion,
  InputError,
  type LoraConfig,
  mergeLora,
  type PruneResult,
  type PruneScope,
  parseScope,
  planToJSON,
  prune,
  type ResolvedPreset,
  resolveOptions,
} from '@moreau/core';
import type { RobustnessReport } from '@moreau/eval';
import { LlamaModel, type LoadedModel } from '@moreau/models';
import type { TuningData } from '@moreau/tune';
import type { CompareFlags } from '../../program.js';
import { VERSION } from '../../version.js';
import {
  type BackendContext,
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
  checkStateDir,
  criteriaFlag,
  criteriaOptions,
  namedFiles,
  perturbFlag,
  planOptionsFromFlags,
  presetFlag,
  rankingFlag,
  ratiosFlag,
  requireInputFiles,
  resolvedPreset,
  scopesFlag,
  taskFlags,
  textSourceOptions,
  UsageError,
} from '../flags.js';
import { named, textSummary } from '../report/render.js';
import type { CompareReport, CompareRun, TunedRun } from '../report/types.js';
import { checkReportDir, writeReport } from '../report/write.js';
import { latencyOf, latencySettings, MACS_COUNTED, macsOf, macsSeqLen } from '../speed.js';
import { loraConfigFromFlags, runTuning, templateFromFlags, tuningDataFromFlags } from '../tuning.js';
import { modelSummary } from './info.js';
import { ROBUSTNESS_WINDOWS, runRobustness } from './robustness.js';

/** What to compare, from the flags and the loaded model. */
interface Comparison {
  readonly source: string;
  readonly loaded: LoadedModel;
  readonly preset: ResolvedPreset | undefined;
  readonly criteria: readonly {
    readonly name: string;
    readonly options: Record<string, string | number | boolean>;
  }[];
  readonly ratios: readonly number[];
  readonly scopes: readonly PruneScope[];
  readonly texts: readonly [string, string][];
  readonly tasks: readonly [string, string][];
  readonly perturbations: readonly string[] | null;
  /** With --tune-data: the LoRA config and the tokenized data every pruned model is tuned on. */
  readonly tuning: { readonly lora: LoraConfig; readonly data: TuningData } | null;
}

const seconds = (since: number) => (performance.now() - since) / 1000;

/** The ratios a scope runs at: N:M fixes its own (N / M). */
function ratiosAt(scope: PruneScope, ratios: readonly number[]): readonly number[] {
  const s = parseScope(scope);
  return s.kind === 'n:m' ? [s.n / s.m] : ratios;
}

export async function compareCommand(source: string, ctx: CommandContext<CompareFlags>) {
  const started = performance.now();
  const c = await comparison(source, ctx);
  await withBackend(ctx, async (run) => {
    const { progress } = run;
    const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
    const params = countParams(c.loaded.model.params);
    progress.note(
      `model ${source}: ${params.toLocaleString('en-US')} parameters; backend ${run.backend.name} (${run.backend.device}); ${n(c.criteria.length, 'criterion', 'criteria')} x ${n(c.ratios.length, 'ratio', 'ratios')}${c.scopes.length > 1 ? ` x ${c.scopes.length} scopes` : ''}`,
    );
    const calibration = await sharedCalibration(run, c);
    const total = 1 + c.criteria.length * c.scopes.reduce((k, s) => k + ratiosAt(s, c.ratios).length, 0);
    let step = 0;
    const label = (what: string) => {
      step++;
      progress.prefix = `[${step}/${total}] ${what}: `;
    };
    const evaluateModel = (model: LlamaModel) => evaluate(run, model, c.loaded.tokenizer, c.texts, c.tasks);

    const T = macsSeqLen(run.flags);
    label('dense');
    const denseStart = performance.now();
    const { exec: denseExec = null, ...denseScores } = await evaluateModel(c.loaded.model);
    const dense = {
      params,
      ...denseScores,
      macs: macsOf(c.loaded.model.config, T),
      latency: (await latencyOf(run, c.loaded.model, 'dense')) ?? null,
      seconds: seconds(denseStart),
      exec: denseExec,
    };
    const runs: CompareRun[] = [];
    const plans = new Map<string, string>();
    const several = c.scopes.length > 1;
    for (const scope of c.scopes)
      for (const spec of c.criteria) {
        const pruneAt = scoredOnce(run, c.loaded.model, spec, scope, calibration, c.preset);
        for (const ratio of ratiosAt(scope, c.ratios)) {
          label(`${several ? `${scope} ` : ''}${spec.name} ${ratio}`);
          const { result, scoreSeconds, cutSeconds, diagnostics, warnings, scoreExec } = await pruneAt(ratio);
          const model = result.model as LlamaModel;
          const evalStart = performance.now();
          const ev = await evaluateModel(model);
          const evalSeconds = seconds(evalStart);
          const paramsAfter = countParams(model.params);
          // Zeroed weights are not parameters left: element scopes count non-zeros.
          const nonzero = result.plan.masks.length ? countNonZero(model.params) : paramsAfter;
          const tuned = c.tuning ? await tuneAndEvaluate(run, c, model, evaluateModel) : undefined;
          const plan = `plans/${several ? `${scope.replace(':', '-')}-` : ''}${spec.name}-${ratio}.json`;
          plans.set(plan, planToJSON(result.plan));
          runs.push({
            scope,
            criterion: spec.name,
            ratio,
            params_after: paramsAfter,
            nonzero_after: nonzero,
            params_left: nonzero / params,
            ppl: ev.ppl,
            nll: ev.nll,
            tasks: ev.tasks,
            paper_average: ev.paper_average,
            paper_tasks: ev.paper_tasks,
            macs: macsOf(model.config, T),
            latency: (await latencyOf(run, model, `${spec.name} ${ratio}`)) ?? null,
            diagnostics,
            warnings,
            seconds: scoreSeconds + cutSeconds + evalSeconds,
            score_seconds: scoreSeconds,
            eval_seconds: evalSeconds,
            score_exec: scoreExec,
            exec: ev.exec ?? null,
            plan,
            ...(tuned ? { tuned } : {}),
          });
        }
      }
    let robustness: Record<string, RobustnessReport> | undefined;
    if (c.perturbations) {
      robustness = {};
      for (const scope of c.scopes) {
        for (const ratio of ratiosAt(scope, c.ratios)) {
          const key = several ? `${scope} ${ratio}` : String(ratio);
          progress.prefix = `robustness ${key}: `;
          const { evaluation: _, ...r } = await runRobustness(run, c.loaded, {
            ratio,
            selection: planOptionsFromFlags(run.flags, scope, { lenient: true, preset: c.preset }),
            criteria: c.criteria,
            perturbations: c.perturbations,
            evalText: c.texts[0]![1],
            calibration,
            ...(c.preset ? { preset: c.preset } : {}),
          });
          robustness[key] = r;
        }
      }
    }
    progress.prefix = '';
    progress.note(`writing the report to ${run.flags.report}`);
    const { report } = await writeReport(
      run.flags.report,
      {
        ...reportHead(run, c, calibration),
        dense,
        runs,
        ...(robustness ? { robustness } : {}),
        seconds: seconds(started),
      },
      plans,
      run.outputs,
    );
    if (run.flags.json) await run.outputs.writeJson(run.flags.json, report);
    run.out(textSummary(report));
    run.out(
      `\nreport: ${run.flags.report}/report.html (report.json, report.md, ${report.charts.join(', ')})\n`,
    );
  });
}

/** Checks every flag before the model loads (a typo costs nothing), then loads it. */
async function comparison(source: string, ctx: CommandContext<CompareFlags>): Promise<Comparison> {
  const { flags, progress } = ctx;
  await loadPlugins(flags.plugin);
  const preset = presetFlag(flags);
  const names = criteriaFlag(flags.criteria, { unique: true });
  const ratios = ratiosFlag(flags.ratios);
  const scopes = scopesFlag(flags.scopes);
  checkCriterionScopes(names, scopes);
  rankingFlag(flags);
  const criteria = criteriaOptions(names, flags.opt, preset);
  const tasks = taskFlags(flags.task);
  const perturbations = flags.robustness ? perturbFlag(flags.perturb) : null;
  let texts = namedFiles('--ppl', flags.ppl);
  for (const [, file] of texts) textSourceOptions(flags, file);
  requireInputFiles(flags, { '--ppl': texts, '--task': tasks });
  checkStateDir(flags.stateDir);
  const lora = flags.tuneData ? loraConfigFromFlags(flags) : undefined;
  if (flags.tuneData && !existsSync(flags.tuneData))
    throw new InputError(`--tune-data: '${flags.tuneData}' not found`, flags.tuneData, '--tune-data');
  const template = flags.tuneData ? await templateFromFlags(flags) : undefined;
  await checkReportDir(flags.report, ctx.outputs);
  await ctx.outputs.checkFile('--json', flags.json);
  await ctx.outputs.checkFile('--save-calib', flags.saveCalib);

  const loaded = await openModel(source, flags);
  const resolved = resolvedPreset(preset, loaded.model.config);
  if (texts.length === 0 && loaded.defaultText) texts = [['heldout', loaded.defaultText]];
  if (texts.length === 0 && tasks.length === 0) {
    throw new UsageError(
      `compare needs --ppl NAME=FILE or --task NAME=FILE: '${source}' ships no held-out text`,
    );
  }
  if (perturbations && texts.length === 0)
    throw new UsageError('--robustness needs a perplexity text: pass --ppl NAME=FILE');
  const tuning =
    lora && flags.tuneData
      ? {
          lora,
          data: await tuningDataFromFlags(
            flags.tuneData,
            loaded.tokenizer,
            flags,
            flags.seed,
            progress,
            template,
          ),
        }
      : null;
  return {
    source,
    loaded,
    preset: resolved,
    criteria,
    ratios,
    scopes,
    texts,
    tasks,
    perturbations,
    tuning,
  };
}

/** LoRA-tunes one pruned model (compare --tune-data), merges the adapters and evaluates it. */
async function tuneAndEvaluate(
  run: BackendContext<CompareFlags>,
  c: Comparison,
  model: LlamaModel,
  evaluateModel: (m: LlamaModel) => ReturnType<typeof evaluate>,
): Promise<TunedRun> {
  const { flags } = run;
  const t0 = performance.now();
  const result = await runTuning(run, model, c.tuning!.data, {
    lora: c.tuning!.lora,
    lr: flags.lr,
    epochs: flags.epochs,
    batchSize: flags.tuneBatchSize,
    microBatchSize: flags.microBatchSize,
    warmupSteps: flags.warmupSteps,
    ...(flags.maxSteps !== undefined ? { maxSteps: flags.maxSteps } : {}),
    seed: flags.seed,
    evalSteps: flags.evalSteps,
    maxLength: Math.min(flags.cutoffLen, model.config.maxPositionEmbeddings),
  });
  const tuneSeconds = seconds(t0);
  const merged = new LlamaModel(model.config, mergeLora(model.params, result.adapters));
  const ev = await evaluateModel(merged);
  return {
    ppl: ev.ppl,
    nll: ev.nll,
    tasks: ev.tasks,
    paper_average: ev.paper_average,
    steps: result.steps,
    train_loss: result.history.at(-1)?.loss ?? null,
    val_loss: result.evals.at(-1)?.loss ?? null,
    seconds: seconds(t0),
    tune_seconds: tuneSeconds,
  };
}

/** The report's description of the run: model, backend and settings (every default filled in). */
function reportHead(
  { flags, backend }: BackendContext<CompareFlags>,
  c: Comparison,
  calibration: CalibrationSet | undefined,
): Pick<CompareReport, 'format' | 'version' | 'created' | 'moreau' | 'model' | 'backend' | 'settings'> {
  const { format, params, layers, heads, kv_heads, intermediate_size, vocab_size } = modelSummary(c.loaded);
  const replayed = flags.calibTokens ? calibration?.iterations[0] : undefined;
  const choice = calibrationChoice(flags, c.preset);
  const selection = planOptionsFromFlags(flags, 'block', { lenient: true, preset: c.preset });
  return {
    format: 'moreau-compare-report',
    version: 2,
    created: new Date().toISOString(),
    moreau: VERSION,
    model: { source: c.source, format, params, layers, heads, kv_heads, intermediate_size, vocab_size },
    backend: backendInfo(backend),
    settings: {
      preset: c.preset?.name ?? null,
      preset_source: c.preset ? { ...c.preset.source, files: [...c.preset.source.files] } : null,
      criteria: c.criteria.map((s) => s.name),
      ratios: c.ratios,
      scopes: c.scopes,
      options: Object.fromEntries(
        c.criteria.map((s) => [s.name, resolveOptions(getCriterion(s.name), s.options)]),
      ),
      ppl_texts: Object.fromEntries(c.texts),
      tasks: Object.fromEntries(c.tasks),
      seq_len: flags.seqLen,
      limit: flags.limit ?? null,
      calibration: calibration
        ? {
            source: flags.calibTokens || flags.calib || c.loaded.defaultText || null,
            sampling: flags.calibTokens ? 'replayed' : choice.sampling,
            samples: flags.calibTokens ? (replayed?.length ?? null) : choice.samples,
            seq_len: flags.calibTokens ? (replayed?.[0]?.length ?? null) : choice.seqLen,
            iterations: calibration.iterations.length,
          }
        : null,
      seed: flags.seed,
      ranking: rankingFlag(flags) ?? 'local',
      keep_low_ratio: flags.keepLowRatio ?? 0,
      attn_layers: selection.attnLayers ?? null,
      mlp_layers: selection.mlpLayers ?? null,
      perturbations: c.perturbations,
      robustness_windows: c.perturbations ? (flags.limit ?? ROBUSTNESS_WINDOWS) : null,
      zeroshot_protocol: flags.zeroshotProtocol,
      ppl_join: flags.pplJoin ?? null,
      field: flags.field ?? null,
      macs_seq_len: macsSeqLen(flags),
      macs_counted: MACS_COUNTED,
      latency: latencySettings(flags),
      exec: flags.exec,
      compute: computeInfo(backend, flags.computeDtype),
      tuning: c.tuning
        ? {
            data: flags.tuneData!,
            kind: c.tuning.data.kind,
            train_examples: c.tuning.data.train.length,
            validation_examples: c.tuning.data.validation.length,
            lora_r: c.tuning.lora.r,
            lora_alpha: c.tuning.lora.alpha,
            lora_dropout: c.tuning.lora.dropout,
            lora_targets: c.tuning.lora.targets,
            epochs: flags.epochs,
            max_steps: flags.maxSteps ?? null,
            lr: flags.lr,
            batch_size: flags.tuneBatchSize,
            micro_batch_size: flags.microBatchSize,
            cutoff_len: flags.cutoffLen,
            warmup_steps: flags.warmupSteps,
            train_on_inputs: flags.trainOnInputs,
          }
        : null,
    },
  };
}

/**
 * One calibration set for every criterion (as many fresh iterations as the hungriest needs): every
 * criterion sees the same first windows, and --save-calib writes exactly what was used.
 */
async function sharedCalibration(
  { flags, outputs }: CommandContext<CompareFlags>,
  c: Comparison,
): Promise<CalibrationSet | undefined> {
  const needing = c.criteria.filter((s) => getCriterion(s.name).requires.calibration);
  if (needing.length === 0) return undefined;
  const iterations = Math.max(
    1,
    ...needing.map((s) => {
      const criterion = getCriterion(s.name);
      return criterion.calibrationIterations?.(resolveOptions(criterion, s.options)) ?? 1;
    }),
  );
  return calibrationFromFlags(c.loaded, flags, iterations, calibrationChoice(flags, c.preset), outputs);
}

/**
 * Prunes with one criterion at one scope at any ratio: the first call scores the model, later calls
 * re-select from those scores (scoreSeconds is the first call's time, cutSeconds the re-selection's).
 * Element scopes have no unit scores to keep: every call scores.
 */
function scoredOnce(
  run: BackendContext<CompareFlags>,
  model: LlamaModel,
  spec: Comparison['criteria'][number],
  scope: PruneScope,
  calibration: CalibrationSet | undefined,
  preset: ResolvedPreset | undefined,
) {
  const criterion = getCriterion(spec.name);
  const kind = parseScope(scope).kind;
  const reuse = kind !== 'unstructured' && kind !== 'n:m';
  const base = {
    ...planOptionsFromFlags(run.flags, scope, { lenient: true, preset }),
    computeDtype: run.flags.computeDtype,
    options: spec.options,
    calibration: criterion.requires.calibration ? calibration : undefined,
    backend: run.backend,
    signal: run.signal,
    onProgress: run.progress.update,
  };
  let cached: Criterion | undefined;
  let scoreSeconds = 0;
  let report: Pick<PruneResult, 'diagnostics' | 'warnings'> = { diagnostics: [], warnings: [] };
  let scoreExec: ExecMode = 'whole';
  return async (ratio: number) => {
    const t0 = performance.now();
    const result = await prune(model, { ...base, criterion: cached ?? criterion, ratio });
    if (cached) return { result, scoreSeconds, cutSeconds: seconds(t0), scoreExec, ...report };
    scoreSeconds = seconds(t0);
    scoreExec = result.mode;
    if (reuse) cached = fromScores(criterion, result.scores);
    report = { diagnostics: result.diagnostics, warnings: result.warnings };
    for (const w of result.warnings) run.progress.warn(named(spec.name, w));
    return { result, scoreSeconds, cutSeconds: 0, scoreExec, ...report };
  };
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
