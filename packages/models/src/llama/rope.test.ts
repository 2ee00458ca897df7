import { describe, expect, it } from 'vitest';
import { ropeInvFreq, ropeTables } from './rope.js';

describe('RoPE', () => {
  it('default inv_freq is 1 / theta^(2i/d)', () => {
    const inv = ropeInvFreq({ headDim: 8, ropeTheta: 10000 });
    expect(Array.from(inv)).toEqual([1, 0.1, 0.01, 0.001].map(Math.fround));
  });

  it('llama3 rope_scaling matches hand-computed values (Llama-3.1-8B: d 128, theta 5e5, factor 8, 1 / 4, 8192)', () => {
    const inv = ropeInvFreq({
      headDim: 128,
      ropeTheta: 500000,
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
    });
    expect(inv.length).toBe(64);
    // Hand values (float64): wavelen = 2 pi / f. wavelen < 2048: f unchanged (i <= 28);
    // wavelen > 8192: f / 8 (i >= 35); between: s = (8192 / wavelen - 1) / 3, (1 - s) f / 8 + s f.
    const expected: [number, number][] = [
      [0, 1],
      [1, 0.8146172338565447], // 500000^(-2/128), unchanged
      [28, 0.003211445994752591], // wavelen 1956.5: unchanged
      [29, 0.002166570763503359], // wavelen 2401.7: smoothed
      [30, 0.0013718935677611381], // wavelen 2948.3: smoothed
      [34, 0.0001785078127679964], // wavelen 6695.1: smoothed
      [35, 9.556212353964683e-5], // wavelen 8218.7: divided by 8
      [40, 3.428102195952591e-5],
      [63, 3.068925988914511e-7],
    ];
    for (const [i, v] of expected) expect(Math.abs(inv[i]! - v) / v, `inv_freq[${i}]`).toBeLessThan(1e-6);
    // Smoothed values lie between the unscaled and the fully scaled frequency.
    const unscaled = 500000 ** (-60 / 128);
    expect(inv[30]!).toBeLessThan(unscaled);
    expect(inv[30]!).toBeGreaterThan(unscaled / 8);
  });

  it('tables are cat(freqs, freqs) of cos / sin at each position', () => {
    const { cos, sin } = ropeTables({ headDim: 4, ropeTheta: 100 }, 3);
    // inv_freq = [1, 0.1]
    for (let t = 0; t < 3; t++) {
      for (const [i, f] of [
        [0, 1],
        [1, 0.1],
      ] as const) {
        expect(cos[t * 4 + i]).toBeCloseTo(Math.cos(t * f), 6);
        expect(cos[t * 4 + 2 + i]).toBeCloseTo(Math.cos(t * f), 6);
        expect(sin[t * 4 + i]).toBeCloseTo(Math.sin(t * f), 6);
        expect(sin[t * 4 + 2 + i]).toBeCloseTo(Math.sin(t * f), 6);
      }
    }
  });
});
