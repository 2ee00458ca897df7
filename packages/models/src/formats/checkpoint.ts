/**
 * The model description every reader produces and every writer consumes: a LLaMA config and a map of
 * tensors under Hugging Face names, weights laid out [out, in] row-major as in HF, RoPE in HF's
 * rotate_half convention.
 */
import type { HostTensor } from '@moreau/core';
import { FormatError } from './errors.js';
import { hostTensorProblem } from './tensor.js';

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

export type CheckpointFormat = 'hf' | 'llama2c' | 'gguf';

export interface Checkpoint {
  config: LlamaConfig;
  /** HF names -> tensors. lm_head.weight is absent when config.tieWordEmbeddings. */
  tensors: Map<string, HostTensor>;
  /** Where it was read from. */
  format: CheckpointFormat;
  /** The storage dtype(s) of the source, e.g. "F32", "F16", "BF16", or "F16+F32" when mixed. */
  sourceDtype: string;
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

/** Tensors some exporters write that carry nothing a LLaMA needs (recomputed buffers). */
export function isIgnorableTensorName(name: string): boolean {
  return /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name);
}

const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/**
 * Check that `tensors` holds exactly the tensors `config` needs, each with the right shape and a
 * floating-point dtype. Problems are reported together in one FormatError naming `file`.
 */
export function validateCheckpointTensors(
  file: string,
  config: LlamaConfig,
  tensors: ReadonlyMap<string, HostTensor>,
): void {
  const expected = expectedTensorShapes(config);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) {
      problems.push(`tensor ${name} is missing (expected shape ${fmtShape(shape)})`);
      continue;
    }
    const p = hostTensorProblem(t);
    if (p) {
      problems.push(`tensor ${name}: ${p}`);
      continue;
    }
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      problems.push(`tensor ${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
    }
    if (t.dtype === 'int32' || t.dtype === 'bool') {
      problems.push(`tensor ${name} has dtype ${t.dtype}, expected a floating-point dtype`);
    }
  }
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) {
    const tied = config.tieWordEmbeddings && extra.includes('lm_head.weight');
    problems.push(
      `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? `, ... (${extra.length} in all)` : ''}` +
        (tied ? ' (lm_head.weight is present but the config says tie_word_embeddings: true)' : ''),
    );
  }
  if (problems.length > 0) {
    throw new FormatError(
      file,
      problems.length === 1 ? problems[0]! : `${problems.length} problems:\n  - ${problems.join('\n  - ')}`,
    );
  }
}

/** Describe the storage dtypes of a set of tensors ("F32", "F16+F32", ...). */
export function describeSourceDtypes(dtypes: Iterable<string>): string {
  return [...new Set(dtypes)].sort().join('+');
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
    if (!isPositiveInt(config[k]))
      fail(`${names(k)} must be a positive integer, got ${JSON.stringify(config[k])}`);
  }
  for (const k of ['bosTokenId', 'eosTokenId'] as const) {
    const v = config[k];
    if (!Number.isSafeInteger(v) || v < 0)
      fail(`${names(k)} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  if (config.eosTokenIds !== undefined) {
    if (
      !Array.isArray(config.eosTokenIds) ||
      config.eosTokenIds.length === 0 ||
      !config.eosTokenIds.every((v) => Number.isSafeInteger(v) && v >= 0) ||
      config.eosTokenIds[0] !== config.eosTokenId
    ) {
      fail(
        `${names('eosTokenIds')} must be a non-empty list of token ids starting with ${names('eosTokenId')}`,
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
    a.forEach((v, i) => {
      if (!isPositiveInt(v)) fail(`${names(arr)}[${i}] must be a positive integer, got ${JSON.stringify(v)}`);
      if (v > config[max]) {
        fail(
          `${names(arr)}[${i}] = ${v} is larger than ${names(max)} = ${config[max]} (which must be the maximum)`,
        );
      }
    });
  }
  for (let i = 0; i < L; i++) {
    const d = layerDims(config, i);
    if (d.heads % d.kvHeads !== 0) {
      fail(
        `layer ${i}: ${d.heads} query heads is not a multiple of its ${d.kvHeads} KV heads ` +
          `(${names('layerHeadNum')} / ${names('layerKvHeadNum')})`,
      );
    }
  }
}
