/**
 * Rotary position embeddings computed on the host, exactly as Hugging Face transformers does
 * (float32 arithmetic, `rotate_half` convention: the two halves of each head are paired, and the
 * cos / sin tables are `cat(freqs, freqs)`), and the row permutation between llama2.c's / llama.cpp's
 * adjacent-pair convention and HF's.
 */
import type { LlamaConfig } from './config.js';

const f = Math.fround;

/**
 * The RoPE inverse frequencies, length headDim / 2, as HF's `_compute_default_rope_parameters`
 * (`1 / theta ** (arange(0, dim, 2) / dim)` in float32) followed by `_compute_llama3_parameters`
 * when the config has a "llama3" rope_scaling.
 */
export function ropeInvFreq(
  config: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>,
): Float32Array {
  const dim = config.headDim;
  const half = dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(config.ropeTheta ** f((2 * i) / dim)));
  const rs = config.ropeScaling;
  if (!rs) return inv;
  if (rs.type !== 'llama3')
    throw new RangeError(`ropeInvFreq: unsupported rope_scaling type ${String(rs.type)}`);
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldContext } = rs;
  const lowFreqWavelen = oldContext / lowFreqFactor;
  const highFreqWavelen = oldContext / highFreqFactor;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const freq = inv[i]!;
    const wavelen = f((2 * Math.PI) / freq);
    // wavelen < high: unchanged; wavelen > low: divided by factor; in between: smooth interpolation.
    let scaled = wavelen > lowFreqWavelen ? f(freq / factor) : freq;
    const isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (isMedium) {
      const smooth = f(f(f(oldContext / wavelen) - lowFreqFactor) / (highFreqFactor - lowFreqFactor));
      scaled = f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
    }
    out[i] = scaled;
  }
  return out;
}

export interface RopeTables {
  /** cos(pos * inv_freq) duplicated over both halves: [seqLen, headDim] (row-major). */
  cos: Float32Array;
  /** sin(pos * inv_freq) duplicated over both halves: [seqLen, headDim]. */
  sin: Float32Array;
}

/**
 * cos / sin tables for positions offset .. offset + seqLen - 1, as HF's LlamaRotaryEmbedding
 * computes them (freqs = pos * inv_freq in float32, emb = cat(freqs, freqs)).
 */
export function ropeTables(
  config: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>,
  seqLen: number,
  offset = 0,
): RopeTables {
  const inv = ropeInvFreq(config);
  const hd = config.headDim;
  const half = hd / 2;
  const cos = new Float32Array(seqLen * hd);
  const sin = new Float32Array(seqLen * hd);
  for (let t = 0; t < seqLen; t++) {
    const pos = t + offset;
    for (let i = 0; i < half; i++) {
      const a = f(pos * inv[i]!);
      const c = Math.cos(a);
      const s = Math.sin(a);
      cos[t * hd + i] = c;
      cos[t * hd + half + i] = c;
      sin[t * hd + i] = s;
      sin[t * hd + half + i] = s;
    }
  }
  return { cos, sin };
}

/**
 * Permute the rows of a [heads * headDim, cols] matrix between llama2.c's adjacent-pair RoPE layout
 * and HF's rotate_half layout. `toHf` true: row h*hd + 2i + j -> h*hd + j*hd/2 + i (load);
 * false: the inverse (export). Returns a new array.
 */
export function permuteRopeRows<T extends Float32Array | Uint16Array>(
  data: T,
  heads: number,
  headDim: number,
  cols: number,
  toHf: boolean,
): T {
  if (data.length !== heads * headDim * cols) {
    throw new RangeError(
      `permuteRopeRows: ${data.length} elements is not ${heads} heads x ${headDim} x ${cols} columns`,
    );
  }
  const out = (
    data instanceof Float32Array ? new Float32Array(data.length) : new Uint16Array(data.length)
  ) as T;
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const adjacent = h * headDim + 2 * i + j;
        const rotateHalf = h * headDim + j * half + i;
        const [src, dst] = toHf ? [adjacent, rotateHalf] : [rotateHalf, adjacent];
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}
