/**
 * Fuzz-style tests of the evaluation readers (issue 18, class 6): generated hostile inputs from a
 * seeded RNG. Every input either reads, or fails with one InputError line that names the file
 * (and the line / field where there is one) — never the parser's or the runtime's own text.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InputError, Rng } from '@moreau/core';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTaskFile } from './internal/tasks.js';
import { readText } from './internal/text-source.js';

const SEED = 18_06;
const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-readers-fuzz-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
const file = (ext: string, content: string | Uint8Array) => {
  const f = path.join(TMP, `case${n++}${ext}`);
  writeFileSync(f, content);
  return f;
};

/** Reads, or fails with a bounded one-line InputError naming the file. */
async function expectReadOrNamedError(f: string, read: () => Promise<unknown>, context: string) {
  let err: unknown;
  try {
    await read();
    return 'ok';
  } catch (e) {
    err = e;
  }
  expect(err, `${context}: ${(err as Error)?.stack}`).toBeInstanceOf(InputError);
  const message = (err as Error).message;
  expect(message, context).toContain(f);
  expect(message, context).not.toMatch(/\n/);
  expect(message.length, context).toBeLessThan(400);
  expect(message, context).not.toMatch(/undefined|TypeError|RangeError|Cannot read prop/);
  return message;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;

function randomJson(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 1 ? 5 : 8)) {
    case 0:
      return null;
    case 1:
      return rng.int(1000) - 500;
    case 2:
      return pick(rng, ['', 'text', 'Question: x', '\u0000', '😀']);
    case 3:
      return rng.uniform() < 0.5;
    case 4:
      return Number.MAX_SAFE_INTEGER;
    case 5:
      return Array.from({ length: rng.int(4) }, () => randomJson(rng, depth + 1));
    default: {
      const keys = ['text', 'query', 'choices', 'gold', 'context', 'continuation', 'context_options', 'x'];
      const o: Record<string, unknown> = {};
      for (let i = rng.int(5); i > 0; i--) o[pick(rng, keys)] = randomJson(rng, depth + 1);
      return o;
    }
  }
}

