/**
 * Fuzz suite of the model and tokenizer readers (issue 18): seeded, generated corruptions of every
 * format — truncations, flipped bytes, hostile counts, bad JSON fields — driven through the public
 * loaders (loadModel, loadTokenizer). Every failure must be an InputError (FormatError) whose message
 * names the file (and the field where there is one) and is bounded in length, and every case must
 * finish in well under a second. Cases that corrupt only values may load; structural ones must not.
 */
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type HostTensor, InputError, Rng } from '@moreau/core';
import { useScratchDir } from '@moreau/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Checkpoint } from './formats/checkpoint.js';
import { saveGguf } from './formats/gguf/llama.js';
import { type GgufValue, readGgufInfo } from './formats/gguf/read.js';
import { type GgufWriteValue, writeGguf } from './formats/gguf/write.js';
import { saveHfDirectory } from './formats/hf-dir.js';
import { saveLlama2c } from './formats/llama2c.js';
import { generatedTokenizer } from './init.js';
import type { LlamaConfig } from './llama/config.js';
import { randomInit } from './llama/presets.js';
import { loadModel } from './load-model.js';
import { Llama2cTokenizer } from './tokenizers/llama2c.js';
import { loadTokenizer } from './tokenizers/load.js';
import { encodeSentencePieceModel } from './tokenizers/sentencepiece-model.js';

const dir = useScratchDir();

/** Longest message accepted (FormatError cuts details at 2000 characters; paths add a little). */
const MAX_MESSAGE = 3000;
/** Slowest case accepted. */
const MAX_MS = 1000;

const config: LlamaConfig = {
  vocabSize: 354, // the generated tokenizer's size
  hiddenSize: 16,
  intermediateSize: 24,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositionEmbeddings: 64,
  tieWordEmbeddings: false,
  bosTokenId: 1,
  eosTokenId: 2,
};

interface Base {
  hf: string;
  sharded: string;
  gguf: string;
  bin: string;
  tokBin: string;
  tokModelDir: string;
}

/** What a case does and what must happen. */
interface Case {
  name: string;
  /** The path the loader is given, and the one the message must name. */
  load: () => Promise<unknown>;
  names: string;
  /** 'error': must fail; 'maybe': may load (value-only corruptions). */
  expect: 'error' | 'maybe';
  /** Text the message must contain (a field name), when the case targets one. */
  field?: string;
}

const results: { name: string; ms: number; outcome: string }[] = [];

async function runCase(c: Case): Promise<void> {
  const t0 = performance.now();
  const e = await c.load().then(
    () => undefined,
    (x: unknown) => x,
  );
  const ms = performance.now() - t0;
  results.push({ name: c.name, ms, outcome: e === undefined ? 'loaded' : 'error' });
  if (process.env.MOREAU_FUZZ_LOG) {
    const { appendFileSync } = await import('node:fs');
    appendFileSync(
      process.env.MOREAU_FUZZ_LOG,
      `${c.name}\t${ms.toFixed(0)}ms\t${e === undefined ? 'LOADED' : String((e as Error).message).replaceAll('\n', ' | ')}\n`,
    );
  }
  expect(ms, `${c.name}: took ${ms.toFixed(0)} ms`).toBeLessThan(MAX_MS);
  if (e === undefined) {
    expect(c.expect, `${c.name}: loaded but must fail`).toBe('maybe');
    return;
  }
  const msg = e instanceof Error ? e.message : String(e);
  expect(
    e,
    `${c.name}: not an InputError: ${String(e instanceof Error ? e.stack : e).slice(0, 600)}`,
  ).toBeInstanceOf(InputError);
  expect(msg.length, `${c.name}: message of ${msg.length} characters`).toBeLessThanOrEqual(MAX_MESSAGE);
  expect(msg, `${c.name}: message does not name ${c.names}`).toContain(c.names);
  if (c.field) expect(msg, `${c.name}: message does not name the field`).toContain(c.field);
}

function tokBinOf(): Llama2cTokenizer {
  const sp = generatedTokenizer(config);
  return new Llama2cTokenizer(
    sp.tokens.map((t) => t.replaceAll('\u2581', ' ')),
    new Float32Array(sp.vocabSize),
  );
}

