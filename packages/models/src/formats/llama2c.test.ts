import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type HostTensor, hostTensorsEqual } from '@moreau/core';
import { formatError, haveShared, STORIES_BIN, sharedPath, useScratchDir } from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { permuteRopeRows } from '../llama/rope.js';
import type { Checkpoint } from './checkpoint.js';
import { llama2cFileSize, loadLlama2c, readLlama2cHeader, saveLlama2c } from './llama2c.js';

const HAVE = haveShared('llama2.c checkpoint tests', STORIES_BIN);
const BIN = sharedPath(STORIES_BIN);

const dir = useScratchDir();

/** Apply RoPE to one head vector in the llama2.c convention (adjacent pairs). */
function ropeAdjacent(q: Float64Array, pos: number, theta: number): Float64Array {
  const hd = q.length;
  const out = new Float64Array(hd);
  for (let i = 0; i < hd / 2; i++) {
    const a = pos * theta ** (-(2 * i) / hd);
    const [x, y] = [q[2 * i]!, q[2 * i + 1]!];
    out[2 * i] = x * Math.cos(a) - y * Math.sin(a);
    out[2 * i + 1] = x * Math.sin(a) + y * Math.cos(a);
  }
  return out;
}

/** Apply RoPE in HF's rotate_half convention (pairs i, i + hd/2). */
function ropeRotateHalf(q: Float64Array, pos: number, theta: number): Float64Array {
  const hd = q.length;
  const h = hd / 2;
  const out = new Float64Array(hd);
  for (let i = 0; i < h; i++) {
    const a = pos * theta ** (-(2 * i) / hd);
    const [x, y] = [q[i]!, q[i + h]!];
    out[i] = x * Math.cos(a) - y * Math.sin(a);
    out[i + h] = x * Math.sin(a) + y * Math.cos(a);
  }
  return out;
}

function matvec(w: HostTensor, x: Float64Array, rowStart: number, rows: number): Float64Array {
  const cols = w.shape[1]!;
  const d = w.data as Float32Array;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += d[(rowStart + r) * cols + c]! * x[c]!;
    out[r] = s;
  }
  return out;
}

