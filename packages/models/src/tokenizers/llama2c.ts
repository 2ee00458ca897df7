/**
 * llama2.c tokenizer (tokenizer.bin / tok512.bin): int32 max_token_length, then per token
 * float32 score, int32 byte length, bytes. The number of tokens is not stored; it is whatever the
 * file holds (llama2.c takes it from the model header).
 *
 * encode() reproduces llama2.c's encode(): optional BOS (1), a dummy-prefix " " piece when the text
 * is non-empty, one piece per UTF-8 code point with byte fallback to id byte + 3 (the "<0xNN>"
 * pieces), then greedy merging of the best-scoring adjacent pair (leftmost on ties, only scores
 * above -1e10), implemented with a heap (see bpe.ts) so long texts are fast.
 *
 * Saving into a Hugging Face directory: there is no faithful tokenizer.json for this vocabulary's
 * exact algorithm, so toFiles() returns the original bytes as `tokenizer.bin`, and loadTokenizer(dir)
 * recognises that file.
 */
import { FormatError } from '../formats/errors.js';
import { readWholeFile, writeAll, writeFileAtomic } from '../formats/io.js';
import { bpeMerge } from './bpe.js';
import { checkTokenId, type EncodeOptions, type Tokenizer } from './types.js';
import { ByteBuilder, bytesToBinary, byteTokenValue, codePointBytes, utf8DecodeLenient } from './utf8.js';

const LLAMA2C_MIN_SCORE = Math.fround(-1e10);

export class Llama2cTokenizer implements Tokenizer {
  readonly kind = 'llama2c' as const;
  readonly bosId = 1;
  readonly eosId = 2;
  readonly vocabSize: number;
  /** max_token_length as stored in the file (written back unchanged). */
  readonly maxTokenLength: number;
  /** Raw bytes of each piece. */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
  private readonly binary: string[];
  private readonly index = new Map<string, number>();
  private readonly byteValue: Int16Array;
  private readonly pairCache = new Map<number, number>();
  /** Pair -> merged id cache (-2 = not looked up yet) for small vocabularies; a Map otherwise. */
  private readonly densePairs: Int32Array | undefined;
  private readonly cpCache = new Map<number, number[]>();

  constructor(pieces: readonly (Uint8Array | string)[], scores: ArrayLike<number>, maxTokenLength?: number) {
    if (pieces.length !== scores.length) {
      throw new RangeError(`Llama2cTokenizer: ${pieces.length} pieces but ${scores.length} scores`);
    }
    const enc = new TextEncoder();
    this.pieces = pieces.map((p) => (typeof p === 'string' ? enc.encode(p) : p));
    this.scores = Float32Array.from(scores);
    this.vocabSize = pieces.length;
    this.binary = this.pieces.map(bytesToBinary);
    this.byteValue = new Int16Array(this.vocabSize);
    this.binary.forEach((s, i) => {
      if (!this.index.has(s)) this.index.set(s, i); // first match, like a lookup that stops at the first hit
      this.byteValue[i] = byteTokenValue(s);
    });
    if (this.vocabSize * this.vocabSize <= 1 << 22) {
      this.densePairs = new Int32Array(this.vocabSize * this.vocabSize).fill(-2);
    }
    let longest = 0;
    for (const p of this.pieces) if (p.length > longest) longest = p.length;
    this.maxTokenLength = maxTokenLength ?? longest;
  }

