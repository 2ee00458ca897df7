/**
 * The LLaMA forward pass as the ONNX ecosystem runs it (Optimum's `text-generation(-with-past)`
 * signature, what transformers.js and onnxruntime users feed): token ids and an attention mask over
 * past + current positions, optionally the key / value cache of earlier steps, giving logits and the
 * updated cache. Written in core ops like model.ts, but with nothing that depends on the batch size
 * or the lengths except through shapes, so it can be traced at several sizes and exported with open
 * dimensions (@moreau/backend-ort's exportOnnxSymbolic):
 *
 * - slot indices (0 .. P+T-1) are a slice of a fixed arange over max_position_embeddings; the
 *   causal mask compares key slots with query slots;
 * - positions count the attended (mask 1) slots up to each token, minus one, as transformers'
 *   generate() derives position_ids from the attention mask: a left-padded row gets the positions of
 *   the same row unpadded, so its logits are the unpadded ones. Padding positions read position 0;
 * - RoPE cos / sin are gathered by position from tables over max_position_embeddings, the same tables
 *   model.ts computes (HF's float32 arithmetic);
 * - padding keys (mask 0) and future keys get MASK_VALUE added before the softmax.
 *
 * The cache holds each layer's rotated keys and its values as [batch, kv_heads, length, head_dim]
 * (transformers' layout); a layer's kv_heads are its own (pruned models: per-layer sizes).
 */
import {
  type Graph,
  type HostTensor,
  ops,
  ShapeError,
  type Tensor,
  type TensorSpec,
  trace,
} from '@moreau/core';
import { expectedTensorShapes, type LayerDims, type LlamaConfig, layerDims, layerPrefix } from './config.js';
import { MASK_VALUE } from './model.js';
import { ropeTables } from './rope.js';

/** One layer's cache entry: rotated keys and values, [B, kvHeads, length, headDim]. */
export interface LayerCache {
  readonly key: Tensor;
  readonly value: Tensor;
}

/** Fixed-size tables the forward pass slices and gathers from (built once, shared by every trace). */
export interface CausalLmTables {
  /** 0 .. max_position_embeddings - 1 (int32). */
  readonly slots: HostTensor;
  /** RoPE cos and sign-folded sin by position: [max_position_embeddings, headDim]. */
  readonly cos: HostTensor;
  readonly sinSigned: HostTensor;
}

export function causalLmTables(config: LlamaConfig): CausalLmTables {
  const n = config.maxPositionEmbeddings;
  const hd = config.headDim;
  const half = hd / 2;
  const { cos, sin } = ropeTables(config, n);
  // rotate_half(x) * sin == cat(x2, x1) * cat(-sin1, sin2), as in model.ts.
  const sinSigned = new Float32Array(sin.length);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < hd; i++) sinSigned[t * hd + i] = i < half ? -sin[t * hd + i]! : sin[t * hd + i]!;
  }
  return {
    slots: { dtype: 'int32', shape: [n], data: Int32Array.from({ length: n }, (_, i) => i) },
    cos: { dtype: 'float32', shape: [n, hd], data: cos },
    sinSigned: { dtype: 'float32', shape: [n, hd], data: sinSigned },
  };
}

export interface CausalLmOutput {
  /** [B, T, vocab] */
  readonly logits: Tensor;
  /** Per layer: the cache after this step, [B, kvHeads, P + T, headDim]. */
  readonly present: LayerCache[];
}

function rope(x: Tensor, cos: Tensor, sinSigned: Tensor): Tensor {
  const hd = x.shape[x.rank - 1]!;
  const half = hd / 2;
  const rotated = ops.concat([ops.slice(x, -1, half, hd), ops.slice(x, -1, 0, half)], -1);
  return ops.add(ops.mul(x, cos), ops.mul(rotated, sinSigned));
}

/**
 * Logits and the updated cache for `inputIds` [B, T] (int32) given `attentionMask` [B, P + T] (1 =
 * attend, 0 = padding; int32) and, when `past` is given, each layer's cache of P earlier positions.
 */
