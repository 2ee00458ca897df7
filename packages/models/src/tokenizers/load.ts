/**
 * loadTokenizer(path): pick the reader from what the path is.
 *  - a directory: tokenizer.bin (llama2.c vocabulary, as saveHfDirectory writes for llama2.c models),
 *    else tokenizer.json (+ tokenizer_config.json), else tokenizer.model (a SentencePiece protobuf);
 *  - a .gguf file (or any file starting with the GGUF magic): its embedded sentencepiece vocabulary;
 *  - a .json file: an HF tokenizer.json;
 *  - a .bin file: a llama2.c tokenizer;
 *  - a .model file: a SentencePiece model protobuf.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { describeError, FormatError } from '../formats/errors.js';
import { HfTokenizer } from './hf.js';
import { Llama2cTokenizer } from './llama2c.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import { loadSentencePieceModel } from './sentencepiece-model.js';
import type { Tokenizer } from './types.js';

async function firstBytes(file: string, n: number): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  try {
    const b = new Uint8Array(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export interface LoadTokenizerOptions {
  /** For llama2.c tokenizers: the model's vocab_size, checked against the file. */
  vocabSize?: number;
}

export async function loadTokenizer(path: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (e) {
    throw new FormatError(path, `cannot load a tokenizer: ${describeError(e)}`, { cause: e });
  }
  if (st.isDirectory()) {
    const files = new Set(await readdir(path));
    if (files.has('tokenizer.bin'))
      return Llama2cTokenizer.load(join(path, 'tokenizer.bin'), options.vocabSize);
    if (files.has('tokenizer.json')) return HfTokenizer.fromDirectory(path);
    if (files.has('tokenizer.model')) return loadSentencePieceModel(join(path, 'tokenizer.model'));
    throw new FormatError(
      path,
      'has no tokenizer: expected tokenizer.bin (llama2.c), tokenizer.json (Hugging Face) or tokenizer.model (SentencePiece)',
    );
  }
  const head = await firstBytes(path, 4);
  const isGguf =
    head.length === 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46;
  const ext = extname(path).toLowerCase();
  if (isGguf) return SentencePieceTokenizer.fromGguf(path);
  if (ext === '.gguf') throw new FormatError(path, 'has a .gguf name but does not start with the GGUF magic');
  if (ext === '.json') return HfTokenizer.fromFile(path);
  if (ext === '.bin') return Llama2cTokenizer.load(path, options.vocabSize);
  if (ext === '.model') return loadSentencePieceModel(path);
  throw new FormatError(
    path,
    'is not a known tokenizer: expected a directory, a .gguf file, a tokenizer.json, a SentencePiece .model or a llama2.c tokenizer .bin',
  );
}
