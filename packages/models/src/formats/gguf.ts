/**
 * GGUF (v2 / v3) reader, plus a small writer (unquantized tensors) used for exports and tests.
 *
 * File layout (little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
 * metadata KVs (u64-length string key, u32 value type, value), tensor infos (name, u32 n_dims,
 * u64 dims[n_dims] innermost first, u32 ggml type, u64 offset relative to the data section), padding
 * to general.alignment (default 32), then the data section.
 *
 * Loading a LLaMA: llama.* metadata -> LlamaConfig, GGUF tensor names -> HF names, dims reversed
 * (GGUF [in, out] -> HF [out, in]), and llama.cpp's q/k row permutation undone (its convert script
 * applies the same adjacent-pair permutation as llama2.c). Only F32 / F16 / BF16 (and I32) tensors
 * can be read; quantized types are rejected naming the type and the tensor.
 */
import { type DType, type FloatDType, type HostTensor, sizeOf } from '@moreau/core';
import {
  type Checkpoint,
  describeSourceDtypes,
  expectedTensorShapes,
  type LlamaConfig,
  layerDims,
  validateCheckpointTensors,
  validateLlamaConfig,
} from './checkpoint.js';
import { FormatError } from './errors.js';
import {
  assertLittleEndianHost,
  ChunkedReader,
  decodeUtf8,
  openForRead,
  writeAll,
  writeFileAtomic,
} from './io.js';
import { permuteRopeRows } from './llama2c.js';
import { castFloatTensor, dataBytes, tensorFileReader } from './tensor.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueTypeId = (typeof GgufValueType)[keyof typeof GgufValueType];
const VALUE_TYPE_NAMES = Object.fromEntries(Object.entries(GgufValueType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

/** ggml tensor types: id -> [name, block size (elements), bytes per block]. */
export const GGML_TYPES: Readonly<Record<number, readonly [string, number, number]>> = {
  0: ['F32', 1, 4],
  1: ['F16', 1, 2],
  2: ['Q4_0', 32, 18],
  3: ['Q4_1', 32, 20],
  6: ['Q5_0', 32, 22],
  7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34],
  9: ['Q8_1', 32, 36],
  10: ['Q2_K', 256, 84],
  11: ['Q3_K', 256, 110],
  12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176],
  14: ['Q6_K', 256, 210],
  15: ['Q8_K', 256, 292],
  16: ['IQ2_XXS', 256, 66],
  17: ['IQ2_XS', 256, 74],
  18: ['IQ3_XXS', 256, 98],
  19: ['IQ1_S', 256, 50],
  20: ['IQ4_NL', 32, 18],
  21: ['IQ3_S', 256, 110],
  22: ['IQ2_S', 256, 82],
  23: ['IQ4_XS', 256, 136],
  24: ['I8', 1, 1],
  25: ['I16', 1, 2],
  26: ['I32', 1, 4],
  27: ['I64', 1, 8],
  28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 56],
  30: ['BF16', 1, 2],
  34: ['TQ1_0', 256, 54],
  35: ['TQ2_0', 256, 66],
  39: ['MXFP4', 32, 17],
};

/** ggml type ids this reader can turn into host tensors. */
const READABLE: Record<number, DType> = { 0: 'float32', 1: 'float16', 30: 'bfloat16', 26: 'int32' };
const WRITABLE: Record<DType, number | undefined> = {
  float32: 0,
  float16: 1,
  bfloat16: 30,
  int32: 26,
  bool: undefined,
};

export function ggmlTypeName(type: number): string {
  return GGML_TYPES[type]?.[0] ?? `unknown type ${type}`;
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml type id and name ("F16", "Q4_0", ...). */
  type: number;
  typeName: string;
  /** Dims as stored: innermost (ne0, columns) first. */
  dims: number[];
  /** Row-major shape (dims reversed). */
  shape: number[];
  /** Absolute byte offset in the file, and byte size (undefined for unknown types). */
  offset: number;
  byteSize: number | undefined;
}

