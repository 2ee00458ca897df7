import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import { getPreset, listPresets, PRUNING_PRESETS, referenceLayerRange, resolvePreset } from './presets.js';

const MOREAU_GS = {
  noiseStd: 0.05,
  lambda: 0.2,
  lr: 2e-4,
  soft: 5e-6,
  iterations: 10,
  averageLast: 5,
  perturb: 'all',
  proximal: 'reference',
};

describe('pruning presets', () => {
  it('the reference block: layers 4..29 of 32, the same fractions for any depth', () => {
    expect(referenceLayerRange(32)).toEqual([4, 30]);
    expect(referenceLayerRange(22)).toEqual([2, 21]);
    expect(referenceLayerRange(5)).toEqual([0, 5]);
    expect(referenceLayerRange(40)).toEqual([5, 38]);
    expect(referenceLayerRange(1)).toEqual([0, 1]);
    expect(() => referenceLayerRange(0)).toThrow(InputError);
  });

  // [layers, max positions, attention = MLP range, moreaupruner's calibration length]
  it.each([
    [5, 512, [0, 5], 512],
    [22, 2048, [2, 21], 2048],
    [32, 4096, [4, 30], 2048],
  ] as const)('%i layers (%i positions): every value resolved', (numLayers, maxPositions, range, len) => {
    const model = { numLayers, maxPositions };
    expect(resolvePreset('moreaupruner', model)).toEqual({
      name: 'moreaupruner',
      source: {
        repository: 'ShiningSord/MoreauPruner',
        commit: 'ce5453f',
        files: ['start.sh', 'moreauprune.py', 'LLMPruner/datasets/example_samples.py'],
      },
      criterion: 'moreau-gs',
      options: { ...MOREAU_GS, freshCalibration: true },
      reduction: 'sum',
      ratio: 0.2,
      calibration: { sampling: 'patches', samples: 4, seqLen: len },
      attnLayers: range,
      mlpLayers: range,
    });
    const paper = resolvePreset('moreaupruner-paper', model);
    expect(paper).toMatchObject({
      criterion: 'moreau-gs',
      options: { ...MOREAU_GS, freshCalibration: false },
      reduction: 'sum',
      ratio: 0.25,
      calibration: { sampling: 'windows', samples: 10, seqLen: 64 },
      attnLayers: range,
      mlpLayers: range,
    });
    expect(paper.source.commit).toBe('9e894ff');
    expect(resolvePreset('llm-pruner', model)).toEqual({
      name: 'llm-pruner',
      source: { repository: 'horseee/LLM-Pruner', commit: '128a07d', files: ['README.md', 'hf_prune.py'] },
      criterion: 'taylor',
      options: { variant: 'param_first' },
      reduction: 'sum',
      ratio: 0.25,
      calibration: { sampling: 'windows', samples: 10, seqLen: 64 },
      attnLayers: range,
      mlpLayers: range,
    });
  });

  it('the calibration length is clamped to the model context (stories260K: 512)', () => {
    expect(resolvePreset('moreaupruner', { numLayers: 5, maxPositions: 512 }).calibration.seqLen).toBe(512);
    expect(resolvePreset('llm-pruner', { numLayers: 5, maxPositions: 32 }).calibration.seqLen).toBe(32);
  });

  it('resolving copies: changing a resolved preset leaves the table alone', () => {
    const r = resolvePreset('moreaupruner', { numLayers: 32, maxPositions: 2048 });
    (r.options as Record<string, unknown>).lr = 1;
    expect(getPreset('moreaupruner').options.lr).toBe(2e-4);
  });

  it('unknown names are an error listing the presets', () => {
    expect(listPresets()).toEqual(['moreaupruner', 'moreaupruner-paper', 'llm-pruner']);
    expect(PRUNING_PRESETS.every((p) => p.description.length > 0)).toBe(true);
    expect(() => getPreset('moreau')).toThrow(
      "unknown preset 'moreau'; valid presets: moreaupruner, moreaupruner-paper, llm-pruner",
    );
    expect(() => resolvePreset('llm-pruner', { numLayers: 4, maxPositions: 1 })).toThrow(/maxPositions/);
  });
});
