/**
 * Zero-shot task readers. Every reader turns its file into requests in lm-evaluation-harness's
 * form: a context string and a continuation string per choice (the continuation starts with the
 * target delimiter, a space), the gold index, and the strings whose length normalises acc_norm.
 *
 * Prompt formats (lm-evaluation-harness task yaml, checked against the llm-foundry `query` field):
 *
 * | task | harness doc_to_text | from the llm-foundry row |
 * |---|---|---|
 * | arc_easy, arc_challenge | `Question: {q}\nAnswer:` | query is `Question: {q}`: append `\nAnswer:` |
 * | piqa | `Question: {goal}\nAnswer:` | query is `Question: {goal}\n`: append `Answer:` |
 * | boolq | `{passage}\nQuestion: {question}?\nAnswer:` | query is `Passage: {passage}\nQuestion: {question}?`: drop `Passage: `, append `\nAnswer:` |
 * | openbookqa | `{question_stem}` | query as is (the original tsv's stem is the same text) |
 * | copa | `{premise minus '.'} because/therefore` | query as is |
 * | hellaswag | `{activity}: {ctx_a} {Ctx_b}` (cleaned) | llama.cpp's first line, cleaned again (ctx_b not capitalised) |
 * | winogrande | partial sentence up to the blank, with each option | `context_options[i]`, shared continuation |
 * | lambada_openai | all words but the last | `context`; continuation ` {word}` |
 *
 * Continuations are `' ' + choice` (harness target_delimiter). acc_norm divides by the UTF-8 byte
 * length of the choice as the harness's doc_to_choice returns it (without the delimiter space;
 * for ASCII this equals the harness's Python `len(choice)`); for winogrande those choices are
 * the two partial contexts, as in the harness (which reports acc only there; so does boolq).
 */
import { existsSync } from 'node:fs';
import { InputError } from '@moreau/core';
import { readTextFile } from './text-source.js';

export interface Request {
  readonly context: string;
  readonly continuation: string;
}

export interface MultipleChoiceItem {
  /** One request per choice. */
  readonly requests: readonly Request[];
  readonly gold: number;
  /** Per choice, the string whose UTF-8 byte length normalises acc_norm. */
  readonly normTexts: readonly string[];
}

/** A multiple-choice task (acc, acc_norm) or a LAMBADA-style loglikelihood task (acc, ppl). */
export type ZeroShotTask =
  | { readonly name: string; readonly kind: 'multiple_choice'; readonly items: readonly MultipleChoiceItem[] }
  | { readonly name: string; readonly kind: 'loglikelihood'; readonly items: readonly Request[] };

export const STANDARD_TASKS = [
  'boolq',
  'piqa',
  'hellaswag',
  'winogrande',
  'arc_easy',
  'arc_challenge',
  'openbookqa',
] as const;

