import { exportOnnx } from '@moreau/backend-ort';
import { type HostTensor, trace } from '@moreau/core';
import { llamaLogits } from '@moreau/models';
import type { ProgressReporter } from '../progress.js';
import { type Opts, openModel } from './context.js';

/** A standalone ONNX model input_ids [batch, seq] -> logits [batch, seq, vocab], weights inside. */
export async function exportCommand(source: string, opts: Opts, progress: ProgressReporter): Promise<void> {
  const loaded = await openModel(source, opts);
  const names = [...loaded.model.params.keys()];
  const batch = opts.batch ?? 1;
  const seqLen = opts.seqLen ?? 128;
  const weights = names.map((n) => loaded.model.params.get(n)!);
  const traced = trace(
    (w: HostTensor[], ids) =>
      llamaLogits(Object.fromEntries(names.map((n, i) => [n, w[i]!])) as never, ids, loaded.model.config),
    [
      weights.map((t) => ({ shape: t.shape, dtype: t.dtype === 'bfloat16' ? 'float32' : t.dtype })),
      { shape: [batch, seqLen], dtype: 'int32' },
    ],
  );
  const frozen = new Map(weights.map((t, i) => [i, t] as const));
  progress.note(`tracing ${traced.graph.nodes.length} nodes; writing ${opts.onnx}`);
  const result = await exportOnnx(traced.graph, String(opts.onnx), {
    inputNames: [...names, 'input_ids'],
    outputNames: ['logits'],
    frozen,
    docString: `moreau export of ${source}`,
  });
  process.stdout.write(
    `wrote ${result.file} (${(result.bytes / 1e6).toFixed(2)} MB, opset ${result.opset}): ${result.inputs.map((i) => `${i.name}[${i.shape}] ${i.dtype}`).join(', ')} -> ${result.outputs.map((o) => `${o.name}[${o.shape}]`).join(', ')}\n`,
  );
}
