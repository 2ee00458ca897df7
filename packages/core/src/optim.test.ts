import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, globalNorm, warmupCosine, warmupLinear } from './optim.js';

const GRADS: number[][] = [
  [0.5, -1.0],
  [0.25, 3.0],
  [-0.75, 0.0],
];

function run(opt: AdamW, name: string, start: number[]): number[][] {
  const p = Float32Array.from(start);
  const params = new Map([[name, p]]);
  return GRADS.map((g) => {
    opt.step(params, new Map([[name, Float32Array.from(g)]]));
    return Array.from(p);
  });
}

describe('AdamW', () => {
  it('matches hand-computed steps (bias correction, decoupled decay)', () => {
    // lr 0.1, betas (0.9, 0.999), wd 0.1.
    // Step 1: m_hat = g, v_hat = g^2, so p <- p * (1 - 0.01) - 0.1 * sign(g):
    //   1 -> 0.99 - 0.1 = 0.89;  -2 -> -1.98 + 0.1 = -1.88.
    // Step 2, first element, g = 0.25: m = 0.9 * 0.05 + 0.1 * 0.25 = 0.07,
    //   v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225, m_hat = 0.07 / 0.19 = 0.3684211,
    //   v_hat = 0.00031225 / 0.001999 = 0.1562031, p = 0.89 * 0.99 - 0.1 * 0.3684211 / 0.3952254
    //   = 0.8811 - 0.0932180 = 0.7878820.
    // Step 3 and the second element: the same formulas (float64 reference).
    const out = run(new AdamW({ lr: 0.1, weightDecay: 0.1 }), 'w', [1, -2]);
    const expected = [
      [0.89, -1.88],
      [0.78788204, -1.910618984],
      [0.7882009, -1.929713811],
    ];
    out.forEach((row, t) => {
      row.forEach((v, i) => {
        expect(v).toBeCloseTo(expected[t]![i]!, 6);
      });
    });
  });

  it('skips weight decay for 1-D tensors when given shapes', () => {
    const opt = new AdamW({ lr: 0.1, weightDecay: 0.1, shapes: new Map([['norm', [2]]]) });
    expect(opt.isDecayed('norm')).toBe(false);
    expect(opt.isDecayed('unknown')).toBe(true);
    const out = run(opt, 'norm', [1, 0.5]);
    const expected = [
      [0.9, 0.6],
      [0.80678204, 0.550581016],
      [0.81497972, 0.512379999],
    ];
    out.forEach((row, t) => {
      row.forEach((v, i) => {
        expect(v).toBeCloseTo(expected[t]![i]!, 6);
      });
    });
    const all = new AdamW({ weightDecay: 0.1, shapes: new Map([['norm', [2]]]), decay1D: true });
    expect(all.isDecayed('norm')).toBe(true);
    const custom = new AdamW({ weightDecay: 0.1, decayFilter: (n) => n.endsWith('proj.weight') });
    expect(custom.isDecayed('q_proj.weight')).toBe(true);
    expect(custom.isDecayed('norm.weight')).toBe(false);
  });

  it('leaves parameters without gradients alone and validates input', () => {
    const opt = new AdamW({ lr: 0.1 });
    const a = Float32Array.from([1]);
    const b = Float32Array.from([2]);
    opt.step(
      new Map([
        ['a', a],
        ['b', b],
      ]),
      new Map([['a', Float32Array.from([1])]]),
    );
    expect(b[0]).toBe(2);
    expect(a[0]).not.toBe(1);
    expect(opt.stepCount).toBe(1);
    expect(opt.moments('a')?.m[0]).toBeCloseTo(0.1, 7);
    expect(() => opt.step(new Map([['a', a]]), new Map([['c', a]]))).toThrow(/'c' has no parameter/);
    expect(() => opt.step(new Map([['a', a]]), new Map([['a', new Float32Array(2)]]))).toThrow(/elements/);
    expect(() => new AdamW({ beta1: 1 })).toThrow(/beta1/);
  });
});