describe.skipIf(!HAVE)('llama2.c checkpoints (stories260K)', () => {
  let ckpt: Checkpoint;
  beforeAll(async () => {
    ckpt = await loadLlama2c(BIN);
  });

  it('reads the config and shapes of stories260K', () => {
    const c = ckpt.config;
    expect(c).toMatchObject({
      hiddenSize: 64,
      intermediateSize: 172,
      numHiddenLayers: 5,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      headDim: 8,
      vocabSize: 512,
      maxPositionEmbeddings: 512,
      tieWordEmbeddings: true,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      bosTokenId: 1,
      eosTokenId: 2,
    });
    expect(ckpt.format).toBe('llama2c');
    expect(ckpt.sourceDtype).toBe('F32');
    expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
    expect(ckpt.tensors.size).toBe(2 + 5 * 9);
    const shape = (n: string) => ckpt.tensors.get(n)!.shape;
    expect(shape('model.embed_tokens.weight')).toEqual([512, 64]);
    expect(shape('model.layers.0.self_attn.q_proj.weight')).toEqual([64, 64]);
    expect(shape('model.layers.4.self_attn.k_proj.weight')).toEqual([32, 64]);
    expect(shape('model.layers.2.self_attn.v_proj.weight')).toEqual([32, 64]);
    expect(shape('model.layers.2.self_attn.o_proj.weight')).toEqual([64, 64]);
    expect(shape('model.layers.1.mlp.gate_proj.weight')).toEqual([172, 64]);
    expect(shape('model.layers.1.mlp.up_proj.weight')).toEqual([172, 64]);
    expect(shape('model.layers.1.mlp.down_proj.weight')).toEqual([64, 172]);
    expect(shape('model.layers.3.input_layernorm.weight')).toEqual([64]);
    expect(shape('model.norm.weight')).toEqual([64]);
  });

  it('permutes wq / wk rows: rotate_half on the loaded weights equals adjacent-pair RoPE on the raw ones', async () => {
    const raw = await readFile(BIN);
    const f = new Float32Array(raw.buffer.slice(raw.byteOffset + 28, raw.byteOffset + raw.length));
    const D = 64;
    const off = 512 * D + 5 * D; // token_embedding, rms_att
    const rawWq0: HostTensor = { dtype: 'float32', shape: [D, D], data: f.slice(off, off + D * D) };
    const wkOff = off + 5 * D * D;
    const rawWk0: HostTensor = { dtype: 'float32', shape: [32, D], data: f.slice(wkOff, wkOff + 32 * D) };
    const x = Float64Array.from({ length: D }, (_, i) => Math.sin(i * 1.3) + 0.1 * i);
    for (const [raw0, name, heads] of [
      [rawWq0, 'model.layers.0.self_attn.q_proj.weight', 8],
      [rawWk0, 'model.layers.0.self_attn.k_proj.weight', 4],
    ] as const) {
      const hf = ckpt.tensors.get(name)!;
      for (let h = 0; h < heads; h++) {
        const pos = 37;
        const a = ropeAdjacent(matvec(raw0, x, h * 8, 8), pos, 10000);
        const b = ropeRotateHalf(matvec(hf, x, h * 8, 8), pos, 10000);
        // Same values, laid out adjacent (2i, 2i+1) vs halves (i, i+4): scores q.k are therefore equal.
        for (let i = 0; i < 4; i++) {
          expect(b[i]).toBeCloseTo(a[2 * i]!, 10);
          expect(b[i + 4]).toBeCloseTo(a[2 * i + 1]!, 10);
        }
      }
    }
  });

  it('saves back to the original bytes (freq_cis recomputed to float32 precision)', async () => {
    const out = join(dir(), 'again.bin');
    await saveLlama2c(out, ckpt);
    const a = await readFile(BIN);
    const b = await readFile(out);
    expect(b.length).toBe(a.length);
    const freqStart =
      28 + 4 * (512 * 64 + 5 * 64 + 5 * 64 * 64 * 2 + 5 * 32 * 64 * 2 + 5 * 64 + 5 * 172 * 64 * 3 + 64);
    expect(Buffer.compare(a.subarray(0, freqStart), b.subarray(0, freqStart))).toBe(0);
    const fa = new Float32Array(a.buffer.slice(a.byteOffset + freqStart, a.byteOffset + a.length));
    const fb = new Float32Array(b.buffer.slice(b.byteOffset + freqStart, b.byteOffset + b.length));
    let maxDiff = 0;
    for (let i = 0; i < fa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fa[i]! - fb[i]!));
    expect(maxDiff).toBeLessThan(1e-4);
    const back = await loadLlama2c(out);
    for (const [n, t] of ckpt.tensors) expect(hostTensorsEqual(back.tensors.get(n)!, t), n).toBe(true);
  });

  it('round-trips an unshared classifier (negative vocab_size)', async () => {
    const emb = ckpt.tensors.get('model.embed_tokens.weight')!;
    const head: HostTensor = { ...emb, data: (emb.data as Float32Array).map((v) => v * 2) };
    const untied: Checkpoint = {
      ...ckpt,
      config: { ...ckpt.config, tieWordEmbeddings: false },
      tensors: new Map([...ckpt.tensors, ['lm_head.weight', head]]),
    };
    const out = join(dir(), 'untied.bin');
    await saveLlama2c(out, untied);
    const bytes = await readFile(out);
    expect(new DataView(bytes.buffer, bytes.byteOffset).getInt32(20, true)).toBe(-512);
    const h = await readLlama2cHeader(out);
    expect(h.sharedClassifier).toBe(false);
    expect(bytes.length).toBe(llama2cFileSize(h));
    const back = await loadLlama2c(out);
    expect(back.config.tieWordEmbeddings).toBe(false);
    expect(hostTensorsEqual(back.tensors.get('lm_head.weight')!, head)).toBe(true);
  });

  it('reads the version 1 ("ak42") export layout', async () => {
    const c = ckpt.config;
    const header = new Uint8Array(256);
    const dv = new DataView(header.buffer);
    dv.setUint32(0, 0x616b3432, true);
    dv.setInt32(4, 1, true);
    [64, 172, 5, 8, 4, 512, 512].forEach((v, k) => {
      dv.setInt32(8 + 4 * k, v, true);
    });
    dv.setUint8(36, 1);
    const L = c.numHiddenLayers;
    const get = (n: string) => ckpt.tensors.get(n)!.data as Float32Array;
    const layers = (part: string) =>
      Array.from({ length: L }, (_, i) => get(`model.layers.${i}.${part}.weight`));
    const unpermute = (part: string, heads: number) =>
      layers(part).map((d) => permuteRopeRows(d, heads, 8, 64, false));
    const parts: Float32Array[] = [
      ...layers('input_layernorm'),
      ...layers('post_attention_layernorm'),
      get('model.norm.weight'),
      get('model.embed_tokens.weight'),
      ...unpermute('self_attn.q_proj', 8),
      ...unpermute('self_attn.k_proj', 4),
      ...layers('self_attn.v_proj'),
      ...layers('self_attn.o_proj'),
      ...layers('mlp.gate_proj'),
      ...layers('mlp.down_proj'),
      ...layers('mlp.up_proj'),
    ];
    const file = join(dir(), 'v1.bin');
    await writeFile(
      file,
      Buffer.concat([header, ...parts.map((p) => new Uint8Array(p.buffer, p.byteOffset, p.byteLength))]),
    );
    const back = await loadLlama2c(file);
    expect(back.config).toEqual(c);
    for (const [n, t] of ckpt.tensors) expect(hostTensorsEqual(back.tensors.get(n)!, t), n).toBe(true);
  });

  it('rejects a truncated file naming expected vs actual bytes', async () => {
    const bytes = await readFile(BIN);
    const file = join(dir(), 'truncated.bin');
    await writeFile(file, bytes.subarray(0, bytes.length - 100));
    const e = await formatError(loadLlama2c(file));
    expect(e.file).toBe(file);
    expect(e.detail).toMatch(
      /truncated: the header \(dim 64, .*vocab_size 512, seq_len 512\) implies 1056540 bytes but the file has 1056440 bytes/,
    );
    const tiny = join(dir(), 'tiny.bin');
    await writeFile(tiny, bytes.subarray(0, 10));
    expect((await formatError(loadLlama2c(tiny))).detail).toMatch(/truncated: 10 bytes/);
    const extra = join(dir(), 'extra.bin');
    await writeFile(extra, Buffer.concat([bytes, new Uint8Array(8)]));
    expect((await formatError(loadLlama2c(extra))).detail).toMatch(
      /implies 1056540 bytes but the file has 1056548 bytes \(8 extra\)/,
    );
  });

  it('rejects headers that are not llama2.c, and configs it cannot express', async () => {
    const bad = join(dir(), 'bad.bin');
    const h = new Int32Array([64, 172, 5, 7, 4, 512, 512]);
    await writeFile(bad, new Uint8Array(h.buffer));
    expect((await formatError(loadLlama2c(bad))).detail).toMatch(
      /header dim 64 is not divisible by n_heads 7/,
    );
    const out = join(dir(), 'nope.bin');
    const eps = await formatError(
      saveLlama2c(out, { ...ckpt, config: { ...ckpt.config, rmsNormEps: 1e-6 } }),
    );
    expect(eps.detail).toMatch(/cannot save as llama2.c: rmsNormEps is 0.000001; run.c hardcodes 1e-5/);
    const pruned = await formatError(
      saveLlama2c(out, { ...ckpt, config: { ...ckpt.config, layerInterSize: [172, 172, 172, 172, 100] } }),
    );
    expect(pruned.detail).toMatch(
      /tensor model.layers.4.mlp.gate_proj.weight has shape \[172, 64\], expected \[100, 64\]/,
    );
    expect((await readdir(dir())).filter((f) => f.includes('.tmp-') || f === 'nope.bin')).toEqual([]);
  });
});

describe('permuteRopeRows', () => {
  it('maps row 2i + j of each head to row j * hd/2 + i and back', () => {
    const hd = 6;
    const heads = 2;
    const data = Float32Array.from({ length: heads * hd }, (_, r) => r); // one column: value = source row
    const hf = permuteRopeRows(data, heads, hd, 1, true);
    expect([...hf]).toEqual([0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11]);
    expect([...permuteRopeRows(hf, heads, hd, 1, false)]).toEqual([...data]);
    const u16 = permuteRopeRows(Uint16Array.from(data), heads, hd, 1, true);
    expect(u16).toBeInstanceOf(Uint16Array);
    expect(() => permuteRopeRows(data, 3, hd, 1, true)).toThrow(/12 elements/);
  });
});
