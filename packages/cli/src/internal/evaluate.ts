/** Perplexity and zero-shot accuracy of a (possibly pruned) model: eval, prune and compare share it. */
import { InputError } from '@moreau/core';
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
        onProgress: (p) => progress.update({ ...p, phase: `ppl ${name}`, unit: 'windows' }),
      });
      if (!Number.isFinite(r.ppl) || !Number.isFinite(r.nll)) {
        throw new InputError(
          `perplexity on '${file}' (${name}) is ${r.ppl}: the model's outputs are not finite numbers (non-finite weights?)`,
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
        signal,
        onProgress: (p) => progress.update({ ...p, phase: `task ${name}`, unit: 'requests' }),
      });
      if (r.n === 0 || !Number.isFinite(r.acc)) {
        throw new InputError(
          `task '${name}' on '${file}': accuracy is ${r.acc} over ${r.n} items (the model's outputs are not finite numbers?)`,
          file,
          name,
        );
      }
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
