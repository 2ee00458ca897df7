/**
 * Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) through @huggingface/tokenizers.
 */
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { brief, describeError, FormatError } from '../formats/errors.js';
import { isJsonObject, type JsonObject, readJsonFile } from '../formats/io.js';
import { checkTokenId, type EncodeOptions, type Tokenizer } from './types.js';
import { utf8Encode } from './utf8.js';

/** A special-token entry of tokenizer_config.json: a string or {content: string}. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isJsonObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

async function readJson(file: string): Promise<{ json: JsonObject; bytes: Uint8Array }> {
  const { json, bytes } = await readJsonFile(file);
  if (!isJsonObject(json)) throw new FormatError(file, 'expected a JSON object');
  return { json, bytes };
}

/** Tokenizer model types @huggingface/tokenizers implements. */
const MODEL_TYPES = ['BPE', 'Unigram', 'WordPiece', 'WordLevel'];

/** Most vocabulary entries accepted (real vocabularies have up to ~256k). */
const MAX_VOCAB = 1 << 22;

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Check what the tokenizer library would otherwise accept silently: the model type, every id in the
 * vocabulary and in added_tokens (non-negative integers, none shared by two tokens), the merges.
 */
function checkTokenizerJson(json: JsonObject, source: string): void {
  const fail = (detail: string, field: string): FormatError => new FormatError(source, detail, { field });
  const model = json.model;
  if (!isJsonObject(model)) throw fail('has no "model" object (not a tokenizer.json?)', 'model');
  const type = model.type;
  if (typeof type !== 'string' || !MODEL_TYPES.includes(type)) {
    throw fail(`model.type is ${brief(type)}; expected one of ${MODEL_TYPES.join(', ')}`, 'model.type');
  }
  const owner = new Map<number, string>();
  const claim = (id: number, token: string, where: string) => {
    const other = owner.get(id);
    if (other !== undefined && other !== token) {
      throw fail(`${where}: id ${id} is used by both ${brief(other)} and ${brief(token)}`, where);
    }
    owner.set(id, token);
  };
  const vocab = model.vocab;
  if (type === 'Unigram') {
    if (!Array.isArray(vocab))
      throw fail('model.vocab must be a list of [piece, score] pairs', 'model.vocab');
    if (vocab.length > MAX_VOCAB)
      throw fail(`model.vocab has ${vocab.length} entries, more than ${MAX_VOCAB}`, 'model.vocab');
    for (let i = 0; i < vocab.length; i++) {
      const e = vocab[i];
      if (
        !Array.isArray(e) ||
        typeof e[0] !== 'string' ||
        typeof e[1] !== 'number' ||
        !Number.isFinite(e[1])
      ) {
        throw fail(`model.vocab[${i}] must be [piece, finite score], got ${brief(e)}`, 'model.vocab');
      }
      claim(i, (e as [string])[0], 'model.vocab');
    }
  } else {
    if (!isJsonObject(vocab)) throw fail('model.vocab must be an object of token -> id', 'model.vocab');
    let count = 0;
    for (const token in vocab) {
      if (++count > MAX_VOCAB) throw fail(`model.vocab has more than ${MAX_VOCAB} entries`, 'model.vocab');
      const id = vocab[token];
      if (!isId(id))
        throw fail(
          `model.vocab[${brief(token)}] is ${brief(id)}, not a non-negative integer id`,
          'model.vocab',
        );
      claim(id as number, token, 'model.vocab');
    }
  }
  if (type === 'BPE' && model.merges !== undefined) {
    const merges = model.merges;
    if (!Array.isArray(merges)) throw fail('model.merges must be a list', 'model.merges');
    for (let i = 0; i < merges.length; i++) {
      const m = merges[i];
      const ok =
        (typeof m === 'string' && m.includes(' ')) ||
        (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string');
      if (!ok) throw fail(`model.merges[${i}] must be "a b" or ["a", "b"], got ${brief(m)}`, 'model.merges');
    }
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw fail('added_tokens must be a list', 'added_tokens');
  if (added.length > MAX_VOCAB) throw fail(`added_tokens has ${added.length} entries`, 'added_tokens');
  for (let i = 0; i < added.length; i++) {
    const a = added[i];
    if (!isJsonObject(a) || !isId(a.id) || typeof a.content !== 'string') {
      throw fail(
        `added_tokens[${i}] must have a non-negative integer id and a string content, got ${brief(a)}`,
        'added_tokens',
      );
    }
    claim((a as JsonObject).id as number, (a as JsonObject).content as string, 'added_tokens');
  }
}

export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  private readonly tok: HfLibTokenizer;
  private readonly files: Record<string, Uint8Array>;

  /**
   * `source` names the tokenizer.json in errors. `files` are the bytes toFiles() returns (defaults to
   * the two objects serialised).
   */
  constructor(
    tokenizerJson: JsonObject,
    tokenizerConfig: JsonObject = {},
    source = 'tokenizer.json',
    files?: Record<string, Uint8Array>,
  ) {
    checkTokenizerJson(tokenizerJson, source);
    try {
      this.tok = new HfLibTokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new FormatError(source, `cannot be loaded by @huggingface/tokenizers (${describeError(e)})`, {
        cause: e,
      });
    }
    let max = -1;
    for (const id of this.tok.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const idOf = (key: string): number | undefined => {
      const content = tokenContent(tokenizerConfig[key]);
      if (content === undefined) return undefined;
      const id = this.tok.token_to_id(content);
      if (id === undefined)
        throw new FormatError(
          source,
          `tokenizer_config ${key} ${JSON.stringify(content)} is not in the vocabulary`,
        );
      return id;
    };
    const bos = idOf('bos_token');
    const eos = idOf('eos_token');
    if (bos !== undefined) this.bosId = bos;
    if (eos !== undefined) this.eosId = eos;
    this.files = files ?? {
      'tokenizer.json': utf8Encode(JSON.stringify(tokenizerJson)),
      'tokenizer_config.json': utf8Encode(JSON.stringify(tokenizerConfig)),
    };
  }

  /** Load tokenizer.json and (when present) tokenizer_config.json from a directory. */
  static async fromDirectory(dir: string): Promise<HfTokenizer> {
    return HfTokenizer.fromFile(join(dir, 'tokenizer.json'));
  }

  /** Load a tokenizer.json file; tokenizer_config.json is read from the same directory when present. */
  static async fromFile(tokenizerJsonFile: string): Promise<HfTokenizer> {
    const tj = await readJson(tokenizerJsonFile);
    const cfgFile = join(dirname(tokenizerJsonFile), 'tokenizer_config.json');
    let cfg: { json: JsonObject; bytes: Uint8Array } | undefined;
    const exists = await stat(cfgFile).then(
      (s) => s.isFile(),
      () => false,
    );
    if (exists) cfg = await readJson(cfgFile);
    const files: Record<string, Uint8Array> = { 'tokenizer.json': tj.bytes };
    if (cfg) files['tokenizer_config.json'] = cfg.bytes;
    return new HfTokenizer(tj.json, cfg?.json ?? {}, tokenizerJsonFile, files);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    const out: number[] = [];
    if ((options.bos ?? true) && this.bosId !== undefined) out.push(this.bosId);
    for (const id of ids) out.push(id);
    if (options.eos && this.eosId !== undefined) out.push(this.eosId);
    return out;
  }

  decode(ids: readonly number[]): string {
    for (const id of ids) checkTokenId(id, this.vocabSize);
    return this.tok.decode([...ids], { skip_special_tokens: true });
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  toFiles(): Record<string, Uint8Array> {
    return { ...this.files };
  }
}
