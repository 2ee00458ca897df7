import {
  castHost,
  type HostTensor,
  jit,
  ReferenceBackend,
  Rng,
  tensor,
  toFloat32Data,
  valueAndGrad,
} from '@moreau/core';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { type LlamaConfig, layerDims } from './config.js';
import { llamaLogits, llamaLoss, llamaMaskedLoss, llamaTargetNll, llamaTokenNll } from './model.js';
import { randomInit } from './presets.js';
import { cutLlamaModel, smallLlama3Scaling } from './test-fixtures.js';

// ---------------------------------------------------------------------------------------------
// An independent, loop-based float64 LLaMA (HF semantics) used as the oracle.

type W = ReadonlyMap<string, HostTensor>;

function f64(t: HostTensor): Float64Array {
  return Float64Array.from(toFloat32Data(t));
}

/** y[o] = sum_i W[o, i] x[i] for W stored [out, in]. */
function matvec(w: Float64Array, out: number, inDim: number, x: Float64Array): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let acc = 0;
    for (let i = 0; i < inDim; i++) acc += w[o * inDim + i]! * x[i]!;
    y[o] = acc;
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]!);
}

/** HF's inv_freq (with the llama3 scaling) in plain float64. */
function refInvFreq(c: LlamaConfig): number[] {
  const out: number[] = [];
  for (let i = 0; i < c.headDim / 2; i++) {
    let f = c.ropeTheta ** (-(2 * i) / c.headDim);
    const rs = c.ropeScaling;
    if (rs) {
      const wavelen = (2 * Math.PI) / f;
      const lowW = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
      const highW = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
      if (wavelen > lowW) f = f / rs.factor;
      else if (wavelen >= highW) {
        const s =
          (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) /
          (rs.highFreqFactor - rs.lowFreqFactor);
        f = ((1 - s) * f) / rs.factor + s * f;
      }
    }
    out.push(f);
  }
  return out;
}

/** rotate_half RoPE of one head vector at position pos. */
function refRope(x: Float64Array, pos: number, inv: number[]): Float64Array {
  const half = x.length / 2;
  const y = new Float64Array(x.length);
  for (let i = 0; i < half; i++) {
    const c = Math.cos(pos * inv[i]!);
    const s = Math.sin(pos * inv[i]!);
    y[i] = x[i]! * c - x[i + half]! * s;
    y[i + half] = x[i + half]! * c + x[i]! * s;
  }
  return y;
}

/** Logits [B][T][V] of a LLaMA, one token and one head at a time. */
function refLogits(params: W, ids: number[][], c: LlamaConfig): Float64Array[][] {
  const H = c.hiddenSize;
  const hd = c.headDim;
  const V = c.vocabSize;
  const get = (n: string) => f64(params.get(n)!);
  const embed = get('model.embed_tokens.weight');
  const inv = refInvFreq(c);
  return ids.map((row) => {
    let xs = row.map((id) => embed.slice(id * H, (id + 1) * H));
    for (let l = 0; l < c.numHiddenLayers; l++) {
      const p = `model.layers.${l}`;
      const { heads, kvHeads, intermediate: I } = layerDims(c, l);
      const [wq, wk, wv, wo] = ['q', 'k', 'v', 'o'].map((n) => get(`${p}.self_attn.${n}_proj.weight`));
      const hs = xs.map((x) => rmsnorm(x, get(`${p}.input_layernorm.weight`), c.rmsNormEps));
      const qs = hs.map((h) => matvec(wq!, heads * hd, H, h));
      const ks = hs.map((h) => matvec(wk!, kvHeads * hd, H, h));
      const vs = hs.map((h) => matvec(wv!, kvHeads * hd, H, h));
      const head = (v: Float64Array, j: number) => v.slice(j * hd, (j + 1) * hd);
      xs = xs.map((x, t) => {
        const att = new Float64Array(heads * hd);
        for (let h = 0; h < heads; h++) {
          const kvh = Math.floor(h / (heads / kvHeads));
          const q = refRope(head(qs[t]!, h), t, inv);
          const scores: number[] = [];
          for (let s = 0; s <= t; s++) {
            const k = refRope(head(ks[s]!, kvh), s, inv);
            let d = 0;
            for (let i = 0; i < hd; i++) d += q[i]! * k[i]!;
            scores.push(d / Math.sqrt(hd));
          }
          const m = Math.max(...scores);
          const e = scores.map((v) => Math.exp(v - m));
          const z = e.reduce((a, b) => a + b, 0);
          for (let s = 0; s <= t; s++) {
            const v = head(vs[s]!, kvh);
            for (let i = 0; i < hd; i++) att[h * hd + i]! += (e[s]! / z) * v[i]!;
          }
        }
        const o = matvec(wo!, H, heads * hd, att);
        return x.map((v, i) => v + o[i]!);
      });
      xs = xs.map((x) => {
        const h = rmsnorm(x, get(`${p}.post_attention_layernorm.weight`), c.rmsNormEps);
        const g = matvec(get(`${p}.mlp.gate_proj.weight`), I, H, h);
        const u = matvec(get(`${p}.mlp.up_proj.weight`), I, H, h);
        const a = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
        const d = matvec(get(`${p}.mlp.down_proj.weight`), H, I, a);
        return x.map((v, i) => v + d[i]!);
      });
    }
    const lm = c.tieWordEmbeddings ? embed : get('lm_head.weight');
    return xs.map((x) => matvec(lm, V, H, rmsnorm(x, get('model.norm.weight'), c.rmsNormEps)));
  });
}

