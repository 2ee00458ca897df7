/**
 * llama2.c checkpoints (Karpathy's run.c format).
 *
 * Legacy (version 0) layout, all little-endian: 7 int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier is stored separately),
 * then float32 token_embedding[vocab, dim], rms_att[L, dim], wq[L, dim, dim], wk[L, kv_dim, dim],
 * wv[L, kv_dim, dim], wo[L, dim, dim], rms_ffn[L, dim], w1[L, hidden, dim], w2[L, dim, hidden],
 * w3[L, hidden, dim], rms_final[dim], freq_cis_real[seq_len, head_size / 2], freq_cis_imag[...]
 * (unused), and wcls[vocab, dim] when unshared.
 *
 * The "ak42" version 1 export (256-byte header, fp32, norms first, no freq_cis) is read too;
 * version 2 (int8 quantized) is rejected.
 *
 * llama2.c's RoPE rotates adjacent pairs (2i, 2i+1); HF's rotate_half pairs (i, i + head_dim / 2).
 * wq / wk rows are permuted on load (per head, row 2i + j -> row j * head_dim / 2 + i) and back on
 * save, so the loaded checkpoint computes the same function in the HF convention.
 */
import type { FileHandle } from 'node:fs/promises';
import { toFloat32Data } from '@moreau/core';
import { isPruned, type LlamaConfig, validateLlamaConfig } from '../llama/config.js';
import { permuteRopeRows } from '../llama/rope.js';
import {
  type Checkpoint,
  type LoadCheckpointOptions,
  validateCheckpointTensors,
  validateSources,
} from './checkpoint.js';
import { FormatError } from './errors.js';
import { assertLittleEndianHost, openForRead, readExactly, writeAll, writeFileAtomic } from './io.js';
import { type FileStamp, materializeTensors, stampOf, type TensorSource } from './stored.js';
import { dataBytes } from './tensor.js';

/** The seven header integers (vocabSize already made positive). */
export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  version: 0 | 1;
}

const V1_MAGIC = 0x616b3432; // "ak42"
const V1_HEADER_BYTES = 256;

function checkHeader(file: string, h: Llama2cHeader): void {
  const fields: [string, number][] = [
    ['dim', h.dim],
    ['hidden_dim', h.hiddenDim],
    ['n_layers', h.nLayers],
    ['n_heads', h.nHeads],
    ['n_kv_heads', h.nKvHeads],
    ['vocab_size', h.vocabSize],
    ['seq_len', h.seqLen],
  ];
  // A header whose fields cannot describe a model means the file is something else (text, another
  // format): say so first, then why.
  const notOne = (why: string): never => {
    throw new FormatError(file, `not a llama2.c checkpoint: ${why}`);
  };
  for (const [k, v] of fields) {
    if (!(v > 0)) notOne(`header ${k} must be positive, got ${v}`);
  }
  if (h.dim % h.nHeads !== 0) notOne(`header dim ${h.dim} is not divisible by n_heads ${h.nHeads}`);
  if (h.nHeads % h.nKvHeads !== 0)
    notOne(`header n_heads ${h.nHeads} is not a multiple of n_kv_heads ${h.nKvHeads}`);
  if ((h.dim / h.nHeads) % 2 !== 0) notOne(`head size ${h.dim / h.nHeads} (dim / n_heads) is odd`);
  const floats = llama2cFileSize(h) / 4;
  if (!Number.isSafeInteger(floats) || floats > MAX_FILE_FLOATS) {
    notOne(
      `the header (dim ${h.dim}, n_layers ${h.nLayers}, vocab_size ${h.vocabSize}) describes ${floats.toExponential(2)} weights`,
    );
  }
}

/** More weights than any file could hold (2^50 floats: 4 PiB). */
const MAX_FILE_FLOATS = 2 ** 50;

interface Block {
  name: string; // HF name pattern with {i} for the layer
  rows: number;
  cols: number; // 1-D tensors: rows = 1, shape [cols]
  perLayer: boolean;
  rope?: number; // heads to permute
}

