import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  counterKey,
  fillCounterNormals,
  float32ToFloat16,
  hostTensorsEqual,
  isLazyTensor,
  Rng,
  toFloat32Data,
} from '@moreau/core';
import { smallConfig, useScratchDir } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { float32ToFloat16Into, generatedTokenizer, initModel, randomTensors } from './init.js';
import { llamaPreset } from './llama/presets.js';
import { loadModel } from './load-model.js';
import { loadTokenizer } from './tokenizers/load.js';

const dir = useScratchDir();

describe('initModel', () => {
  it('float32ToFloat16Into rounds exactly as core does, for every class of float32', () => {
    const rng = new Rng(7);
    const n = 200_000;
    const bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) bits[i] = Math.floor(rng.uniform() * 2 ** 32) >>> 0;
    const edges = [
      0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001, 0x477fe000, 0x477fefff, 0x477ff000, 0x47800000,
      0x38800000, 0x387fffff, 0x33000000, 0x33000001, 0x32ffffff, 0x33800000, 0x3c00_0000, 0x3f800000,
    ];
    edges.forEach((e, i) => {
      bits[i] = e;
    });
    // Dense sweeps across the subnormal / normal boundaries.
    for (let i = 0; i < 20_000; i++) bits[100 + i] = 0x33000000 + i * 4096;
    const src = new Float32Array(bits.buffer);
    const got = new Uint16Array(n);
    float32ToFloat16Into(src, got, 0);
    const want = float32ToFloat16(src);
    let bad = -1;
    for (let i = 0; i < n && bad < 0; i++) if (got[i] !== want[i]) bad = i;
    expect(bad, bad >= 0 ? `0x${bits[bad]!.toString(16)}: ${got[bad]} vs ${want[bad]}` : '').toBe(-1);
  });

  it('tensors are lazy, seeded by (seed, tensor index, element) and identical however they are read', () => {
    const config = smallConfig();
    const a = randomTensors(config, { seed: 5, dtype: 'float32', std: 0.5 });
    const b = randomTensors(config, { seed: 5, dtype: 'float32', std: 0.5 });
    expect([...a.values()].every(isLazyTensor)).toBe(true);
    for (const [n, t] of a) expect(hostTensorsEqual(t, b.get(n)!), n).toBe(true);
    const names = [...a.keys()];
    const k = names.indexOf('model.layers.1.mlp.up_proj.weight');
    const want = new Float32Array(a.get(names[k]!)!.data.length);
    fillCounterNormals(counterKey(5, k, 0), 0, want);
    expect(a.get(names[k]!)!.data).toEqual(want.map((v) => Math.fround(v * 0.5)));
    expect([...a.get('model.norm.weight')!.data]).toEqual(new Array(32).fill(1));
    const other = randomTensors(config, { seed: 6, dtype: 'float32', std: 0.5 });
    expect(hostTensorsEqual(other.get(names[k]!)!, a.get(names[k]!)!)).toBe(false);
    const h = randomTensors(config, { seed: 5, dtype: 'float16', std: 0.5 });
    expect(h.get(names[k]!)!.data).toEqual(float32ToFloat16(a.get(names[k]!)!.data as Float32Array));
    const bf = randomTensors(config, { seed: 5, dtype: 'bfloat16', std: 0.5 });
    expect(toFloat32Data(bf.get('model.norm.weight')!)).toEqual(new Float32Array(32).fill(1));
  });

  it('writes a sharded HF directory that loadModel reads, with a tokenizer that round-trips text', async () => {
    const out = join(dir(), 'init-60m');
    const seen: number[] = [];
    const r = await initModel({
      preset: 'synthetic-60m',
      out,
      dtype: 'float16',
      seed: 3,
      layers: 1,
      maxShardBytes: 20_000_000,
      onProgress: (p) => seen.push(p.tensorsDone),
    });
    expect(r.config.numHiddenLayers).toBe(1);
    // embed_tokens (32.8 MB) and lm_head each fill a shard; layer 0 and the final norm share one.
    expect((await readdir(out)).sort()).toEqual(
      [
        'config.json',
        'generation_config.json',
        'model-00001-of-00003.safetensors',
        'model-00002-of-00003.safetensors',
        'model-00003-of-00003.safetensors',
        'model.safetensors.index.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    );
    expect(r.files.sort()).toEqual((await readdir(out)).sort());
    expect(seen.at(-1)).toBe(12);
    expect(r.bytes).toBe(r.params * 2);
    const index = JSON.parse(await readFile(join(out, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(r.params * 2);
    const m = await loadModel(out, { lazy: true });
    expect(m.sourceDtype).toBe('F16');
    expect(m.model.config).toEqual({ ...llamaPreset('synthetic-60m'), numHiddenLayers: 1 });
    const expected = randomTensors(m.model.config, { seed: 3, dtype: 'float16' });
    for (const n of ['model.layers.0.self_attn.k_proj.weight', 'model.layers.0.input_layernorm.weight']) {
      expect(hostTensorsEqual(m.model.params.get(n)!, expected.get(n)!), n).toBe(true);
    }
    const text = 'Hello, world! ünïcödé 🙂';
    const ids = m.tokenizer.encode(text);
    expect(ids[0]).toBe(1);
    expect(m.tokenizer.decode(ids)).toBe(text);
    expect(Math.max(...ids)).toBeLessThan(400);
    await expect(initModel({ preset: 'synthetic-60m', out, layers: 1 })).rejects.toThrow(/already exists/);
    await expect(initModel({ preset: 'nope', out: join(dir(), 'x') })).rejects.toThrow(
      /valid presets: llama-7b/,
    );
    await expect(initModel({ preset: 'synthetic-60m', out: join(dir(), 'x'), layers: 9 })).rejects.toThrow(
      /layers must be an integer from 1 to 8/,
    );
  });

  it("places <s> / </s> at the config's ids (Llama 3: 128000 / 128001)", async () => {
    const tok = generatedTokenizer(llamaPreset('llama-3-8b'));
    expect([tok.bosId, tok.eosId, tok.vocabSize]).toEqual([128000, 128001, 128002]);
    const files = tok.toFiles();
    const d = join(dir(), 'tok3');
    await mkdir(d);
    for (const [n, b] of Object.entries(files)) await writeFile(join(d, n), b);
    const hf = await loadTokenizer(d);
    expect(hf.bosId).toBe(128000);
    expect(hf.decode(hf.encode('abc xyz'))).toBe('abc xyz');
    const l2 = generatedTokenizer(llamaPreset('llama-2-7b'));
    expect([l2.idToToken(0), l2.idToToken(1), l2.idToToken(2), l2.idToToken(3), l2.idToToken(258)]).toEqual([
      '<unk>',
      '<s>',
      '</s>',
      '<0x00>',
      '<0xFF>',
    ]);
  });
});
