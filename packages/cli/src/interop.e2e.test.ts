/**
 * What other tools see of moreau's outputs, through the BUILT binary (node packages/cli/dist/moreau.js):
 * Hugging Face folders whose config.json matches the tensors and whose tokenizer.json
 * (@huggingface/tokenizers, what transformers.js uses) gives moreau's ids, and ONNX exports run in
 * plain onnxruntime-node (int64 ids, attention_mask, any batch size and length, the key / value cache)
 * with moreau's own logits. Real models from ../shared (or MOREAU_SHARED) and the shipped `tiny`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import '@moreau/backend-ort';
import { type HostTensor, jit, type Tensor, tensor } from '@moreau/core';
import { type LlamaConfig, llamaLogits, loadModel } from '@moreau/models';
import { haveShared, STORIES_BIN, STORIES_TOK, sharedPath, TINYSTORIES_HEAD } from '@moreau/test-utils';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(repoRoot, 'packages/cli/dist/moreau.js');
const hasDist = existsSync(BIN);
if (!hasDist)
  console.warn(`moreau interop e2e tests skipped: ${BIN} is missing (run \`npm run build\` first)`);
const noShared =
  !hasDist ||
  !haveShared('moreau interop e2e tests on stories260K', STORIES_BIN, STORIES_TOK, TINYSTORIES_HEAD);
const S = {
  model: sharedPath(STORIES_BIN),
  tok: sharedPath(STORIES_TOK),
  text: sharedPath(TINYSTORIES_HEAD),
};

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-interop-e2e-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const tmp = (name: string) => path.join(TMP, name);

function moreau(args: readonly string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: repoRoot, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** The tensor shapes in a safetensors file (its JSON header). */
function safetensorsShapes(file: string): Map<string, number[]> {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape: number[] }>;
  return new Map(
    Object.entries(header)
      .filter(([k]) => k !== '__metadata__')
      .map(([k, v]) => [k, v.shape]),
  );
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

