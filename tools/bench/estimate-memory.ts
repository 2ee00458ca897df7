/**
 * The executor's memory estimates for a model (trace only, no weights read):
 *   npx tsx tools/bench/estimate-memory.ts DIR [rows=2] [length=128]
 */
import { callBytes, estimateForward, gib, streamedForwardBytes } from '@moreau/core';
import { loadModel } from '@moreau/models';

const dir = process.argv[2]!;
const rows = Number(process.argv[3] ?? 2);
const length = Number(process.argv[4] ?? 128);
const { model } = await loadModel(dir, { lazy: true });
const staged = (model as any).stages();
const e = estimateForward(model as any, staged, length);
const L = staged.layers.length;
const grad = (L * e.perWindow * rows) / 2 + 4 * e.stageWeights + 3 * callBytes(e, rows);
let elements = 0;
for (const t of model.params.values()) elements += t.shape.reduce((a: number, d: number) => a * d, 1);
console.log(
  JSON.stringify(
    {
      params: elements,
      weightsHeld: gib(e.weights),
      stageWeights: gib(e.stageWeights),
      calls: e.calls.map((c) => ({ fixed: gib(c.fixed), perRow: gib(c.perRow) })),
      callBytes: gib(callBytes(e, rows)),
      perWindow: gib(e.perWindow),
      streamedGradient: gib(grad),
      streamedForward1: gib(streamedForwardBytes(e, 1, 1)),
      wholeGradient12PerParam: gib(12 * elements),
    },
    null,
    1,
  ),
);
