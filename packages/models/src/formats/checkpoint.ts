/**
 * What every reader produces and every writer consumes: a LLaMA config and a map of tensors under
 * Hugging Face names, weights laid out [out, in] row-major as in HF, RoPE in HF's rotate_half
 * convention.
 */
import type { FloatDType, HostTensor } from '@moreau/core';
import { expectedTensorShapes, type LlamaConfig } from '../llama/config.js';
import { FormatError } from './errors.js';
import { hostTensorProblem } from './tensor.js';

/** Options of every checkpoint reader. */
export interface LoadCheckpointOptions {
  /** Convert floating-point tensors to this dtype while reading. Default: keep the stored dtype. */
  dtype?: FloatDType;
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

/**
 * Check that `tensors` holds exactly the tensors `config` needs, each with the right shape and a
 * floating-point dtype, and return them in canonical order (expectedTensorShapes'). Problems are
 * reported together in one FormatError naming `file`.
 */
export function validateCheckpointTensors(
  file: string,
  config: LlamaConfig,
  tensors: ReadonlyMap<string, HostTensor>,
): Map<string, HostTensor> {
  const expected = expectedTensorShapes(config);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) {
      problems.push(`tensor ${name} is missing (expected shape ${fmtShape(shape)})`);
      continue;
    }
    const p = hostTensorProblem(t);
    if (p) {
      problems.push(`tensor ${name}: ${p}`);
      continue;
    }
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      problems.push(`tensor ${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
    }
    if (t.dtype === 'int32' || t.dtype === 'bool') {
      problems.push(`tensor ${name} has dtype ${t.dtype}, expected a floating-point dtype`);
    }
  }
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) {
    const tied = config.tieWordEmbeddings && extra.includes('lm_head.weight');
    problems.push(
      `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? `, ... (${extra.length} in all)` : ''}` +
        (tied ? ' (lm_head.weight is present but the config says tie_word_embeddings: true)' : ''),
    );
  }
  if (problems.length > 0) {
    throw new FormatError(
      file,
      problems.length === 1 ? problems[0]! : `${problems.length} problems:\n  - ${problems.join('\n  - ')}`,
    );
  }
  return new Map([...expected.keys()].map((name) => [name, tensors.get(name)!]));
}

/** Describe the storage dtypes of a set of tensors ("F32", "F16+F32", ...). */
export function describeSourceDtypes(dtypes: Iterable<string>): string {
  return [...new Set(dtypes)].sort().join('+');
}
