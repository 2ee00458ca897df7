/**
 * What every reader produces and every writer consumes: a LLaMA config and a map of tensors under
 * Hugging Face names, weights laid out [out, in] row-major as in HF, RoPE in HF's rotate_half
 * convention.
 */
import type { FloatDType, HostTensor } from '@moreau/core';
import { expectedTensorShapes, type LlamaConfig } from '../llama/config.js';
import { brief, FormatError } from './errors.js';
import { type LazyOption, loadedDtype, type TensorSource } from './stored.js';
import { hostTensorProblem } from './tensor.js';

/** Options of every checkpoint reader. */
export interface LoadCheckpointOptions {
  /** Convert floating-point tensors to this dtype while reading. Default: keep the stored dtype. */
  dtype?: FloatDType;
  /**
   * Read tensors lazily: each tensor's bytes are read from its file when its data is first needed
   * (and again after the garbage collector dropped them), so a model larger than memory can be used
   * a layer at a time. `false` reads everything at load. `'auto'` (the default): lazy when the
   * weights, in the dtype they are loaded as, exceed a quarter of the memory available now.
   */
  lazy?: LazyOption;
}

export type CheckpointFormat = 'hf' | 'llama2c' | 'gguf';

export interface Checkpoint {
  config: LlamaConfig;
  /** HF names -> tensors. lm_head.weight is absent when config.tieWordEmbeddings. */
  tensors: Map<string, HostTensor>;
  /** Where it was read from. */
  format: CheckpointFormat;
  /** The storage dtype(s) of the source, e.g. "F32", "F16", "BF16", or "F16+F32" when mixed. */
  sourceDtype: string;
}

/** Tensors some exporters write that carry nothing a LLaMA needs (recomputed buffers). */
export function isIgnorableTensorName(name: string): boolean {
  return /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name);
}

const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Problems listed in one message at most. */
const MAX_LISTED = 8;

/**
 * Check a config read from a file against the tensors its weights hold, before anything iterates
 * over the config's layer count: the weights must have every layer the config says (a hostile
 * num_hidden_layers of 1e15 fails here at once, naming the config field, instead of driving a loop).
 * Layers beyond the config's count are left to validateCheckpointTensors (unexpected tensors).
 */
export function checkLayerCount(
  configFile: string,
  config: LlamaConfig,
  tensorNames: Iterable<string>,
  weightsFile: string,
  names: (field: keyof LlamaConfig) => string = (f) => f,
): void {
  let maxLayer = -1;
  for (const n of tensorNames) {
    const m = /^model\.layers\.(\d{1,9})\./.exec(n);
    if (m) maxLayer = Math.max(maxLayer, Number(m[1]));
  }
  const L = config.numHiddenLayers;
  if (L > maxLayer + 1) {
    throw new FormatError(
      configFile,
      `${names('numHiddenLayers')} is ${brief(L)} but ${weightsFile} holds ` +
        (maxLayer < 0 ? 'no layers' : `layers 0..${maxLayer} only`),
      { field: names('numHiddenLayers') },
    );
  }
}

/** Which config fields make up each dimension of a tensor's expected shape (for messages). */
function shapeSources(name: string, config: LlamaConfig, names: (f: keyof LlamaConfig) => string): string {
  const perLayer = (arr: 'layerHeadNum' | 'layerKvHeadNum' | 'layerInterSize', plain: keyof LlamaConfig) =>
    config[arr] ? names(arr) : names(plain);
  const hd = names('headDim');
  const h = names('hiddenSize');
  if (/\.self_attn\.q_proj\.weight$/.test(name))
    return `${perLayer('layerHeadNum', 'numAttentionHeads')} x ${hd}, ${h}`;
  if (/\.self_attn\.[kv]_proj\.weight$/.test(name))
    return `${perLayer('layerKvHeadNum', 'numKeyValueHeads')} x ${hd}, ${h}`;
  if (/\.self_attn\.o_proj\.weight$/.test(name))
    return `${h}, ${perLayer('layerHeadNum', 'numAttentionHeads')} x ${hd}`;
  if (/\.mlp\.(gate|up)_proj\.weight$/.test(name))
    return `${perLayer('layerInterSize', 'intermediateSize')}, ${h}`;
  if (/\.mlp\.down_proj\.weight$/.test(name))
    return `${h}, ${perLayer('layerInterSize', 'intermediateSize')}`;
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return `${names('vocabSize')}, ${h}`;
  return h;
}

