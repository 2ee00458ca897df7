/**
 * Sparsity for the command line: `sparsity.json` next to an unstructured or N:M pruned model, and
 * the sparsity lines of `moreau info` (for any model it loads).
 */
import {
  type HostTensor,
  type MatrixSparsity,
  NM_WIDTHS,
  type PruningPlan,
  parseScope,
  sparsityReport,
} from '@moreau/core';

/** sparsity.json: how the pruned model's zeros lie, per masked matrix. */
export function sparsityFile(plan: PruningPlan, params: ReadonlyMap<string, HostTensor>) {
  const scope = parseScope(plan.scope);
  const masked = new Set(plan.masks.map((m) => m.param));
  const report = sparsityReport(params, scope.kind === 'n:m' ? [scope.m] : NM_WIDTHS);
  const matrices = report.matrices.filter((m) => masked.has(m.param));
  return {
    format: 'moreau-sparsity',
    version: 1,
    scope: plan.scope,
    ratio: plan.ratio,
    keep_low_ratio: plan.keepLowRatio ?? 0,
    params: report.params,
    nonzero: report.nonzero,
    ...(scope.kind === 'n:m'
      ? { nm: { n: scope.n, m: scope.m, valid: matrices.every((m) => m.nm[scope.m]! >= scope.n) } }
      : {}),
    matrices: matrices.map((m) => ({
      param: m.param,
      shape: m.shape,
      zeros: m.zeros,
      zero_fraction: m.fraction,
      ...(scope.kind === 'n:m' ? { nm_valid: m.nm[scope.m]! >= scope.n } : {}),
    })),
  };
}

/** The N:M patterns (N of every M, the largest N per M) that every one of these matrices satisfies. */
function sharedPatterns(matrices: readonly MatrixSparsity[]): string[] {
  if (!matrices.length) return [];
  return NM_WIDTHS.map((m) => [Math.min(...matrices.map((x) => x.nm[m] ?? 0)), m] as const)
    .filter(([n]) => n > 0)
    .map(([n, m]) => `${n}:${m}`);
}

/** What `moreau info` reports about zeros: non-zero count, the matrices with zeros and their patterns. */
export function sparsitySummary(params: ReadonlyMap<string, HostTensor>) {
  const report = sparsityReport(params);
  const sparse = report.matrices.filter((m) => m.zeros > 0);
  const zeros = sparse.reduce((s, m) => s + m.zeros, 0);
  const size = sparse.reduce((s, m) => s + m.shape[0]! * m.shape[1]!, 0);
  return {
    nonzero: report.nonzero,
    zero_fraction: report.params ? 1 - report.nonzero / report.params : 0,
    sparse_matrices: sparse.length,
    /** Zeros / elements over the matrices that have any. */
    sparse_matrix_zero_fraction: size ? zeros / size : 0,
    nm_patterns: sharedPatterns(sparse),
    matrices: sparse.map((m) => ({ param: m.param, zeros: m.zeros, zero_fraction: m.fraction, nm: m.nm })),
  };
}
