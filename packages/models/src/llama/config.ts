/**
 * The LLaMA model description: its config (HF LlamaConfig fields in camelCase, plus the per-layer
 * sizes of pruned models), the per-layer dimensions, and the tensors (HF names, [out, in] row-major)
 * a model with that config has.
 */
import { brief, FormatError } from '../formats/errors.js';

/** Llama-3 style RoPE frequency scaling (HF rope_scaling with rope_type "llama3"). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** HF LlamaConfig fields in camelCase. headDim is always filled in (hidden / heads when absent). */
export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: Llama3RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  /** The (first) end-of-sequence id. */
  eosTokenId: number;
  /** All end-of-sequence ids when the source lists several (Llama 3 instruct); eosTokenId is the first. */
  eosTokenIds?: number[];
  /** Pruned models: query heads per layer (each a multiple of that layer's KV heads). */
  layerHeadNum?: number[];
  /** Pruned models: KV heads per layer. */
  layerKvHeadNum?: number[];
  /** Pruned models: MLP width per layer. */
  layerInterSize?: number[];
}

/** Per-layer dimensions, with the per-layer arrays applied. */
export interface LayerDims {
  heads: number;
  kvHeads: number;
  intermediate: number;
}

export function layerDims(config: LlamaConfig, layer: number): LayerDims {
  return {
    heads: config.layerHeadNum?.[layer] ?? config.numAttentionHeads,
    kvHeads: config.layerKvHeadNum?.[layer] ?? config.numKeyValueHeads,
    intermediate: config.layerInterSize?.[layer] ?? config.intermediateSize,
  };
}

/** True when the config has per-layer sizes that differ between layers or from the ordinary fields. */
export function isPruned(config: LlamaConfig): boolean {
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const d = layerDims(config, i);
    if (
      d.heads !== config.numAttentionHeads ||
      d.kvHeads !== config.numKeyValueHeads ||
      d.intermediate !== config.intermediateSize
    ) {
      return true;
    }
  }
  return false;
}

export const layerPrefix = (i: number): string => `model.layers.${i}`;

/** Every tensor a checkpoint with this config must have, with its shape, in a canonical order. */
export function expectedTensorShapes(config: LlamaConfig): Map<string, number[]> {
  const h = config.hiddenSize;
  const hd = config.headDim;
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [config.vocabSize, h]);
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const d = layerDims(config, i);
    const p = layerPrefix(i);
    m.set(`${p}.input_layernorm.weight`, [h]);
    m.set(`${p}.self_attn.q_proj.weight`, [d.heads * hd, h]);
    m.set(`${p}.self_attn.k_proj.weight`, [d.kvHeads * hd, h]);
    m.set(`${p}.self_attn.v_proj.weight`, [d.kvHeads * hd, h]);
    m.set(`${p}.self_attn.o_proj.weight`, [h, d.heads * hd]);
    m.set(`${p}.post_attention_layernorm.weight`, [h]);
    m.set(`${p}.mlp.gate_proj.weight`, [d.intermediate, h]);
    m.set(`${p}.mlp.up_proj.weight`, [d.intermediate, h]);
    m.set(`${p}.mlp.down_proj.weight`, [h, d.intermediate]);
  }
  m.set('model.norm.weight', [h]);
  if (!config.tieWordEmbeddings) m.set('lm_head.weight', [config.vocabSize, h]);
  return m;
}

function isPositiveInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
}

/**
 * Check a LlamaConfig for internal consistency. `file` names where it came from; `names` maps a
 * camelCase field to the name to print (HF snake_case when read from config.json).
 */