function parseJsonl(file: string, text: string): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new InputError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`, file);
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      throw new InputError(
        `${file}:${i + 1}: a row must be a JSON object, got ${row === null ? 'null' : Array.isArray(row) ? 'an array' : typeof row}`,
        file,
      );
    }
    rows.push(row as Record<string, unknown>);
  });
  return rows;
}

function field<T>(
  file: string,
  i: number,
  row: Record<string, unknown>,
  key: string,
  check: (v: unknown) => boolean,
): T {
  const v = row[key];
  if (!check(v)) throw new InputError(`${file}:${i + 1}: field '${key}' is missing or malformed`, file, key);
  return v as T;
}
const isString = (v: unknown) => typeof v === 'string';
const isStrings = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every(isString);
const isInt = (v: unknown) => Number.isInteger(v);

/** The harness's context for a llm-foundry `query`, per task (see the module table). */
export function harnessContext(task: string, query: string): string {
  switch (task) {
    case 'arc_easy':
    case 'arc_challenge':
      return `${query}\nAnswer:`;
    case 'piqa':
      return query.endsWith('\n') ? `${query}Answer:` : `${query}\nAnswer:`;
    case 'boolq': {
      const body = query.startsWith('Passage: ') ? query.slice('Passage: '.length) : query;
      return `${body}\nAnswer:`;
    }
    default:
      return query;
  }
}

function checkGold(file: string, i: number, gold: number, n: number): number {
  if (gold < 0 || gold >= n)
    throw new InputError(`${file}:${i + 1}: gold ${gold} outside [0, ${n})`, file, 'gold');
  return gold;
}

/**
 * An llm-foundry ICL jsonl file: `query` / `choices` / `gold` rows (multiple choice),
 * `context_options` / `continuation` / `gold` (winogrande) or `context` / `continuation`
 * (LAMBADA). `task` selects the prompt adaptation (default: the file's base name).
 */
export async function readFoundryJsonl(file: string, task?: string): Promise<ZeroShotTask> {
  const name = task ?? (file.split('/').pop() ?? file).replace(/\.jsonl$/, '');
  const rows = parseJsonl(file, await readTextFile(file, 'task file'));
  if (rows.length === 0) throw new InputError(`${file}: no rows`, file);
  const first = rows[0]!;
  if ('context_options' in first) {
    const items = rows.map((r, i) => {
      const ctxs = field<string[]>(file, i, r, 'context_options', isStrings);
      const cont = field<string>(file, i, r, 'continuation', isString);
      const gold = checkGold(file, i, field<number>(file, i, r, 'gold', isInt), ctxs.length);
      return {
        requests: ctxs.map((c) => ({ context: c, continuation: ` ${cont.trim()}` })),
        gold,
        normTexts: ctxs,
      };
    });
    return { name, kind: 'multiple_choice', items };
  }
  if ('choices' in first) {
    const items = rows.map((r, i) => {
      const query = field<string>(file, i, r, 'query', isString);
      const choices = field<string[]>(file, i, r, 'choices', isStrings);
      const gold = checkGold(file, i, field<number>(file, i, r, 'gold', isInt), choices.length);
      const context = harnessContext(name, query);
      return { requests: choices.map((c) => ({ context, continuation: ` ${c}` })), gold, normTexts: choices };
    });
    return { name, kind: 'multiple_choice', items };
  }
  const items = rows.map((r, i) => ({
    context: field<string>(file, i, r, 'context', isString),
    continuation: ` ${field<string>(file, i, r, 'continuation', isString).trim()}`,
  }));
  return { name, kind: 'loglikelihood', items };
}

/**
 * lm-evaluation-harness's HellaSwag cleanup: strip, ' [title]' -> '. ', drop every '[...]',
 * collapse double spaces (one pass, as Python's str.replace).
 */
export function hellaswagPreprocess(text: string): string {
  return text
    .trim()
    .replaceAll(' [title]', '. ')
    .replace(/\[.*?\]/g, '')
    .replaceAll('  ', ' ');
}

/**
 * HellaSwag in llama.cpp's text format: 6 lines per item (context, gold index, four endings).
 * llama.cpp's extraction already cleaned most of the text; the harness's `preprocess` is applied
 * again (a no-op on clean text) because 18 lines still hold bracketed spans the harness removes.
 * Known difference: llama.cpp's context line joins ctx_a and ctx_b as the dataset's `ctx` field,
 * while the harness capitalises the first letter of ctx_b (e.g. '... on a roof. he' here vs
 * '... on a roof. He' in the harness); the boundary is not recoverable from the text.
 */
export async function readHellaswagText(file: string, name = 'hellaswag'): Promise<ZeroShotTask> {
  const lines = (await readTextFile(file, 'task file')).split(/\r?\n/);
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new InputError(`${file}: no items (the file is empty)`, file);
  if (lines.length % 6 !== 0) {
    throw new InputError(
      `${file}: ${lines.length} lines, not a multiple of 6 (context, label, 4 endings)`,
      file,
    );
  }
  const items: MultipleChoiceItem[] = [];
  for (let k = 0; k < lines.length; k += 6) {
    const context = hellaswagPreprocess(lines[k]!);
    const gold = Number(lines[k + 1]);
    if (!Number.isInteger(gold) || gold < 0 || gold > 3) {
      throw new InputError(`${file}:${k + 2}: label '${lines[k + 1]}' is not 0-3`, file, 'label');
    }
    const endings = lines.slice(k + 2, k + 6).map(hellaswagPreprocess);
    items.push({
      requests: endings.map((e) => ({ context, continuation: ` ${e}` })),
      gold,
      normTexts: endings,
    });
  }
  return { name, kind: 'multiple_choice', items };
}

/**
 * OpenBookQA's original tsv (Main/test.tsv): ID, Question Stem, Choices `(A) .. (B) .. (C) ..
 * (D) ..`, Complete Question, Answer Key. Context is the stem (harness doc_to_text).
 */
export async function readOpenBookQaTsv(file: string, name = 'openbookqa'): Promise<ZeroShotTask> {
  const lines = (await readTextFile(file, 'task file')).split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines[0]?.split('\t') ?? [];
  const col = (n: string) => {
    const i = header.indexOf(n);
    if (i < 0)
      throw new InputError(`${file}: no column '${n}' in the header (${header.join(', ')})`, file, n);
    return i;
  };
  const [iStem, iChoices, iKey] = [col('Question Stem'), col('Choices'), col('Answer Key')];
  if (lines.length < 2) throw new InputError(`${file}: no rows after the header`, file);
  const needed = Math.max(iStem, iChoices, iKey) + 1;
  const items = lines.slice(1).map((line, j) => {
    const cells = line.split('\t');
    if (cells.length < needed) {
      throw new InputError(
        `${file}:${j + 2}: ${cells.length} tab-separated cells, the header has ${header.length} (needs at least ${needed})`,
        file,
        'row',
      );
    }
    const labels: string[] = [];
    const texts: string[] = [];
    const re = /\(([A-Z])\)\s*(.*?)\s*(?=\([A-Z]\)\s|$)/g;
    for (const m of cells[iChoices]!.matchAll(re)) {
      labels.push(m[1]!);
      texts.push(m[2]!);
    }
    const gold = labels.indexOf(cells[iKey]!.trim());
    if (texts.length < 2 || gold < 0) {
      throw new InputError(`${file}:${j + 2}: cannot parse the choices or answer key`, file, 'Choices');
    }
    const context = cells[iStem]!;
    return { requests: texts.map((t) => ({ context, continuation: ` ${t}` })), gold, normTexts: texts };
  });
  return { name, kind: 'multiple_choice', items };
}

/** Files of the standard tasks under the shared data folder. */
export function taskFile(shared: string, task: string): string {
  const z = `${shared}/data/zeroshot`;
  switch (task) {
    case 'hellaswag':
      return `${shared}/data/hellaswag/hellaswag_val_full.txt`;
    case 'openbookqa':
      return `${shared}/data/zeroshot_original/openbookqa_main_test.tsv`;
    case 'lambada':
    case 'lambada_openai':
      return `${z}/lambada_openai.jsonl`;
    default:
      return `${z}/${task}.jsonl`;
  }
}

/**
 * Loads a task by name from the shared data folder: boolq, piqa, winogrande, arc_easy,
 * arc_challenge, copa, lambada_openai (llm-foundry jsonl), hellaswag (llama.cpp text),
 * openbookqa (original tsv).
 */
export async function loadTask(shared: string, task: string): Promise<ZeroShotTask> {
  const file = taskFile(shared, task);
  if (task === 'hellaswag') return readHellaswagText(file, task);
  if (task === 'openbookqa') return readOpenBookQaTsv(file, task);
  const known = [
    'boolq',
    'piqa',
    'winogrande',
    'arc_easy',
    'arc_challenge',
    'copa',
    'lambada',
    'lambada_openai',
  ];
  if (!known.includes(task)) {
    throw new InputError(
      `unknown task '${task}'; known: ${[...known, 'hellaswag', 'openbookqa'].join(', ')}`,
      undefined,
      'task',
    );
  }
  const t = await readFoundryJsonl(file, task === 'lambada' ? 'lambada_openai' : task);
  return t;
}

/**
 * Reads a task from a file whose format is inferred from its name: `.txt` is llama.cpp's 6-line
 * HellaSwag format, `.tsv` OpenBookQA's original test file, `.jsonl` the llm-foundry ICL format.
 */
export async function loadTaskFile(task: string, file: string): Promise<ZeroShotTask> {
  if (!existsSync(file)) throw new InputError(`task file '${file}' not found`, file, 'task');
  const lower = file.toLowerCase();
  if (lower.endsWith('.txt')) return readHellaswagText(file, task);
  if (lower.endsWith('.tsv')) return readOpenBookQaTsv(file, task);
  if (lower.endsWith('.jsonl')) return readFoundryJsonl(file, task === 'lambada' ? 'lambada_openai' : task);
  throw new InputError(
    `${file}: unknown task file format; expected .jsonl (llm-foundry), .txt (HellaSwag 6-line) or .tsv (OpenBookQA)`,
    file,
    'task',
  );
}
