/** Perplexity and zero-shot accuracy of a (possibly pruned) model: eval, prune and compare share it. */
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
import { textSourceOptions } from './flags.js';
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
}

/** What evaluation reads from the flags (without --batch-size, the scorer's default). */
interface EvalSettings extends TextFlags {
  readonly seqLen: number;
  readonly limit?: number;
  readonly batchSize?: number;
  readonly zeroshotProtocol?: ZeroShotProtocol;
}

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
  const withPaper = (): Evaluation => {
    const { average, tasks: n } = paperAverage(out.tasks);
    return { ...out, paper_average: average, paper_tasks: n };
  };
  if (texts.length === 0 && tasks.length === 0) return withPaper();
  const scorer = scoringModelFromLlama(model.params, model.config, backend, { batchSize: flags.batchSize });
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
          onProgress: (p) => progress.update({ ...p, phase: `ppl ${name}` }),
        },
      );
      out.ppl[name] = r.ppl;
      out.nll[name] = r.nll;
      out.tokens[name] = r.tokens;
    }
    for (const [name, file] of tasks) {
      const r = await evaluateTask(scorer, tokenizer, await loadTaskFile(name, file), {
        limit: flags.limit,
        ...(flags.zeroshotProtocol ? { protocol: flags.zeroshotProtocol } : {}),
        signal,
        onProgress: (p) => progress.update({ ...p, phase: `task ${name}` }),
      });
      const scores =
        r.kind === 'multiple_choice'
          ? { acc: r.acc, acc_norm: r.acc_norm, n: r.n }
          : { acc: r.acc, acc_norm: null, n: r.n, ppl: r.ppl };
      out.tasks[name] = { ...scores, paper: paperScore(name, scores) };
    }
  } finally {
    scorer.dispose();
  }
  return withPaper();
}
