import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  formatError,
  haveShared,
  STORIES_TOK,
  sharedPath,
  TINY_GGUF,
  useScratchDir,
} from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { HfTokenizer } from './hf.js';
import { loadTokenizer } from './load.js';

const HAVE_TOK = haveShared('loadTokenizer on a llama2.c .bin', STORIES_TOK);
const HAVE_GGUF = haveShared('loadTokenizer on a .gguf', TINY_GGUF);
const dir = useScratchDir();

/** A tiny hand-written HF tokenizer.json (word-level BPE with a Metaspace pre-tokenizer). */
const tinyJson = {
  version: '1.0',
  added_tokens: [
    {
      id: 0,
      content: '<unk>',
      special: true,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
    },
    {
      id: 1,
      content: '<s>',
      special: true,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
    },
    {
      id: 2,
      content: '</s>',
      special: true,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
    },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
  post_processor: null,
  decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
  model: {
    type: 'BPE',
    unk_token: '<unk>',
    vocab: { '<unk>': 0, '<s>': 1, '</s>': 2, '\u2581': 3, h: 4, i: 5, '\u2581h': 6, '\u2581hi': 7 },
    merges: ['\u2581 h', '\u2581h i'],
  },
};

describe('loadTokenizer', () => {
  it.skipIf(!HAVE_TOK)('loads a llama2.c .bin', async () => {
    const t = await loadTokenizer(sharedPath(STORIES_TOK));
    expect(t.kind).toBe('llama2c');
    expect(t.vocabSize).toBe(512);
  });

  it.skipIf(!HAVE_GGUF)('loads the vocabulary of a .gguf', async () => {
    const t = await loadTokenizer(sharedPath(TINY_GGUF));
    expect(t.kind).toBe('sentencepiece');
    expect(t.encode('Hello')).toEqual([1, 15043]);
  });

  it('loads a directory or file with tokenizer.json (+ tokenizer_config.json)', async () => {
    const d = join(dir(), 'hf');
    await mkdir(d);
    await writeFile(join(d, 'tokenizer.json'), JSON.stringify(tinyJson));
    await writeFile(
      join(d, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: '<s>', eos_token: { content: '</s>' } }),
    );
    for (const p of [d, join(d, 'tokenizer.json')]) {
      const t = await loadTokenizer(p);
      expect(t).toBeInstanceOf(HfTokenizer);
      expect(t.bosId).toBe(1);
      expect(t.eosId).toBe(2);
      expect(t.encode('hi hi')).toEqual([1, 7, 7]);
      expect(t.encode('hi', { bos: false, eos: true })).toEqual([7, 2]);
      expect(t.decode([1, 7, 7, 2])).toBe('hi hi');
      expect(Object.keys(t.toFiles()).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    }
  });

  it('gives clear errors for everything else', async () => {
    expect((await formatError(loadTokenizer(join(dir(), 'missing')))).detail).toMatch(
      /cannot load a tokenizer/,
    );
    const empty = join(dir(), 'empty');
    await mkdir(empty);
    expect((await formatError(loadTokenizer(empty))).detail).toMatch(
      /has no tokenizer: expected tokenizer.bin/,
    );
    const spm = join(dir(), 'spm');
    await mkdir(spm);
    await writeFile(join(spm, 'tokenizer.model'), 'x');
    const bad = await formatError(loadTokenizer(spm));
    expect(bad.file).toBe(join(spm, 'tokenizer.model'));
    expect(bad.detail).toMatch(/is not a SentencePiece model protobuf/);
    const txt = join(dir(), 'vocab.txt');
    await writeFile(txt, 'x');
    expect((await formatError(loadTokenizer(txt))).detail).toMatch(/is not a known tokenizer/);
    const fake = join(dir(), 'fake.gguf');
    await writeFile(fake, 'GGML....');
    expect((await formatError(loadTokenizer(fake))).detail).toMatch(/does not start with the GGUF magic/);
    const badJson = join(dir(), 'bad', 'tokenizer.json');
    await mkdir(join(dir(), 'bad'));
    await writeFile(badJson, '{"version": "1.0"}');
    const e = await formatError(loadTokenizer(join(dir(), 'bad')));
    expect(e.file).toBe(badJson);
    expect(e.detail).toMatch(/has no "model" object/);
    await writeFile(join(dir(), 'bad', 'tokenizer.json'), JSON.stringify(tinyJson));
    await writeFile(join(dir(), 'bad', 'tokenizer_config.json'), JSON.stringify({ bos_token: '<bos>' }));
    expect((await formatError(loadTokenizer(join(dir(), 'bad')))).detail).toMatch(
      /tokenizer_config bos_token "<bos>" is not in the vocabulary/,
    );
  });
});
