import { countParams } from '@moreau/core';
import { type LoadedModel, layerDims } from '@moreau/models';
import type { InfoFlags } from '../../program.js';
import { type CommandContext, openModel } from '../context.js';
import { writeJsonAtomic } from '../output.js';
import { sparsitySummary } from '../sparsity.js';

/** The model summary shared by info, eval and prune outputs. */
export function modelSummary(m: LoadedModel) {
  const c = m.model.config;
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
    per_layer: Array.from({ length: c.numHiddenLayers }, (_, i) => {
      const d = layerDims(c, i);
      return { layer: i, heads: d.heads, kv_heads: d.kvHeads, intermediate_size: d.intermediate };
    }),
  };
}

export async function infoCommand(source: string, { flags, out }: CommandContext<InfoFlags>): Promise<void> {
  const loaded = await openModel(source, flags);
  const s = modelSummary(loaded);
  // Any model may hold zeros (unstructured and N:M pruned models do): count them.
  const sp = sparsitySummary(loaded.model.params);
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
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
    `layers           ${s.layers}`,
    `hidden size      ${s.hidden_size}`,
    `heads / kv heads ${s.heads} / ${s.kv_heads} (head_dim ${s.head_dim})`,
    `MLP width        ${s.intermediate_size}`,
    `vocabulary       ${s.vocab_size} (${s.tokenizer} tokenizer${s.tied_embeddings ? ', tied embeddings' : ''})`,
    '',
    'layer  heads  kv_heads  mlp',
    ...s.per_layer.map(
      (l) =>
        `${String(l.layer).padStart(5)}  ${String(l.heads).padStart(5)}  ${String(l.kv_heads).padStart(8)}  ${l.intermediate_size}`,
    ),
  ];
  out(`${lines.join('\n')}\n`);
  if (flags.json) await writeJsonAtomic(flags.json, { model: s, sparsity: sp });
}
