/**
 * Memory estimates of model runs, so a mode is chosen and an impossible run refused before it
 * starts. Activations come from the traced graphs themselves: the peak of a graph's values when
 * each is freed after its last use (what an engine's memory planner approaches), so the estimate
 * follows the model's real shapes (heads, widths, vocabulary) without knowing its architecture.
 */
import { bytesPerElement, type DType, sizeOf } from '../dtype.js';
import type { Graph } from '../ir.js';
import type { PrunableModel } from '../pruning/model.js';
import { type TensorSpec, trace } from '../transforms.js';
import type { Stage, StagedModel } from './staged-model.js';

/** Bytes a backend holds for a tensor of this dtype (bfloat16 travels as float32). */
const heldBytes = (t: TensorSpec) =>
  sizeOf(t.shape) * (t.dtype === 'bfloat16' ? 4 : bytesPerElement(t.dtype));

const valueBytes = (shape: readonly number[], dtype: DType) => sizeOf(shape) * bytesPerElement(dtype);

/**
 * Peak bytes of a graph's values when each is freed after its last use; inputs are not counted
 * (the caller holds them), constants are.
 */
export function peakBytes(graph: Graph): number {
  const nodes = graph.nodes;
  const last = new Int32Array(nodes.length).fill(-1);
  nodes.forEach((n, i) => {
    for (const j of n.inputs) last[j] = i;
  });
  for (const o of graph.outputs) last[o] = nodes.length;
  let live = 0;
  for (const t of graph.constants.values()) live += heldBytes(t);
  let peak = live;
  nodes.forEach((n, i) => {
    if (n.op === 'input' || n.op === 'constant') return;
    live += valueBytes(n.shape, n.dtype);
    peak = Math.max(peak, live);
    for (const j of new Set(n.inputs)) {
      const src = nodes[j]!;
      if (last[j] === i && src.op !== 'input' && src.op !== 'constant')
        live -= valueBytes(src.shape, src.dtype);
    }
    if (last[i] === -1) live -= valueBytes(n.shape, n.dtype);
  });
  return peak;
}

/** The peak bytes of one stage's call: `fixed + rows * perRow` (weights cast in the graph are fixed). */
export interface CallCost {
  readonly fixed: number;
  readonly perRow: number;
}

export interface ForwardEstimate {
  /** Bytes of every weight as a backend holds them (whole mode keeps them all resident). */
  readonly weights: number;
  /** Bytes of the largest stage's weights (streamed mode holds one stage at a time). */
  readonly stageWeights: number;
  /** The cost of one call of each distinct stage. */
  readonly calls: readonly CallCost[];
  /** Bytes streamed mode keeps per window between stages (the hidden states in and out). */
  readonly perWindow: number;
  /** Width of the hidden states between stages. */
  readonly hidden: number;
}

/** Peak bytes of one call on `rows` windows: the largest over the stages. */
export function callBytes(e: ForwardEstimate, rows: number): number {
  return Math.max(...e.calls.map((c) => c.fixed + rows * c.perRow));
}

/** What a forward pass over windows of `length` tokens needs (see ForwardEstimate). */
export function estimateForward(model: PrunableModel, staged: StagedModel, length: number): ForwardEstimate {
  const spec = (stage: Stage) =>
    Object.fromEntries(
      Object.entries(stage.params).map(([local, name]) => {
        const t = model.params.get(name)!;
        return [local, { shape: t.shape, dtype: t.dtype }];
      }),
    );
  const ids = (rows: number) => ({ shape: [rows, length], dtype: 'int32' as const });
  const embedGraph = trace((p, x) => staged.embedFn(p, x), [spec(staged.embed), ids(1)]).graph;
  const hidden = embedGraph.nodes[embedGraph.outputs[0]!]!.shape.at(-1)!;
  const h = (rows: number) => ({ shape: [rows, length, hidden], dtype: 'float32' as const });
  // Traced at 1 and 2 rows: the difference is what each further row adds.
  const cost = (
    fn: (p: any, x: any) => unknown,
    stage: Stage,
    input: (rows: number) => TensorSpec,
  ): CallCost => {
    const one = peakBytes(trace(fn, [spec(stage), input(1)]).graph);
    const two = peakBytes(trace(fn, [spec(stage), input(2)]).graph);
    return { fixed: Math.max(0, 2 * one - two), perRow: Math.max(0, two - one) };
  };
  const calls = [cost((p, x) => staged.embedFn(p, x), staged.embed, ids)];
  const seen = new Set<string>();
  for (const layer of staged.layers) {
    if (seen.has(layer.key)) continue;
    seen.add(layer.key);
    calls.push(cost((p, x) => staged.layerFn(layer.key)(p, x), layer, h));
  }
  calls.push(cost((p, x) => staged.headFn(p, x), staged.head, h));
  let weights = 0;
  for (const t of model.params.values()) weights += heldBytes(t);
  const stageBytes = (s: Stage) =>
    [...new Set(Object.values(s.params))].reduce((a, n) => a + heldBytes(model.params.get(n)!), 0);
  const stageWeights = Math.max(...[staged.embed, ...staged.layers, staged.head].map(stageBytes));
  return { weights, stageWeights, calls, perWindow: 2 * length * hidden * 4, hidden };
}

/** Bytes a whole-graph forward call of `rows` windows needs: every weight resident, plus the call. */
export function wholeForwardBytes(e: ForwardEstimate, rows: number): number {
  return e.weights + callBytes(e, rows);
}

/**
 * Bytes a streamed forward pass needs with `rows` windows per call and `windows` per chunk: one
 * stage's weights (as read, and as uploaded), the call, and the chunk's hidden states.
 */
export function streamedForwardBytes(e: ForwardEstimate, rows: number, windows: number): number {
  return 2 * e.stageWeights + callBytes(e, rows) + windows * e.perWindow;
}

/**
 * Bytes a streamed gradient pass over `rows` windows of the estimate's length needs: the saved
 * input of every layer, one stage's weights with its gradients, and the recomputed layer's
 * activations and their gradients (about three times the forward's).
 */
export function streamedGradientBytes(e: ForwardEstimate, layers: number, rows: number): number {
  return (layers * e.perWindow * rows) / 2 + 4 * e.stageWeights + 3 * callBytes(e, rows);
}
