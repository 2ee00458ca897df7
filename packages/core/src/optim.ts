/**
 * Host-side optimisation for training with valueAndGrad: AdamW, two learning-rate schedules
 * (linear warmup then cosine decay; linear warmup then linear decay, Hugging Face Trainer's
 * default) and global-norm gradient clipping. Parameters, gradients and
 * optimizer state are float32 arrays by parameter name; updates happen in place, in float64
 * arithmetic per element, in the parameters' insertion order (deterministic).
 */
import { InputError } from './errors.js';

export type ParamArrays = ReadonlyMap<string, Float32Array>;

export interface AdamWOptions {
  /** Learning rate when step() is not given one. Default 1e-3. */
  readonly lr?: number;
  /** Default 0.9. */
  readonly beta1?: number;
  /** Default 0.999. */
  readonly beta2?: number;
  /** Added to sqrt of the bias-corrected second moment. Default 1e-8. */
  readonly eps?: number;
  /** Decoupled weight decay (multiplied by the learning rate, as in PyTorch). Default 0.01. */
  readonly weightDecay?: number;
  /**
   * Parameter shapes by name. With them, tensors of rank <= 1 (norm weights, biases) get no weight
   * decay unless `decay1D` is true.
   */
  readonly shapes?: ReadonlyMap<string, readonly number[]>;
  /** Decay rank <= 1 tensors too (only meaningful with `shapes`). Default false. */
  readonly decay1D?: boolean;
  /** Explicit rule for which parameters are decayed; overrides `shapes` / `decay1D`. */
  readonly decayFilter?: (name: string) => boolean;
}

