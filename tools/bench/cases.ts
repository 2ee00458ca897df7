/** The benchmark models: configs, weights, sizes and FLOP counts shared by run.ts and ours.ts. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '@moreau/core';
import { type LlamaConfig, llamaPreset, loadLlama2c, paramCount, randomInit } from '@moreau/models';
import { STORIES_BIN, sharedPath } from '../../test-utils/shared.js';

export const CASES = ['stories260k', 'synthetic-60m', 'tinyllama-shape'] as const;
export type CaseName = (typeof CASES)[number];

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const stories260kPath = sharedPath(STORIES_BIN);

/** Seed of the synthetic models' randomInit (both synthetic cases). */
export const SYNTHETIC_SEED = 1;

export function caseConfig(name: string): Promise<LlamaConfig> | LlamaConfig {
  switch (name) {
    case 'stories260k':
      return loadLlama2c(stories260kPath).then((c) => c.config);
    case 'synthetic-60m':
      return llamaPreset('synthetic-60m');
    case 'tinyllama-shape':
      return llamaPreset('tinyllama-1.1b');
    default:
      throw new Error(`unknown case '${name}'; valid: ${CASES.join(', ')}`);
  }
}

export interface LoadedCase {
  readonly config: LlamaConfig;
  readonly params: Map<string, HostTensor>;
  /** float32 bytes of every parameter. */
  readonly modelBytes: number;
}

export async function loadCase(name: string): Promise<LoadedCase> {
  let config: LlamaConfig;
  let params: Map<string, HostTensor>;
  if (name === 'stories260k') {
    if (!existsSync(stories260kPath)) throw new Error(`stories260K not found at ${stories260kPath}`);
    const ckpt = await loadLlama2c(stories260kPath);
    config = ckpt.config;
    params = ckpt.tensors;
  } else {
    config = await caseConfig(name);
    params = randomInit(config, SYNTHETIC_SEED);
  }
  return { config, params, modelBytes: paramCount(config) * 4 };
}

/** Distinct [K, N] of the forward linear layers (x [M, K] times W^T [K, N]). */
export function matmulShapes(config: LlamaConfig): { k: number; n: number; count: number }[] {
  const h = config.hiddenSize;
  const q = config.numAttentionHeads * config.headDim;
  const kv = config.numKeyValueHeads * config.headDim;
  const L = config.numHiddenLayers;
  const list = [
    { k: h, n: q, count: L },
    { k: h, n: kv, count: 2 * L },
    { k: q, n: h, count: L },
    { k: h, n: config.intermediateSize, count: 2 * L },
    { k: config.intermediateSize, n: h, count: L },
    { k: h, n: config.vocabSize, count: 1 },
  ];
  const merged = new Map<string, { k: number; n: number; count: number }>();
  for (const s of list) {
    const key = `${s.k}x${s.n}`;
    const m = merged.get(key);
    if (m) m.count += s.count;
    else merged.set(key, { ...s });
  }
  return [...merged.values()];
}

/**
 * Matmul FLOPs of one forward pass over B x T tokens: every linear layer (2 * M * K * N) plus the
 * two attention products (full T x T, as computed). Forward + backward counts 3x this (input and
 * weight gradients); elementwise work, softmax and the embedding are not counted.
 */
export function forwardFlops(config: LlamaConfig, B: number, T: number): number {
  const tokens = B * T;
  let f = 0;
  for (const { k, n, count } of matmulShapes(config)) f += 2 * tokens * k * n * count;
  const q = config.numAttentionHeads * config.headDim;
  f += config.numHiddenLayers * 2 * (2 * B * T * T * q);
  return f;
}
