/**
 * --preset through the command line: the values a prune run resolves to for 5-, 22- and 32-layer
 * models, and explicit flags over them (even when they repeat a flag's default value).
 */
import '@moreau/criteria';
import { describe, expect, it } from 'vitest';
import {
  calibrationChoice,
  criterionFromFlags,
  planOptionsFromFlags,
  presetFlag,
  resolvedPreset,
  scoringSettings,
} from './internal/flags.js';
import { buildProgram, type Handlers, type PruneFlags } from './program.js';

async function pruneFlags(args: readonly string[]): Promise<PruneFlags> {
  let seen: PruneFlags | undefined;
  const noop = async () => {};
  const handlers = Object.fromEntries(
    ['info', 'eval', 'compare', 'robustness', 'export', 'generate', 'criteria'].map((k) => [k, noop]),
  ) as unknown as Handlers;
  const program = buildProgram(
    {
      ...handlers,
      prune: async (_m, f) => {
        seen = f;
      },
    },
    '0.0.0',
  );
  await program.parseAsync(['prune', 'tiny', '--out', 'o', ...args], { from: 'user' });
  return seen!;
}

/** Everything a prune run takes from the flags and the preset, for a model of this shape. */
async function resolve(args: readonly string[], numHiddenLayers: number, maxPositionEmbeddings: number) {
  const flags = await pruneFlags(args);
  const preset = presetFlag(flags);
  const resolved = resolvedPreset(preset, { numHiddenLayers, maxPositionEmbeddings });
  const { criterion, resolved: options } = criterionFromFlags(flags.criterion, flags.opt, preset);
  return {
    criterion: criterion.name,
    options,
    ratio: flags.ratio ?? resolved?.ratio,
    ...planOptionsFromFlags(flags, 'block', { preset: resolved }),
    calibration: calibrationChoice(flags, resolved),
    flags,
    resolved,
  };
}

const REFERENCE_GS = { noiseStd: 0.05, lambda: 0.2, lr: 2e-4, soft: 5e-6, iterations: 10, averageLast: 5 };

describe('--preset resolved for 5, 22 and 32 layers', () => {
  // [layers, max positions, layer range, moreaupruner's calibration length]
  const shapes = [
    [5, 512, [0, 5], 512],
    [22, 2048, [2, 21], 2048],
    [32, 4096, [4, 30], 2048],
  ] as const;

  it.each(shapes)('moreaupruner, %i layers', async (L, P, range, len) => {
    expect(await resolve(['--preset', 'moreaupruner'], L, P)).toMatchObject({
      criterion: 'moreau-gs',
      options: { ...REFERENCE_GS, perturb: 'all', proximal: 'reference', freshCalibration: true },
      ratio: 0.2,
      reduction: 'sum',
      scope: 'block',
      attnLayers: range,
      mlpLayers: range,
      calibration: { sampling: 'patches', samples: 4, seqLen: len },
    });
  });

  it.each(shapes)('moreaupruner-paper, %i layers', async (L, P, range) => {
    expect(await resolve(['--preset', 'moreaupruner-paper'], L, P)).toMatchObject({
      criterion: 'moreau-gs',
      options: { ...REFERENCE_GS, perturb: 'all', freshCalibration: false },
      ratio: 0.25,
      reduction: 'sum',
      attnLayers: range,
      mlpLayers: range,
      calibration: { sampling: 'windows', samples: 10, seqLen: 64 },
    });
  });

  it.each(shapes)('llm-pruner, %i layers', async (L, P, range) => {
    expect(await resolve(['--preset', 'llm-pruner'], L, P)).toMatchObject({
      criterion: 'taylor',
      options: { variant: 'param_first' },
      ratio: 0.25,
      reduction: 'sum',
      attnLayers: range,
      mlpLayers: range,
      calibration: { sampling: 'windows', samples: 10, seqLen: 64 },
    });
  });

  it('explicit flags win, even when they repeat a default value; the settings say which', async () => {
    const args = [
      '--preset',
      'moreaupruner-paper',
      '--calib-samples',
      '4', // the flag's own default, given explicitly
      '--calib-sampling',
      'patches',
      '--opt',
      'lr=0.02',
      '--ratio',
      '0.1',
      '--attn-layers',
      '1:3',
    ];
    const r = await resolve(args, 32, 4096);
    expect(r).toMatchObject({
      criterion: 'moreau-gs',
      options: { lr: 0.02, soft: 5e-6, freshCalibration: false },
      ratio: 0.1,
      attnLayers: [1, 3],
      mlpLayers: [4, 30],
      calibration: { sampling: 'patches', samples: 4, seqLen: 64 },
    });
    const settings = scoringSettings(r.flags, r.resolved, {
      criterion: r.criterion,
      options: r.options,
      ratio: r.ratio!,
      reduction: 'sum',
      attnLayers: r.attnLayers!,
      mlpLayers: r.mlpLayers!,
      scope: 'block',
      ranking: 'local',
      calibration: { ...r.calibration, source: 'c.txt', iterations: 1 },
    });
    expect(settings).toMatchObject({
      preset: 'moreaupruner-paper',
      preset_source: { repository: 'ShiningSord/MoreauPruner', commit: '9e894ff' },
      ratio: 0.1,
      attn_layers: [1, 3],
      mlp_layers: [4, 30],
      calibration: { sampling: 'patches', samples: 4, seq_len: 64, chars_per_token: 8, fresh: false },
      from_flags: ['ratio', 'opt', 'attnLayers', 'calibSampling', 'calibSamples'],
    });
  });

  it('another criterion takes only the preset options it documents', async () => {
    const r = await resolve(['--preset', 'moreaupruner', '--criterion', 'moreau'], 5, 512);
    expect(r.criterion).toBe('moreau');
    expect(r.options).toMatchObject({ lr: 2e-4, noiseStd: 0.05 });
    expect(r.options).not.toHaveProperty('soft');
    const t = await resolve(['--preset', 'moreaupruner', '--criterion', 'magnitude'], 5, 512);
    expect(t.options).toEqual({ p: 2 });
  });

  it('without a preset the flags defaults stand (windows, 4 x 128, all layers)', async () => {
    const r = await resolve(['--criterion', 'moreau', '--ratio', '0.2'], 32, 4096);
    expect(r.calibration).toEqual({ sampling: 'windows', samples: 4, seqLen: 128 });
    expect(r.attnLayers).toBeUndefined();
    expect(r.reduction).toBeUndefined();
  });
});
