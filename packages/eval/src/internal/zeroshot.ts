/**
 * Zero-shot scoring with lm-evaluation-harness's protocol: the log-likelihood of each choice's
 * continuation given its context; acc = argmax of the summed log-probability, acc_norm = argmax of
 * the sum divided by the choice's UTF-8 byte length (see tasks.ts for what is measured).
 *
 * Tokenization follows the harness's `_encode_pair`: trailing whitespace of the context moves to
 * the continuation, then `whole = encode(context + continuation)`, `ctx = encode(context)` and the
 * continuation tokens are `whole[ctx.length:]`. Both encodings carry BOS when `bos` is true
 * (default, and the tokenizer has one; the harness's HF models add none unless add_bos_token=True,
 * but llama2.c-style models are trained with BOS in front of every document). If the
 * continuation would tokenize to nothing (merged into the context), its last token is taken.
 *
 * Protocol `harness-2023` is the lm-evaluation-harness bundled with LLM-Pruner and MoreauPruner
 * (the one their papers' tables come from; `lm_eval/base.py` `BaseLM.loglikelihood` with the
 * `hf-causal-experimental` model): no BOS, context and continuation encoded separately
 * (`ctx = encode(context)`, `cont = encode(continuation)`, tokens = ctx + cont; no whitespace is
 * moved), an empty context becomes the EOS token. With a SentencePiece vocabulary that adds a dummy
 * prefix (LLaMA's), the continuation " Paris" then encodes as "▁" "▁Paris", one token more than in
 * the joint encoding. Its acc_norm divides by the choice's length in characters (Unicode code
 * points, Python's len); `current` divides by UTF-8 bytes (the same for ASCII).
 *
 * Windows are at most `model.maxLength` tokens: longer requests keep their last maxLength tokens
 * (the context is left-truncated). The window's first token is never a target, so at most
 * maxLength - 1 continuation tokens are scored (the harness feeds max_length inputs, i.e. one more
 * context token in truncated cases).
 *
 * Batching and sharing: requests are de-duplicated, and a request whose tokens are a prefix of
 * another request's tokens (of the same item, or identical anywhere) is read from that row, since
 * a causal model's scores at position t do not depend on what follows. Remaining rows are sorted
 * by length, padded on the right to a length bucket (32, 48, 64, 96, 128, ...; see lengthBucket)
 * and scored in batches. A
 * stateless graph has no KV cache, so a context shared by several choices is still recomputed
 * in each choice's row (in the same batch).
 */
import { InputError, type Progress, throwIfAborted } from '@moreau/core';
import { lengthBucket } from './buckets.js';
import type { TextEncoder } from './perplexity.js';
import type { ScoringModel } from './scoring-model.js';
import type { MultipleChoiceItem, Request, ZeroShotTask } from './tasks.js';

/**
 * How requests are tokenized and acc_norm is normalised: `current` (default; the harness's
 * `_encode_pair`, BOS by default) or `harness-2023` (the papers' bundled harness; see above).
 */
export type ZeroShotProtocol = 'current' | 'harness-2023';

export const ZEROSHOT_PROTOCOLS: readonly ZeroShotProtocol[] = ['current', 'harness-2023'];

export interface ZeroShotOptions {
  /** Evaluate only the first N items. */
  readonly limit?: number;
  /** Tokenization and acc_norm protocol (default 'current'). */
  readonly protocol?: ZeroShotProtocol;
  /** Prepend BOS to every request (default true when the tokenizer has a BOS id; never in harness-2023). */
  readonly bos?: boolean;
  /** Smallest row length bucket (default 32; see lengthBucket), bounding the compiled shapes. */
  readonly bucket?: number;
  /** Rows per model call (default the model's batchSize, else 8). */
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
}

export interface EncodedRequest {
  /** Context + continuation tokens, left-truncated to the model's window. */
  readonly tokens: readonly number[];
  /** Number of trailing tokens that are the continuation (all scored). */
  readonly continuationLength: number;
}

