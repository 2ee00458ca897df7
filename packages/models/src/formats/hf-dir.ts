/**
 * Hugging Face model directories: config.json + model.safetensors (or shards + index) +
 * generation_config.json + tokenizer files.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type DType, type FloatDType, isFloat, tensorBytes, throwIfAborted } from '@moreau/core';
import { validateLlamaConfig } from '../llama/config.js';
import {
  type Checkpoint,
  checkLayerCount,
  describeSourceDtypes,
  isIgnorableTensorName,
  type LoadCheckpointOptions,
  validateCheckpointTensors,
  validateSources,
} from './checkpoint.js';
import { describeError, FormatError } from './errors.js';
import { hfConfigToJson, hfFieldName, readHfConfig } from './hf-config.js';
import { openForRead, readExactly, writeAll, writeDirAtomic, writeFileAtomic } from './io.js';
import {
  DEFAULT_MAX_SHARD_BYTES,
  indexSafetensors,
  indexShardedSafetensors,
  type SafetensorsIndexed,
  writeSafetensorsDir,
} from './safetensors.js';
import { materializeTensors, type StoredTensor, type TensorSource } from './stored.js';

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

/** The one-line conversion of PyTorch pickle weights to safetensors, for `dir`. */
export function pickleConversionCommand(dir: string): string {
  const src = JSON.stringify(dir);
  const out = JSON.stringify(`${dir.replace(/\/+$/, '')}-safetensors`);
  return (
    `python -c "import transformers as t; ` +
    `t.AutoModelForCausalLM.from_pretrained(${src.replaceAll('"', "'")}, torch_dtype='auto').save_pretrained(${out.replaceAll('"', "'")}, safe_serialization=True); ` +
    `t.AutoTokenizer.from_pretrained(${src.replaceAll('"', "'")}).save_pretrained(${out.replaceAll('"', "'")})"`
  );
}

/**
 * True when the bytes of two stored tensors are equal, compared in 16 MiB chunks (neither tensor is
 * held): how a tied model's redundant lm_head is recognised without loading the model.
 */
async function storedBytesEqual(a: StoredTensor, b: StoredTensor): Promise<boolean> {
  if (a.byteLength !== b.byteLength || a.dtype !== b.dtype) return false;
  const chunk = 1 << 24;
  const fa = await openForRead(a.file);
  const fb = a.file === b.file ? fa : await openForRead(b.file);
  try {
    const x = new Uint8Array(Math.min(chunk, a.byteLength));
    const y = new Uint8Array(x.length);
    for (let o = 0; o < a.byteLength; o += chunk) {
      const n = Math.min(chunk, a.byteLength - o);
      await readExactly(fa.fh, a.file, x.subarray(0, n), a.offset + o, `tensor ${a.name}`);
      await readExactly(fb.fh, b.file, y.subarray(0, n), b.offset + o, `tensor ${b.name}`);
      for (let i = 0; i < n; i++) if (x[i] !== y[i]) return false;
    }
    return true;
  } finally {
    await fa.fh.close();
    if (fb !== fa) await fb.fh.close();
  }
}

/**
 * Load a LLaMA checkpoint from a Hugging Face directory. Only headers are read at load: the config
 * is checked against the tensors' names and shapes, rotary inv_freq buffers are dropped, an
 * lm_head equal to the embedding in a tied model is dropped (compared chunk by chunk); the
 * tensors' data is read now or lazily by `options.lazy`.
 */
