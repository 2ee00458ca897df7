/**
 * Prunable groups: which slices of which parameters must be removed together. The description is
 * model-agnostic (core's pruning engine reads it without knowing what a LLaMA is); `llamaGroups`
 * produces it for a LLaMA config, core's `cutModel` cuts the kept units, and `llamaConfigAfterCut`
 * gives the new per-layer config.
 *
 * A group has `units` units. Member m of the group covers, for unit u, the contiguous index range
 * [m.offset + u * m.span, m.offset + (u + 1) * m.span) along m.axis of parameter m.param.
 */
import {
  type GroupKind,
  type GroupMember,
  InputError,
  normalizeUnits,
  type PrunableGroup,
} from '@moreau/core';
import { type LlamaConfig, layerDims, layerPrefix } from './config.js';

export type MemberRole =
  | 'q'
  | 'k'
  | 'v'
  | 'o'
  | 'gate'
  | 'up'
  | 'down'
  | 'embed'
  | 'lm_head'
  | 'input_norm'
  | 'post_attention_norm'
  | 'final_norm';

const member = (param: string, axis: 0 | 1, role: MemberRole, span: number): GroupMember => ({
  param,
  axis,
  role,
  span,
  offset: 0,
});

/** The attention group of one layer: units are KV groups (each with its query heads). */
export function llamaAttentionGroup(config: LlamaConfig, layer: number): PrunableGroup {
  const { heads, kvHeads } = layerDims(config, layer);
  const hd = config.headDim;
  const g = heads / kvHeads;
  const p = `${layerPrefix(layer)}.self_attn`;
  return {
    id: `layer.${layer}.attention`,
    kind: 'attention',
    layer,
    units: kvHeads,
    unitSize: hd,
    members: [
      member(`${p}.q_proj.weight`, 0, 'q', g * hd),
      member(`${p}.k_proj.weight`, 0, 'k', hd),
      member(`${p}.v_proj.weight`, 0, 'v', hd),
      member(`${p}.o_proj.weight`, 1, 'o', g * hd),
    ],
  };
}

/** The MLP group of one layer: units are intermediate channels. */
export function llamaMlpGroup(config: LlamaConfig, layer: number): PrunableGroup {
  const { intermediate } = layerDims(config, layer);
  const p = `${layerPrefix(layer)}.mlp`;
  return {
    id: `layer.${layer}.mlp`,
    kind: 'mlp',
    layer,
    units: intermediate,
    unitSize: 1,
    members: [
      member(`${p}.gate_proj.weight`, 0, 'gate', 1),
      member(`${p}.up_proj.weight`, 0, 'up', 1),
      member(`${p}.down_proj.weight`, 1, 'down', 1),
    ],
  };
}

/** The hidden (residual-stream) channels: every parameter that reads or writes the residual stream. */
export function llamaHiddenGroup(config: LlamaConfig): PrunableGroup {
  const members: GroupMember[] = [member('model.embed_tokens.weight', 1, 'embed', 1)];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = layerPrefix(i);
    members.push(
      member(`${p}.input_layernorm.weight`, 0, 'input_norm', 1),
      member(`${p}.self_attn.q_proj.weight`, 1, 'q', 1),
      member(`${p}.self_attn.k_proj.weight`, 1, 'k', 1),
      member(`${p}.self_attn.v_proj.weight`, 1, 'v', 1),
      member(`${p}.self_attn.o_proj.weight`, 0, 'o', 1),
      member(`${p}.post_attention_layernorm.weight`, 0, 'post_attention_norm', 1),
      member(`${p}.mlp.gate_proj.weight`, 1, 'gate', 1),
      member(`${p}.mlp.up_proj.weight`, 1, 'up', 1),
      member(`${p}.mlp.down_proj.weight`, 0, 'down', 1),
    );
  }
  members.push(member('model.norm.weight', 0, 'final_norm', 1));
  if (!config.tieWordEmbeddings) members.push(member('lm_head.weight', 1, 'lm_head', 1));
  return { id: 'hidden', kind: 'hidden', layer: -1, units: config.hiddenSize, unitSize: 1, members };
}