describe('warmupCosine', () => {
  it('warms up linearly then decays along a cosine to minLr', () => {
    const lr = warmupCosine({ peakLr: 1, warmupSteps: 2, totalSteps: 6 });
    // decay over steps 2..5: p = (s - 2) / 3
    expect([0, 1, 2, 3, 4, 5, 9].map(lr).map((v) => Number(v.toFixed(10)))).toEqual([
      0.5, 1, 1, 0.75, 0.25, 0, 0,
    ]);
    const withMin = warmupCosine({ peakLr: 1, warmupSteps: 2, totalSteps: 6, minLr: 0.1 });
    expect(withMin(3)).toBeCloseTo(0.1 + 0.9 * 0.75, 12);
    expect(withMin(5)).toBeCloseTo(0.1, 12);
    expect(warmupCosine({ peakLr: 2, warmupSteps: 0, totalSteps: 3 })(0)).toBe(2);
    expect(() => warmupCosine({ peakLr: 1, warmupSteps: 5, totalSteps: 5 })).toThrow(/totalSteps/);
  });
});

describe('clipGradNorm', () => {
  it('scales every gradient by maxNorm / norm when the global norm is above it', () => {
    const grads = new Map<string, Float32Array | null>([
      ['a', Float32Array.from([3])],
      ['b', Float32Array.from([0, 4])],
      ['c', null],
    ]);
    expect(globalNorm(grads.values())).toBe(5);
    expect(clipGradNorm(grads, 1)).toBe(5);
    expect(grads.get('a')![0]).toBeCloseTo(0.6, 6);
    expect(grads.get('b')![1]).toBeCloseTo(0.8, 6);
    expect(globalNorm(grads.values())).toBeCloseTo(1, 6);
    // Below the threshold: untouched.
    expect(clipGradNorm(grads, 10)).toBeCloseTo(1, 6);
    expect(grads.get('a')![0]).toBeCloseTo(0.6, 6);
  });
});

describe('warmupLinear (Hugging Face get_linear_schedule_with_warmup as the Trainer steps it)', () => {
  it('rises from 0 over the warmup, then falls linearly to 0 at the last step', () => {
    const lr = warmupLinear({ peakLr: 1e-4, warmupSteps: 100, totalSteps: 200 });
    expect(lr(0)).toBe(0); // the Trainer's first update runs at factor 0
    expect(lr(50)).toBeCloseTo(5e-5, 15);
    expect(lr(100)).toBeCloseTo(1e-4, 15);
    expect(lr(150)).toBeCloseTo(5e-5, 15);
    expect(lr(199)).toBeCloseTo(1e-6, 15);
    expect(lr(200)).toBe(0);
    expect(lr(250)).toBe(0);
  });

  it('without warmup starts at the peak; with warmup longer than the run never decays', () => {
    expect(warmupLinear({ peakLr: 2, warmupSteps: 0, totalSteps: 4 })(0)).toBe(2);
    const short = warmupLinear({ peakLr: 1, warmupSteps: 100, totalSteps: 10 });
    expect(short(9)).toBeCloseTo(0.09, 12);
    expect(() => warmupLinear({ peakLr: 1, warmupSteps: 1, totalSteps: 0 })).toThrow(/totalSteps/);
  });
});

describe('AdamW state', () => {
  it('a restored optimizer continues exactly like the original', () => {
    const a = new AdamW({ lr: 0.1, weightDecay: 0 });
    const pa = new Map([['w', Float32Array.from([1, -2])]]);
    a.step(pa, new Map([['w', Float32Array.from([0.5, -1])]]));
    const saved = a.state();
    const b = new AdamW({ lr: 0.1, weightDecay: 0 });
    b.loadState({
      step: saved.step,
      moments: new Map([...saved.moments].map(([k, v]) => [k, { m: v.m.slice(), v: v.v.slice() }])),
    });
    const pb = new Map([['w', pa.get('w')!.slice()]]);
    for (const g of [
      [0.25, 3],
      [-0.75, 0],
    ]) {
      a.step(pa, new Map([['w', Float32Array.from(g)]]));
      b.step(pb, new Map([['w', Float32Array.from(g)]]));
    }
    expect(Array.from(pb.get('w')!)).toEqual(Array.from(pa.get('w')!));
    expect(b.stepCount).toBe(3);
  });
});
