import { InputError, MoreauError } from '@moreau/core';
import { describe, expect, it } from 'vitest';
import type { LlamaConfig } from '../llama/config.js';
import { FormatError } from './errors.js';
import { hfConfigToJson, parseHfConfig } from './hf-config.js';

/** TinyLlama-1.1B's config.json as published (trimmed of nothing). */
const tinyLlama = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 5632,
  max_position_embeddings: 2048,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 22,
  num_key_value_heads: 4,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.35.0',
  use_cache: true,
  vocab_size: 32000,
};

const llama31 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

function err(json: unknown): FormatError {
  try {
    parseHfConfig(json, 'x/config.json');
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    const fe = e as FormatError;
    expect(fe.file).toBe('x/config.json');
    expect(fe.message.startsWith('x/config.json: ')).toBe(true);
    return fe;
  }
  return expect.fail('expected a FormatError');
}

describe('FormatError', () => {
  it("is a core InputError: message '<file>: <detail>', file and detail kept, cause passed on", () => {
    const cause = new Error('EACCES');
    const e = new FormatError('dir/config.json', 'hidden_size must be a positive integer', { cause });
    expect(e).toBeInstanceOf(InputError);
    expect(e).toBeInstanceOf(MoreauError);
    expect(e.name).toBe('FormatError');
    expect(e.message).toBe('dir/config.json: hidden_size must be a positive integer');
    expect([e.file, e.detail, e.cause]).toEqual([
      'dir/config.json',
      'hidden_size must be a positive integer',
      cause,
    ]);
  });
});

