import { readFileSync } from 'node:fs';
import { haveShared, sharedPath, TINY_GGUF, TINYSTORIES_SAMPLE } from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from './hf.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

const WIKI = 'data/wikitext-2-raw/wiki.test.raw';
const HAVE = haveShared('SentencePieceTokenizer tests', TINY_GGUF, TINYSTORIES_SAMPLE, WIKI);

describe.skipIf(!HAVE)('SentencePieceTokenizer (Llama-2 32k vocabulary from GGUF)', () => {
  let tok: SentencePieceTokenizer;
  beforeAll(async () => {
    tok = await SentencePieceTokenizer.fromGguf(sharedPath(TINY_GGUF));
  });

  it('gives the known Llama-2 ids', () => {
    expect(tok.vocabSize).toBe(32000);
    expect(tok.encode('Hello')).toEqual([1, 15043]);
    expect(tok.encode('Hello world')).toEqual([1, 15043, 3186]);
    expect(tok.idToToken(3186)).toBe('\u2581world');
    expect(tok.encode(' world', { bos: false })).toEqual([29871, 3186]); // "▁" + "▁world", as Llama-2 does
    expect(tok.encode('\n', { bos: false })).toEqual([29871, 13]); // newline falls back to <0x0A>
    expect(tok.encode('', { bos: true })).toEqual([1]);
    expect(tok.encode('Hi', { bos: false, eos: true })).toEqual([...tok.encode('Hi', { bos: false }), 2]);
  });

  it('round-trips English and non-ASCII text', () => {
    const samples = [
      readFileSync(sharedPath(TINYSTORIES_SAMPLE), 'utf8'),
      readFileSync(sharedPath(WIKI), 'utf8').slice(0, 20000),
      '  leading spaces, trailing  ',
      'héllo wörld — 日本語 🙂 \t tabs',
    ];
    for (const s of samples) {
      expect(tok.decode(tok.encode(s))).toBe(s);
      expect(tok.decode(tok.encode(s, { bos: false }))).toBe(s);
    }
    expect(tok.decode([1, 15043, 2])).toBe('Hello');
    expect(new TextDecoder().decode(tok.decodeToken(3186, 15043))).toBe(' world');
    expect(new TextDecoder().decode(tok.decodeToken(15043, 1))).toBe('Hello');
  });

  it('produces an HF tokenizer.json that tokenizes identically', () => {
    const files = tok.toFiles();
    const json = JSON.parse(new TextDecoder().decode(files['tokenizer.json']));
    const config = JSON.parse(new TextDecoder().decode(files['tokenizer_config.json']));
    expect(json.model.type).toBe('BPE');
    expect(json.model.byte_fallback).toBe(true);
    expect(config.bos_token).toBe('<s>');
    const hf = new HfTokenizer(json, config);
    expect(hf.bosId).toBe(1);
    expect(hf.eosId).toBe(2);
    expect(hf.vocabSize).toBe(32000);
    const texts = [
      readFileSync(sharedPath(TINYSTORIES_SAMPLE), 'utf8'),
      readFileSync(sharedPath(WIKI), 'utf8').slice(0, 30000),
      'héllo wörld — 日本語 🙂',
    ];
    for (const s of texts) {
      const ids = tok.encode(s);
      expect(hf.encode(s)).toEqual(ids);
      expect(hf.decode(ids)).toBe(s);
    }
  });

  it('exports its vocabulary for GGUF', () => {
    const d = tok.toGgufTokenizerData();
    expect(d.tokens.length).toBe(32000);
    expect(new SentencePieceTokenizer(d).encode('Hello world')).toEqual([1, 15043, 3186]);
  });
});