/**
 * Check that `tensors` holds exactly the tensors `config` needs, each with the right shape and a
 * floating-point dtype, and return them in canonical order (expectedTensorShapes'). Problems are
 * reported together in one FormatError naming `file` (at most 8 listed). A lazy tensor's data is
 * not read. `names` gives the config fields' names as the source spells them, for messages.
 */
export function validateCheckpointTensors(
  file: string,
  config: LlamaConfig,
  tensors: ReadonlyMap<string, HostTensor>,
  names: (field: keyof LlamaConfig) => string = (f) => f,
): Map<string, HostTensor> {
  return validateShapes(file, config, tensors, (t) => t, names, hostTensorProblem);
}

/** validateCheckpointTensors for tensors still in their files (nothing is read). */
export function validateSources(
  file: string,
  config: LlamaConfig,
  sources: ReadonlyMap<string, TensorSource>,
  names: (field: keyof LlamaConfig) => string = (f) => f,
): Map<string, TensorSource> {
  return validateShapes(
    file,
    config,
    sources,
    (s) => ({ shape: s.stored.shape, dtype: loadedDtype(s) }),
    names,
  );
}

function validateShapes<T>(
  file: string,
  config: LlamaConfig,
  tensors: ReadonlyMap<string, T>,
  describe: (t: T) => { shape: readonly number[]; dtype: string },
  names: (field: keyof LlamaConfig) => string,
  problemOf?: (t: T) => string | undefined,
): Map<string, T> {
  const expected = expectedTensorShapes(config);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) {
      problems.push(`tensor ${name} is missing (expected shape ${fmtShape(shape)})`);
      continue;
    }
    const p = problemOf?.(t);
    if (p) {
      problems.push(`tensor ${name}: ${p}`);
      continue;
    }
    const d = describe(t);
    if (d.shape.length !== shape.length || d.shape.some((x, k) => x !== shape[k])) {
      problems.push(
        `tensor ${name} has shape ${fmtShape(d.shape)}, expected ${fmtShape(shape)} (${shapeSources(name, config, names)})`,
      );
    }
    if (d.dtype === 'int32' || d.dtype === 'bool') {
      problems.push(`tensor ${name} has dtype ${d.dtype}, expected a floating-point dtype`);
    }
  }
  const extra: string[] = [];
  for (const n of tensors.keys()) if (!expected.has(n)) extra.push(n);
  if (extra.length > 0) {
    const tied = config.tieWordEmbeddings && extra.includes('lm_head.weight');
    problems.push(
      `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? `, ... (${extra.length} in all)` : ''}` +
        (tied ? ' (lm_head.weight is present but the config says tie_word_embeddings: true)' : ''),
    );
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, MAX_LISTED);
    const more = problems.length > MAX_LISTED ? `\n  - ... and ${problems.length - MAX_LISTED} more` : '';
    throw new FormatError(
      file,
      problems.length === 1
        ? problems[0]!
        : `${problems.length} problems:\n  - ${shown.join('\n  - ')}${more}`,
    );
  }
  return new Map([...expected.keys()].map((name) => [name, tensors.get(name)!]));
}

/** Describe the storage dtypes of a set of tensors ("F32", "F16+F32", ...). */
export function describeSourceDtypes(dtypes: Iterable<string>): string {
  return [...new Set(dtypes)].sort().join('+');
}
