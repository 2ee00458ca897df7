/**
 * Training data for LoRA recovery, tokenized the way LLM-Pruner's post_training.py does it.
 *
 * - Instruction data (Alpaca format: `instruction`, `input`, `output`; a JSON array or JSON lines):
 *   each record becomes the template's prompt plus the output, tokenized with BOS, cut at
 *   `cutoffLen` tokens, with EOS appended only when the text was not cut (and does not already end
 *   in EOS). Every token is a label (`trainOnInputs`, the default), or only those after the prompt
 *   (the reference masks the first len(tokenize(prompt)) labels).
 * - Text corpora (plain text, JSON lines with a `text` field, parquet with a `text` column, read by
 *   @moreau/eval): the documents joined with "\n\n", tokenized once with BOS, cut into
 *   non-overlapping windows of `cutoffLen` tokens (a trailing partial window is dropped, as
 *   LLM-Pruner's perplexity windows are); every token is a label.
 *
 * A validation split of `valSetSize` examples is drawn with the seed; the rest trains.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { counterKey, type HostTensor, InputError, Rng, tensor } from '@moreau/core';
import { readText } from '@moreau/eval';
import { ALPACA_TEMPLATE, formatPrompt, type PromptTemplate } from './template.js';

/** One Alpaca-format record. */
export interface InstructionRecord {
  readonly instruction: string;
  /** '' when the record has none. */
  readonly input: string;
  readonly output: string;
}

/** A tokenized training example. */
export interface Example {
  /** Token ids (BOS first when the tokenizer has one). */
  readonly ids: Int32Array;
  /** 1 where the token is a label the loss predicts (the reference's labels != -100). */
  readonly labels: Uint8Array;
}

/** What the data reader needs of a tokenizer (the @moreau/models Tokenizer has it). */
export interface DataTokenizer {
  readonly bosId?: number;
  readonly eosId?: number;
  encode(text: string, options?: { bos?: boolean; eos?: boolean }): number[];
}

export type DataKind = 'instructions' | 'text';

export interface TuningDataOptions {
  /** Prompt template (default: Alpaca-LoRA's). Instruction data only. */
  readonly template?: PromptTemplate;
  /** Longest example in tokens (default 256). */
  readonly cutoffLen?: number;
  /** Loss on prompt and response (default true) or on the response only. Instruction data only. */
  readonly trainOnInputs?: boolean;
  /** Examples held out for the validation loss (default 0). */
  readonly valSetSize?: number;
  /** Seed of the validation split (default 1). */
  readonly seed?: number;
  /** Force the kind instead of detecting it from the file. */
  readonly kind?: DataKind;
}

export interface TuningData {
  readonly kind: DataKind;
  readonly train: readonly Example[];
  readonly validation: readonly Example[];
  /** Records (instruction data) or windows (text) read from the file. */
  readonly read: number;
  /** Examples cut at cutoffLen. */
  readonly truncated: number;
  /** Examples left out because none of their tokens is a label (a prompt longer than the cutoff). */
  readonly skipped: number;
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Checks one record: instruction and output strings, input a string or absent / null. */
function checkRecord(row: unknown, where: string): InstructionRecord {
  if (row === null || typeof row !== 'object' || Array.isArray(row))
    throw new InputError(`${where}: a record must be a JSON object, got ${describe(row)}`);
  const r = row as Record<string, unknown>;
  for (const key of ['instruction', 'output']) {
    if (!(key in r)) throw new InputError(`${where}: field '${key}' is missing`, undefined, key);
    if (typeof r[key] !== 'string')
      throw new InputError(`${where}: field '${key}' is ${describe(r[key])}, not a string`, undefined, key);
  }
  if (r.input !== undefined && r.input !== null && typeof r.input !== 'string')
    throw new InputError(`${where}: field 'input' is ${describe(r.input)}, not a string`, undefined, 'input');
  return {
    instruction: r.instruction as string,
    input: (r.input as string | null) ?? '',
    output: r.output as string,
  };
}

/**
 * Reads Alpaca-format records: a JSON array (.json) or one JSON object per line (.jsonl, .ndjson).
 * Errors name the file, the record (0-based index; JSON lines also the line) and the field.
 */
export async function readInstructions(file: string): Promise<InstructionRecord[]> {
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`data file '${file}' cannot be read (${e.code ?? e.message})`, file);
  });
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') {
    const out: InstructionRecord[] = [];
    text.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new InputError(
          `${file}:${i + 1}: record ${out.length} is not valid JSON (${(e as Error).message})`,
          file,
        );
      }
      out.push(checkRecord(row, `${file}:${i + 1}: record ${out.length}`));
    });
    return out;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  if (!Array.isArray(json))
    throw new InputError(
      `${file}: instruction data must be a JSON array of records, got ${describe(json)}`,
      file,
    );
  return json.map((row, i) => checkRecord(row, `${file}: record ${i}`));
}

