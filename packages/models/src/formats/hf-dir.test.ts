import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { castHost, hostTensorsEqual } from '@moreau/core';
import {
  formatError,
  haveShared,
  STORIES_BIN,
  STORIES_TOK,
  sharedPath,
  TINY_GGUF,
  useScratchDir,
} from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizer } from '../tokenizers/hf.js';
import { Llama2cTokenizer } from '../tokenizers/llama2c.js';
import { loadTokenizer } from '../tokenizers/load.js';
import { SentencePieceTokenizer } from '../tokenizers/sentencepiece.js';
import type { Checkpoint } from './checkpoint.js';
import { loadGguf } from './gguf/llama.js';
import { loadHfDirectory, saveHfDirectory } from './hf-dir.js';
import { writeDirAtomic } from './io.js';
import { loadLlama2c } from './llama2c.js';
import { loadCheckpoint } from './load.js';
import { writeSafetensors } from './safetensors.js';

const HAVE_STORIES = haveShared('HF directories from stories260K', STORIES_BIN, STORIES_TOK);
const HAVE_GGUF = haveShared('HF directories from GGUF', TINY_GGUF);
const dir = useScratchDir();

const leftovers = async () =>
  (await readdir(dir())).filter((f) => f.includes('.tmp-') || f.includes('.old-'));