export interface RequestScore {
  /** Sum of log p over the continuation tokens. */
  readonly logprob: number;
  /** Every continuation token is the model's argmax (greedy). */
  readonly greedy: boolean;
  readonly tokens: number;
}

export interface MultipleChoiceResult {
  readonly task: string;
  readonly kind: 'multiple_choice';
  readonly n: number;
  readonly acc: number;
  readonly acc_norm: number;
  /** Sample standard errors, sqrt(p (1 - p) / (n - 1)) as the harness reports them. */
  readonly acc_stderr: number;
  readonly acc_norm_stderr: number;
  /** Per item: the log-likelihood of every choice. */
  readonly logprobs: readonly (readonly number[])[];
}

export interface LoglikelihoodResult {
  readonly task: string;
  readonly kind: 'loglikelihood';
  readonly n: number;
  /** Greedy accuracy: every continuation token is the argmax. */
  readonly acc: number;
  readonly acc_stderr: number;
  /** Harness perplexity aggregation: exp(-mean over items of the summed continuation log p). */
  readonly ppl: number;
  readonly logprobs: readonly number[];
}

export type TaskResult = MultipleChoiceResult | LoglikelihoodResult;

/** The 2023 harness: context and continuation encoded separately, no BOS (see the module comment). */
function encodeRequest2023(
  tokenizer: TextEncoder,
  { context, continuation }: Request,
  maxLength: number,
): EncodedRequest {
  let ctx: number[];
  if (context === '') {
    if (tokenizer.eosId === undefined)
      throw new InputError('an empty context needs an EOS id to condition on (harness-2023)');
    ctx = [tokenizer.eosId];
  } else ctx = tokenizer.encode(context, { bos: false });
  const cont = tokenizer.encode(continuation, { bos: false });
  if (ctx.length === 0 || cont.length === 0)
    throw new InputError(
      `harness-2023: a request's context and continuation must each encode to at least one token (context ${JSON.stringify(context.slice(-40))}, continuation ${JSON.stringify(continuation)})`,
    );
  let tokens = [...ctx, ...cont];
  let contLen = cont.length;
  if (tokens.length > maxLength) {
    tokens = tokens.slice(tokens.length - maxLength);
    contLen = Math.min(contLen, maxLength - 1);
  }
  return { tokens, continuationLength: contLen };
}

/**
 * A request's tokens: the harness's `_encode_pair` (protocol `current`, the default) or the 2023
 * harness's separate encodings (see the module comment).
 */
export function encodeRequest(
  tokenizer: TextEncoder,
  request: Request,
  options: { bos?: boolean; maxLength?: number; prefixId?: number; protocol?: ZeroShotProtocol } = {},
): EncodedRequest {
  if (options.protocol === 'harness-2023')
    return encodeRequest2023(tokenizer, request, options.maxLength ?? Number.POSITIVE_INFINITY);
  let { context, continuation } = request;
  const nSpaces = context.length - context.trimEnd().length;
  if (nSpaces > 0) {
    continuation = context.slice(context.length - nSpaces) + continuation;
    context = context.slice(0, context.length - nSpaces);
  }
  const bos = options.bos ?? true;
  const whole = tokenizer.encode(context + continuation, { bos });
  let ctxLen =
    context === ''
      ? bos && tokenizer.bosId !== undefined
        ? 1
        : 0
      : tokenizer.encode(context, { bos }).length;
  if (ctxLen >= whole.length) ctxLen = whole.length - 1;
  let tokens = whole;
  if (ctxLen === 0) {
    // Nothing to condition on: prefix the BOS / EOS id (the harness's prefix_token_id).
    const prefix = options.prefixId ?? tokenizer.bosId ?? tokenizer.eosId;
    if (prefix === undefined) throw new InputError('an empty context needs a BOS or EOS id to condition on');
    tokens = [prefix, ...whole];
    ctxLen = 1;
  }
  let contLen = tokens.length - ctxLen;
  const max = options.maxLength ?? Number.POSITIVE_INFINITY;
  if (tokens.length > max) {
    tokens = tokens.slice(tokens.length - max);
    contLen = Math.min(contLen, max - 1);
  }
  return { tokens, continuationLength: contLen };
}

