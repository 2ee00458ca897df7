/**
 * loadModel: one entry point from a user's model argument to a ready LlamaModel with its
 * tokenizer. The argument is an HF directory, a llama2.c .bin (tokenizer given separately), a
 * .gguf file, or the name of a model shipped inside this package ('tiny').
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type FloatDType, InputError } from '@moreau/core';
import type { CheckpointFormat } from './formats/checkpoint.js';
import { loadCheckpoint } from './formats/load.js';
import type { LazyOption } from './formats/stored.js';
import { LlamaModel } from './llama/prunable.js';
import { loadTokenizer } from './tokenizers/load.js';
import type { Tokenizer } from './tokenizers/types.js';

/** Models that ship inside @moreau/models, by name. */
export const SHIPPED_MODELS: readonly string[] = ['tiny'];

/** The folder of a shipped model (works from src/ and from the built dist/). */
export function shippedModelDir(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..']) {
    const dir = resolve(here, up, 'assets', name);
    if (existsSync(join(dir, 'config.json'))) return dir;
  }
  throw new InputError(
    `the shipped model '${name}' is missing from this installation of @moreau/models`,
    name,
  );
}

/** A loaded model: its parameters and config are `model.params` and `model.config`. */
export interface LoadedModel {
  readonly model: LlamaModel;
  readonly tokenizer: Tokenizer;
  /** What the user passed. */
  readonly source: string;
  /** Resolved path of the checkpoint (file or directory). */
  readonly path: string;
  /** The file format it was read from. */
  readonly format: CheckpointFormat;
  /** The storage dtype(s) of the source, e.g. "F32", "F16", "BF16", or "F16+F32" when mixed. */
  readonly sourceDtype: string;
  /** For shipped models: the held-out text that serves as default calibration and evaluation text. */
  readonly defaultText?: string;
}

export interface LoadModelOptions {
  /** Tokenizer file or directory; required for llama2.c checkpoints. */
  readonly tokenizer?: string;
  /** Convert weights while loading (default: keep the stored dtype). */
  readonly dtype?: FloatDType;
  /**
   * Read the weights from their files when a layer needs them instead of at load (see
   * `LoadCheckpointOptions.lazy`). Default 'auto': lazy when the weights exceed a quarter of the
   * memory available now.
   */
  readonly lazy?: LazyOption;
}

export async function loadModel(source: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  let path = source;
  let defaultText: string | undefined;
  if (SHIPPED_MODELS.includes(source) && !existsSync(source)) {
    path = shippedModelDir(source);
    const heldout = join(path, 'heldout.txt');
    if (existsSync(heldout)) defaultText = heldout;
  } else if (!existsSync(source)) {
    throw new InputError(
      `model '${source}' not found: expected an HF directory, a llama2.c .bin, a .gguf file, or a shipped model name (${SHIPPED_MODELS.join(', ')})`,
      source,
    );
  }
  const checkpoint = await loadCheckpoint(path, {
    ...(options.dtype ? { dtype: options.dtype } : {}),
    ...(options.lazy !== undefined ? { lazy: options.lazy } : {}),
  });
  let tokenizerPath = options.tokenizer;
  if (!tokenizerPath) {
    if (checkpoint.format === 'llama2c') {
      throw new InputError(
        `${source} is a llama2.c checkpoint: pass its tokenizer with --tokenizer <tok.bin>`,
        source,
        'tokenizer',
      );
    }
    tokenizerPath = path;
  }
  if (!(await stat(tokenizerPath).catch(() => undefined))) {
    throw new InputError(`tokenizer '${tokenizerPath}' not found`, tokenizerPath, 'tokenizer');
  }
  const tokenizer = await loadTokenizer(tokenizerPath, { vocabSize: checkpoint.config.vocabSize });
  if (tokenizer.vocabSize > checkpoint.config.vocabSize) {
    throw new InputError(
      `${tokenizerPath}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary has ${checkpoint.config.vocabSize}`,
      tokenizerPath,
      'vocab_size',
    );
  }
  return {
    model: new LlamaModel(checkpoint.config, checkpoint.tensors),
    tokenizer,
    source,
    path,
    format: checkpoint.format,
    sourceDtype: checkpoint.sourceDtype,
    ...(defaultText ? { defaultText } : {}),
  };
}
