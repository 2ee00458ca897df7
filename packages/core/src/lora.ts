/**
 * LoRA (Hu et al. 2021) as PEFT implements it, for any model that applies its linear layers with
 * `loraLinear`: a target weight W [out, in] gets a trainable A [r, in] (Kaiming-uniform) and
 * B [out, r] (zeros), and the layer computes
 *
 *   y = x W^T + (alpha / r) * dropout(x) A^T B^T
 *
 * so only A and B are differentiated and W stays as stored (any dtype, cast inside the graph).
 * Merging writes W' = W + (alpha / r) B A back in W's dtype; unmerging subtracts it again.
 *
 * Names follow PEFT inside the model: the adapters of `model.layers.0.self_attn.q_proj.weight` are
 * `model.layers.0.self_attn.q_proj.lora_A.weight` and `...lora_B.weight` (PEFT's saved names are
 * these with `base_model.model.` in front). A model stage sees them under its local name of the
 * weight plus `.lora_A` / `.lora_B`, and, while training, a dropout mask under `.lora_dropout`.
 *
 * Dropout masks are host tensors drawn from the counter-based generator, so a streamed backward
 * pass that recomputes a layer regenerates exactly the masks its forward pass used.
 */
import { type CounterKey, counterKey, fillCounterNormals } from './counter-rng.js';
import { castHost, type HostTensor, sizeOf, tensor, toFloat32Data } from './dtype.js';
import { InputError, ShapeError } from './errors.js';
import { lazyTensor } from './lazy.js';
import * as ops from './ops.js';
import { Rng } from './rng.js';
import type { Stage } from './stream/staged-model.js';
import type { Tensor } from './tensor.js';

/** The LoRA hyper-parameters (PEFT's LoraConfig with bias "none"). */
export interface LoraConfig {
  /** Rank r of the update B A. */
  readonly r: number;
  /** Scale numerator: the update is multiplied by alpha / r. */
  readonly alpha: number;
  /** Dropout probability on the adapter's input while training (0: none). */
  readonly dropout: number;
  /** Module names to adapt: a 2-D weight `<...>.<module>.weight` is a target when <module> is listed. */
  readonly targets: readonly string[];
}

/** LLM-Pruner's post_training.py targets: every projection of a LLaMA layer. */
export const DEFAULT_LORA_TARGETS: readonly string[] = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'down_proj',
  'up_proj',
];

/** alpha / r. */
export function loraScale(config: Pick<LoraConfig, 'r' | 'alpha'>): number {
  return config.alpha / config.r;
}

/** Checks a LoRA config (positive integer r, finite alpha, dropout in [0, 1), at least one target). */
export function checkLoraConfig(config: LoraConfig): void {
  if (!Number.isInteger(config.r) || config.r < 1)
    throw new InputError(`LoRA r must be a positive integer, got ${config.r}`, undefined, 'r');
  if (!Number.isFinite(config.alpha) || config.alpha <= 0)
    throw new InputError(`LoRA alpha must be a positive number, got ${config.alpha}`, undefined, 'alpha');
  if (!Number.isFinite(config.dropout) || config.dropout < 0 || config.dropout >= 1)
    throw new InputError(`LoRA dropout must be in [0, 1), got ${config.dropout}`, undefined, 'dropout');
  if (config.targets.length === 0)
    throw new InputError('LoRA needs at least one target module', undefined, 'targets');
}

/** The adapter names of a weight: `x.weight` -> `x.lora_A.weight`, `x.lora_B.weight`. */
export function loraNames(weight: string): { readonly a: string; readonly b: string } {
  if (!weight.endsWith('.weight')) throw new InputError(`LoRA: '${weight}' is not a '<module>.weight' name`);
  const base = weight.slice(0, -'.weight'.length);
  return { a: `${base}.lora_A.weight`, b: `${base}.lora_B.weight` };
}

/** Whether a parameter name is a LoRA adapter matrix. */
export function isLoraParam(name: string): boolean {
  return /\.lora_[AB]\.weight$/.test(name);
}

/** A weight that gets an adapter. */
export interface LoraTarget {
  /** The weight's parameter name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly weight: string;
  /** Its module name (the component before `.weight`), e.g. `q_proj`. */
  readonly module: string;
  readonly out: number;
  readonly in: number;
}

/**
 * The targets among a model's parameters, in the parameters' order: every 2-D weight named
 * `<...>.<module>.weight` for a listed module (PEFT matches target_modules against the end of the
 * module name the same way). A listed module that matches nothing is an error naming the modules
 * the model has.
 */
export function findLoraTargets(
  params: ReadonlyMap<string, Pick<HostTensor, 'shape'>>,
  modules: readonly string[],
): LoraTarget[] {
  const out: LoraTarget[] = [];
  const seen = new Set<string>();
  const available = new Set<string>();
  for (const [name, t] of params) {
    const m = /(?:^|\.)([^.]+)\.weight$/.exec(name);
    if (!m || t.shape.length !== 2 || isLoraParam(name)) continue;
    available.add(m[1]!);
    if (!modules.includes(m[1]!)) continue;
    seen.add(m[1]!);
    out.push({ weight: name, module: m[1]!, out: t.shape[0]!, in: t.shape[1]! });
  }
  const missing = modules.filter((m) => !seen.has(m));
  if (missing.length > 0) {
    throw new InputError(
      `LoRA target module${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} match no 2-D weight of the model; its modules: ${[...available].join(', ')}`,
      undefined,
      'targets',
    );
  }
  return out;
}

