/** Perplexity of a (possibly pruned) model on NAME=FILE texts, shared by eval, prune and compare. */
import type { Backend, HostTensor } from '@moreau/core';
import { scoringModelFromLlama, textPerplexity } from '@moreau/eval';
import type { LlamaConfig, Tokenizer } from '@moreau/models';
import type { ProgressReporter } from '../progress.js';
import { type Opts, readTextSource } from './context.js';

export interface PplResults {
  ppl: Record<string, number>;
  nll: Record<string, number>;
  tokens: Record<string, number>;
}

export async function perplexities(
  params: ReadonlyMap<string, HostTensor>,
  config: LlamaConfig,
  tokenizer: Tokenizer,
  texts: readonly [string, string][],
  backend: Backend,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
): Promise<PplResults> {
  const out: PplResults = { ppl: {}, nll: {}, tokens: {} };
  if (texts.length === 0) return out;
  const scorer = scoringModelFromLlama(params, config, backend, { batchSize: opts.batchSize ?? 8 });
  try {
    for (const [name, file] of texts) {
      const text = await readTextSource(file);
      const r = await textPerplexity(scorer, tokenizer, text, {
        seqLen: opts.seqLen ?? 128,
        ...(opts.limit ? { limit: opts.limit } : {}),
        signal,
        onProgress: (p) => progress.update({ ...p, phase: `ppl ${name}` }),
      });
      out.ppl[name] = r.ppl;
      out.nll[name] = r.nll;
      out.tokens[name] = r.tokens;
    }
  } finally {
    scorer.dispose();
  }
  return out;
}
