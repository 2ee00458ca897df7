import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type HostTensor, hostTensorsEqual } from '@moreau/core';
import {
  formatError,
  haveShared,
  STORIES_BIN,
  sharedPath,
  TINY_GGUF,
  useScratchDir,
} from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Checkpoint } from '../checkpoint.js';
import { loadLlama2c } from '../llama2c.js';
import { ggufToHfName, hfToGgufName, loadGguf, saveGguf } from './llama.js';
import { openGguf, readGgufInfo } from './read.js';
import { ggufTokenizerData } from './tokenizer.js';
import { writeGguf } from './write.js';

const HAVE = haveShared('GGUF reader tests', TINY_GGUF);
const HAVE_STORIES = haveShared('GGUF export of stories260K', STORIES_BIN);
const GGUF = sharedPath(TINY_GGUF);

const dir = useScratchDir();

const llamaMeta = [
  ['general.architecture', { type: 'STRING', value: 'llama' }],
  ['llama.embedding_length', { type: 'UINT32', value: 4 }],
  ['llama.block_count', { type: 'UINT32', value: 1 }],
  ['llama.feed_forward_length', { type: 'UINT32', value: 8 }],
  ['llama.attention.head_count', { type: 'UINT32', value: 2 }],
  ['llama.attention.layer_norm_rms_epsilon', { type: 'FLOAT32', value: 1e-5 }],
] as const;

describe.skipIf(!HAVE)('GGUF reader on llama-2-tiny-random.gguf', () => {
  let ckpt: Checkpoint;
  beforeAll(async () => {
    ckpt = await loadGguf(GGUF);
  });

  it('parses metadata of every type, tensor infos and alignment', async () => {
    const g = await readGgufInfo(GGUF);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.dataOffset % 32).toBe(0);
    expect(g.metadata.get('general.architecture')).toBe('llama');
    expect(g.metadataTypes.get('llama.attention.layer_norm_rms_epsilon')).toBe('FLOAT32');
    expect(g.metadataTypes.get('tokenizer.ggml.tokens')).toBe('ARRAY<STRING>');
    expect(g.metadataTypes.get('tokenizer.ggml.token_type')).toBe('ARRAY<INT32>');
    const q = g.tensors.get('blk.0.attn_q.weight')!;
    expect(q.typeName).toBe('F16');
    expect(g.tensors.get('token_embd.weight')!.dims).toEqual([8, 32000]); // innermost first
    expect(g.tensors.get('token_embd.weight')!.shape).toEqual([32000, 8]);
    expect(g.tensors.get('output_norm.weight')!.typeName).toBe('F32');
  });

  it('maps llama.* metadata to LlamaConfig and tensors to HF names and shapes', () => {
    expect(ckpt.format).toBe('gguf');
    expect(ckpt.sourceDtype).toBe('F16+F32');
    expect(ckpt.config).toEqual({
      vocabSize: 32000,
      hiddenSize: 8,
      intermediateSize: 32,
      numHiddenLayers: 1,
      numAttentionHeads: 2,
      numKeyValueHeads: 2,
      headDim: 4,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings: 4096,
      tieWordEmbeddings: false,
      bosTokenId: 1,
      eosTokenId: 2,
    });
    const shape = (n: string) => ckpt.tensors.get(n)!.shape;
    expect(shape('model.embed_tokens.weight')).toEqual([32000, 8]);
    expect(shape('lm_head.weight')).toEqual([32000, 8]);
    expect(shape('model.layers.0.mlp.gate_proj.weight')).toEqual([32, 8]);
    expect(shape('model.layers.0.mlp.down_proj.weight')).toEqual([8, 32]);
    expect(ckpt.tensors.get('model.layers.0.self_attn.q_proj.weight')!.dtype).toBe('float16');
    expect(ckpt.tensors.get('model.norm.weight')!.dtype).toBe('float32');
  });

  it('undoes llama.cpp q/k row permutation (per head: GGUF row 2i + j -> HF row j * hd/2 + i)', async () => {
    const g = await openGguf(GGUF);
    try {
      for (const [gname, hname] of [
        ['blk.0.attn_q.weight', 'model.layers.0.self_attn.q_proj.weight'],
        ['blk.0.attn_k.weight', 'model.layers.0.self_attn.k_proj.weight'],
      ] as const) {
        const raw = (await g.read(gname)).data as Uint16Array;
        const hf = ckpt.tensors.get(hname)!.data as Uint16Array;
        const hd = 4;
        const cols = 8;
        for (let h = 0; h < 2; h++) {
          for (let i = 0; i < hd / 2; i++) {
            for (let j = 0; j < 2; j++) {
              const src = (h * hd + 2 * i + j) * cols;
              const dst = (h * hd + j * (hd / 2) + i) * cols;
              expect([...hf.subarray(dst, dst + cols)]).toEqual([...raw.subarray(src, src + cols)]);
            }
          }
        }
      }
      const v = await g.read('blk.0.attn_v.weight');
      expect(hostTensorsEqual(v, ckpt.tensors.get('model.layers.0.self_attn.v_proj.weight')!)).toBe(true);
    } finally {
      await g.close();
    }
  });

  it('exposes the embedded Llama-2 vocabulary', () => {
    return readGgufInfo(GGUF).then((g) => {
      const t = ggufTokenizerData(g);
      expect(t.model).toBe('llama');
      expect(t.tokens.length).toBe(32000);
      expect(t.tokens[15043]).toBe('\u2581Hello');
      expect(t.tokenTypes[1]).toBe(3);
      expect(t.tokenTypes[3]).toBe(6);
      expect(t.bosId).toBe(1);
      expect(t.eosId).toBe(2);
      expect(t.unkId).toBe(0);
      expect(t.addSpacePrefix).toBe(true);
    });
  });

  it('saveGguf -> loadGguf round-trips tensors, config and vocabulary exactly', async () => {
    const out = join(dir(), 'again.gguf');
    const tokenizer = ggufTokenizerData(await readGgufInfo(GGUF));
    await saveGguf(out, ckpt, { tokenizer });
    const back = await loadGguf(out);
    expect(back.config).toEqual(ckpt.config);
    for (const [n, t] of ckpt.tensors) expect(hostTensorsEqual(back.tensors.get(n)!, t), n).toBe(true);
    const tok2 = ggufTokenizerData(await readGgufInfo(out));
    expect(tok2.tokens).toEqual(tokenizer.tokens);
    expect([...tok2.scores]).toEqual([...tokenizer.scores]);
    // The tensor bytes on disk equal the original file's (same permutation, same layout rules).
    const g1 = await openGguf(GGUF);
    const g2 = await openGguf(out);
    try {
      for (const name of g1.tensors.keys()) {
        expect(hostTensorsEqual(await g1.read(name), await g2.read(name)), name).toBe(true);
      }
    } finally {
      await g1.close();
      await g2.close();
    }
  });
});

