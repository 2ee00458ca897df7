/**
 * A LLaMA as core's PrunableModel: its parameters, its groups (attention KV groups and MLP channels
 * per layer, hidden channels, whole layers), its loss in IR, and how kept units cut it; with LoRA
 * adapters attached by `withLora`.
 */
import {
  findLoraTargets,
  type GroupCut,
  type GroupKind,
  type HostTensor,
  InputError,
  isLoraParam,
  type LoraAdapters,
  type LoraConfig,
  loraNames,
  loraScale,
  ops,
  type PrunableGroup,
  type PrunableModel,
  type StagedModel,
  type Tensor,
} from '@moreau/core';
import type { LlamaConfig } from './config.js';
import { llamaCut } from './cut.js';
import { llamaGroups } from './groups.js';
import { LORA_MODULES, llamaLoss } from './model.js';
import { llamaStages } from './stages.js';

export class LlamaModel implements PrunableModel {
  constructor(
    readonly config: LlamaConfig,
    readonly params: ReadonlyMap<string, HostTensor>,
    /** The adapters' config when `params` include LoRA adapters (see withLora). */
    readonly lora?: LoraConfig,
  ) {}

  get numLayers(): number {
    return this.config.numHiddenLayers;
  }

  /** Groups of the given kinds (default all): attention and MLP per layer, hidden, whole layers. */
  groups(kinds?: readonly GroupKind[]): PrunableGroup[] {
    return llamaGroups(this.config, kinds ? { kinds } : {});
  }

  loss(params: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor {
    if (!this.lora) return llamaLoss(params, ids, this.config);
    // With adapters: the stages, composed (the same function as the streamed passes).
    const staged = this.stages();
    const local = (s: (typeof staged)['embed']) =>
      Object.fromEntries(Object.entries(s.params).map(([k, n]) => [k, params[n]!]));
    let h = staged.embedFn(local(staged.embed), ids);
    for (const s of staged.layers) h = staged.layerFn(s.key)(local(s), h);
    const T = ids.shape[1]!;
    const logits = staged.headFn(local(staged.head), ops.slice(h, 1, 0, T - 1));
    return ops.mean(ops.tokenNll(logits, ops.slice(ids, 1, 1, T)));
  }

  stages(): StagedModel {
    return llamaStages(
      this.config,
      this.lora ? { scale: loraScale(this.lora), modules: this.lora.targets } : undefined,
    );
  }

  /**
   * This model with LoRA adapters on the listed projections of every layer: the same base tensors
   * plus the adapters (checked against the targets: every one present, shapes [r, in] / [out, r]).
   */
  withLora(adapters: LoraAdapters): LlamaModel {
    if (this.lora) throw new InputError('this model already carries LoRA adapters');
    const { config } = adapters;
    for (const m of config.targets) {
      if (!LORA_MODULES[m]) {
        throw new InputError(
          `LoRA target '${m}' is not a LLaMA projection; valid: ${Object.keys(LORA_MODULES).join(', ')}`,
          undefined,
          'targets',
        );
      }
    }
    const targets = findLoraTargets(this.params, config.targets);
    const params = new Map(this.params);
    const expected = new Set<string>();
    for (const t of targets) {
      const { a, b } = loraNames(t.weight);
      const A = adapters.params.get(a);
      const B = adapters.params.get(b);
      const shapeOk = (x: HostTensor | undefined, s: number[]) =>
        x !== undefined && x.shape.length === 2 && x.shape[0] === s[0] && x.shape[1] === s[1];
      if (!shapeOk(A, [config.r, t.in]) || !shapeOk(B, [t.out, config.r])) {
        throw new InputError(
          `LoRA adapter of ${t.weight}: expected ${a} [${config.r}, ${t.in}] and ${b} [${t.out}, ${config.r}], got ${A ? `[${A.shape.join(', ')}]` : 'none'} and ${B ? `[${B.shape.join(', ')}]` : 'none'}`,
        );
      }
      params.set(a, A!);
      params.set(b, B!);
      expected.add(a).add(b);
    }
    for (const name of adapters.params.keys()) {
      if (!expected.has(name))
        throw new InputError(`LoRA adapter '${name}' adapts no target weight of this model`);
    }
    return new LlamaModel(this.config, params, config);
  }

  /** The base model: these params without the adapters. */
  withoutLora(): LlamaModel {
    if (!this.lora) return this;
    return new LlamaModel(this.config, new Map([...this.params].filter(([n]) => !isLoraParam(n))));
  }

  cut(cuts: readonly GroupCut[]): LlamaModel {
    if (this.lora)
      throw new InputError('a model with LoRA adapters cannot be pruned: merge the adapters first');
    const { config, params } = llamaCut(this.config, this.params, cuts);
    return new LlamaModel(config, params);
  }

  /** The same model (adapters included) at other parameter values. */
  withParams(params: ReadonlyMap<string, HostTensor>): LlamaModel {
    return new LlamaModel(this.config, params, this.lora);
  }
}
