/**
 * The LLaMA as core's StagedModel, for layer-streamed execution and incremental decoding.
 */
import { ops, ShapeError, type StagedModel } from '@moreau/core';
import { type LayerDims, type LlamaConfig, layerDims, layerPrefix } from './config.js';
import { llamaCacheSpecs, llamaLayerStepFn } from './decode.js';
import { castChecked, checkIds, LAYER_PARAMS, LORA_MODULES, llamaLayerFn } from './model.js';

/** LoRA adapters on a LLaMA's layers: their scale alpha / r and the adapted projections (q_proj, ...). */
export interface LlamaLora {
  readonly scale: number;
  readonly modules: readonly string[];
}

/**
 * The LLaMA as stages for layer-streamed execution: the token embedding, one stage per decoder
 * layer (layers of equal dimensions share a key, hence one compiled graph), and the head (final
 * norm + output layer; the embedding matrix itself when tied); with incremental decoding (a key /
 * value cache per layer, decode.ts) for generation. With `lora`, every layer stage also carries the
 * adapters of the listed projections (`<local>.lora_A` / `.lora_B`), in training and decoding.
 */
export function llamaStages(config: LlamaConfig, lora?: LlamaLora): StagedModel {
  const layerKey = (d: LayerDims) =>
    `llama-layer:${d.heads}:${d.kvHeads}:${d.intermediate}${lora ? `:lora:${lora.modules.join(',')}` : ''}`;
  const adapted = (lora?.modules ?? []).map((m) => {
    const local = LORA_MODULES[m];
    if (!local) {
      throw new ShapeError(
        `llama: LoRA cannot adapt '${m}'; the adaptable projections are ${Object.keys(LORA_MODULES).join(', ')}`,
      );
    }
    return local;
  });
  const loraOptions = lora ? { loraScale: lora.scale } : {};
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
    const prefix = layerPrefix(i);
    return {
      key,
      params: Object.fromEntries([
        ...LAYER_PARAMS.map((local) => [local, `${prefix}.${local}.weight`]),
        ...adapted.flatMap((local) => [
          [`${local}.lora_A`, `${prefix}.${local}.lora_A.weight`],
          [`${local}.lora_B`, `${prefix}.${local}.lora_B.weight`],
        ]),
      ]),
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
        f = llamaLayerFn(config, dimsOf(key), loraOptions);
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
          f = llamaLayerStepFn(config, dimsOf(key), loraOptions);
          steps.set(key, f);
        }
        return f;
      },
    },
  };
}
