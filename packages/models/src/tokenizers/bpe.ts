/**
 * Score-driven BPE merging, as in llama2.c's encode() and sentencepiece's BPE model: repeatedly merge
 * the adjacent pair whose concatenation is a vocabulary piece with the highest score, the leftmost pair
 * on ties, until no pair merges.
 *
 * Implemented with a doubly linked list of symbols and a binary heap of candidate pairs ordered by
 * (score descending, left position ascending). Stale candidates are detected with per-node version
 * stamps, so the result is exactly that of the quadratic greedy scan, in O(n log n).
 */

/** Returns the merged piece id for two adjacent symbol ids, or -1 when their concatenation is not mergeable. */
export type PairLookup = (left: number, right: number) => number;

/**
 * Merge `symbols` (initial ids, in order). `scores[id]` is the merge priority; only merges with
 * score strictly greater than `minScore` happen (llama2.c starts its search at -1e10).
 */
export function bpeMerge(
  symbols: readonly number[],
  lookup: PairLookup,
  scores: Float32Array,
  minScore = Number.NEGATIVE_INFINITY,
): number[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const tok = Int32Array.from(symbols);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const ver = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  // Candidate pool (struct of arrays): at most n - 1 initial pairs plus 2 per merge (< n merges).
  const cap = 3 * n;
  const cScore = new Float64Array(cap);
  const cLeft = new Int32Array(cap);
  const cRight = new Int32Array(cap);
  const cMerged = new Int32Array(cap);
  const cVl = new Int32Array(cap);
  const cVr = new Int32Array(cap);
  let pool = 0;
  // Binary heap of candidate indices: max score first, then smallest left position.
  const heap = new Int32Array(cap);
  let size = 0;
  const before = (a: number, b: number): boolean =>
    cScore[a]! > cScore[b]! || (cScore[a] === cScore[b] && cLeft[a]! < cLeft[b]!);
  const push = (c: number): void => {
    let i = size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pc = heap[p]!;
      if (!before(c, pc)) break;
      heap[i] = pc;
      i = p;
    }
    heap[i] = c;
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap[--size]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) break;
      const r = l + 1;
      const m = r < size && before(heap[r]!, heap[l]!) ? r : l;
      if (!before(heap[m]!, last)) break;
      heap[i] = heap[m]!;
      i = m;
    }
    if (size > 0) heap[i] = last;
    return top;
  };
  const consider = (l: number, r: number): void => {
    const merged = lookup(tok[l]!, tok[r]!);
    if (merged < 0) return;
    const score = scores[merged]!;
    if (!(score > minScore)) return;
    const c = pool++;
    cScore[c] = score;
    cLeft[c] = l;
    cRight[c] = r;
    cMerged[c] = merged;
    cVl[c] = ver[l]!;
    cVr[c] = ver[r]!;
    push(c);
  };
  for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
  while (size > 0) {
    const c = pop();
    const l = cLeft[c]!;
    const r = cRight[c]!;
    if (next[l] !== r || ver[l] !== cVl[c] || ver[r] !== cVr[c]) continue;
    tok[l] = cMerged[c]!;
    ver[l]!++;
    ver[r]!++;
    const rn = next[r]!;
    next[l] = rn;
    next[r] = -2; // dead
    if (rn >= 0) prev[rn] = l;
    if (prev[l]! >= 0) consider(prev[l]!, l);
    if (rn >= 0) consider(l, rn);
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
  return out;
}

/** The reference quadratic greedy loop (for tests): same contract as bpeMerge. */
export function bpeMergeNaive(
  symbols: readonly number[],
  lookup: PairLookup,
  scores: Float32Array,
  minScore = Number.NEGATIVE_INFINITY,
): number[] {
  const t = symbols.slice();
  for (;;) {
    let best = minScore;
    let bestIdx = -1;
    let bestId = -1;
    for (let i = 0; i + 1 < t.length; i++) {
      const id = lookup(t[i]!, t[i + 1]!);
      if (id >= 0 && scores[id]! > best) {
        best = scores[id]!;
        bestIdx = i;
        bestId = id;
      }
    }
    if (bestIdx < 0) return t;
    t.splice(bestIdx, 2, bestId);
  }
}
