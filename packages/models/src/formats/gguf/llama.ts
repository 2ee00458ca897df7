/**
 * GGUF <-> LLaMA checkpoints: llama.* metadata <-> LlamaConfig, GGUF tensor names <-> HF names, dims
 * reversed (GGUF [in, out] <-> HF [out, in]), and llama.cpp's q/k row permutation undone on load and
 * redone on save (its convert script applies the same adjacent-pair permutation as llama2.c).
 */
import { type FloatDType, isFloat, lazyTensor } from '@moreau/core';
import { type LlamaConfig, layerDims, validateLlamaConfig } from '../../llama/config.js';
import { permuteRopeRows } from '../../llama/rope.js';
import {
  type Checkpoint,
  checkLayerCount,
  describeSourceDtypes,
  type LoadCheckpointOptions,
  validateCheckpointTensors,
  validateSources,
} from '../checkpoint.js';
import { FormatError } from '../errors.js';
import { materializeTensors, type TensorSource } from '../stored.js';
import { castFloatTensor } from '../tensor.js';
import { describeValue, type GgufFile, metaNumber, openGguf, READABLE } from './read.js';
import { type GgufTokenizerData, ggufTokenizerMetadata } from './tokenizer.js';
import { type GgufWriteTensor, type GgufWriteValue, writeGguf } from './write.js';

/** A number or (pruned models) a per-layer array of numbers. */
function metaNumberOrArray(
  g: Pick<GgufFile, 'file' | 'metadata'>,
  key: string,
  layers: number,
): { value: number; perLayer?: number[] } | undefined {
  const v = g.metadata.get(key);
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    if (v.length !== layers) {
      throw new FormatError(g.file, `metadata ${key} has ${v.length} entries but block_count is ${layers}`, {
        field: key,
      });
    }
    const nums = v.map((x) => (typeof x === 'bigint' ? Number(x) : x));
    if (!nums.every((x): x is number => typeof x === 'number')) {
      throw new FormatError(g.file, `metadata ${key} must be a number or an array of numbers`);
    }
    if (nums.length !== layers) {
      throw new FormatError(
        g.file,
        `metadata ${key} has ${nums.length} entries but block_count is ${layers}`,
        {
          field: key,
        },
      );
    }
    let max = 0;
    for (const x of nums) if (x > max) max = x;
    const allSame = nums.every((x) => x === nums[0]);
    return allSame ? { value: nums[0]! } : { value: max, perLayer: nums };
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
  validateLlamaConfig(config, file, ggufFieldName);
  return config;
}

const GGUF_FIELDS: Partial<Record<keyof LlamaConfig, string>> = {
  vocabSize: 'llama.vocab_size',
  hiddenSize: 'llama.embedding_length',
  intermediateSize: 'llama.feed_forward_length',
  numHiddenLayers: 'llama.block_count',
  numAttentionHeads: 'llama.attention.head_count',
  numKeyValueHeads: 'llama.attention.head_count_kv',
  headDim: 'llama.attention.key_length',
  rmsNormEps: 'llama.attention.layer_norm_rms_epsilon',
  ropeTheta: 'llama.rope.freq_base',
  maxPositionEmbeddings: 'llama.context_length',
  bosTokenId: 'tokenizer.ggml.bos_token_id',
  eosTokenId: 'tokenizer.ggml.eos_token_id',
  layerHeadNum: 'llama.attention.head_count',
  layerKvHeadNum: 'llama.attention.head_count_kv',
  layerInterSize: 'llama.feed_forward_length',
};

/** The GGUF metadata key a LlamaConfig field comes from (for messages). */
function ggufFieldName(field: keyof LlamaConfig): string {
  return GGUF_FIELDS[field] ?? field;
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

/**
 * For a q_proj / k_proj weight: the row permutation between llama.cpp's RoPE layout and HF's
 * (`toHf`), or undefined for any other tensor or one of the wrong shape (left to the validation).
 */
function qkPermutation(
  hfName: string,
  shape: readonly number[],
  config: LlamaConfig,
  toHf: boolean,
): ((data: Float32Array | Uint16Array) => Float32Array | Uint16Array) | undefined {
  const m = /^model\.layers\.(\d+)\.self_attn\.([qk])_proj\.weight$/.exec(hfName);
  if (!m || shape.length !== 2) return undefined;
  const d = layerDims(config, Number(m[1]));
  const heads = m[2] === 'q' ? d.heads : d.kvHeads;
  if (shape[0] !== heads * config.headDim) return undefined;
  const cols = shape[1]!;
  return (data) => permuteRopeRows(data, heads, config.headDim, cols, toHf);
}

/**
 * Load a LLaMA GGUF file as a Checkpoint with HF names, HF shapes and HF (rotate_half) q/k rows.
 * Only the header is read at load; the tensors' data (with the q/k permutation and any dtype
 * conversion) is read now or lazily by `options.lazy`.
 */
export async function loadGguf(file: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const g = await openGguf(file);
  await g.close();
  const stamp = g.stamp;
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
  checkLayerCount(file, config, names.values(), file, ggufFieldName);
  const sources = new Map<string, TensorSource>();
  const dtypes: string[] = [];
  for (const [gname, hf] of names) {
    const info = g.tensors.get(gname)!;
    const transform = qkPermutation(hf, info.shape, config, true);
    sources.set(hf, {
      stored: {
        file,
        name: gname,
        dtype: READABLE[info.type]!,
        shape: info.shape,
        offset: info.offset,
        byteLength: info.byteSize,
        stamp,
      },
      recipe: { ...(transform ? { transform } : {}), ...(options.dtype ? { dtype: options.dtype } : {}) },
    });
    dtypes.push(info.typeName);
  }
  const ordered = validateSources(file, config, sources, ggufFieldName);
  const { tensors } = await materializeTensors(ordered, options.lazy);
  return { config, tensors, format: 'gguf', sourceDtype: describeSourceDtypes(dtypes) };
}

export interface SaveGgufOptions {
  /** Store 2-D weights as this dtype (norms are always F32, as llama.cpp expects). Default: as given. */
  dtype?: FloatDType;
  /** The vocabulary to embed (e.g. from SentencePieceTokenizer.toGgufTokenizerData()). */
  tokenizer?: GgufTokenizerData;
  /** general.name. */
  name?: string;
  /** Checked between tensors: an abort stops the write, leaving nothing behind. */
  signal?: AbortSignal;
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
    meta.push(...ggufTokenizerMetadata(tok));
  }
  // Each tensor converted and permuted when it is written (one at a time; lazy tensors stay unread).
  const out: GgufWriteTensor[] = [...ckpt.tensors].map(([name, t]) => {
    const to = t.shape.length === 1 ? 'float32' : matDtype;
    const dtype = to && isFloat(t.dtype) ? to : t.dtype;
    const permute = qkPermutation(name, t.shape, c, false);
    return {
      name: hfToGgufName(name)!,
      tensor: lazyTensor(t.shape, dtype, () => {
        const data = castFloatTensor(t, to).data;
        return permute ? permute(data as Float32Array | Uint16Array) : data;
      }),
    };
  });
  await writeGguf(file, meta, out, options.signal ? { signal: options.signal } : {});
}
