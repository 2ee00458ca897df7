import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import {
  ByteBpe,
  countWords,
  fromTokenizerJson,
  pretokenize,
  tokenizerConfigJson,
  toTokenizerJson,
  trainBpe,
} from './bpe.js';
import { detagDocument, joinWords, splitDocuments, stripTag } from './brown.js';

describe('Brown de-tagging', () => {
  it('strips tags and re-attaches punctuation and quotes', () => {
    expect(stripTag('1/2/cd')).toBe('1/2');
    expect(stripTag("didn't/dod*")).toBe("didn't");
    expect(joinWords(['He', 'said', ',', '``', 'no', "''", '.'])).toBe('He said, "no".');
    expect(joinWords(['a', '(', 'b', ')', 'c', ';', ';', 'd', '--', 'e'])).toBe('a (b) c; d -- e');
    expect(joinWords(['Ivan', 'Allen', 'Jr.', '.'])).toBe('Ivan Allen Jr.');
    expect(joinWords(['the', 'students', "'", 'books', '?'])).toBe("the students' books?");
  });

  it('keeps paragraphs and headlines on their own lines', () => {
    const raw =
      '\n\n\tThe/at jury/nn said/vbd ./.\nIt/pps agreed/vbd ./.\n\n\n\tMerger/nn-hl proposed/vbn-hl\n' +
      'However/rb ,/, it/pps did/dod ./.\n';
    expect(detagDocument(raw)).toBe('The jury said. It agreed.\nMerger proposed\nHowever, it did.');
  });

  it('splits documents by a seeded permutation', () => {
    const docs = Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, category: 'x', text: String(i) }));
    const a = splitDocuments(docs, 7, 0.05);
    const b = splitDocuments(docs, 7, 0.05);
    expect(a.heldout.map((d) => d.id)).toEqual(b.heldout.map((d) => d.id));
    expect(a.heldout).toHaveLength(2);
    expect(a.train).toHaveLength(38);
  });
});

describe('byte-level BPE', () => {
  const corpus = [
    'the cat sat on the mat. the cat ate the rat.',
    'They\'re here, aren\'t they? The THE the 1961 1962 -- "quoted" text.\nNew line  two spaces',
  ];
  const model = trainBpe(countWords(corpus), { vocabSize: 258 + 40 });
  const bpe = new ByteBpe(model);

  it('uses GPT-2 pre-tokenization', () => {
    expect(pretokenize("They're here,  now")).toEqual(['They', "'re", ' here', ',', ' ', ' now']);
  });

  it('learns the most frequent pairs first, deterministically', () => {
    expect(model.vocab).toHaveLength(298);
    expect(model.vocab.slice(0, 2)).toEqual(['<s>', '</s>']);
    // 'Ġ' + 't' (" t") is among the most frequent pairs of this corpus.
    expect(model.merges.slice(0, 3).map((m) => m.join(''))).toContain('Ġt');
    expect(trainBpe(countWords(corpus), { vocabSize: 298 })).toEqual(model);
  });

  it('round-trips any text, including non-ASCII', () => {
    for (const s of [...corpus, 'Naïve café — “quotes” 日本 🙂', '']) {
      const ids = bpe.encode(s);
      expect(ids[0]).toBe(0);
      expect(bpe.decode(ids)).toBe(s);
    }
  });

  it('writes a tokenizer.json that @huggingface/tokenizers encodes identically', () => {
    const json = toTokenizerJson(model);
    const hf = new Tokenizer(json, tokenizerConfigJson(model, 256));
    for (const s of [...corpus, 'the mat sat. Naïve café — “quotes” 🙂']) {
      const ours = bpe.encode(s);
      expect(hf.encode(s).ids).toEqual(ours);
      expect(hf.decode(ours, { skip_special_tokens: true })).toBe(s);
    }
    expect(fromTokenizerJson(JSON.parse(JSON.stringify(json)))).toEqual(model);
  });
});