describe('GGUF writer / reader on constructed files', () => {
  it('maps tensor names both ways', () => {
    expect(ggufToHfName('blk.12.ffn_down.weight')).toBe('model.layers.12.mlp.down_proj.weight');
    expect(ggufToHfName('blk.0.attn_output.weight')).toBe('model.layers.0.self_attn.o_proj.weight');
    expect(ggufToHfName('token_embd.weight')).toBe('model.embed_tokens.weight');
    expect(ggufToHfName('blk.0.attn_qkv.weight')).toBeUndefined();
    expect(hfToGgufName('model.layers.3.post_attention_layernorm.weight')).toBe('blk.3.ffn_norm.weight');
    expect(hfToGgufName('lm_head.weight')).toBe('output.weight');
  });

  it('reads every metadata value type, including nested arrays and 64-bit values', async () => {
    const file = join(dir(), 'types.gguf');
    await writeGguf(
      file,
      [
        ['u8', { type: 'UINT8', value: 255 }],
        ['i8', { type: 'INT8', value: -128 }],
        ['u16', { type: 'UINT16', value: 65535 }],
        ['i16', { type: 'INT16', value: -32768 }],
        ['u32', { type: 'UINT32', value: 4294967295 }],
        ['i32', { type: 'INT32', value: -2147483648 }],
        ['f32', { type: 'FLOAT32', value: 0.5 }],
        ['f64', { type: 'FLOAT64', value: Math.PI }],
        ['b', { type: 'BOOL', value: true }],
        ['s', { type: 'STRING', value: 'héllo ▁' }],
        ['u64', { type: 'UINT64', value: 2n ** 64n - 1n }],
        ['i64', { type: 'INT64', value: -(2n ** 63n) }],
        ['arr', { type: 'ARRAY', itemType: 'INT32', value: [1, -2, 3] }],
        ['sarr', { type: 'ARRAY', itemType: 'STRING', value: ['a', '', 'ccc'] }],
        ['empty', { type: 'ARRAY', itemType: 'FLOAT32', value: [] }],
      ],
      [],
      { version: 2 },
    );
    const g = await readGgufInfo(file);
    expect(g.version).toBe(2);
    expect(Object.fromEntries(g.metadata)).toEqual({
      u8: 255,
      i8: -128,
      u16: 65535,
      i16: -32768,
      u32: 4294967295,
      i32: -2147483648,
      f32: 0.5,
      f64: Math.PI,
      b: true,
      s: 'héllo ▁',
      u64: 2n ** 64n - 1n,
      i64: -(2n ** 63n),
      arr: [1, -2, 3],
      sarr: ['a', '', 'ccc'],
      empty: [],
    });
    expect(g.metadataTypes.get('sarr')).toBe('ARRAY<STRING>');
  });

  it('honours general.alignment and F32 / F16 / BF16 tensors', async () => {
    const file = join(dir(), 'align.gguf');
    const t32: HostTensor = { dtype: 'float32', shape: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    const t16: HostTensor = {
      dtype: 'float16',
      shape: [3],
      data: Uint16Array.from([0x3c00, 0x4000, 0x4200]),
    };
    const tb: HostTensor = { dtype: 'bfloat16', shape: [1], data: Uint16Array.from([0x3f80]) };
    await writeGguf(
      file,
      [],
      [
        { name: 'a', tensor: t32 },
        { name: 'b', tensor: t16 },
        { name: 'c', tensor: tb },
      ],
      { alignment: 64 },
    );
    const g = await openGguf(file);
    try {
      expect(g.alignment).toBe(64);
      expect(g.tensors.get('a')!.dims).toEqual([2, 3]);
      for (const t of g.tensors.values()) expect((t.offset - g.dataOffset) % 64).toBe(0);
      expect(hostTensorsEqual(await g.read('a'), t32)).toBe(true);
      expect(hostTensorsEqual(await g.read('b'), t16)).toBe(true);
      expect(hostTensorsEqual(await g.read('c'), tb)).toBe(true);
      expect((await g.read('b', { dtype: 'float32' })).data).toEqual(Float32Array.from([1, 2, 3]));
    } finally {
      await g.close();
    }
  });

  it('rejects a wrong magic', async () => {
    const file = join(dir(), 'magic.gguf');
    await writeFile(file, new TextEncoder().encode('GGML\x03\x00\x00\x00 and then some bytes'));
    const e = await formatError(openGguf(file));
    expect(e.file).toBe(file);
    expect(e.detail).toMatch(/bad magic "GGML".*expected "GGUF"/);
  });

  it('rejects GGUF v1', async () => {
    const file = join(dir(), 'v1.gguf');
    const b = new Uint8Array(24);
    new DataView(b.buffer).setUint32(0, 0x46554747, true);
    new DataView(b.buffer).setUint32(4, 1, true);
    await writeFile(file, b);
    expect((await formatError(openGguf(file))).detail).toMatch(/GGUF version 1 is not supported/);
  });

  it('rejects quantized tensors naming the ggml type and the tensor', async () => {
    const file = join(dir(), 'q4.gguf');
    const f32 = (n: number): HostTensor => ({
      dtype: 'float32',
      shape: [n],
      data: new Float32Array(n).fill(1),
    });
    await writeGguf(
      file,
      [...llamaMeta],
      [
        { name: 'token_embd.weight', raw: { type: 0, dims: [4, 16], data: new Uint8Array(4 * 64) } },
        { name: 'blk.0.attn_norm.weight', tensor: f32(4) },
        { name: 'blk.0.attn_q.weight', raw: { type: 2, dims: [32, 4], data: new Uint8Array(4 * 18) } },
      ],
    );
    const e = await formatError(loadGguf(file));
    expect(e.file).toBe(file);
    expect(e.detail).toMatch(/tensor blk.0.attn_q.weight has ggml type Q4_0; only F32, F16 and BF16/);
    const g = await openGguf(file);
    try {
      expect((await formatError(g.read('blk.0.attn_q.weight'))).detail).toMatch(/ggml type Q4_0/);
    } finally {
      await g.close();
    }
  });

  it('rejects truncated files and misaligned offsets', async () => {
    const file = join(dir(), 'ok.gguf');
    await writeGguf(
      file,
      [['k', { type: 'STRING', value: 'v' }]],
      [{ name: 'w', tensor: { dtype: 'float32', shape: [16], data: new Float32Array(16) } }],
    );
    const bytes = await readFile(file);
    const cut = join(dir(), 'cut.gguf');
    await writeFile(cut, bytes.subarray(0, bytes.length - 4));
    expect((await formatError(openGguf(cut))).detail).toMatch(
      /truncated: tensor w \(F32 \[16\]\) needs bytes \d+\.\.\d+ but the file has/,
    );
    await writeFile(cut, bytes.subarray(0, 30));
    expect((await formatError(openGguf(cut))).detail).toMatch(/truncated or corrupt: tensor_count 1/);
    const mis = join(dir(), 'mis.gguf');
    await writeGguf(mis, [], [{ name: 'w', raw: { type: 0, dims: [1], data: new Uint8Array(4) } }]);
    const mb = await readFile(mis);
    // The offset field is the last 8 bytes of the tensor info, just before the padding.
    const infoEnd = 4 + 4 + 8 + 8 + (8 + 1) + 4 + 8 + 4 + 8; // magic, version, counts, name, n_dims, dim, type, offset
    new DataView(mb.buffer, mb.byteOffset).setBigUint64(infoEnd - 8, 4n, true);
    await writeFile(mis, mb);
    expect((await formatError(openGguf(mis))).detail).toMatch(
      /tensor w offset 4 is not a multiple of the alignment 32/,
    );
  });

  it('rejects non-llama architectures and unknown tensors', async () => {
    const file = join(dir(), 'arch.gguf');
    await writeGguf(file, [['general.architecture', { type: 'STRING', value: 'qwen2' }]], []);
    expect((await formatError(loadGguf(file))).detail).toMatch(
      /general.architecture is "qwen2"; only "llama"/,
    );
    const file2 = join(dir(), 'unknown.gguf');
    await writeGguf(
      file2,
      [...llamaMeta],
      [{ name: 'blk.0.attn_qkv.weight', raw: { type: 0, dims: [1], data: new Uint8Array(4) } }],
    );
    expect((await formatError(loadGguf(file2))).detail).toMatch(
      /tensor blk.0.attn_qkv.weight is not a LLaMA tensor/,
    );
    expect((await readdir(dir())).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe.skipIf(!HAVE_STORIES)('GGUF export of stories260K (GQA, tied embeddings)', () => {
  it('saveGguf -> loadGguf gives identical tensors and config, also for pruned per-layer sizes', async () => {
    const ckpt = await loadLlama2c(sharedPath(STORIES_BIN));
    const out = join(dir(), 'stories.gguf');
    await saveGguf(out, ckpt);
    const back = await loadGguf(out);
    expect(back.config).toEqual(ckpt.config);
    for (const [n, t] of ckpt.tensors) expect(hostTensorsEqual(back.tensors.get(n)!, t), n).toBe(true);

    // A pruned variant: layer 1 keeps 1 of 4 KV groups (2 query heads) and 100 MLP channels.
    const tensors = new Map(ckpt.tensors);
    const take = (name: string, rows: number) => {
      const t = tensors.get(name)!;
      tensors.set(name, { ...t, shape: [rows, t.shape[1]!], data: t.data.slice(0, rows * t.shape[1]!) });
    };
    const takeCols = (name: string, cols: number) => {
      const t = tensors.get(name)!;
      const [r, c] = t.shape as [number, number];
      const d = new Float32Array(r * cols);
      for (let i = 0; i < r; i++) d.set((t.data as Float32Array).subarray(i * c, i * c + cols), i * cols);
      tensors.set(name, { ...t, shape: [r, cols], data: d });
    };
    take('model.layers.1.self_attn.q_proj.weight', 16);
    take('model.layers.1.self_attn.k_proj.weight', 8);
    take('model.layers.1.self_attn.v_proj.weight', 8);
    takeCols('model.layers.1.self_attn.o_proj.weight', 16);
    take('model.layers.1.mlp.gate_proj.weight', 100);
    take('model.layers.1.mlp.up_proj.weight', 100);
    takeCols('model.layers.1.mlp.down_proj.weight', 100);
    const pruned: Checkpoint = {
      ...ckpt,
      config: {
        ...ckpt.config,
        layerHeadNum: [8, 2, 8, 8, 8],
        layerKvHeadNum: [4, 1, 4, 4, 4],
        layerInterSize: [172, 100, 172, 172, 172],
      },
      tensors,
    };
    const out2 = join(dir(), 'pruned.gguf');
    await saveGguf(out2, pruned, { dtype: 'float16' });
    const info = await readGgufInfo(out2);
    expect(info.metadata.get('llama.attention.head_count')).toEqual([8, 2, 8, 8, 8]);
    const back2 = await loadGguf(out2, { dtype: 'float32' });
    expect(back2.config).toEqual(pruned.config);
    expect(back2.tensors.get('model.layers.1.self_attn.k_proj.weight')!.shape).toEqual([8, 64]);
  });
});
