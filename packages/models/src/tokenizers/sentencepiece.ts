/**
 * SentencePiece-style LLaMA vocabularies (tokens + scores + piece types), as embedded in GGUF files
 * (tokenizer.ggml.model "llama"). Encoding is sentencepiece's BPE: spaces become "▁", a "▁" dummy
 * prefix is added to non-empty text, each code point becomes its piece when one exists, and the
 * best-scoring adjacent pair whose concatenation is a normal piece is merged until none is left
 * (leftmost on ties); code points without a piece fall back to "<0xNN>" byte pieces.
 *
 * toFiles() writes an HF tokenizer.json (BPE with merges derived from the scores, byte fallback,
 * Prepend/Replace normalizer, the layout transformers produces for Llama-2) and tokenizer_config.json.
 */
import { FormatError } from '../formats/errors.js';
import { readGgufInfo } from '../formats/gguf/read.js';
import { type GgufTokenizerData, ggufTokenizerData } from '../formats/gguf/tokenizer.js';
import { bpeMerge } from './bpe.js';
import { checkTokenId, type EncodeOptions, type Tokenizer } from './types.js';
import { ByteBuilder, byteTokenValue, codePointBytes, utf8DecodeLenient, utf8Encode } from './utf8.js';

/** sentencepiece piece types (as in GGUF tokenizer.ggml.token_type). */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface SentencePieceVocab {
  tokens: readonly string[];
  scores: ArrayLike<number>;
  /** Piece types; default all NORMAL except "<0xNN>" pieces (BYTE). */
  tokenTypes?: ArrayLike<number>;
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  /** Add a "▁" before non-empty text (sentencepiece add_dummy_prefix). Default true. */
  addSpacePrefix?: boolean;
}

const SPACE = '\u2581'; // ▁

export class SentencePieceTokenizer implements Tokenizer {
  readonly kind = 'sentencepiece' as const;
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly unkId?: number;
  readonly padId?: number;
  readonly addSpacePrefix: boolean;
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly tokenTypes: Int32Array;
  /** Normal and user-defined pieces: what text maps to and what merges may produce. */
  private readonly index = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteValue: Int16Array;
  private readonly pairCache = new Map<number, number>();
  private readonly cpCache = new Map<number, number[]>();