function logSoftmaxAt(logits: Float64Array, k: number): number {
  const m = Math.max(...logits);
  let z = 0;
  for (const v of logits) z += Math.exp(v - m);
  return logits[k]! - m - Math.log(z);
}

function refLoss(params: W, ids: number[][], c: LlamaConfig): number {
  const logits = refLogits(params, ids, c);
  let s = 0;
  let n = 0;
  ids.forEach((row, b) => {
    for (let t = 0; t + 1 < row.length; t++) {
      s -= logSoftmaxAt(logits[b]![t]!, row[t + 1]!);
      n++;
    }
  });
  return s / n;
}

// ---------------------------------------------------------------------------------------------

/** Random weights big enough to make the network clearly non-linear; norm weights around 1. */
function randomParams(c: LlamaConfig, seed: number): W {
  const p = randomInit(c, seed, { std: 0.3 });
  const rng = new Rng(seed + 1000);
  for (const t of p.values()) {
    if (t.shape.length === 1) {
      const d = t.data as Float32Array;
      for (let i = 0; i < d.length; i++) d[i] = 1 + 0.2 * rng.normal();
    }
  }
  return p;
}

function randomIds(rng: Rng, B: number, T: number, V: number): number[][] {
  return Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(V)));
}

const idsTensor = (ids: number[][]) => tensor(ids.flat(), [ids.length, ids[0]!.length], 'int32');
const obj = (m: W) => Object.fromEntries(m) as Record<string, HostTensor>;

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, what: string) {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (Math.abs(expected[i]!) + 1e-2 * scale));
  }
  expect(worst, `${what}: worst relative error ${worst}`).toBeLessThan(rel);
  return worst;
}

const backend = new ReferenceBackend();

async function graphLogits(params: W, ids: number[][], c: LlamaConfig): Promise<Float32Array> {
  const f = jit((p, x) => llamaLogits(p, x, c), { backend });
  const out = (await f(obj(params), idsTensor(ids))) as HostTensor;
  expect(out.shape).toEqual([ids.length, ids[0]!.length, c.vocabSize]);
  return out.data as Float32Array;
}

const flatLogits = (l: Float64Array[][]) => Float64Array.from(l.flatMap((r) => r.flatMap((v) => [...v])));