/** Stream ids for counterKey(seed, stream, ...): one per purpose, so draws never collide. */
const INIT_STREAM = 0x4c6f5241; // "LoRA"
const DROPOUT_STREAM = 0x44726f70; // "Drop"

/**
 * Fresh adapters: A [r, in] ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform_(a = sqrt(5))) and
 * B [out, r] = 0, float32, under loraNames(target.weight). Target i draws from its own stream
 * (seed, i), so its values do not depend on the other targets.
 */
export function initLora(targets: readonly LoraTarget[], r: number, seed: number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  targets.forEach((t, i) => {
    const { a, b } = loraNames(t.weight);
    const bound = 1 / Math.sqrt(t.in);
    const rng = new Rng(counterKey(seed, INIT_STREAM, i).k0);
    out.set(a, tensor(rng.uniformArray(r * t.in, -bound, bound), [r, t.in], 'float32'));
    out.set(b, tensor(new Float32Array(t.out * r), [t.out, r], 'float32'));
  });
  return out;
}

/** The adapters of a model: their config and their A / B tensors by name. */
export interface LoraAdapters {
  readonly config: LoraConfig;
  /** A [r, in] and B [out, r] of every target, float32, under loraNames(weight). */
  readonly params: ReadonlyMap<string, HostTensor>;
}

/**
 * y = x W^T + scale * dropout(x) A^T B^T for x [..., in], W [out, in] (any float dtype; cast to
 * float32 here), A [r, in], B [out, r]. `mask` (x's shape, or broadcastable to it) is the dropout:
 * kept entries hold 1 / (1 - p), dropped ones 0.
 */
export function loraLinear(x: Tensor, w: Tensor, a: Tensor, b: Tensor, scale: number, mask?: Tensor): Tensor {
  const r = a.shape[0]!;
  if (
    a.rank !== 2 ||
    b.rank !== 2 ||
    a.shape[1] !== w.shape[1] ||
    b.shape[0] !== w.shape[0] ||
    b.shape[1] !== r
  ) {
    throw new ShapeError(
      `loraLinear: W [${w.shape.join(', ')}] needs A [r, ${w.shape[1]}] and B [${w.shape[0]}, r], got A [${a.shape.join(', ')}] and B [${b.shape.join(', ')}]`,
    );
  }
  const base = ops.linear(x, ops.cast(w, 'float32'));
  const input = mask ? ops.mul(x, mask) : x;
  const update = ops.linear(ops.linear(input, ops.cast(a, 'float32')), ops.cast(b, 'float32'));
  return ops.add(base, ops.mul(update, scale));
}

/**
 * The linear layer `local` of a stage's parameters `p`: x W^T with W = p[local], plus the LoRA
 * update when the stage carries `${local}.lora_A` / `.lora_B` (and `.lora_dropout` while training).
 * This is how a model's stage functions apply adapters.
 */
export function stageLinear(
  x: Tensor,
  p: Readonly<Record<string, Tensor>>,
  local: string,
  weight: Tensor,
  scale: number | undefined,
): Tensor {
  const a = p[`${local}.lora_A`];
  const b = p[`${local}.lora_B`];
  if (!a || !b || scale === undefined) return ops.linear(x, weight);
  return loraLinear(x, weight, a, b, scale, p[`${local}.lora_dropout`]);
}

