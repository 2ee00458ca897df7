import { type Criterion, type CriterionContext, InputError, windowsAt } from '@moreau/core';

export type TaylorVariant = 'vectorize' | 'param_first' | 'param_second' | 'param_mix';

/**
 * Fisher diagonal: mean over calibration windows of the squared per-window gradient, one
 * backward pass per window.
 */
async function fisherDiagonal(
  ctx: CriterionContext,
  windows: readonly (readonly number[])[],
): Promise<Map<string, Float32Array>> {
  const fisher = new Map<string, Float32Array>();
  for (const [name, w] of ctx.weights) fisher.set(name, new Float32Array(w.length));
  for (let i = 0; i < windows.length; i++) {
    const { grads } = await ctx.gradient([windows[i]!]);
    for (const [name, g] of grads) {
      const f = fisher.get(name)!;
      for (let j = 0; j < g.length; j++) f[j]! += (g[j]! * g[j]!) / windows.length;
    }
    ctx.progress({ phase: 'taylor: per-sample gradients', done: i + 1, total: windows.length });
  }
  return fisher;
}

/** LLM-Pruner's first-order Taylor importance and its second-order variants. */
export const taylor: Criterion = {
  name: 'taylor',
  description:
    "LLM-Pruner's Taylor importance |w * dL/dw| (vectorize | param_first | param_second | param_mix)",
  requires: { gradients: true, calibration: true },
  options: {
    variant: {
      type: 'enum',
      default: 'param_first',
      values: ['vectorize', 'param_first', 'param_second', 'param_mix'],
      description:
        'vectorize: |sum w*g| per slice; param_first: sum |w*g|; param_second: sum |w*F*w|; param_mix: sum |w*g - w*F*w/2|',
    },
  },
  channelMode: (o) => (o.variant === 'vectorize' ? 'sum-then-abs' : 'abs-then-sum'),
  defaultReduction: 'sum',
  async score(ctx, options) {
    const variant = options.variant as TaylorVariant;
    if (!ctx.calibration) throw new InputError('taylor needs calibration windows', undefined, 'calibration');
    const windows = windowsAt(ctx.calibration, 0);
    const needFirst = variant !== 'param_second';
    const needSecond = variant === 'param_second' || variant === 'param_mix';
    const grads = needFirst ? (await ctx.gradient(windows)).grads : undefined;
    ctx.progress({ phase: 'taylor: gradient', done: 1, total: 1 });
    const fisher = needSecond ? await fisherDiagonal(ctx, windows) : undefined;
    const salience = new Map<string, Float32Array>();
    for (const [name, w] of ctx.weights) {
      const g = grads?.get(name);
      const f = fisher?.get(name);
      const s = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) {
        const first = g ? w[i]! * g[i]! : 0;
        const second = f ? w[i]! * f[i]! * w[i]! : 0;
        s[i] = variant === 'param_second' ? second : variant === 'param_mix' ? first - 0.5 * second : first;
      }
      salience.set(name, s);
    }
    return { salience };
  },
};
