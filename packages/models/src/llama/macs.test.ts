import { resolvePreset } from '@moreau/core';
import { describe, expect, it } from 'vitest';
import type { LlamaConfig } from './config.js';
import { llamaMacs } from './macs.js';
import { llamaPreset, paramCount } from './presets.js';

/** The config a preset's block pruning gives: floor(n * (1 - ratio)) heads and channels kept in range. */
function prunedByPreset(name: string, base: LlamaConfig): LlamaConfig {
  const p = resolvePreset(name, {
    numLayers: base.numHiddenLayers,
    maxPositions: base.maxPositionEmbeddings,
  });
  const L = base.numHiddenLayers;
  const inRange = (l: number, [a, b]: readonly [number, number]) => l >= a && l < b;
  const kept = (n: number) => Math.max(1, Math.floor(n * (1 - p.ratio)));
  const groupSize = base.numAttentionHeads / base.numKeyValueHeads;
  const kv = Array.from({ length: L }, (_, l) =>
    inRange(l, p.attnLayers) ? kept(base.numKeyValueHeads) : base.numKeyValueHeads,
  );
  return {
    ...base,
    layerKvHeadNum: kv,
    layerHeadNum: kv.map((k) => k * groupSize),
    layerInterSize: Array.from({ length: L }, (_, l) =>
      inRange(l, p.mlpLayers) ? kept(base.intermediateSize) : base.intermediateSize,
    ),
  };
}

describe('llamaMacs (test_speedup.py counting)', () => {
  it('LLaMA-7B at 1 x 64 tokens: 424.02 G MACs, the figure LLM-Pruner reports', () => {
    const m = llamaMacs(llamaPreset('llama-7b'));
    expect(m.seqLen).toBe(64);
    expect(m.total).toBe(424_021_065_728);
    expect(m.perToken).toBe(424_021_065_728 / 64);
    // By hand: per layer, linear 4·64·4096² + 3·64·4096·11008, rotary 2·(64·4096)·2,
    // attention 32·(2·64²·128 + 64²), SiLU 64·11008, two norms 2·(2·64·4096); final norm; head.
    const layer =
      4 * 64 * 4096 * 4096 +
      3 * 64 * 4096 * 11008 +
      2 * (64 * 4096) * 2 +
      32 * (2 * 64 * 64 * 128 + 64 * 64) +
      64 * 11008 +
      2 * (2 * 64 * 4096);
    expect(m.total).toBe(32 * layer + 2 * 64 * 4096 + 64 * 4096 * 32000);
    expect(Object.values(m.breakdown).reduce((a, b) => a + b, 0)).toBe(m.total);
  });

  it('per-layer dims of a pruned model; grouped-query k / v count the KV heads', () => {
    const base = llamaPreset('tinyllama-1.1b');
    const dense = llamaMacs(base, 16);
    const pruned = llamaMacs(
      { ...base, layerHeadNum: Array(22).fill(16), layerKvHeadNum: Array(22).fill(2) },
      16,
    );
    // Halving the heads halves q, k, v, o and the attention and rotary terms; the MLP is unchanged.
    expect(pruned.breakdown.attentionProjections).toBe(dense.breakdown.attentionProjections / 2);
    expect(pruned.breakdown.attentionScores).toBe(dense.breakdown.attentionScores / 2);
    expect(pruned.breakdown.rotary).toBe(dense.breakdown.rotary / 2);
    expect(pruned.breakdown.mlpProjections).toBe(dense.breakdown.mlpProjections);
    // TinyLlama: 32 query heads, 4 KV heads of 64: q and o 2048 wide, k and v 256 wide.
    expect(dense.breakdown.attentionProjections).toBe(22 * 16 * 2048 * (2 * 2048 + 2 * 256));
    expect(() => llamaMacs(base, 0)).toThrow(/seqLen/);
  });
});

describe('the papers presets on the papers model (LLaMA / Llama-2 7B shape)', () => {
  it('moreaupruner-paper leaves 80.48 % of the parameters, as the published log (5,422,977,024 of 6,738,415,616)', () => {
    for (const name of ['llama-7b', 'llama-2-7b']) {
      const base = llamaPreset(name);
      const pruned = prunedByPreset('moreaupruner-paper', base);
      expect(pruned.layerHeadNum!.slice(3, 6)).toEqual([32, 24, 24]);
      expect(pruned.layerInterSize!.slice(28, 31)).toEqual([8256, 8256, 11008]);
      expect(paramCount(pruned)).toBe(5_422_977_024);
      const left = paramCount(pruned) / paramCount(base);
      expect(left).toBeGreaterThan(0.804);
      expect(left).toBeLessThan(0.806);
      expect((100 * left).toFixed(4)).toBe('80.4785');
    }
  });

  it('moreaupruner (ratio 0.2) and llm-pruner (0.25) on the same shape', () => {
    const base = llamaPreset('llama-7b');
    expect(paramCount(prunedByPreset('llm-pruner', base))).toBe(5_422_977_024);
    const head = prunedByPreset('moreaupruner', base);
    expect(head.layerHeadNum![10]).toBe(25); // floor(32 * 0.8)
    expect(head.layerInterSize![10]).toBe(8806); // floor(11008 * 0.8)
    expect(paramCount(head)).toBe(5_653_221_376); // 83.90 %
    // The pruned model's MACs, counted the same way: 339.60 G (LLM-Pruner reports 339.60 G for its
    // 20 % model, the same shape).
    expect(llamaMacs(prunedByPreset('moreaupruner-paper', base)).total).toBe(339_602_644_992);
  });
});
