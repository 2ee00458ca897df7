import { evaluateTask, loadTaskFile, STANDARD_TASKS, scoringModelFromLlama } from '@moreau/eval';
import { writeJsonAtomic } from '../output.js';
import { UsageError } from '../program.js';
import type { ProgressReporter } from '../progress.js';
import type { TaskScores } from '../report/types.js';
import { backendInfo, namedFiles, type Opts, openBackend, openModel, requireInputFiles } from './context.js';
import { perplexities } from './evaluate.js';
import { modelSummary } from './info.js';

/** The --task names: the harness's multiple-choice tasks, and LAMBADA. */
export const TASK_NAMES: readonly string[] = [...STANDARD_TASKS, 'lambada'];

export function taskFlags(pairs: readonly string[] | undefined): [string, string][] {
  const tasks = namedFiles('--task', pairs);
  for (const [name] of tasks) {
    if (!TASK_NAMES.includes(name))
      throw new UsageError(`--task: unknown task '${name}'; valid: ${TASK_NAMES.join(', ')}`);
  }
  return tasks;
}

/** Zero-shot accuracy of a model on NAME=FILE tasks (format inferred from each file). */
export async function zeroShot(
  scorer: ReturnType<typeof scoringModelFromLlama>,
  tokenizer: Parameters<typeof evaluateTask>[1],
  tasks: readonly [string, string][],
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
): Promise<Record<string, TaskScores>> {
  const out: Record<string, TaskScores> = {};
  for (const [name, file] of tasks) {
    const task = await loadTaskFile(name, file);
    const r = await evaluateTask(scorer, tokenizer, task, {
      ...(opts.limit ? { limit: opts.limit } : {}),
      signal,
      onProgress: (p) => progress.update({ ...p, phase: `task ${name}` }),
    });
    out[name] =
      r.kind === 'multiple_choice'
        ? { acc: r.acc, acc_norm: r.acc_norm, n: r.n }
        : { acc: r.acc, acc_norm: null, n: r.n, ppl: r.ppl };
  }
  return out;
}

export async function evalCommand(
  source: string,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
) {
  const texts = namedFiles('--ppl', opts.ppl);
  const tasks = taskFlags(opts.task);
  if (texts.length === 0 && tasks.length === 0)
    throw new UsageError('eval needs at least one --ppl NAME=FILE or --task NAME=FILE');
  requireInputFiles(opts, { '--ppl': texts, '--task': tasks });
  const loaded = await openModel(source, opts);
  const backend = await openBackend(opts, progress);
  try {
    const ppl = await perplexities(
      loaded.model.params,
      loaded.model.config,
      loaded.tokenizer,
      texts,
      backend,
      opts,
      progress,
      signal,
    );
    const scorer = scoringModelFromLlama(loaded.model.params, loaded.model.config, backend, {
      batchSize: opts.batchSize ?? 8,
    });
    let taskScores: Record<string, TaskScores> = {};
    try {
      taskScores = await zeroShot(scorer, loaded.tokenizer, tasks, opts, progress, signal);
    } finally {
      scorer.dispose();
    }
    const result = { model: modelSummary(loaded), backend: backendInfo(backend), ...ppl, tasks: taskScores };
    for (const [k, v] of Object.entries(ppl.ppl)) {
      process.stdout.write(
        `ppl ${k.padEnd(16)} ${v.toFixed(4)}  (nll ${ppl.nll[k]!.toFixed(5)}, ${ppl.tokens[k]} tokens)\n`,
      );
    }
    for (const [k, v] of Object.entries(taskScores)) {
      process.stdout.write(
        `task ${k.padEnd(15)} acc ${v.acc.toFixed(4)}  acc_norm ${v.acc_norm === null ? '   -  ' : v.acc_norm.toFixed(4)}  n ${v.n}\n`,
      );
    }
    if (opts.json) await writeJsonAtomic(String(opts.json), result);
  } finally {
    await backend.dispose();
  }
}
