/**
 * Runs a model's loss, gradients and forward passes on a backend in one of two modes:
 *
 * - whole: the whole model is one compiled graph (forward + backward together). Fastest while the
 *   model, its gradients and the activations fit in memory.
 * - streamed: one compiled graph per stage key (embedding, each distinct layer shape, head). The
 *   forward pass keeps only the activations between stages; the backward pass runs the head, then
 *   the layers in reverse, recomputing each from its saved input, and hands each stage's
 *   gradients over as soon as they exist. Memory is bounded by one layer, not by the model.
 *
 * Weights are fetched per stage through a `WeightSource` (default: the model's own tensors in
 * their storage dtype, which the graph casts), so a criterion can evaluate at perturbed weights
 * without a copy of the whole model. Forward passes at the model's own weights keep them resident
 * on the backend in whole mode (uploaded once); streamed mode uploads a stage's weights once per
 * pass and drops them after the stage.
 *
 * The mode is chosen, and a run that cannot fit refused, from memory estimates (estimate.ts).
 */
import type { Backend, DeviceTensor, TensorInput } from '../backend.js';
import type { HostTensor } from '../dtype.js';
import { sizeOf } from '../dtype.js';
import { InputError, MemoryLimitError, throwIfAborted } from '../errors.js';
import * as ops from '../ops.js';
import {
  type ComputeDtype,
  type ComputeMode,
  checkComputeDtype,
  computeMode,
  roundHostArray,
} from '../precision.js';
import type { PrunableModel } from '../pruning/model.js';
import type { Tensor } from '../tensor.js';
import { type Jitted, jit, valueAndGrad } from '../transforms.js';
import { Decoder } from './decoder.js';
import {
  estimateForward,
  type ForwardEstimate,
  streamedForwardBytes,
  streamedGradientBytes,
  wholeForwardBytes,
} from './estimate.js';
import { availableMemory, gib } from './memory.js';
import { allStages, type Stage, type StagedModel, type StageParams } from './staged-model.js';

export type ExecMode = 'whole' | 'streamed';

/** Weights for a list of parameter names (float32 or a storage dtype). */
export type WeightSource = (names: readonly string[]) => Promise<ReadonlyMap<string, HostTensor>>;

/**
 * Inputs of a stage's function beyond its parameters, by local name (e.g. LoRA dropout masks):
 * `index` is the stage's position in forward order (embedding 0, layers 1..L, head L + 1).
 */
export type StageInputs = (stage: Stage, index: number) => Readonly<Record<string, HostTensor>>;

/** What a loss is evaluated on besides the ids. */
export interface LossOptions {
  /**
   * The weights to evaluate at (default: the model's). Streamed mode asks for a stage's weights
   * twice per pass (forward, then the backward recompute); both answers must be identical.
   */
  readonly weights?: WeightSource;
  /**
   * Explicit next-token targets, int32 [B, T]: position t of row b is scored on targets[b, t].
   * Default: the ids shifted by one (every position but the last), the mean over all of them.
   */
  readonly targets?: HostTensor;
  /**
   * With `targets`: float32 [B, T] weights of the positions (1 scored, 0 ignored), the loss being
   * sum(nll * mask) / sum(mask). Default: every position weighs 1.
   */
  readonly mask?: HostTensor;
  /**
   * Further inputs of each stage's function. Asked for once per stage and pass, and again for a
   * stage's backward recompute in streamed mode: both answers must be identical.
   */
  readonly stageInputs?: StageInputs;
}

export interface GradientPass extends LossOptions {
  /** Parameters whose gradients are wanted. */
  readonly wanted: (name: string) => boolean;
  /** Called with the loss as soon as it is known: before any gradient is consumed. */
  readonly onLoss?: (loss: number) => void;
  /**
   * Receives float32 gradients as soon as they are complete: once in whole mode, stage by stage
   * (head first) in streamed mode. A parameter used by two stages (tied embeddings) arrives once,
   * with both uses summed. The arrays are the consumer's; nothing else keeps them.
   */
  readonly consume: (grads: Map<string, Float32Array>) => void | Promise<void>;
}

