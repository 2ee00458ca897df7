/**
 * The evaluation switches the papers' numbers depend on: the 2023 harness's zero-shot tokenization
 * (checked on the 32k Llama-2 SentencePiece vocabulary), the papers' metric per task, and how a
 * perplexity text file becomes rows.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ReferenceBackend } from '@moreau/core';
import { type LlamaConfig, randomInit, SentencePieceTokenizer } from '@moreau/models';
import { haveShared, SHARED_DIR, TINY_GGUF } from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { forwardLatency } from './internal/latency.js';
import { PAPER_METRICS, paperAverage, paperScore } from './internal/paper.js';
import { loadTask, type MultipleChoiceItem, STANDARD_TASKS, type ZeroShotTask } from './internal/tasks.js';
import { readText, textRows } from './internal/text-source.js';
import { encodeRequest, evaluateTask, multipleChoiceMetrics } from './internal/zeroshot.js';
import { unigramModel } from './testing/toy.js';

const haveVocab = haveShared('zero-shot protocol tests on the Llama-2 vocabulary', TINY_GGUF);

describe.skipIf(!haveVocab)('zero-shot protocol harness-2023 (Llama-2 32k SentencePiece)', () => {
  let sp: SentencePieceTokenizer;
  beforeAll(async () => {
    sp = await SentencePieceTokenizer.fromGguf(path.join(SHARED_DIR, TINY_GGUF));
  });
  const piece = (id: number) => sp.idToToken(id);

  it('the vocabulary encodes as HF LlamaTokenizer does (known ids)', () => {
    // transformers: tok.encode('Hello world') == [1, 15043, 3186]; tok.encode(' Hello') ==
    // [1, 29871, 15043]: a leading space becomes its own '▁' (29871) before '▁Hello'.
    expect(sp.encode('Hello world')).toEqual([1, 15043, 3186]);
    expect(sp.encode(' Hello')).toEqual([1, 29871, 15043]);
    expect(piece(29871)).toBe('▁');
  });

  it('context and continuation encoded apart, no BOS: every continuation starts with its own "▁"', () => {
    const req = { context: 'Question: Is the sky blue?\nAnswer:', continuation: ' yes' };
    const old = encodeRequest(sp, req, { protocol: 'harness-2023' });
    // The old harness: context_enc = tok.encode(context, add_special_tokens=False), continuation_enc
    // = tok.encode(continuation, add_special_tokens=False), input = context_enc + continuation_enc.
    const ctx = [894, 29901, 1317, 278, 14744, 7254, 29973, 13, 22550, 29901];
    expect(ctx.map(piece)).toEqual([
      '▁Question',
      ':',
      '▁Is',
      '▁the',
      '▁sky',
      '▁blue',
      '?',
      '<0x0A>',
      'Answer',
      ':',
    ]);
    expect(old).toEqual({ tokens: [...ctx, 29871, 4874], continuationLength: 2 });
    // The current protocol: BOS, one joint encoding, the continuation is '▁yes' alone.
    const cur = encodeRequest(sp, req);
    expect(cur).toEqual({ tokens: [1, ...ctx, 4874], continuationLength: 1 });
    expect(
      encodeRequest(sp, { ...req, continuation: ' no' }, { protocol: 'harness-2023' }).tokens.slice(-2),
    ).toEqual([29871, 694]);
    // A context the harness leaves empty conditions on EOS (its eot_token_id), not BOS.
    expect(encodeRequest(sp, { context: '', continuation: 'Hello' }, { protocol: 'harness-2023' })).toEqual({
      tokens: [2, 15043],
      continuationLength: 1,
    });
    // Trailing context whitespace stays in the context (the old harness moves nothing).
    const spaced = encodeRequest(
      sp,
      { context: 'Answer: ', continuation: 'yes' },
      { protocol: 'harness-2023' },
    );
    expect(spaced.tokens).toEqual([
      ...sp.encode('Answer: ', { bos: false }),
      ...sp.encode('yes', { bos: false }),
    ]);
    // Left truncation keeps the last maxLength tokens, as for the current protocol.
    expect(encodeRequest(sp, req, { protocol: 'harness-2023', maxLength: 5 })).toEqual({
      tokens: [7254, 29973, 13, 22550, 29901, 29871, 4874].slice(-5),
      continuationLength: 2,
    });
  });

  const SETS = STANDARD_TASKS.filter((t) => t !== 'hellaswag');
  const haveTasks = haveShared(
    'harness-2023 sequences of the shared task files',
    'data/zeroshot/arc_easy.jsonl',
    'data/hellaswag/hellaswag_val_full.txt',
  );
  it.skipIf(!haveTasks)(
    'reproduces the old harness token sequences for the first items of every task',
    async () => {
      for (const name of [...SETS, 'hellaswag']) {
        const task = await loadTask(SHARED_DIR, name);
        if (task.kind !== 'multiple_choice') throw new Error(name);
        for (const item of task.items.slice(0, 5)) {
          for (const r of item.requests) {
            const want = [
              ...sp.encode(r.context, { bos: false }),
              ...sp.encode(r.continuation, { bos: false }),
            ];
            const got = encodeRequest(sp, r, { protocol: 'harness-2023' });
            expect(got.tokens, `${name}: ${r.continuation}`).toEqual(want);
            expect(got.tokens[0]).not.toBe(1);
            // Every continuation starts with a space, so with the dummy prefix it starts '▁▁...':
            // the lone '▁' (29871), or a '▁▁' piece when more spaces follow.
            expect(r.continuation.startsWith(' ')).toBe(true);
            const first = piece(got.tokens[got.tokens.length - got.continuationLength]!)!;
            expect(first === '▁' || first.startsWith('▁▁'), first).toBe(true);
          }
        }
      }
    },
  );

  it('evaluateTask scores the extra "▁": its log-probability is part of each continuation', async () => {
    const probs = new Array(sp.vocabSize).fill(0.5 / (sp.vocabSize - 3));
    probs[29871] = 0.25; // '▁'
    probs[4874] = 0.125; // '▁yes'
    probs[694] = 0.125; // '▁no'
    const model = unigramModel(probs, { eosId: 2 });
    const model2023 = unigramModel(probs, { eosId: 2 });
    const task: ZeroShotTask = {
      name: 'boolq',
      kind: 'multiple_choice',
      items: [
        {
          requests: [' yes', ' no'].map((c) => ({ context: 'Is it?\nAnswer:', continuation: c })),
          gold: 0,
          normTexts: ['yes', 'no'],
        },
      ],
    };
    const cur = await evaluateTask(model, sp, task);
    const old = await evaluateTask(model2023, sp, task, { protocol: 'harness-2023' });
    if (cur.kind !== 'multiple_choice' || old.kind !== 'multiple_choice') throw new Error('kind');
    expect(cur.logprobs[0]![0]).toBeCloseTo(Math.log(0.125), 5);
    expect(old.logprobs[0]![0]).toBeCloseTo(Math.log(0.25) + Math.log(0.125), 5);
    // No row starts with BOS under harness-2023.
    expect(model.calls.flat().filter((w) => w[0] === 1)).toHaveLength(2); // the current run's rows only
  });
});

describe('zero-shot protocol: acc_norm normalisation', () => {
  it('harness-2023 divides by characters (code points), current by UTF-8 bytes', () => {
    // 'éé' is 2 characters, 4 bytes; 'xyz' 3 and 3. lls -4 and -5:
    // per char -2 vs -1.67 (xyz wins); per byte -1 vs -1.67 (éé wins).
    const item: Pick<MultipleChoiceItem, 'gold' | 'normTexts'> = { gold: 0, normTexts: ['éé', 'xyz'] };
    expect(multipleChoiceMetrics([item], [[-4, -5]])).toEqual({ acc: 1, acc_norm: 1, n: 1 });
    expect(multipleChoiceMetrics([item], [[-4, -5]], 'harness-2023')).toEqual({ acc: 1, acc_norm: 0, n: 1 });
  });

  it('an unknown protocol is an error listing the valid ones', async () => {
    const task: ZeroShotTask = { name: 't', kind: 'multiple_choice', items: [] };
    await expect(
      evaluateTask(unigramModel([1]), { encode: () => [] }, task, { protocol: 'x' as never }),
    ).rejects.toThrow("unknown zero-shot protocol 'x'; valid: current, harness-2023");
  });
});

describe('the papers metric per task', () => {
  it('acc for boolq, winogrande, arc_easy; acc_norm for piqa, hellaswag, arc_challenge, openbookqa', () => {
    expect(PAPER_METRICS).toEqual({
      boolq: 'acc',
      winogrande: 'acc',
      arc_easy: 'acc',
      piqa: 'acc_norm',
      hellaswag: 'acc_norm',
      arc_challenge: 'acc_norm',
      openbookqa: 'acc_norm',
    });
    expect(paperScore('boolq', { acc: 0.7, acc_norm: 0.1 })).toBe(0.7);
    expect(paperScore('piqa', { acc: 0.7, acc_norm: 0.8 })).toBe(0.8);
    expect(paperScore('lambada', { acc: 0.5, acc_norm: null })).toBeNull();
  });

  it('the average over the evaluated paper tasks (LLaMA-7B dense, LLM-Pruner Table 1: 63.25)', () => {
    // The seven numbers of LLM-Pruner's dense LLaMA-7B row, each in the metric the paper uses.
    const row = {
      boolq: { acc: 0.7318, acc_norm: 0 },
      piqa: { acc: 0, acc_norm: 0.7835 },
      hellaswag: { acc: 0, acc_norm: 0.7299 },
      winogrande: { acc: 0.6701, acc_norm: 0 },
      arc_easy: { acc: 0.6745, acc_norm: 0 },
      arc_challenge: { acc: 0, acc_norm: 0.4138 },
      openbookqa: { acc: 0, acc_norm: 0.424 },
      lambada: { acc: 0.9, acc_norm: null },
    };
    const avg = paperAverage(row);
    expect(avg.tasks).toBe(7);
    expect(100 * avg.average!).toBeCloseTo(63.25, 2);
    expect(paperAverage({ lambada: { acc: 1, acc_norm: null } })).toEqual({ average: null, tasks: 0 });
  });
});

describe('perplexity text assembly: rows vs one document', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'moreau-rows-'));
  it('rows as the HF wikitext script yields them: line breaks kept, blank rows empty, joined by "\\n\\n"', async () => {
    expect(textRows(' = Title = \n \n Text one .\n\nlast')).toEqual([
      ' = Title = \n',
      '',
      ' Text one .\n',
      '',
      'last',
    ]);
    expect(textRows('a\nb\n')).toEqual(['a\n', 'b\n']);
    const file = path.join(dir, 'w.raw');
    writeFileSync(file, ' = T = \r\n \r\n Body .\r\n');
    expect(await readText(file, { documents: 'rows' })).toBe(' = T = \n\n\n\n\n Body .\n');
    expect(await readText(file)).toBe(' = T = \n \n Body .\n');
  });

  it('jsonl / parquet rows come from --field (PTB: sentence)', async () => {
    const file = path.join(dir, 'ptb.jsonl');
    writeFileSync(file, `${JSON.stringify({ sentence: 'a b' })}\n${JSON.stringify({ sentence: 'c' })}\n`);
    expect(await readText(file, { field: 'sentence' })).toBe('a b\n\nc');
    await expect(readText(file)).rejects.toThrow(/field 'text' is missing/);
  });
});

describe('forwardLatency', () => {
  const config: LlamaConfig = {
    vocabSize: 16,
    hiddenSize: 8,
    intermediateSize: 12,
    numHiddenLayers: 1,
    numAttentionHeads: 2,
    numKeyValueHeads: 2,
    headDim: 4,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 32,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenId: 2,
  };
  it('times repeats of one batch x length forward pass', async () => {
    const r = await forwardLatency(randomInit(config, 1), config, new ReferenceBackend(), {
      batch: 2,
      seqLen: 8,
      repeats: 3,
    });
    expect(r).toMatchObject({ batch: 2, seqLen: 8, repeats: 3 });
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.minSeconds).toBeLessThanOrEqual(r.seconds);
    expect(r.tokensPerSecond).toBeCloseTo(16 / r.seconds, 6);
    await expect(
      forwardLatency(randomInit(config, 1), config, new ReferenceBackend(), { seqLen: 33 }),
    ).rejects.toThrow(/longer than the model's 32 positions/);
  });
});