describe.skipIf(!HAVE_STORIES)('HF directories from stories260K', () => {
  let ckpt: Checkpoint;
  beforeAll(async () => {
    ckpt = await loadLlama2c(sharedPath(STORIES_BIN));
  });

  it('llama2.c -> saveHfDirectory -> loadHfDirectory gives identical tensors, config and tokenizer', async () => {
    const out = join(dir(), 'stories-hf');
    const tok = await Llama2cTokenizer.load(sharedPath(STORIES_TOK));
    const written = await saveHfDirectory(out, ckpt, { tokenizerFiles: tok.toFiles() });
    expect(written.sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.bin',
    ]);
    expect((await readdir(out)).sort()).toEqual(written.sort());
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 64,
      intermediate_size: 172,
      num_hidden_layers: 5,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      head_dim: 8,
      vocab_size: 512,
      tie_word_embeddings: true,
      rms_norm_eps: 1e-5,
      torch_dtype: 'float32',
    });
    const back = await loadHfDirectory(out);
    expect(back.format).toBe('hf');
    expect(back.sourceDtype).toBe('F32');
    expect(back.config).toEqual(ckpt.config);
    expect([...back.tensors.keys()]).toEqual([...ckpt.tensors.keys()]);
    for (const [n, t] of ckpt.tensors) expect(hostTensorsEqual(back.tensors.get(n)!, t), n).toBe(true);
    const tok2 = await loadTokenizer(out);
    expect(tok2.kind).toBe('llama2c');
    expect(tok2.encode('Once upon a time')).toEqual(tok.encode('Once upon a time'));
    expect(await readFile(join(out, 'tokenizer.bin'))).toEqual(await readFile(sharedPath(STORIES_TOK)));
    expect((await loadCheckpoint(out)).config).toEqual(ckpt.config);
    expect(await leftovers()).toEqual([]);
  });

  it('stores float16 / bfloat16 on request and shards above maxShardBytes', async () => {
    const out = join(dir(), 'stories-f16');
    await saveHfDirectory(out, ckpt, { dtype: 'float16', maxShardBytes: 200_000 });
    const files = (await readdir(out)).sort();
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(1);
    expect(files).toContain('model.safetensors.index.json');
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float16');
    const back = await loadHfDirectory(out);
    expect(back.sourceDtype).toBe('F16');
    for (const [n, t] of ckpt.tensors) {
      expect(hostTensorsEqual(back.tensors.get(n)!, castHost(t, 'float16')), n).toBe(true);
    }
    const asF32 = await loadHfDirectory(out, { dtype: 'float32' });
    expect(asF32.tensors.get('model.norm.weight')!.dtype).toBe('float32');
    const bf = join(dir(), 'stories-bf16');
    await saveHfDirectory(bf, ckpt, { dtype: 'bfloat16' });
    expect((await loadHfDirectory(bf)).sourceDtype).toBe('BF16');
  });

  it('refuses a non-empty directory unless overwrite, and replaces it atomically', async () => {
    const out = join(dir(), 'existing');
    await mkdir(out);
    await writeFile(join(out, 'keep.txt'), 'x');
    const e = await formatError(saveHfDirectory(out, ckpt));
    expect(e.file).toBe(out);
    expect(e.detail).toMatch(/already exists and is not empty \(pass \{ overwrite: true \}/);
    expect(await readdir(out)).toEqual(['keep.txt']);
    await saveHfDirectory(out, ckpt, { overwrite: true });
    expect((await readdir(out)).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
    ]);
    const empty = join(dir(), 'empty');
    await mkdir(empty);
    await saveHfDirectory(empty, ckpt);
    expect(await leftovers()).toEqual([]);
  });

  it('leaves nothing behind when writing fails midway', async () => {
    const out = join(dir(), 'failing');
    const bad = { 'tokenizer.bin': 42 as unknown as Uint8Array };
    expect((await formatError(saveHfDirectory(out, ckpt, { tokenizerFiles: bad }))).detail).toMatch(
      /tokenizer file tokenizer.bin: content must be a string or a Uint8Array/,
    );
    // A failure after some files were written (here: thrown by the fill step) removes the temporary directory.
    await expect(
      writeDirAtomic(out, async (tmp) => {
        await writeFile(join(tmp, 'config.json'), '{}');
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect((await readdir(dir())).includes('failing')).toBe(false);
    // ... and with overwrite, the old directory survives a failed replacement.
    await saveHfDirectory(out, ckpt);
    await expect(
      writeDirAtomic(
        out,
        async () => {
          throw new Error('disk full');
        },
        { overwrite: true },
      ),
    ).rejects.toThrow('disk full');
    expect((await loadHfDirectory(out)).config).toEqual(ckpt.config);
    expect(await leftovers()).toEqual([]);
    const clobber = await formatError(
      saveHfDirectory(out, ckpt, { tokenizerFiles: { 'config.json': '{}' } }),
    );
    expect(clobber.detail).toMatch(/tokenizer file name config.json would overwrite a model file/);
  });

  it('reports missing, misshapen and unexpected tensors by name', async () => {
    const out = join(dir(), 'broken');
    await saveHfDirectory(out, ckpt);
    const tensors = new Map(ckpt.tensors);
    tensors.delete('model.layers.2.mlp.up_proj.weight');
    const k = tensors.get('model.layers.0.self_attn.k_proj.weight')!;
    tensors.set('model.layers.0.self_attn.k_proj.weight', { ...k, shape: [64, 32] });
    tensors.set('lm_head.weight', ckpt.tensors.get('model.embed_tokens.weight')!);
    tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', {
      dtype: 'float32',
      shape: [4],
      data: new Float32Array(4),
    });
    tensors.set('model.extra.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
    await writeSafetensors(join(out, 'model.safetensors'), tensors);
    const e = await formatError(loadHfDirectory(out));
    expect(e.file).toBe(join(out, 'model.safetensors'));
    expect(e.detail).toMatch(
      /tensor model.layers.0.self_attn.k_proj.weight has shape \[64, 32\], expected \[32, 64\]/,
    );
    expect(e.detail).toMatch(
      /tensor model.layers.2.mlp.up_proj.weight is missing \(expected shape \[172, 64\]\)/,
    );
    expect(e.detail).toMatch(/unexpected tensor model.extra.weight/);
    expect(e.detail).not.toMatch(/inv_freq|lm_head/); // ignorable buffer and a tied head equal to the embedding
    const nocfg = join(dir(), 'nocfg');
    await mkdir(nocfg);
    expect((await formatError(loadHfDirectory(nocfg))).detail).toBe('has no config.json');
  });
});

describe.skipIf(!HAVE_GGUF)('HF directories from GGUF', () => {
  it('GGUF -> HF directory with a generated tokenizer.json -> same tensors and tokens', async () => {
    const ckpt = await loadGguf(sharedPath(TINY_GGUF));
    const tok = await SentencePieceTokenizer.fromGguf(sharedPath(TINY_GGUF));
    const out = join(dir(), 'tiny-hf');
    await saveHfDirectory(out, ckpt, { tokenizerFiles: tok.toFiles() });
    const back = await loadHfDirectory(out);
    expect(back.config).toEqual(ckpt.config);
    expect(back.sourceDtype).toBe('F16+F32');
    for (const [n, t] of ckpt.tensors) expect(hostTensorsEqual(back.tensors.get(n)!, t), n).toBe(true);
    const hf = await loadTokenizer(out);
    expect(hf).toBeInstanceOf(HfTokenizer);
    expect(hf.encode('Hello world')).toEqual([1, 15043, 3186]);
  });
});