describe('llama graph vs an independent float64 implementation', () => {
  const configs: [string, LlamaConfig][] = [
    ['GQA 4 heads / 2 kv, untied', smallConfig()],
    ['MHA, tied embeddings', smallConfig({ numKeyValueHeads: 4, tieWordEmbeddings: true })],
    [
      'GQA 4 / 1 kv with llama3 rope scaling',
      smallConfig({ numKeyValueHeads: 1, ropeScaling: smallLlama3Scaling }),
    ],
  ];
  for (const [name, c] of configs) {
    it(`logits match (${name}), rel 1e-5`, async () => {
      const params = randomParams(c, 7);
      const ids = randomIds(new Rng(3), 2, 7, c.vocabSize);
      const got = await graphLogits(params, ids, c);
      expectClose(got, flatLogits(refLogits(params, ids, c)), 1e-5, 'logits');
    });
  }

  it('losses and per-token NLL agree with the oracle and with each other', async () => {
    const c = smallConfig();
    const params = randomParams(c, 11);
    const ids = randomIds(new Rng(5), 2, 7, c.vocabSize);
    const ref = refLogits(params, ids, c);
    const f = jit(
      (p, x, tg, m) => ({
        loss: llamaLoss(p, x, c),
        nll: llamaTokenNll(p, x, c),
        target: llamaTargetNll(p, x, tg, c),
        masked: llamaMaskedLoss(p, x, tg, m, c),
      }),
      { backend },
    );
    // targets: next tokens, last position padded with 0 and masked out.
    const targets = ids.map((r) => [...r.slice(1), 0]);
    const mask = ids.map((r) => r.map((_, t) => (t < r.length - 1 ? 1 : 0)));
    const out = (await f(
      obj(params),
      idsTensor(ids),
      idsTensor(targets),
      tensor(mask.flat(), [2, 7]),
    )) as Record<string, HostTensor>;
    const refNll = ids.flatMap((row, b) =>
      row.slice(0, -1).map((_, t) => -logSoftmaxAt(ref[b]![t]!, row[t + 1]!)),
    );
    expect(out.nll!.shape).toEqual([2, 6]);
    expectClose(out.nll!.data as Float32Array, refNll, 1e-5, 'token nll');
    const mean = refNll.reduce((a, b) => a + b, 0) / refNll.length;
    expect(Math.abs((out.loss!.data[0] as number) - mean) / mean).toBeLessThan(1e-5);
    expect(Math.abs((out.masked!.data[0] as number) - mean) / mean).toBeLessThan(1e-5);
    const tgt = out.target!.data as Float32Array;
    expect(out.target!.shape).toEqual([2, 7]);
    for (let b = 0; b < 2; b++)
      for (let t = 0; t < 6; t++) expect(tgt[b * 7 + t]).toBeCloseTo(refNll[b * 6 + t]!, 5);
  });

  it('loss gradients match central finite differences of the oracle', async () => {
    for (const c of [smallConfig(), smallConfig({ tieWordEmbeddings: true, numKeyValueHeads: 1 })]) {
      const params = randomParams(c, 21);
      const ids = randomIds(new Rng(9), 2, 6, c.vocabSize);
      const g = jit(
        valueAndGrad((p, x) => llamaLoss(p, x, c)),
        { backend },
      );
      const [value, grads] = (await g(obj(params), idsTensor(ids))) as [
        HostTensor,
        Record<string, HostTensor>,
      ];
      const base = refLoss(params, ids, c);
      expect(Math.abs((value.data[0] as number) - base) / base).toBeLessThan(1e-5);
      const names = [...params.keys()];
      expect(Object.keys(grads).sort()).toEqual([...names].sort());
      const rng = new Rng(17);
      let checked = 0;
      for (const name of names) {
        const t = params.get(name)!;
        const d = t.data as Float32Array;
        const gd = grads[name]!.data as Float32Array;
        // Two coordinates per parameter; for the embedding, a row of a token that occurs.
        for (let k = 0; k < 2; k++) {
          let i = rng.int(d.length);
          if (name === 'model.embed_tokens.weight') i = ids[0]![k]! * c.hiddenSize + rng.int(c.hiddenSize);
          const h = 1e-3;
          const old = d[i]!;
          d[i] = old + h;
          const up = refLoss(params, ids, c);
          d[i] = old - h;
          const down = refLoss(params, ids, c);
          d[i] = old;
          // The step is rounded to float32 on assignment: use the steps actually taken.
          const fd = (up - down) / (Math.fround(old + h) - Math.fround(old - h));
          expect(Math.abs(gd[i]! - fd), `${name}[${i}]: graph ${gd[i]} vs fd ${fd}`).toBeLessThan(
            2e-4 * Math.abs(fd) + 2e-6,
          );
          checked++;
        }
      }
      expect(checked).toBe(names.length * 2);
    }
  });
});

