/**
 * Hugging Face model directories: config.json + model.safetensors (or shards + index) +
 * generation_config.json + tokenizer files.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  type FloatDType,
  type HostTensor,
  hostTensorsEqual,
  isFloat,
  type OutputTransaction,
} from '@moreau/core';
import { validateLlamaConfig } from '../llama/config.js';
import {
  type Checkpoint,
  describeSourceDtypes,
  isIgnorableTensorName,
  type LoadCheckpointOptions,
  validateCheckpointTensors,
} from './checkpoint.js';
import { describeError, FormatError } from './errors.js';
import { hfConfigToJson, readHfConfig } from './hf-config.js';
import { writeAll, writeDirAtomic, writeFileAtomic } from './io.js';
import {
  readSafetensors,
  readShardedSafetensors,
  type SafetensorsContents,
  writeSafetensorsDir,
} from './safetensors.js';

async function listDir(dir: string): Promise<string[]> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new FormatError(dir, 'is not a directory');
    return await readdir(dir);
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(dir, `cannot read directory (${describeError(e)})`, { cause: e });
  }
}

/**
 * Load a LLaMA checkpoint from a Hugging Face directory. Tensors are checked against the config
 * (names and shapes); rotary inv_freq buffers are dropped; an lm_head equal to the embedding in a
 * tied model is dropped.
 */
export async function loadHfDirectory(dir: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const files = new Set(await listDir(dir));
  if (!files.has('config.json')) throw new FormatError(dir, 'has no config.json');
  const config = await readHfConfig(join(dir, 'config.json'));
  let contents: SafetensorsContents;
  let source: string;
  if (files.has('model.safetensors.index.json')) {
    source = join(dir, 'model.safetensors.index.json');
    contents = await readShardedSafetensors(source, options);
  } else if (files.has('model.safetensors')) {
    source = join(dir, 'model.safetensors');
    contents = await readSafetensors(source, options);
  } else if (files.has('pytorch_model.bin') || files.has('pytorch_model.bin.index.json')) {
    throw new FormatError(
      dir,
      'has only PyTorch pickle weights (pytorch_model.bin); convert them to safetensors first ' +
        '(e.g. transformers save_pretrained(..., safe_serialization=True))',
    );
  } else {
    throw new FormatError(dir, 'has no model.safetensors or model.safetensors.index.json');
  }
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of contents.tensors) if (!isIgnorableTensorName(name)) tensors.set(name, t);
  if (config.tieWordEmbeddings) {
    const head = tensors.get('lm_head.weight');
    const emb = tensors.get('model.embed_tokens.weight');
    if (head && emb && hostTensorsEqual(head, emb)) tensors.delete('lm_head.weight');
  }
  const ordered = validateCheckpointTensors(source, config, tensors);
  const dtypes = [...tensors.keys()].map((n) => contents.dtypes.get(n)!);
  return { config, tensors: ordered, format: 'hf', sourceDtype: describeSourceDtypes(dtypes) };
}

export interface SaveHfOptions {
  /** Store floating-point tensors as this dtype. Default: each tensor's own dtype. */
  dtype?: FloatDType;
  /**
   * Tokenizer files to write next to the weights, by file name (e.g. from `tokenizer.toFiles()`):
   * tokenizer.json + tokenizer_config.json for HF tokenizers, tokenizer.bin for llama2.c ones.
   */
  tokenizerFiles?: Readonly<Record<string, Uint8Array | string>>;
  /** Replace a non-empty existing directory. Default false (an error). */
  overwrite?: boolean;
  /**
   * Stage the directory in this transaction instead of writing it now: it is put in place when the
   * transaction commits (with the run's other outputs), and never if it aborts.
   */
  transaction?: OutputTransaction;
  /** Shard above this many bytes of tensor data. Default 5e9 (transformers' default). */
  maxShardBytes?: number;
}

const RESERVED = new Set([
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'model.safetensors.index.json',
]);

function torchDtypeOf(ckpt: Checkpoint, dtype: FloatDType | undefined): FloatDType {
  if (dtype) return dtype;
  const seen = new Set<FloatDType>();
  for (const t of ckpt.tensors.values()) if (isFloat(t.dtype)) seen.add(t.dtype);
  return seen.size === 1 ? [...seen][0]! : 'float32';
}

/**
 * Write a checkpoint as a Hugging Face directory, atomically: everything is written into
 * `${dir}.tmp-<random>` next to it and renamed into place at the end. An existing non-empty `dir`
 * is an error unless `overwrite`.
 */
export async function saveHfDirectory(
  dir: string,
  ckpt: Checkpoint,
  options: SaveHfOptions = {},
): Promise<string[]> {
  validateLlamaConfig(ckpt.config, dir);
  const ordered = validateCheckpointTensors(dir, ckpt.config, ckpt.tensors);
  const tokFiles = Object.entries(options.tokenizerFiles ?? {});
  for (const [name, content] of tokFiles) {
    if (typeof content !== 'string' && !(content instanceof Uint8Array)) {
      throw new FormatError(dir, `tokenizer file ${name}: content must be a string or a Uint8Array`);
    }
    if (name !== basename(name) || name === '' || name === '.' || name === '..') {
      throw new FormatError(dir, `tokenizer file name ${JSON.stringify(name)} must be a plain file name`);
    }
    if (RESERVED.has(name) || /^model-\d+-of-\d+\.safetensors$/.test(name)) {
      throw new FormatError(dir, `tokenizer file name ${name} would overwrite a model file`);
    }
  }
  const configJson = hfConfigToJson(ckpt.config, { torchDtype: torchDtypeOf(ckpt, options.dtype) });
  const generation = {
    _from_model_config: true,
    bos_token_id: ckpt.config.bosTokenId,
    eos_token_id: ckpt.config.eosTokenIds ? [...ckpt.config.eosTokenIds] : ckpt.config.eosTokenId,
  };
  const written: string[] = [];
  const enc = new TextEncoder();
  const writeText = (path: string, text: string): Promise<void> =>
    writeFileAtomic(path, (fh) => writeAll(fh, enc.encode(text)));
  await writeDirAtomic(
    dir,
    async (tmp) => {
      await writeText(join(tmp, 'config.json'), `${JSON.stringify(configJson, null, 2)}\n`);
      await writeText(join(tmp, 'generation_config.json'), `${JSON.stringify(generation, null, 2)}\n`);
      written.push('config.json', 'generation_config.json');
      const tensorFiles = await writeSafetensorsDir(tmp, ordered, {
        ...(options.dtype ? { dtype: options.dtype } : {}),
        ...(options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {}),
      });
      written.push(...tensorFiles);
      for (const [name, content] of tokFiles) {
        const bytes = typeof content === 'string' ? enc.encode(content) : content;
        await writeFileAtomic(join(tmp, name), (fh) => writeAll(fh, bytes));
        written.push(name);
      }
    },
    {
      overwrite: options.overwrite ?? false,
      ...(options.transaction ? { transaction: options.transaction } : {}),
    },
  );
  return written;
}
