/**
 * Pruning presets: the published setups of MoreauPruner and LLM-Pruner, each a set of defaults
 * (criterion, its options, ratio, reduction, calibration draw, layer ranges) resolved for a model
 * of any depth. A preset only sets defaults: whoever applies it lets explicit settings win, and
 * records the preset with every value it resolved to.
 *
 * Layer ranges: both papers prune LLaMA-7B's layers 4..29 (Python's `range(4, 30)` of 32), keeping
 * the first 4 and the last 2 dense. For L layers the presets keep the same fractions:
 * `[floor(L / 8), L - floor(L / 16))` (32 -> [4, 30), 22 -> [2, 21), 5 -> [0, 5)).
 *
 * What a preset cannot carry: the reference's calibration corpus (BookCorpus; here the calibration
 * text the user gives) and its random streams (Python's `random` / torch; here core's seeded Rng).
 * Its 'windows' are cut from the calibration text tokenized once, where commit 9e894ff and
 * LLM-Pruner cut each window from one random document of at least L tokens.
 */
import { InputError } from '../errors.js';
import type { Reduction } from './scoring.js';

/** Where a preset's values come from. */
export interface PresetSource {
  /** GitHub owner/name. */
  readonly repository: string;
  /** The commit whose scripts the preset follows. */
  readonly commit: string;
  /** The files that set the values. */
  readonly files: readonly string[];
}

/** How calibration windows are drawn (see calibration.ts). */
export type CalibrationSampling = 'windows' | 'patches';

export interface PresetCalibration {
  readonly sampling: CalibrationSampling;
  /** Windows per iteration. */
  readonly samples: number;
  /** Tokens per window (clamped to the model's maximum positions when resolved). */
  readonly seqLen: number;
}

export interface PruningPreset {
  readonly name: string;
  readonly description: string;
  readonly source: PresetSource;
  readonly criterion: string;
  /**
   * Criterion options by their documented names. Whether windows are fresh every iteration (the
   * reference's --moredata) is the Moreau criteria's `freshCalibration` option.
   */
  readonly options: Readonly<Record<string, number | boolean | string>>;
  readonly reduction: Reduction;
  readonly ratio: number;
  readonly calibration: PresetCalibration;
  /** Layer ranges (both attention and MLP): `[floor(L / 8), L - floor(L / 16))`. */
  readonly layers: 'reference-block';
}

/** A preset's values for one model: every default filled in. */
export interface ResolvedPreset {
  readonly name: string;
  readonly source: PresetSource;
  readonly criterion: string;
  readonly options: Readonly<Record<string, number | boolean | string>>;
  readonly reduction: Reduction;
  readonly ratio: number;
  readonly calibration: PresetCalibration;
  /** Half-open layer ranges [start, end). */
  readonly attnLayers: readonly [number, number];
  readonly mlpLayers: readonly [number, number];
}

const MOREAU_GS_REFERENCE = {
  noiseStd: 0.05,
  lambda: 0.2,
  lr: 2e-4,
  soft: 5e-6,
  iterations: 10,
  averageLast: 5,
  perturb: 'all',
  proximal: 'reference',
} as const;

const MOREAU_REPO = 'ShiningSord/MoreauPruner';

export const PRUNING_PRESETS: readonly PruningPreset[] = [
  {
    name: 'moreaupruner',
    description:
      'MoreauPruner as released today (start.sh): moreau-gs (std 0.05, lambda 0.2, lr 2e-4, soft 5e-6, 10 iterations, last 5 averaged, every parameter perturbed), importance |w * averaged delta| summed per group, 4 calibration patches of 2048 tokens drawn fresh every iteration (--moredata), ratio 0.2, attention and MLP layers 4..29 of 32',
    source: {
      repository: MOREAU_REPO,
      commit: 'ce5453f',
      files: ['start.sh', 'moreauprune.py', 'LLMPruner/datasets/example_samples.py'],
    },
    criterion: 'moreau-gs',
    options: { ...MOREAU_GS_REFERENCE, freshCalibration: true },
    reduction: 'sum',
    ratio: 0.2,
    calibration: { sampling: 'patches', samples: 4, seqLen: 2048 },
    layers: 'reference-block',
  },
  {
    name: 'moreaupruner-paper',
    description:
      "MoreauPruner's published run (the log behind the paper's LLaMA-7B table, 80.48 % of parameters left): moreau-gs as in moreaupruner, but 10 calibration windows of 64 tokens, the same windows every iteration, ratio 0.25, layers 4..29 of 32",
    source: {
      repository: MOREAU_REPO,
      commit: '9e894ff',
      files: [
        'start.sh',
        'moreauprune.py',
        'LLMPruner/datasets/example_samples.py',
        'logs/llama_7b_0.2_element_moreau_std005_lamb02_lr00002_groupsoft0000005_10iter_alpaca.log',
      ],
    },
    criterion: 'moreau-gs',
    options: { ...MOREAU_GS_REFERENCE, freshCalibration: false },
    reduction: 'sum',
    ratio: 0.25,
    calibration: { sampling: 'windows', samples: 10, seqLen: 64 },
    layers: 'reference-block',
  },
  {
    name: 'llm-pruner',
    description:
      "LLM-Pruner's LLaMA recipe (README, hf_prune.py): taylor param_first summed per group, 10 calibration windows of 64 tokens, one scoring step, ratio 0.25, attention and MLP layers 4..29 of 32",
    source: { repository: 'horseee/LLM-Pruner', commit: '128a07d', files: ['README.md', 'hf_prune.py'] },
    criterion: 'taylor',
    options: { variant: 'param_first' },
    reduction: 'sum',
    ratio: 0.25,
    calibration: { sampling: 'windows', samples: 10, seqLen: 64 },
    layers: 'reference-block',
  },
];

export function listPresets(): string[] {
  return PRUNING_PRESETS.map((p) => p.name);
}

export function getPreset(name: string): PruningPreset {
  const p = PRUNING_PRESETS.find((x) => x.name === name);
  if (!p) {
    throw new InputError(
      `unknown preset '${name}'; valid presets: ${listPresets().join(', ')}`,
      undefined,
      'preset',
    );
  }
  return p;
}

/** The reference's pruned block for a model of `numLayers` layers: [floor(L/8), L - floor(L/16)). */
export function referenceLayerRange(numLayers: number): readonly [number, number] {
  if (!Number.isInteger(numLayers) || numLayers < 1)
    throw new InputError(`numLayers must be a positive integer, got ${numLayers}`, undefined, 'numLayers');
  return [Math.floor(numLayers / 8), numLayers - Math.floor(numLayers / 16)];
}

/**
 * A preset's values for a model with `numLayers` layers and at most `maxPositions` positions (the
 * calibration length is clamped to it).
 */
export function resolvePreset(
  preset: string | PruningPreset,
  model: { readonly numLayers: number; readonly maxPositions: number },
): ResolvedPreset {
  const p = typeof preset === 'string' ? getPreset(preset) : preset;
  if (!Number.isInteger(model.maxPositions) || model.maxPositions < 2)
    throw new InputError(
      `maxPositions must be an integer >= 2, got ${model.maxPositions}`,
      undefined,
      'maxPositions',
    );
  const range = referenceLayerRange(model.numLayers);
  return {
    name: p.name,
    source: p.source,
    criterion: p.criterion,
    options: { ...p.options },
    reduction: p.reduction,
    ratio: p.ratio,
    calibration: { ...p.calibration, seqLen: Math.min(p.calibration.seqLen, model.maxPositions) },
    attnLayers: range,
    mlpLayers: range,
  };
}
