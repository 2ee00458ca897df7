/**
 * The LLaMA family as pure functions of core ops: traced by core into an IR graph, differentiated by
 * core's autodiff, run on any backend. Parameters are graph inputs under Hugging Face names; the
 * only constants are the RoPE cos / sin tables and the causal mask, built on the host.
 *
 * Layout: activations are [B, T, hidden]. Attention works on [B, kvHeads, groups * T, headDim]
 * blocks so every query head of a KV group shares one batched matmul with its K / V, with no
 * per-head loop and no copy of K / V (HF's repeat_kv: query head h uses KV head floor(h / groups)).
 * Per-layer head counts and MLP widths (pruned models) come from the config's per-layer arrays.
 */
import { ops, ShapeError, stageLinear, type Tensor, tensor } from '@moreau/core';
import { expectedTensorShapes, type LayerDims, type LlamaConfig, layerDims, layerPrefix } from './config.js';
import { ropeTables } from './rope.js';

/** Parameters by Hugging Face name (lm_head.weight absent when the embeddings are tied). */
export type LlamaParams = Readonly<Record<string, Tensor>>;

/** Added to attention scores above the diagonal (what HF adds is the dtype minimum; any huge value works). */
export const MASK_VALUE = -1e9;

interface Consts {
  /** [T, 1, hd] tables for K, and for Q with the 1/sqrt(hd) attention scale folded in. */
  kCos: Tensor;
  kSin: Tensor;
  qCos: Tensor;
  qSin: Tensor;
  /** [T, T] additive causal mask. */
  mask: Tensor;
}

/**
 * RoPE tables for positions 0 .. seqLen-1, [seqLen, hd] each: for K, and for Q with the
 * 1/sqrt(hd) attention scale folded in; sin carries rotate_half's sign
 * (rotate_half(x) * sin == cat(x2, x1) * cat(-sin1, sin2)).
 */
export function ropeConstTables(
  config: LlamaConfig,
  seqLen: number,
): { kCos: Float32Array; kSin: Float32Array; qCos: Float32Array; qSin: Float32Array } {
  const hd = config.headDim;
  const half = hd / 2;
  const { cos, sin } = ropeTables(config, seqLen);
  const sinSigned = new Float32Array(sin.length);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < hd; i++) sinSigned[t * hd + i] = i < half ? -sin[t * hd + i]! : sin[t * hd + i]!;
  }
  const scale = 1 / Math.sqrt(hd);
  return {
    kCos: cos,
    kSin: sinSigned,
    qCos: cos.map((v) => v * scale),
    qSin: sinSigned.map((v) => v * scale),
  };
}

function buildConsts(config: LlamaConfig, seqLen: number): Consts {
  const hd = config.headDim;
  const tables = ropeConstTables(config, seqLen);
  const mask = new Float32Array(seqLen * seqLen);
  for (let t = 0; t < seqLen; t++) for (let s = t + 1; s < seqLen; s++) mask[t * seqLen + s] = MASK_VALUE;
  const table = (d: Float32Array) => ops.constant(tensor(d, [seqLen, 1, hd]));
  return {
    kCos: table(tables.kCos),
    kSin: table(tables.kSin),
    qCos: table(tables.qCos),
    qSin: table(tables.qSin),
    mask: ops.constant(tensor(mask, [seqLen, seqLen])),
  };
}

/** Looks parameters up by name, checks their shapes against the config and casts them to float32. */
class Weights {
  private readonly shapes: Map<string, number[]>;
  constructor(
    private readonly params: LlamaParams,
    config: LlamaConfig,
  ) {
    if (params === null || typeof params !== 'object')
      throw new ShapeError('llama: params must be an object of tensors');
    this.shapes = expectedTensorShapes(config);
  }

