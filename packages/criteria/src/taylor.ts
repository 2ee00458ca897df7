import { type Criterion, type CriterionContext, InputError, type ParamState, windowsAt } from '@moreau/core';

export type TaylorVariant = 'vectorize' | 'param_first' | 'param_second' | 'param_mix';

/** Bytes of float32 state for every group member. */
function memberBytes(ctx: CriterionContext): number {
  return ctx.params.filter((p) => p.member).reduce((s, p) => s + 4 * p.shape.reduce((a, d) => a * d, 1), 0);
}

/**
 * Fisher diagonal into `state`: mean over calibration windows of the squared per-window gradient,
 * one streamed backward pass per window.
 */
async function fisherDiagonal(
  ctx: CriterionContext,
  windows: readonly (readonly number[])[],
  state: ParamState,
): Promise<void> {
  for (let i = 0; i < windows.length; i++) {
    await ctx.gradients([windows[i]!], {
      consume: async (grads) => {
        for (const [name, g] of grads) {
          const f = await state.get(name, g.length);
          for (let j = 0; j < g.length; j++) f[j]! += (g[j]! * g[j]!) / windows.length;
          await state.set(name, f);
        }
      },
    });
    ctx.progress({ phase: 'taylor: per-sample gradients', done: i + 1, total: windows.length });
  }
}

/** LLM-Pruner's first-order Taylor importance and its second-order variants. */
export const taylor: Criterion = {
  name: 'taylor',
  description:
    "LLM-Pruner's Taylor importance |w * dL/dw| (vectorize | param_first | param_second | param_mix)",
  requires: { gradients: true, calibration: true },
  stochastic: () => false,
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
    const fisher =
      variant === 'param_second' || variant === 'param_mix' ? await ctx.state(memberBytes(ctx)) : undefined;
    try {
      if (fisher) await fisherDiagonal(ctx, windows, fisher);
      // Salience of one member from its weights, its gradient (first order) and its Fisher diagonal.
      const emit = async (name: string, g: Float32Array | undefined) => {
        const w = ctx.weight(name);
        const f = fisher ? await fisher.get(name, w.length) : undefined;
        for (let i = 0; i < w.length; i++) {
          const first = g ? w[i]! * g[i]! : 0;
          const second = f ? w[i]! * f[i]! * w[i]! : 0;
          w[i] = variant === 'param_second' ? second : variant === 'param_mix' ? first - 0.5 * second : first;
        }
        fisher?.delete(name);
        ctx.salience(name, w);
      };
      if (variant === 'param_second') {
        for (const p of ctx.params) if (p.member) await emit(p.name, undefined);
      } else {
        await ctx.gradients(windows, {
          consume: async (grads) => {
            for (const [name, g] of grads) await emit(name, g);
          },
        });
      }
      ctx.progress({ phase: 'taylor: gradient', done: 1, total: 1 });
    } finally {
      await fisher?.dispose();
    }
    return {};
  },
};
