/**
 * Hugging Face config.json <-> LlamaConfig. Strict about anything that changes the computation
 * (unknown fields, hidden_act other than silu, biases, other RoPE scalings, quantization), liberal
 * about the bookkeeping fields transformers writes.
 */
import {
  canonicalLayerSizes,
  type Llama3RopeScaling,
  type LlamaConfig,
  validateLlamaConfig,
} from '../llama/config.js';
import { FormatError } from './errors.js';
import { isJsonObject, type JsonObject, readJsonFile } from './io.js';

const SNAKE: Record<keyof LlamaConfig, string> = {
  vocabSize: 'vocab_size',
  hiddenSize: 'hidden_size',
  intermediateSize: 'intermediate_size',
  numHiddenLayers: 'num_hidden_layers',
  numAttentionHeads: 'num_attention_heads',
  numKeyValueHeads: 'num_key_value_heads',
  headDim: 'head_dim',
  rmsNormEps: 'rms_norm_eps',
  ropeTheta: 'rope_theta',
  ropeScaling: 'rope_scaling',
  maxPositionEmbeddings: 'max_position_embeddings',
  tieWordEmbeddings: 'tie_word_embeddings',
  bosTokenId: 'bos_token_id',
  eosTokenId: 'eos_token_id',
  eosTokenIds: 'eos_token_id',
  layerHeadNum: 'layer_head_num',
  layerKvHeadNum: 'layer_kv_head_num',
  layerInterSize: 'layer_inter_size',
};

/** The HF (snake_case) name of a LlamaConfig field. */
export function hfFieldName(field: keyof LlamaConfig): string {
  return SNAKE[field];
}

/** Fields this parser reads and turns into LlamaConfig (or checks). */
const MODEL_FIELDS = new Set([
  'model_type',
  'architectures',
  ...Object.values(SNAKE),
  'rope_parameters',
  'hidden_act',
  'attention_bias',
  'mlp_bias',
]);

/**
 * Fields transformers writes that do not change a LLaMA's forward pass (generation defaults,
 * bookkeeping, training-only knobs). Accepted and ignored.
 */
const HARMLESS_FIELDS = new Set([
  'torch_dtype',
  'dtype',
  'transformers_version',
  'use_cache',
  'pad_token_id',
  'sep_token_id',
  'decoder_start_token_id',
  'initializer_range',
  'pretraining_tp',
  'attention_dropout',
  'name_or_path',
  'return_dict',
  'output_hidden_states',
  'output_attentions',
  'torchscript',
  'use_bfloat16',
  'tf_legacy_loss',
  'pruned_heads',
  'chunk_size_feed_forward',
  'is_encoder_decoder',
  'is_decoder',
  'cross_attention_hidden_size',
  'add_cross_attention',
  'tie_encoder_decoder',
  'max_length',
  'min_length',
  'do_sample',
  'early_stopping',
  'num_beams',
  'num_beam_groups',
  'diversity_penalty',
  'temperature',
  'top_k',
  'top_p',
  'typical_p',
  'repetition_penalty',
  'length_penalty',
  'no_repeat_ngram_size',
  'encoder_no_repeat_ngram_size',
  'bad_words_ids',
  'num_return_sequences',
  'output_scores',
  'return_dict_in_generate',
  'forced_bos_token_id',
  'forced_eos_token_id',
  'remove_invalid_values',
  'exponential_decay_length_penalty',
  'suppress_tokens',
  'begin_suppress_tokens',
  'finetuning_task',
  'id2label',
  'label2id',
  'tokenizer_class',
  'prefix',
  'task_specific_params',
  'problem_type',
]);

/**
 * Parse a config.json object into a LlamaConfig. `file` names the source in errors.
 * Defaults follow transformers' LlamaConfig for optional fields (num_key_value_heads = heads,
 * head_dim = hidden / heads, rms_norm_eps 1e-6, rope_theta 10000, max_position_embeddings 2048,
 * tie_word_embeddings false, bos 1, eos 2); the five size fields are required.
 */