  get(name: string): Tensor {
    const t = this.params[name];
    const shape = this.shapes.get(name);
    if (!t) {
      throw new ShapeError(
        `llama: parameter '${name}' is missing` + (shape ? ` (expected shape [${shape.join(', ')}])` : ''),
      );
    }
    if (shape && (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new ShapeError(
        `llama: parameter '${name}' has shape [${t.shape.join(', ')}], the config needs [${shape.join(', ')}]`,
      );
    }
    return ops.cast(t, 'float32');
  }
}

export function checkIds(ids: Tensor, what: string): [number, number] {
  if (ids.dtype !== 'int32' || ids.rank !== 2) {
    throw new ShapeError(
      `llama: ${what} must be int32 [batch, seq], got ${ids.dtype} [${ids.shape.join(', ')}]`,
    );
  }
  return ids.shape as [number, number];
}

/** rotate_half RoPE on x [B, T, n, hd] with [T, 1, hd] tables (sin already signed). */
export function rope(x: Tensor, cos: Tensor, sinSigned: Tensor): Tensor {
  const hd = x.shape[x.rank - 1]!;
  const half = hd / 2;
  const rotated = ops.concat([ops.slice(x, -1, half, hd), ops.slice(x, -1, 0, half)], -1);
  return ops.add(ops.mul(x, cos), ops.mul(rotated, sinSigned));
}

/** A decoder layer's weights under their local names (HF's, without the layer prefix). */
export const LAYER_PARAMS = [
  'input_layernorm',
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'post_attention_layernorm',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const;

/** Looks up a layer weight by local name and casts it to float32 (storage dtypes are cast in the graph). */
export type LayerWeight = (local: (typeof LAYER_PARAMS)[number]) => Tensor;

/** Applies a layer's linear projection by local name: x W^T (plus a LoRA update when adapted). */
export type LayerLinear = (x: Tensor, local: (typeof LAYER_PARAMS)[number]) => Tensor;

/** The projections LoRA can adapt (PEFT module names), by their local names in a layer. */
export const LORA_MODULES: Readonly<Record<string, (typeof LAYER_PARAMS)[number]>> = {
  q_proj: 'self_attn.q_proj',
  k_proj: 'self_attn.k_proj',
  v_proj: 'self_attn.v_proj',
  o_proj: 'self_attn.o_proj',
  gate_proj: 'mlp.gate_proj',
  up_proj: 'mlp.up_proj',
  down_proj: 'mlp.down_proj',
};

function attention(x: Tensor, lin: LayerLinear, config: LlamaConfig, dims: LayerDims, c: Consts): Tensor {
  const [B, T] = x.shape as [number, number, number];
  const { heads, kvHeads } = dims;
  const hd = config.headDim;
  if (heads % kvHeads !== 0) {
    throw new ShapeError(
      `llama: a layer has ${heads} query heads, not a multiple of its ${kvHeads} KV heads`,
    );
  }
  const groups = heads / kvHeads;
  const q = ops.reshape(lin(x, 'self_attn.q_proj'), [B, T, heads, hd]);
  const k = ops.reshape(lin(x, 'self_attn.k_proj'), [B, T, kvHeads, hd]);
  const v = ops.reshape(lin(x, 'self_attn.v_proj'), [B, T, kvHeads, hd]);
  // q: [B, T, kv, g, hd] -> [B, kv, g, T, hd] -> [B, kv, g*T, hd] (scaled by 1/sqrt(hd) via the tables).
  const qr = ops.reshape(
    ops.transpose(ops.reshape(rope(q, c.qCos, c.qSin), [B, T, kvHeads, groups, hd]), [0, 2, 3, 1, 4]),
    [B, kvHeads, groups * T, hd],
  );
  const kT = ops.transpose(rope(k, c.kCos, c.kSin), [0, 2, 3, 1]); // [B, kv, hd, T]
  const vt = ops.transpose(v, [0, 2, 1, 3]); // [B, kv, T, hd]
  const scores = ops.add(ops.reshape(ops.matmul(qr, kT), [B, kvHeads, groups, T, T]), c.mask);
  const probs = ops.reshape(ops.softmax(scores, -1), [B, kvHeads, groups * T, T]);
  const out = ops.reshape(ops.matmul(probs, vt), [B, kvHeads, groups, T, hd]);
  const merged = ops.reshape(ops.transpose(out, [0, 3, 1, 2, 4]), [B, T, heads * hd]);
  return lin(merged, 'self_attn.o_proj');
}

export function mlp(x: Tensor, lin: LayerLinear): Tensor {
  const gate = lin(x, 'mlp.gate_proj');
  const up = lin(x, 'mlp.up_proj');
  return lin(ops.mul(ops.silu(gate), up), 'mlp.down_proj');
}

/** One decoder layer: residual attention then residual MLP, on [B, T, hidden]. */
function decoderLayer(
  x: Tensor,
  w: LayerWeight,
  config: LlamaConfig,
  dims: LayerDims,
  c: Consts,
  lin: LayerLinear = (y, local) => ops.linear(y, w(local)),
): Tensor {
  const eps = config.rmsNormEps;
  const h = ops.add(x, attention(ops.rmsNorm(x, w('input_layernorm'), eps), lin, config, dims, c));
  return ops.add(h, mlp(ops.rmsNorm(h, w('post_attention_layernorm'), eps), lin));
}

/**
 * A decoder layer of these dimensions as a function of its weights under local names (see
 * LAYER_PARAMS): the same function, hence the same compiled graph, for every layer of one shape.
 * With `loraScale`, a projection whose adapters the stage carries (`<local>.lora_A` / `.lora_B`,
 * and `.lora_dropout` masks while training) adds the LoRA update (core's stageLinear).
 */
export function llamaLayerFn(
  config: LlamaConfig,
  dims: LayerDims,
  options: { readonly loraScale?: number } = {},
): (p: Readonly<Record<string, Tensor>>, h: Tensor) => Tensor {
  const shapes = expectedLayerShapes(config, dims);
  return (p, h) => {
    const T = h.shape[1]!;
    const w: LayerWeight = (local) => castChecked(p[local], local, shapes.get(local)!);
    return decoderLayer(h, w, config, dims, buildConsts(config, T), (x, local) =>
      stageLinear(x, p, local, w(local), options.loraScale),
    );
  };
}

/** Shapes of one layer's weights under local names. */
export function expectedLayerShapes(config: LlamaConfig, d: LayerDims): Map<string, number[]> {
  const h = config.hiddenSize;
  const hd = config.headDim;
  return new Map<string, number[]>([
    ['input_layernorm', [h]],
    ['self_attn.q_proj', [d.heads * hd, h]],
    ['self_attn.k_proj', [d.kvHeads * hd, h]],
    ['self_attn.v_proj', [d.kvHeads * hd, h]],
    ['self_attn.o_proj', [h, d.heads * hd]],
    ['post_attention_layernorm', [h]],
    ['mlp.gate_proj', [d.intermediate, h]],
    ['mlp.up_proj', [d.intermediate, h]],
    ['mlp.down_proj', [h, d.intermediate]],
  ]);
}

export function castChecked(t: Tensor | undefined, name: string, shape: readonly number[]): Tensor {
  if (!t)
    throw new ShapeError(`llama: parameter '${name}' is missing (expected shape [${shape.join(', ')}])`);
  if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new ShapeError(
      `llama: parameter '${name}' has shape [${t.shape.join(', ')}], the config needs [${shape.join(', ')}]`,
    );
  }
  return ops.cast(t, 'float32');
}

/** The residual stream after the last decoder layer, before the final norm: [B, T, hidden]. */
function decoder(w: Weights, inputIds: Tensor, config: LlamaConfig): Tensor {
  const [, T] = checkIds(inputIds, 'inputIds');
  const c = buildConsts(config, T);
  let x = ops.gather(w.get('model.embed_tokens.weight'), inputIds);
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = layerPrefix(i);
    x = decoderLayer(x, (local) => w.get(`${p}.${local}.weight`), config, layerDims(config, i), c);
  }
  return x;
}