describe('evaluation readers under generated hostile input (seeded)', () => {
  it('corrupt parquet files: truncated, bytes flipped, garbage — 120 cases', async () => {
    const rng = new Rng(SEED);
    const texts = Array.from({ length: 40 }, (_, i) => `document ${i} `.repeat(1 + (i % 7)));
    const valid = new Uint8Array(
      parquetWriteBuffer({ columnData: [{ name: 'text', data: texts, type: 'STRING' }], rowGroupSize: 10 }),
    );
    expect(await readText(file('.parquet', valid))).toContain('document 39');
    const outcomes = { ok: 0, error: 0 };
    for (let k = 0; k < 120; k++) {
      const bytes = valid.slice();
      let data: Uint8Array = bytes;
      const kind = pick(rng, ['truncate', 'flip', 'zero', 'garbage', 'header-ok-garbage']);
      if (kind === 'truncate') data = bytes.subarray(0, rng.int(bytes.length));
      else if (kind === 'flip')
        for (let i = 1 + rng.int(8); i > 0; i--) {
          const at = rng.int(bytes.length);
          bytes[at] = bytes[at]! ^ (1 + rng.int(255));
        }
      else if (kind === 'zero') {
        const at = rng.int(bytes.length);
        bytes.fill(0, at, at + 1 + rng.int(64));
      } else if (kind === 'garbage') data = Uint8Array.from({ length: rng.int(400) }, () => rng.int(256));
      else {
        // Magic bytes at both ends, garbage between: the parser itself has to fail.
        data = Uint8Array.from({ length: 16 + rng.int(400) }, () => rng.int(256));
        data.set([0x50, 0x41, 0x52, 0x31], 0);
        data.set([0x50, 0x41, 0x52, 0x31], data.length - 4);
      }
      const f = file('.parquet', data);
      const r = await expectReadOrNamedError(f, () => readText(f), `parquet case ${k} (${kind})`);
      outcomes[r === 'ok' ? 'ok' : 'error']++;
    }
    expect(outcomes.error).toBeGreaterThan(60);
  }, 60_000);

  it('jsonl text and task files with random rows — 150 cases', async () => {
    const rng = new Rng(SEED + 1);
    for (let k = 0; k < 150; k++) {
      const rows = Array.from({ length: 1 + rng.int(4) }, () => JSON.stringify(randomJson(rng)));
      if (rng.uniform() < 0.2) rows.splice(rng.int(rows.length), 0, '{not json');
      const f = file('.jsonl', `${rows.join('\n')}\n`);
      const m1 = await expectReadOrNamedError(f, () => readText(f), `text jsonl ${k}: ${rows.join(' | ')}`);
      if (m1 !== 'ok') expect(m1).toMatch(new RegExp(`${f.replace(/[.]/g, '\\.')}:\\d+: `));
      const task = pick(rng, ['piqa', 'arc_easy', 'winogrande', 'lambada', 'boolq']);
      const m2 = await expectReadOrNamedError(
        f,
        () => loadTaskFile(task, f),
        `task jsonl ${k}: ${rows.join(' | ')}`,
      );
      if (m2 !== 'ok') expect(m2).toMatch(/:\d+: |no rows/);
    }
  }, 60_000);

  it('OpenBookQA tsv and HellaSwag text with short rows, bad labels, empty files — 80 cases', async () => {
    const rng = new Rng(SEED + 2);
    const header = 'ID\tQuestion Stem\tChoices\tComplete Question\tAnswer Key';
    const good = 'q1\tWhat?\t(A) a (B) b (C) c (D) d\tWhat? a\tB';
    for (let k = 0; k < 40; k++) {
      const lines = [header, ...Array.from({ length: 1 + rng.int(3) }, () => good)];
      const i = 1 + rng.int(lines.length - 1);
      const cells = lines[i]!.split('\t');
      const kind = pick(rng, ['short', 'key', 'choices', 'empty', 'header-only']);
      if (kind === 'short') lines[i] = cells.slice(0, rng.int(cells.length)).join('\t');
      else if (kind === 'key') lines[i] = [...cells.slice(0, 4), pick(rng, ['Z', '', '1'])].join('\t');
      else if (kind === 'choices')
        lines[i] = [cells[0], cells[1], pick(rng, ['', 'a b c', '(A)']), ...cells.slice(3)].join('\t');
      const text = kind === 'empty' ? '' : kind === 'header-only' ? header : lines.join('\n');
      const f = file('.tsv', text);
      const m = await expectReadOrNamedError(f, () => loadTaskFile('openbookqa', f), `tsv ${k} (${kind})`);
      expect(m, `tsv ${k} (${kind})`).not.toBe('ok');
    }
    for (let k = 0; k < 40; k++) {
      const count = rng.int(14);
      const lines = Array.from({ length: count }, (_, i) =>
        i % 6 === 1 ? pick(rng, ['0', '3', '4', '-1', 'x']) : 'some text',
      );
      const f = file('.txt', lines.join('\n'));
      const ok = count > 0 && count % 6 === 0 && lines.every((l, i) => i % 6 !== 1 || ['0', '3'].includes(l));
      const m = await expectReadOrNamedError(f, () => loadTaskFile('hellaswag', f), `hellaswag ${k}`);
      expect(m === 'ok', `hellaswag ${k}: ${lines.join('|')}`).toBe(ok);
    }
  }, 60_000);

  it('directories, devices and binary data as text', async () => {
    const dir = path.join(TMP, 'a-directory');
    mkdirSync(dir);
    const cases: [string, RegExp][] = [
      [dir, /is a directory, not a file/],
      ['/dev/zero', /is not text: it starts with \d+ zero bytes/],
      [file('.txt', Uint8Array.of(104, 105, 0, 1, 2)), /is not text: it has a zero byte at offset 2/],
      [path.join(TMP, 'missing.txt'), /not found/],
    ];
    for (const [f, message] of cases) {
      const m = await expectReadOrNamedError(f, () => readText(f), f);
      expect(m).toMatch(message);
      const t = await expectReadOrNamedError(f, () => loadTaskFile('piqa', `${f}`), f);
      expect(t).not.toBe('ok');
    }
  }, 30_000);
});
