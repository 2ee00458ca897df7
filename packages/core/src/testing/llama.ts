/**
 * A tiny LLaMA-like decoder block written against core's ops: the composite workload of the
 * conformance suite, and a model backend packages can reuse for cross-backend tests.
 *
 * Embedding gather -> RMSNorm -> attention (RoPE in the Hugging Face rotate_half convention with
 * host-built cos/sin constants, grouped KV heads, causal mask built in-graph, softmax) -> residual
 * -> RMSNorm -> SwiGLU MLP -> residual -> final RMSNorm -> LM head tied to the embedding -> mean
 * next-token cross-entropy.
 */
import { type HostTensor, ops, Rng, type Tensor, tensor } from '@moreau/core';

export interface LlamaLikeConfig {
  readonly vocab: number;
  readonly dim: number;
  readonly heads: number;
  readonly kvHeads: number;
  /** MLP intermediate size. */
  readonly hidden: number;
  readonly layers: number;
  readonly batch: number;
  /** Positions per sequence; the token input holds seqLen + 1 ids (inputs and shifted targets). */
  readonly seqLen: number;
  readonly eps: number;
  readonly ropeTheta: number;
  readonly seed: number;
}

export const DEFAULT_LLAMA_LIKE_CONFIG: LlamaLikeConfig = {
  vocab: 32,
  dim: 16,
  heads: 4,
  kvHeads: 2,
  hidden: 24,
  layers: 1,
  batch: 2,
  seqLen: 6,
  eps: 1e-5,
  ropeTheta: 10000,
  seed: 1234,
};

export interface LlamaLikeLayer<T> {
  readonly input_layernorm: T;
  readonly self_attn: { readonly q_proj: T; readonly k_proj: T; readonly v_proj: T; readonly o_proj: T };
  readonly post_attention_layernorm: T;
  readonly mlp: { readonly gate_proj: T; readonly up_proj: T; readonly down_proj: T };
}

/** Parameters with Hugging Face names and layouts (Linear weights stored [out, in]). */
export interface LlamaLikeParams<T> {
  readonly embed_tokens: T;
  readonly layers: readonly LlamaLikeLayer<T>[];
  readonly norm: T;
}

export interface LlamaLikeBlock {
  /** loss = fn(params, ids) with ids int32 [batch, seqLen + 1]. Differentiate argument 0. */
  readonly fn: (params: LlamaLikeParams<Tensor>, ids: Tensor) => Tensor;
  readonly params: LlamaLikeParams<HostTensor>;
  /** The arguments after params: [ids]. */
  readonly inputs: readonly [HostTensor];
  readonly config: LlamaLikeConfig;
}

/** Hugging Face RoPE tables [seqLen, headDim]: cos/sin of pos * theta^(-2i/headDim), halves repeated. */
export function ropeTables(
  seqLen: number,
  headDim: number,
  theta: number,
): { cos: HostTensor; sin: HostTensor } {
  const half = headDim / 2;
  const cos = new Float32Array(seqLen * headDim);
  const sin = new Float32Array(seqLen * headDim);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * theta ** ((-2 * i) / headDim);
      for (const j of [i, i + half]) {
        cos[t * headDim + j] = Math.cos(angle);
        sin[t * headDim + j] = Math.sin(angle);
      }
    }
  }
  return { cos: tensor(cos, [seqLen, headDim]), sin: tensor(sin, [seqLen, headDim]) };
}

function rotateHalf(x: Tensor): Tensor {
  const d = x.shape[x.rank - 1]!;
  return ops.concat([ops.neg(ops.slice(x, -1, d / 2)), ops.slice(x, -1, 0, d / 2)], -1);
}

