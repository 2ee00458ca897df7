/**
 * How many windows go into one compiled call and one model call. Memory must follow the work, not
 * a flag: a call never holds more rows than there are windows of its length to score, nor more
 * than fit in the memory budget, whatever --batch-size says. Each window length then compiles one
 * graph: a short last call is padded to the same row count (never past the work).
 */
import type { CallCost } from '@moreau/core';

/** Most windows a streamed chunk holds (their hidden states between stages), however much fits. */
export const MAX_CHUNK = 256;

export interface CallPlan {
  /** Windows per compiled call (at most the batch size; fewer when that many would not fit). */
  readonly rows: number;
  /**
   * Windows per model call: streamed mode runs a chunk layer-major (each stage's weights read
   * once for the whole chunk), so it takes as many as fit; whole mode takes `rows`.
   */
  readonly chunk: number;
}

export interface PlanInput {
  readonly mode: 'whole' | 'streamed';
  /** The largest stage's call: fixed + rows * perRow bytes. */
  readonly call: CallCost;
  /** Bytes per window kept between stages (streamed). */
  readonly perWindow: number;
  /** Bytes the run may use for calls and hidden states (weights already taken out). */
  readonly budget: number;
  /** Rows per call the caller asked for. */
  readonly batchSize: number;
  /** Windows of this length there are to score. */
  readonly work: number;
}

export function planCalls({ mode, call, perWindow, budget, batchSize, work }: PlanInput): CallPlan {
  const fit = call.perRow > 0 ? Math.floor((budget - call.fixed) / call.perRow) : batchSize;
  const rows = Math.max(1, Math.min(batchSize, work, fit));
  if (mode === 'whole') return { rows, chunk: rows };
  const room = budget - call.fixed - rows * call.perRow;
  const chunk = perWindow > 0 ? Math.floor(room / perWindow) : MAX_CHUNK;
  return { rows, chunk: Math.max(rows, Math.min(MAX_CHUNK, chunk)) };
}

/**
 * The rows of each call for n windows of `rows` per call: index ranges into the windows, the last
 * call padded with copies of its first window to the full row count (one compiled shape).
 */
export function callRows(n: number, rows: number): number[][] {
  const out: number[][] = [];
  for (let start = 0; start < n; start += rows) {
    const call = Array.from({ length: Math.min(rows, n - start) }, (_, i) => start + i);
    while (call.length < rows) call.push(start);
    out.push(call);
  }
  return out;
}