describe.skipIf(noShared)('Hugging Face folders other tools read (built binary)', () => {
  it('a uniformly pruned stories260K folder: standard config keys equal the tensor shapes; tokenizer.json gives moreau ids', async () => {
    const out = tmp('uniform');
    moreau([
      'prune',
      S.model,
      '--tokenizer',
      S.tok,
      '--criterion',
      'magnitude',
      '--ratio',
      '0.25',
      '--out',
      out,
      '-q',
    ]);
    const config = readJson(path.join(out, 'config.json'));
    const shapes = safetensorsShapes(path.join(out, 'model.safetensors'));
    const {
      num_attention_heads: heads,
      num_key_value_heads: kv,
      intermediate_size: inter,
      head_dim: hd,
    } = config;
    expect([heads, kv, inter, hd]).toEqual([6, 3, 129, 8]); // floor(8 * 0.75), floor(4 * 0.75), floor(172 * 0.75)
    for (const k of ['layer_head_num', 'layer_kv_head_num', 'layer_inter_size'])
      expect(config).not.toHaveProperty(k);
    for (let i = 0; i < config.num_hidden_layers; i++) {
      const p = `model.layers.${i}`;
      expect(shapes.get(`${p}.self_attn.q_proj.weight`)).toEqual([heads * hd, config.hidden_size]);
      expect(shapes.get(`${p}.self_attn.k_proj.weight`)).toEqual([kv * hd, config.hidden_size]);
      expect(shapes.get(`${p}.self_attn.o_proj.weight`)).toEqual([config.hidden_size, heads * hd]);
      expect(shapes.get(`${p}.mlp.gate_proj.weight`)).toEqual([inter, config.hidden_size]);
      expect(shapes.get(`${p}.mlp.down_proj.weight`)).toEqual([config.hidden_size, inter]);
    }
    // tokenizer.json straight through @huggingface/tokenizers: ids equal moreau's llama2.c tokenizer.
    const lib = new HfLibTokenizer(
      readJson(path.join(out, 'tokenizer.json')),
      readJson(path.join(out, 'tokenizer_config.json')),
    );
    const { tokenizer } = await loadModel(S.model, { tokenizer: S.tok });
    expect(tokenizer.kind).toBe('llama2c');
    const text = readFileSync(S.text, 'utf8');
    for (const s of [
      text.slice(0, 20_000),
      text.slice(500_000, 510_000),
      'Once upon a time, Lily 🙂 said "hi".',
    ]) {
      expect(lib.encode(s).ids).toEqual(tokenizer.encode(s));
    }
    // moreau info reads the real sizes.
    expect(moreau(['info', out])).toMatch(/heads \/ kv heads 6 \/ 3 \(head_dim 8\)\nMLP width\s+129\n/);
  }, 120_000);

  it('sizes that differ per layer: per-layer keys, the standard keys the largest, info lists the layers first', () => {
    const out = tmp('per-layer');
    moreau([
      'prune',
      S.model,
      '--tokenizer',
      S.tok,
      '--criterion',
      'magnitude',
      '--ratio',
      '0.5',
      '--attn-layers',
      '1:3',
      '--mlp-layers',
      '1:3',
      '--out',
      out,
      '-q',
    ]);
    const config = readJson(path.join(out, 'config.json'));
    expect(config).toMatchObject({
      num_attention_heads: 8,
      num_key_value_heads: 4,
      intermediate_size: 172,
      layer_head_num: [8, 4, 4, 8, 8],
      layer_kv_head_num: [4, 2, 2, 4, 4],
      layer_inter_size: [172, 86, 86, 172, 172],
    });
    const info = moreau(['info', out]);
    expect(info).toMatch(
      /^layers\s+5 with these sizes\nlayer {2}heads {2}kv_heads {2}mlp\n\s+0\s+8\s+4\s+172\n\s+1\s+4\s+2\s+86\n/m,
    );
    expect(info).toMatch(/heads \/ kv heads 4-8 \/ 2-4 \(head_dim 8\) per layer/);
  }, 120_000);
});

/** moreau's own logits: llamaLogits on the ORT backend, for each row of ids. */
async function moreauLogits(config: LlamaConfig, params: ReadonlyMap<string, HostTensor>, rows: number[][]) {
  const names = [...params.keys()];
  const f = jit((w: Tensor[], ids: Tensor) =>
    llamaLogits(Object.fromEntries(names.map((n, i) => [n, w[i]!])), ids, config),
  );
  const out: Float32Array[] = [];
  for (const r of rows) {
    const t = (await f([...params.values()], tensor(r, [1, r.length], 'int32'))) as HostTensor;
    out.push(t.data as Float32Array);
  }
  return out;
}

function maxRelError(got: Float32Array, want: Float32Array): number {
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  }
  return worst / scale;
}

const int64 = (rows: number[][]) =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from(rows.flat(), (v) => BigInt(v)),
    [rows.length, rows[0]!.length],
  );