function head(w: Weights, hidden: Tensor, config: LlamaConfig): Tensor {
  const normed = ops.rmsNorm(hidden, w.get('model.norm.weight'), config.rmsNormEps);
  const lm = config.tieWordEmbeddings ? w.get('model.embed_tokens.weight') : w.get('lm_head.weight');
  return ops.linear(normed, lm);
}

/** Next-token logits: [B, T, vocab] (float32). */
export function llamaLogits(params: LlamaParams, inputIds: Tensor, config: LlamaConfig): Tensor {
  const w = new Weights(params, config);
  return head(w, decoder(w, inputIds, config), config);
}

/**
 * Logits of positions 0 .. T-2 only, the ones that predict a next token inside the window:
 * [B, T-1, vocab]. The last position never reaches the final norm and the output layer.
 */
export function llamaShiftedLogits(params: LlamaParams, inputIds: Tensor, config: LlamaConfig): Tensor {
  const [, T] = checkIds(inputIds, 'inputIds');
  if (T < 2) throw new ShapeError(`llama: next-token losses need at least 2 tokens per row, got ${T}`);
  const w = new Weights(params, config);
  return head(w, ops.slice(decoder(w, inputIds, config), 1, 0, T - 1), config);
}

function shiftedNll(params: LlamaParams, inputIds: Tensor, config: LlamaConfig): Tensor {
  const T = inputIds.shape[1]!;
  return ops.tokenNll(llamaShiftedLogits(params, inputIds, config), ops.slice(inputIds, 1, 1, T));
}

