/** Perplexity and zero-shot accuracy of a (possibly pruned) model: eval, prune and compare share it. */
import { type ComputeDtype, type ComputeMode, type ExecMode, InputError } from '@moreau/core';
import {
  evaluateTask,
  loadTaskFile,
  paperAverage,
  paperScore,
  scoringModelFromLlama,
  textPerplexity,
  type ZeroShotProtocol,
} from '@moreau/eval';
import type { LlamaModel, Tokenizer } from '@moreau/models';
import type { TextFlags } from '../program.js';
import { type BackendContext, readTextSource } from './context.js';
import { checkWindowLength, textSourceOptions } from './flags.js';
import type { TaskScores } from './report/types.js';

export interface Evaluation {
  readonly ppl: Record<string, number>;
  readonly nll: Record<string, number>;
  readonly tokens: Record<string, number>;
  readonly tasks: Record<string, TaskScores>;
  /**
   * The mean of the tasks' `paper` numbers (each task in the metric the papers' tables use), null
   * when no paper task ran; `paper_tasks` says how many it averages (the papers average 7).
   */
  readonly paper_average: number | null;
  readonly paper_tasks: number;
  /** How the model ran ('whole' graph or layer-'streamed'); absent when nothing was evaluated. */
  readonly exec?: ExecMode;
  /** The compute dtype it ran in and whether natively or emulated; absent when nothing was evaluated. */
  readonly compute?: ComputeMode;
}

/** What evaluation reads from the flags (without --batch-size, the scorer's default). */
interface EvalSettings extends TextFlags {
  readonly seqLen: number;
  readonly limit?: number;
  readonly batchSize?: number;
  readonly zeroshotProtocol?: ZeroShotProtocol;
  readonly exec?: ExecMode | 'auto';
  /** --compute-dtype (default float32). */
  readonly computeDtype?: ComputeDtype;
}

/** Why outputs may be non-finite: float16's range (max 65504) overflows where float32's does not. */
const overflowHint = (dtype: ComputeDtype | undefined) =>
  dtype === 'float16'
    ? 'float16 compute overflowed? its largest value is 65504: try --compute-dtype bfloat16 or float32'
    : 'non-finite weights?';

/** Perplexity on NAME=FILE texts, then accuracy on NAME=FILE tasks (format inferred from each file). */
export async function evaluate(
  { flags, backend, progress, signal }: BackendContext<EvalSettings>,
  model: LlamaModel,
  tokenizer: Tokenizer,
  texts: readonly [string, string][],
  tasks: readonly [string, string][] = [],
): Promise<Evaluation> {
  const out = {
    ppl: {} as Record<string, number>,
    nll: {} as Record<string, number>,
    tokens: {} as Record<string, number>,
    tasks: {} as Record<string, TaskScores>,
  };
  let exec: ExecMode | undefined;
  let compute: ComputeMode | undefined;
  const withPaper = (): Evaluation => {
    const { average, tasks: n } = paperAverage(out.tasks);
    return {
      ...out,
      paper_average: average,
      paper_tasks: n,
      ...(exec ? { exec } : {}),
      ...(compute ? { compute } : {}),
    };
  };
  if (texts.length === 0 && tasks.length === 0) return withPaper();
  if (texts.length) checkWindowLength('--seq-len', flags.seqLen, model.config.maxPositionEmbeddings);
  // The model itself, not its params: LoRA adapters it carries (eval --adapter) run unmerged.
  const scorer = scoringModelFromLlama(model, backend, {
    ...(flags.batchSize !== undefined ? { batchSize: flags.batchSize } : {}),
    ...(flags.exec !== undefined ? { exec: flags.exec } : {}),
    ...(flags.computeDtype !== undefined ? { computeDtype: flags.computeDtype } : {}),
  });
  // The phase names the mode that runs (known once the first call chose it).
  const phase = (what: string) => (scorer.exec ? `${what} (${scorer.exec})` : what);
  try {
    for (const [name, file] of texts) {
      const r = await textPerplexity(
        scorer,
        tokenizer,
        await readTextSource(file, textSourceOptions(flags, file)),
        {
          seqLen: flags.seqLen,
          limit: flags.limit,
          signal,
          onProgress: (p) => progress.update({ ...p, phase: phase(`ppl ${name}`), unit: 'windows' }),
        },
      );
      if (!Number.isFinite(r.ppl) || !Number.isFinite(r.nll)) {
        throw new InputError(
          `perplexity on '${file}' (${name}) is ${r.ppl}: the model's outputs are not finite numbers (${overflowHint(flags.computeDtype)})`,
          file,
          name,
        );
      }
      out.ppl[name] = r.ppl;
      out.nll[name] = r.nll;
      out.tokens[name] = r.tokens;
    }
    for (const [name, file] of tasks) {
      const task = await loadTaskFile(name, file);
      if (task.items.length === 0)
        throw new InputError(`task file '${file}' (${name}) has no items to evaluate`, file, name);
      const r = await evaluateTask(scorer, tokenizer, task, {
        limit: flags.limit,
        ...(flags.zeroshotProtocol ? { protocol: flags.zeroshotProtocol } : {}),
        signal,
        onProgress: (p) => progress.update({ ...p, phase: phase(`task ${name}`), unit: 'requests' }),
      });
      if (r.n === 0 || !Number.isFinite(r.acc)) {
        throw new InputError(
          `task '${name}' on '${file}': accuracy is ${r.acc} over ${r.n} items (the model's outputs are not finite numbers? ${overflowHint(flags.computeDtype)})`,
          file,
          name,
        );
      }
      const scores =
        r.kind === 'multiple_choice'
          ? { acc: r.acc, acc_norm: r.acc_norm, n: r.n }
          : { acc: r.acc, acc_norm: null, n: r.n, ppl: r.ppl };
      out.tasks[name] = { ...scores, paper: paperScore(name, scores) };
    }
  } finally {
    scorer.dispose();
  }
  exec = scorer.exec;
  compute = scorer.compute;
  return withPaper();
}