function layout(h: Llama2cHeader): { blocks: Block[]; freqFloats: number } {
  const hd = h.dim / h.nHeads;
  const kvDim = h.nKvHeads * hd;
  const p = 'model.layers.{i}';
  const emb: Block = { name: 'model.embed_tokens.weight', rows: h.vocabSize, cols: h.dim, perLayer: false };
  const attNorm: Block = { name: `${p}.input_layernorm.weight`, rows: 1, cols: h.dim, perLayer: true };
  const ffnNorm: Block = {
    name: `${p}.post_attention_layernorm.weight`,
    rows: 1,
    cols: h.dim,
    perLayer: true,
  };
  const final: Block = { name: 'model.norm.weight', rows: 1, cols: h.dim, perLayer: false };
  const wq: Block = {
    name: `${p}.self_attn.q_proj.weight`,
    rows: h.dim,
    cols: h.dim,
    perLayer: true,
    rope: h.nHeads,
  };
  const wk: Block = {
    name: `${p}.self_attn.k_proj.weight`,
    rows: kvDim,
    cols: h.dim,
    perLayer: true,
    rope: h.nKvHeads,
  };
  const wv: Block = { name: `${p}.self_attn.v_proj.weight`, rows: kvDim, cols: h.dim, perLayer: true };
  const wo: Block = { name: `${p}.self_attn.o_proj.weight`, rows: h.dim, cols: h.dim, perLayer: true };
  const w1: Block = { name: `${p}.mlp.gate_proj.weight`, rows: h.hiddenDim, cols: h.dim, perLayer: true };
  const w2: Block = { name: `${p}.mlp.down_proj.weight`, rows: h.dim, cols: h.hiddenDim, perLayer: true };
  const w3: Block = { name: `${p}.mlp.up_proj.weight`, rows: h.hiddenDim, cols: h.dim, perLayer: true };
  const cls: Block = { name: 'lm_head.weight', rows: h.vocabSize, cols: h.dim, perLayer: false };
  if (h.version === 0) {
    // freq_cis_real and freq_cis_imag sit between rms_final and the classifier.
    return {
      blocks: [
        emb,
        attNorm,
        wq,
        wk,
        wv,
        wo,
        ffnNorm,
        w1,
        w2,
        w3,
        final,
        ...(h.sharedClassifier ? [] : [cls]),
      ],
      freqFloats: 2 * h.seqLen * (hd / 2),
    };
  }
  return {
    blocks: [attNorm, ffnNorm, final, emb, wq, wk, wv, wo, w1, w2, w3, ...(h.sharedClassifier ? [] : [cls])],
    freqFloats: 0,
  };
}

function blockFloats(b: Block, nLayers: number): number {
  return b.rows * b.cols * (b.perLayer ? nLayers : 1);
}

/** Expected total file size in bytes for a header. */
export function llama2cFileSize(h: Llama2cHeader): number {
  const { blocks, freqFloats } = layout(h);
  let floats = freqFloats;
  for (const b of blocks) floats += blockFloats(b, h.nLayers);
  return (h.version === 0 ? 28 : V1_HEADER_BYTES) + 4 * floats;
}

async function readHeader(fh: FileHandle, file: string, size: number): Promise<Llama2cHeader> {
  if (size < 28) {
    throw new FormatError(
      file,
      `truncated: ${size} bytes, a llama2.c checkpoint needs at least 28 for its header`,
    );
  }
  const buf = new Uint8Array(Math.min(size, V1_HEADER_BYTES));
  await readExactly(fh, file, buf, 0, 'header');
  const dv = new DataView(buf.buffer);
  if (dv.getUint32(0, true) === V1_MAGIC) {
    const version = dv.getInt32(4, true);
    if (version !== 1) {
      throw new FormatError(
        file,
        `llama2.c export version ${version} is not supported (only the legacy format and version 1 fp32)`,
      );
    }
    if (size < V1_HEADER_BYTES)
      throw new FormatError(file, `truncated: ${size} bytes, the version 1 header needs 256`);
    return { ...headerInts(dv, 8), sharedClassifier: dv.getUint8(36) !== 0, version: 1 };
  }
  // Legacy: a negative vocab_size means the classifier is not shared with the embedding.
  const h = headerInts(dv, 0);
  return { ...h, vocabSize: Math.abs(h.vocabSize), sharedClassifier: h.vocabSize > 0, version: 0 };
}