export interface ExecutorOptions {
  readonly backend: Backend;
  /** 'auto' (default): whole when the estimate fits in half the available memory. */
  readonly mode?: ExecMode | 'auto';
  /** Tokens per pass (batch x length) the caller expects, for the automatic choice. */
  readonly tokens?: number;
  /** Tokens per window of those passes (default min(tokens, 128)). */
  readonly length?: number;
  /** Forward passes only (evaluation, generation): no gradients, so other memory estimates. */
  readonly forwardOnly?: boolean;
  /** Keep weights on the backend between calls (default true; see the module comment). */
  readonly upload?: boolean;
  /** Bytes available to the run (default: what the system reports now). */
  readonly availableBytes?: number;
  readonly signal?: AbortSignal;
  /** Per-stage progress of streamed passes. */
  readonly onStage?: (phase: 'forward' | 'backward', done: number, total: number) => void;
  /**
   * The dtype every graph computes in (default float32). float16 / bfloat16 are emulated (see
   * jit's computeDtype): losses, outputs and gradients come back rounded to the dtype, in both
   * modes (streamed passes also round the host-side sum of a tied parameter's two gradients).
   */
  readonly computeDtype?: ComputeDtype;
}

/** One call of `forward`: int32 ids [B, T] and any further inputs the outputs function reads. */
export interface ForwardBatch {
  readonly ids: HostTensor;
  readonly inputs?: Readonly<Record<string, HostTensor>>;
}

/** Output functions evaluated on the final hidden states by `forward`. */
export type HeadOutputs = (
  head: (h: Tensor) => Tensor,
  hidden: Tensor,
  ids: Tensor,
  inputs: Readonly<Record<string, Tensor>>,
) => Readonly<Record<string, Tensor>>;

const localParams = (stage: Stage, all: Readonly<Record<string, Tensor>>): Record<string, Tensor> =>
  Object.fromEntries(Object.entries(stage.params).map(([local, name]) => [local, all[name]!]));

/** No head outputs: for passes that read layer activations only. */
const noOutputs: HeadOutputs = () => ({});

/** Mean next-token NLL of the logits of positions 0..T-2 (the shift every loss here uses). */
function shiftedLoss(head: (h: Tensor) => Tensor, hidden: Tensor, ids: Tensor): Tensor {
  const T = ids.shape[1]!;
  const logits = head(ops.slice(hidden, 1, 0, T - 1));
  return ops.mean(ops.tokenNll(logits, ops.slice(ids, 1, 1, T)));
}

/** Explicit targets and their weights, as graph inputs. */
interface Labels<T> {
  readonly targets: T;
  readonly mask: T;
}

/** The loss on the final hidden states: shifted ids, or explicit targets weighted by a mask. */
function headLoss(
  head: (h: Tensor) => Tensor,
  hidden: Tensor,
  ids: Tensor,
  labels: Labels<Tensor> | null,
): Tensor {
  if (!labels) return shiftedLoss(head, hidden, ids);
  const nll = ops.tokenNll(head(hidden), labels.targets);
  return ops.div(ops.sum(ops.mul(nll, labels.mask)), ops.sum(labels.mask));
}

/** The whole model as one function of its parameters (by model name) through its stages. */
function stagedLoss(
  staged: StagedModel,
  p: Readonly<Record<string, Tensor>>,
  inputs: readonly Readonly<Record<string, Tensor>>[],
  ids: Tensor,
  labels: Labels<Tensor> | null,
): Tensor {
  let h = staged.embedFn({ ...localParams(staged.embed, p), ...inputs[0] }, ids);
  staged.layers.forEach((s, l) => {
    h = staged.layerFn(s.key)({ ...localParams(s, p), ...inputs[l + 1] }, h);
  });
  const hp = { ...localParams(staged.head, p), ...inputs[staged.layers.length + 1] };
  return headLoss((x) => staged.headFn(hp, x), h, ids, labels);
}

/**
 * Bytes a whole-graph gradient pass is estimated to need: float32 weights, gradients (twice: the
 * engine's buffers and their copies), and activations for `tokens` tokens.
 */
export function estimateWholeBytes(model: PrunableModel, tokens: number): number {
  let elements = 0;
  for (const t of model.params.values()) elements += sizeOf(t.shape);
  const staged = model.stages?.();
  const embed = staged ? model.params.get(Object.values(staged.embed.params)[0]!) : undefined;
  const [vocab, hidden] = embed && embed.shape.length === 2 ? (embed.shape as [number, number]) : [0, 0];
  const layers = staged?.layers.length ?? model.numLayers;
  const activations = tokens * 4 * (40 * hidden * layers + 4 * vocab);
  return 12 * elements + activations;
}