export interface GgufFile {
  readonly file: string;
  readonly version: number;
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Value type of each metadata key (arrays: "ARRAY<ITEM>"). */
  readonly metadataTypes: ReadonlyMap<string, string>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  /** Read one tensor (row-major shape). Quantized types are an error naming the type and tensor. */
  read(name: string, options?: { dtype?: FloatDType }): Promise<HostTensor>;
  close(): Promise<void>;
}

async function readString(r: ChunkedReader, what: string): Promise<string> {
  const len = await r.u64Number(`${what} length`);
  if (r.pos + len > r.fileSize) {
    throw new FormatError(
      r.file,
      `truncated: ${what} at byte ${r.pos} has length ${len} but the file has ${r.fileSize} bytes`,
    );
  }
  return decodeUtf8(await r.bytes(len, what), r.file, what);
}

const MIN_SIZE: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  8: 8,
  9: 12,
  10: 8,
  11: 8,
  12: 8,
};

async function readValue(
  r: ChunkedReader,
  type: number,
  what: string,
): Promise<{ value: GgufValue; typeName: string }> {
  switch (type) {
    case 0:
      return { value: await r.u8(what), typeName: 'UINT8' };
    case 1:
      return { value: await r.i8(what), typeName: 'INT8' };
    case 2:
      return { value: await r.u16(what), typeName: 'UINT16' };
    case 3:
      return { value: await r.i16(what), typeName: 'INT16' };
    case 4:
      return { value: await r.u32(what), typeName: 'UINT32' };
    case 5:
      return { value: await r.i32(what), typeName: 'INT32' };
    case 6:
      return { value: await r.f32(what), typeName: 'FLOAT32' };
    case 7: {
      const b = await r.u8(what);
      if (b > 1) throw new FormatError(r.file, `${what}: BOOL value ${b} at byte ${r.pos - 1} is not 0 or 1`);
      return { value: b === 1, typeName: 'BOOL' };
    }
    case 8:
      return { value: await readString(r, what), typeName: 'STRING' };
    case 9: {
      const itemType = await r.u32(`${what} array item type`);
      if (!(itemType in MIN_SIZE)) {
        throw new FormatError(r.file, `${what}: unknown array item type ${itemType} at byte ${r.pos - 4}`);
      }
      const count = await r.u64Number(`${what} array length`);
      if (count * MIN_SIZE[itemType]! > r.fileSize - r.pos) {
        throw new FormatError(
          r.file,
          `truncated: ${what} is an array of ${count} ${VALUE_TYPE_NAMES[itemType]} but only ${r.fileSize - r.pos} bytes remain`,
        );
      }
      const values: GgufValue[] = new Array(count);
      let inner = VALUE_TYPE_NAMES[itemType]!;
      for (let k = 0; k < count; k++) {
        const v = await readValue(r, itemType, `${what}[${k}]`);
        values[k] = v.value;
        inner = v.typeName;
      }
      return { value: values, typeName: `ARRAY<${inner}>` };
    }
    case 10:
      return { value: await r.u64(what), typeName: 'UINT64' };
    case 11:
      return { value: await r.i64(what), typeName: 'INT64' };
    case 12:
      return { value: await r.f64(what), typeName: 'FLOAT64' };
    default:
      throw new FormatError(r.file, `${what}: unknown GGUF value type ${type} at byte ${r.pos - 4}`);
  }
}

