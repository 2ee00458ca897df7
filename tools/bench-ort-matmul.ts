/**
 * Throughput of the onnxruntime backend on a matmul-heavy forward + backward graph, against a bare
 * single ONNX MatMul of the same size measured in the same run. Prints JSON.
 *
 *   npx tsx tools/bench-ort-matmul.ts [--batch 256] [--dim 512] [--layers 4] [--seconds 2] [--threads N]
 *
 * The graph: x [batch, dim] through `layers` matmuls with weights [dim, dim] (each followed by
 * tanh), loss = mean of squares; valueAndGrad w.r.t. every weight. FLOPs counted: 2*batch*dim^2
 * per matmul, three matmuls per layer (forward, input gradient, weight gradient); the elementwise
 * work is not counted, so the fraction of the bare MatMul's rate is what the rest costs.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { createOrtBackend } from '@moreau/backend-ort';
import { type Executable, type HostTensor, ops, type Tensor, trace, valueAndGrad } from '@moreau/core';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '256' },
    dim: { type: 'string', default: '512' },
    layers: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '2' },
    threads: { type: 'string' },
  },
});
const batch = Number(values.batch);
const dim = Number(values.dim);
const layers = Number(values.layers);
const seconds = Number(values.seconds);
const threads = values.threads ? Number(values.threads) : os.availableParallelism();

function randomTensor(shape: number[], scale: number, seed: number): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return { dtype: 'float32', shape, data };
}

/** Runs exe repeatedly for about `seconds` (after warm-up); returns ms per run. */
async function timeRuns(exe: Executable, inputs: HostTensor[]): Promise<{ msPerRun: number; runs: number }> {
  for (let i = 0; i < 3; i++) await exe.run(inputs);
  let runs = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000 || runs < 5) {
    await exe.run(inputs);
    runs++;
    elapsed = performance.now() - start;
  }
  return { msPerRun: elapsed / runs, runs };
}

const backend = await createOrtBackend({ intraOpNumThreads: threads });
const x = randomTensor([batch, dim], 1, 1);
const weights = Array.from({ length: layers }, (_, l) =>
  randomTensor([dim, dim], 1 / Math.sqrt(dim), 100 + l),
);

const loss = (ws: Tensor[], input: Tensor) => {
  let h = input;
  for (const w of ws) h = ops.tanh(ops.matmul(h, w));
  return ops.mean(ops.square(h));
};
const fb = trace((ws: Tensor[], input: Tensor) => valueAndGrad(loss)(ws, input), [weights, x]);
const fbExe = await backend.compile(fb.graph);
const fbTime = await timeRuns(fbExe, [...weights, x]);
const fbFlops = 3 * layers * 2 * batch * dim * dim;

const bare = trace((a: Tensor, w: Tensor) => ops.matmul(a, w), [x, weights[0]!]);
const bareExe = await backend.compile(bare.graph);
const bareTime = await timeRuns(bareExe, [x, weights[0]!]);
const bareFlops = 2 * batch * dim * dim;

const gflops = (flops: number, ms: number) => flops / (ms * 1e6);
const fbRate = gflops(fbFlops, fbTime.msPerRun);
const bareRate = gflops(bareFlops, bareTime.msPerRun);
console.log(
  JSON.stringify(
    {
      bench: 'ort-matmul',
      backend: backend.name,
      device: backend.device,
      intraOpNumThreads: threads,
      cpus: os.availableParallelism(),
      shapes: { batch, dim, layers },
      forwardBackward: {
        nodes: fb.graph.nodes.length,
        gflopPerRun: fbFlops / 1e9,
        msPerRun: Number(fbTime.msPerRun.toFixed(3)),
        runs: fbTime.runs,
        gflops: Number(fbRate.toFixed(1)),
      },
      bareMatmul: {
        gflopPerRun: bareFlops / 1e9,
        msPerRun: Number(bareTime.msPerRun.toFixed(3)),
        runs: bareTime.runs,
        gflops: Number(bareRate.toFixed(1)),
      },
      fractionOfBareMatmul: Number((fbRate / bareRate).toFixed(3)),
    },
    null,
    2,
  ),
);
fbExe.dispose();
bareExe.dispose();
await backend.dispose();
