/**
 * initModel: a Hugging Face directory (sharded safetensors, config.json, a generated tokenizer) with
 * seeded random weights of any preset shape, written one tensor at a time: each tensor is a lazy
 * tensor whose loader generates it when the writer reaches it, so a 7B model is written without
 * ever being in memory. Used by benchmarks and tests, and by users who size hardware.
 *
 * Weights: matrix k (in HF's canonical tensor order) holds std * N(0, 1) drawn from core's
 * counter-based generator, stream counterKey(seed, k, 0), element i at counter i: a pure function
 * of (seed, k, i), so the result does not depend on chunking or order, and the same seed gives the
 * same bytes on every machine. Norm weights are 1.
 *
 * The tokenizer (nothing is downloaded): a SentencePiece-style byte-fallback vocabulary written as
 * tokenizer.json + tokenizer_config.json: `<unk>`, `<s>`, `</s>` (at the config's bos / eos ids),
 * the 256 byte tokens `<0x00>`..`<0xFF>` as in Llama's vocabulary, `▁` and the printable ASCII
 * characters, so any text encodes (character by character, bytes for the rest). It has fewer tokens
 * than the model's vocabulary; the other embedding rows are simply never used.
 */
import {
  counterKey,
  type FloatDType,
  fillCounterNormals,
  float32ToBfloat16,
  type HostData,
  type HostTensor,
  InputError,
  lazyTensor,
  sizeOf,
} from '@moreau/core';
import { type SaveProgress, saveHfDirectory } from './formats/hf-dir.js';
import { expectedTensorShapes, type LlamaConfig } from './llama/config.js';
import { llamaPreset, paramCount } from './llama/presets.js';
import { PieceType, SentencePieceTokenizer } from './tokenizers/sentencepiece.js';

export interface InitModelOptions {
  /** A preset name (`llamaPreset`): llama-7b, llama-2-7b, llama-3-8b, tinyllama-1.1b, ... */
  readonly preset: string;
  /** The output directory. */
  readonly out: string;
  /** Storage dtype of the weights. Default 'float16'. */
  readonly dtype?: FloatDType;
  /** Seed of the weights. Default 1. */
  readonly seed?: number;
  /** Keep only the first N decoder layers (1 .. the preset's count). Default: all. */
  readonly layers?: number;
  /** Standard deviation of the matrices. Default 0.02 (HF's initializer_range). */
  readonly std?: number;
  /** Replace a non-empty existing directory. Default false. */
  readonly overwrite?: boolean;
  /** Largest shard in bytes. Default 5e9. */
  readonly maxShardBytes?: number;
  /** Called after each tensor is written. */
  readonly onProgress?: (progress: SaveProgress) => void;
  /** Stops the write between tensors; nothing is left behind. */
  readonly signal?: AbortSignal;
}

export interface InitModelResult {
  readonly dir: string;
  readonly config: LlamaConfig;
  /** The file names written. */
  readonly files: string[];
  readonly params: number;
  /** Bytes of tensor data written. */
  readonly bytes: number;
}

/** Elements generated per step (4 MiB of float32 scratch). */
const CHUNK = 1 << 20;

/**
 * float32 -> float16 bits, round to nearest even, exactly core's float32ToFloat16 but on the bits
 * of float32 input (about 10x faster; the init's conversion is most of its time otherwise).
 */
export function float32ToFloat16Into(src: Float32Array, dst: Uint16Array, at: number): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const a = x & 0x7fffffff;
    let h: number;
    if (a >= 0x47800000) {
      // |x| >= 65536: infinity, or NaN (quiet, payload kept as core does).
      h = a > 0x7f800000 ? 0x7c00 | 0x200 | ((a & 0x7fffff) >>> 13) : 0x7c00;
    } else if (a >= 0x38800000) {
      // A normal half: rebias the exponent, round the 13 dropped bits to nearest even (a carry
      // into the exponent is correct, up to infinity).
      h = (a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13;
    } else if (a >= 0x33000000) {
      // A subnormal half: |x| * 2^24 rounded to nearest even (exact in double).
      const t = src[i]! < 0 ? -src[i]! * 16777216 : src[i]! * 16777216;
      let r = Math.floor(t);
      const frac = t - r;
      if (frac > 0.5 || (frac === 0.5 && (r & 1) === 1)) r++;
      h = r;
    } else {
      h = 0;
    }
    dst[at + i] = sign | h;
  }
}