export async function loadHfDirectory(dir: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const files = new Set(await listDir(dir));
  if (!files.has('config.json')) throw new FormatError(dir, 'has no config.json');
  const configFile = join(dir, 'config.json');
  const config = await readHfConfig(configFile);
  let indexed: SafetensorsIndexed;
  let source: string;
  if (files.has('model.safetensors.index.json')) {
    source = join(dir, 'model.safetensors.index.json');
    indexed = await indexShardedSafetensors(source);
  } else if (files.has('model.safetensors')) {
    source = join(dir, 'model.safetensors');
    indexed = await indexSafetensors(source);
  } else if ([...files].some((f) => /^pytorch_model.*\.bin(\.index\.json)?$/.test(f))) {
    throw new FormatError(
      dir,
      'has only PyTorch pickle weights (pytorch_model*.bin), which moreau does not load (unpickling runs code). ' +
        `Convert them to safetensors once, with Python and transformers installed: ${pickleConversionCommand(dir)}`,
    );
  } else {
    throw new FormatError(dir, 'has no model.safetensors or model.safetensors.index.json');
  }
  const stored = new Map<string, StoredTensor>();
  for (const [name, t] of indexed.tensors) if (!isIgnorableTensorName(name)) stored.set(name, t);
  if (config.tieWordEmbeddings) {
    const head = stored.get('lm_head.weight');
    const emb = stored.get('model.embed_tokens.weight');
    if (head && emb && (await storedBytesEqual(head, emb))) stored.delete('lm_head.weight');
  }
  checkLayerCount(configFile, config, stored.keys(), source, hfFieldName);
  const sources = new Map<string, TensorSource>();
  const recipe = options.dtype ? { dtype: options.dtype } : {};
  for (const [name, t] of stored) sources.set(name, { stored: t, recipe });
  const ordered = validateSources(source, config, sources, hfFieldName);
  const { tensors } = await materializeTensors(ordered, options.lazy);
  const dtypes = [...stored.keys()].map((n) => indexed.dtypes.get(n)!);
  return { config, tensors, format: 'hf', sourceDtype: describeSourceDtypes(dtypes) };
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
  /** Shard above this many bytes of tensor data. Default 5e9 (transformers' default). */
  maxShardBytes?: number;
  /** Called after each tensor is written (tensors are written one at a time). */
  onProgress?: (progress: SaveProgress) => void;
  /** Checked between tensors: an abort stops the save with core's AbortError, leaving nothing behind. */
  signal?: AbortSignal;
}

/** Where a save stands: after `tensor`, `tensorsDone` of `tensorsTotal` and `bytesDone` of `bytesTotal`. */
export interface SaveProgress {
  readonly tensor: string;
  readonly tensorsDone: number;
  readonly tensorsTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

const RESERVED = new Set([
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'model.safetensors.index.json',
]);

function storedDtype(d: DType, to: FloatDType | undefined): DType {
  return to && isFloat(d) ? to : d;
}

function torchDtypeOf(ckpt: Checkpoint, dtype: FloatDType | undefined): FloatDType {
  if (dtype) return dtype;
  const seen = new Set<FloatDType>();
  for (const t of ckpt.tensors.values()) if (isFloat(t.dtype)) seen.add(t.dtype);
  return seen.size === 1 ? [...seen][0]! : 'float32';
}

/**
 * Write a checkpoint as a Hugging Face directory, atomically: everything is written into
 * `${dir}.tmp-<random>` next to it and renamed into place at the end (on an error, an abort or a
 * process exit the temporary directory is removed). An existing non-empty `dir` is an error unless
 * `overwrite`. Tensors are written one at a time (a lazy tensor is read just before it is written),
 * in shards of at most `maxShardBytes`.
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
  const tensorsTotal = ordered.size;
  let bytesTotal = 0;
  for (const t of ordered.values())
    bytesTotal += tensorBytes({ shape: t.shape, dtype: storedDtype(t.dtype, options.dtype) });
  throwIfAborted(options.signal);
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
      let bytesDone = 0;
      let tensorsDone = 0;
      const onProgress = options.onProgress;
      const tensorFiles = await writeSafetensorsDir(tmp, ordered, {
        ...(options.dtype ? { dtype: options.dtype } : {}),
        maxShardBytes: options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(onProgress
          ? {
              onTensor: (tensor: string, bytes: number) => {
                bytesDone += bytes;
                tensorsDone++;
                onProgress({ tensor, tensorsDone, tensorsTotal, bytesDone, bytesTotal });
              },
            }
          : {}),
      });
      written.push(...tensorFiles);
      for (const [name, content] of tokFiles) {
        const bytes = typeof content === 'string' ? enc.encode(content) : content;
        await writeFileAtomic(join(tmp, name), (fh) => writeAll(fh, bytes));
        written.push(name);
      }
    },
    { overwrite: options.overwrite ?? false },
  );
  return written;
}