export function llamaCausalLm(
  params: Readonly<Record<string, Tensor>>,
  inputIds: Tensor,
  attentionMask: Tensor,
  past: readonly LayerCache[] | undefined,
  config: LlamaConfig,
  tables: CausalLmTables,
): CausalLmOutput {
  if (inputIds.dtype !== 'int32' || inputIds.rank !== 2)
    throw new ShapeError(`llama: inputIds must be int32 [batch, seq], got [${inputIds.shape}]`);
  const [B, T] = inputIds.shape as [number, number];
  const K = attentionMask.shape[1]!;
  const P = K - T;
  if (attentionMask.rank !== 2 || attentionMask.shape[0] !== B || P < 0)
    throw new ShapeError(`llama: attentionMask must be [${B}, past + ${T}], got [${attentionMask.shape}]`);
  if (past && past.length !== config.numHiddenLayers)
    throw new ShapeError(`llama: past has ${past.length} layers, the model ${config.numHiddenLayers}`);
  if (!past && P !== 0)
    throw new ShapeError('llama: attentionMask is longer than inputIds but no past is given');
  const shapes = expectedTensorShapes(config);
  const w = (name: string): Tensor => {
    const t = params[name];
    const want = shapes.get(name)!;
    if (!t || t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
      throw new ShapeError(`llama: parameter '${name}' must have shape [${want}]`);
    return ops.cast(t, 'float32');
  };
  const hd = config.headDim;

  // Slots: keys 0 .. K-1, queries P .. K-1. future[t, k] = 1 where key k comes after query t.
  const slots = ops.constant(tables.slots);
  const kSlot = ops.reshape(ops.slice(slots, 0, 0, K), [1, K]);
  const qSlot = ops.reshape(ops.slice(slots, 0, P, K), [T, 1]);
  const future = ops.cast(ops.greater(kSlot, qSlot), 'float32'); // [T, K]
  const maskF = ops.cast(attentionMask, 'float32'); // [B, K]
  // Position of query t: attended slots up to and including it, minus one (>= 0).
  const seen = ops.matmul(
    ops.reshape(maskF, [B, 1, K]),
    ops.reshape(ops.transpose(ops.sub(1, future)), [1, K, T]),
  );
  const positions = ops.cast(ops.maximum(ops.sub(ops.reshape(seen, [B, T]), 1), 0), 'int32');
  const cos = ops.reshape(ops.gather(ops.constant(tables.cos), positions), [B, T, 1, hd]);
  const sin = ops.reshape(ops.gather(ops.constant(tables.sinSigned), positions), [B, T, 1, hd]);
  // Additive bias over [B, kv, groups, T, K]: future keys and padding keys are masked.
  const blocked = ops.maximum(
    ops.reshape(future, [1, 1, 1, T, K]),
    ops.reshape(ops.sub(1, maskF), [B, 1, 1, 1, K]),
  );
  const bias = ops.mul(blocked, MASK_VALUE);
  const scale = 1 / Math.sqrt(hd);

  const attention = (x: Tensor, p: string, d: LayerDims, cache: LayerCache | undefined) => {
    const { heads, kvHeads } = d;
    const groups = heads / kvHeads;
    const q = ops.reshape(ops.linear(x, w(`${p}.self_attn.q_proj.weight`)), [B, T, heads, hd]);
    const k = ops.reshape(ops.linear(x, w(`${p}.self_attn.k_proj.weight`)), [B, T, kvHeads, hd]);
    const v = ops.reshape(ops.linear(x, w(`${p}.self_attn.v_proj.weight`)), [B, T, kvHeads, hd]);
    const qr = ops.reshape(
      ops.transpose(
        ops.reshape(ops.mul(rope(q, cos, sin), scale), [B, T, kvHeads, groups, hd]),
        [0, 2, 3, 1, 4],
      ),
      [B, kvHeads, groups * T, hd],
    );
    const kNew = ops.transpose(rope(k, cos, sin), [0, 2, 1, 3]); // [B, kv, T, hd]
    const vNew = ops.transpose(v, [0, 2, 1, 3]);
    const keys = cache ? ops.concat([cache.key, kNew], 2) : kNew; // [B, kv, K, hd]
    const values = cache ? ops.concat([cache.value, vNew], 2) : vNew;
    const scores = ops.add(
      ops.reshape(ops.matmul(qr, ops.transpose(keys, [0, 1, 3, 2])), [B, kvHeads, groups, T, K]),
      bias,
    );
    const probs = ops.reshape(ops.softmax(scores, -1), [B, kvHeads, groups * T, K]);
    const out = ops.reshape(ops.matmul(probs, values), [B, kvHeads, groups, T, hd]);
    const merged = ops.reshape(ops.transpose(out, [0, 3, 1, 2, 4]), [B, T, heads * hd]);
    return {
      out: ops.linear(merged, w(`${p}.self_attn.o_proj.weight`)),
      present: { key: keys, value: values },
    };
  };

  const eps = config.rmsNormEps;
  let x = ops.gather(w('model.embed_tokens.weight'), inputIds);
  const present: LayerCache[] = [];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = layerPrefix(i);
    const a = attention(
      ops.rmsNorm(x, w(`${p}.input_layernorm.weight`), eps),
      p,
      layerDims(config, i),
      past?.[i],
    );
    present.push(a.present);
    const h = ops.add(x, a.out);
    const n = ops.rmsNorm(h, w(`${p}.post_attention_layernorm.weight`), eps);
    const mlp = ops.linear(
      ops.mul(
        ops.silu(ops.linear(n, w(`${p}.mlp.gate_proj.weight`))),
        ops.linear(n, w(`${p}.mlp.up_proj.weight`)),
      ),
      w(`${p}.mlp.down_proj.weight`),
    );
    x = ops.add(h, mlp);
  }
  const normed = ops.rmsNorm(x, w('model.norm.weight'), eps);
  const head = config.tieWordEmbeddings ? w('model.embed_tokens.weight') : w('lm_head.weight');
  return { logits: ops.linear(normed, head), present };
}