describe('pruned (per-layer) dimensions', () => {
  it('a cut model runs and matches the oracle with the same per-layer dims', async () => {
    const c = smallConfig({ numAttentionHeads: 6, numKeyValueHeads: 3, headDim: 4, numHiddenLayers: 3 });
    const params = randomParams(c, 31);
    const cut = cutLlamaModel(c, params, {
      'layer.0.attention': [2],
      'layer.2.attention': [0, 2],
      'layer.0.mlp': [0, 3, 5, 7, 11, 23],
      'layer.1.mlp': [4],
      'layer.2.mlp': [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    });
    expect(cut.config.layerHeadNum).toEqual([2, 6, 4]);
    expect(cut.config.layerKvHeadNum).toEqual([1, 3, 2]);
    expect(cut.config.layerInterSize).toEqual([6, 1, 10]);
    expect(cut.params.get('model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([8, 32]);
    const ids = randomIds(new Rng(2), 2, 7, c.vocabSize);
    const got = await graphLogits(cut.params, ids, cut.config);
    expectClose(got, flatLogits(refLogits(cut.params, ids, cut.config)), 1e-5, 'pruned logits');
  });

  it('cutting equals zeroing the removed units in the unpruned model', async () => {
    const c = smallConfig({ numAttentionHeads: 4, numKeyValueHeads: 2, numHiddenLayers: 2 });
    const params = randomParams(c, 41);
    const keptKv = [1];
    const keptCh = [2, 5, 6, 20];
    const cut = cutLlamaModel(c, params, { 'layer.1.attention': keptKv, 'layer.0.mlp': keptCh });
    // Zero o_proj columns of the removed KV group's query heads (group 0 = heads 0, 1 = columns 0..15)
    // and down_proj columns of removed channels: the outputs must not change.
    const zeroed = new Map(
      [...params].map(([k, t]) => [k, { ...t, data: (t.data as Float32Array).slice() }]),
    );
    const o = zeroed.get('model.layers.1.self_attn.o_proj.weight')!;
    for (let r = 0; r < 32; r++)
      for (let col = 0; col < 16; col++) (o.data as Float32Array)[r * 32 + col] = 0;
    const down = zeroed.get('model.layers.0.mlp.down_proj.weight')!;
    for (let r = 0; r < 32; r++) {
      for (let ch = 0; ch < 24; ch++) if (!keptCh.includes(ch)) (down.data as Float32Array)[r * 24 + ch] = 0;
    }
    const ids = randomIds(new Rng(4), 1, 7, c.vocabSize);
    const a = await graphLogits(cut.params, ids, cut.config);
    const b = flatLogits(refLogits(zeroed, ids, c));
    expectClose(a, b, 1e-5, 'cut vs zeroed');
  });
});

describe('inputs', () => {
  it('names a missing or mis-shaped parameter and bad ids', () => {
    const c = smallConfig();
    const params = obj(randomParams(c, 1));
    const ids = idsTensor([[1, 2, 3]]);
    const lower = (p: Record<string, HostTensor>, x: HostTensor) =>
      jit((pp, xx) => llamaLogits(pp, xx, c), { backend }).lower(p, x);
    const { 'model.layers.1.mlp.up_proj.weight': _, ...without } = params;
    expect(() => lower(without, ids)).toThrow(
      /'model\.layers\.1\.mlp\.up_proj\.weight' is missing \(expected shape \[24, 32\]\)/,
    );
    const wrong = { ...params, 'model.norm.weight': tensor(new Float32Array(31), [31]) };
    expect(() => lower(wrong, ids)).toThrow(
      /'model\.norm\.weight' has shape \[31\], the config needs \[32\]/,
    );
    expect(() => lower(params, tensor([1, 2, 3], [1, 3]))).toThrow(/int32 \[batch, seq\]/);
    expect(() => jit((p, x) => llamaLoss(p, x, c), { backend }).lower(params, idsTensor([[1]]))).toThrow(
      /at least 2/,
    );
  });

  it('accepts float16 weights (cast to float32 in the graph)', async () => {
    const c = smallConfig();
    const p32 = randomParams(c, 2);
    const p16 = new Map([...p32].map(([k, t]) => [k, castHost(t, 'float16')]));
    const rounded = new Map([...p16].map(([k, t]) => [k, castHost(t, 'float32')]));
    const ids = randomIds(new Rng(1), 1, 5, c.vocabSize);
    const a = await graphLogits(p16, ids, c);
    expectClose(a, flatLogits(refLogits(rounded, ids, c)), 1e-5, 'fp16 weights');
  });
});