/** Open a GGUF file: parse and validate metadata and tensor infos; tensors are read on demand. */
export async function openGguf(file: string): Promise<GgufFile> {
  assertLittleEndianHost(file);
  const { fh, size } = await openForRead(file);
  try {
    const r = new ChunkedReader(fh, file, size);
    if (size < 4) throw new FormatError(file, `truncated: ${size} bytes, not a GGUF file`);
    const magic = await r.u32('magic');
    if (magic !== GGUF_MAGIC) {
      const got = Buffer.from(new Uint32Array([magic]).buffer).toString('latin1');
      throw new FormatError(
        file,
        `bad magic ${JSON.stringify(got)} (0x${magic.toString(16)}); expected "GGUF" — not a GGUF file`,
      );
    }
    const version = await r.u32('version');
    if (version !== 2 && version !== 3) {
      throw new FormatError(file, `GGUF version ${version} is not supported (only 2 and 3)`);
    }
    const tensorCount = await r.u64Number('tensor_count');
    const kvCount = await r.u64Number('metadata_kv_count');
    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, string>();
    for (let k = 0; k < kvCount; k++) {
      const key = await readString(r, `metadata key #${k}`);
      const type = await r.u32(`metadata ${key} type`);
      const { value, typeName } = await readValue(r, type, `metadata ${key}`);
      if (metadata.has(key)) throw new FormatError(file, `metadata key ${key} appears twice`);
      metadata.set(key, value);
      metadataTypes.set(key, typeName);
    }
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (metadata.has('general.alignment')) {
      const a = metadata.get('general.alignment');
      if (typeof a !== 'number' || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
        throw new FormatError(file, `general.alignment must be a positive power of two, got ${String(a)}`);
      }
      alignment = a;
    }
    const infos: GgufTensorInfo[] = [];
    for (let k = 0; k < tensorCount; k++) {
      const name = await readString(r, `tensor info #${k} name`);
      const nDims = await r.u32(`tensor ${name} n_dims`);
      if (nDims > 4) throw new FormatError(file, `tensor ${name} has ${nDims} dims; GGUF allows at most 4`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(await r.u64Number(`tensor ${name} dim ${d}`));
      const type = await r.u32(`tensor ${name} type`);
      const rel = await r.u64Number(`tensor ${name} offset`);
      if (rel % alignment !== 0) {
        throw new FormatError(
          file,
          `tensor ${name} offset ${rel} is not a multiple of the alignment ${alignment}`,
        );
      }
      const t = GGML_TYPES[type];
      const n = sizeOf(dims);
      let byteSize: number | undefined;
      if (t) {
        if (dims.length > 0 && dims[0]! % t[1] !== 0) {
          throw new FormatError(
            file,
            `tensor ${name}: ${t[0]} needs ne0 (${dims[0]}) to be a multiple of its block size ${t[1]}`,
          );
        }
        byteSize = (n / t[1]) * t[2];
      }
      infos.push({
        name,
        type,
        typeName: ggmlTypeName(type),
        dims,
        shape: dims.slice().reverse(),
        offset: rel,
        byteSize,
      });
    }
    const dataOffset = tensorCount === 0 ? r.pos : Math.ceil(r.pos / alignment) * alignment;
    const tensors = new Map<string, GgufTensorInfo>();
    for (const t of infos) {
      if (tensors.has(t.name)) throw new FormatError(file, `tensor ${t.name} is listed twice`);
      t.offset += dataOffset;
      if (t.byteSize !== undefined && t.offset + t.byteSize > size) {
        throw new FormatError(
          file,
          `truncated: tensor ${t.name} (${t.typeName} [${t.dims.join(', ')}]) needs bytes ${t.offset}..${t.offset + t.byteSize} ` +
            `but the file has ${size} bytes`,
        );
      }
      tensors.set(t.name, t);
    }
    const sorted = infos.filter((t) => t.byteSize !== undefined).sort((a, b) => a.offset - b.offset);
    for (let k = 1; k < sorted.length; k++) {
      const a = sorted[k - 1]!;
      const b = sorted[k]!;
      if (a.offset + a.byteSize! > b.offset)
        throw new FormatError(file, `tensors ${a.name} and ${b.name} overlap`);
    }
    return {
      file,
      version,
      alignment,
      dataOffset,
      metadata,
      metadataTypes,
      tensors,
      ...tensorFileReader(fh, file, tensors, (name, info) => {
        const dtype = READABLE[info.type];
        if (dtype === undefined) {
          throw new FormatError(
            file,
            `tensor ${name} has ggml type ${info.typeName}; only F32, F16, BF16 and I32 can be read ` +
              '(quantized GGUF files are not supported: use an F16/BF16/F32 export)',
          );
        }
        return { dtype, shape: info.shape, offset: info.offset, byteLength: info.byteSize! };
      }),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Read only the metadata and tensor infos of a GGUF file. */
export async function readGgufInfo(
  file: string,
): Promise<
  Pick<GgufFile, 'file' | 'version' | 'alignment' | 'dataOffset' | 'metadata' | 'metadataTypes' | 'tensors'>
> {
  const g = await openGguf(file);
  await g.close();
  const { version, alignment, dataOffset, metadata, metadataTypes, tensors } = g;
  return { file, version, alignment, dataOffset, metadata, metadataTypes, tensors };
}

// ---------------------------------------------------------------------------------------------
// LLaMA mapping

function metaNumber(g: Pick<GgufFile, 'file' | 'metadata'>, key: string): number | undefined {
  const v = g.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new FormatError(g.file, `metadata ${key} = ${v} is too large`);
    return Number(v);
  }
  if (typeof v !== 'number')
    throw new FormatError(g.file, `metadata ${key} must be a number, got ${describeValue(v)}`);
  return v;
}

function describeValue(v: GgufValue): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** A number or (pruned models) a per-layer array of numbers. */
function metaNumberOrArray(
  g: Pick<GgufFile, 'file' | 'metadata'>,
  key: string,
  layers: number,
): { value: number; perLayer?: number[] } | undefined {
  const v = g.metadata.get(key);
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    const nums = v.map((x) => (typeof x === 'bigint' ? Number(x) : x));
    if (!nums.every((x): x is number => typeof x === 'number')) {
      throw new FormatError(g.file, `metadata ${key} must be a number or an array of numbers`);
    }
    if (nums.length !== layers) {
      throw new FormatError(
        g.file,
        `metadata ${key} has ${nums.length} entries but block_count is ${layers}`,
      );
    }
    const allSame = nums.every((x) => x === nums[0]);
    return allSame ? { value: nums[0]! } : { value: Math.max(...nums), perLayer: nums };
  }
  return { value: metaNumber(g, key)! };
}

/** LlamaConfig from GGUF llama.* metadata (tied embeddings are decided by loadGguf from the tensors). */
export function ggufLlamaConfig(g: Pick<GgufFile, 'file' | 'metadata' | 'tensors'>): LlamaConfig {
  const file = g.file;
  const arch = g.metadata.get('general.architecture');
  if (arch !== 'llama') {
    throw new FormatError(
      file,
      `general.architecture is ${arch === undefined ? 'missing' : describeValue(arch)}; only "llama" is supported`,
    );
  }
  const req = (key: string): number => {
    const v = metaNumber(g, key);
    if (v === undefined) throw new FormatError(file, `required metadata ${key} is missing`);
    return v;
  };
  const expert = metaNumber(g, 'llama.expert_count') ?? 0;
  if (expert > 0)
    throw new FormatError(
      file,
      `llama.expert_count is ${expert}; mixture-of-experts models are not supported`,
    );
  const ropeType = g.metadata.get('llama.rope.scaling.type');
  if (ropeType !== undefined && ropeType !== 'none') {
    throw new FormatError(file, `llama.rope.scaling.type ${describeValue(ropeType)} is not supported`);
  }
  if (g.tensors.has('rope_freqs.weight')) {
    throw new FormatError(
      file,
      'tensor rope_freqs.weight (Llama 3.1 RoPE frequency factors) is not supported',
    );
  }
  const layers = req('llama.block_count');
  const hidden = req('llama.embedding_length');
  const heads = metaNumberOrArray(g, 'llama.attention.head_count', layers);
  if (!heads) throw new FormatError(file, 'required metadata llama.attention.head_count is missing');
  const kv = metaNumberOrArray(g, 'llama.attention.head_count_kv', layers) ?? heads;
  const ff = metaNumberOrArray(g, 'llama.feed_forward_length', layers);
  if (!ff) throw new FormatError(file, 'required metadata llama.feed_forward_length is missing');
  let headDim = metaNumber(g, 'llama.attention.key_length');
  const valueLen = metaNumber(g, 'llama.attention.value_length');
  if (headDim === undefined) {
    if (hidden % heads.value !== 0) {
      throw new FormatError(
        file,
        `llama.embedding_length ${hidden} is not divisible by llama.attention.head_count ${heads.value} and llama.attention.key_length is absent`,
      );
    }
    headDim = hidden / heads.value;
  }
  if (valueLen !== undefined && valueLen !== headDim) {
    throw new FormatError(
      file,
      `llama.attention.value_length ${valueLen} differs from key_length ${headDim}; not supported`,
    );
  }
  const ropeDims = metaNumber(g, 'llama.rope.dimension_count');
  if (ropeDims !== undefined && ropeDims !== headDim) {
    throw new FormatError(
      file,
      `llama.rope.dimension_count ${ropeDims} differs from the head size ${headDim} (partial RoPE is not supported)`,
    );
  }
  const tokens = g.metadata.get('tokenizer.ggml.tokens');
  const emb = g.tensors.get('token_embd.weight');
  const vocab =
    metaNumber(g, 'llama.vocab_size') ?? (Array.isArray(tokens) ? tokens.length : undefined) ?? emb?.shape[0];
  if (vocab === undefined)
    throw new FormatError(
      file,
      'cannot tell the vocabulary size (no llama.vocab_size, tokens or token_embd)',
    );
  const config: LlamaConfig = {
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: ff.value,
    numHiddenLayers: layers,
    numAttentionHeads: heads.value,
    numKeyValueHeads: kv.value,
    headDim,
    rmsNormEps: req('llama.attention.layer_norm_rms_epsilon'),
    ropeTheta: metaNumber(g, 'llama.rope.freq_base') ?? 10000,
    maxPositionEmbeddings: metaNumber(g, 'llama.context_length') ?? 2048,
    tieWordEmbeddings: !g.tensors.has('output.weight'),
    bosTokenId: metaNumber(g, 'tokenizer.ggml.bos_token_id') ?? 1,
    eosTokenId: metaNumber(g, 'tokenizer.ggml.eos_token_id') ?? 2,
  };
  // float32 metadata: give eps the float32 value's shortest decimal (1e-5 rather than 9.99999974737875e-6).
  config.rmsNormEps = Number(config.rmsNormEps.toPrecision(7));
  if (heads.perLayer || kv.perLayer) {
    config.layerHeadNum = heads.perLayer ?? new Array(layers).fill(heads.value);
    config.layerKvHeadNum = kv.perLayer ?? new Array(layers).fill(kv.value);
  }
  if (ff.perLayer) config.layerInterSize = ff.perLayer;
  validateLlamaConfig(config, file);
  return config;
}

const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};
const GLOBAL_NAMES: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};

