/**
 * A ScoringModel over core's ModelExecutor, for any staged model (LLaMA included): whole mode
 * (weights resident on the backend, one compiled graph per window length and row count) for
 * models that fit, layer-streamed mode (one stage at a time, chunks of windows layer-major)
 * for those that do not; chosen automatically or forced. Generation decodes incrementally with a
 * cache per layer in either mode.
 *
 * Weights stay in their storage dtype: half-precision weights are cast inside the graphs.
 */
import {
  availableMemory,
  type Backend,
  type ComputeDtype,
  type ComputeMode,
  type ExecMode,
  getBackend,
  type HeadOutputs,
  type HostTensor,
  InputError,
  ModelExecutor,
  ops,
  type PrunableModel,
  tensor,
  throwIfAborted,
} from '@moreau/core';
import { type LlamaConfig, LlamaModel } from '@moreau/models';
import { type CallPlan, callRows, planCalls } from './batching.js';
import { checkWindows, type DecodingSession, type ScoringModel, type TokenScores } from './scoring-model.js';

export interface StagedScoringOptions {
  /** A backend instance or registered name (default: the best registered). */
  readonly backend?: Backend | string;
  /** Rows per compiled call at most (default 8); fewer when there is less work or memory. */
  readonly batchSize?: number;
  /** 'auto' (default): whole when it fits in half the available memory, else 'streamed'. */
  readonly exec?: ExecMode | 'auto';
  /** Keep weights on the backend between calls (default true). */
  readonly uploadWeights?: boolean;
  /** Context length (default: the model's maximum positions, else unbounded). */
  readonly maxLength?: number;
  /** Vocabulary size (default: rows of the embedding matrix). */
  readonly vocabSize?: number;
  readonly bosId?: number;
  readonly eosId?: number;
  /** Bytes the evaluation may use (default: what the system reports available). */
  readonly availableBytes?: number;
  /**
   * The dtype every pass computes in (default float32): float16 / bfloat16 are emulated exactly
   * (core's ExecutorOptions.computeDtype), scoring and decoding alike.
   */
  readonly computeDtype?: ComputeDtype;
}

/** A ScoringModel with every optional method. */
export type StagedScoringModel = ScoringModel &
  Required<
    Pick<
      ScoringModel,
      'tokenScores' | 'logitsAt' | 'dispose' | 'batchSize' | 'windowsPerCall' | 'startDecoding'
    >
  > & {
    /** The compute dtype and whether it ran natively or emulated, once the model has run. */
    readonly compute: ComputeMode | undefined;
  };

/** NLL of each next token and whether it is the argmax (1 in `miss` when it is not). */
const scoreOutputs: HeadOutputs = (head, hidden, ids) => {
  const T = ids.shape[1]!;
  const logits = head(ops.slice(hidden, 1, 0, T - 1));
  const picked = ops.pickLast(logits, ops.slice(ids, 1, 1, T));
  const nll = ops.sub(ops.logSumExp(logits, -1), picked);
  const miss = ops.cast(ops.less(picked, ops.max(logits, -1)), 'float32');
  return { nll, miss };
};

/** Logits at one position per row (inputs.pos, int32 [B]): that row's hidden state through the head. */
const logitsOutputs: HeadOutputs = (head, hidden, ids, inputs) => {
  const [B, T] = ids.shape as [number, number];
  const sel = ops.reshape(ops.oneHotMask(inputs.pos!, T), [B, T, 1]);
  const logits = head(ops.sum(ops.where(sel, hidden, 0), 1, true)); // [B, 1, V]
  return { logits: ops.reshape(logits, [B, logits.shape[2]!]) };
};

const idsTensor = (rows: readonly (readonly number[])[], T: number) =>
  tensor(Int32Array.from(rows.flat()), [rows.length, T], 'int32');

