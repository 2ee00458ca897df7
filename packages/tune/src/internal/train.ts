/**
 * LoRA training: LLM-Pruner's post_training.py (Hugging Face Trainer defaults) on core's executor.
 *
 * - Adapters: core's LoRA on every target projection (A Kaiming-uniform, B zero, seeded); only A
 *   and B are differentiated; the base weights stay in their storage dtype.
 * - A step: the batch's examples in micro-batches; each micro-batch's loss is the mean over its
 *   label tokens (next-token targets, loss mask), and the step's gradient is the mean of the
 *   micro-batch gradients (the Trainer divides each micro-batch loss by the accumulation steps).
 *   The global gradient norm is clipped to maxGradNorm, then AdamW (betas 0.9 / 0.999, eps 1e-8,
 *   no weight decay) steps at the rate of warmupLinear (linear warmup from 0 over warmupSteps,
 *   then linear decay to 0 at the last step).
 * - Data order: each epoch is a seeded permutation of the training examples (a pure function of
 *   (seed, epoch)); an epoch has floor(examples / batch) steps (at least one), so the step number
 *   alone says which examples it uses. Dropout masks are counter-based in (seed, step,
 *   micro-batch, adapter). Together with the adapters and the optimizer's moments in a checkpoint,
 *   a resumed run is the uninterrupted run, bit for bit on a deterministic engine.
 * - Validation: every evalSteps steps and at the end, the mean NLL per label token of the
 *   validation examples (no dropout).
 * - Checkpoints: every saveSteps steps, and when the signal aborts the run (at the last completed
 *   step), under checkpointDir/checkpoint-<step>; the newest saveTotalLimit are kept.
 */
import {
  AdamW,
  type Backend,
  checkLoraConfig,
  clipGradNorm,
  counterKey,
  type ExecMode,
  findLoraTargets,
  InputError,
  initLora,
  isLoraParam,
  type LoraAdapters,
  type LoraConfig,
  loraDropoutInputs,
  loraDropoutKey,
  loraNames,
  ModelExecutor,
  type PrunableModel,
  Rng,
  type StageInputs,
  throwIfAborted,
  warmupLinear,
} from '@moreau/core';
import {
  CHECKPOINT_FORMAT,
  type Checkpoint,
  checkpointPath,
  type EvalRecord,
  loadCheckpoint,
  pruneCheckpoints,
  type StepRecord,
  saveCheckpoint,
  type TrainerState,
} from './checkpoint.js';
import { type Example, microBatch } from './data.js';

export interface TuneOptions {
  readonly backend: Backend;
  /** Rank, alpha, dropout and target modules. */
  readonly lora: LoraConfig;
  /** Peak learning rate (default 1e-4). */
  readonly lr?: number;
  /** Epochs over the training examples (default 2); maxSteps overrides. */
  readonly epochs?: number;
  /** Examples per optimizer step (default 64). */
  readonly batchSize?: number;
  /** Examples per forward / backward pass (default 4). */
  readonly microBatchSize?: number;
  /** Steps of linear warmup (default 100). */
  readonly warmupSteps?: number;
  /** Stop after this many steps (the schedule spans them). */
  readonly maxSteps?: number;
  /** Global gradient-norm clip (default 1). */
  readonly maxGradNorm?: number;
  /** Seed of the adapters' init, the data order and the dropout masks (default 1). */
  readonly seed?: number;
  /** Validation loss every N steps (default 100; only with validation examples). */
  readonly evalSteps?: number;
  /** Checkpoint every N steps (default 200; only with checkpointDir). */
  readonly saveSteps?: number;
  /** Where checkpoint-<step> folders go; also where an aborted run saves one. */
  readonly checkpointDir?: string;
  /** Newest checkpoints kept (default 20, the reference's save_total_limit). */
  readonly saveTotalLimit?: number;
  /** A checkpoint folder to continue from (same settings and data). */
  readonly resume?: string;
  /** Execution mode (default auto; a resumed run keeps its checkpoint's mode unless forced). */
  readonly mode?: ExecMode | 'auto';
  /** Pad token id (default 0, the reference's pad_token_id). */
  readonly padId?: number;
  /** Longest micro-batch a padded length may reach (default: the longest example). */
  readonly maxLength?: number;
  /** Recorded as base_model_name_or_path in checkpoints. */
  readonly baseModel?: string;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: TuneProgress) => void;
  readonly onEvent?: (e: TuneEvent) => void;
}