/** Tensor k of the random model: std * N(0, 1) from stream (seed, k, 0), or ones for a norm. */
function generate(
  shape: readonly number[],
  dtype: FloatDType,
  seed: number,
  k: number,
  std: number,
): HostData {
  const n = sizeOf(shape);
  if (shape.length === 1) {
    if (dtype === 'float32') return new Float32Array(n).fill(1);
    return new Uint16Array(n).fill(dtype === 'float16' ? 0x3c00 : 0x3f80);
  }
  const key = counterKey(seed, k, 0);
  if (dtype === 'float32') {
    const out = new Float32Array(n);
    for (let o = 0; o < n; o += CHUNK) {
      const part = out.subarray(o, Math.min(n, o + CHUNK));
      fillCounterNormals(key, o, part);
      for (let i = 0; i < part.length; i++) part[i]! *= std;
    }
    return out;
  }
  const out = new Uint16Array(n);
  const scratch = new Float32Array(Math.min(n, CHUNK));
  for (let o = 0; o < n; o += CHUNK) {
    const part = scratch.subarray(0, Math.min(CHUNK, n - o));
    fillCounterNormals(key, o, part);
    for (let i = 0; i < part.length; i++) part[i]! *= std;
    if (dtype === 'float16') float32ToFloat16Into(part, out, o);
    else out.set(float32ToBfloat16(part), o);
  }
  return out;
}

/**
 * The random model's tensors, each generated when its data is read (lazy): HF names in canonical
 * order, shapes of `config`.
 */
export function randomTensors(
  config: LlamaConfig,
  options: { seed?: number; dtype?: FloatDType; std?: number } = {},
): Map<string, HostTensor> {
  const seed = options.seed ?? 1;
  const dtype = options.dtype ?? 'float16';
  const std = options.std ?? 0.02;
  const out = new Map<string, HostTensor>();
  let k = 0;
  for (const [name, shape] of expectedTensorShapes(config)) {
    const index = k++;
    out.set(
      name,
      lazyTensor(shape, dtype, () => generate(shape, dtype, seed, index, std)),
    );
  }
  return out;
}

/**
 * The generated tokenizer for `config` (see the module comment): ids 0.. hold `<unk>`, the byte
 * tokens, `▁` and printable ASCII; `<s>` / `</s>` sit at the config's bos / eos ids (gaps filled
 * with unused `<unused_N>` pieces when those ids are high, as for Llama 3).
 */
export function generatedTokenizer(config: LlamaConfig): SentencePieceTokenizer {
  const fixed = new Map<number, [string, number]>([
    [config.bosTokenId, ['<s>', PieceType.CONTROL]],
    [config.eosTokenId, ['</s>', PieceType.CONTROL]],
  ]);
  const pieces: [string, number][] = [['<unk>', PieceType.UNKNOWN]];
  for (let b = 0; b < 256; b++) {
    pieces.push([`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, PieceType.BYTE]);
  }
  pieces.push(['\u2581', PieceType.NORMAL]);
  for (let c = 0x21; c < 0x7f; c++) pieces.push([String.fromCharCode(c), PieceType.NORMAL]);
  const tokens: string[] = [];
  const types: number[] = [];
  const ids: Record<string, number> = {};
  let next = 0;
  const place = (id: number, [t, type]: [string, number]) => {
    tokens[id] = t;
    types[id] = type;
    ids[t] = id;
  };
  for (const p of pieces) {
    while (fixed.has(next)) next++;
    place(next++, p);
  }
  for (const [id, p] of fixed) place(id, p);
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === undefined) place(i, [`<unused_${i}>`, PieceType.UNUSED]);
  }
  if (tokens.length > config.vocabSize) {
    throw new InputError(
      `the generated tokenizer needs ${tokens.length} ids but the model's vocabulary has ${config.vocabSize}`,
    );
  }
  return new SentencePieceTokenizer({
    tokens,
    scores: new Float32Array(tokens.length),
    tokenTypes: types,
    bosId: config.bosTokenId,
    eosId: config.eosTokenId,
    unkId: ids['<unk>']!,
  });
}

/**
 * Write a random model of a preset's shape as a Hugging Face directory (see the module comment),
 * atomically and one tensor at a time.
 */
export async function initModel(options: InitModelOptions): Promise<InitModelResult> {
  const config = llamaPreset(options.preset);
  if (options.layers !== undefined) {
    const L = options.layers;
    if (!Number.isInteger(L) || L < 1 || L > config.numHiddenLayers) {
      throw new InputError(
        `layers must be an integer from 1 to ${config.numHiddenLayers} (the preset's layer count), got ${L}`,
        undefined,
        'layers',
      );
    }
    config.numHiddenLayers = L;
  }
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed))
    throw new InputError(`seed must be an integer, got ${seed}`, undefined, 'seed');
  const std = options.std ?? 0.02;
  if (!(std > 0 && Number.isFinite(std)))
    throw new InputError(`std must be positive, got ${std}`, undefined, 'std');
  const dtype = options.dtype ?? 'float16';
  const tensors = randomTensors(config, { seed, dtype, std });
  let bytes = 0;
  const files = await saveHfDirectory(
    options.out,
    {
      config,
      tensors,
      format: 'hf',
      sourceDtype: { float32: 'F32', float16: 'F16', bfloat16: 'BF16' }[dtype],
    },
    {
      tokenizerFiles: generatedTokenizer(config).toFiles(),
      overwrite: options.overwrite ?? false,
      ...(options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (p) => {
        bytes = p.bytesDone;
        options.onProgress?.(p);
      },
    },
  );
  return { dir: options.out, config, files, params: paramCount(config), bytes };
}
