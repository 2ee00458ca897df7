import { readFileSync } from 'node:fs';
import path from 'node:path';
import { haveShared, SHARED_DIR } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import {
  hellaswagPreprocess,
  loadTask,
  readFoundryJsonl,
  STANDARD_TASKS,
  taskFile,
} from './internal/tasks.js';

const files = [...STANDARD_TASKS, 'lambada_openai', 'copa'].map((t) => taskFile(SHARED_DIR, t));
const HAVE = haveShared('zero-shot task reader tests', ...files, 'data/zeroshot/openbook_qa.jsonl');

describe.skipIf(!HAVE)('zero-shot task readers on the shared data', () => {
  it('reads every task with the expected sizes', async () => {
    const sizes: Record<string, number> = {
      boolq: 3270,
      piqa: 1838,
      hellaswag: 10042,
      winogrande: 1267,
      arc_easy: 2376,
      arc_challenge: 1172,
      openbookqa: 500,
      lambada_openai: 5153,
      copa: 100,
    };
    for (const [name, n] of Object.entries(sizes)) {
      const t = await loadTask(SHARED_DIR, name);
      expect(t.items.length, name).toBe(n);
      expect(t.kind).toBe(name === 'lambada_openai' ? 'loglikelihood' : 'multiple_choice');
    }
  });

  it('builds the harness prompts', async () => {
    const first = async (name: string) => {
      const t = await loadTask(SHARED_DIR, name);
      if (t.kind !== 'multiple_choice') throw new Error('mc expected');
      return t.items[0]!;
    };
    const arc = await first('arc_easy');
    expect(arc.requests[0]!.context).toMatch(/^Question: .*\nAnswer:$/s);
    expect(arc.requests[0]!.continuation).toBe(` ${arc.normTexts[0]}`);
    const piqa = await first('piqa');
    expect(piqa.requests[0]!.context).toBe(
      "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
    );
    const boolq = await first('boolq');
    expect(boolq.requests[0]!.context.startsWith('Passage: ')).toBe(false);
    expect(boolq.requests[0]!.context).toMatch(/\nQuestion: [^\n]*\?\nAnswer:$/);
    expect(boolq.requests.map((r) => r.continuation)).toEqual([' no', ' yes']);
    const hs = await first('hellaswag');
    expect(hs.requests[0]!.context).toBe('Roof shingle removal: A man is sitting on a roof. he');
    expect(hs.gold).toBe(3);
    expect(hs.requests[3]!.continuation).toBe(' starts pulling up roofing on a roof.');
    const wg = await first('winogrande');
    expect(wg.requests.map((r) => r.context)).toEqual([
      'Sarah was a much better surgeon than Maria so Sarah',
      'Sarah was a much better surgeon than Maria so Maria',
    ]);
    expect(wg.requests[1]!.continuation).toBe(' always got the easier cases.');
    const lam = await loadTask(SHARED_DIR, 'lambada_openai');
    if (lam.kind !== 'loglikelihood') throw new Error('ll expected');
    expect(lam.items[0]!.continuation).toBe(' signs');
    expect(lam.items[0]!.context.endsWith(' care about')).toBe(true);
  });

  it('the original OpenBookQA tsv and the llm-foundry jsonl agree', async () => {
    const tsv = await loadTask(SHARED_DIR, 'openbookqa');
    const jsonl = await readFoundryJsonl(
      path.join(SHARED_DIR, 'data/zeroshot/openbook_qa.jsonl'),
      'openbookqa',
    );
    expect(tsv.items.length).toBe(jsonl.items.length);
    expect(JSON.stringify(tsv.items)).toBe(JSON.stringify(jsonl.items));
  });

  it("HellaSwag: 6-line layout, the harness cleanup applied on top of llama.cpp's", async () => {
    const lines = readFileSync(taskFile(SHARED_DIR, 'hellaswag'), 'utf8').split('\n');
    expect(lines[1]).toBe('3');
    expect(hellaswagPreprocess('How to x [title] Do y. See [www.a.org] for  more.')).toBe(
      'How to x. Do y. See for more.',
    );
    const t = await loadTask(SHARED_DIR, 'hellaswag');
    if (t.kind !== 'multiple_choice') throw new Error('mc expected');
    const all = t.items.flatMap((i) => [i.requests[0]!.context, ...i.normTexts]);
    expect(all.some((s) => /\[.*?\]/.test(s))).toBe(false); // an unmatched '[' may stay, as in the harness
    // Lines without brackets or double spaces are unchanged.
    expect(t.items[1]!.requests[0]!.context).toBe(lines[6]);
  });
});