export interface TuneProgress {
  /** Steps done. */
  readonly step: number;
  readonly totalSteps: number;
  /** The last step's loss. */
  readonly loss: number;
  readonly lr: number;
  /** Real tokens per second over this run so far. */
  readonly tokensPerSecond: number;
}

export type TuneEvent =
  | { readonly kind: 'start'; readonly mode: ExecMode; readonly totalSteps: number; readonly step: number }
  | { readonly kind: 'eval'; readonly step: number; readonly loss: number }
  | {
      readonly kind: 'checkpoint';
      readonly step: number;
      readonly dir: string;
      readonly reason: 'steps' | 'aborted';
    };

export interface TuneResult {
  /** The model with the trained adapters attached (unmerged). */
  readonly model: PrunableModel;
  readonly adapters: LoraAdapters;
  /** Steps done (equals totalSteps unless aborted). */
  readonly steps: number;
  readonly totalSteps: number;
  readonly mode: ExecMode;
  readonly history: readonly StepRecord[];
  readonly evals: readonly EvalRecord[];
  /** Real tokens processed by this process (a resumed run counts from the resume). */
  readonly tokens: number;
  readonly seconds: number;
}

const SHUFFLE_STREAM = 0x53687566; // "Shuf"

/** The settings a checkpoint records and a resume must match. */
function runSettings(o: {
  lora: LoraConfig;
  lr: number;
  epochs: number;
  batchSize: number;
  microBatchSize: number;
  warmupSteps: number;
  maxSteps?: number | undefined;
  maxGradNorm: number;
  seed: number;
  padId: number;
}): Record<string, unknown> {
  return {
    lora: { r: o.lora.r, alpha: o.lora.alpha, dropout: o.lora.dropout, targets: [...o.lora.targets] },
    lr: o.lr,
    epochs: o.epochs,
    batchSize: o.batchSize,
    microBatchSize: o.microBatchSize,
    warmupSteps: o.warmupSteps,
    maxSteps: o.maxSteps ?? null,
    maxGradNorm: o.maxGradNorm,
    seed: o.seed,
    padId: o.padId,
  };
}

/** FNV-1a over the examples' ids and labels: a resume must see the same data. */
function dataFingerprint(train: readonly Example[], validation: readonly Example[]): string {
  let h = 0x811c9dc5;
  const mix = (v: number) => {
    h = Math.imul(h ^ (v & 0xffff), 0x01000193) >>> 0;
    h = Math.imul(h ^ (v >>> 16), 0x01000193) >>> 0;
  };
  for (const set of [train, validation]) {
    mix(set.length);
    for (const e of set) {
      mix(e.ids.length);
      for (let i = 0; i < e.ids.length; i++) mix(e.ids[i]! * 2 + e.labels[i]!);
    }
  }
  return `${train.length}+${validation.length}:${h.toString(16).padStart(8, '0')}`;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1)
    throw new InputError(`${name} must be a positive integer, got ${v}`, undefined, name);
  return v;
}

/** The steps of a run over n training examples. */
export function stepsOf(
  n: number,
  o: { epochs: number; batchSize: number; maxSteps?: number },
): {
  perEpoch: number;
  total: number;
} {
  const perEpoch = Math.max(1, Math.floor(n / o.batchSize));
  return { perEpoch, total: o.maxSteps ?? Math.max(1, Math.ceil(o.epochs * perEpoch)) };
}

/**
 * Trains LoRA adapters on `model` (which must support `withLora`) and returns the adapted model.
 * See the module comment for what a step, the schedule, validation and checkpoints are.
 */