export function validateLlamaConfig(
  config: LlamaConfig,
  file: string,
  names: (field: keyof LlamaConfig) => string = (f) => f,
): void {
  const fail = (detail: string): never => {
    throw new FormatError(file, detail);
  };
  const ints: (keyof LlamaConfig)[] = [
    'vocabSize',
    'hiddenSize',
    'intermediateSize',
    'numHiddenLayers',
    'numAttentionHeads',
    'numKeyValueHeads',
    'headDim',
    'maxPositionEmbeddings',
  ];
  for (const k of ints) {
    if (!isPositiveInt(config[k])) fail(`${names(k)} must be a positive integer, got ${brief(config[k])}`);
  }
  for (const k of ['bosTokenId', 'eosTokenId'] as const) {
    const v = config[k];
    if (!Number.isSafeInteger(v) || v < 0)
      fail(`${names(k)} must be a non-negative integer, got ${brief(v)}`);
    if (v >= config.vocabSize)
      fail(`${names(k)} ${v} is not a token id: ${names('vocabSize')} is ${config.vocabSize}`);
  }
  if (config.eosTokenIds !== undefined) {
    if (
      !Array.isArray(config.eosTokenIds) ||
      config.eosTokenIds.length === 0 ||
      !config.eosTokenIds.every((v) => Number.isSafeInteger(v) && v >= 0 && v < config.vocabSize) ||
      config.eosTokenIds[0] !== config.eosTokenId
    ) {
      fail(
        `${names('eosTokenIds')} must be a non-empty list of token ids (below ${names('vocabSize')} ${config.vocabSize}) starting with ${names('eosTokenId')}`,
      );
    }
  }
  if (
    !(typeof config.rmsNormEps === 'number' && config.rmsNormEps > 0 && Number.isFinite(config.rmsNormEps))
  ) {
    fail(`${names('rmsNormEps')} must be a positive number, got ${JSON.stringify(config.rmsNormEps)}`);
  }
  if (!(typeof config.ropeTheta === 'number' && config.ropeTheta > 0 && Number.isFinite(config.ropeTheta))) {
    fail(`${names('ropeTheta')} must be a positive number, got ${JSON.stringify(config.ropeTheta)}`);
  }
  if (typeof config.tieWordEmbeddings !== 'boolean') {
    fail(
      `${names('tieWordEmbeddings')} must be true or false, got ${JSON.stringify(config.tieWordEmbeddings)}`,
    );
  }
  if (config.headDim % 2 !== 0) fail(`${names('headDim')} must be even for RoPE, got ${config.headDim}`);
  if (config.numAttentionHeads % config.numKeyValueHeads !== 0) {
    fail(
      `${names('numAttentionHeads')} (${config.numAttentionHeads}) must be a multiple of ` +
        `${names('numKeyValueHeads')} (${config.numKeyValueHeads})`,
    );
  }
  const rs = config.ropeScaling;
  if (rs !== undefined) {
    if (rs.type !== 'llama3') fail(`${names('ropeScaling')}: only type "llama3" is supported`);
    for (const k of ['factor', 'lowFreqFactor', 'highFreqFactor', 'originalMaxPositionEmbeddings'] as const) {
      if (!(typeof rs[k] === 'number' && rs[k] > 0 && Number.isFinite(rs[k]))) {
        fail(`${names('ropeScaling')}.${k} must be a positive number, got ${JSON.stringify(rs[k])}`);
      }
    }
    if (!(rs.highFreqFactor > rs.lowFreqFactor)) {
      fail(`${names('ropeScaling')}: highFreqFactor must be larger than lowFreqFactor`);
    }
  }
  const L = config.numHiddenLayers;
  const arrays = [
    ['layerHeadNum', 'numAttentionHeads'],
    ['layerKvHeadNum', 'numKeyValueHeads'],
    ['layerInterSize', 'intermediateSize'],
  ] as const;
  for (const [arr, max] of arrays) {
    const a = config[arr];
    if (a === undefined) continue;
    if (!Array.isArray(a)) fail(`${names(arr)} must be a list of ${L} integers`);
    if (a.length !== L) fail(`${names(arr)} has ${a.length} entries but ${names('numHiddenLayers')} is ${L}`);
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (!isPositiveInt(v)) {
        fail(`${names(arr)}[${i}] must be a positive integer, got ${brief(v)}`);
        continue;
      }
      if (v > config[max]) {
        fail(
          `${names(arr)}[${i}] = ${v} is larger than ${names(max)} = ${config[max]} (which must be the maximum)`,
        );
      }
    }
  }
  // Per-layer sizes can differ only where per-layer arrays exist (whose lengths were checked
  // above): without them the loop is skipped, so a hostile layer count never drives it.
  const perLayer = config.layerHeadNum !== undefined || config.layerKvHeadNum !== undefined;
  for (let i = 0; perLayer && i < L; i++) {
    const d = layerDims(config, i);
    if (d.heads % d.kvHeads !== 0) {
      fail(
        `layer ${i}: ${d.heads} query heads is not a multiple of its ${d.kvHeads} KV heads ` +
          `(${names('layerHeadNum')} / ${names('layerKvHeadNum')})`,
      );
    }
  }
}
