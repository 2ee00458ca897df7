/**
 * How kept units cut a LLaMA: attention, MLP and hidden groups are slices (core's generic
 * `cutGroups`, then a smaller config); a removed layer drops its parameters, renumbers the layers
 * after it and shortens the per-layer arrays.
 *
 * Channel scope (hidden group) shapes: with H' of H hidden channels kept, embed_tokens and lm_head
 * become [vocab, H'], every RMSNorm weight [H'], q_proj [heads * head_dim, H'], k_proj / v_proj
 * [kv_heads * head_dim, H'], o_proj [H', heads * head_dim], gate_proj / up_proj [inter, H'] and
 * down_proj [H', inter]. head_dim and the head counts are untouched, so RoPE (a function of
 * head_dim and position only) and the attention layout are unchanged; config.json keeps an
 * explicit head_dim, which no longer equals hidden_size / heads.
 */
import { cutGroups, type GroupCut, type HostTensor, InputError, normalizeUnits } from '@moreau/core';
import { type LlamaConfig, layerDims, layerPrefix } from './config.js';

/** New per-layer sizes of a layer; omitted fields keep the layer's current size. */
export interface LayerSizes {
  readonly heads?: number;
  readonly kvHeads?: number;
  readonly intermediate?: number;
}

/**
 * The config after changing some layers' sizes. Writes the per-layer arrays (layerHeadNum,
 * layerKvHeadNum, layerInterSize) for every layer; the ordinary fields keep the maxima. When every
 * layer ends up at the ordinary sizes the arrays are dropped.
 */
export function pruneConfig(config: LlamaConfig, sizes: ReadonlyMap<number, LayerSizes>): LlamaConfig {
  const L = config.numHiddenLayers;
  const heads: number[] = [];
  const kv: number[] = [];
  const inter: number[] = [];
  for (let i = 0; i < L; i++) {
    const d = layerDims(config, i);
    heads.push(d.heads);
    kv.push(d.kvHeads);
    inter.push(d.intermediate);
  }
  for (const [layer, s] of sizes) {
    if (!Number.isInteger(layer) || layer < 0 || layer >= L) {
      throw new InputError(`pruneConfig: layer ${layer} out of range [0, ${L})`);
    }
    if (s.heads !== undefined) heads[layer] = s.heads;
    if (s.kvHeads !== undefined) kv[layer] = s.kvHeads;
    if (s.intermediate !== undefined) inter[layer] = s.intermediate;
  }
  for (let i = 0; i < L; i++) {
    const check = (v: number, max: number, what: string) => {
      if (!Number.isInteger(v) || v < 1 || v > max) {
        throw new InputError(`pruneConfig: layer ${i} ${what} = ${v} must be an integer in [1, ${max}]`);
      }
    };
    check(heads[i]!, config.numAttentionHeads, 'heads');
    check(kv[i]!, config.numKeyValueHeads, 'kvHeads');
    check(inter[i]!, config.intermediateSize, 'intermediate');
    if (heads[i]! % kv[i]! !== 0) {
      throw new InputError(
        `pruneConfig: layer ${i} has ${heads[i]} heads, not a multiple of its ${kv[i]} KV heads`,
      );
    }
  }
  const { layerHeadNum: _h, layerKvHeadNum: _k, layerInterSize: _i, ...base } = config;
  const uniform =
    heads.every((v) => v === config.numAttentionHeads) &&
    kv.every((v) => v === config.numKeyValueHeads) &&
    inter.every((v) => v === config.intermediateSize);
  if (uniform) return { ...base };
  return { ...base, layerHeadNum: heads, layerKvHeadNum: kv, layerInterSize: inter };
}

/**
 * The config of a LLaMA after cutting slice groups: attention groups set the layer's KV heads (and
 * query heads = KV heads x group size), MLP groups the layer's width, the hidden group the hidden
 * size. Layer groups are removals (see llamaCut).
 */
export function llamaConfigAfterCut(config: LlamaConfig, cuts: readonly GroupCut[]): LlamaConfig {
  const sizes = new Map<number, { heads?: number; kvHeads?: number; intermediate?: number }>();
  let hiddenSize = config.hiddenSize;
  for (const { group, kept } of cuts) {
    const layer = group.layer;
    const s = sizes.get(layer) ?? {};
    switch (group.kind) {
      case 'hidden':
        hiddenSize = normalizeUnits(kept, config.hiddenSize, 'hidden').length;
        continue;
      case 'attention': {
        const { heads, kvHeads } = layerDims(config, layer);
        s.kvHeads = normalizeUnits(kept, kvHeads, group.id).length;
        s.heads = s.kvHeads * (heads / kvHeads);
        break;
      }
      case 'mlp':
        s.intermediate = normalizeUnits(kept, layerDims(config, layer).intermediate, group.id).length;
        break;
      default:
        throw new InputError(`llamaConfigAfterCut: a ${group.kind} group is not a slice (group ${group.id})`);
    }
    sizes.set(layer, s);
  }
  const out = pruneConfig(config, sizes);
  return hiddenSize === config.hiddenSize ? out : { ...out, hiddenSize };
}

/** The model without the `removed` layers: parameters renamed to the new layer numbers. */
export function removeLayers(
  config: LlamaConfig,
  params: ReadonlyMap<string, HostTensor>,
  removed: ReadonlySet<number>,
): { config: LlamaConfig; params: Map<string, HostTensor> } {
  const L = config.numHiddenLayers;
  const kept = Array.from({ length: L }, (_, i) => i).filter((i) => !removed.has(i));
  if (kept.length === 0) throw new InputError('cannot remove every decoder layer (at least 1 must stay)');
  const newIndex = new Map(kept.map((old, i) => [old, i]));
  const out = new Map<string, HostTensor>();
  for (const [name, t] of params) {
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(name);
    if (!m) {
      out.set(name, t);
      continue;
    }
    const to = newIndex.get(Number(m[1]));
    if (to !== undefined) out.set(`${layerPrefix(to)}.${m[2]}`, t);
  }
  const { layerHeadNum: _h, layerKvHeadNum: _k, layerInterSize: _i, ...base } = config;
  // The per-layer sizes follow their layers (pruneConfig drops the arrays when all are uniform).
  const sizes = new Map(kept.map((old, i) => [i, layerDims(config, old)] as const));
  return { config: pruneConfig({ ...base, numHiddenLayers: kept.length }, sizes), params: out };
}

/** A LLaMA after the cuts: slices first (they name the original layers), then layer removals. */
export function llamaCut(
  config: LlamaConfig,
  params: ReadonlyMap<string, HostTensor>,
  cuts: readonly GroupCut[],
): { config: LlamaConfig; params: Map<string, HostTensor> } {
  const slices = cuts.filter((c) => c.group.kind !== 'layer');
  const removed = new Set(
    cuts.filter((c) => c.group.kind === 'layer' && c.kept.length === 0).map((c) => c.group.layer),
  );
  const sliced = { config: llamaConfigAfterCut(config, slices), params: cutGroups(params, slices) };
  return removed.size ? removeLayers(sliced.config, sliced.params, removed) : sliced;
}