export async function tuneLora(
  model: PrunableModel,
  data: { readonly train: readonly Example[]; readonly validation?: readonly Example[] },
  options: TuneOptions,
): Promise<TuneResult> {
  const started = performance.now();
  if (!model.withLora) throw new InputError('this model cannot carry LoRA adapters (it has no withLora)');
  checkLoraConfig(options.lora);
  const o = {
    lora: options.lora,
    lr: options.lr ?? 1e-4,
    epochs: options.epochs ?? 2,
    batchSize: positiveInt('batchSize', options.batchSize ?? 64),
    microBatchSize: positiveInt('microBatchSize', options.microBatchSize ?? 4),
    warmupSteps: options.warmupSteps ?? 100,
    maxSteps: options.maxSteps === undefined ? undefined : positiveInt('maxSteps', options.maxSteps),
    maxGradNorm: options.maxGradNorm ?? 1,
    seed: options.seed ?? 1,
    evalSteps: positiveInt('evalSteps', options.evalSteps ?? 100),
    saveSteps: positiveInt('saveSteps', options.saveSteps ?? 200),
    saveTotalLimit: positiveInt('saveTotalLimit', options.saveTotalLimit ?? 20),
    padId: options.padId ?? 0,
  };
  if (!(o.epochs > 0)) throw new InputError(`epochs must be positive, got ${o.epochs}`, undefined, 'epochs');
  const train = data.train;
  const validation = data.validation ?? [];
  if (train.length === 0) throw new InputError('there are no training examples');
  const settings = runSettings(o);
  const fingerprint = dataFingerprint(train, validation);
  const { perEpoch, total } = stepsOf(train.length, o);
  const schedule = warmupLinear({ peakLr: o.lr, warmupSteps: o.warmupSteps, totalSteps: total });

  // Adapters (fresh, or the checkpoint's) on the model.
  const targets = findLoraTargets(model.params, o.lora.targets);
  const params = initLora(targets, o.lora.r, o.seed);
  const optimizer = new AdamW({ lr: o.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  let start = 0;
  let history: StepRecord[] = [];
  let evals: EvalRecord[] = [];
  let mode = options.mode ?? 'auto';
  if (options.resume) {
    const ck = await loadCheckpoint(options.resume);
    checkResumable(options.resume, ck, settings, fingerprint, total);
    for (const [name, t] of ck.adapters.params) {
      const mine = params.get(name);
      if (!mine || mine.data.length !== t.data.length)
        throw new InputError(
          `${options.resume}: adapter '${name}' does not fit this model`,
          options.resume,
          'resume',
        );
      (mine.data as Float32Array).set(t.data as Float32Array);
    }
    optimizer.loadState(ck.optimizer);
    start = ck.state.step;
    history = [...ck.state.history];
    evals = [...ck.state.evals];
    if (mode === 'auto') mode = ck.state.mode;
  }
  const adapters: LoraAdapters = { config: o.lora, params };
  const adapted = model.withLora(adapters);
  const arrays = new Map([...params].map(([n, t]) => [n, t.data as Float32Array]));
  const order = new Map(targets.map((t, i) => [loraNames(t.weight).a, i]));
  const longest = Math.max(...train.map((e) => e.ids.length), ...validation.map((e) => e.ids.length));
  const maxLength = options.maxLength ?? longest;
  const exec = await ModelExecutor.create(adapted, {
    backend: options.backend,
    mode,
    tokens: o.microBatchSize * maxLength,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  options.onEvent?.({ kind: 'start', mode: exec.mode, totalSteps: total, step: start });

  const permutations = new Map<number, number[]>();
  const stepExamples = (step: number): Example[] => {
    const epoch = Math.floor(step / perEpoch);
    let perm = permutations.get(epoch);
    if (!perm) {
      permutations.clear();
      perm = new Rng(counterKey(o.seed, SHUFFLE_STREAM, epoch).k0).permutation(train.length);
      permutations.set(epoch, perm);
    }
    const i = step % perEpoch;
    // Fewer examples than a batch: each step takes all of them.
    const end = train.length < o.batchSize ? train.length : (i + 1) * o.batchSize;
    return perm.slice(i * o.batchSize, end).map((j) => train[j]!);
  };
  const batchOpts = { padId: o.padId, maxLength };

  const checkpoint = (step: number): Checkpoint => ({
    adapters,
    optimizer: optimizer.state(),
    state: {
      format: CHECKPOINT_FORMAT,
      version: 1,
      step,
      totalSteps: total,
      mode: exec.mode,
      settings,
      data: fingerprint,
      history,
      evals,
    } satisfies TrainerState,
  });
  const save = async (step: number, reason: 'steps' | 'aborted') => {
    const dir = checkpointPath(options.checkpointDir!, step);
    await saveCheckpoint(dir, checkpoint(step), options.baseModel);
    await pruneCheckpoints(options.checkpointDir!, o.saveTotalLimit);
    options.onEvent?.({ kind: 'checkpoint', step, dir, reason });
  };
  const validate = async (step: number) => {
    let sum = 0;
    let count = 0;
    for (let i = 0; i < validation.length; i += o.microBatchSize) {
      const mb = microBatch(validation.slice(i, i + o.microBatchSize), batchOpts);
      sum += (await exec.loss(mb.ids, { targets: mb.targets, mask: mb.mask })) * mb.labels;
      count += mb.labels;
    }
    const loss = sum / count;
    evals.push({ step, loss });
    options.onEvent?.({ kind: 'eval', step, loss });
  };

  let done = start;
  let tokens = 0;
  let lastSaved = -1;
  try {
    for (let step = start; step < total; step++) {
      throwIfAborted(options.signal);
      const examples = stepExamples(step);
      const grads = new Map([...arrays].map(([n, a]) => [n, new Float32Array(a.length)]));
      const micros = Math.ceil(examples.length / o.microBatchSize);
      let lossSum = 0;
      let stepTokens = 0;
      for (let m = 0; m < micros; m++) {
        const mb = microBatch(examples.slice(m * o.microBatchSize, (m + 1) * o.microBatchSize), batchOpts);
        const key = loraDropoutKey(o.seed, step, m);
        const stageInputs: StageInputs | undefined =
          o.lora.dropout > 0
            ? (stage) => loraDropoutInputs(stage, params, order, key, mb.ids.shape, o.lora.dropout)
            : undefined;
        lossSum += await exec.lossAndGradients(mb.ids, {
          wanted: isLoraParam,
          targets: mb.targets,
          mask: mb.mask,
          ...(stageInputs ? { stageInputs } : {}),
          consume: (g) => {
            for (const [n, v] of g) {
              const acc = grads.get(n)!;
              for (let i = 0; i < v.length; i++) acc[i]! += v[i]!;
            }
          },
        });
        stepTokens += mb.tokens;
      }
      for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! / micros;
      const gradNorm = clipGradNorm(grads, o.maxGradNorm);
      const lr = schedule(step);
      optimizer.step(arrays, grads, lr);
      done = step + 1;
      tokens += stepTokens;
      const loss = lossSum / micros;
      if (!Number.isFinite(loss)) throw new InputError(`the training loss is ${loss} at step ${done}`);
      history.push({ step: done, loss, lr, gradNorm, tokens: stepTokens });
      const seconds = (performance.now() - started) / 1000;
      options.onProgress?.({ step: done, totalSteps: total, loss, lr, tokensPerSecond: tokens / seconds });
      if (validation.length > 0 && (done % o.evalSteps === 0 || done === total)) await validate(done);
      if (options.checkpointDir && done % o.saveSteps === 0 && done < total) {
        await save(done, 'steps');
        lastSaved = done;
      }
    }
  } catch (e) {
    if (options.signal?.aborted && options.checkpointDir && done > start) {
      // The last completed step is saved (or already was, by --save-steps): say where to resume.
      if (lastSaved !== done) await save(done, 'aborted');
      else {
        const dir = checkpointPath(options.checkpointDir, done);
        options.onEvent?.({ kind: 'checkpoint', step: done, dir, reason: 'aborted' });
      }
    }
    exec.dispose();
    throw e;
  }
  exec.dispose();
  return {
    model: adapted,
    adapters,
    steps: done,
    totalSteps: total,
    mode: exec.mode,
    history,
    evals,
    tokens,
    seconds: (performance.now() - started) / 1000,
  };
}

/** A checkpoint continues this run only with the same settings and data. */
function checkResumable(
  dir: string,
  ck: Checkpoint,
  settings: Record<string, unknown>,
  fingerprint: string,
  total: number,
): void {
  const differ = Object.keys(settings).filter(
    (k) => JSON.stringify(settings[k]) !== JSON.stringify(ck.state.settings[k]),
  );
  if (differ.length > 0) {
    throw new InputError(
      `--resume ${dir}: the checkpoint was made with other settings: ${differ
        .map((k) => `${k} ${JSON.stringify(ck.state.settings[k])} (now ${JSON.stringify(settings[k])})`)
        .join(', ')}`,
      dir,
      'resume',
    );
  }
  if (ck.state.data !== fingerprint)
    throw new InputError(
      `--resume ${dir}: the checkpoint was made on other data (or another tokenizer / template / cutoff)`,
      dir,
      'resume',
    );
  if (ck.state.step > total)
    throw new InputError(
      `--resume ${dir}: the checkpoint is at step ${ck.state.step}, beyond this run's ${total}`,
      dir,
      'resume',
    );
}
