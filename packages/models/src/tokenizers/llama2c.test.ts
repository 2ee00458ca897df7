import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  haveShared,
  STORIES_TOK,
  sharedPath,
  TINYSTORIES_HEAD,
  TINYSTORIES_SAMPLE,
  useScratchDir,
} from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../formats/errors.js';
import { Llama2cTokenizer } from './llama2c.js';

const HAVE = haveShared('Llama2cTokenizer tests', STORIES_TOK, TINYSTORIES_HEAD, TINYSTORIES_SAMPLE);

/**
 * A literal transcription of llama2.c's encode() semantics (quadratic; for short texts): byte strings,
 * first-match lookup, UTF-8 code points of at most 4 bytes, byte fallback + 3, greedy best merge.
 */
function referenceEncode(tok: Llama2cTokenizer, text: string, bos: boolean): number[] {
  const vocab = tok.pieces.map((p) => Buffer.from(p).toString('latin1'));
  const lookup = (s: string) => vocab.indexOf(s);
  const out: number[] = [];
  if (bos) out.push(1);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 0) out.push(lookup(' '));
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if ((c & 0xc0) !== 0x80) buf = [];
    buf.push(c);
    const next = bytes[i + 1];
    if (next !== undefined && (next & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup(Buffer.from(buf).toString('latin1'));
    if (id !== -1) out.push(id);
    else for (const b of buf) out.push(b + 3);
    buf = [];
  }
  const start = bos ? 1 : 0;
  for (;;) {
    let best = Math.fround(-1e10);
    let bestIdx = -1;
    let bestId = -1;
    for (let i = start; i + 1 < out.length; i++) {
      const id = lookup(vocab[out[i]!]! + vocab[out[i + 1]!]!);
      if (id !== -1 && tok.scores[id]! > best) {
        best = tok.scores[id]!;
        bestIdx = i;
        bestId = id;
      }
    }
    if (bestIdx === -1) return out;
    out.splice(bestIdx, 2, bestId);
  }
}

const dir = useScratchDir();

describe.skipIf(!HAVE)('Llama2cTokenizer (tok512.bin)', () => {
  let tok: Llama2cTokenizer;
  beforeAll(async () => {
    tok = await Llama2cTokenizer.load(sharedPath(STORIES_TOK));
  });

  it('reads the vocabulary', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.maxTokenLength).toBe(7);
    expect(tok.idToToken(1)).toBe('\n<s>\n');
    expect(tok.idToToken(3)).toBe('<0x00>');
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
  });

  it('encodes the whole TinyStories validation head to exactly 393,019 tokens (with BOS)', () => {
    const text = readFileSync(sharedPath(TINYSTORIES_HEAD), 'utf8');
    const ids = tok.encode(text);
    expect(ids.length).toBe(393_019);
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids)).toBe(text);
  });

  it('matches a literal transcription of llama2.c encode() on many snippets', () => {
    const text = readFileSync(sharedPath(TINYSTORIES_SAMPLE), 'utf8');
    const snippets = [
      '',
      ' ',
      'a',
      'Hello world',
      '  two  spaces ',
      'ümlaut 日本 🙂 \u0000x',
      'Lily\n\nOnce',
    ];
    for (let k = 0; k < 60; k++) {
      const start = (k * 613) % (text.length - 80);
      snippets.push(text.slice(start, start + 1 + ((k * 37) % 80)));
    }
    for (const s of snippets) {
      expect(tok.encode(s), JSON.stringify(s)).toEqual(referenceEncode(tok, s, true));
      expect(tok.encode(s, { bos: false }), JSON.stringify(s)).toEqual(referenceEncode(tok, s, false));
    }
  });

  it('decodes: strips the dummy-prefix space, assembles byte tokens into UTF-8', () => {
    for (const s of [
      'Once upon a time, there was a little girl named Lily.',
      'ümlaut 日本 🙂',
      ' leading',
      'a\nb\n',
    ]) {
      expect(tok.decode(tok.encode(s))).toBe(s);
      expect(tok.decode(tok.encode(s, { bos: false }))).toBe(s);
    }
    const ids = tok.encode('日', { bos: false });
    expect(ids.slice(1).every((id) => id >= 3 && id < 259)).toBe(true); // byte fallback
    expect(tok.encode('', { bos: true })).toEqual([1]);
    expect(tok.encode('', { bos: false })).toEqual([]);
    expect(tok.encode('x', { bos: false, eos: true }).at(-1)).toBe(2);
    expect(tok.decode([1, 2])).toBe('');
    // Streaming: the space after BOS is dropped, later spaces are kept.
    const once = tok.encode('Once', { bos: false });
    const piece = once[0]!;
    expect(new TextDecoder().decode(tok.decodeToken(piece, 1))).toBe(tok.idToToken(piece)!.trimStart());
    expect(new TextDecoder().decode(tok.decodeToken(piece, 50))).toBe(tok.idToToken(piece));
    expect(tok.decodeToken(0x41 + 3)).toEqual(Uint8Array.from([0x41]));
    expect(() => tok.decode([512])).toThrow(/outside the vocabulary/);
  });

  it('writes tokenizer.bin back byte for byte', async () => {
    const original = await readFile(sharedPath(STORIES_TOK));
    expect(Buffer.compare(Buffer.from(tok.toBytes()), original)).toBe(0);
    const file = join(dir(), 'tok.bin');
    await tok.save(file);
    const back = await Llama2cTokenizer.load(file, 512);
    expect(back.encode('Once upon a time')).toEqual(tok.encode('Once upon a time'));
    expect(Object.keys(tok.toFiles())).toEqual(['tokenizer.bin']);
  });

  it('rejects truncated or mismatched files naming the file', async () => {
    const original = await readFile(sharedPath(STORIES_TOK));
    const file = join(dir(), 'cut.bin');
    await writeFile(file, original.subarray(0, original.length - 3));
    const e = await Llama2cTokenizer.load(file).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FormatError);
    expect((e as FormatError).file).toBe(file);
    expect((e as FormatError).detail).toMatch(/truncated or corrupt: token 511 has length/);
    await expect(Llama2cTokenizer.load(sharedPath(STORIES_TOK), 32000)).rejects.toThrow(
      /has 512 tokens but the model's vocab_size is 32000/,
    );
  });
});
