import { generate, scoringModelFromLlama } from '@moreau/eval';
import type { ProgressReporter } from '../progress.js';
import { type Opts, openBackend, openModel } from './context.js';

/** Streams generated text to stdout; an empty prompt starts from BOS alone. */
export async function generateCommand(
  source: string,
  opts: Opts,
  progress: ProgressReporter,
  signal: AbortSignal,
) {
  const loaded = await openModel(source, opts);
  const backend = await openBackend(opts, progress);
  const tok = loaded.tokenizer;
  const prompt = String(opts.prompt ?? '');
  const ids = prompt ? tok.encode(prompt, { bos: true }) : tok.bosId !== undefined ? [tok.bosId] : [];
  if (ids.length === 0) ids.push(0);
  const scorer = scoringModelFromLlama(loaded.model.params, loaded.model.config, backend, { batchSize: 1 });
  process.stdout.write(prompt);
  const all = [...ids];
  let printed = tok.decode(all);
  try {
    await generate(scorer, ids, {
      maxNewTokens: opts.maxTokens ?? 64,
      temperature: opts.temperature ?? 0,
      topP: opts.topP ?? 1,
      topK: opts.topK ?? 0,
      seed: opts.seed ?? 1,
      signal,
      onToken: (id) => {
        all.push(id);
        const text = tok.decode(all);
        // Print only what the new token added; a partial UTF-8 sequence waits for the next one.
        if (text.startsWith(printed) && !text.endsWith('\uFFFD')) {
          process.stdout.write(text.slice(printed.length));
          printed = text;
        }
      },
    });
    const final = tok.decode(all);
    if (final.startsWith(printed)) process.stdout.write(final.slice(printed.length));
    process.stdout.write('\n');
  } finally {
    scorer.dispose();
    await backend.dispose();
  }
}