/** A whole decoder layer as one unit: every parameter of the layer, each spanning its full axis 0. */
export function llamaLayerGroup(config: LlamaConfig, layer: number): PrunableGroup {
  const { heads, kvHeads, intermediate } = layerDims(config, layer);
  const h = config.hiddenSize;
  const hd = config.headDim;
  const p = layerPrefix(layer);
  return {
    id: `layer.${layer}`,
    kind: 'layer',
    layer,
    units: 1,
    unitSize: 1,
    members: [
      member(`${p}.input_layernorm.weight`, 0, 'input_norm', h),
      member(`${p}.self_attn.q_proj.weight`, 0, 'q', heads * hd),
      member(`${p}.self_attn.k_proj.weight`, 0, 'k', kvHeads * hd),
      member(`${p}.self_attn.v_proj.weight`, 0, 'v', kvHeads * hd),
      member(`${p}.self_attn.o_proj.weight`, 0, 'o', h),
      member(`${p}.post_attention_layernorm.weight`, 0, 'post_attention_norm', h),
      member(`${p}.mlp.gate_proj.weight`, 0, 'gate', intermediate),
      member(`${p}.mlp.up_proj.weight`, 0, 'up', intermediate),
      member(`${p}.mlp.down_proj.weight`, 0, 'down', h),
    ],
  };
}

export interface LlamaGroupsOptions {
  /** Which kinds to list (default: all four). */
  readonly kinds?: readonly GroupKind[];
}

/**
 * Every prunable group of a LLaMA config (honouring per-layer sizes): per layer its attention and
 * MLP groups, then the hidden-channel group, then one whole-layer group per layer.
 */
export function llamaGroups(config: LlamaConfig, options: LlamaGroupsOptions = {}): PrunableGroup[] {
  const kinds = new Set(options.kinds ?? ['attention', 'mlp', 'hidden', 'layer']);
  const out: PrunableGroup[] = [];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    if (kinds.has('attention')) out.push(llamaAttentionGroup(config, i));
    if (kinds.has('mlp')) out.push(llamaMlpGroup(config, i));
  }
  if (kinds.has('hidden')) out.push(llamaHiddenGroup(config));
  if (kinds.has('layer'))
    for (let i = 0; i < config.numHiddenLayers; i++) out.push(llamaLayerGroup(config, i));
  return out;
}

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
 * The config of a LLaMA after cutting groups (by group id -> kept units), for core's generic cut:
 * attention groups set the layer's KV heads (and query heads = KV heads x group size), MLP groups the
 * layer's width, the hidden group the hidden size. Whole-layer groups cannot be cut this way (removing
 * a layer renumbers parameters) and are rejected.
 */
export function llamaConfigAfterCut(
  config: LlamaConfig,
  kept: ReadonlyMap<string, Iterable<number>>,
): LlamaConfig {
  const sizes = new Map<number, { heads?: number; kvHeads?: number; intermediate?: number }>();
  const L = config.numHiddenLayers;
  let hiddenSize = config.hiddenSize;
  for (const [id, units] of kept) {
    if (id === 'hidden') {
      hiddenSize = normalizeUnits(units, config.hiddenSize, 'hidden').length;
      continue;
    }
    const m = /^layer\.(\d+)\.(attention|mlp)$/.exec(id);
    const layer = m ? Number(m[1]) : -1;
    if (!m || layer >= L) {
      throw new InputError(
        `llamaConfigAfterCut: cannot cut group '${id}'; cuttable groups are layer.<0..${L - 1}>.attention, ` +
          'layer.<i>.mlp and hidden',
      );
    }
    const s = sizes.get(layer) ?? {};
    if (m[2] === 'attention') {
      const { heads, kvHeads } = layerDims(config, layer);
      s.kvHeads = normalizeUnits(units, kvHeads, id).length;
      s.heads = s.kvHeads * (heads / kvHeads);
    } else {
      s.intermediate = normalizeUnits(units, layerDims(config, layer).intermediate, id).length;
    }
    sizes.set(layer, s);
  }
  const out = pruneConfig(config, sizes);
  return hiddenSize === config.hiddenSize ? out : { ...out, hiddenSize };
}
