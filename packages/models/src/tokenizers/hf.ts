/**
 * Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) through @huggingface/tokenizers.
 */
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { describeError, FormatError } from '../formats/errors.js';
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
    if (!isJsonObject(tokenizerJson.model))
      throw new FormatError(source, 'has no "model" object (not a tokenizer.json?)');
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
