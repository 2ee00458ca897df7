/** Turning unit scores into kept units: the rounding rule, local and global ranking. */
import { InputError } from '../errors.js';
import type { Ranking } from './scope.js';

/** Units kept in a layer of n units at ratio r: floor(n * (1 - r)), at least 1. */
export function keptCount(n: number, ratio: number): number {
  if (!(ratio >= 0 && ratio < 1))
    throw new InputError(`ratio must be in [0, 1), got ${ratio}`, undefined, 'ratio');
  // The epsilon keeps products like 10 * (1 - 0.3) = 6.999... from rounding down a whole unit.
  return Math.max(1, Math.floor(n * (1 - ratio) + 1e-9));
}

/** Indices of the `k` best scores, ascending. Ties keep the lower index (deterministic). */
export function topK(scores: ArrayLike<number>, k: number): number[] {
  const order = Array.from({ length: scores.length }, (_, i) => i);
  order.sort((a, b) => compareScores(scores[b]!, scores[a]!) || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

/** NaN ranks lowest so a broken score never keeps a unit alive. */
function compareScores(a: number, b: number): number {
  const na = Number.isNaN(a);
  const nb = Number.isNaN(b);
  if (na || nb) return na && nb ? 0 : na ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Per-layer ranking: each layer keeps its own best keptCount(n, ratio). */
export function selectLocal(scores: ArrayLike<number>, ratio: number): number[] {
  return topK(scores, keptCount(scores.length, ratio));
}

/**
 * Global ranking over several layers of one kind: the pooled lowest scores are pruned so that
 * `keepTotal` units survive (keptCount(total, ratio) for one-shot pruning), but every layer keeps
 * at least one unit.
 */
export function selectGlobal(layers: readonly ArrayLike<number>[], keepTotal: number): number[][] {
  const kept = layers.map((l) => [topK(l, 1)[0]!]);
  const pool: { layer: number; unit: number; score: number }[] = [];
  layers.forEach((l, li) => {
    for (let u = 0; u < l.length; u++)
      if (u !== kept[li]![0]) pool.push({ layer: li, unit: u, score: l[u]! });
  });
  pool.sort((a, b) => compareScores(b.score, a.score) || a.layer - b.layer || a.unit - b.unit);
  for (const p of pool.slice(0, Math.max(0, keepTotal - layers.length))) kept[p.layer]!.push(p.unit);
  return kept.map((k) => k.sort((a, b) => a - b));
}

/**
 * Block-scope selection by ranking. Each pool of groups (local: every group alone; global-per-kind:
 * the groups of one kind; global-pool: all groups) keeps keptCount(its original units, ratio) units,
 * ranked by score with ties to the lower layer and unit, and every group keeps at least one.
 * `totals[i]` is group i's original unit count (iterative pruning scores fewer units per step).
 */
export function selectUnits(
  groups: readonly { readonly kind: string }[],
  scores: readonly ArrayLike<number>[],
  totals: readonly number[],
  ranking: Ranking,
  ratio: number,
): number[][] {
  const pools: number[][] =
    ranking === 'local'
      ? groups.map((_, i) => [i])
      : ranking === 'global-pool'
        ? [groups.map((_, i) => i)]
        : [...new Set(groups.map((g) => g.kind))].map((k) =>
            groups.flatMap((g, i) => (g.kind === k ? [i] : [])),
          );
  const kept: number[][] = groups.map(() => []);
  for (const pool of pools) {
    const total = pool.reduce((s, i) => s + totals[i]!, 0);
    const chosen = selectGlobal(
      pool.map((i) => scores[i]!),
      keptCount(total, ratio),
    );
    pool.forEach((gi, k) => {
      kept[gi] = chosen[k]!;
    });
  }
  return kept;
}