export class ModelExecutor {
  private readonly staged: StagedModel | undefined;
  private readonly jitted = new Map<string, Jitted<any>>();
  private readonly estimates = new Map<number, ForwardEstimate>();
  private resident: Promise<Record<string, TensorInput>> | undefined;
  private readonly uploaded: DeviceTensor[] = [];
  /** The compute dtype and whether it runs natively or emulated on this backend. */
  readonly compute: ComputeMode;

  private constructor(
    readonly model: PrunableModel,
    readonly mode: ExecMode,
    private readonly options: ExecutorOptions,
  ) {
    this.staged = model.stages?.();
    this.compute = computeMode(options.backend, checkComputeDtype(options.computeDtype ?? 'float32'));
  }

  /** Options of every graph this executor compiles. */
  private get jitOptions() {
    return { backend: this.options.backend, computeDtype: this.compute.computeDtype };
  }

  /**
   * Picks the mode — a forced one, or whole when its estimate fits in half the available memory —
   * and refuses (MemoryLimitError, before any work) a run whose mode's estimate exceeds it.
   */
  static async create(model: PrunableModel, options: ExecutorOptions): Promise<ModelExecutor> {
    const wanted = options.mode ?? 'auto';
    if (!['auto', 'whole', 'streamed'].includes(wanted))
      throw new InputError(`mode must be auto, whole or streamed, got '${wanted}'`, undefined, 'mode');
    if (wanted === 'streamed' && !model.stages) {
      throw new InputError('this model cannot run layer-streamed: it describes no stages', undefined, 'mode');
    }
    const available = options.availableBytes ?? (await availableMemory());
    const need = ModelExecutor.estimates(model, options);
    let mode: ExecMode = wanted === 'auto' ? 'whole' : wanted;
    if (wanted === 'auto' && model.stages && need.whole > available / 2) mode = 'streamed';
    const needed = need[mode];
    if (needed > available) {
      const what = options.forwardOnly ? 'evaluating this model' : 'computing gradients of this model';
      const hint =
        mode === 'whole' && model.stages && need.streamed <= available
          ? ` (layer-streamed it needs ${gib(need.streamed)}: use streamed execution)`
          : ' even layer-streamed; use fewer or shorter windows, or a machine with more memory';
      throw new MemoryLimitError(
        `${what} ${mode === 'whole' ? 'as one graph' : 'layer by layer'} needs an estimated ${gib(needed)}, but ${gib(available)} is available${hint}`,
        needed,
        available,
      );
    }
    return new ModelExecutor(model, mode, options);
  }

  /** Estimated bytes of a pass in each mode (streamed: Infinity for a model without stages). */
  private static estimates(model: PrunableModel, options: ExecutorOptions): Record<ExecMode, number> {
    const tokens = options.tokens ?? 512;
    const length = Math.max(2, Math.min(options.length ?? 128, tokens));
    const rows = Math.max(1, Math.ceil(tokens / length));
    const staged = model.stages?.();
    const e = staged ? estimateForward(model, staged, length) : undefined;
    if (options.forwardOnly) {
      // Streamed: the smallest run, one window per call and per chunk (callers size up from there).
      return {
        whole: e ? wholeForwardBytes(e, rows) : estimateWholeBytes(model, tokens) / 3,
        streamed: e ? streamedForwardBytes(e, 1, 1) : Number.POSITIVE_INFINITY,
      };
    }
    return {
      whole: estimateWholeBytes(model, tokens),
      streamed: e ? streamedGradientBytes(e, staged!.layers.length, rows) : Number.POSITIVE_INFINITY,
    };
  }

  /** What a forward pass over windows of `length` tokens needs (cached per length). */
  forwardEstimate(length: number): ForwardEstimate {
    let e = this.estimates.get(length);
    if (!e) {
      e = estimateForward(this.model, this.stagedModel(), length);
      this.estimates.set(length, e);
    }
    return e;
  }

  /** Incremental decoding (a cache per layer) in this executor's mode; see Decoder. */
  decoder(batch = 1, signal = this.options.signal): Decoder {
    const staged = this.stagedModel();
    const opts = this.jitOptions;
    return new Decoder(
      {
        mode: this.mode,
        staged,
        ...(signal ? { signal } : {}),
        jitted: (key, fn) => this.fn(key, () => jit(fn, opts)),
        allWeights: () => this.residentWeights(),
        stageWeights: (stage) => this.stageWeights(stage, (names) => this.modelWeights(names)),
      },
      batch,
    );
  }