  /** Parse tokenizer.bin bytes. `vocabSize`, when given, must match the number of tokens in the file. */
  static fromBytes(bytes: Uint8Array, file = 'tokenizer.bin', vocabSize?: number): Llama2cTokenizer {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 4)
      throw new FormatError(file, `truncated: ${bytes.length} bytes, needs at least 4 for max_token_length`);
    const maxLen = dv.getInt32(0, true);
    if (maxLen < 0) throw new FormatError(file, `max_token_length is ${maxLen} (not a llama2.c tokenizer?)`);
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    let o = 4;
    while (o < bytes.length && (vocabSize === undefined || pieces.length < vocabSize)) {
      const k = pieces.length;
      if (o + 8 > bytes.length) {
        throw new FormatError(
          file,
          `truncated: token ${k} header needs bytes ${o}..${o + 8} but the file has ${bytes.length}`,
        );
      }
      const score = dv.getFloat32(o, true);
      const len = dv.getInt32(o + 4, true);
      if (!Number.isFinite(score)) {
        throw new FormatError(file, `token ${k} has score ${score} (at byte ${o}); scores must be finite`, {
          field: 'score',
        });
      }
      o += 8;
      if (len < 0 || o + len > bytes.length) {
        throw new FormatError(
          file,
          `truncated or corrupt: token ${k} has length ${len} at byte ${o - 4} but the file has ${bytes.length} bytes`,
        );
      }
      pieces.push(bytes.slice(o, o + len));
      scores.push(score);
      o += len;
    }
    if (vocabSize !== undefined && pieces.length !== vocabSize) {
      throw new FormatError(file, `has ${pieces.length} tokens but the model's vocab_size is ${vocabSize}`);
    }
    if (vocabSize !== undefined && o !== bytes.length) {
      throw new FormatError(
        file,
        `has ${bytes.length - o} bytes after the ${vocabSize} tokens the model needs`,
      );
    }
    if (pieces.length < 259) {
      throw new FormatError(
        file,
        `has ${pieces.length} tokens; a llama2.c vocabulary needs at least 259 (3 specials + 256 bytes)`,
      );
    }
    return new Llama2cTokenizer(pieces, scores, maxLen);
  }

  static async load(file: string, vocabSize?: number): Promise<Llama2cTokenizer> {
    return Llama2cTokenizer.fromBytes(await readWholeFile(file), file, vocabSize);
  }

  private lookupPair = (a: number, b: number): number => {
    const key = a * this.vocabSize + b;
    const dense = this.densePairs;
    if (dense) {
      let id = dense[key]!;
      if (id === -2) {
        id = this.index.get(this.binary[a]! + this.binary[b]!) ?? -1;
        dense[key] = id;
      }
      return id;
    }
    let id = this.pairCache.get(key);
    if (id === undefined) {
      id = this.index.get(this.binary[a]! + this.binary[b]!) ?? -1;
      if (this.pairCache.size >= 1 << 20) this.pairCache.clear();
      this.pairCache.set(key, id);
    }
    return id;
  };

  private codePointSymbols(cp: number): number[] {
    let syms = this.cpCache.get(cp);
    if (!syms) {
      const bytes = codePointBytes(cp);
      const id = this.index.get(bytesToBinary(bytes));
      syms = id !== undefined ? [id] : bytes.map((b) => b + 3);
      this.cpCache.set(cp, syms);
    }
    return syms;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (options.bos ?? true) out.push(this.bosId);
    if (text.length > 0) {
      const dummy = this.index.get(' ');
      if (dummy === undefined)
        throw new Error('Llama2cTokenizer: the vocabulary has no " " piece for the dummy prefix');
      const symbols: number[] = [dummy];
      for (const ch of text) for (const s of this.codePointSymbols(ch.codePointAt(0)!)) symbols.push(s);
      for (const id of bpeMerge(symbols, this.lookupPair, this.scores, LLAMA2C_MIN_SCORE)) out.push(id);
    }
    if (options.eos) out.push(this.eosId);
    return out;
  }

  private appendPiece(out: ByteBuilder, id: number, stripSpace: boolean): void {
    const bv = this.byteValue[id]!;
    if (bv >= 0) {
      out.push(bv);
      return;
    }
    const p = this.pieces[id]!;
    out.append(stripSpace && p[0] === 0x20 ? p.subarray(1) : p);
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
      if (id === this.eosId) continue;
      this.appendPiece(out, id, atStart);
      atStart = false;
    }
    return utf8DecodeLenient(out.bytes());
  }

  decodeToken(id: number, prevId?: number): Uint8Array {
    checkTokenId(id, this.vocabSize);
    if (id === this.bosId || id === this.eosId) return new Uint8Array(0);
    const out = new ByteBuilder();
    this.appendPiece(out, id, prevId === this.bosId);
    return out.bytes();
  }

  idToToken(id: number): string | undefined {
    const p = this.pieces[id];
    return p ? utf8DecodeLenient(p) : undefined;
  }

  /** The tokenizer.bin bytes. */
  toBytes(): Uint8Array {
    let size = 4;
    for (const p of this.pieces) size += 8 + p.length;
    const out = new Uint8Array(size);
    const dv = new DataView(out.buffer);
    dv.setInt32(0, this.maxTokenLength, true);
    let o = 4;
    this.pieces.forEach((p, i) => {
      dv.setFloat32(o, this.scores[i]!, true);
      dv.setInt32(o + 4, p.length, true);
      out.set(p, o + 8);
      o += 8 + p.length;
    });
    return out;
  }

  toFiles(): Record<string, Uint8Array> {
    return { 'tokenizer.bin': this.toBytes() };
  }

  /** Write tokenizer.bin atomically. */
  async save(file: string): Promise<void> {
    const bytes = this.toBytes();
    await writeFileAtomic(file, (fh) => writeAll(fh, bytes));
  }
}
