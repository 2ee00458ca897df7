import { exportOnnx } from '@moreau/backend-ort';
import { type HostTensor, trace } from '@moreau/core';
import { llamaLogits } from '@moreau/models';
import type { ExportFlags } from '../../program.js';
import { type CommandContext, openModel } from '../context.js';

/** A standalone ONNX model input_ids [batch, seq] -> logits [batch, seq, vocab], weights inside. */
export async function exportCommand(source: string, ctx: CommandContext<ExportFlags>) {
  const { flags, progress, out } = ctx;
  const noClobber = flags.overwrite ? {} : { noClobber: true, clobberHint: 'add --overwrite to replace it' };
  await ctx.outputs.checkFile('--onnx', flags.onnx, noClobber);
  await ctx.outputs.checkFile('--json', flags.json);
  const { model } = await openModel(source, flags);
  const names = [...model.params.keys()];
  const weights = names.map((n) => model.params.get(n)!);
  const traced = trace(
    (w: HostTensor[], ids) =>
      llamaLogits(Object.fromEntries(names.map((n, i) => [n, w[i]!])) as never, ids, model.config),
    [
      weights.map((t) => ({ shape: t.shape, dtype: t.dtype === 'bfloat16' ? 'float32' : t.dtype })),
      { shape: [flags.batch, flags.seqLen], dtype: 'int32' },
    ],
  );
  const frozen = new Map(weights.map((t, i) => [i, t] as const));
  progress.note(`tracing ${traced.graph.nodes.length} nodes; writing ${flags.onnx}`);
  const result = await exportOnnx(traced.graph, flags.onnx, {
    inputNames: [...names, 'input_ids'],
    outputNames: ['logits'],
    frozen,
    docString: `moreau export of ${source}`,
    overwrite: flags.overwrite,
    transaction: ctx.outputs.tx,
  });
  if (flags.json) await ctx.outputs.writeJson(flags.json, { model: source, ...result, file: flags.onnx });
  out(
    `wrote ${flags.onnx} (${(result.bytes / 1e6).toFixed(2)} MB, opset ${result.opset}): ${result.inputs.map((i) => `${i.name}[${i.shape}] ${i.dtype}`).join(', ')} -> ${result.outputs.map((o) => `${o.name}[${o.shape}]`).join(', ')}\n`,
  );
}