  /** Loss at the given weights, with gradients of the wanted parameters handed to `consume`. */
  async lossAndGradients(ids: HostTensor, pass: GradientPass): Promise<number> {
    checkIds(ids);
    const labels = checkLabels(ids, pass);
    const weights = pass.weights ?? ((names) => this.modelWeights(names));
    if (this.mode === 'streamed') return this.streamedGradients(ids, pass, weights, labels);
    if (labels || pass.stageInputs) return this.wholeStagedGradients(ids, pass, weights, labels);
    return this.wholeGradients(ids, pass, weights);
  }

  /**
   * The loss alone (no gradients): one forward pass, layer by layer in streamed mode. Same value
   * as `lossAndGradients` for the same options.
   */
  async loss(ids: HostTensor, options: LossOptions = {}): Promise<number> {
    checkIds(ids);
    const labels = checkLabels(ids, options);
    const weights = options.weights ?? ((names) => this.modelWeights(names));
    const opts = this.jitOptions;
    const staged = this.staged ?? this.model.stages?.();
    let value: HostTensor;
    if (this.mode === 'whole' && !staged) {
      if (labels || options.stageInputs)
        throw new InputError('this model describes no stages: explicit targets and stage inputs need them');
      const f = this.fn('whole-loss', () =>
        jit((p: Record<string, Tensor>, x: Tensor) => this.model.loss(p, x), opts),
      );
      value = await f(Object.fromEntries(await weights([...this.model.params.keys()])), ids);
    } else if (this.mode === 'whole') {
      const all = allStages(staged!);
      const f = this.fn('whole-staged-loss', () =>
        jit(
          (
            p: Record<string, Tensor>,
            inputs: Record<string, Tensor>[],
            x: Tensor,
            l: Labels<Tensor> | null,
          ) => stagedLoss(staged!, p, inputs, x, l),
          opts,
        ),
      );
      const p = Object.fromEntries(await weights([...new Set(all.flatMap((s) => Object.values(s.params)))]));
      throwIfAborted(this.options.signal);
      value = await f(p, stageInputsOf(all, options.stageInputs), ids, labels);
    } else {
      const { hidden } = await this.streamedForward(ids, weights, options.stageInputs, false);
      const f = this.fn('head-loss', () =>
        jit(
          (p: StageParams, h: Tensor, x: Tensor, l: Labels<Tensor> | null) =>
            headLoss((y) => staged!.headFn(p, y), h, x, l),
          opts,
        ),
      );
      const head = await this.stageWeights(
        staged!.head,
        weights,
        options.stageInputs,
        staged!.layers.length + 1,
      );
      value = await f(head, hidden, ids, labels);
    }
    return (value.data as Float32Array)[0]!;
  }

  /**
   * Runs every batch through the model and evaluates `outputs` on the final hidden states.
   * Whole mode runs one graph per batch (the model's weights resident on the backend); streamed
   * mode runs layer-major: each stage's weights are fetched (and uploaded) once for all batches,
   * and only the hidden states between stages are kept.
   */
  async forward(
    batches: readonly (HostTensor | ForwardBatch)[],
    outputs: HeadOutputs,
    key: string,
    { weights, signal = this.options.signal }: { weights?: WeightSource; signal?: AbortSignal } = {},
  ): Promise<Record<string, HostTensor>[]> {
    const items: ForwardBatch[] = batches.map((b) => ('ids' in b ? b : { ids: b }));
    for (const b of items) checkIds(b.ids);
    const staged = this.stagedModel();
    if (this.mode === 'whole') {
      const f = this.fn(`whole-forward:${key}`, () =>
        jit((p: Record<string, Tensor>, ids: Tensor, inputs: Record<string, Tensor>) => {
          let h = staged.embedFn(localParams(staged.embed, p), ids);
          for (const s of staged.layers) h = staged.layerFn(s.key)(localParams(s, p), h);
          const hp = localParams(staged.head, p);
          return outputs((x) => staged.headFn(hp, x), h, ids, inputs);
        }, this.jitOptions),
      );
      const all = weights
        ? Object.fromEntries(await weights(allStages(staged).flatMap((s) => Object.values(s.params))))
        : await this.residentWeights();
      const out: Record<string, HostTensor>[] = [];
      for (const b of items) {
        throwIfAborted(signal);
        out.push(await f(all, b.ids, b.inputs ?? {}));
      }
      return out;
    }
    const stages = allStages(staged);
    const source = weights ?? ((names) => this.modelWeights(names));
    let hidden: HostTensor[] = [];
    for (let s = 0; s < stages.length; s++) {
      throwIfAborted(signal);
      const stage = stages[s]!;
      // Several calls read the same weights: upload them once for all of them.
      const held = await this.stageWeights(stage, source);
      const device =
        items.length > 1 && this.options.upload !== false ? await this.uploadAll(held) : undefined;
      const p = device?.tensors ?? held;
      try {
        const f = this.stageForward(staged, stage, s, stages.length, outputs, key);
        const next: HostTensor[] = [];
        for (let b = 0; b < items.length; b++) {
          throwIfAborted(signal);
          next.push(await f(p, s === 0 ? items[b]!.ids : hidden[b]!, items[b]!));
        }
        if (s === stages.length - 1) return next as unknown as Record<string, HostTensor>[];
        hidden = next;
      } finally {
        device?.dispose();
      }
      this.options.onStage?.('forward', s + 1, stages.length);
    }
    return [];
  }