const keyOf = (t: readonly number[]) => t.join(',');

function isPrefix(a: readonly number[], b: readonly number[]): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Scores encoded requests. `groups` lists indices of requests that may share rows by prefix
 * (the choices of one item); identical requests share a row anywhere.
 */
export async function scoreRequests(
  model: ScoringModel,
  requests: readonly EncodedRequest[],
  options: ZeroShotOptions & {
    readonly groups?: readonly (readonly number[])[];
    readonly needGreedy?: boolean;
  } = {},
): Promise<RequestScore[]> {
  const bucket = options.bucket ?? 32;
  const B = options.batchSize ?? model.batchSize ?? 8;
  // Request -> row that covers it.
  const rows: number[][] = [];
  const rowOf = new Int32Array(requests.length).fill(-1);
  const byKey = new Map<string, number>();
  const assign = (i: number, r: number) => {
    rowOf[i] = r;
  };
  const newRow = (t: readonly number[]) => {
    rows.push([...t]);
    byKey.set(keyOf(t), rows.length - 1);
    return rows.length - 1;
  };
  const groups = options.groups ?? requests.map((_, i) => [i]);
  for (const g of groups) {
    // Longest first, so shorter choices can be served by a longer row that contains them.
    const order = [...g].sort((a, b) => requests[b]!.tokens.length - requests[a]!.tokens.length);
    const local: number[] = [];
    for (const i of order) {
      const t = requests[i]!.tokens;
      if (t.length < 2) throw new InputError('a request needs at least 2 tokens (context and continuation)');
      const same = byKey.get(keyOf(t));
      if (same !== undefined) {
        assign(i, same);
        continue;
      }
      const host = local.find((r) => isPrefix(t, rows[r]!));
      if (host !== undefined) assign(i, host);
      else {
        const r = newRow(t);
        local.push(r);
        assign(i, r);
      }
    }
  }
  for (let i = 0; i < requests.length; i++)
    if (rowOf[i]! < 0) throw new InputError(`request ${i} belongs to no group`);

  // Batch rows by padded length.
  const padded = (n: number) => lengthBucket(n, bucket, model.maxLength);
  const order = rows.map((_, r) => r).sort((a, b) => rows[b]!.length - rows[a]!.length || a - b);
  const pad = model.eosId ?? 0;
  const nll: Float32Array[] = new Array(rows.length);
  const greedy: Uint8Array[] = new Array(rows.length);
  const wantGreedy = options.needGreedy === true;
  if (wantGreedy && !model.tokenScores) {
    throw new InputError('this task needs greedy flags, but the model has no tokenScores()');
  }
  let done = 0;
  for (let s = 0; s < order.length; ) {
    throwIfAborted(options.signal);
    const T = padded(rows[order[s]!]!.length);
    const batch: number[] = [];
    while (s < order.length && batch.length < B && padded(rows[order[s]!]!.length) === T)
      batch.push(order[s++]!);
    const windows = batch.map((r) => {
      const w = rows[r]!.slice();
      while (w.length < T) w.push(pad);
      return w;
    });
    if (wantGreedy) {
      const out = await model.tokenScores!(windows, options.signal);
      batch.forEach((r, k) => {
        nll[r] = out[k]!.nll;
        greedy[r] = out[k]!.greedy;
      });
    } else {
      const out = await model.tokenNll(windows, options.signal);
      batch.forEach((r, k) => {
        nll[r] = out[k]!;
      });
    }
    done += batch.length;
    options.onProgress?.({ phase: 'score', done, total: rows.length });
  }

  return requests.map((req, i) => {
    const r = rowOf[i]!;
    const len = req.tokens.length;
    const row = nll[r]!;
    let lp = 0;
    let g = true;
    // Token at index j is predicted at position j - 1.
    for (let j = len - req.continuationLength; j < len; j++) {
      lp -= row[j - 1]!;
      if (wantGreedy && greedy[r]![j - 1] !== 1) g = false;
    }
    return { logprob: lp, greedy: wantGreedy ? g : false, tokens: req.continuationLength };
  });
}