/** Instruction data or a text corpus, from the file: .json and JSON lines whose first record has `instruction` are instructions. */
export async function detectDataKind(file: string): Promise<DataKind> {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return 'instructions';
  if (ext === '.jsonl' || ext === '.ndjson') {
    const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new InputError(`data file '${file}' cannot be read (${e.code ?? e.message})`, file);
    });
    const first = text.split(/\r?\n/).find((l) => l.trim());
    if (!first) throw new InputError(`${file}: the file has no records`, file);
    let row: unknown;
    try {
      row = JSON.parse(first);
    } catch (e) {
      throw new InputError(`${file}:1: not valid JSON (${(e as Error).message})`, file);
    }
    const fields = row && typeof row === 'object' ? Object.keys(row) : [];
    if (fields.includes('instruction')) return 'instructions';
    if (fields.includes('text')) return 'text';
    throw new InputError(
      `${file}: records have neither 'instruction' (Alpaca format) nor 'text' (a corpus); fields: ${fields.join(', ') || '(none)'}`,
      file,
    );
  }
  return 'text';
}

/** Tokenizes like the reference's tokenize(): BOS, truncation at cutoffLen, EOS when not cut. */
function tokenize(
  tok: DataTokenizer,
  text: string,
  cutoffLen: number,
  addEos: boolean,
): { ids: number[]; cut: boolean } {
  const all = tok.encode(text, { bos: true });
  const ids = all.slice(0, cutoffLen);
  if (addEos && tok.eosId !== undefined && ids.at(-1) !== tok.eosId && ids.length < cutoffLen)
    ids.push(tok.eosId);
  return { ids, cut: all.length > cutoffLen };
}

/** One instruction record as an example (see the module comment). */
export function instructionExample(
  record: InstructionRecord,
  tok: DataTokenizer,
  options: { template?: PromptTemplate; cutoffLen?: number; trainOnInputs?: boolean } = {},
): Example & { readonly truncated: boolean } {
  const template = options.template ?? ALPACA_TEMPLATE;
  const cutoffLen = options.cutoffLen ?? 256;
  const full = tokenize(
    tok,
    formatPrompt(template, record.instruction, record.input, record.output),
    cutoffLen,
    true,
  );
  const labels = new Uint8Array(full.ids.length).fill(1);
  if (options.trainOnInputs === false) {
    // The reference: labels[:len(tokenize(user_prompt, add_eos_token=False))] = -100.
    const user = tokenize(tok, formatPrompt(template, record.instruction, record.input), cutoffLen, false);
    labels.fill(0, 0, Math.min(user.ids.length, labels.length));
  }
  return { ids: Int32Array.from(full.ids), labels, truncated: full.cut };
}

/** Non-overlapping windows of cutoffLen tokens of a text (tokenized once with BOS); every token a label. */
export function textExamples(text: string, tok: DataTokenizer, cutoffLen: number): Example[] {
  const stream = tok.encode(text, { bos: true });
  const n = Math.floor(stream.length / cutoffLen);
  const out: Example[] = [];
  for (let i = 0; i < n; i++) {
    const ids = Int32Array.from(stream.slice(i * cutoffLen, (i + 1) * cutoffLen));
    out.push({ ids, labels: new Uint8Array(ids.length).fill(1) });
  }
  if (n === 0 && stream.length >= 2)
    out.push({ ids: Int32Array.from(stream), labels: new Uint8Array(stream.length).fill(1) });
  return out;
}

/** Whether an example has a label to predict (a label at position >= 1). */
export function hasTargets(e: Example): boolean {
  for (let t = 1; t < e.labels.length; t++) if (e.labels[t]) return true;
  return false;
}

const SPLIT_STREAM = 0x53706c74; // "Splt"