  /**
   * Runs a batch through the embedding and the decoder layers one stage at a time, in either mode
   * (a forward pass needs no whole graph), handing each layer's input and output hidden states to
   * `consume` before the next layer runs: only one layer boundary is held at a time.
   */
  async layerActivations(
    ids: HostTensor,
    consume: (layer: number, input: HostTensor, output: HostTensor) => void | Promise<void>,
    weights: WeightSource = (names) => this.modelWeights(names),
  ): Promise<void> {
    checkIds(ids);
    const staged = this.staged ?? this.model.stages?.();
    if (!staged) throw new InputError('this model describes no stages: its layer activations cannot be read');
    const stages = allStages(staged);
    let h: HostTensor = await this.stageForward(
      staged,
      stages[0]!,
      0,
      stages.length,
      noOutputs,
      '',
    )(await this.stageWeights(staged.embed, weights), ids, { ids });
    for (let l = 0; l < staged.layers.length; l++) {
      throwIfAborted(this.options.signal);
      const st = staged.layers[l]!;
      const f = this.stageForward(staged, st, l + 1, stages.length, noOutputs, '');
      const out: HostTensor = await f(await this.stageWeights(st, weights), h, { ids });
      await consume(l, h, out);
      h = out;
      this.options.onStage?.('forward', l + 1, staged.layers.length);
    }
  }

  dispose(): void {
    for (const f of this.jitted.values()) f.dispose();
    this.jitted.clear();
    for (const d of this.uploaded.splice(0)) d.dispose();
    this.resident = undefined;
  }

  // ----- internals ----------------------------------------------------------------------------

  private fn<R>(key: string, make: () => Jitted<R>): Jitted<R> {
    let f = this.jitted.get(key);
    if (!f) {
      f = make();
      this.jitted.set(key, f);
    }
    return f;
  }

