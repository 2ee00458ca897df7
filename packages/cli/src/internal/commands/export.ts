import { exportOnnxSymbolic } from '@moreau/backend-ort';
import { llamaOnnxExport } from '@moreau/models';
import type { ExportFlags } from '../../program.js';
import { type CommandContext, openModel } from '../context.js';

/**
 * A standalone ONNX model with Optimum's text-generation signature, weights inside: int64 input_ids
 * and attention_mask [batch_size, sequence_length] -> logits [batch_size, sequence_length, vocab]
 * at any batch size and length; with --with-past also the key / value cache.
 */
export async function exportCommand(source: string, ctx: CommandContext<ExportFlags>) {
  const { flags, progress, out } = ctx;
  const noClobber = flags.overwrite ? {} : { noClobber: true, clobberHint: 'add --overwrite to replace it' };
  await ctx.outputs.checkFile('--onnx', flags.onnx, noClobber);
  await ctx.outputs.checkFile('--json', flags.json);
  const { model } = await openModel(source, flags);
  const spec = llamaOnnxExport(model.config, model.params, { withPast: flags.withPast ?? false });
  progress.note(`tracing the model with open batch and sequence sizes; writing ${flags.onnx}`);
  const result = await exportOnnxSymbolic(spec, flags.onnx, {
    ...spec,
    docString: `moreau export of ${source}`,
    overwrite: flags.overwrite,
    transaction: ctx.outputs.tx,
  });
  if (flags.json) await ctx.outputs.writeJson(flags.json, { model: source, ...result, file: flags.onnx });
  const dims = (s: readonly (number | string)[]) => `[${s.join(', ')}]`;
  const inputs = result.inputs.filter((i) => !i.name.startsWith('past_key_values.'));
  const outputs = result.outputs.filter((o) => !o.name.startsWith('present.'));
  const cache = flags.withPast
    ? ` (+ ${result.inputs.length - inputs.length} past_key_values inputs, ${result.outputs.length - outputs.length} present outputs)`
    : '';
  out(
    `wrote ${flags.onnx} (${(result.bytes / 1e6).toFixed(2)} MB, opset ${result.opset}): ` +
      `${inputs.map((i) => `${i.name}${dims(i.shape)} ${i.dtype}`).join(', ')} -> ` +
      `${outputs.map((o) => `${o.name}${dims(o.shape)}`).join(', ')}${cache}\n`,
  );
}