/** Scores windows of any staged PrunableModel on core's executor (see the module comment). */
export function scoringModelFromStages(
  model: PrunableModel,
  options: StagedScoringOptions = {},
): StagedScoringModel {
  const B = options.batchSize ?? 8;
  if (!Number.isInteger(B) || B < 1) throw new InputError(`batchSize must be a positive integer, got ${B}`);
  if (!model.stages) throw new InputError('scoring needs a model that describes its stages');
  const staged = model.stages();
  const embed = model.params.get(Object.values(staged.embed.params)[0]!);
  const V = options.vocabSize ?? embed?.shape[0];
  if (V === undefined) throw new InputError('scoring: give vocabSize (the embedding has no rows)');
  const maxLength = options.maxLength ?? staged.decoding?.maxPositions ?? Number.POSITIVE_INFINITY;

  let executor: Promise<ModelExecutor> | undefined;
  let mode: ExecMode | undefined;
  let compute: ComputeMode | undefined;
  const plans = new Map<number, Promise<CallPlan>>();

  /** The executor, created on first use; its mode is chosen for `rows` windows of `length`. */
  const executorFor = (length: number, rows: number) => {
    if (executor) return executor;
    executor = (async () => {
      const backend =
        typeof options.backend === 'object' ? options.backend : await getBackend(options.backend);
      const ex = await ModelExecutor.create(model, {
        backend,
        mode: options.exec ?? 'auto',
        forwardOnly: true,
        tokens: Math.max(1, Math.min(B, rows)) * length,
        length,
        upload: options.uploadWeights !== false,
        ...(options.availableBytes !== undefined ? { availableBytes: options.availableBytes } : {}),
        ...(options.computeDtype !== undefined ? { computeDtype: options.computeDtype } : {}),
      });
      mode = ex.mode;
      compute = ex.compute;
      return ex;
    })();
    // A failed creation (e.g. a MemoryLimitError) is not cached: the next call tries again.
    executor.catch(() => {
      executor = undefined;
    });
    return executor;
  };

  /**
   * Rows per compiled call and windows per model call for this length (see batching.ts), fixed
   * the first time the length is seen, for `work` windows (what the evaluator has, or that call's).
   */
  const planFor = (ex: ModelExecutor, length: number, work: number) => {
    let p = plans.get(length);
    if (!p) {
      p = (async () => {
        const e = ex.forwardEstimate(length);
        const available = options.availableBytes ?? (await availableMemory());
        const held = ex.mode === 'whole' ? e.weights : 2 * e.stageWeights;
        return planCalls({
          mode: ex.mode,
          call: {
            fixed: Math.max(...e.calls.map((c) => c.fixed)),
            perRow: Math.max(...e.calls.map((c) => c.perRow)),
          },
          perWindow: e.perWindow,
          budget: available / 2 - held,
          batchSize: B,
          work,
        });
      })();
      plans.set(length, p);
    }
    return p;
  };

  /**
   * Runs windows of length T through the model: in chunks (streamed: layer-major per chunk), each
   * in calls of the plan's rows (the last padded). Returns each call's outputs with the indices of
   * its real windows (rows past them are padding).
   */
  async function run(
    batch: readonly (readonly number[])[],
    T: number,
    outputs: HeadOutputs,
    key: string,
    signal: AbortSignal | undefined,
    inputs?: (windows: readonly number[]) => Record<string, HostTensor>,
  ): Promise<{ windows: number[]; out: Record<string, HostTensor> }[]> {
    const ex = await executorFor(T, batch.length);
    const { rows, chunk } = await planFor(ex, T, batch.length);
    const per = ex.mode === 'streamed' ? chunk : batch.length;
    const results: { windows: number[]; out: Record<string, HostTensor> }[] = [];
    for (let c = 0; c < batch.length; c += per) {
      throwIfAborted(signal);
      const n = Math.min(per, batch.length - c);
      const calls = callRows(n, rows).map((call) => call.map((i) => c + i));
      const outs = await ex.forward(
        calls.map((call) => ({
          ids: idsTensor(
            call.map((i) => batch[i]!),
            T,
          ),
          ...(inputs ? { inputs: inputs(call) } : {}),
        })),
        outputs,
        key,
        signal ? { signal } : {},
      );
      outs.forEach((out, k) => {
        const real = Math.min(rows, n - k * rows);
        results.push({ windows: calls[k]!.slice(0, real), out });
      });
    }
    return results;
  }

  async function tokenScores(
    batch: readonly (readonly number[])[],
    signal?: AbortSignal,
  ): Promise<TokenScores[]> {
    const T = checkWindows(batch, V!, 2, maxLength);
    const out: TokenScores[] = new Array(batch.length);
    for (const { windows, out: r } of await run(batch, T, scoreOutputs, 'score', signal)) {
      const nll = r.nll!.data as Float32Array;
      const miss = r.miss!.data as Float32Array;
      for (let i = 0; i < windows.length; i++) {
        out[windows[i]!] = {
          nll: nll.slice(i * (T - 1), (i + 1) * (T - 1)),
          greedy: Uint8Array.from(miss.subarray(i * (T - 1), (i + 1) * (T - 1)), (m) => (m > 0 ? 0 : 1)),
        };
      }
    }
    return out;
  }

  async function logitsAt(
    batch: readonly (readonly number[])[],
    positions: readonly number[],
    signal?: AbortSignal,
  ): Promise<Float32Array[]> {
    const T = checkWindows(batch, V!, 1, maxLength);
    if (positions.length !== batch.length) throw new InputError('logitsAt: one position per row');
    for (const p of positions) {
      if (!Number.isInteger(p) || p < 0 || p >= T)
        throw new InputError(`logitsAt: position ${p} outside [0, ${T})`);
    }
    // The executor runs windows of at least 2 tokens: pad one; a position ignores what follows it.
    if (T < 2)
      return logitsAt(
        batch.map((w) => [...w, 0]),
        positions,
        signal,
      );
    const pos = (call: readonly number[]) => ({
      pos: tensor(
        Int32Array.from(call, (i) => positions[i]!),
        [call.length],
        'int32',
      ),
    });
    const out: Float32Array[] = new Array(batch.length);
    for (const { windows, out: r } of await run(batch, T, logitsOutputs, 'logits', signal, pos)) {
      const data = r.logits!.data as Float32Array;
      windows.forEach((w, i) => {
        out[w] = data.slice(i * V!, (i + 1) * V!);
      });
    }
    return out;
  }

  return {
    vocabSize: V,
    maxLength,
    ...(options.bosId !== undefined ? { bosId: options.bosId } : {}),
    ...(options.eosId !== undefined ? { eosId: options.eosId } : {}),
    batchSize: B,
    get exec() {
      return mode;
    },
    get compute() {
      return compute;
    },
    tokenScores,
    async tokenNll(batch, signal) {
      return (await tokenScores(batch, signal)).map((s) => s.nll);
    },
    logitsAt,
    async windowsPerCall(length, total = B) {
      const ex = await executorFor(length, total);
      const { rows, chunk } = await planFor(ex, length, total);
      return ex.mode === 'streamed' ? chunk : rows;
    },
    async startDecoding(signal) {
      const ex = await executorFor(Math.min(maxLength, 128), 1);
      const decoder = ex.decoder(1, signal);
      return {
        get length() {
          return decoder.length;
        },
        async append(ids: readonly number[]) {
          for (const id of ids) {
            if (!Number.isInteger(id) || id < 0 || id >= V!)
              throw new InputError(`token id ${id} is outside the vocabulary [0, ${V})`);
          }
          const logits = await decoder.append(tensor(Int32Array.from(ids), [1, ids.length], 'int32'));
          return logits.data as Float32Array;
        },
      } satisfies DecodingSession;
    },
    dispose() {
      const ex = executor;
      executor = undefined;
      plans.clear();
      ex?.then((e) => e.dispose()).catch(() => {});
    },
  };
}