  private async modelWeights(names: readonly string[]): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const n of names) {
      const t = this.model.params.get(n);
      if (!t) throw new InputError(`the model has no parameter '${n}'`);
      out.set(n, t);
    }
    return out;
  }

  private stagedModel(): StagedModel {
    if (!this.staged) throw new InputError('this model describes no stages: it cannot be evaluated here');
    return this.staged;
  }

  /** The model's own weights, uploaded once and kept (or the host tensors with upload: false). */
  private residentWeights(): Promise<Record<string, TensorInput>> {
    this.resident ??= (async () => {
      const host = await this.modelWeights([...this.model.params.keys()]);
      if (this.options.upload === false) return Object.fromEntries(host);
      const out: Record<string, TensorInput> = {};
      for (const [name, t] of host) {
        const d = await this.options.backend.upload(t);
        this.uploaded.push(d);
        out[name] = d;
      }
      return out;
    })();
    return this.resident;
  }

  /** Uploads a stage's weights for the calls of one stage; dispose() frees them. */
  private async uploadAll(
    p: Record<string, HostTensor>,
  ): Promise<{ tensors: Record<string, TensorInput>; dispose: () => void }> {
    const list: DeviceTensor[] = [];
    const tensors: Record<string, TensorInput> = {};
    try {
      for (const [local, t] of Object.entries(p)) {
        const d = await this.options.backend.upload(t);
        list.push(d);
        tensors[local] = d;
      }
    } catch (e) {
      for (const d of list) d.dispose();
      throw e;
    }
    return {
      tensors,
      dispose: () => {
        for (const d of list) d.dispose();
      },
    };
  }

  /** A stage's weights under local names, with its further inputs (when given) merged in. */
  private async stageWeights(
    stage: Stage,
    weights: WeightSource,
    inputs?: StageInputs,
    index?: number,
  ): Promise<Record<string, HostTensor>> {
    const got = await weights([...new Set(Object.values(stage.params))]);
    const p = Object.fromEntries(
      Object.entries(stage.params).map(([local, name]) => [local, got.get(name)!]),
    );
    return inputs && index !== undefined ? { ...p, ...inputs(stage, index) } : p;
  }

  /**
   * Streamed forward through the embedding and the layers: the final hidden states, and (when
   * `keep`) the input of every layer for the backward recompute.
   */
  private async streamedForward(
    ids: HostTensor,
    weights: WeightSource,
    inputs: StageInputs | undefined,
    keep: boolean,
  ): Promise<{ hidden: HostTensor; layerInputs: HostTensor[] }> {
    const staged = this.staged ?? this.model.stages!();
    const opts = this.jitOptions;
    const layerInputs: HostTensor[] = [];
    const embedF = this.fn('embed', () => jit((p: StageParams, x: Tensor) => staged.embedFn(p, x), opts));
    let h: HostTensor = await embedF(await this.stageWeights(staged.embed, weights, inputs, 0), ids);
    for (let l = 0; l < staged.layers.length; l++) {
      throwIfAborted(this.options.signal);
      if (keep) layerInputs.push(h);
      const st = staged.layers[l]!;
      const f = this.fn(`layer:${st.key}`, () =>
        jit((p: StageParams, x: Tensor) => staged.layerFn(st.key)(p, x), opts),
      );
      h = await f(await this.stageWeights(st, weights, inputs, l + 1), h);
      this.options.onStage?.('forward', l + 1, staged.layers.length);
    }
    return { hidden: h, layerInputs };
  }

  private async wholeGradients(ids: HostTensor, pass: GradientPass, weights: WeightSource): Promise<number> {
    const names = [...this.model.params.keys()];
    const w = await weights(names);
    const diff: Record<string, HostTensor> = {};
    const fixed: Record<string, HostTensor> = {};
    for (const n of names) (pass.wanted(n) ? diff : fixed)[n] = w.get(n)!;
    const f = this.fn('whole-grad', () =>
      jit(
        valueAndGrad((d: Record<string, Tensor>, r: Record<string, Tensor>, x: Tensor) =>
          this.model.loss({ ...r, ...d }, x),
        ),
        this.jitOptions,
      ),
    );
    throwIfAborted(this.options.signal);
    const [value, grads] = (await f(diff, fixed, ids)) as [HostTensor, Record<string, HostTensor>];
    const loss = (value.data as Float32Array)[0]!;
    pass.onLoss?.(loss);
    const out = new Map<string, Float32Array>();
    for (const n of Object.keys(diff)) out.set(n, grads[n]!.data as Float32Array);
    await pass.consume(out);
    return loss;
  }

  /** Whole mode through the stages: explicit targets / mask and stage inputs. */
  private async wholeStagedGradients(
    ids: HostTensor,
    pass: GradientPass,
    weights: WeightSource,
    labels: Labels<HostTensor> | null,
  ): Promise<number> {
    const staged = this.staged ?? this.model.stages?.();
    if (!staged)
      throw new InputError('this model describes no stages: explicit targets and stage inputs need them');
    const all = allStages(staged);
    const names = [...new Set(all.flatMap((s) => Object.values(s.params)))];
    const w = await weights(names);
    const diff: Record<string, HostTensor> = {};
    const fixed: Record<string, HostTensor> = {};
    for (const n of names) (pass.wanted(n) ? diff : fixed)[n] = w.get(n)!;
    const f = this.fn('whole-staged-grad', () =>
      jit(
        valueAndGrad(
          (
            d: Record<string, Tensor>,
            r: Record<string, Tensor>,
            inputs: Record<string, Tensor>[],
            x: Tensor,
            l: Labels<Tensor> | null,
          ) => stagedLoss(staged, { ...r, ...d }, inputs, x, l),
        ),
        this.jitOptions,
      ),
    );
    throwIfAborted(this.options.signal);
    const [value, grads] = (await f(diff, fixed, stageInputsOf(all, pass.stageInputs), ids, labels)) as [
      HostTensor,
      Record<string, HostTensor>,
    ];
    const loss = (value.data as Float32Array)[0]!;
    pass.onLoss?.(loss);
    const out = new Map<string, Float32Array>();
    for (const n of Object.keys(diff)) out.set(n, grads[n]!.data as Float32Array);
    await pass.consume(out);
    return loss;
  }

  private stageForward(
    staged: StagedModel,
    stage: Stage,
    index: number,
    count: number,
    outputs: HeadOutputs,
    key: string,
  ): (p: Record<string, TensorInput>, x: HostTensor, batch: ForwardBatch) => Promise<any> {
    const opts = this.jitOptions;
    if (index === 0) {
      const f = this.fn('embed', () => jit((p: StageParams, x: Tensor) => staged.embedFn(p, x), opts));
      return (p, x) => f(p, x);
    }
    if (index === count - 1) {
      const f = this.fn(`head-forward:${key}`, () =>
        jit(
          (p: StageParams, h: Tensor, ids: Tensor, inputs: Record<string, Tensor>) =>
            outputs((x) => staged.headFn(p, x), h, ids, inputs),
          opts,
        ),
      );
      return (p, h, b) => f(p, h, b.ids, b.inputs ?? {});
    }
    const f = this.fn(`layer:${stage.key}`, () =>
      jit((p: StageParams, h: Tensor) => staged.layerFn(stage.key)(p, h), opts),
    );
    return (p, h) => f(p, h);
  }

  private async streamedGradients(
    ids: HostTensor,
    pass: GradientPass,
    weights: WeightSource,
    labels: Labels<HostTensor> | null,
  ): Promise<number> {
    const staged = this.staged!;
    const opts = this.jitOptions;
    const dtype = this.compute.computeDtype;
    const stages = allStages(staged);
    const S = stages.length;
    const signal = this.options.signal;
    const inputs = pass.stageInputs;
    // A parameter's gradient is complete at the first stage (in forward order) that uses it.
    const firstUse = new Map<string, number>();
    stages.forEach((st, i) => {
      for (const n of Object.values(st.params)) if (!firstUse.has(n)) firstUse.set(n, i);
    });

    // Forward, keeping the input of every stage after the embedding.
    const forward = await this.streamedForward(ids, weights, inputs, true);
    const layerInputs = forward.layerInputs;
    const h = forward.hidden;

    const pending = new Map<string, Float32Array>();
    /** Parameters whose pending gradient is a host-side sum (rounded to the dtype when handed over). */
    const summed = new Set<string>();
    // Wanted parameters are differentiated; the others and the stage's further inputs are not.
    const split = (stage: Stage, p: Record<string, HostTensor>) => {
      const d: Record<string, HostTensor> = {};
      const r: Record<string, HostTensor> = {};
      for (const [local, t] of Object.entries(p)) {
        const name = stage.params[local];
        (name !== undefined && pass.wanted(name) ? d : r)[local] = t;
      }
      return [d, r] as const;
    };
    const collect = async (stageIndex: number, stage: Stage, grads: Record<string, HostTensor>) => {
      const done = new Map<string, Float32Array>();
      for (const [local, g] of Object.entries(grads)) {
        const name = stage.params[local]!;
        const data = g.data as Float32Array;
        const prev = pending.get(name);
        if (prev) {
          for (let i = 0; i < prev.length; i++) prev[i]! += data[i]!;
          summed.add(name);
        }
        const sum = prev ?? data;
        if (firstUse.get(name) === stageIndex) {
          pending.delete(name);
          // A whole graph rounds the sum of the uses' gradients: so does the host.
          done.set(name, summed.has(name) ? roundHostArray(sum, dtype) : sum);
        } else pending.set(name, sum);
      }
      if (done.size) await pass.consume(done);
    };

    // Head: loss, its parameters' gradients, and the gradient flowing into the last layer.
    throwIfAborted(signal);
    const headF = this.fn('head-grad', () =>
      jit(
        valueAndGrad(
          (d: StageParams, r: StageParams, x: Tensor, i: Tensor, l: Labels<Tensor> | null) =>
            headLoss((y) => staged.headFn({ ...r, ...d }, y), x, i, l),
          { argnums: [0, 2] },
        ),
        opts,
      ),
    );
    const [hd, hr] = split(staged.head, await this.stageWeights(staged.head, weights, inputs, S - 1));
    const [lossT, [headGrads, dLast]] = (await headF(hd, hr, h, ids, labels)) as [
      HostTensor,
      [Record<string, HostTensor>, HostTensor],
    ];
    const loss = (lossT.data as Float32Array)[0]!;
    pass.onLoss?.(loss);
    await collect(S - 1, staged.head, headGrads);
    let dh = dLast;

    for (let l = staged.layers.length - 1; l >= 0; l--) {
      throwIfAborted(signal);
      const st = staged.layers[l]!;
      const f = this.fn(`layer-vjp:${st.key}`, () =>
        jit(
          valueAndGrad(
            (d: StageParams, r: StageParams, x: Tensor, g: Tensor) =>
              ops.sum(ops.mul(staged.layerFn(st.key)({ ...r, ...d }, x), g)),
            { argnums: [0, 2] },
          ),
          opts,
        ),
      );
      const [d, r] = split(st, await this.stageWeights(st, weights, inputs, l + 1));
      const [, [grads, dIn]] = (await f(d, r, layerInputs[l]!, dh)) as [
        HostTensor,
        [Record<string, HostTensor>, HostTensor],
      ];
      layerInputs[l] = undefined as unknown as HostTensor; // the saved input is no longer needed
      await collect(l + 1, st, grads);
      dh = dIn;
      this.options.onStage?.('backward', staged.layers.length - l, staged.layers.length);
    }

    const [ed, er] = split(staged.embed, await this.stageWeights(staged.embed, weights, inputs, 0));
    if (Object.keys(ed).length > 0) {
      throwIfAborted(signal);
      const embedVjp = this.fn('embed-vjp', () =>
        jit(
          valueAndGrad((d: StageParams, r: StageParams, x: Tensor, g: Tensor) =>
            ops.sum(ops.mul(staged.embedFn({ ...r, ...d }, x), g)),
          ),
          opts,
        ),
      );
      const [, grads] = (await embedVjp(ed, er, ids, dh)) as [HostTensor, Record<string, HostTensor>];
      await collect(0, staged.embed, grads);
    }
    if (pending.size) {
      for (const [name, g] of pending) if (summed.has(name)) roundHostArray(g, dtype);
      await pass.consume(new Map(pending));
    }
    return loss;
  }
}