function checkNumber(what: string, v: number, lo: number, hi: number, hiOpen = false): number {
  if (!Number.isFinite(v) || v < lo || (hiOpen ? v >= hi : v > hi)) {
    throw new InputError(`${what} must be in [${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
  }
  return v;
}

/**
 * AdamW (Loshchilov & Hutter): Adam with bias correction and decoupled weight decay,
 * p <- p - lr * wd * p - lr * m_hat / (sqrt(v_hat) + eps). Matches torch.optim.AdamW.
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  lr: number;
  private t = 0;
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private readonly decays: (name: string) => boolean;

  constructor(options: AdamWOptions = {}) {
    this.lr = checkNumber('AdamW: lr', options.lr ?? 1e-3, 0, Number.MAX_VALUE);
    this.beta1 = checkNumber('AdamW: beta1', options.beta1 ?? 0.9, 0, 1, true);
    this.beta2 = checkNumber('AdamW: beta2', options.beta2 ?? 0.999, 0, 1, true);
    this.eps = checkNumber('AdamW: eps', options.eps ?? 1e-8, 0, Number.MAX_VALUE);
    this.weightDecay = checkNumber('AdamW: weightDecay', options.weightDecay ?? 0.01, 0, Number.MAX_VALUE);
    const { shapes, decayFilter } = options;
    const decay1D = options.decay1D ?? false;
    this.decays =
      decayFilter ??
      ((name: string) => {
        const s = shapes?.get(name);
        return s === undefined || decay1D || s.length > 1;
      });
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.t;
  }

  /** Whether `name` receives weight decay. */
  isDecayed(name: string): boolean {
    return this.weightDecay > 0 && this.decays(name);
  }

  /**
   * Everything a later step depends on: the step count and each parameter's moments (the
   * optimizer's own arrays, not copies). With `loadState` it makes a resumed run exact.
   */
  state(): AdamWState {
    const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
    for (const [name, m] of this.m) moments.set(name, { m, v: this.v.get(name)! });
    return { step: this.t, moments };
  }

  /** Restores a state saved by `state()` (the arrays are copied). */
  loadState(state: AdamWState): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new InputError(`AdamW.loadState: step must be a non-negative integer, got ${state.step}`);
    }
    this.m.clear();
    this.v.clear();
    for (const [name, { m, v }] of state.moments) {
      if (m.length !== v.length) {
        throw new InputError(
          `AdamW.loadState: '${name}' has moments of ${m.length} and ${v.length} elements`,
        );
      }
      this.m.set(name, Float32Array.from(m));
      this.v.set(name, Float32Array.from(v));
    }
    this.t = state.step;
  }

  /** First and second moment of a parameter (undefined before its first step). */
  moments(name: string): { m: Float32Array; v: Float32Array } | undefined {
    const m = this.m.get(name);
    const v = this.v.get(name);
    return m && v ? { m, v } : undefined;
  }

  /**
   * One update of every parameter that has a gradient, in place. A parameter without a gradient
   * (or with a null one) is left untouched; a gradient without a parameter is an error.
   */
  step(params: ParamArrays, grads: ReadonlyMap<string, Float32Array | null | undefined>, lr = this.lr): void {
    checkNumber('AdamW.step: lr', lr, 0, Number.MAX_VALUE);
    for (const name of grads.keys()) {
      if (!params.has(name)) throw new InputError(`AdamW.step: gradient '${name}' has no parameter`);
    }
    this.t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const bc1 = 1 - b1 ** this.t;
    const bc2 = 1 - b2 ** this.t;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      if (g.length !== p.length) {
        throw new InputError(
          `AdamW.step: gradient '${name}' has ${g.length} elements, the parameter ${p.length}`,
        );
      }
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (!m || !v) {
        m = new Float32Array(p.length);
        v = new Float32Array(p.length);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      const shrink = this.isDecayed(name) ? 1 - lr * this.weightDecay : 1;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i]! * shrink - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
      }
    }
  }
}

/** What AdamW.state() returns and AdamW.loadState() takes. */
export interface AdamWState {
  /** Steps taken. */
  readonly step: number;
  /** First (m) and second (v) moment per parameter that has been stepped. */
  readonly moments: ReadonlyMap<string, { readonly m: Float32Array; readonly v: Float32Array }>;
}

export interface WarmupCosineOptions {
  /** Learning rate at the end of warmup. */
  readonly peakLr: number;
  /** Steps of linear warmup: step s < warmupSteps gets peakLr * (s + 1) / warmupSteps. */
  readonly warmupSteps: number;
  /** Total steps; the cosine reaches minLr at step totalSteps - 1 and stays there. */
  readonly totalSteps: number;
  /** Default 0. */
  readonly minLr?: number;
}

/**
 * Linear warmup then cosine decay, as a function of the 0-based step:
 * lr(s) = peak * (s + 1) / warmup for s < warmup, then
 * minLr + (peak - minLr) * (1 + cos(pi * p)) / 2 with p = (s - warmup) / (total - 1 - warmup), clamped to [0, 1].
 */
export function warmupCosine(options: WarmupCosineOptions): (step: number) => number {
  const { peakLr, warmupSteps, totalSteps } = options;
  const minLr = options.minLr ?? 0;
  checkNumber('warmupCosine: peakLr', peakLr, 0, Number.MAX_VALUE);
  checkNumber('warmupCosine: minLr', minLr, 0, peakLr);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) {
    throw new InputError(`warmupCosine: warmupSteps must be a non-negative integer, got ${warmupSteps}`);
  }
  if (!Number.isInteger(totalSteps) || totalSteps <= warmupSteps) {
    throw new InputError(
      `warmupCosine: totalSteps must be an integer above warmupSteps (${warmupSteps}), got ${totalSteps}`,
    );
  }
  const decaySteps = Math.max(1, totalSteps - 1 - warmupSteps);
  return (step: number) => {
    if (step < warmupSteps) return (peakLr * (step + 1)) / warmupSteps;
    const p = Math.min(1, Math.max(0, (step - warmupSteps) / decaySteps));
    return minLr + ((peakLr - minLr) * (1 + Math.cos(Math.PI * p))) / 2;
  };
}

export interface WarmupLinearOptions {
  /** Learning rate at the end of warmup. */
  readonly peakLr: number;
  /** Steps of linear warmup from 0. */
  readonly warmupSteps: number;
  /** Total steps: the rate reaches 0 at step totalSteps. */
  readonly totalSteps: number;
}

/**
 * Linear warmup from 0, then linear decay to 0 — Hugging Face's get_linear_schedule_with_warmup,
 * the Trainer's default, as the Trainer steps it (the optimizer step s, 0-based, uses the factor
 * of scheduler step s, so the very first update has rate 0):
 * lr(s) = peak * s / warmup for s < warmup, then peak * max(0, (total - s) / max(1, total - warmup)).
 */
export function warmupLinear(options: WarmupLinearOptions): (step: number) => number {
  const { peakLr, warmupSteps, totalSteps } = options;
  checkNumber('warmupLinear: peakLr', peakLr, 0, Number.MAX_VALUE);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) {
    throw new InputError(`warmupLinear: warmupSteps must be a non-negative integer, got ${warmupSteps}`);
  }
  if (!Number.isInteger(totalSteps) || totalSteps < 1) {
    throw new InputError(`warmupLinear: totalSteps must be a positive integer, got ${totalSteps}`);
  }
  return (step: number) => {
    if (step < warmupSteps) return (peakLr * step) / Math.max(1, warmupSteps);
    return peakLr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
  };
}

/** sqrt of the sum of squares of every element of every array (null entries skipped). */
export function globalNorm(arrays: Iterable<Float32Array | null | undefined>): number {
  let s = 0;
  for (const a of arrays) {
    if (!a) continue;
    for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  }
  return Math.sqrt(s);
}

/**
 * Global-norm clipping, in place (torch.nn.utils.clip_grad_norm_): when the global norm exceeds
 * maxNorm, every gradient is scaled by maxNorm / (norm + 1e-6). Returns the norm before clipping.
 */
export function clipGradNorm(
  grads: ReadonlyMap<string, Float32Array | null | undefined>,
  maxNorm: number,
): number {
  checkNumber('clipGradNorm: maxNorm', maxNorm, 0, Number.MAX_VALUE);
  const norm = globalNorm(grads.values());
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const g of grads.values()) {
      if (!g) continue;
      for (let i = 0; i < g.length; i++) g[i] = g[i]! * coef;
    }
  }
  return norm;
}
