/**
 * Matmul throughput of the tfjs backend per engine, through compile/run (device-resident
 * operands, so the number is the engine's, plus one download of the result).
 *   npx tsx packages/backend-tfjs/bench/matmul.ts [n=512] [engines=wasm,cpu]
 */
import { ops, type Tensor, tensor, trace } from '@moreau/core';
import { createTfjsBackend, type TfjsEngine } from '../src/index.js';

const n = Number(process.argv[2] ?? 512);
const engines = (process.argv[3] ?? 'wasm,cpu').split(',') as TfjsEngine[];
const rand = (len: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(i) * 0.5);

for (const engine of engines) {
  const be = await createTfjsBackend({ engine });
  const a = tensor(rand(n * n), [n, n]);
  const b = tensor(rand(n * n), [n, n]);
  const { graph } = trace((x: Tensor, y: Tensor) => ops.matmul(x, y), [a, b]);
  const exe = await be.compile(graph);
  const [da, db] = [await be.upload(a), await be.upload(b)];
  await exe.run([da, db]); // warm-up
  let reps = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 2000 || reps < 3) {
    await exe.run([da, db]);
    reps++;
  }
  const ms = (performance.now() - t0) / reps;
  const gflops = (2 * n ** 3) / (ms * 1e6);
  console.log(
    `${engine} (${be.device}): ${n}x${n}x${n} matmul ${ms.toFixed(2)} ms/run, ${gflops.toFixed(1)} GFLOP/s`,
  );
  exe.dispose();
  await be.dispose();
}