export interface LlamaScoringOptions
  extends Omit<StagedScoringOptions, 'backend' | 'vocabSize' | 'bosId' | 'eosId'> {}

/** What scoringModelFromLlama returns: a ScoringModel with every optional method. */
export type LlamaScoringModel = StagedScoringModel;

type Params = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

/** A LlamaModel (by shape, not instanceof: another copy of @moreau/models may have made it). */
function isLlamaModel(x: unknown): x is LlamaModel {
  return (
    typeof x === 'object' &&
    x !== null &&
    !(x instanceof Map) &&
    typeof (x as LlamaModel).stages === 'function' &&
    (x as LlamaModel).params instanceof Map &&
    typeof (x as LlamaModel).config === 'object'
  );
}

/**
 * A ScoringModel for a LLaMA on a backend: see scoringModelFromStages. Either a `LlamaModel` (its
 * LoRA adapters, when `withLora` attached some, are applied unmerged in every graph, decoding
 * included) or its parameters by HF name and its config. Context length:
 * config.maxPositionEmbeddings unless maxLength says.
 */
export function scoringModelFromLlama(
  model: LlamaModel,
  backend?: Backend | string,
  options?: LlamaScoringOptions,
): LlamaScoringModel;
export function scoringModelFromLlama(
  params: Params,
  config: LlamaConfig,
  backend?: Backend | string,
  options?: LlamaScoringOptions,
): LlamaScoringModel;
export function scoringModelFromLlama(
  ...args:
    | [LlamaModel, (Backend | string)?, LlamaScoringOptions?]
    | [Params, LlamaConfig, (Backend | string)?, LlamaScoringOptions?]
): LlamaScoringModel {
  let model: LlamaModel;
  let backend: Backend | string | undefined;
  let options: LlamaScoringOptions;
  if (isLlamaModel(args[0])) {
    model = args[0];
    backend = args[1] as Backend | string | undefined;
    options = (args[2] as LlamaScoringOptions | undefined) ?? {};
  } else {
    const [params, config] = args as [Params, LlamaConfig];
    const map =
      params instanceof Map ? params : new Map(Object.entries(params as Record<string, HostTensor>));
    model = new LlamaModel(config, map);
    backend = args[2] as Backend | string | undefined;
    options = (args[3] as LlamaScoringOptions | undefined) ?? {};
  }
  const { config } = model;
  return scoringModelFromStages(model, {
    ...options,
    ...(backend !== undefined ? { backend } : {}),
    vocabSize: config.vocabSize,
    bosId: config.bosTokenId,
    eosId: config.eosTokenId,
  });
}