/** HF tensor name for a GGUF llama tensor name, or undefined when it is not one. */
export function ggufToHfName(name: string): string | undefined {
  if (name in GLOBAL_NAMES) return GLOBAL_NAMES[name];
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(name);
  if (!m) return undefined;
  const part = LAYER_NAMES[m[2]!];
  return part ? `model.layers.${m[1]}.${part}.weight` : undefined;
}

/** GGUF tensor name for an HF llama tensor name, or undefined. */
export function hfToGgufName(name: string): string | undefined {
  for (const [g, h] of Object.entries(GLOBAL_NAMES)) if (h === name) return g;
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
  if (!m) return undefined;
  for (const [g, h] of Object.entries(LAYER_NAMES)) if (h === m[2]) return `blk.${m[1]}.${g}.weight`;
  return undefined;
}

export interface LoadGgufOptions {
  /** Convert floating-point tensors to this dtype while reading. Default: keep (F16 stays float16). */
  dtype?: FloatDType;
}

/** Load a LLaMA GGUF file as a Checkpoint with HF names, HF shapes and HF (rotate_half) q/k rows. */
export async function loadGguf(file: string, options: LoadGgufOptions = {}): Promise<Checkpoint> {
  const g = await openGguf(file);
  try {
    const names = new Map<string, string>();
    for (const info of g.tensors.values()) {
      const hf = ggufToHfName(info.name);
      if (!hf) throw new FormatError(file, `tensor ${info.name} is not a LLaMA tensor this reader knows`);
      if (!(info.type in READABLE) || info.type === 26) {
        throw new FormatError(
          file,
          `tensor ${info.name} has ggml type ${info.typeName}; only F32, F16 and BF16 weights are supported ` +
            '(quantized GGUF files cannot be loaded: use an F16/BF16/F32 export)',
        );
      }
      names.set(info.name, hf);
    }
    const config = ggufLlamaConfig(g);
    const tensors = new Map<string, HostTensor>();
    const dtypes: string[] = [];
    for (const [gname, hf] of names) {
      let t = await g.read(gname);
      dtypes.push(g.tensors.get(gname)!.typeName);
      const m = /^model\.layers\.(\d+)\.self_attn\.([qk])_proj\.weight$/.exec(hf);
      if (m && t.shape.length === 2) {
        const d = layerDims(config, Number(m[1]));
        const heads = m[2] === 'q' ? d.heads : d.kvHeads;
        if (t.shape[0] === heads * config.headDim) {
          t = {
            ...t,
            data: permuteRopeRows(
              t.data as Float32Array | Uint16Array,
              heads,
              config.headDim,
              t.shape[1]!,
              true,
            ),
          };
        }
        // A wrong shape is reported by the validation below.
      }
      tensors.set(hf, castFloatTensor(t, options.dtype));
    }
    validateCheckpointTensors(file, config, tensors);
    const ordered = new Map<string, HostTensor>();
    for (const name of expectedTensorShapes(config).keys()) ordered.set(name, tensors.get(name)!);
    return { config, tensors: ordered, format: 'gguf', sourceDtype: describeSourceDtypes(dtypes) };
  } finally {
    await g.close();
  }
}

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
      throw new FormatError(file, `${key} must be an array of ${n} numbers (one per token)`);
    }
    out.set(v as number[]);
    return out;
  };
  const scores = numArray('tokenizer.ggml.scores', (k) => new Float32Array(k), 0) as Float32Array;
  const tokenTypes = numArray('tokenizer.ggml.token_type', (k) => new Int32Array(k), 1) as Int32Array;
  const id = (key: string): number | undefined => {
    const v = metaNumber(g, key);
    if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v < n)) {
      throw new FormatError(file, `${key} = ${v} is not a token id (vocabulary has ${n})`);
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

// ---------------------------------------------------------------------------------------------
// Writer

/** A metadata entry for the writer: the value type is explicit, as GGUF needs it. */
export type GgufWriteValue =
  | {
      type: 'UINT8' | 'INT8' | 'UINT16' | 'INT16' | 'UINT32' | 'INT32' | 'FLOAT32' | 'FLOAT64';
      value: number;
    }
  | { type: 'UINT64' | 'INT64'; value: bigint | number }
  | { type: 'BOOL'; value: boolean }
  | { type: 'STRING'; value: string }
  | {
      type: 'ARRAY';
      itemType: Exclude<keyof typeof GgufValueType, 'ARRAY'>;
      value: readonly (number | bigint | boolean | string)[];
    };

export interface GgufWriteTensor {
  name: string;
  /** Row-major (HF-style) tensor; written with reversed dims. */
  tensor?: HostTensor;
  /** Or raw bytes with an explicit ggml type and GGUF dims (innermost first), e.g. to build test files. */
  raw?: { type: number; dims: number[]; data: Uint8Array };
}

export interface GgufWriteOptions {
  version?: 2 | 3;
  /** general.alignment is written when it differs from 32. */
  alignment?: number;
}

class ByteSink {
  private chunks: Uint8Array[] = [];
  length = 0;
  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  num(
    kind: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64' | 'u64' | 'i64',
    v: number | bigint,
  ): void {
    const size = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, f64: 8, u64: 8, i64: 8 }[kind];
    const b = new Uint8Array(size);
    const dv = new DataView(b.buffer);
    switch (kind) {
      case 'u8':
        dv.setUint8(0, Number(v));
        break;
      case 'i8':
        dv.setInt8(0, Number(v));
        break;
      case 'u16':
        dv.setUint16(0, Number(v), true);
        break;
      case 'i16':
        dv.setInt16(0, Number(v), true);
        break;
      case 'u32':
        dv.setUint32(0, Number(v), true);
        break;
      case 'i32':
        dv.setInt32(0, Number(v), true);
        break;
      case 'f32':
        dv.setFloat32(0, Number(v), true);
        break;
      case 'f64':
        dv.setFloat64(0, Number(v), true);
        break;
      case 'u64':
        dv.setBigUint64(0, BigInt(v), true);
        break;
      case 'i64':
        dv.setBigInt64(0, BigInt(v), true);
        break;
    }
    this.push(b);
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.num('u64', b.length);
    this.push(b);
  }
  bytes(b: Uint8Array): void {
    this.push(b);
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const SCALAR_KIND = {
  UINT8: 'u8',
  INT8: 'i8',
  UINT16: 'u16',
  INT16: 'i16',
  UINT32: 'u32',
  INT32: 'i32',
  FLOAT32: 'f32',
  FLOAT64: 'f64',
  UINT64: 'u64',
  INT64: 'i64',
} as const;

function writeScalar(
  s: ByteSink,
  type: Exclude<keyof typeof GgufValueType, 'ARRAY'>,
  v: number | bigint | boolean | string,
): void {
  if (type === 'STRING') s.str(String(v));
  else if (type === 'BOOL') s.num('u8', v ? 1 : 0);
  else s.num(SCALAR_KIND[type], v as number | bigint);
}

/**
 * Write a GGUF file atomically. Metadata is written in the given order; tensors are laid out in
 * order, each aligned. Host tensors are written as F32 / F16 / BF16 / I32 with dims reversed.
 */
export async function writeGguf(
  file: string,
  metadata: ReadonlyArray<readonly [string, GgufWriteValue]>,
  tensors: readonly GgufWriteTensor[],
  options: GgufWriteOptions = {},
): Promise<void> {
  assertLittleEndianHost(file);
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const kvs = [...metadata];
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !kvs.some(([k]) => k === 'general.alignment')) {
    kvs.push(['general.alignment', { type: 'UINT32', value: alignment }]);
  }
  const parts = tensors.map((t) => {
    if (t.raw) return { name: t.name, ...t.raw };
    if (!t.tensor) throw new FormatError(file, `tensor ${t.name} has neither tensor nor raw data`);
    const type = WRITABLE[t.tensor.dtype];
    if (type === undefined)
      throw new FormatError(file, `tensor ${t.name}: dtype ${t.tensor.dtype} cannot be written to GGUF`);
    return { name: t.name, type, dims: [...t.tensor.shape].reverse(), data: dataBytes(t.tensor.data) };
  });
  const h = new ByteSink();
  h.num('u32', GGUF_MAGIC);
  h.num('u32', options.version ?? 3);
  h.num('u64', parts.length);
  h.num('u64', kvs.length);
  for (const [key, v] of kvs) {
    h.str(key);
    h.num('u32', GgufValueType[v.type]);
    if (v.type === 'ARRAY') {
      h.num('u32', GgufValueType[v.itemType]);
      h.num('u64', v.value.length);
      for (const x of v.value) writeScalar(h, v.itemType, x);
    } else {
      writeScalar(h, v.type, v.value);
    }
  }
  let off = 0;
  const offsets: number[] = [];
  for (const p of parts) {
    h.str(p.name);
    h.num('u32', p.dims.length);
    for (const d of p.dims) h.num('u64', d);
    h.num('u32', p.type);
    h.num('u64', off);
    offsets.push(off);
    off = Math.ceil((off + p.data.length) / alignment) * alignment;
  }
  const headerLen = parts.length ? Math.ceil(h.length / alignment) * alignment : h.length;
  h.bytes(new Uint8Array(headerLen - h.length));
  const header = h.concat();
  await writeFileAtomic(file, async (fh) => {
    await writeAll(fh, header);
    let pos = 0;
    for (let k = 0; k < parts.length; k++) {
      const p = parts[k]!;
      if (offsets[k]! > pos) await writeAll(fh, new Uint8Array(offsets[k]! - pos));
      await writeAll(fh, p.data);
      pos = offsets[k]! + p.data.length;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// LLaMA export

export interface SaveGgufOptions {
  /** Store 2-D weights as this dtype (norms are always F32, as llama.cpp expects). Default: as given. */
  dtype?: FloatDType;
  /** The vocabulary to embed (e.g. from SentencePieceTokenizer.toGgufTokenizerData()). */
  tokenizer?: GgufTokenizerData;
  /** general.name. */
  name?: string;
}

/**
 * Save a LLaMA checkpoint as GGUF v3 for llama.cpp: HF names -> GGUF names, q/k rows permuted to
 * llama.cpp's convention, dims reversed. Pruned per-layer sizes are written as per-layer arrays of
 * llama.attention.head_count / head_count_kv / feed_forward_length (which llama.cpp reads).
 * RoPE scaling cannot be expressed and is an error.
 */
export async function saveGguf(file: string, ckpt: Checkpoint, options: SaveGgufOptions = {}): Promise<void> {
  const c = ckpt.config;
  validateLlamaConfig(c, file);
  validateCheckpointTensors(file, c, ckpt.tensors);
  if (c.ropeScaling)
    throw new FormatError(file, 'cannot save as GGUF: RoPE scaling (llama3) is not supported by this writer');
  const L = c.numHiddenLayers;
  const perLayer = (arr: number[] | undefined, dflt: number): GgufWriteValue =>
    arr?.some((v) => v !== arr[0])
      ? { type: 'ARRAY', itemType: 'UINT32', value: arr }
      : { type: 'UINT32', value: arr?.[0] ?? dflt };
  const matDtype = options.dtype;
  const fileType =
    matDtype === 'float16' ? 1 : matDtype === 'bfloat16' ? 32 : matDtype === 'float32' ? 0 : undefined;
  const meta: [string, GgufWriteValue][] = [
    ['general.architecture', { type: 'STRING', value: 'llama' }],
    ['general.name', { type: 'STRING', value: options.name ?? 'llama' }],
    ['llama.vocab_size', { type: 'UINT32', value: c.vocabSize }],
    ['llama.context_length', { type: 'UINT32', value: c.maxPositionEmbeddings }],
    ['llama.embedding_length', { type: 'UINT32', value: c.hiddenSize }],
    ['llama.block_count', { type: 'UINT32', value: L }],
    ['llama.feed_forward_length', perLayer(c.layerInterSize, c.intermediateSize)],
    ['llama.rope.dimension_count', { type: 'UINT32', value: c.headDim }],
    ['llama.attention.head_count', perLayer(c.layerHeadNum, c.numAttentionHeads)],
    ['llama.attention.head_count_kv', perLayer(c.layerKvHeadNum, c.numKeyValueHeads)],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'FLOAT32', value: c.rmsNormEps }],
    ['llama.rope.freq_base', { type: 'FLOAT32', value: c.ropeTheta }],
  ];
  if (c.headDim * c.numAttentionHeads !== c.hiddenSize) {
    meta.push(['llama.attention.key_length', { type: 'UINT32', value: c.headDim }]);
    meta.push(['llama.attention.value_length', { type: 'UINT32', value: c.headDim }]);
  }
  if (fileType !== undefined) meta.push(['general.file_type', { type: 'UINT32', value: fileType }]);
  const tok = options.tokenizer;
  if (tok) {
    if (tok.tokens.length !== c.vocabSize) {
      throw new FormatError(
        file,
        `the tokenizer has ${tok.tokens.length} tokens but the model's vocabSize is ${c.vocabSize}`,
      );
    }
    meta.push(['tokenizer.ggml.model', { type: 'STRING', value: tok.model }]);
    meta.push(['tokenizer.ggml.tokens', { type: 'ARRAY', itemType: 'STRING', value: tok.tokens }]);
    meta.push(['tokenizer.ggml.scores', { type: 'ARRAY', itemType: 'FLOAT32', value: [...tok.scores] }]);
    meta.push([
      'tokenizer.ggml.token_type',
      { type: 'ARRAY', itemType: 'INT32', value: [...tok.tokenTypes] },
    ]);
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
  }
  const out: GgufWriteTensor[] = [];
  for (const [name, t0] of ckpt.tensors) {
    const gname = hfToGgufName(name)!;
    let t = castFloatTensor(t0, t0.shape.length === 1 ? 'float32' : matDtype);
    const m = /^model\.layers\.(\d+)\.self_attn\.([qk])_proj\.weight$/.exec(name);
    if (m) {
      const d = layerDims(c, Number(m[1]));
      const heads = m[2] === 'q' ? d.heads : d.kvHeads;
      t = {
        ...t,
        data: permuteRopeRows(t.data as Float32Array | Uint16Array, heads, c.headDim, t.shape[1]!, false),
      };
    }
    out.push({ name: gname, tensor: t });
  }
  await writeGguf(file, meta, out);
}