describe('parseHfConfig', () => {
  it('reads a real TinyLlama config', () => {
    const c = parseHfConfig(tinyLlama);
    expect(c).toEqual({
      vocabSize: 32000,
      hiddenSize: 2048,
      intermediateSize: 5632,
      numHiddenLayers: 22,
      numAttentionHeads: 32,
      numKeyValueHeads: 4,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings: 2048,
      tieWordEmbeddings: false,
      bosTokenId: 1,
      eosTokenId: 2,
    } satisfies LlamaConfig);
  });

  it('reads Llama 3.1 rope scaling and a list of EOS ids', () => {
    const c = parseHfConfig(llama31);
    expect(c.ropeScaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(c.eosTokenId).toBe(128001);
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.headDim).toBe(64);
    expect(c.tieWordEmbeddings).toBe(true);
  });

  it('reads transformers v5 rope_parameters', () => {
    const { rope_theta: _t, rope_scaling: _s, ...rest } = llama31;
    const c = parseHfConfig({ ...rest, rope_parameters: { ...llama31.rope_scaling, rope_theta: 500000 } });
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling?.factor).toBe(32);
  });

  it('round-trips through hfConfigToJson', () => {
    for (const src of [tinyLlama, llama31]) {
      const c = parseHfConfig(src);
      expect(parseHfConfig(JSON.parse(JSON.stringify(hfConfigToJson(c))))).toEqual(c);
    }
  });

  it('round-trips pruned per-layer sizes, keeping the ordinary fields valid', () => {
    const c = parseHfConfig({
      ...tinyLlama,
      num_hidden_layers: 3,
      layer_head_num: [32, 24, 16],
      layer_kv_head_num: [4, 3, 2],
      layer_inter_size: [5632, 4000, 100],
    });
    const json = hfConfigToJson(c);
    expect(json.num_attention_heads).toBe(32);
    expect(json.head_dim).toBe(64);
    expect(json.layer_head_num).toEqual([32, 24, 16]);
    expect(parseHfConfig(json)).toEqual(c);
  });

  it('writes the real sizes in the standard keys when every layer shares them', () => {
    const c = parseHfConfig({
      ...tinyLlama,
      num_hidden_layers: 3,
      layer_head_num: [24, 24, 24],
      layer_kv_head_num: [3, 3, 3],
      layer_inter_size: [4000, 4000, 4000],
    });
    const json = hfConfigToJson(c);
    expect(json).toMatchObject({ num_attention_heads: 24, num_key_value_heads: 3, intermediate_size: 4000 });
    expect(json.head_dim).toBe(64); // 2048 / 24 is not an integer: head_dim is what transformers reads
    for (const k of ['layer_head_num', 'layer_kv_head_num', 'layer_inter_size'])
      expect(json).not.toHaveProperty(k);
    // Only the sizes that differ get a per-layer key; the others are real.
    const mixed = hfConfigToJson({ ...c, layerInterSize: [4000, 100, 4000] });
    expect(mixed).toMatchObject({
      num_attention_heads: 24,
      intermediate_size: 4000,
      layer_inter_size: [4000, 100, 4000],
    });
    expect(mixed).not.toHaveProperty('layer_head_num');
  });

  it('loads folders of older versions (original sizes in the standard keys) with the real sizes', () => {
    const old = {
      ...tinyLlama,
      num_hidden_layers: 2,
      layer_head_num: [16, 16],
      layer_kv_head_num: [2, 2],
      layer_inter_size: [5632, 100],
    };
    const c = parseHfConfig(old);
    expect(c).toMatchObject({
      numAttentionHeads: 16,
      numKeyValueHeads: 2,
      intermediateSize: 5632,
      headDim: 64,
    });
    expect(c.layerHeadNum).toBeUndefined();
    expect(c.layerInterSize).toEqual([5632, 100]);
    // A standard key below a per-layer entry is no error: the per-layer keys are authoritative.
    const below = parseHfConfig({ ...old, head_dim: 64, num_attention_heads: 8, num_key_value_heads: 1 });
    expect(below).toMatchObject({ numAttentionHeads: 16, numKeyValueHeads: 2 });
  });

  it('rejects contradictions, naming the field', () => {
    expect(err({ ...tinyLlama, num_attention_heads: 30 }).detail).toMatch(
      /hidden_size \(2048\) is not divisible by num_attention_heads \(30\)/,
    );
    expect(err({ ...tinyLlama, num_key_value_heads: 5 }).detail).toMatch(
      /num_attention_heads \(32\) must be a multiple of num_key_value_heads \(5\)/,
    );
    expect(err({ ...tinyLlama, layer_head_num: [32, 32] }).detail).toMatch(
      /layer_head_num has 2 entries but num_hidden_layers is 22/,
    );
    expect(err({ ...tinyLlama, num_hidden_layers: 2, layer_head_num: [32, 30] }).detail).toMatch(
      /layer 1: 30 query heads is not a multiple of its 4 KV heads/,
    );
    expect(err({ ...tinyLlama, head_dim: 63 }).detail).toMatch(/head_dim must be even/);
  });

  it('rejects what changes the computation', () => {
    expect(err({ ...tinyLlama, hidden_act: 'gelu' }).detail).toMatch(/hidden_act "gelu" is not supported/);
    expect(err({ ...tinyLlama, attention_bias: true }).detail).toMatch(/attention_bias must be false/);
    expect(err({ ...tinyLlama, mlp_bias: true }).detail).toMatch(/mlp_bias must be false/);
    expect(err({ ...tinyLlama, model_type: 'mistral' }).detail).toMatch(
      /model_type must be "llama", got "mistral"/,
    );
    expect(err({ ...tinyLlama, architectures: ['MistralForCausalLM'] }).detail).toMatch(/MistralForCausalLM/);
    expect(err({ ...tinyLlama, sliding_window: 4096 }).detail).toMatch(/unknown field "sliding_window"/);
    expect(err({ ...tinyLlama, rope_scaling: { type: 'linear', factor: 2 } }).detail).toMatch(
      /rope_scaling.factor is not understood|type "linear" is not supported/,
    );
    expect(err({ ...tinyLlama, rope_scaling: { rope_type: 'yarn' } }).detail).toMatch(
      /"yarn" is not supported/,
    );
    expect(err({ ...tinyLlama, quantization_config: {} }).detail).toMatch(/quantization_config/);
    expect(err({ ...tinyLlama, vocab_size: undefined }).detail).toMatch(
      /required field vocab_size is missing/,
    );
    expect(err({ ...tinyLlama, hidden_size: 2048.5 }).detail).toMatch(
      /hidden_size must be a positive integer/,
    );
    expect(err([1, 2]).detail).toMatch(/expected a JSON object/);
  });

  it('accepts harmless HF bookkeeping fields', () => {
    const c = parseHfConfig({
      ...tinyLlama,
      _name_or_path: 'TinyLlama/TinyLlama-1.1B',
      pad_token_id: null,
      attention_dropout: 0.0,
      mlp_bias: false,
      output_attentions: false,
      id2label: { 0: 'LABEL_0' },
    });
    expect(c.hiddenSize).toBe(2048);
  });
});
