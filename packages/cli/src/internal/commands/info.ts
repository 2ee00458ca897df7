import { countParams } from '@moreau/core';
import { canonicalLayerSizes, type LoadedModel, layerDims } from '@moreau/models';
import type { InfoFlags } from '../../program.js';
import { type CommandContext, openModel } from '../context.js';
import { sparsitySummary } from '../sparsity.js';

/**
 * The model summary shared by info, eval and prune outputs. `heads`, `kv_heads` and
 * `intermediate_size` are the real sizes when every layer has the same; otherwise they are the
 * largest per-layer size (as config.json stores them) and `uniform` is false: read `per_layer`.
 */
export function modelSummary(m: LoadedModel) {
  const c = canonicalLayerSizes(m.model.config);
  const per_layer = Array.from({ length: c.numHiddenLayers }, (_, i) => {
    const d = layerDims(c, i);
    return { layer: i, heads: d.heads, kv_heads: d.kvHeads, intermediate_size: d.intermediate };
  });
  return {
    source: m.source,
    path: m.path,
    format: m.format,
    dtype: m.sourceDtype,
    params: countParams(m.model.params),
    layers: c.numHiddenLayers,
    hidden_size: c.hiddenSize,
    heads: c.numAttentionHeads,
    kv_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    intermediate_size: c.intermediateSize,
    vocab_size: c.vocabSize,
    tied_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositionEmbeddings,
    tokenizer: m.tokenizer.kind,
    uniform: !c.layerHeadNum && !c.layerKvHeadNum && !c.layerInterSize,
    per_layer,
  };
}

type Summary = ReturnType<typeof modelSummary>;
type Sparsity = ReturnType<typeof sparsitySummary>;

const range = (values: number[]): string => {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo === hi ? String(lo) : `${lo}-${hi}`;
};

/**
 * `moreau info` as text. When layers differ, the per-layer table comes right after the layer count
 * and the size lines give each size's range over the layers (a single value is the same for all).
 */
export function formatInfo(s: Summary, sp: Sparsity): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const table = [
    'layer  heads  kv_heads  mlp',
    ...s.per_layer.map(
      (l) =>
        `${String(l.layer).padStart(5)}  ${String(l.heads).padStart(5)}  ${String(l.kv_heads).padStart(8)}  ${l.intermediate_size}`,
    ),
  ];
  const heads = range(s.per_layer.map((l) => l.heads));
  const kv = range(s.per_layer.map((l) => l.kv_heads));
  const mlp = range(s.per_layer.map((l) => l.intermediate_size));
  const lines = [
    `model            ${s.source} (${s.format}, ${s.dtype})`,
    `parameters       ${s.params.toLocaleString('en-US')}`,
    `non-zero         ${sp.nonzero.toLocaleString('en-US')} (${pct(1 - sp.zero_fraction)})`,
    `sparsity         ${
      sp.sparse_matrices
        ? `${sp.sparse_matrices} matrices with zeros, ${pct(sp.sparse_matrix_zero_fraction)} of their weights` +
          (sp.nm_patterns.length ? `; every one ${sp.nm_patterns.join(' and ')} sparse` : '')
        : 'dense (no matrix holds zeros)'
    }`,
    `layers           ${s.layers}${s.uniform ? '' : ' with these sizes'}`,
    ...(s.uniform ? [] : [...table, '']),
    `hidden size      ${s.hidden_size}`,
    `heads / kv heads ${heads} / ${kv} (head_dim ${s.head_dim})${s.uniform ? '' : ' per layer'}`,
    `MLP width        ${mlp}${s.uniform ? '' : ' per layer'}`,
    `vocabulary       ${s.vocab_size} (${s.tokenizer} tokenizer${s.tied_embeddings ? ', tied embeddings' : ''})`,
    ...(s.uniform ? ['', ...table] : []),
  ];
  return `${lines.join('\n')}\n`;
}

export async function infoCommand(source: string, ctx: CommandContext<InfoFlags>): Promise<void> {
  const { flags, out } = ctx;
  await ctx.outputs.checkFile('--json', flags.json);
  const loaded = await openModel(source, flags);
  const s = modelSummary(loaded);
  // Any model may hold zeros (unstructured and N:M pruned models do): count them.
  const sp = sparsitySummary(loaded.model.params);
  out(formatInfo(s, sp));
  if (flags.json) await ctx.outputs.writeJson(flags.json, { model: s, sparsity: sp });
}