async function buildBase(root: string): Promise<Base> {
  const tensors: Map<string, HostTensor> = randomInit(config, 11);
  const ckpt: Checkpoint = { config, tensors, format: 'hf', sourceDtype: 'F32' };
  const tok = generatedTokenizer(config);
  const hf = join(root, 'hf');
  await saveHfDirectory(hf, ckpt, { dtype: 'float16', tokenizerFiles: tok.toFiles() });
  const sharded = join(root, 'sharded');
  await saveHfDirectory(sharded, ckpt, { tokenizerFiles: tok.toFiles(), maxShardBytes: 8000 });
  const gguf = join(root, 'model.gguf');
  await saveGguf(gguf, ckpt, { tokenizer: tok.toGgufTokenizerData(), dtype: 'float16' });
  const bin = join(root, 'model.bin');
  await saveLlama2c(bin, ckpt);
  const tokBin = join(root, 'tok.bin');
  await tokBinOf().save(tokBin);
  const tokModelDir = join(root, 'spm');
  await cp(hf, tokModelDir, { recursive: true });
  await rm(join(tokModelDir, 'tokenizer.json'));
  await rm(join(tokModelDir, 'tokenizer_config.json'));
  await writeFile(join(tokModelDir, 'tokenizer.model'), encodeSentencePieceModel(tok));
  return { hf, sharded, gguf, bin, tokBin, tokModelDir };
}

let base: Base;
let caseNo = 0;
let shards: string[] = [];
const shardName = (i: number) => shards[i - 1]!;

/** A fresh copy of a base file or directory for one case. */
async function copyOf(path: string): Promise<string> {
  const d = join(dir(), 'cases', String(caseNo++));
  await mkdir(d, { recursive: true });
  const to = join(d, path.split('/').at(-1)!);
  await cp(path, to, { recursive: true });
  return to;
}

/** Positions: half in the first 512 bytes (headers), half anywhere. */
function position(rng: Rng, size: number): number {
  return rng.uniform() < 0.5 ? rng.int(Math.min(size, 512)) : rng.int(size);
}

function flip(bytes: Uint8Array, rng: Rng, n: number): Uint8Array {
  const out = bytes.slice();
  for (let k = 0; k < n; k++) out[position(rng, out.length)] = rng.int(256);
  return out;
}

const SEED = 20240918;

