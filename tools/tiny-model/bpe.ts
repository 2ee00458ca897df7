/**
 * Byte-level BPE (GPT-2 style), trained and applied in TypeScript, saved as a Hugging Face
 * tokenizer.json that @huggingface/tokenizers (and the Rust `tokenizers`) load.
 *
 * - Pre-tokenizer: GPT-2's regex, then every UTF-8 byte of a piece is mapped to a printable
 *   character (GPT-2's bytes_to_unicode), so there is no unknown token.
 * - Training: word frequencies from the pre-tokenizer, then repeatedly merge the most frequent
 *   adjacent pair (ties: the smaller left id, then the smaller right id). Pair counts are updated
 *   incrementally: only the words that contain the merged pair are recounted, and a lazy max-heap
 *   holds the candidates.
 * - Encoding: within each piece, repeatedly merge the adjacent pair with the lowest merge rank
 *   (leftmost on ties) — the rule of HF's BPE model.
 *
 * Vocabulary layout: special tokens first (<s> = 0, </s> = 1), then the 256 byte tokens in byte
 * order, then one token per merge in merge order.
 */

/** GPT-2's pre-tokenizer pattern, exactly as HF's ByteLevel pre-tokenizer uses it. */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: byte -> printable character. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => {
    out[b] = String.fromCharCode(cs[i]!);
  });
  return out;
})();

const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

export function pretokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}

export interface BpeModel {
  /** Token strings by id (byte-level characters; special tokens verbatim). */
  readonly vocab: readonly string[];
  /** Merges in rank order, as token-string pairs. */
  readonly merges: readonly (readonly [string, string])[];
  /** Special tokens (ids 0 .. n-1). */
  readonly specialTokens: readonly string[];
}

