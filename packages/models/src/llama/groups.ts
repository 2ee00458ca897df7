/**
 * Prunable groups: which slices of which parameters must be removed together. The description is
 * model-agnostic (core's pruning engine reads it without knowing what a LLaMA is); `llamaGroups`
 * produces it for a LLaMA config and cut.ts turns kept units into the smaller model.
 *
 * A group has `units` units. Member m of the group covers, for unit u, the contiguous index range
 * [m.offset + u * m.span, m.offset + (u + 1) * m.span) along m.axis of parameter m.param.
 */
import type { GroupKind, GroupMember, PrunableGroup } from '@moreau/core';
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
