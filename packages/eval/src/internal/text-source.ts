/**
 * Evaluation text from files: plain text, JSON lines and parquet (as Hugging Face datasets store
 * them). A plain text file is one text by default; rows of jsonl / parquet are documents.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { InputError } from '@moreau/core';

export type TextFormat = 'text' | 'jsonl' | 'parquet';

export interface TextSourceOptions {
  /** Default from the extension: .jsonl / .ndjson -> jsonl, .parquet -> parquet, else text. */
  readonly format?: TextFormat;
  /** JSON field / parquet column holding the text (default 'text'). */
  readonly field?: string;
  /**
   * Plain text only: 'file' (default) makes the whole file one document; 'lines' makes every
   * non-blank line a document; 'rows' makes every line a row as the Hugging Face wikitext script
   * yields it — its line break kept, a whitespace-only line an empty row (LLM-Pruner joins those
   * rows, blank ones included, with "\n\n").
   */
  readonly documents?: 'file' | 'lines' | 'rows';
  /** Keep only the first N documents (over all files). */
  readonly limitDocuments?: number;
}

/**
 * How a perplexity text is assembled (`--ppl-join`): 'rows' joins rows with "\n\n" as LLM-Pruner
 * does with a Hugging Face split (jsonl / parquet rows, or a text file's lines as `documents:
 * 'rows'`); 'document' reads a text file as one document.
 */
export type PplJoin = 'rows' | 'document';
export const PPL_JOINS: readonly PplJoin[] = ['rows', 'document'];

/** A text file's rows as the Hugging Face wikitext script yields them (see `documents: 'rows'`). */
export function textRows(text: string): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((l, i) => {
    const row = i < lines.length - 1 || text.endsWith('\n') ? `${l}\n` : l;
    return row.trim() === '' ? '' : row;
  });
}

export function detectFormat(file: string): TextFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.parquet') return 'parquet';
  return 'text';
}

/** CRLF and lone CR become LF. */
export function normalizeNewlines(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

async function parquetDocuments(file: string, field: string): Promise<string[]> {
  const { parquetMetadata, parquetReadObjects, parquetSchema } = await import('hyparquet');
  const buf = await readFile(file);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  const metadata = parquetMetadata(ab);
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  if (!columns.includes(field)) {
    throw new InputError(
      `${file}: no column '${field}'; columns: ${columns.join(', ') || '(none)'}`,
      file,
      'field',
    );
  }
  const rows = await parquetReadObjects({ file: ab, metadata, columns: [field] });
  return rows.map((r, i) => {
    const v = r[field];
    if (v === null || v === undefined) return '';
    if (typeof v !== 'string') {
      throw new InputError(`${file}: row ${i} column '${field}' is ${typeof v}, not a string`, file, field);
    }
    return v;
  });
}

function jsonlDocuments(file: string, text: string, field: string): string[] {
  const out: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new InputError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`, file);
    }
    const v = (row as Record<string, unknown>)?.[field];
    if (typeof v !== 'string') {
      throw new InputError(`${file}:${i + 1}: field '${field}' is missing or not a string`, file, field);
    }
    out.push(v);
  });
  return out;
}

/** The documents of one or more files, in order (newlines normalised to LF). */
export async function readDocuments(
  files: string | readonly string[],
  options: TextSourceOptions = {},
): Promise<string[]> {
  const list = typeof files === 'string' ? [files] : files;
  const field = options.field ?? 'text';
  const docs: string[] = [];
  for (const file of list) {
    const format = options.format ?? detectFormat(file);
    if (format === 'parquet') {
      docs.push(...(await parquetDocuments(file, field)).map(normalizeNewlines));
    } else {
      const text = normalizeNewlines(await readFile(file, 'utf8'));
      if (format === 'jsonl') docs.push(...jsonlDocuments(file, text, field).map(normalizeNewlines));
      else if (options.documents === 'lines') docs.push(...text.split('\n').filter((l) => l.trim() !== ''));
      else if (options.documents === 'rows') docs.push(...textRows(text));
      else docs.push(text);
    }
    if (options.limitDocuments !== undefined && docs.length >= options.limitDocuments) break;
  }
  return options.limitDocuments !== undefined ? docs.slice(0, options.limitDocuments) : docs;
}

/** LLM-Pruner's corpus: the documents joined with "\n\n". */
export function joinDocuments(docs: readonly string[], separator = '\n\n'): string {
  return docs.join(separator);
}

/** readDocuments + joinDocuments. */
export async function readText(
  files: string | readonly string[],
  options: TextSourceOptions = {},
): Promise<string> {
  return joinDocuments(await readDocuments(files, options));
}
