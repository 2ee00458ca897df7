/**
 * Throughput of the counter-based normal generator (packages/core/src/counter-rng.ts): the
 * WebAssembly SIMD kernel, the bit-identical JavaScript reference, and the fused Moreau
 * evaluation point perturbInto (w + std|w|z + delta), with the previous algorithm (double-precision
 * Box-Muller over Math.log / cos / sin) as a baseline, all in one run so the ratios are fair.
 * Prints a table and JSON; the load average is printed because other processes share the cores.
 *
 *   npx tsx tools/bench-noise.ts [--n 1048576] [--seconds 1.5]
 *
 * Each figure is the best (the least disturbed by other processes) and the median of many timed
 * repetitions within the time budget, in millions of normals (or perturbed elements) per second,
 * single thread; the ratios use the best.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { counterKey, fillCounterNormals, perturbInto } from '../packages/core/src/counter-rng.js';
import { expandKey, fillRef, perturbRef } from '../packages/core/src/internal/counter-noise-ref.js';
import { noiseKernel } from '../packages/core/src/internal/counter-noise-wasm.js';

const { values } = parseArgs({
  options: { n: { type: 'string', default: String(1 << 20) }, seconds: { type: 'string', default: '1.5' } },
});
const n = Number(values.n);
const seconds = Number(values.seconds);
if (!noiseKernel()) throw new Error('this engine has no WebAssembly SIMD: nothing to compare');

/** The previous implementation (before the float32 specification), kept here as the baseline. */
function legacyFill(k0: number, k1: number, start: number, out: Float32Array): void {
  const fmix = (h: number) => {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  const TWO32 = 4294967296;
  for (let i = 0; i < out.length; ) {
    const e = start + i;
    const j = Math.floor(e / 2);
    const a = fmix(fmix((j >>> 0) ^ k0) ^ (Math.floor(j / TWO32) >>> 0) ^ k1);
    const b = fmix(a ^ k1 ^ 0x6a09e667);
    const r = Math.sqrt(-2 * Math.log((a + 1) / TWO32));
    const angle = (2 * Math.PI * b) / TWO32;
    if (e % 2 === 0) {
      out[i++] = r * Math.cos(angle);
      if (i < out.length) out[i++] = r * Math.sin(angle);
    } else out[i++] = r * Math.sin(angle);
  }
}

/** [best, median] rate in M elements / s over repetitions for `seconds`. */
function best(fn: () => void, elements: number): [number, number] {
  fn();
  const ms: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (ms.length < 5 || performance.now() < until) {
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return [elements / ms[0]! / 1e3, elements / ms[ms.length >> 1]! / 1e3];
}

const key = counterKey(2024, 3, 17);
const k4 = expandKey(key.k0, key.k1);
const out32 = new Float32Array(n);
const out64 = new Float64Array(n);
const w = new Float32Array(n).map((_, i) => Math.sin(i) * 0.02);
const delta = new Float32Array(n).map((_, i) => Math.cos(i) * 1e-4);
const z = new Float32Array(n);
const small = Math.min(n, 1 << 18); // the slow JavaScript paths on fewer elements
const load0 = os.loadavg();

const rows: [string, [number, number]][] = [
  [
    'previous algorithm (double Box-Muller, JS)',
    best(() => legacyFill(key.k0, key.k1, 1, out32.subarray(0, small)), small),
  ],
  ['JS reference (float32 spec)', best(() => fillRef(k4, 1, out32.subarray(0, small)), small)],
  ['WASM kernel -> Float32Array', best(() => fillCounterNormals(key, 1, out32), n)],
  ['WASM kernel -> Float64Array', best(() => fillCounterNormals(key, 1, out64), n)],
  ['fused perturbInto (WASM), with delta', best(() => perturbInto(out32, w, delta, 0.05, key, 1), n)],
  ['fused perturbInto (WASM), no delta', best(() => perturbInto(out32, w, undefined, 0.05, key, 1), n)],
  [
    'unfused: WASM fill + JS float32 loop',
    best(() => {
      fillCounterNormals(key, 1, z);
      const s = Math.fround(0.05);
      for (let i = 0; i < n; i++)
        out32[i] = Math.fround(
          Math.fround(w[i]! + Math.fround(Math.fround(s * Math.abs(w[i]!)) * z[i]!)) + delta[i]!,
        );
    }, n),
  ],
  [
    'JS reference perturb, with delta',
    best(
      () => perturbRef(out32.subarray(0, small), w.subarray(0, small), delta.subarray(0, small), 0.05, k4, 1),
      small,
    ),
  ],
];
const load1 = os.loadavg();

const ref = rows[1]![1][0];
const wasm = rows[2]![1][0];
const cpu = os.cpus();
console.log(`counter normals, ${n} elements (JS paths ${small}), ${cpu.length} cores: ${cpu[0]?.model}`);
const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
console.log(`load average before ${fmt(load0)}, after ${fmt(load1)}`);
console.log(`${''.padEnd(44)} ${'best'.padStart(8)}      ${'median'.padStart(8)}`);
for (const [name, [top, median]] of rows)
  console.log(
    `${name.padEnd(44)} ${top.toFixed(1).padStart(8)} M/s  ${median.toFixed(1).padStart(8)} M/s  x${(top / ref).toFixed(2).padStart(6)} vs JS ref  x${(top / wasm).toFixed(2).padStart(5)} vs WASM`,
  );
console.log(
  JSON.stringify({
    n,
    load: { before: load0, after: load1 },
    mPerS: Object.fromEntries(
      rows.map(([name, [top, median]]) => [
        name,
        { best: Number(top.toFixed(1)), median: Number(median.toFixed(1)) },
      ]),
    ),
  }),
);