/** Every stage's further inputs, in forward order ({} for stages without). */
function stageInputsOf(
  stages: readonly Stage[],
  inputs: StageInputs | undefined,
): Record<string, HostTensor>[] {
  return stages.map((s, i) => ({ ...(inputs?.(s, i) ?? {}) }));
}

/** Explicit targets and mask, checked against the ids (null when the loss uses shifted ids). */
function checkLabels(ids: HostTensor, o: LossOptions): Labels<HostTensor> | null {
  if (!o.targets) {
    if (o.mask) throw new InputError('a loss mask needs explicit targets');
    return null;
  }
  const same = (t: HostTensor) =>
    t.shape.length === 2 && t.shape[0] === ids.shape[0] && t.shape[1] === ids.shape[1];
  if (o.targets.dtype !== 'int32' || !same(o.targets)) {
    throw new InputError(
      `targets must be int32 [${ids.shape.join(', ')}] like the ids, got ${o.targets.dtype} [${o.targets.shape.join(', ')}]`,
    );
  }
  if (o.mask && (o.mask.dtype !== 'float32' || !same(o.mask))) {
    throw new InputError(
      `the loss mask must be float32 [${ids.shape.join(', ')}] like the ids, got ${o.mask.dtype} [${o.mask.shape.join(', ')}]`,
    );
  }
  const mask = o.mask ?? {
    dtype: 'float32' as const,
    shape: ids.shape,
    data: new Float32Array(sizeOf(ids.shape)).fill(1),
  };
  return { targets: o.targets, mask };
}

function checkIds(ids: HostTensor): void {
  if (ids.dtype !== 'int32' || ids.shape.length !== 2 || ids.shape[1]! < 2) {
    throw new InputError(`ids must be int32 [batch, seq >= 2], got ${ids.dtype} [${ids.shape.join(', ')}]`);
  }
}

export { gib };
