/** The tokenizer contract shared by every vocabulary format. */

export interface EncodeOptions {
  /** Prepend the BOS id (when the tokenizer has one). Default true, like llama2.c and HF. */
  bos?: boolean;
  /** Append the EOS id (when the tokenizer has one). Default false. */
  eos?: boolean;
}

export type TokenizerKind = 'llama2c' | 'sentencepiece' | 'hf';

export interface Tokenizer {
  readonly kind: TokenizerKind;
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  /** Text -> token ids. The text is taken literally: "<s>" in the text is not the BOS token. */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * Token ids -> text. BOS / EOS / other control tokens are skipped; the leading space the encoder's
   * dummy prefix added is removed, so `decode(encode(s)) === s` for ordinary text.
   */
  decode(ids: readonly number[]): string;
  /**
   * For streaming: the bytes one token adds to the output, given the previous token (llama2.c's
   * rule: a leading space right after BOS is dropped). Concatenate and decode as UTF-8 (a byte-fallback
   * token may be part of a multi-byte character).
   */
  decodeToken?(id: number, prevId?: number): Uint8Array;
  /** The piece string of one id (for display / debugging), or undefined when out of range. */
  idToToken(id: number): string | undefined;
  /**
   * The files that recreate this tokenizer inside a model directory, by file name: tokenizer.json +
   * tokenizer_config.json for HF and sentencepiece vocabularies, tokenizer.bin for llama2.c ones.
   */
  toFiles(): Record<string, Uint8Array>;
}

/** Throws a RangeError unless `id` is a token id of a vocabulary of `vocabSize` pieces. */
export function checkTokenId(id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
  }
}
