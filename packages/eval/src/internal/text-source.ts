/**
 * Evaluation text from files: plain text, JSON lines and parquet (as Hugging Face datasets store
 * them). A plain text file is one text by default; rows of jsonl / parquet are documents.
 */
import { open } from 'node:fs/promises';
import { extname } from 'node:path';
import { describeFsError, InputError } from '@moreau/core';

/** Largest text file read whole (V8's longest string is ~2^29 characters). */
export const MAX_TEXT_BYTES = 512 * 1024 * 1024;

/**
 * The bytes of a file read whole, with errors a person can act on: a directory, a missing file,
 * an unreadable one, or a device / file larger than `maxBytes` (e.g. /dev/zero) is one line
 * naming the file. Pipes (`<(...)`) and regular files are read; `what` names the file's role.
 */
export async function readFileBytes(
  file: string,
  what = 'file',
  maxBytes = MAX_TEXT_BYTES,
): Promise<Uint8Array> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(
      code === 'ENOENT'
        ? `${what} '${file}' not found`
        : `cannot read ${what} '${file}': ${describeFsError(e)}`,
      file,
    );
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new InputError(`${what} '${file}' is a directory, not a file`, file);
    if (st.isFile() && st.size > maxBytes) {
      throw new InputError(
        `${what} '${file}' has ${st.size} bytes, more than the ${maxBytes} this reader takes`,
        file,
      );
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const buf = new Uint8Array(1 << 20);
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, buf.length, null));
      } catch (e) {
        throw new InputError(`cannot read ${what} '${file}': ${describeFsError(e)}`, file);
      }
      if (n === 0) break;
      total += n;
      if (total > maxBytes) {
        throw new InputError(
          `${what} '${file}' is longer than the ${maxBytes} bytes this reader takes (a device such as /dev/zero?)`,
          file,
        );
      }
      chunks.push(buf.subarray(0, n));
      if (!st.isFile() && chunks.length === 1 && buf.subarray(0, n).every((b) => b === 0)) {
        throw new InputError(`${what} '${file}' is not text: it starts with ${n} zero bytes`, file);
      }
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** A text file read whole (UTF-8), with readFileBytes' checks; NUL bytes mean it is not text. */
export async function readTextFile(file: string, what = 'text file'): Promise<string> {
  const bytes = await readFileBytes(file, what);
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw new InputError(`${what} '${file}' is not text: it has a zero byte at offset ${nul}`, file);
  }
  return new TextDecoder().decode(bytes);
}

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
  const buf = await readFileBytes(file, 'parquet file');
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  // The parser's own errors ("offset is out of bounds", "footer != PAR1", ...) become one line
  // naming the file.
  const corrupt = (e: unknown, where: string): never => {
    if (e instanceof InputError) throw e;
    throw new InputError(
      `${file}: not a readable parquet file (${where}: the file is corrupt, truncated or not parquet)`,
      file,
      'parquet',
      { cause: e },
    );
  };
  if (buf.length < 12 || new TextDecoder().decode(buf.subarray(0, 4)) !== 'PAR1') {
    throw new InputError(`${file}: not a parquet file (it does not start with 'PAR1')`, file, 'parquet');
  }
  if (new TextDecoder().decode(buf.subarray(buf.length - 4)) !== 'PAR1') {
    throw new InputError(
      `${file}: not a complete parquet file (it does not end with 'PAR1': truncated?)`,
      file,
      'parquet',
    );
  }
  let metadata: ReturnType<typeof parquetMetadata>;
  let columns: string[];
  try {
    metadata = parquetMetadata(ab);
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
  } catch (e) {
    return corrupt(e, 'its footer metadata cannot be read');
  }
  if (!columns.includes(field)) {
    throw new InputError(
      `${file}: no column '${field}'; columns: ${columns.join(', ') || '(none)'}`,
      file,
      'field',
    );
  }
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: ab, metadata, columns: [field] });
  } catch (e) {
    return corrupt(e, `column '${field}' cannot be decoded`);
  }
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
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      throw new InputError(
        `${file}:${i + 1}: a row must be a JSON object with a '${field}' field`,
        file,
        field,
      );
    }
    const v = (row as Record<string, unknown>)[field];
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
      const text = normalizeNewlines(await readTextFile(file));
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
