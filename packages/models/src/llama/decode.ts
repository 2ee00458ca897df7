/**
 * Incremental decoding of a LLaMA decoder layer (core's IncrementalDecoding): n new tokens at
 * positions start .. start + n - 1 run through the layer with that layer's key / value cache.
 *
 * Caches: keys after RoPE and values, each [B, kvHeads, capacity, headDim] (positions on axis 2).
 * The step reads the first `start` cached positions (a mask hides the rest, so a cache only needs
 * to be written where it was filled) plus the new tokens' own keys and values (causal among
 * themselves), and returns the new keys / values for the caller to write at `start`. RoPE tables
 * cover positions 0 .. capacity - 1 and are read at the new positions with a gather, so one graph
 * serves every start; graphs are compiled per (n, capacity).
 */
import {
  type CacheSpec,
  type DecodeStep,
  ops,
  ShapeError,
  type StageParams,
  stageLinear,
  type Tensor,
  tensor,
} from '@moreau/core';
import type { LayerDims, LlamaConfig } from './config.js';
import {
  castChecked,
  expectedLayerShapes,
  type LayerLinear,
  MASK_VALUE,
  mlp,
  rope,
  ropeConstTables,
} from './model.js';

/** The key and value caches of a layer with `kvHeads` KV heads. */
export function llamaCacheSpecs(config: LlamaConfig, dims: LayerDims): CacheSpec[] {
  const spec: CacheSpec = {
    shape: (batch, capacity) => [batch, dims.kvHeads, capacity, config.headDim],
    axis: 2,
  };
  return [spec, spec];
}

/** The one-step function of a layer of these dimensions (see the module comment). */
export function llamaLayerStepFn(
  config: LlamaConfig,
  dims: LayerDims,
  options: { readonly loraScale?: number } = {},
): (p: StageParams, h: Tensor, cache: readonly Tensor[], start: Tensor) => DecodeStep {
  const shapes = expectedLayerShapes(config, dims);
  const hd = config.headDim;
  const { heads, kvHeads } = dims;
  if (heads % kvHeads !== 0) {
    throw new ShapeError(
      `llama: a layer has ${heads} query heads, not a multiple of its ${kvHeads} KV heads`,
    );
  }
  const groups = heads / kvHeads;
  return (p, h, cache, start) => {
    const w = (local: string) => castChecked(p[local], local, shapes.get(local)!);
    // Projections add their LoRA update when the stage carries adapters (as llamaLayerFn).
    const lin: LayerLinear = (x, local) => stageLinear(x, p, local, w(local), options.loraScale);
    const [B, n] = h.shape as [number, number, number];
    const [kCache, vCache] = cache as [Tensor, Tensor];
    const C = kCache.shape[2]!;
    if (start.dtype !== 'int32' || start.shape.length !== 1 || start.shape[0] !== 1)
      throw new ShapeError(`llama: start must be int32 [1], got ${start.dtype} [${start.shape.join(', ')}]`);
    const eps = config.rmsNormEps;

    // Positions of the new tokens, and the RoPE tables read at them: [n, 1, hd].
    const pos = ops.add(start, ops.arange(n));
    const tables = ropeConstTables(config, C);
    const at = (d: Float32Array) =>
      ops.reshape(ops.gather(ops.constant(tensor(d, [C, hd])), pos), [n, 1, hd]);

    const x = ops.rmsNorm(h, w('input_layernorm'), eps);
    const q = ops.reshape(lin(x, 'self_attn.q_proj'), [B, n, heads, hd]);
    const k = ops.reshape(lin(x, 'self_attn.k_proj'), [B, n, kvHeads, hd]);
    const v = ops.reshape(lin(x, 'self_attn.v_proj'), [B, n, kvHeads, hd]);
    const qr = ops.reshape(
      ops.transpose(
        ops.reshape(rope(q, at(tables.qCos), at(tables.qSin)), [B, n, kvHeads, groups, hd]),
        [0, 2, 3, 1, 4],
      ),
      [B, kvHeads, groups * n, hd],
    );
    const kNew = ops.transpose(rope(k, at(tables.kCos), at(tables.kSin)), [0, 2, 1, 3]); // [B, kv, n, hd]
    const vNew = ops.transpose(v, [0, 2, 1, 3]); // [B, kv, n, hd]

    // Scores over the cache's positions, then over the new tokens: [B, kv, g, n, C + n].
    const keys = ops.concat([kCache, kNew], 2);
    const values = ops.concat([vCache, vNew], 2);
    const scores = ops.reshape(ops.matmul(qr, ops.transpose(keys, [0, 1, 3, 2])), [
      B,
      kvHeads,
      groups,
      n,
      C + n,
    ]);
    const filled = ops.where(ops.less(ops.arange(C), start), 0, MASK_VALUE); // [C]
    const causal = new Float32Array(n * n);
    for (let t = 0; t < n; t++) for (let s = t + 1; s < n; s++) causal[t * n + s] = MASK_VALUE;
    const mask = ops.concat(
      [ops.broadcastTo(ops.reshape(filled, [1, C]), [n, C]), ops.constant(tensor(causal, [n, n]))],
      1,
    );
    const probs = ops.reshape(ops.softmax(ops.add(scores, mask), -1), [B, kvHeads, groups * n, C + n]);
    const out = ops.reshape(ops.matmul(probs, values), [B, kvHeads, groups, n, hd]);
    const merged = ops.reshape(ops.transpose(out, [0, 3, 1, 2, 4]), [B, n, heads * hd]);
    const h2 = ops.add(h, lin(merged, 'self_attn.o_proj'));
    const hidden = ops.add(h2, mlp(ops.rmsNorm(h2, w('post_attention_layernorm'), eps), lin));
    return { hidden, entries: [kNew, vNew] };
  };
}