/** The seven int32 header fields, dim .. seq_len, from byte `at`. */
function headerInts(dv: DataView, at: number): Omit<Llama2cHeader, 'sharedClassifier' | 'version'> {
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = Array.from({ length: 7 }, (_, k) =>
    dv.getInt32(at + 4 * k, true),
  ) as [number, number, number, number, number, number, number];
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen };
}

/** The LlamaConfig a llama2.c header describes (eps 1e-5, theta 10000, bos 1, eos 2, as run.c). */
export function llama2cConfig(h: Llama2cHeader): LlamaConfig {
  return {
    vocabSize: h.vocabSize,
    hiddenSize: h.dim,
    intermediateSize: h.hiddenDim,
    numHiddenLayers: h.nLayers,
    numAttentionHeads: h.nHeads,
    numKeyValueHeads: h.nKvHeads,
    headDim: h.dim / h.nHeads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: h.seqLen,
    tieWordEmbeddings: h.sharedClassifier,
    bosTokenId: 1,
    eosTokenId: 2,
  };
}

/** Read only the header of a llama2.c checkpoint (validated, including the file size). */
export async function readLlama2cHeader(file: string): Promise<Llama2cHeader> {
  const { fh, size } = await openForRead(file);
  try {
    const h = await readHeader(fh, file, size);
    checkHeader(file, h);
    checkSize(file, h, size);
    return h;
  } finally {
    await fh.close();
  }
}

function checkSize(file: string, h: Llama2cHeader, size: number): void {
  const expected = llama2cFileSize(h);
  if (size === expected) return;
  const desc =
    `dim ${h.dim}, hidden_dim ${h.hiddenDim}, n_layers ${h.nLayers}, n_heads ${h.nHeads}, n_kv_heads ${h.nKvHeads}, ` +
    `vocab_size ${h.sharedClassifier ? '' : '-'}${h.vocabSize}, seq_len ${h.seqLen}`;
  // A file far from the size its header implies is not a truncated checkpoint but something else.
  if (size < expected && expected <= 16 * size) {
    throw new FormatError(
      file,
      `truncated: the header (${desc}) implies ${expected} bytes but the file has ${size} bytes`,
    );
  }
  if (size < expected || size > 16 * expected) {
    throw new FormatError(
      file,
      `not a llama2.c checkpoint: its header (${desc}) implies ${expected} bytes but the file has ${size} bytes`,
    );
  }
  throw new FormatError(
    file,
    `the header (${desc}) implies ${expected} bytes but the file has ${size} bytes (${size - expected} extra)`,
  );
}

/**
 * Load a llama2.c checkpoint as HF-named tensors (wq / wk permuted to rotate_half). Only the header
 * is read at load; each tensor's data (permuted, converted by `options.dtype`) is read now or
 * lazily by `options.lazy`.
 */
export async function loadLlama2c(file: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  assertLittleEndianHost(file);
  const { fh, size } = await openForRead(file);
  let h: Llama2cHeader;
  let stamp: FileStamp;
  try {
    stamp = await stampOf(fh);
    h = await readHeader(fh, file, size);
  } finally {
    await fh.close();
  }
  checkHeader(file, h);
  checkSize(file, h, size);
  const config = llama2cConfig(h);
  const hd = config.headDim;
  const { blocks } = layout(h);
  const sources = new Map<string, TensorSource>();
  let pos = h.version === 0 ? 28 : V1_HEADER_BYTES;
  for (const b of blocks) {
    if (h.version === 0 && b.name === 'lm_head.weight') pos += 4 * 2 * h.seqLen * (hd / 2); // skip freq_cis
    const layers = b.perLayer ? h.nLayers : 1;
    for (let l = 0; l < layers; l++) {
      const n = b.rows * b.cols;
      const name = b.name.replace('{i}', String(l));
      const heads = b.rope;
      const transform =
        heads === undefined
          ? undefined
          : (data: Float32Array | Uint16Array) => permuteRopeRows(data, heads, hd, b.cols, true);
      sources.set(name, {
        stored: {
          file,
          name,
          dtype: 'float32',
          shape: b.rows === 1 ? [b.cols] : [b.rows, b.cols],
          offset: pos,
          byteLength: 4 * n,
          stamp,
        },
        recipe: { ...(transform ? { transform } : {}), ...(options.dtype ? { dtype: options.dtype } : {}) },
      });
      pos += 4 * n;
    }
  }
  const ordered = validateSources(file, config, sources);
  const { tensors } = await materializeTensors(ordered, options.lazy);
  return { config, tensors, format: 'llama2c', sourceDtype: 'F32' };
}