export interface LlamaOnnxOptions {
  /** Add the key / value cache: past_key_values.{i}.key / .value inputs, present.{i}.key / .value outputs. */
  readonly withPast?: boolean;
}

/**
 * What @moreau/backend-ort's exportOnnxSymbolic(spec, file, spec) needs to write this model as a
 * standalone ONNX file with Optimum's names: inputs `input_ids` and `attention_mask` (int64,
 * [batch_size, sequence_length] and [batch_size, past_sequence_length + sequence_length]) and with
 * `withPast` `past_key_values.{i}.key` / `.value` (float32 [batch_size, kv_heads_i,
 * past_sequence_length, head_dim]); outputs `logits` [batch_size, sequence_length, vocab] and with
 * `withPast` `present.{i}.key` / `.value`. The weights are initializers under their HF names.
 */
export interface LlamaOnnxExport {
  readonly dims: readonly { readonly symbol: string; readonly name: string }[];
  readonly trace: (sizes: Readonly<Record<string, number>>) => Graph;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly frozen: ReadonlyMap<number, HostTensor>;
  readonly int64Inputs: readonly string[];
}

export function llamaOnnxExport(
  config: LlamaConfig,
  params: ReadonlyMap<string, HostTensor>,
  options: LlamaOnnxOptions = {},
): LlamaOnnxExport {
  const withPast = options.withPast ?? false;
  const names = [...params.keys()];
  const weights = names.map((n) => params.get(n)!);
  const weightSpecs: TensorSpec[] = weights.map((t) => ({
    shape: t.shape,
    dtype: t.dtype === 'bfloat16' ? 'float32' : t.dtype,
  }));
  const tables = causalLmTables(config);
  const L = config.numHiddenLayers;
  const kvOf = (i: number) => layerDims(config, i).kvHeads;
  const pastNames = withPast
    ? Array.from({ length: L }, (_, i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]).flat()
    : [];
  const presentNames = withPast
    ? Array.from({ length: L }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat()
    : [];
  return {
    dims: [
      { symbol: 'B', name: 'batch_size' },
      { symbol: 'T', name: 'sequence_length' },
      ...(withPast ? [{ symbol: 'P', name: 'past_sequence_length' }] : []),
    ],
    trace: (sizes) => {
      const B = sizes.B ?? 1;
      const T = sizes.T ?? 1;
      const P = withPast ? (sizes.P ?? 0) : 0;
      const pastSpecs: TensorSpec[] = withPast
        ? Array.from({ length: L }, (_, i) => {
            const s: TensorSpec = { shape: [B, kvOf(i), P, config.headDim], dtype: 'float32' };
            return [s, s];
          }).flat()
        : [];
      return trace(
        (w: Tensor[], ids: Tensor, mask: Tensor, pastFlat: Tensor[]) => {
          const p = Object.fromEntries(names.map((n, i) => [n, w[i]!]));
          const past = withPast
            ? Array.from({ length: L }, (_, i) => ({ key: pastFlat[2 * i]!, value: pastFlat[2 * i + 1]! }))
            : undefined;
          const out = llamaCausalLm(p, ids, mask, past, config, tables);
          return [out.logits, ...(withPast ? out.present.flatMap((c) => [c.key, c.value]) : [])];
        },
        [weightSpecs, { shape: [B, T], dtype: 'int32' }, { shape: [B, P + T], dtype: 'int32' }, pastSpecs],
      ).graph;
    },
    inputNames: [...names, 'input_ids', 'attention_mask', ...pastNames],
    outputNames: ['logits', ...presentNames],
    frozen: new Map(weights.map((t, i) => [i, t] as const)),
    int64Inputs: ['input_ids', 'attention_mask'],
  };
}