export function parseHfConfig(json: unknown, file = 'config.json'): LlamaConfig {
  const fail = (detail: string): never => {
    throw new FormatError(file, detail);
  };
  if (!isJsonObject(json)) return fail('expected a JSON object');
  for (const key of Object.keys(json)) {
    if (key.startsWith('_') || MODEL_FIELDS.has(key) || HARMLESS_FIELDS.has(key)) continue;
    if (key === 'quantization_config') fail('quantized checkpoints (quantization_config) are not supported');
    fail(
      `unknown field ${JSON.stringify(key)}: this reader only understands LLaMA configs and will not guess`,
    );
  }
  if (json.model_type !== 'llama') {
    fail(`model_type must be "llama", got ${JSON.stringify(json.model_type)}`);
  }
  if (json.architectures !== undefined && json.architectures !== null) {
    const a = json.architectures;
    if (!Array.isArray(a) || !a.every((x) => typeof x === 'string'))
      fail('architectures must be a list of strings');
    const bad = (a as string[]).filter((x) => x !== 'LlamaForCausalLM');
    if (bad.length > 0) fail(`architectures lists ${bad.join(', ')}; only LlamaForCausalLM is supported`);
  }
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') fail(`hidden_act ${JSON.stringify(act)} is not supported (LLaMA uses "silu")`);
  for (const k of ['attention_bias', 'mlp_bias']) {
    const v = json[k];
    if (v !== undefined && v !== null && v !== false) {
      fail(`${k} must be false (biases are not supported), got ${JSON.stringify(v)}`);
    }
  }
  if (
    json.pretraining_tp !== undefined &&
    !(Number.isInteger(json.pretraining_tp) && Number(json.pretraining_tp) >= 1)
  ) {
    fail(`pretraining_tp must be a positive integer, got ${JSON.stringify(json.pretraining_tp)}`);
  }

  const reqInt = (k: string): number => {
    const v = json[k];
    if (v === undefined || v === null) return fail(`required field ${k} is missing`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      return fail(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const optNum = (k: string, dflt: number): number => {
    const v = json[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v))
      return fail(`${k} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const optIntList = (k: string): number[] | undefined => {
    const v = json[k];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number'))
      return fail(`${k} must be a list of integers`);
    return v as number[];
  };

  const vocabSize = reqInt('vocab_size');
  const hiddenSize = reqInt('hidden_size');
  const intermediateSize = reqInt('intermediate_size');
  const numHiddenLayers = reqInt('num_hidden_layers');
  const numAttentionHeads = reqInt('num_attention_heads');
  const numKeyValueHeads =
    json.num_key_value_heads === undefined || json.num_key_value_heads === null
      ? numAttentionHeads
      : reqInt('num_key_value_heads');
  let headDim: number;
  if (json.head_dim === undefined || json.head_dim === null) {
    if (hiddenSize % numAttentionHeads !== 0) {
      fail(
        `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numAttentionHeads}) ` +
          'and head_dim is not given',
      );
    }
    headDim = hiddenSize / numAttentionHeads;
  } else {
    headDim = reqInt('head_dim');
  }

  let ropeTheta = optNum('rope_theta', 10000);
  let ropeScaling: Llama3RopeScaling | undefined;
  const parseRope = (field: string, r: JsonObject, allowTheta: boolean): void => {
    const type = r.rope_type ?? r.type ?? 'default';
    for (const key of Object.keys(r)) {
      const known =
        key === 'rope_type' ||
        key === 'type' ||
        (allowTheta && key === 'rope_theta') ||
        (type === 'llama3' &&
          ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'].includes(
            key,
          ));
      if (!known) fail(`${field}.${key} is not understood for rope type ${JSON.stringify(type)}`);
    }
    if (allowTheta && r.rope_theta !== undefined) {
      if (typeof r.rope_theta !== 'number') fail(`${field}.rope_theta must be a number`);
      if (json.rope_theta !== undefined && json.rope_theta !== null && json.rope_theta !== r.rope_theta) {
        fail(`rope_theta (${json.rope_theta}) contradicts ${field}.rope_theta (${r.rope_theta})`);
      }
      ropeTheta = r.rope_theta as number;
    }
    if (type === 'default') return;
    if (type !== 'llama3') {
      fail(`${field} type ${JSON.stringify(type)} is not supported (only "llama3" scaling or none)`);
    }
    const num = (k: string): number => {
      const v = r[k];
      if (typeof v !== 'number') return fail(`${field}.${k} must be a number, got ${JSON.stringify(v)}`);
      return v;
    };
    ropeScaling = {
      type: 'llama3',
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor'),
      highFreqFactor: num('high_freq_factor'),
      originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
    };
  };
  if (json.rope_scaling !== undefined && json.rope_scaling !== null) {
    if (!isJsonObject(json.rope_scaling)) fail('rope_scaling must be an object or null');
    parseRope('rope_scaling', json.rope_scaling as JsonObject, false);
  }
  if (json.rope_parameters !== undefined && json.rope_parameters !== null) {
    if (!isJsonObject(json.rope_parameters)) fail('rope_parameters must be an object or null');
    if (ropeScaling) fail('both rope_scaling and rope_parameters are given');
    parseRope('rope_parameters', json.rope_parameters as JsonObject, true);
  }

  const tie = json.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') fail(`tie_word_embeddings must be true or false, got ${JSON.stringify(tie)}`);

  const bos = json.bos_token_id ?? 1;
  if (typeof bos !== 'number') fail(`bos_token_id must be an integer, got ${JSON.stringify(bos)}`);
  let eosTokenId: number;
  let eosTokenIds: number[] | undefined;
  const eos = json.eos_token_id ?? 2;
  if (Array.isArray(eos)) {
    if (eos.length === 0 || !eos.every((x) => typeof x === 'number')) {
      fail('eos_token_id must be an integer or a non-empty list of integers');
    }
    eosTokenIds = eos as number[];
    eosTokenId = eosTokenIds[0]!;
  } else if (typeof eos === 'number') {
    eosTokenId = eos;
  } else {
    return fail(`eos_token_id must be an integer or a list of integers, got ${JSON.stringify(eos)}`);
  }

  const config: LlamaConfig = {
    vocabSize,
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: optNum('rms_norm_eps', 1e-6),
    ropeTheta,
    ...(ropeScaling ? { ropeScaling } : {}),
    maxPositionEmbeddings: json.max_position_embeddings == null ? 2048 : reqInt('max_position_embeddings'),
    tieWordEmbeddings: tie as boolean,
    bosTokenId: bos as number,
    eosTokenId,
    ...(eosTokenIds ? { eosTokenIds } : {}),
  };
  const lh = optIntList('layer_head_num');
  const lkv = optIntList('layer_kv_head_num');
  const li = optIntList('layer_inter_size');
  if (lh) config.layerHeadNum = lh;
  if (lkv) config.layerKvHeadNum = lkv;
  if (li) config.layerInterSize = li;
  validateLlamaConfig(config, file, hfFieldName);
  return canonicalLayerSizes(config);
}

export interface HfConfigJsonOptions {
  /** Written as torch_dtype (what the weights are stored as). Default "float32". */
  torchDtype?: 'float32' | 'float16' | 'bfloat16';
}

/**
 * LlamaConfig -> config.json object (transformers' LlamaForCausalLM layout), with the layer sizes in
 * canonical form (canonicalLayerSizes): num_attention_heads, num_key_value_heads and
 * intermediate_size are the real sizes when every layer has the same (the folder then loads in stock
 * transformers and transformers.js); a size that differs between layers is written as its largest
 * value plus the per-layer key layer_head_num / layer_kv_head_num / layer_inter_size. head_dim is
 * always written so it never has to be inferred (hidden_size / num_attention_heads is wrong once
 * heads are pruned).
 */
export function hfConfigToJson(
  source: LlamaConfig,
  options: HfConfigJsonOptions = {},
): Record<string, unknown> {
  validateLlamaConfig(source, 'config', (f) => f);
  const config = canonicalLayerSizes(source);
  const rs = config.ropeScaling;
  const out: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numHiddenLayers,
    num_attention_heads: config.numAttentionHeads,
    num_key_value_heads: config.numKeyValueHeads,
    head_dim: config.headDim,
    hidden_act: 'silu',
    max_position_embeddings: config.maxPositionEmbeddings,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: rs
      ? {
          rope_type: 'llama3',
          factor: rs.factor,
          low_freq_factor: rs.lowFreqFactor,
          high_freq_factor: rs.highFreqFactor,
          original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
        }
      : null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    pretraining_tp: 1,
    initializer_range: 0.02,
    tie_word_embeddings: config.tieWordEmbeddings,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds ? [...config.eosTokenIds] : config.eosTokenId,
    use_cache: true,
    torch_dtype: options.torchDtype ?? 'float32',
  };
  if (config.layerHeadNum) out.layer_head_num = [...config.layerHeadNum];
  if (config.layerKvHeadNum) out.layer_kv_head_num = [...config.layerKvHeadNum];
  if (config.layerInterSize) out.layer_inter_size = [...config.layerInterSize];
  return out;
}

/** Read and parse a config.json file. */
export async function readHfConfig(file: string): Promise<LlamaConfig> {
  return parseHfConfig((await readJsonFile(file)).json, file);
}
