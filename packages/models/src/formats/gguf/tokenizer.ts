/**
 * The sentencepiece-style vocabulary GGUF files embed (tokenizer.ggml.*): read from metadata, and
 * written back as metadata entries.
 */
import { FormatError } from '../errors.js';
import { type GgufFile, metaNumber } from './read.js';
import type { GgufWriteValue } from './write.js';

/** The sentencepiece-style vocabulary embedded in a GGUF file. */
export interface GgufTokenizerData {
  /** tokenizer.ggml.model ("llama" for sentencepiece BPE). */
  model: string;
  tokens: string[];
  scores: Float32Array;
  /** sentencepiece piece types: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte. */
  tokenTypes: Int32Array;
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
}

/** Extract the tokenizer from GGUF metadata (tokenizer.ggml.*). */
export function ggufTokenizerData(g: Pick<GgufFile, 'file' | 'metadata'>): GgufTokenizerData {
  const file = g.file;
  const model = g.metadata.get('tokenizer.ggml.model');
  if (typeof model !== 'string')
    throw new FormatError(file, 'has no tokenizer (tokenizer.ggml.model is missing)');
  const tokens = g.metadata.get('tokenizer.ggml.tokens');
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'string')) {
    throw new FormatError(file, 'tokenizer.ggml.tokens must be an array of strings');
  }
  const n = tokens.length;
  const numArray = (key: string, make: (n: number) => Float32Array | Int32Array, dflt: number) => {
    const v = g.metadata.get(key);
    const out = make(n);
    if (v === undefined) return out.fill(dflt);
    if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'number')) {
      throw new FormatError(file, `${key} must be an array of ${n} numbers (one per token)`, { field: key });
    }
    out.set(v as number[]);
    return out;
  };
  const scores = numArray('tokenizer.ggml.scores', (k) => new Float32Array(k), 0) as Float32Array;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(scores[i]!)) {
      throw new FormatError(file, `tokenizer.ggml.scores[${i}] is ${scores[i]}; scores must be finite`, {
        field: 'tokenizer.ggml.scores',
      });
    }
  }
  const tokenTypes = numArray('tokenizer.ggml.token_type', (k) => new Int32Array(k), 1) as Int32Array;
  const id = (key: string): number | undefined => {
    const v = metaNumber(g, key);
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v < n)) {
      throw new FormatError(file, `${key} = ${v} is not a token id (vocabulary has ${n})`, { field: key });
    }
    return v;
  };
  const flag = (key: string, dflt: boolean): boolean => {
    const v = g.metadata.get(key);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new FormatError(file, `${key} must be a boolean`);
    return v;
  };
  const out: GgufTokenizerData = {
    model,
    tokens: tokens as string[],
    scores,
    tokenTypes,
    addBos: flag('tokenizer.ggml.add_bos_token', true),
    addEos: flag('tokenizer.ggml.add_eos_token', false),
    addSpacePrefix: flag('tokenizer.ggml.add_space_prefix', true),
  };
  const bos = id('tokenizer.ggml.bos_token_id');
  const eos = id('tokenizer.ggml.eos_token_id');
  const unk = id('tokenizer.ggml.unknown_token_id');
  const pad = id('tokenizer.ggml.padding_token_id');
  if (bos !== undefined) out.bosId = bos;
  if (eos !== undefined) out.eosId = eos;
  if (unk !== undefined) out.unkId = unk;
  if (pad !== undefined) out.padId = pad;
  return out;
}

/** The tokenizer.ggml.* metadata entries that embed `tok` (the inverse of ggufTokenizerData). */
export function ggufTokenizerMetadata(tok: GgufTokenizerData): [string, GgufWriteValue][] {
  const meta: [string, GgufWriteValue][] = [];
  meta.push(['tokenizer.ggml.model', { type: 'STRING', value: tok.model }]);
  meta.push(['tokenizer.ggml.tokens', { type: 'ARRAY', itemType: 'STRING', value: tok.tokens }]);
  meta.push(['tokenizer.ggml.scores', { type: 'ARRAY', itemType: 'FLOAT32', value: [...tok.scores] }]);
  meta.push(['tokenizer.ggml.token_type', { type: 'ARRAY', itemType: 'INT32', value: [...tok.tokenTypes] }]);
  const ids: [string, number | undefined][] = [
    ['tokenizer.ggml.bos_token_id', tok.bosId],
    ['tokenizer.ggml.eos_token_id', tok.eosId],
    ['tokenizer.ggml.unknown_token_id', tok.unkId],
    ['tokenizer.ggml.padding_token_id', tok.padId],
  ];
  for (const [k, v] of ids) if (v !== undefined) meta.push([k, { type: 'UINT32', value: v }]);
  meta.push(['tokenizer.ggml.add_bos_token', { type: 'BOOL', value: tok.addBos }]);
  meta.push(['tokenizer.ggml.add_eos_token', { type: 'BOOL', value: tok.addEos }]);
  meta.push(['tokenizer.ggml.add_space_prefix', { type: 'BOOL', value: tok.addSpacePrefix }]);
  return meta;
}
