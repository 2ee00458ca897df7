/** Standalone .onnx export of an IR graph, with static or symbolic sizes. */
import path from 'node:path';
import type { DType, Graph, HostTensor, OutputTransaction } from './core.js';
import { InputError, inputInfos, writeFileAtomic } from './core.js';
import { elidableBroadcasts, IR_VERSION, lowerGraph, OPSET } from './lower.js';
import { encodeModel } from './proto.js';
import { type Dim, isStatic, type SymbolicGraph, traceSymbolic } from './symbolic.js';

export interface ExportOnnxOptions {
  /** ONNX names of the graph inputs, in graph-input order (default: the graph's input names). */
  readonly inputNames?: readonly string[];
  /** ONNX names of the graph outputs (default: graph.outputNames). */
  readonly outputNames?: readonly string[];
  /** Inputs stored in the file as initializers (weights), by input index; they are not model inputs. */
  readonly frozen?: ReadonlyMap<number, HostTensor>;
  /**
   * int32 inputs (by ONNX input name) the file declares as int64 and casts to int32 on entry: token
   * ids and attention masks as Optimum, transformers.js and onnxruntime users pass them.
   */
  readonly int64Inputs?: readonly string[];
  /** Free text stored as the model's doc_string. */
  readonly docString?: string;
  /** Replace an existing file (default true); false makes an existing file an error. */
  readonly overwrite?: boolean;
  /** Stage the file in this transaction (put in place when it commits) instead of writing it now. */
  readonly transaction?: OutputTransaction;
}

/** A dimension in an export result: a size, or the name of a symbolic one (`batch_size`, `past_sequence_length + sequence_length`). */
export type ExportedDim = number | string;

export interface ExportOnnxResult {
  readonly file: string;
  readonly bytes: number;
  readonly opset: number;
  readonly irVersion: number;
  /** The model's inputs as a plain onnxruntime session sees them (bfloat16 appears as float32). */
  readonly inputs: readonly {
    readonly name: string;
    readonly shape: readonly ExportedDim[];
    readonly dtype: DType | 'int64';
  }[];
  readonly outputs: readonly {
    readonly name: string;
    readonly shape: readonly ExportedDim[];
    readonly dtype: DType;
  }[];
}

/**
 * A graph whose sizes stay open in the exported file: `dims` lists the open sizes by the symbol the
 * trace function uses and the name the file gives them (ONNX dim_param); `trace(sizes)` builds the
 * graph for given sizes. It is called several times (see exportOnnxSymbolic) and must build the same
 * graph every time, with sizes that are integer polynomials of degree <= 2 in the symbols, and every
 * symbol must be exactly one dimension of some input (where the model reads it at run time).
 */
export interface SymbolicGraphSpec {
  readonly dims: readonly { readonly symbol: string; readonly name: string }[];
  readonly trace: (sizes: Readonly<Record<string, number>>) => Graph;
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
  return writeOnnx(
    traceSymbolic([], () => graph),
    file,
    options,
    (s) => s,
  );
}

/**
 * exportOnnx for a graph with open sizes: the file declares them by name (`batch_size`,
 * `sequence_length`, ...) and computes every size that depends on them at run time, so one file runs
 * at any batch size and length. The graph is traced at several sizes and each size fitted (see
 * symbolic.ts); a trace that cannot be made symbolic is an error naming the node.
 */
export async function exportOnnxSymbolic(
  spec: SymbolicGraphSpec,
  file: string,
  options: ExportOnnxOptions = {},
): Promise<ExportOnnxResult> {
  const symbols = spec.dims.map((d) => d.symbol);
  uniqueNames('dimension', symbols);
  const names = new Map(spec.dims.map((d) => [d.symbol, d.name]));
  return writeOnnx(traceSymbolic(symbols, spec.trace), file, options, (s) => names.get(s) ?? s);
}

async function writeOnnx(
  sym: SymbolicGraph,
  file: string,
  options: ExportOnnxOptions,
  dimParam: (symbol: string) => string,
): Promise<ExportOnnxResult> {
  const { graph } = sym;
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
  const frozen = options.frozen;
  for (const i of frozen?.keys() ?? []) {
    if (!Number.isInteger(i) || i < 0 || i >= infos.length) {
      throw new InputError(
        `exportOnnx: frozen input index ${i} is out of range (the graph has ${infos.length} inputs)`,
      );
    }
  }
  const int64 = new Set<number>();
  for (const n of options.int64Inputs ?? []) {
    const i = inputNames.indexOf(n);
    if (i < 0) throw new InputError(`exportOnnx: int64Inputs names '${n}', which is not an input`);
    if (infos[i]!.dtype !== 'int32' || frozen?.has(i))
      throw new InputError(`exportOnnx: int64Inputs: '${n}' must be an int32 input that is not frozen`);
    int64.add(i);
  }
  // A broadcast may be lowered to nothing only if that is right at every traced size.
  let elidable: Set<number> | undefined;
  if (sym.dynamic) {
    const each = sym.graphs.map((g) => elidableBroadcasts(g));
    elidable = new Set([...each[0]!].filter((id) => each.every((e) => e.has(id))));
  }

  const lowered = lowerGraph(graph, {
    inputNames,
    outputNames,
    inlineAll: true,
    ...(frozen ? { frozen } : {}),
    graphName: path.basename(file).replace(/\.onnx$/i, '') || 'moreau',
    ...(options.docString ? { docString: options.docString } : {}),
    ...(sym.dynamic ? { symbolic: sym, dimParam } : {}),
    ...(elidable ? { elidable } : {}),
    int64Inputs: int64,
  });
  const bytes = encodeModel(lowered.model);

  const target = path.resolve(file);
  const noClobber = options.overwrite === false ? { noClobber: true } : {};
  if (options.transaction) await options.transaction.file(file, bytes, noClobber);
  else await writeFileAtomic(file, bytes, noClobber);
  const shown = (dims: readonly Dim[]): ExportedDim[] =>
    dims.map((d) => (isStatic(d) ? d : d.format(dimParam)));
  return {
    file: target,
    bytes: bytes.byteLength,
    opset: OPSET,
    irVersion: IR_VERSION,
    inputs: graph.inputs
      .map((id, i) => ({
        name: inputNames[i]!,
        shape: shown(sym.shapes[id]!),
        dtype: int64.has(i) ? ('int64' as const) : asOrtDtype(infos[i]!.dtype),
        frozen: frozen?.has(i),
      }))
      .filter((v) => !v.frozen)
      .map(({ name, shape, dtype }) => ({ name, shape, dtype })),
    outputs: graph.outputs.map((id, i) => ({
      name: outputNames[i]!,
      shape: shown(sym.shapes[id]!),
      dtype: asOrtDtype(graph.nodes[id]!.dtype),
    })),
  };
}
