import { describe, expect, it } from 'vitest';
import { validateLlamaConfig } from './config.js';
import { LLAMA_PRESET_NAMES, llamaPreset, paramCount, randomInit } from './presets.js';

describe('presets', () => {
  it('parameter counts of the well-known models', () => {
    expect(paramCount(llamaPreset('llama-7b'))).toBe(6_738_415_616);
    expect(paramCount(llamaPreset('llama-2-7b'))).toBe(6_738_415_616);
    expect(paramCount(llamaPreset('vicuna-7b'))).toBe(6_738_415_616);
    expect(paramCount(llamaPreset('llama-13b'))).toBe(13_015_864_320);
    expect(paramCount(llamaPreset('llama-3-8b'))).toBe(8_030_261_248);
    expect(paramCount(llamaPreset('tinyllama-1.1b'))).toBe(1_100_048_384);
    expect(paramCount(llamaPreset('synthetic-60m'))).toBe(58_073_600);
  });

  it('every preset is a valid config; unknown names list the valid ones', () => {
    for (const n of LLAMA_PRESET_NAMES) expect(() => validateLlamaConfig(llamaPreset(n), n)).not.toThrow();
    expect(llamaPreset('llama-3-8b').ropeScaling).toEqual({
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(() => llamaPreset('llama-9b')).toThrow(/llama-7b, .*synthetic-60m/);
    const a = llamaPreset('llama-7b');
    a.hiddenSize = 1;
    expect(llamaPreset('llama-7b').hiddenSize).toBe(4096);
  });

  it('randomInit is seeded, float32, norms 1, std as asked', () => {
    const c = {
      ...llamaPreset('synthetic-60m'),
      vocabSize: 100,
      numHiddenLayers: 1,
      hiddenSize: 64,
      intermediateSize: 96,
      numAttentionHeads: 2,
      numKeyValueHeads: 2,
      headDim: 32,
    };
    const a = randomInit(c, 5);
    const b = randomInit(c, 5);
    expect([...a.keys()]).toContain('lm_head.weight');
    expect(a.size).toBe(1 + 9 + 2);
    for (const [k, t] of a) {
      expect(t.dtype).toBe('float32');
      expect(Array.from(t.data)).toEqual(Array.from(b.get(k)!.data));
    }
    expect(Array.from(a.get('model.norm.weight')!.data).every((v) => v === 1)).toBe(true);
    const w = a.get('model.layers.0.mlp.gate_proj.weight')!.data as Float32Array;
    const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
    expect(randomInit(c, 6).get('model.embed_tokens.weight')!.data[0]).not.toBe(
      a.get('model.embed_tokens.weight')!.data[0],
    );
    expect(randomInit({ ...c, tieWordEmbeddings: true }, 5).has('lm_head.weight')).toBe(false);
  });
});

describe('public surface', () => {
  it('@moreau/models exports what a user composes, and no internals', async () => {
    const m = (await import('@moreau/models')) as Record<string, unknown>;
    for (const name of ['loadModel', 'llamaLogits', 'llamaLoss', 'llamaTokenNll', 'randomInit', 'saveGguf']) {
      expect(typeof m[name], name).toBe('function');
    }
    for (const name of ['cutLlama', 'ggufToHfName', 'permuteRopeRows', 'GGML_TYPES', 'ropeInvFreq']) {
      expect(m[name], name).toBeUndefined();
    }
  });
});