const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8');
/** Python's len(): Unicode code points. */
const codePointLength = (s: string) => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

function stderr(p: number, n: number): number {
  return n > 1 ? Math.sqrt((p * (1 - p)) / (n - 1)) : Number.NaN;
}

/**
 * acc / acc_norm of items given every choice's log-likelihood (ties go to the lower index); acc_norm
 * divides by UTF-8 bytes (`current`) or code points (`harness-2023`).
 */
export function multipleChoiceMetrics(
  items: readonly Pick<MultipleChoiceItem, 'gold' | 'normTexts'>[],
  logprobs: readonly (readonly number[])[],
  protocol: ZeroShotProtocol = 'current',
): { acc: number; acc_norm: number; n: number } {
  const length = protocol === 'harness-2023' ? codePointLength : utf8Length;
  let acc = 0;
  let accNorm = 0;
  items.forEach((item, k) => {
    const lls = logprobs[k]!;
    if (argmax(lls) === item.gold) acc++;
    if (argmax(lls.map((v, c) => v / length(item.normTexts[c]!))) === item.gold) accNorm++;
  });
  const n = items.length;
  return { acc: acc / n, acc_norm: accNorm / n, n };
}

/** Evaluates one task (the first `limit` items). */
export async function evaluateTask(
  model: ScoringModel,
  tokenizer: TextEncoder,
  task: ZeroShotTask,
  options: ZeroShotOptions = {},
): Promise<TaskResult> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const protocol = options.protocol ?? 'current';
  if (!ZEROSHOT_PROTOCOLS.includes(protocol))
    throw new InputError(
      `unknown zero-shot protocol '${protocol}'; valid: ${ZEROSHOT_PROTOCOLS.join(', ')}`,
      undefined,
      'protocol',
    );
  const bos = (options.bos ?? true) && tokenizer.bosId !== undefined;
  const enc = (r: Request) => encodeRequest(tokenizer, r, { bos, maxLength: model.maxLength, protocol });
  const progress = (p: Progress) => options.onProgress?.({ ...p, phase: `${task.name}: ${p.phase}` });
  if (task.kind === 'loglikelihood') {
    const items = task.items.slice(0, limit);
    const encoded = items.map(enc);
    const scores = await scoreRequests(model, encoded, {
      ...options,
      needGreedy: true,
      onProgress: progress,
    });
    const n = items.length;
    const acc = scores.filter((s) => s.greedy).length / n;
    const meanLl = scores.reduce((a, s) => a + s.logprob, 0) / n;
    return {
      task: task.name,
      kind: 'loglikelihood',
      n,
      acc,
      acc_stderr: stderr(acc, n),
      ppl: Math.exp(-meanLl),
      logprobs: scores.map((s) => s.logprob),
    };
  }
  const items = task.items.slice(0, limit);
  const encoded: EncodedRequest[] = [];
  const groups: number[][] = [];
  for (const item of items) {
    const g: number[] = [];
    for (const r of item.requests) {
      g.push(encoded.length);
      encoded.push(enc(r));
    }
    groups.push(g);
  }
  const scores = await scoreRequests(model, encoded, { ...options, groups, onProgress: progress });
  const logprobs = groups.map((g) => g.map((i) => scores[i]!.logprob));
  const m = multipleChoiceMetrics(items, logprobs, protocol);
  return {
    task: task.name,
    kind: 'multiple_choice',
    n: m.n,
    acc: m.acc,
    acc_norm: m.acc_norm,
    acc_stderr: stderr(m.acc, m.n),
    acc_norm_stderr: stderr(m.acc_norm, m.n),
    logprobs,
  };
}