describe('reader fuzz suite', () => {
  beforeAll(async () => {
    base = await buildBase(dir());
    shards = (await readdir(base.sharded)).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();
    expect(shards.length).toBeGreaterThan(2);
  });

  it('truncated files fail with a bounded message naming the file', async () => {
    const rng = new Rng(SEED);
    const targets: [string, (copy: string) => string, (copy: string) => () => Promise<unknown>][] = [
      [
        'hf model.safetensors',
        (d) => join(d, 'model.safetensors'),
        (d) => () => loadModel(d, { lazy: false }),
      ],
      ['sharded shard 2', (d) => join(d, shardName(2)), (d) => () => loadModel(d, { lazy: false })],
      ['gguf', (f) => f, (f) => () => loadModel(f, { lazy: false })],
      ['llama2c', (f) => f, (f) => () => loadModel(f, { lazy: false, tokenizer: base.tokBin })],
      ['config.json', (d) => join(d, 'config.json'), (d) => () => loadModel(d, { lazy: false })],
      ['tokenizer.json', (d) => join(d, 'tokenizer.json'), (d) => () => loadModel(d, { lazy: false })],
    ];
    const src: Record<string, string> = {
      'hf model.safetensors': base.hf,
      'sharded shard 2': base.sharded,
      gguf: base.gguf,
      llama2c: base.bin,
      'config.json': base.hf,
      'tokenizer.json': base.hf,
    };
    for (const [name, fileOf, loaderOf] of targets) {
      for (let k = 0; k < 12; k++) {
        const copy = await copyOf(src[name]!);
        const file = fileOf(copy);
        const bytes = await readFile(file);
        const cut = rng.int(bytes.length);
        await writeFile(file, bytes.subarray(0, cut));
        // GGUF: a cut inside the final alignment padding leaves every tensor whole.
        const maybe = name === 'gguf' && bytes.length - cut < 32;
        await runCase({
          name: `truncate ${name} at ${cut}/${bytes.length}`,
          load: loaderOf(copy),
          names: copy,
          expect: maybe ? 'maybe' : 'error',
        });
      }
    }
    // Tokenizers given on their own (a llama2.c tokenizer cut at a token boundary is a valid smaller
    // vocabulary, so the model's vocab_size decides).
    for (let k = 0; k < 12; k++) {
      const file = await copyOf(base.tokBin);
      const bytes = await readFile(file);
      await writeFile(file, bytes.subarray(0, rng.int(bytes.length)));
      await runCase({
        name: `truncate tok.bin (k=${k})`,
        load: () => loadModel(base.bin, { tokenizer: file, lazy: false }),
        names: file,
        expect: 'error',
      });
      const spm = await copyOf(base.tokModelDir);
      const mfile = join(spm, 'tokenizer.model');
      const mbytes = await readFile(mfile);
      await writeFile(mfile, mbytes.subarray(0, rng.int(mbytes.length)));
      await runCase({
        name: `truncate tokenizer.model (k=${k})`,
        load: () => loadTokenizer(spm),
        names: spm,
        expect: 'maybe', // a cut between pieces is a valid, smaller vocabulary
      });
    }
  });

  it('flipped bytes either load or fail cleanly', async () => {
    const rng = new Rng(SEED + 1);
    const targets: [string, string, (copy: string) => string, (copy: string) => () => Promise<unknown>][] = [
      [
        'safetensors',
        base.hf,
        (d) => join(d, 'model.safetensors'),
        (d) => () => loadModel(d, { lazy: false }),
      ],
      ['gguf', base.gguf, (f) => f, (f) => () => loadModel(f, { lazy: false })],
      ['llama2c', base.bin, (f) => f, (f) => () => loadModel(f, { lazy: false, tokenizer: base.tokBin })],
      ['tok.bin', base.tokBin, (f) => f, (f) => () => loadModel(base.bin, { tokenizer: f, lazy: false })],
      ['tokenizer.model', base.tokModelDir, (d) => join(d, 'tokenizer.model'), (d) => () => loadTokenizer(d)],
      ['index.json', base.sharded, (d) => join(d, 'model.safetensors.index.json'), (d) => () => loadModel(d)],
      ['config.json', base.hf, (d) => join(d, 'config.json'), (d) => () => loadModel(d, { lazy: false })],
      [
        'tokenizer.json',
        base.hf,
        (d) => join(d, 'tokenizer.json'),
        (d) => () => loadModel(d, { lazy: false }),
      ],
    ];
    for (const [name, src, fileOf, loaderOf] of targets) {
      for (let k = 0; k < 16; k++) {
        const copy = await copyOf(src);
        const file = fileOf(copy);
        const bytes = await readFile(file);
        await writeFile(file, flip(bytes, rng, 1 + rng.int(4)));
        await runCase({
          name: `flip ${name} (k=${k})`,
          load: loaderOf(copy),
          names: name === 'tok.bin' ? file : copy,
          expect: 'maybe',
        });
      }
    }
  });

  it('hostile counts and fields in config.json fail at once, naming the field', async () => {
    const hostile: [string, unknown][] = [
      ['num_hidden_layers', 1e15],
      ['num_hidden_layers', 2 ** 32 - 1],
      ['num_hidden_layers', 100_000],
      ['num_hidden_layers', 0],
      ['num_hidden_layers', 2.5],
      ['num_hidden_layers', '2'],
      ['num_attention_heads', 1646294055],
      ['num_attention_heads', 3],
      ['num_key_value_heads', 3],
      ['vocab_size', 1e12],
      ['hidden_size', 2 ** 40],
      ['intermediate_size', -1],
      ['head_dim', 1e9],
      ['bos_token_id', 99999],
      ['eos_token_id', 354],
      ['bos_token_id', 1.5],
      ['eos_token_id', [2, 'x']],
      ['layer_head_num', new Array(200_000).fill(4)],
      ['layer_inter_size', [24, 1e9]],
      ['rope_scaling', { rope_type: 'yarn', factor: 4 }],
      ['rms_norm_eps', -1],
      ['tie_word_embeddings', 'yes'],
      ['model_type', 'mistral'],
      ['hidden_act', 'gelu'],
      ['quantization_config', {}],
      ['some_new_field', 1],
    ];
    for (const [field, value] of hostile) {
      const d = await copyOf(base.hf);
      const file = join(d, 'config.json');
      const json = JSON.parse(await readFile(file, 'utf8'));
      json[field] = value;
      await writeFile(file, JSON.stringify(json));
      await runCase({
        name: `config.json ${field} = ${JSON.stringify(value).slice(0, 40)}`,
        load: () => loadModel(d, { lazy: false }),
        names: d,
        expect: 'error',
        field: field === 'num_attention_heads' || field === 'head_dim' ? undefined : field,
      });
    }
    for (const text of [
      '',
      '{',
      '[1, 2]',
      'null',
      '{"model_type": "llama"',
      '\u0000\u0001',
      'x'.repeat(100_000),
    ]) {
      const d = await copyOf(base.hf);
      await writeFile(join(d, 'config.json'), text);
      await runCase({
        name: `config.json text ${JSON.stringify(text.slice(0, 20))}`,
        load: () => loadModel(d),
        names: join(d, 'config.json'),
        expect: 'error',
      });
    }
  });

  it('hostile safetensors headers and shard indexes fail, naming the file', async () => {
    const st = join(base.hf, 'model.safetensors');
    const bytes = new Uint8Array(await readFile(st));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const name = 'model.layers.1.mlp.up_proj.weight';
    const edits: [string, (h: Record<string, any>) => void][] = [
      ['negative offset', (h) => (h[name].data_offsets = [-8, h[name].data_offsets[1]])],
      ['offset past the end', (h) => (h[name].data_offsets = [0, 1e12])],
      ['overlap', (h) => (h[name].data_offsets = h['model.norm.weight'].data_offsets)],
      ['huge shape', (h) => (h[name].shape = [2 ** 40, 2 ** 40])],
      ['200000 dims', (h) => (h[name].shape = new Array(200_000).fill(1))],
      ['string dims', (h) => (h[name].shape = ['24', '16'])],
      ['dtype F64', (h) => (h[name].dtype = 'F64')],
      ['dtype object', (h) => (h[name].dtype = { a: 1 })],
      ['metadata not strings', (h) => (h.__metadata__ = { format: 1 })],
      ['entry not an object', (h) => (h[name] = 5)],
      ['missing tensor', (h) => delete h[name]],
    ];
    for (const [what, edit] of edits) {
      const d = await copyOf(base.hf);
      const h = structuredClone(header);
      edit(h);
      let json = JSON.stringify(h);
      json += ' '.repeat((8 - (json.length % 8)) % 8);
      const hb = new TextEncoder().encode(json);
      const out = new Uint8Array(8 + hb.length + (bytes.length - 8 - n));
      new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
      out.set(hb, 8);
      out.set(bytes.subarray(8 + n), 8 + hb.length);
      await writeFile(join(d, 'model.safetensors'), out);
      await runCase({
        name: `safetensors ${what}`,
        load: () => loadModel(d, { lazy: false }),
        names: d,
        expect: 'error',
      });
    }
    for (const len of [2n ** 63n, 2n ** 53n, BigInt(bytes.length), 0n]) {
      const d = await copyOf(base.hf);
      const b = bytes.slice();
      new DataView(b.buffer).setBigUint64(0, len, true);
      await writeFile(join(d, 'model.safetensors'), b);
      await runCase({
        name: `safetensors header length ${len}`,
        load: () => loadModel(d),
        names: d,
        expect: 'error',
      });
    }
    const index = JSON.parse(await readFile(join(base.sharded, 'model.safetensors.index.json'), 'utf8'));
    const first = Object.keys(index.weight_map)[0]!;
    const idxEdits: [string, (x: Record<string, any>) => void, string?][] = [
      ['shard missing', (x) => (x.weight_map[first] = 'model-00009-of-00009.safetensors'), 'weight_map'],
      ['path escape', (x) => (x.weight_map[first] = '../hf/model.safetensors'), 'weight_map'],
      ['wrong total_size', (x) => (x.metadata.total_size = 1), 'total_size'],
      ['tensor not listed', (x) => delete x.weight_map[first]],
      ['weight_map an array', (x) => (x.weight_map = []), 'weight_map'],
      ['shard not a string', (x) => (x.weight_map[first] = 7), 'weight_map'],
    ];
    for (const [what, edit, field] of idxEdits) {
      const d = await copyOf(base.sharded);
      const x = structuredClone(index);
      edit(x);
      await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify(x));
      await runCase({ name: `index ${what}`, load: () => loadModel(d), names: d, expect: 'error', field });
    }
  });

  it('hostile GGUF counts, lengths and metadata fail at once, naming the field', async () => {
    const bytes = new Uint8Array(await readFile(base.gguf));
    const counts: [string, number, bigint, string][] = [
      ['tensor_count one too low', 8, 0n, 'tensor_count'],
      ['tensor_count 2^53-1', 8, 2n ** 53n - 1n, 'tensor_count'],
      ['tensor_count 2^63', 8, 2n ** 63n, 'tensor_count'],
      ['tensor_count + 1', 8, 0n, 'tensor_count'],
      ['metadata_kv_count 2^53-1', 16, 2n ** 53n - 1n, 'metadata_kv_count'],
      ['metadata_kv_count 2^32', 16, 2n ** 32n, 'metadata_kv_count'],
    ];
    const dv = new DataView(bytes.buffer);
    const tensorCount = dv.getBigUint64(8, true);
    for (const [what, at, value, field] of counts) {
      const f = await copyOf(base.gguf);
      const b = bytes.slice();
      const v =
        what === 'tensor_count one too low'
          ? tensorCount - 1n
          : what === 'tensor_count + 1'
            ? tensorCount + 1n
            : value;
      new DataView(b.buffer).setBigUint64(at, v, true);
      await writeFile(f, b);
      await runCase({
        name: `gguf ${what}`,
        load: () => loadModel(f, { lazy: false }),
        names: f,
        expect: 'error',
        field: what === 'tensor_count + 1' || what.includes('2^63') ? undefined : field,
      });
    }
    // Metadata rewritten with hostile values (the tensors' bytes kept).
    const info = await readGgufInfo(base.gguf);
    const tensorsRaw = [...info.tensors.values()].map((t) => ({
      name: t.name,
      raw: { type: t.type, dims: t.dims, data: bytes.subarray(t.offset, t.offset + t.byteSize) },
    }));
    const rewrite = async (patch: Map<string, GgufWriteValue | undefined>): Promise<string> => {
      const meta: [string, GgufWriteValue][] = [];
      for (const [k, v] of info.metadata) {
        if (patch.has(k)) {
          const p = patch.get(k);
          if (p) meta.push([k, p]);
          continue;
        }
        meta.push([k, toWriteValue(v, info.metadataTypes.get(k)!)]);
      }
      for (const [k, p] of patch) if (p && !info.metadata.has(k)) meta.push([k, p]);
      const f = join(dir(), 'cases', String(caseNo++), 'm.gguf');
      await mkdir(join(f, '..'), { recursive: true });
      await writeGguf(f, meta, tensorsRaw);
      return f;
    };
    const u64 = (v: bigint): GgufWriteValue => ({ type: 'UINT64', value: v });
    const u32 = (v: number): GgufWriteValue => ({ type: 'UINT32', value: v });
    const hostile: [string, GgufWriteValue | undefined, string][] = [
      ['llama.block_count', u64(2n ** 53n - 1n), 'llama.block_count'],
      ['llama.block_count', u32(2 ** 32 - 1), 'llama.block_count'],
      ['llama.block_count', u32(100_000), 'llama.block_count'],
      ['llama.block_count', u32(0), 'llama.block_count'],
      ['llama.block_count', undefined, 'llama.block_count'],
      ['llama.attention.head_count', u32(1646294055), 'llama.attention.head_count'],
      [
        'llama.attention.head_count',
        { type: 'ARRAY', itemType: 'UINT32', value: new Array(200_000).fill(4) },
        'llama.attention.head_count',
      ],
      ['llama.attention.head_count_kv', u32(3), 'llama.attention.head_count'],
      ['llama.embedding_length', u64(2n ** 60n), 'llama.embedding_length'],
      ['llama.vocab_size', u32(10), 'vocab'],
      ['tokenizer.ggml.bos_token_id', u32(100_000), 'tokenizer.ggml.bos_token_id'],
      ['tokenizer.ggml.eos_token_id', u32(354), 'tokenizer.ggml.eos_token_id'],
      [
        'tokenizer.ggml.scores',
        { type: 'ARRAY', itemType: 'FLOAT32', value: new Array(354).fill(Number.NaN) },
        'tokenizer.ggml.scores',
      ],
      [
        'tokenizer.ggml.scores',
        { type: 'ARRAY', itemType: 'FLOAT32', value: [1, 2] },
        'tokenizer.ggml.scores',
      ],
      ['tokenizer.ggml.tokens', { type: 'ARRAY', itemType: 'UINT8', value: [1, 2] }, 'tokenizer.ggml.tokens'],
      ['tokenizer.ggml.model', { type: 'STRING', value: 'gpt2' }, 'tokenizer.ggml.model'],
      ['general.architecture', { type: 'STRING', value: 'qwen2' }, 'general.architecture'],
      ['general.alignment', u32(3), 'general.alignment'],
      ['llama.rope.scaling.type', { type: 'STRING', value: 'yarn' }, 'llama.rope.scaling.type'],
    ];
    for (const [key, value, field] of hostile) {
      const f = await rewrite(new Map([[key, value]]));
      await runCase({
        name: `gguf ${key} = ${value ? JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? String(v) : v)).slice(0, 60) : 'missing'}`,
        load: () => loadModel(f, { lazy: false }),
        names: f,
        expect: 'error',
        field,
      });
    }
    // Hostile lengths patched into the bytes: a string length and an array length of 2^40 / 2^62.
    const keyAt = indexOf(bytes, new TextEncoder().encode('tokenizer.ggml.tokens'));
    for (const [what, off, value] of [
      ['array length 2^40', keyAt + 21 + 4 + 4, 2n ** 40n],
      ['array length 2^62', keyAt + 21 + 4 + 4, 2n ** 62n],
      ['array length 2^24+1', keyAt + 21 + 4 + 4, 2n ** 24n + 1n],
      ['first string length 2^40', keyAt + 21 + 4 + 4 + 8, 2n ** 40n],
      ['key length 2^40', keyAt - 8, 2n ** 40n],
    ] as const) {
      const f = await copyOf(base.gguf);
      const b = bytes.slice();
      new DataView(b.buffer).setBigUint64(off, value, true);
      await writeFile(f, b);
      await runCase({ name: `gguf ${what}`, load: () => loadModel(f), names: f, expect: 'error' });
    }
  });

  it('hostile llama.c headers and tokenizers, and text given as a model', async () => {
    const bytes = new Uint8Array(await readFile(base.bin));
    const fields = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
    const rng = new Rng(SEED + 2);
    for (let k = 0; k < 28; k++) {
      const i = k % 7;
      const values = [0, -1, 2 ** 31 - 1, -(2 ** 31), 1646294055, 3, 1 + rng.int(1 << 20)];
      const v = values[Math.floor(k / 7) % values.length]!;
      const f = await copyOf(base.bin);
      const b = bytes.slice();
      new DataView(b.buffer).setInt32(4 * i, v, true);
      await writeFile(f, b);
      await runCase({
        name: `llama2c ${fields[i]} = ${v}`,
        load: () => loadModel(f, { tokenizer: base.tokBin, lazy: false }),
        names: f,
        expect: fields[i] === 'seq_len' && v > 0 ? 'maybe' : 'error',
      });
    }
    const text = join(dir(), 'cases', 'story.txt');
    await writeFile(text, 'Once upon a time, there was a little girl named Lily. '.repeat(40));
    await runCase({
      name: 'text as a llama2.c model',
      load: () => loadModel(text, { tokenizer: base.tokBin }),
      names: text,
      expect: 'error',
      field: 'not a llama2.c checkpoint',
    });
    const tok = new Uint8Array(await readFile(base.tokBin));
    for (const [what, patch, field] of [
      ['NaN score', (b: DataView) => b.setFloat32(tokenOffset(b, 9), Number.NaN, true), 'score'],
      ['Infinity score', (b: DataView) => b.setFloat32(4, Number.POSITIVE_INFINITY, true), 'score'],
      ['negative length', (b: DataView) => b.setInt32(8, -5, true), 'length'],
      ['huge length', (b: DataView) => b.setInt32(8, 2 ** 31 - 1, true), 'length'],
      ['negative max_token_length', (b: DataView) => b.setInt32(0, -1, true), 'max_token_length'],
    ] as const) {
      const f = await copyOf(base.tokBin);
      const b = tok.slice();
      patch(new DataView(b.buffer));
      await writeFile(f, b);
      await runCase({
        name: `tok.bin ${what}`,
        load: () => loadModel(base.bin, { tokenizer: f }),
        names: f,
        expect: 'error',
        field,
      });
    }
  });

  it('hostile tokenizer.json fields fail, naming the field', async () => {
    const tj = JSON.parse(await readFile(join(base.hf, 'tokenizer.json'), 'utf8'));
    const edits: [string, (j: Record<string, any>) => void, string][] = [
      ['negative id', (j) => (j.model.vocab.a = -3), 'model.vocab'],
      ['fractional id', (j) => (j.model.vocab.a = 40.5), 'model.vocab'],
      ['string id', (j) => (j.model.vocab.a = '40'), 'model.vocab'],
      ['shared id', (j) => (j.model.vocab.a = j.model.vocab.b), 'model.vocab'],
      ['unknown model type', (j) => (j.model.type = 'SuperBPE'), 'model.type'],
      ['no model type', (j) => delete j.model.type, 'model.type'],
      ['vocab an array', (j) => (j.model.vocab = [1, 2]), 'model.vocab'],
      ['added token id string', (j) => (j.added_tokens[0].id = 'x'), 'added_tokens'],
      ['added token id negative', (j) => (j.added_tokens[0].id = -1), 'added_tokens'],
      ['added_tokens an object', (j) => (j.added_tokens = {}), 'added_tokens'],
      ['merges of numbers', (j) => (j.model.merges = [1, 2]), 'model.merges'],
      ['no model', (j) => delete j.model, 'model'],
    ];
    for (const [what, edit, field] of edits) {
      const d = await copyOf(base.hf);
      const j = structuredClone(tj);
      edit(j);
      await writeFile(join(d, 'tokenizer.json'), JSON.stringify(j));
      await runCase({
        name: `tokenizer.json ${what}`,
        load: () => loadModel(d),
        names: d,
        expect: 'error',
        field,
      });
    }
    const cfg = JSON.parse(await readFile(join(base.hf, 'tokenizer_config.json'), 'utf8'));
    const d = await copyOf(base.hf);
    await writeFile(join(d, 'tokenizer_config.json'), JSON.stringify({ ...cfg, bos_token: '<nope>' }));
    await runCase({
      name: 'tokenizer_config bos_token not in the vocabulary',
      load: () => loadModel(d),
      names: d,
      expect: 'error',
      field: 'bos_token',
    });
  });

  it('ran every case well under a second', () => {
    const slowest = results.reduce((a, b) => (b.ms > a.ms ? b : a), { name: '', ms: 0, outcome: '' });
    const loaded = results.filter((r) => r.outcome === 'loaded').length;
    console.log(
      `reader fuzz: ${results.length} cases, ${results.length - loaded} errors, ${loaded} loaded; slowest ${slowest.ms.toFixed(0)} ms (${slowest.name})`,
    );
    expect(results.length).toBeGreaterThan(250);
    expect(slowest.ms).toBeLessThan(MAX_MS);
  });
});

/** Byte offset of token k's score in a llama2.c tokenizer file. */
function tokenOffset(dv: DataView, k: number): number {
  let o = 4;
  for (let i = 0; i < k; i++) o += 8 + dv.getInt32(o + 4, true);
  return o;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error('needle not found');
}

/** A read metadata value as the writer takes it (type from readGgufInfo's metadataTypes). */
function toWriteValue(v: GgufValue, type: string): GgufWriteValue {
  const m = /^ARRAY<(\w+)>$/.exec(type);
  if (m) return { type: 'ARRAY', itemType: m[1] as never, value: v as never };
  return { type, value: v } as GgufWriteValue;
}