export interface TrainBpeOptions {
  /** Total vocabulary including special and byte tokens. */
  readonly vocabSize: number;
  readonly specialTokens?: readonly string[];
  /** Called every `every` merges with (merges done, merges wanted). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** Max-heap of (count, key) pairs with lazy invalidation by the caller. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.counts.length;
  }
  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j]!, this.counts[i]!];
    [this.keys[i], this.keys[j]] = [this.keys[j]!, this.keys[i]!];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] | undefined {
    const n = this.counts.length;
    if (n === 0) return undefined;
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lc = this.counts.pop()!;
    const lk = this.keys.pop()!;
    if (n > 1) {
      this.counts[0] = lc;
      this.keys[0] = lk;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < n - 1 && this.above(l, m)) m = l;
        if (r < n - 1 && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

const KEY = 65536;

/** Counts pre-tokenizer pieces over texts. */
export function countWords(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const w of pretokenize(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  return counts;
}

/** Trains a byte-level BPE on pre-tokenizer piece counts (from countWords). */
export function trainBpe(wordCounts: ReadonlyMap<string, number>, options: TrainBpeOptions): BpeModel {
  const specialTokens = options.specialTokens ?? ['<s>', '</s>'];
  const base = specialTokens.length;
  const numMerges = options.vocabSize - base - 256;
  if (numMerges < 0) throw new RangeError(`trainBpe: vocabSize ${options.vocabSize} is below ${base + 256}`);
  if (options.vocabSize > KEY) throw new RangeError(`trainBpe: vocabSize above ${KEY} is not supported`);
  const vocab: string[] = [...specialTokens, ...BYTE_TO_CHAR];
  const merges: [string, string][] = [];

  // Words (sorted for determinism) as symbol-id arrays.
  const entries = [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const enc = new TextEncoder();
  const words: Int32Array[] = [];
  const freqs: number[] = [];
  for (const [w, c] of entries) {
    const bytes = enc.encode(w);
    if (bytes.length < 1) continue;
    words.push(Int32Array.from(bytes, (b) => b + base));
    freqs.push(c);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const heap = new PairHeap();
  const touched = new Set<number>();
  const addPairs = (wi: number, sign: number) => {
    const w = words[wi]!;
    const f = freqs[wi]! * sign;
    for (let i = 0; i + 1 < w.length; i++) {
      const key = w[i]! * KEY + w[i + 1]!;
      pairCount.set(key, (pairCount.get(key) ?? 0) + f);
      touched.add(key);
      if (sign > 0) {
        let s = pairWords.get(key);
        if (!s) {
          s = new Set();
          pairWords.set(key, s);
        }
        s.add(wi);
      }
    }
  };
  const flushTouched = () => {
    for (const key of touched) {
      const c = pairCount.get(key)!;
      if (c > 0) heap.push(c, key);
    }
    touched.clear();
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);
  flushTouched();

  while (merges.length < numMerges) {
    const top = heap.pop();
    if (!top) break; // nothing left to merge
    const [count, key] = top;
    if (pairCount.get(key) !== count) continue; // stale entry
    const a = Math.floor(key / KEY);
    const b = key % KEY;
    const id = vocab.length;
    vocab.push(vocab[a]! + vocab[b]!);
    merges.push([vocab[a]!, vocab[b]!]);
    const holders = [...(pairWords.get(key) ?? [])].sort((x, y) => x - y);
    pairWords.delete(key);
    for (const wi of holders) {
      const w = words[wi]!;
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) {
        if (w[i] === a && w[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) continue;
      addPairs(wi, -1);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(id);
          i++;
        } else {
          out.push(w[i]!);
        }
      }
      words[wi] = Int32Array.from(out);
      addPairs(wi, 1);
    }
    pairCount.delete(key);
    touched.delete(key);
    flushTouched();
    if (options.onProgress && merges.length % 250 === 0) options.onProgress(merges.length, numMerges);
  }
  return { vocab, merges, specialTokens };
}

/** Encoder / decoder of a trained model (the reference the HF library is checked against). */
export class ByteBpe {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly ids = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, number[]>();

  constructor(readonly model: BpeModel) {
    model.vocab.forEach((t, i) => {
      this.ids.set(t, i);
    });
    model.merges.forEach(([a, b], i) => {
      this.ranks.set(`${a} ${b}`, i);
    });
    this.vocabSize = model.vocab.length;
    this.bosId = this.ids.get('<s>') ?? -1;
    this.eosId = this.ids.get('</s>') ?? -1;
  }

  /** BPE of one pre-tokenizer piece: lowest-rank adjacent pair first, leftmost on ties. */
  encodePiece(piece: string): number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    const symbols = Array.from(new TextEncoder().encode(piece), (b) => BYTE_TO_CHAR[b]!);
    while (symbols.length > 1) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      symbols.splice(best, 2, symbols[best]! + symbols[best + 1]!);
    }
    const out = symbols.map((s) => this.ids.get(s)!);
    if (this.cache.size < 200_000) this.cache.set(piece, out);
    return out;
  }

  encode(text: string, options: { bos?: boolean } = {}): number[] {
    const out: number[] = options.bos === false || this.bosId < 0 ? [] : [this.bosId];
    for (const piece of pretokenize(text)) for (const id of this.encodePiece(piece)) out.push(id);
    return out;
  }

  /** Ids -> text; special tokens are skipped. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    const nSpecial = this.model.specialTokens.length;
    for (const id of ids) {
      if (id < nSpecial) continue;
      for (const ch of this.model.vocab[id]!) bytes.push(CHAR_TO_BYTE.get(ch)!);
    }
    return new TextDecoder().decode(Uint8Array.from(bytes));
  }
}

/** The Hugging Face tokenizer.json of a model: BPE + ByteLevel, <s> prepended by TemplateProcessing. */
export function toTokenizerJson(model: BpeModel): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  model.vocab.forEach((t, i) => {
    vocab[t] = i;
  });
  const bos = model.specialTokens[0]!;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: model.specialTokens.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [0], tokens: [bos] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: model.merges.map(([a, b]) => [a, b]),
    },
  };
}

/** tokenizer_config.json: BOS added, no clean-up of spaces (so decode(encode(x)) === x). */
export function tokenizerConfigJson(model: BpeModel, maxLength: number): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  model.specialTokens.forEach((content, id) => {
    decoder[String(id)] = {
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    };
  });
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: decoder,
    bos_token: model.specialTokens[0],
    eos_token: model.specialTokens[1],
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}

/** Rebuilds a model from a tokenizer.json written by toTokenizerJson. */
export function fromTokenizerJson(json: any): BpeModel {
  const entries = Object.entries(json.model.vocab as Record<string, number>).sort((a, b) => a[1] - b[1]);
  const vocab = entries.map(([t]) => t);
  const specialTokens = (json.added_tokens as { content: string; id: number }[])
    .sort((a, b) => a.id - b.id)
    .map((t) => t.content);
  const merges = (json.model.merges as [string, string][]).map(([a, b]) => [a, b] as const);
  return { vocab, merges, specialTokens };
}