  constructor(vocab: SentencePieceVocab) {
    const n = vocab.tokens.length;
    if (vocab.scores.length !== n)
      throw new RangeError(`SentencePieceTokenizer: ${n} tokens but ${vocab.scores.length} scores`);
    if (vocab.tokenTypes && vocab.tokenTypes.length !== n) {
      throw new RangeError(`SentencePieceTokenizer: ${n} tokens but ${vocab.tokenTypes.length} token types`);
    }
    this.vocabSize = n;
    this.tokens = vocab.tokens;
    this.scores = Float32Array.from(vocab.scores);
    this.tokenTypes = vocab.tokenTypes
      ? Int32Array.from(vocab.tokenTypes)
      : Int32Array.from(vocab.tokens, (t) => (byteTokenValue(t) >= 0 ? PieceType.BYTE : PieceType.NORMAL));
    this.byteValue = new Int16Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      const type = this.tokenTypes[i]!;
      const t = vocab.tokens[i]!;
      if (type === PieceType.NORMAL || type === PieceType.USER_DEFINED) {
        if (!this.index.has(t)) this.index.set(t, i);
      } else if (type === PieceType.BYTE) {
        const b = byteTokenValue(t);
        if (b >= 0) {
          this.byteValue[i] = b;
          if (this.byteIds[b] === -1) this.byteIds[b] = i;
        }
      }
    }
    if (vocab.bosId !== undefined) this.bosId = vocab.bosId;
    if (vocab.eosId !== undefined) this.eosId = vocab.eosId;
    if (vocab.unkId !== undefined) this.unkId = vocab.unkId;
    if (vocab.padId !== undefined) this.padId = vocab.padId;
    this.addSpacePrefix = vocab.addSpacePrefix ?? true;
  }

  static fromGgufData(data: GgufTokenizerData, file = 'gguf'): SentencePieceTokenizer {
    if (data.model !== 'llama') {
      throw new FormatError(
        file,
        `tokenizer.ggml.model is ${JSON.stringify(data.model)}; only "llama" (sentencepiece BPE) vocabularies are supported`,
      );
    }
    return new SentencePieceTokenizer({
      tokens: data.tokens,
      scores: data.scores,
      tokenTypes: data.tokenTypes,
      ...(data.bosId !== undefined ? { bosId: data.bosId } : {}),
      ...(data.eosId !== undefined ? { eosId: data.eosId } : {}),
      ...(data.unkId !== undefined ? { unkId: data.unkId } : {}),
      ...(data.padId !== undefined ? { padId: data.padId } : {}),
      addSpacePrefix: data.addSpacePrefix,
    });
  }

  /** Read the vocabulary embedded in a GGUF file (metadata only; tensors are not read). */
  static async fromGguf(file: string): Promise<SentencePieceTokenizer> {
    const info = await readGgufInfo(file);
    return SentencePieceTokenizer.fromGgufData(ggufTokenizerData(info), file);
  }

  private lookupPair = (a: number, b: number): number => {
    const key = a * this.vocabSize + b;
    let id = this.pairCache.get(key);
    if (id === undefined) {
      const ta = this.tokenTypes[a];
      const tb = this.tokenTypes[b];
      const mergeable = (t: number | undefined) => t === PieceType.NORMAL || t === PieceType.USER_DEFINED;
      id = mergeable(ta) && mergeable(tb) ? (this.index.get(this.tokens[a]! + this.tokens[b]!) ?? -1) : -1;
      if (this.pairCache.size >= 1 << 20) this.pairCache.clear();
      this.pairCache.set(key, id);
    }
    return id;
  };

  private codePointSymbols(cp: number): number[] {
    let syms = this.cpCache.get(cp);
    if (!syms) {
      const id = this.index.get(String.fromCodePoint(cp));
      if (id !== undefined) {
        syms = [id];
      } else {
        syms = [];
        for (const b of codePointBytes(cp)) {
          const bid = this.byteIds[b]!;
          if (bid >= 0) syms.push(bid);
          else if (this.unkId !== undefined) {
            syms = [this.unkId];
            break;
          } else {
            throw new Error(
              `SentencePieceTokenizer: no piece, byte piece or <unk> for U+${cp.toString(16).toUpperCase()}`,
            );
          }
        }
      }
      this.cpCache.set(cp, syms);
    }
    return syms;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if ((options.bos ?? true) && this.bosId !== undefined) out.push(this.bosId);
    if (text.length > 0) {
      const normalized = (this.addSpacePrefix ? SPACE : '') + text.replaceAll(' ', SPACE);
      const symbols: number[] = [];
      for (const ch of normalized) for (const s of this.codePointSymbols(ch.codePointAt(0)!)) symbols.push(s);
      for (const id of bpeMerge(symbols, this.lookupPair, this.scores)) out.push(id);
    }
    if (options.eos && this.eosId !== undefined) out.push(this.eosId);
    return out;
  }

  /** Bytes of one piece; `strip` removes the dummy-prefix space. Control pieces give nothing. */
  private appendPiece(out: ByteBuilder, id: number, strip: boolean): boolean {
    const type = this.tokenTypes[id]!;
    if (type === PieceType.CONTROL) return false;
    if (type === PieceType.BYTE && this.byteValue[id]! >= 0) {
      out.push(this.byteValue[id]!);
      return true;
    }
    if (type === PieceType.UNKNOWN) {
      out.append(utf8Encode(' \u2047 ')); // sentencepiece's surface for <unk>
      return true;
    }
    let s = this.tokens[id]!.replaceAll(SPACE, ' ');
    if (strip && this.addSpacePrefix && s.startsWith(' ')) s = s.slice(1);
    out.append(utf8Encode(s));
    return true;
  }

  decode(ids: readonly number[]): string {
    const out = new ByteBuilder();
    let atStart = true;
    for (const id of ids) {
      checkTokenId(id, this.vocabSize);
      if (id === this.bosId) {
        atStart = true;
        continue;
      }
      if (this.appendPiece(out, id, atStart)) atStart = false;
    }
    return utf8DecodeLenient(out.bytes());
  }

  decodeToken(id: number, prevId?: number): Uint8Array {
    checkTokenId(id, this.vocabSize);
    const out = new ByteBuilder();
    this.appendPiece(out, id, prevId === undefined || prevId === this.bosId);
    return out.bytes();
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  /** The vocabulary in GGUF form (for saveGguf). */
  toGgufTokenizerData(): GgufTokenizerData {
    return {
      model: 'llama',
      tokens: [...this.tokens],
      scores: this.scores.slice(),
      tokenTypes: this.tokenTypes.slice(),
      ...(this.bosId !== undefined ? { bosId: this.bosId } : {}),
      ...(this.eosId !== undefined ? { eosId: this.eosId } : {}),
      ...(this.unkId !== undefined ? { unkId: this.unkId } : {}),
      ...(this.padId !== undefined ? { padId: this.padId } : {}),
      addBos: this.bosId !== undefined,
      addEos: false,
      addSpacePrefix: this.addSpacePrefix,
    };
  }

  /** An HF tokenizer.json object equivalent to this vocabulary (merges derived from the scores). */
  toTokenizerJson(): Record<string, unknown> {
    const n = this.vocabSize;
    const vocab: Record<string, number> = {};
    const full = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const t = this.tokens[i]!;
      if (!(t in vocab)) vocab[t] = i;
      if (!full.has(t)) full.set(t, i);
    }
    // Merges as transformers' SentencePieceExtractor derives them: every split of every piece into
    // two pieces, ordered by the piece's score (descending; stable), then by the halves' ids.
    const merges: { l: string; r: string; score: number; order: number }[] = [];
    let order = 0;
    for (let i = 0; i < n; i++) {
      const piece = this.tokens[i]!;
      if (full.get(piece) !== i) continue;
      const local: { l: string; r: string; li: number; ri: number }[] = [];
      // Every split between two code points (k steps over a surrogate pair's second half).
      for (let k = 1; k < piece.length; k++) {
        const c = piece.charCodeAt(k);
        if (c >= 0xdc00 && c <= 0xdfff) continue;
        const l = piece.slice(0, k);
        const li = full.get(l);
        if (li === undefined) continue;
        const r = piece.slice(k);
        const ri = full.get(r);
        if (ri !== undefined) local.push({ l, r, li, ri });
      }
      local.sort((a, b) => a.li - b.li || a.ri - b.ri);
      for (const m of local) merges.push({ l: m.l, r: m.r, score: this.scores[i]!, order: order++ });
    }
    merges.sort((a, b) => b.score - a.score || a.order - b.order);
    const special = (id: number | undefined) => (id === undefined ? undefined : this.tokens[id]);
    const added: Record<string, unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const type = this.tokenTypes[i];
      if (type === PieceType.CONTROL || type === PieceType.UNKNOWN || type === PieceType.USER_DEFINED) {
        added.push({
          id: i,
          content: this.tokens[i],
          single_word: false,
          lstrip: false,
          rstrip: false,
          normalized: type === PieceType.USER_DEFINED,
          special: type !== PieceType.USER_DEFINED,
        });
      }
    }
    const bos = special(this.bosId);
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: {
        type: 'Sequence',
        normalizers: [
          ...(this.addSpacePrefix ? [{ type: 'Prepend', prepend: SPACE }] : []),
          { type: 'Replace', pattern: { String: ' ' }, content: SPACE },
        ],
      },
      pre_tokenizer: null,
      post_processor:
        bos === undefined
          ? null
          : {
              type: 'TemplateProcessing',
              single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
              pair: [
                { SpecialToken: { id: bos, type_id: 0 } },
                { Sequence: { id: 'A', type_id: 0 } },
                { SpecialToken: { id: bos, type_id: 1 } },
                { Sequence: { id: 'B', type_id: 1 } },
              ],
              special_tokens: { [bos]: { id: bos, ids: [this.bosId], tokens: [bos] } },
            },
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(this.addSpacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: special(this.unkId) ?? null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges: merges.map((m) => [m.l, m.r]),
      },
    };
  }

  /** tokenizer_config.json matching toTokenizerJson(). */
  toTokenizerConfig(): Record<string, unknown> {
    const special = (id: number | undefined) => (id === undefined ? null : this.tokens[id]);
    return {
      tokenizer_class: 'LlamaTokenizer',
      add_bos_token: this.bosId !== undefined,
      add_eos_token: false,
      bos_token: special(this.bosId),
      eos_token: special(this.eosId),
      unk_token: special(this.unkId),
      pad_token: special(this.padId),
      clean_up_tokenization_spaces: false,
      model_max_length: 1e30,
    };
  }

  toFiles(): Record<string, Uint8Array> {
    return {
      'tokenizer.json': utf8Encode(`${JSON.stringify(this.toTokenizerJson(), null, 2)}\n`),
      'tokenizer_config.json': utf8Encode(`${JSON.stringify(this.toTokenizerConfig(), null, 2)}\n`),
    };
  }
}
