import { generate, scoringModelFromLlama } from '@moreau/eval';
import type { GenerateFlags } from '../../program.js';
import { attachAdapter, type CommandContext, computeInfo, openModel, withBackend } from '../context.js';
import { requireAdapterDir } from '../flags.js';

/**
 * Streams generated text to stdout; an empty prompt starts from BOS alone. The model decodes with
 * a cache per layer (with --adapter, the LoRA update is applied in every step); a line on stderr
 * says how it ran and how fast.
 */
export async function generateCommand(source: string, ctx: CommandContext<GenerateFlags>) {
  const { flags, out, progress } = ctx;
  requireAdapterDir(flags.adapter);
  await ctx.outputs.checkFile('--json', flags.json);
  const loaded = await openModel(source, ctx.flags);
  const tok = loaded.tokenizer;
  const adapted = flags.adapter ? await attachAdapter(loaded.model, flags.adapter) : undefined;
  const model = adapted?.model ?? loaded.model;
  await withBackend(ctx, async ({ backend, signal }) => {
    const ids = flags.prompt
      ? tok.encode(flags.prompt, { bos: true })
      : tok.bosId !== undefined
        ? [tok.bosId]
        : [];
    if (ids.length === 0) ids.push(0);
    const scorer = scoringModelFromLlama(model, backend, {
      batchSize: 1,
      exec: flags.exec,
      computeDtype: flags.computeDtype,
    });
    const started = performance.now();
    out(flags.prompt);
    const all = [...ids];
    let printed = tok.decode(all);
    try {
      const { tokens } = await generate(scorer, ids, {
        maxNewTokens: flags.maxTokens,
        temperature: flags.temperature,
        topP: flags.topP,
        topK: flags.topK,
        seed: flags.seed,
        signal,
        onToken: (id) => {
          all.push(id);
          const text = tok.decode(all);
          // Print only what the new token added; a partial UTF-8 sequence waits for the next one.
          if (text.startsWith(printed) && !text.endsWith('\uFFFD')) {
            out(text.slice(printed.length));
            printed = text;
          }
        },
      });
      const final = tok.decode(all);
      if (final.startsWith(printed)) out(final.slice(printed.length));
      out('\n');
      const secs = (performance.now() - started) / 1000;
      progress.note(
        `generated ${tokens.length} tokens in ${secs.toFixed(2)} s (${(tokens.length / secs).toFixed(1)} tokens/s; exec ${scorer.exec}; compute ${flags.computeDtype}${scorer.compute && scorer.compute.precision !== 'native' ? ` ${scorer.compute.precision}` : ''})`,
      );
      if (flags.json) {
        await ctx.outputs.writeJson(flags.json, {
          model: source,
          adapter: adapted?.summary ?? null,
          prompt: flags.prompt,
          text: final,
          prompt_ids: ids,
          generated_ids: all.slice(ids.length),
          exec: scorer.exec ?? null,
          compute: computeInfo(backend, flags.computeDtype, scorer.compute),
          settings: {
            max_tokens: flags.maxTokens,
            temperature: flags.temperature,
            top_p: flags.topP,
            top_k: flags.topK,
            seed: flags.seed,
          },
        });
      }
    } finally {
      scorer.dispose();
    }
  });
}