describe.skipIf(!hasDist)('export --onnx in plain onnxruntime-node (built binary)', () => {
  const models: [string, string[]][] = [['tiny', ['tiny']]];
  if (!noShared) {
    models.unshift(['stories260K', [S.model, '--tokenizer', S.tok]]);
    models.push(['pruned per layer', [tmp('per-layer')]]); // written by the test above
  }
  for (const [label, source] of models) {
    it(`${label}: int64 ids at batch 1 and 2, lengths 1, 7 and 33, padding through attention_mask; logits equal moreau's (rel 1e-4)`, async () => {
      const file = tmp(`${label.replaceAll(' ', '-')}.onnx`);
      const stdout = moreau(['export', ...source, '--onnx', file, '-q']);
      expect(stdout).toMatch(
        /^wrote .*\.onnx \(\d+\.\d\d MB, opset 17\): input_ids\[batch_size, sequence_length\] int64, attention_mask\[batch_size, sequence_length\] int64 -> logits\[batch_size, sequence_length, \d+\]\n$/,
      );
      const m = await loadModel(source[0]!, source[1] === '--tokenizer' ? { tokenizer: source[2]! } : {});
      const session = await ort.InferenceSession.create(file);
      expect([...session.inputNames]).toEqual(['input_ids', 'attention_mask']);
      const text = readFileSync(m.defaultText ?? S.text, 'utf8').slice(0, 4000);
      const ids = m.tokenizer.encode(text).slice(0, 66);
      expect(ids).toHaveLength(66);
      let worst = 0;
      for (const batch of [1, 2]) {
        for (const len of [1, 7, 33]) {
          const rows = Array.from({ length: batch }, (_, b) => ids.slice(b * len, (b + 1) * len));
          const want = await moreauLogits(m.model.config, m.model.params, rows);
          const out = await session.run({
            input_ids: int64(rows),
            attention_mask: int64(rows.map((r) => r.map(() => 1))),
          });
          const V = m.model.config.vocabSize;
          expect(out.logits!.dims).toEqual([batch, len, V]);
          const data = out.logits!.data as Float32Array;
          rows.forEach((_, b) => {
            worst = Math.max(worst, maxRelError(data.subarray(b * len * V, (b + 1) * len * V), want[b]!));
          });
        }
      }
      // A padded batch: rows of 33, 20 and 1 tokens, left-padded to 33.
      const rows = [ids.slice(0, 33), ids.slice(33, 53), ids.slice(53, 54)];
      const want = await moreauLogits(m.model.config, m.model.params, rows);
      const out = await session.run({
        input_ids: int64(rows.map((r) => [...Array(33 - r.length).fill(0), ...r])),
        attention_mask: int64(rows.map((r) => [...Array(33 - r.length).fill(0), ...r.map(() => 1)])),
      });
      const V = m.model.config.vocabSize;
      const data = out.logits!.data as Float32Array;
      rows.forEach((r, b) => {
        worst = Math.max(
          worst,
          maxRelError(data.subarray((b * 33 + 33 - r.length) * V, (b + 1) * 33 * V), want[b]!),
        );
      });
      await session.release();
      console.log(`export ${label}: max relative logit error vs moreau ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-4);
    }, 180_000);
  }

  it('--with-past: the cache of one call feeds the next; the last step equals the full pass', async () => {
    const file = tmp('tiny-past.onnx');
    const stdout = moreau(['export', 'tiny', '--onnx', file, '--with-past', '-q']);
    expect(stdout).toMatch(/\(\+ 8 past_key_values inputs, 8 present outputs\)/);
    const m = await loadModel('tiny');
    const c = m.model.config;
    const ids = m.tokenizer.encode('The jury said it did find that many of the problems');
    const want = (await moreauLogits(c, m.model.params, [ids]))[0]!;
    const session = await ort.InferenceSession.create(file);
    const feeds: Record<string, ort.Tensor> = {};
    for (let i = 0; i < c.numHiddenLayers; i++)
      for (const k of ['key', 'value'])
        feeds[`past_key_values.${i}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [
          1,
          c.numKeyValueHeads,
          0,
          c.headDim,
        ]);
    const V = c.vocabSize;
    let at = 0;
    let worst = 0;
    for (const n of [ids.length - 3, 1, 1, 1]) {
      const out = await session.run({
        ...feeds,
        input_ids: int64([ids.slice(at, at + n)]),
        attention_mask: int64([Array(at + n).fill(1)]),
      });
      worst = Math.max(
        worst,
        maxRelError(out.logits!.data as Float32Array, want.subarray(at * V, (at + n) * V)),
      );
      for (let i = 0; i < c.numHiddenLayers; i++)
        for (const k of ['key', 'value']) feeds[`past_key_values.${i}.${k}`] = out[`present.${i}.${k}`]!;
      at += n;
    }
    await session.release();
    expect(worst).toBeLessThan(1e-4);
  }, 120_000);
});
