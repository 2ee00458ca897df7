/** Standalone .onnx export of an IR graph. */
import path from 'node:path';
import type { DType, Graph, HostTensor, OutputTransaction } from './core.js';
import { InputError, inputInfos, writeFileAtomic } from './core.js';
import { IR_VERSION, lowerGraph, OPSET } from './lower.js';
import { encodeModel } from './proto.js';

export interface ExportOnnxOptions {
  /** ONNX names of the graph inputs, in graph-input order (default: the graph's input names). */
  readonly inputNames?: readonly string[];
  /** ONNX names of the graph outputs (default: graph.outputNames). */
  readonly outputNames?: readonly string[];
  /** Inputs stored in the file as initializers (weights), by input index; they are not model inputs. */
  readonly frozen?: ReadonlyMap<number, HostTensor>;
  /** Free text stored as the model's doc_string. */
  readonly docString?: string;
  /** Replace an existing file (default true); false makes an existing file an error. */
  readonly overwrite?: boolean;
  /** Stage the file in this transaction (put in place when it commits) instead of writing it now. */
  readonly transaction?: OutputTransaction;
}

export interface ExportOnnxResult {
  readonly file: string;
  readonly bytes: number;
  readonly opset: number;
  readonly irVersion: number;
  /** The model's inputs as a plain onnxruntime session sees them (bfloat16 appears as float32). */
  readonly inputs: readonly {
    readonly name: string;
    readonly shape: readonly number[];
    readonly dtype: DType;
  }[];
  readonly outputs: readonly {
    readonly name: string;
    readonly shape: readonly number[];
    readonly dtype: DType;
  }[];
}

function uniqueNames(what: string, names: readonly string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (typeof n !== 'string' || n.length === 0)
      throw new InputError(`exportOnnx: ${what} names must be non-empty strings`);
    if (seen.has(n)) throw new InputError(`exportOnnx: ${what} name '${n}' is used twice`);
    seen.add(n);
  }
}

const asOrtDtype = (d: DType): DType => (d === 'bfloat16' ? 'float32' : d);

/**
 * Writes `graph` as a standalone ONNX model (opset 17) that plain onnxruntime runs with the same
 * outputs. Inputs keep their order and get `inputNames` (default: the names they were traced
 * with); bfloat16 inputs and outputs are float32 in the file. Frozen inputs become initializers.
 * The file is written atomically (core's writeFileAtomic), or staged in `options.transaction`.
 */
export async function exportOnnx(
  graph: Graph,
  file: string,
  options: ExportOnnxOptions = {},
): Promise<ExportOnnxResult> {
  const infos = inputInfos(graph);
  const inputNames = options.inputNames ? [...options.inputNames] : infos.map((v) => v.name);
  if (inputNames.length !== infos.length) {
    throw new InputError(
      `exportOnnx: inputNames has ${inputNames.length} names, the graph has ${infos.length} inputs`,
    );
  }
  uniqueNames('input', inputNames);
  const outputNames = options.outputNames ? [...options.outputNames] : [...graph.outputNames];
  if (outputNames.length !== graph.outputs.length) {
    throw new InputError(
      `exportOnnx: outputNames has ${outputNames.length} names, the graph has ${graph.outputs.length} outputs`,
    );
  }
  uniqueNames('output', outputNames);
  const clash = outputNames.find((n) => inputNames.includes(n));
  if (clash) throw new InputError(`exportOnnx: '${clash}' names both an input and an output`);
  for (const i of options.frozen?.keys() ?? []) {
    if (!Number.isInteger(i) || i < 0 || i >= infos.length) {
      throw new InputError(
        `exportOnnx: frozen input index ${i} is out of range (the graph has ${infos.length} inputs)`,
      );
    }
  }

  const lowered = lowerGraph(graph, {
    inputNames,
    outputNames,
    inlineAll: true,
    ...(options.frozen ? { frozen: options.frozen } : {}),
    graphName: path.basename(file).replace(/\.onnx$/i, '') || 'moreau',
    ...(options.docString ? { docString: options.docString } : {}),
  });
  const bytes = encodeModel(lowered.model);

  const target = path.resolve(file);
  const noClobber = options.overwrite === false ? { noClobber: true } : {};
  if (options.transaction) await options.transaction.file(file, bytes, noClobber);
  else await writeFileAtomic(file, bytes, noClobber);
  const frozen = options.frozen;
  return {
    file: target,
    bytes: bytes.byteLength,
    opset: OPSET,
    irVersion: IR_VERSION,
    inputs: infos
      .map((v, i) => ({
        name: inputNames[i]!,
        shape: [...v.shape],
        dtype: asOrtDtype(v.dtype),
        frozen: frozen?.has(i),
      }))
      .filter((v) => !v.frozen)
      .map(({ name, shape, dtype }) => ({ name, shape, dtype })),
    outputs: graph.outputs.map((id, i) => ({
      name: outputNames[i]!,
      shape: [...graph.nodes[id]!.shape],
      dtype: asOrtDtype(graph.nodes[id]!.dtype),
    })),
  };
}