/** The inverse of the standard normal CDF (bisection on an erfc accurate to ~1.2e-7 relative). */
function normalQuantile(p: number): number {
  // Numerical Recipes' erfcc (Chebyshev fit, fractional error < 1.2e-7 everywhere).
  const erfc = (x: number) => {
    const z = Math.abs(x);
    const t = 1 / (1 + 0.5 * z);
    const r =
      t *
      Math.exp(
        -z * z -
          1.26551223 +
          t *
            (1.00002368 +
              t *
                (0.37409196 +
                  t *
                    (0.09678418 +
                      t *
                        (-0.18628806 +
                          t *
                            (0.27886807 +
                              t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
      );
    return x >= 0 ? r : 2 - r;
  };
  const cdf = (x: number) => 0.5 * erfc(-x / Math.SQRT2);
  let lo = -40;
  let hi = 40;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (cdf(mid) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** The key of the dropout masks of one micro-batch of one optimizer step. */
export function loraDropoutKey(seed: number, step: number, micro: number): CounterKey {
  if (!Number.isSafeInteger(micro) || micro < 0 || micro >= 2 ** 20)
    throw new RangeError(`loraDropoutKey: micro-batch index ${micro} outside [0, 2^20)`);
  return counterKey(seed ^ DROPOUT_STREAM, step * 2 ** 20 + micro, 0);
}

/**
 * An inverted-dropout mask (torch.nn.Dropout while training): each entry is 1 / (1 - p) with
 * probability 1 - p and 0 otherwise, float32 of the given shape. Entry i is kept when normal i of
 * stream (key, stream) is at least the p-quantile of N(0, 1), so the mask is a pure function of
 * (key, stream, shape, p).
 */
export function dropoutMask(
  key: CounterKey,
  stream: number,
  shape: readonly number[],
  p: number,
): HostTensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropoutMask: p must be in [0, 1), got ${p}`);
  const n = sizeOf(shape);
  const out = new Float32Array(n);
  if (p === 0) return tensor(out.fill(1), shape, 'float32');
  fillCounterNormals(counterKey(key.k0, key.k1, stream), 0, out);
  const threshold = normalQuantile(p);
  const keep = Math.fround(1 / (1 - p));
  for (let i = 0; i < n; i++) out[i] = out[i]! >= threshold ? keep : 0;
  return tensor(out, shape, 'float32');
}

/**
 * The dropout masks of one stage for one micro-batch: for every adapted weight of the stage (a
 * local name `L` with `L.lora_A` among its parameters), a mask `L.lora_dropout` of shape
 * [...batch, in]. Stream ids number the model's adapters in `order` (their A names), so every
 * adapter draws its own mask, and the same one whenever the stage is recomputed.
 */
export function loraDropoutInputs(
  stage: Stage,
  adapters: ReadonlyMap<string, Pick<HostTensor, 'shape'>>,
  order: ReadonlyMap<string, number>,
  key: CounterKey,
  batch: readonly number[],
  p: number,
): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  if (p === 0) return out;
  for (const [local, name] of Object.entries(stage.params)) {
    if (!local.endsWith('.lora_A')) continue;
    const a = adapters.get(name);
    const stream = order.get(name);
    if (!a || stream === undefined) throw new InputError(`LoRA: no adapter '${name}'`);
    out[`${local.slice(0, -'.lora_A'.length)}.lora_dropout`] = dropoutMask(
      key,
      stream,
      [...batch, a.shape[1]!],
      p,
    );
  }
  return out;
}

/**
 * W + sign * scale * B A in W's storage dtype (sign -1 unmerges): each element computed in float64,
 * rounded to float32, then to W's dtype when that is float16 / bfloat16. A and B may be any float
 * dtype.
 */
export function mergeLoraWeight(
  w: HostTensor,
  a: HostTensor,
  b: HostTensor,
  scale: number,
  sign: 1 | -1 = 1,
): HostTensor {
  const [out, inDim] = w.shape as [number, number];
  const r = a.shape[0]!;
  if (w.shape.length !== 2 || a.shape[1] !== inDim || b.shape[0] !== out || b.shape[1] !== r) {
    throw new ShapeError(
      `mergeLoraWeight: W [${w.shape.join(', ')}] needs A [r, ${inDim}] and B [${out}, r], got A [${a.shape.join(', ')}] and B [${b.shape.join(', ')}]`,
    );
  }
  const wf = toFloat32Data(w);
  const af = toFloat32Data(a);
  const bf = toFloat32Data(b);
  const merged = new Float32Array(out * inDim);
  const s = sign * scale;
  const row = new Float64Array(inDim);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const bok = bf[o * r + k]!;
      if (bok === 0) continue;
      const off = k * inDim;
      for (let i = 0; i < inDim; i++) row[i]! += bok * af[off + i]!;
    }
    const off = o * inDim;
    for (let i = 0; i < inDim; i++) merged[off + i] = wf[off + i]! + s * row[i]!;
  }
  const t = tensor(merged, w.shape, 'float32');
  return w.dtype === 'float32' ? t : castHost(t, w.dtype);
}

/**
 * The parameters with every adapter merged (sign 1) or unmerged (sign -1): each target weight is
 * replaced by a lazy tensor in its own dtype, computed when read (so writing a merged model holds
 * one merged matrix at a time); adapter matrices are left out. Other parameters are the same
 * tensors.
 */
export function mergeLora(
  params: ReadonlyMap<string, HostTensor>,
  adapters: LoraAdapters,
  sign: 1 | -1 = 1,
): Map<string, HostTensor> {
  const scale = loraScale(adapters.config);
  const out = new Map<string, HostTensor>();
  for (const [name, w] of params) {
    if (isLoraParam(name)) continue;
    const { a, b } = name.endsWith('.weight') ? loraNames(name) : { a: '', b: '' };
    const A = adapters.params.get(a);
    const B = adapters.params.get(b);
    out.set(
      name,
      A && B ? lazyTensor(w.shape, w.dtype, () => mergeLoraWeight(w, A, B, scale, sign).data) : w,
    );
  }
  return out;
}

/** mergeLora with sign -1: the base weights back from merged ones (up to rounding in their dtype). */
export function unmergeLora(
  params: ReadonlyMap<string, HostTensor>,
  adapters: LoraAdapters,
): Map<string, HostTensor> {
  return mergeLora(params, adapters, -1);
}