/** Builds the block with seeded weights and token ids; override any config field. */
export function llamaLikeBlock(overrides: Partial<LlamaLikeConfig> = {}): LlamaLikeBlock {
  const config: LlamaLikeConfig = { ...DEFAULT_LLAMA_LIKE_CONFIG, ...overrides };
  const { vocab, dim, heads, kvHeads, hidden, layers, batch, seqLen, eps, ropeTheta, seed } = config;
  if (dim % heads !== 0 || heads % kvHeads !== 0) {
    throw new RangeError(`llamaLikeBlock: dim ${dim} / heads ${heads} / kvHeads ${kvHeads} do not divide`);
  }
  const headDim = dim / heads;
  if (headDim % 2 !== 0) throw new RangeError(`llamaLikeBlock: head dim ${headDim} must be even for RoPE`);
  const rep = heads / kvHeads;
  const rng = new Rng(seed);
  const normal = (shape: number[], std: number, mean = 0) =>
    tensor(
      rng.normalArray(
        shape.reduce((p, d) => p * d, 1),
        mean,
        std,
      ),
      shape,
    );
  const linear = (out: number, inDim: number) => normal([out, inDim], 1 / Math.sqrt(inDim));

  const params: LlamaLikeParams<HostTensor> = {
    embed_tokens: normal([vocab, dim], 0.7),
    layers: Array.from({ length: layers }, () => ({
      input_layernorm: normal([dim], 0.1, 1),
      self_attn: {
        q_proj: linear(heads * headDim, dim),
        k_proj: linear(kvHeads * headDim, dim),
        v_proj: linear(kvHeads * headDim, dim),
        o_proj: linear(dim, heads * headDim),
      },
      post_attention_layernorm: normal([dim], 0.1, 1),
      mlp: { gate_proj: linear(hidden, dim), up_proj: linear(hidden, dim), down_proj: linear(dim, hidden) },
    })),
    norm: normal([dim], 0.1, 1),
  };
  const ids = new Int32Array(batch * (seqLen + 1));
  for (let i = 0; i < ids.length; i++) ids[i] = rng.int(vocab);
  const inputs = [tensor(ids, [batch, seqLen + 1], 'int32')] as const;
  const rope = ropeTables(seqLen, headDim, ropeTheta);

  const fn = (p: LlamaLikeParams<Tensor>, idsT: Tensor): Tensor => {
    const [B, T1] = idsT.shape as [number, number];
    const T = T1 - 1;
    const tokens = ops.slice(idsT, 1, 0, T);
    const targets = ops.slice(idsT, 1, 1, T1);
    const cos = ops.constant(rope.cos);
    const sin = ops.constant(rope.sin);
    const applyRope = (x: Tensor) => ops.add(ops.mul(x, cos), ops.mul(rotateHalf(x), sin));
    // Causal mask: key position j is hidden from query position i when j > i.
    const pos = ops.arange(T, 'int32');
    const future = ops.greater(ops.reshape(pos, [1, T]), ops.reshape(pos, [T, 1]));
    const heads4 = (x: Tensor, n: number) => ops.transpose(ops.reshape(x, [B, T, n, headDim]), [0, 2, 1, 3]);

    let x = ops.gather(p.embed_tokens, tokens); // [B, T, dim]
    for (const layer of p.layers) {
      const h = ops.rmsNorm(x, layer.input_layernorm, eps);
      const q = applyRope(heads4(ops.linear(h, layer.self_attn.q_proj), heads));
      const k = applyRope(heads4(ops.linear(h, layer.self_attn.k_proj), kvHeads));
      const v = heads4(ops.linear(h, layer.self_attn.v_proj), kvHeads);
      // Grouped KV heads: query head i reads KV head floor(i / rep), as HF's repeat_kv.
      const repeat = (t: Tensor) =>
        ops.reshape(
          ops.broadcastTo(ops.reshape(t, [B, kvHeads, 1, T, headDim]), [B, kvHeads, rep, T, headDim]),
          [B, heads, T, headDim],
        );
      const scores = ops.mul(ops.matmul(q, ops.mT(repeat(k))), 1 / Math.sqrt(headDim)); // [B, H, T, T]
      const probs = ops.softmax(ops.where(future, -1e9, scores), -1);
      const attn = ops.reshape(ops.transpose(ops.matmul(probs, repeat(v)), [0, 2, 1, 3]), [
        B,
        T,
        heads * headDim,
      ]);
      x = ops.add(x, ops.linear(attn, layer.self_attn.o_proj));
      const h2 = ops.rmsNorm(x, layer.post_attention_layernorm, eps);
      const act = ops.mul(ops.silu(ops.linear(h2, layer.mlp.gate_proj)), ops.linear(h2, layer.mlp.up_proj));
      x = ops.add(x, ops.linear(act, layer.mlp.down_proj));
    }
    const logits = ops.linear(ops.rmsNorm(x, p.norm, eps), p.embed_tokens); // tied LM head
    return ops.crossEntropy(logits, targets);
  };
  return { fn, params, inputs, config };
}
