/**
 * The LLaMA as core's StagedModel, for layer-streamed execution and incremental decoding.
 */
import { ops, ShapeError, type StagedModel } from '@moreau/core';
import { type LayerDims, type LlamaConfig, layerDims, layerPrefix } from './config.js';
import { llamaCacheSpecs, llamaLayerStepFn } from './decode.js';
import { castChecked, checkIds, LAYER_PARAMS, llamaLayerFn } from './model.js';

/**
 * The LLaMA as stages for layer-streamed execution: the token embedding, one stage per decoder
 * layer (layers of equal dimensions share a key, hence one compiled graph), and the head (final
 * norm + output layer; the embedding matrix itself when tied); with incremental decoding (a key /
 * value cache per layer, decode.ts) for generation.
 */
export function llamaStages(config: LlamaConfig): StagedModel {
  const layerKey = (d: LayerDims) => `llama-layer:${d.heads}:${d.kvHeads}:${d.intermediate}`;
  const fns = new Map<string, ReturnType<typeof llamaLayerFn>>();
  const steps = new Map<string, ReturnType<typeof llamaLayerStepFn>>();
  const dimsByKey = new Map<string, LayerDims>();
  const dimsOf = (key: string) => {
    const d = dimsByKey.get(key);
    if (!d) throw new ShapeError(`llama: no layer has the stage key '${key}'`);
    return d;
  };
  const layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
    const d = layerDims(config, i);
    const key = layerKey(d);
    dimsByKey.set(key, d);
    return {
      key,
      params: Object.fromEntries(LAYER_PARAMS.map((local) => [local, `${layerPrefix(i)}.${local}.weight`])),
    };
  });
  const h = config.hiddenSize;
  return {
    embed: { key: 'llama-embed', params: { embed_tokens: 'model.embed_tokens.weight' } },
    layers,
    head: {
      key: 'llama-head',
      params: {
        norm: 'model.norm.weight',
        lm_head: config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
      },
    },
    embedFn: (p, ids) => {
      checkIds(ids, 'inputIds');
      return ops.gather(castChecked(p.embed_tokens, 'model.embed_tokens.weight', [config.vocabSize, h]), ids);
    },
    layerFn: (key) => {
      let f = fns.get(key);
      if (!f) {
        f = llamaLayerFn(config, dimsOf(key));
        fns.set(key, f);
      }
      return f;
    },
    headFn: (p, hidden) =>
      ops.linear(
        ops.rmsNorm(hidden, castChecked(p.norm, 'model.norm.weight', [h]), config.rmsNormEps),
        castChecked(p.lm_head, 'lm_head.weight', [config.vocabSize, h]),
      ),
    decoding: {
      maxPositions: config.maxPositionEmbeddings,
      cache: (key) => llamaCacheSpecs(config, dimsOf(key)),
      layerStepFn: (key) => {
        let f = steps.get(key);
        if (!f) {
          f = llamaLayerStepFn(config, dimsOf(key));
          steps.set(key, f);
        }
        return f;
      },
    },
  };
}