/**
 * Save a checkpoint in llama2.c's legacy format (what run.c reads). The format cannot express
 * everything a LlamaConfig can, so these are errors rather than silent changes: per-layer sizes
 * (pruned models), head_dim * heads != hidden, rms_norm_eps other than 1e-5, rope_theta other than
 * 10000, RoPE scaling. Tensors are written as float32.
 */
export async function saveLlama2c(file: string, ckpt: Checkpoint): Promise<void> {
  assertLittleEndianHost(file);
  const c = ckpt.config;
  validateLlamaConfig(c, file);
  validateCheckpointTensors(file, c, ckpt.tensors);
  const fail = (detail: string): never => {
    throw new FormatError(file, `cannot save as llama2.c: ${detail}`);
  };
  if (isPruned(c)) fail('the model has per-layer sizes (layerHeadNum / layerKvHeadNum / layerInterSize)');
  if (c.headDim * c.numAttentionHeads !== c.hiddenSize) {
    fail(`headDim ${c.headDim} * numAttentionHeads ${c.numAttentionHeads} != hiddenSize ${c.hiddenSize}`);
  }
  if (Math.fround(c.rmsNormEps) !== Math.fround(1e-5))
    fail(`rmsNormEps is ${c.rmsNormEps}; run.c hardcodes 1e-5`);
  if (c.ropeTheta !== 10000) fail(`ropeTheta is ${c.ropeTheta}; run.c hardcodes 10000`);
  if (c.ropeScaling) fail('RoPE scaling is not supported by run.c');
  const h: Llama2cHeader = {
    dim: c.hiddenSize,
    hiddenDim: c.intermediateSize,
    nLayers: c.numHiddenLayers,
    nHeads: c.numAttentionHeads,
    nKvHeads: c.numKeyValueHeads,
    vocabSize: c.vocabSize,
    seqLen: c.maxPositionEmbeddings,
    sharedClassifier: c.tieWordEmbeddings,
    version: 0,
  };
  const header = new Uint8Array(28);
  const dv = new DataView(header.buffer);
  const ints = [
    h.dim,
    h.hiddenDim,
    h.nLayers,
    h.nHeads,
    h.nKvHeads,
    h.sharedClassifier ? h.vocabSize : -h.vocabSize,
    h.seqLen,
  ];
  ints.forEach((v, k) => {
    dv.setInt32(4 * k, v, true);
  });
  const hd = c.headDim;
  const { blocks } = layout(h);
  await writeFileAtomic(file, async (fh) => {
    await writeAll(fh, header);
    for (const b of blocks) {
      if (b.name === 'lm_head.weight') await writeAll(fh, dataBytes(freqCis(h.seqLen, hd, c.ropeTheta)));
      const layers = b.perLayer ? h.nLayers : 1;
      for (let l = 0; l < layers; l++) {
        const name = b.name.replace('{i}', String(l));
        let data = toFloat32Data(ckpt.tensors.get(name)!);
        if (b.rope !== undefined) data = permuteRopeRows(data, b.rope, hd, b.cols, false);
        await writeAll(fh, dataBytes(data));
      }
    }
    if (h.sharedClassifier) await writeAll(fh, dataBytes(freqCis(h.seqLen, hd, c.ropeTheta)));
  });
}

/** freq_cis_real followed by freq_cis_imag, [seqLen, headDim / 2] each (unused by run.c, kept for layout). */
function freqCis(seqLen: number, headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(2 * seqLen * half);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      const freq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headDim)));
      const angle = Math.fround(t * freq);
      out[t * half + i] = Math.cos(angle);
      out[seqLen * half + t * half + i] = Math.sin(angle);
    }
  }
  return out;
}
