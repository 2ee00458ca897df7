/**
 * Evaluation and generation speed on the executor: perplexity tokens/s with the model run as one
 * graph ('whole') and layer-streamed ('streamed'), and generation tokens/s with the per-layer
 * cache, on stories260K and the shipped 'tiny' (onnxruntime, CPU).
 *
 *   npx tsx tools/bench/eval-stream.ts [--windows 64] [--seq-len 128] [--tokens 200] [--repeat 3]
 *
 * Each figure is the best of --repeat runs after a warm-up (the machine is shared: the best run
 * is the least disturbed one). Prints a markdown table and the load average.
 */
import { loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createOrtBackend } from '@moreau/backend-ort';
import { generate, perplexity, readText, type ScoringModel, scoringModelFromLlama } from '@moreau/eval';
import { loadModel } from '@moreau/models';
import { shared } from '../stories260k-setup.js';

const { values } = parseArgs({
  options: {
    windows: { type: 'string', default: '64' },
    'seq-len': { type: 'string', default: '128' },
    tokens: { type: 'string', default: '200' },
    repeat: { type: 'string', default: '3' },
  },
});
const windows = Number(values.windows);
const seqLen = Number(values['seq-len']);
const newTokens = Number(values.tokens);
const repeat = Number(values.repeat);

/** Best throughput of `repeat` timed runs after one warm-up run (compiles). */
async function best(run: () => Promise<number>): Promise<number> {
  await run();
  let top = 0;
  for (let i = 0; i < repeat; i++) {
    const t = performance.now();
    const n = await run();
    top = Math.max(top, n / ((performance.now() - t) / 1000));
  }
  return top;
}

const backend = await createOrtBackend({ intraOpNumThreads: 2 });
const text = await readText(path.join(shared, 'data/tinystories/tinystories_validation_head.txt'));
const models = [
  [
    'stories260K',
    path.join(shared, 'models/stories260K/stories260K.bin'),
    path.join(shared, 'models/stories260K/tok512.bin'),
  ],
  ['tiny', 'tiny', undefined],
] as const;
const rows: string[] = [];
for (const [name, source, tokenizer] of models) {
  const loaded = await loadModel(source, tokenizer ? { tokenizer } : {});
  const stream = loaded.tokenizer.encode(text, { bos: true });
  const bos = loaded.tokenizer.bosId ?? 0;
  for (const exec of ['whole', 'streamed'] as const) {
    const m: ScoringModel = scoringModelFromLlama(loaded.model.params, loaded.model.config, backend, {
      exec,
    });
    const ppl = await best(
      async () => (await perplexity(m, stream, { seqLen, limit: windows })).windows * seqLen,
    );
    const gen = await best(
      async () => (await generate(m, [bos], { maxNewTokens: newTokens, stopTokens: [] })).tokens.length,
    );
    rows.push(`| ${name} | ${exec} | ${ppl.toFixed(0)} | ${gen.toFixed(1)} |`);
    m.dispose?.();
  }
}
await backend.dispose();
console.log(
  `| model | exec | eval tokens/s (${windows} x ${seqLen}) | generation tokens/s (${newTokens} from BOS) |`,
);
console.log('| --- | --- | --- | --- |');
console.log(rows.join('\n'));
console.log(
  `\nload average: ${loadavg()
    .map((v) => v.toFixed(2))
    .join(', ')} (2 cores)`,
);