/** Holds out `size` examples for validation (a seeded draw); the rest train, in their file order. */
export function splitExamples<T>(
  items: readonly T[],
  size: number,
  seed: number,
): { train: T[]; validation: T[] } {
  if (!Number.isInteger(size) || size < 0)
    throw new InputError(
      `the validation set size must be a non-negative integer, got ${size}`,
      undefined,
      'valSetSize',
    );
  if (size === 0) return { train: [...items], validation: [] };
  if (size >= items.length) {
    throw new InputError(
      `the validation set (${size}) must leave training examples: the data has ${items.length}`,
      undefined,
      'valSetSize',
    );
  }
  const perm = new Rng(counterKey(seed, SPLIT_STREAM, 0).k0).permutation(items.length);
  const held = new Set(perm.slice(0, size));
  return {
    train: items.filter((_, i) => !held.has(i)),
    validation: perm.slice(0, size).map((i) => items[i]!),
  };
}

/** Reads, tokenizes and splits a data file (see the module comment). */
export async function loadTuningData(
  file: string,
  tok: DataTokenizer,
  options: TuningDataOptions = {},
): Promise<TuningData> {
  const cutoffLen = options.cutoffLen ?? 256;
  if (!Number.isInteger(cutoffLen) || cutoffLen < 2)
    throw new InputError(
      `the cutoff length must be an integer >= 2, got ${cutoffLen}`,
      undefined,
      'cutoffLen',
    );
  const kind = options.kind ?? (await detectDataKind(file));
  let examples: Example[];
  let truncated = 0;
  let read: number;
  if (kind === 'instructions') {
    const records = await readInstructions(file);
    read = records.length;
    examples = records.map((r) => {
      const e = instructionExample(r, tok, { ...options, cutoffLen });
      if (e.truncated) truncated++;
      return { ids: e.ids, labels: e.labels };
    });
  } else {
    examples = textExamples(await readText(file), tok, cutoffLen);
    read = examples.length;
  }
  const usable = examples.filter(hasTargets);
  if (usable.length === 0) throw new InputError(`${file}: no example has a token to train on`, file);
  const { train, validation } = splitExamples(usable, options.valSetSize ?? 0, options.seed ?? 1);
  return { kind, train, validation, read, truncated, skipped: examples.length - usable.length };
}

/** A micro-batch as executor inputs: ids, next-token targets and the loss mask, all [B, T]. */
export interface MicroBatch {
  readonly ids: HostTensor;
  readonly targets: HostTensor;
  readonly mask: HostTensor;
  /** Real (non-pad) tokens in the batch. */
  readonly tokens: number;
  /** Positions whose loss counts (sum of the mask). */
  readonly labels: number;
}

/**
 * Pads examples on the right with `padId` to a common length (the longest, rounded up to a multiple
 * of `multiple` as the reference's collator does, at most `maxLength`). Position t of row b predicts
 * ids[b, t + 1] where that token is a label; pads and the last position are masked out. A causal
 * model never lets a real token see the pads after it, so right padding needs no attention mask
 * (the reference pads on the left with one; the scores of real tokens are the same).
 */
export function microBatch(
  examples: readonly Example[],
  options: { padId?: number; multiple?: number; maxLength?: number } = {},
): MicroBatch {
  const padId = options.padId ?? 0;
  const multiple = options.multiple ?? 8;
  const longest = Math.max(...examples.map((e) => e.ids.length));
  const T = Math.max(
    2,
    Math.min(
      Math.ceil(longest / multiple) * multiple,
      Math.max(longest, options.maxLength ?? Number.POSITIVE_INFINITY),
    ),
  );
  const B = examples.length;
  const ids = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T);
  const mask = new Float32Array(B * T);
  let tokens = 0;
  let labels = 0;
  examples.forEach((e, b) => {
    ids.set(e.ids, b * T);
    tokens += e.ids.length;
    for (let t = 0; t + 1 < e.ids.length; t++) {
      if (!e.labels[t + 1]) continue;
      targets[b * T + t] = e.ids[t + 1]!;
      mask[b * T + t] = 1;
      labels++;
    }
  });
  return {
    ids: tensor(ids, [B, T], 'int32'),
    targets: tensor(targets, [B, T], 'int32'),
    mask: tensor(mask, [B, T], 'float32'),
    tokens,
    labels,
  };
}