/**
 * Per-position next-token negative log-likelihood: [B, T-1], entry [b, t] = -log p(ids[b, t+1] |
 * ids[b, 0..t]). For perplexity and zero-shot scoring.
 */
export function llamaTokenNll(params: LlamaParams, inputIds: Tensor, config: LlamaConfig): Tensor {
  return shiftedNll(params, inputIds, config);
}

/** Mean next-token cross-entropy over every position t < T-1 of every row (a scalar). */
export function llamaLoss(params: LlamaParams, inputIds: Tensor, config: LlamaConfig): Tensor {
  return ops.mean(shiftedNll(params, inputIds, config));
}

/**
 * NLL of explicit targets: [B, T], entry [b, t] = -log p(targets[b, t] | inputIds[b, 0..t]).
 * `targets` is int32 [B, T]; any value in [0, vocab) (pad positions can hold e.g. 0 and be masked).
 */
export function llamaTargetNll(
  params: LlamaParams,
  inputIds: Tensor,
  targets: Tensor,
  config: LlamaConfig,
): Tensor {
  const [B, T] = checkIds(inputIds, 'inputIds');
  const [B2, T2] = checkIds(targets, 'targets');
  if (B !== B2 || T !== T2) {
    throw new ShapeError(`llama: targets [${B2}, ${T2}] must have the shape of inputIds [${B}, ${T}]`);
  }
  const w = new Weights(params, config);
  return ops.tokenNll(head(w, decoder(w, inputIds, config), config), targets);
}

/**
 * Mean NLL of `targets` over the positions where the float32 `mask` [B, T] is 1 (weighted by the
 * mask in general): sum(nll * mask) / sum(mask). An all-zero mask gives NaN.
 */
export function llamaMaskedLoss(
  params: LlamaParams,
  inputIds: Tensor,
  targets: Tensor,
  mask: Tensor,
  config: LlamaConfig,
): Tensor {
  if (
    mask.dtype !== 'float32' ||
    mask.rank !== 2 ||
    mask.shape[0] !== inputIds.shape[0] ||
    mask.shape[1] !== inputIds.shape[1]
  ) {
    throw new ShapeError(
      `llama: mask must be float32 [${inputIds.shape.join(', ')}], got ${mask.dtype} [${mask.shape.join(', ')}]`,
    );
  }
  const nll = llamaTargetNll(params, inputIds, targets, config);
  return ops.div(ops.sum(ops.mul(nll, mask)), ops.sum(mask));
}
