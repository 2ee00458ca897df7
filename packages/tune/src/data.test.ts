/**
 * The instruction-data reader, the prompt template and the tokenization of examples as
 * LLM-Pruner's post_training.py does it, on ../shared/data/alpaca (the first 102 records of the
 * cleaned Alpaca set and Alpaca-LoRA's template) and on small files made here.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path, { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, type Tokenizer } from '@moreau/models';
import { haveShared, sharedPath, useScratchDir } from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  detectDataKind,
  type Example,
  instructionExample,
  loadTuningData,
  microBatch,
  readInstructions,
  splitExamples,
  textExamples,
} from './internal/data.js';
import { ALPACA_TEMPLATE, formatPrompt, loadTemplate, parseTemplate } from './internal/template.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ALPACA = 'data/alpaca/alpaca_data_cleaned_sample.json';
const TEMPLATE = 'data/alpaca/alpaca_template.json';
const haveAlpaca = haveShared('the Alpaca sample tests', ALPACA, TEMPLATE);
const alpaca = sharedPath(ALPACA);
const templateFile = sharedPath(TEMPLATE);

let tok: Tokenizer;
const scratch = useScratchDir();
beforeAll(async () => {
  tok = (await loadModel('tiny')).tokenizer;
});

describe.skipIf(!haveAlpaca)('the Alpaca sample and Alpaca-LoRA template (../shared/data/alpaca)', () => {
  it('reads all 102 records; the template file is the embedded default', async () => {
    const records = await readInstructions(alpaca);
    expect(records).toHaveLength(102);
    expect(records[0]).toEqual({
      instruction: 'Give three tips for staying healthy.',
      input: '',
      output: expect.stringMatching(/^1\. Eat a balanced diet/),
    });
    expect(records.filter((r) => r.input !== '')).toHaveLength(48);
    expect(await loadTemplate(templateFile)).toEqual(ALPACA_TEMPLATE);
    expect(await detectDataKind(alpaca)).toBe('instructions');
  });

  it('formats prompts like Alpaca-LoRA: prompt_input only with a non-empty input, then the output', async () => {
    const records = await readInstructions(alpaca);
    const withInput = records.find((r) => r.input)!;
    const prompt = formatPrompt(ALPACA_TEMPLATE, withInput.instruction, withInput.input, withInput.output);
    expect(prompt).toBe(
      `Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n${withInput.instruction}\n\n### Input:\n${withInput.input}\n\n### Response:\n${withInput.output}`,
    );
    expect(formatPrompt(ALPACA_TEMPLATE, 'Do it.', '')).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nDo it.\n\n### Response:\n',
    );
  });

  it('tokenizes as post_training.py: BOS, cut at the cutoff, EOS only when not cut; response-only labels', async () => {
    const records = await readInstructions(alpaca);
    const r = records[0]!;
    const full = tok.encode(formatPrompt(ALPACA_TEMPLATE, r.instruction, r.input, r.output), { bos: true });
    const e = instructionExample(r, tok, { cutoffLen: 256 });
    expect(full.length).toBeLessThan(256);
    expect(Array.from(e.ids)).toEqual([...full, tok.eosId!]);
    expect(e.ids[0]).toBe(tok.bosId);
    expect(e.labels.every((v) => v === 1)).toBe(true);
    // Cut: exactly cutoff tokens, no EOS.
    const cut = instructionExample(r, tok, { cutoffLen: 20 });
    expect(Array.from(cut.ids)).toEqual(full.slice(0, 20));
    expect(cut.truncated).toBe(true);
    // One token short of the cutoff: EOS fits.
    const fits = instructionExample(r, tok, { cutoffLen: full.length + 1 });
    expect(fits.ids.at(-1)).toBe(tok.eosId);
    // Response only: the prompt's tokens (with BOS) are not labels.
    const user = tok.encode(formatPrompt(ALPACA_TEMPLATE, r.instruction, r.input), { bos: true });
    const resp = instructionExample(r, tok, { trainOnInputs: false });
    expect(Array.from(resp.labels.slice(0, user.length)).every((v) => v === 0)).toBe(true);
    expect(Array.from(resp.labels.slice(user.length)).every((v) => v === 1)).toBe(true);
  });

  it('loads, splits with the seed and drops examples with nothing to train', async () => {
    const data = await loadTuningData(alpaca, tok, { valSetSize: 10, seed: 3 });
    expect(data.kind).toBe('instructions');
    expect(data.read).toBe(102);
    expect(data.train).toHaveLength(92);
    expect(data.validation).toHaveLength(10);
    const again = await loadTuningData(alpaca, tok, { valSetSize: 10, seed: 3 });
    expect(again.validation.map((e) => Array.from(e.ids))).toEqual(
      data.validation.map((e) => Array.from(e.ids)),
    );
    const other = await loadTuningData(alpaca, tok, { valSetSize: 10, seed: 4 });
    expect(other.validation.map((e) => e.ids.length)).not.toEqual(data.validation.map((e) => e.ids.length));
    // A cutoff shorter than every prompt leaves nothing to train on the response only.
    const short = await loadTuningData(alpaca, tok, { cutoffLen: 50, trainOnInputs: false }).catch((e) => e);
    expect(String(short)).toMatch(/no example has a token to train on/);
    const some = await loadTuningData(alpaca, tok, { cutoffLen: 80, trainOnInputs: false });
    expect(some.skipped).toBeGreaterThan(0);
    expect(some.train.length + some.skipped).toBe(102);
  });
});

describe('instruction files, templates and text corpora', () => {
  it('names the file, record and field of a bad record', async () => {
    const json = join(scratch(), 'bad.json');
    await writeFile(
      json,
      JSON.stringify([
        { instruction: 'a', output: 'b' },
        { instruction: 'c', output: 3 },
      ]),
    );
    await expect(readInstructions(json)).rejects.toThrow(
      /bad\.json: record 1: field 'output' is number, not a string/,
    );
    await writeFile(json, JSON.stringify([{ instruction: 'a', input: 'x' }]));
    await expect(readInstructions(json)).rejects.toThrow(/bad\.json: record 0: field 'output' is missing/);
    await writeFile(json, JSON.stringify({ instruction: 'a' }));
    await expect(readInstructions(json)).rejects.toThrow(/must be a JSON array/);
    const jsonl = join(scratch(), 'bad.jsonl');
    await writeFile(
      jsonl,
      '{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "input": 7, "output": "d"}\n',
    );
    await expect(readInstructions(jsonl)).rejects.toThrow(/bad\.jsonl:3: record 1: field 'input' is number/);
    await writeFile(jsonl, '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n');
    expect(await readInstructions(jsonl)).toEqual([
      { instruction: 'a', input: '', output: 'b' },
      { instruction: 'c', input: '', output: 'd' },
    ]);
    expect(await detectDataKind(jsonl)).toBe('instructions');
    await writeFile(jsonl, '{"text": "one"}\n');
    expect(await detectDataKind(jsonl)).toBe('text');
    await writeFile(jsonl, '{"body": "one"}\n');
    await expect(detectDataKind(jsonl)).rejects.toThrow(/neither 'instruction'.*fields: body/);
  });

  it('checks template files (fields, placeholders, braces)', async () => {
    expect(() =>
      parseTemplate({ prompt_input: '{instruction} {input}', prompt_no_input: '{instruction}' }),
    ).toThrow(/'response_split' is missing/);
    expect(() =>
      parseTemplate({
        prompt_input: '{instrution} {input}',
        prompt_no_input: '{instruction}',
        response_split: 'R',
      }),
    ).toThrow(/unknown field \{instrution\}/);
    const t = parseTemplate({
      prompt_input: '{{json}} {instruction}: {input}\n',
      prompt_no_input: '{instruction}\n',
      response_split: 'R',
    });
    expect(formatPrompt(t, 'Say', 'hi', 'ok')).toBe('{json} Say: hi\nok');
    const file = join(scratch(), 'template.json');
    await writeFile(file, '{"prompt_input": ');
    await expect(loadTemplate(file)).rejects.toThrow(/template\.json: not valid JSON/);
  });

  it('cuts a text corpus into windows of cutoff tokens', async () => {
    const text = await readFile(join(repoRoot, 'packages/models/assets/tiny/heldout.txt'), 'utf8');
    const stream = tok.encode(text.slice(0, 5000), { bos: true });
    const windows = textExamples(text.slice(0, 5000), tok, 64);
    expect(windows).toHaveLength(Math.floor(stream.length / 64));
    expect(Array.from(windows[1]!.ids)).toEqual(stream.slice(64, 128));
    const file = join(scratch(), 'corpus.txt');
    await writeFile(file, text.slice(0, 5000));
    const data = await loadTuningData(file, tok, { cutoffLen: 64, valSetSize: 2 });
    expect(data.kind).toBe('text');
    expect(data.train.length + data.validation.length).toBe(windows.length);
  });

  it('splits deterministically and refuses a split that leaves nothing to train', () => {
    const items = Array.from({ length: 10 }, (_, i) => i);
    const a = splitExamples(items, 3, 1);
    expect(a.train).toHaveLength(7);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(items);
    expect(splitExamples(items, 3, 1)).toEqual(a);
    expect(() => splitExamples(items, 10, 1)).toThrow(/must leave training examples/);
  });

  it('pads micro-batches on the right to a multiple of 8, with next-token targets and the label mask', () => {
    const e = (ids: number[], labels: number[]): Example => ({
      ids: Int32Array.from(ids),
      labels: Uint8Array.from(labels),
    });
    const mb = microBatch([e([0, 5, 6, 7], [1, 1, 1, 1]), e([0, 9, 8], [0, 0, 1])], { padId: 0 });
    expect(mb.ids.shape).toEqual([2, 8]);
    expect(Array.from(mb.ids.data)).toEqual([0, 5, 6, 7, 0, 0, 0, 0, 0, 9, 8, 0, 0, 0, 0, 0]);
    expect(Array.from(mb.targets.data)).toEqual([5, 6, 7, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(mb.mask.data)).toEqual([1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    expect(mb.tokens).toBe(7);
    expect(mb.labels).toBe(4);
    // Capped by maxLength (a model's context), never below the longest example.
    expect(microBatch([e([0, 1, 2], [1, 1, 1])], { maxLength: 4 }).ids.shape).toEqual([1, 4]);
  });
});
