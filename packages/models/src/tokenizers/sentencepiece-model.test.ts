import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatError, haveShared, sharedPath, TINY_GGUF, useScratchDir } from '@moreau/test-utils';
import protobuf from 'protobufjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from './load.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import { SENTENCEPIECE_DESCRIPTOR_JSON } from './sentencepiece-descriptor.js';
import { encodeSentencePieceModel, parseSentencePieceModel } from './sentencepiece-model.js';

const dir = useScratchDir();

const TEXTS = [
  'Hello world',
  'Once upon a time, there was a little girl named Lily.',
  '  leading spaces, trailing  ',
  'naïve café — 東京 🙂 ünïcödé\ttab\nnewline',
  'def f(x):\n    return x ** 2  # comment',
  '',
  '1234567890 3.14159 -42',
];

describe('SentencePiece model protobuf schema', () => {
  it('the embedded descriptor matches sentencepiece_model.proto (re-run scripts/gen-sentencepiece-descriptor.mjs)', () => {
    const src = readFileSync(new URL('./sentencepiece_model.proto', import.meta.url), 'utf8');
    const parsed = protobuf.parse(src, { keepCase: false }).root.toJSON();
    expect(JSON.parse(SENTENCEPIECE_DESCRIPTOR_JSON)).toEqual(JSON.parse(JSON.stringify(parsed)));
  });
});

describe.skipIf(!haveShared('tokenizer.model tests', TINY_GGUF))(
  'tokenizer.model with the 32k Llama-2 vocabulary',
  () => {
    let gguf: SentencePieceTokenizer;
    let modelDir: string;
    beforeAll(async () => {
      gguf = await SentencePieceTokenizer.fromGguf(sharedPath(TINY_GGUF));
      modelDir = join(dir(), 'llama-1-style');
      await mkdir(modelDir);
      await writeFile(join(modelDir, 'tokenizer.model'), encodeSentencePieceModel(gguf));
    });

    it('a folder with only tokenizer.model loads, with the pieces, scores, types and ids of the GGUF vocabulary', async () => {
      const tok = await loadTokenizer(modelDir);
      expect(tok).toBeInstanceOf(SentencePieceTokenizer);
      const sp = tok as SentencePieceTokenizer;
      expect(sp.vocabSize).toBe(32000);
      expect(sp.tokens).toEqual(gguf.tokens);
      expect([...sp.scores]).toEqual([...gguf.scores]);
      expect([...sp.tokenTypes]).toEqual([...gguf.tokenTypes]);
      expect([sp.bosId, sp.eosId, sp.unkId, sp.padId]).toEqual([1, 2, 0, undefined]);
      for (const t of TEXTS) {
        expect(sp.encode(t), t).toEqual(gguf.encode(t));
        expect(sp.decode(sp.encode(t))).toBe(gguf.decode(gguf.encode(t)));
      }
      expect(sp.encode('Hello world')).toEqual([1, 15043, 3186]);
      // A .model file given directly loads the same way.
      expect((await loadTokenizer(join(modelDir, 'tokenizer.model'))).encode(TEXTS[3]!)).toEqual(
        gguf.encode(TEXTS[3]!),
      );
    });

    it('settings that would change the segmentation are errors naming the field', async () => {
      const type = protobuf.Root.fromJSON(JSON.parse(SENTENCEPIECE_DESCRIPTOR_JSON)).lookupType(
        'sentencepiece.ModelProto',
      );
      const base = type.toObject(type.decode(encodeSentencePieceModel(gguf))) as Record<string, any>;
      const variant = (patch: (m: Record<string, any>) => void) => {
        const m = structuredClone(base);
        patch(m);
        return type.encode(type.fromObject(m)).finish();
      };
      const cases: [(m: Record<string, any>) => void, RegExp, string][] = [
        [(m) => (m.trainerSpec.modelType = 1), /model_type is UNIGRAM; only BPE/, 'trainer_spec.model_type'],
        [
          (m) => (m.normalizerSpec.name = 'nmt_nfkc'),
          /normalizer_spec.name is "nmt_nfkc"/,
          'normalizer_spec.name',
        ],
        [
          (m) => (m.normalizerSpec.removeExtraWhitespaces = true),
          /remove_extra_whitespaces is true/,
          'normalizer_spec.remove_extra_whitespaces',
        ],
        [(m) => (m.trainerSpec.bosId = 40000), /bos_id is 40000, not a piece id/, 'trainer_spec.bos_id'],
        [(m) => (m.pieces[7].score = Number.NaN), /piece 7 .* has score NaN/, 'pieces'],
        [(m) => (m.pieces = []), /has no pieces/, 'pieces'],
      ];
      for (const [patch, re, field] of cases) {
        const file = join(dir(), 'variant.model');
        await writeFile(file, variant(patch));
        const e = await formatError(loadTokenizer(file));
        expect(e.file).toBe(file);
        expect(e.detail).toMatch(re);
        expect(e.field).toBe(field);
      }
      expect(() =>
        parseSentencePieceModel(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f]), 'x.model'),
      ).toThrow(/x.model: is not a SentencePiece model protobuf/);
    });
  },
);
