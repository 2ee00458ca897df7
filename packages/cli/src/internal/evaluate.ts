/** Perplexity and zero-shot accuracy of a (possibly pruned) model: eval, prune and compare share it. */
import { evaluateTask, loadTaskFile, scoringModelFromLlama, textPerplexity } from '@moreau/eval';
import type { LlamaModel, Tokenizer } from '@moreau/models';
import { type BackendContext, readTextSource } from './context.js';
import type { TaskScores } from './report/types.js';

export interface Evaluation {
  readonly ppl: Record<string, number>;
  readonly nll: Record<string, number>;
  readonly tokens: Record<string, number>;
  readonly tasks: Record<string, TaskScores>;
}

/** What evaluation reads from the flags (without --batch-size, the scorer's default). */
interface EvalSettings {
  readonly seqLen: number;
  readonly limit?: number;
  readonly batchSize?: number;
}

/** Perplexity on NAME=FILE texts, then accuracy on NAME=FILE tasks (format inferred from each file). */
export async function evaluate(
  { flags, backend, progress, signal }: BackendContext<EvalSettings>,
  model: LlamaModel,
  tokenizer: Tokenizer,
  texts: readonly [string, string][],
  tasks: readonly [string, string][] = [],
): Promise<Evaluation> {
  const out: Evaluation = { ppl: {}, nll: {}, tokens: {}, tasks: {} };
  if (texts.length === 0 && tasks.length === 0) return out;
  const scorer = scoringModelFromLlama(model.params, model.config, backend, { batchSize: flags.batchSize });
  try {
    for (const [name, file] of texts) {
      const r = await textPerplexity(scorer, tokenizer, await readTextSource(file), {
        seqLen: flags.seqLen,
        limit: flags.limit,
        signal,
        onProgress: (p) => progress.update({ ...p, phase: `ppl ${name}` }),
      });
      out.ppl[name] = r.ppl;
      out.nll[name] = r.nll;
      out.tokens[name] = r.tokens;
    }
    for (const [name, file] of tasks) {
      const r = await evaluateTask(scorer, tokenizer, await loadTaskFile(name, file), {
        limit: flags.limit,
        signal,
        onProgress: (p) => progress.update({ ...p, phase: `task ${name}` }),
      });
      out.tasks[name] =
        r.kind === 'multiple_choice'
          ? { acc: r.acc, acc_norm: r.acc_norm, n: r.n }
          : { acc: r.acc, acc_norm: null, n: r.n, ppl: r.ppl };
    }
  } finally {
    scorer.dispose();
  }
  return out;
}
