/**
 * Where the time of one ORT graph goes: lowers the model's forward + backward (or the evaluation
 * forward) exactly as the backend does, runs it with onnxruntime's profiler on, and prints the
 * kernel time per operator type and the heaviest nodes.
 *
 *   npx tsx tools/bench/profile-ort.ts [--case synthetic-60m] [--graph fb|eval] [--runs 3]
 *     [--threads 2] [--spin] [--top 25]
 *
 * The profile JSON (chrome://tracing format) is left where onnxruntime wrote it (printed). For
 * the host side, run a bench child under `node --cpu-prof` instead, e.g.
 *   node --cpu-prof --import tsx tools/bench/ours.ts --case synthetic-60m --task moreau --ids IDS.json
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ops, type Tensor, tensor, trace, valueAndGrad } from '@moreau/core';
import { llamaLogits, llamaLoss } from '@moreau/models';
import * as ort from 'onnxruntime-node';
import { lowerGraph } from '../../packages/backend-ort/src/internal/lower.js';
import { encodeModel } from '../../packages/backend-ort/src/internal/proto.js';
import { toOrt } from '../../packages/backend-ort/src/internal/tensors.js';
import { loadCase } from './cases.js';

const { values } = parseArgs({
  options: {
    case: { type: 'string', default: 'synthetic-60m' },
    graph: { type: 'string', default: 'fb' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    spin: { type: 'boolean', default: false },
    top: { type: 'string', default: '25' },
  },
});

const { config, params } = await loadCase(values.case!);
const p = Object.fromEntries(params);
const B = values.graph === 'eval' ? 8 : 4;
const T = 128;
const V = config.vocabSize;
const ids = tensor(
  Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % V),
  [B, T],
  'int32',
);
const fb = (w: Record<string, Tensor>, x: Tensor) =>
  valueAndGrad((q: Record<string, Tensor>) => llamaLoss(q, x, config))(w);
// The evaluation graph of @moreau/eval's scoringModelFromLlama (NLL and greedy flags).
const evalFn = (w: Record<string, Tensor>, x: Tensor) => {
  const logits = ops.slice(llamaLogits(w, x, config), 1, 0, T - 1);
  const targets = ops.slice(x, 1, 1, T);
  const best = ops.max(logits, -1);
  const picked = ops.sum(ops.where(ops.oneHotMask(targets, V), logits, 0), -1);
  return { nll: ops.tokenNll(logits, targets), miss: ops.cast(ops.less(picked, best), 'float32') };
};
const traced = trace(values.graph === 'eval' ? evalFn : fb, [p, ids]);
const g = traced.graph;
const lowered = lowerGraph(g, {
  inputNames: g.inputs.map((_, i) => `in${i}`),
  outputNames: g.outputs.map((_, i) => `out${i}`),
});
const session = await ort.InferenceSession.create(encodeModel(lowered.model), {
  intraOpNumThreads: Number(values.threads),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  enableProfiling: true,
  profileFilePrefix: '/tmp/moreau-ort-profile',
  logSeverityLevel: 3,
  extra: { session: { intra_op: { allow_spinning: values.spin ? '1' : '0' } } },
});
const byPath = (path: string) => (path === '1' ? ids : p[path.slice(2)]!);
const feeds: Record<string, ort.Tensor> = {};
for (const { index, name } of lowered.feeds) {
  feeds[name] = toOrt(ort as never, byPath(traced.inputPaths[index]!) as never);
}
console.log(
  `${values.case} ${values.graph}: ${g.nodes.length} IR nodes, ${(lowered.model.graph as { node: unknown[] }).node.length} ONNX nodes`,
);
for (let i = 0; i < Number(values.runs); i++) {
  const t = performance.now();
  await session.run(feeds);
  console.log(`run ${i + 1}: ${(performance.now() - t).toFixed(0)} ms`);
}
const file = (session as unknown as { endProfiling(): string }).endProfiling?.();
// onnxruntime-node writes the file and returns nothing: find the newest one.
const { readdirSync, statSync } = await import('node:fs');
const path =
  file ??
  readdirSync('/tmp')
    .filter((f) => f.startsWith('moreau-ort-profile'))
    .map((f) => `/tmp/${f}`)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
interface Ev {
  cat?: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string; output_type_shape?: unknown };
}
const events = JSON.parse(readFileSync(path, 'utf8')) as Ev[];
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
const lastStart = runs[runs.length - 1]!.ts;
const byOp = new Map<string, [number, number]>();
const nodes: [number, string][] = [];
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < lastStart) continue;
  const op = e.args?.op_name ?? '?';
  const cur = byOp.get(op) ?? [0, 0];
  byOp.set(op, [cur[0] + e.dur, cur[1] + 1]);
  nodes.push([e.dur, `${e.name.replace('_kernel_time', '')} ${JSON.stringify(e.args?.output_type_shape)}`]);
}
const total = [...byOp.values()].reduce((s, [d]) => s + d, 0);
console.log(`\nlast run: ${(total / 1000).toFixed(0)} ms of kernel time (profile: ${path})`);
for (const [op, [d, n]] of [...byOp].sort((a, b) => b[1][0] - a[1][0])) {
  console.log(
    `${op.padEnd(22)} ${(d / 1000).toFixed(1).padStart(9)} ms ${((100 * d) / total).toFixed(1).padStart(5)}%  x${n}`,
  );
}
console.log('');
for (const [d, n] of nodes.sort((a, b) => b[0] - a[0]).slice(0, Number(values.top))) {
  console.log(`${(d / 1000).toFixed(1).padStart(8)} ms  ${n}`);
}
