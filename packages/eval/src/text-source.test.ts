import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { detectFormat, joinDocuments, readDocuments, readText } from './internal/text-source.js';

const dir = mkdtempSync(path.join(tmpdir(), 'moreau-eval-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('text sources', () => {
  it('a plain text file is one text with CRLF -> LF; lines mode makes documents', async () => {
    const f = path.join(dir, 'a.txt');
    writeFileSync(f, 'one\r\ntwo\r\n\r\nthree\r\n');
    expect(await readDocuments(f)).toEqual(['one\ntwo\n\nthree\n']);
    expect(await readDocuments(f, { documents: 'lines' })).toEqual(['one', 'two', 'three']);
    expect(await readText(f, { documents: 'lines' })).toBe('one\n\ntwo\n\nthree');
  });

  it('jsonl rows are documents joined with a blank line', async () => {
    const f = path.join(dir, 'b.jsonl');
    writeFileSync(f, '{"text":"α\\r\\nβ","id":1}\n\n{"text":"γ"}\n');
    expect(await readText(f)).toBe('α\nβ\n\nγ');
    writeFileSync(path.join(dir, 'c.jsonl'), '{"body":"x"}\n');
    await expect(readDocuments(path.join(dir, 'c.jsonl'))).rejects.toThrow(/field 'text'/);
    expect(await readText(path.join(dir, 'c.jsonl'), { field: 'body' })).toBe('x');
  });

  it('reads parquet files like Hugging Face datasets store them (several row groups, snappy)', async () => {
    const texts = Array.from({ length: 2500 }, (_, i) => `document ${i}: ${'é'.repeat(i % 7)}`);
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: texts.map((_, i) => i), type: 'INT32' },
        { name: 'content', data: texts, type: 'STRING' },
      ],
      rowGroupSize: 1000,
    });
    const f = path.join(dir, 'train-00000-of-00001.parquet');
    writeFileSync(f, new Uint8Array(buf));
    expect(detectFormat(f)).toBe('parquet');
    const docs = await readDocuments(f, { field: 'content' });
    expect(docs).toEqual(texts);
    expect(await readText([f, f], { field: 'content', limitDocuments: 3 })).toBe(
      joinDocuments(texts.slice(0, 3)),
    );
    await expect(readDocuments(f)).rejects.toThrow(/no column 'text'; columns: id, content/);
  });
});
