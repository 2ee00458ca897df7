/**
 * Pruning scopes (what a unit is) and rankings (which units compete with each other).
 *
 * - block: per-layer attention KV groups and MLP channels (LLM-Pruner's block-wise);
 * - channel: residual-stream (hidden) channels across the whole model (LLM-Pruner's channel-wise);
 * - layer: whole decoder layers;
 * - unstructured: single weights, a fraction of every output row of the pruned layers' matrices;
 * - N:M: single weights, N of every M consecutive inputs of a row (semi-structured).
 */
import { InputError } from '../errors.js';
import type { GroupKind } from './groups.js';

/** A scope as written on the command line and in plans: 'block', ..., or 'N:M' such as '2:4'. */
export type PruneScope = 'block' | 'channel' | 'layer' | 'unstructured' | `${number}:${number}`;

/** Scope families; 'n:m' stands for every N:M pattern (what criteria declare support for). */
export type ScopeKind = 'block' | 'channel' | 'layer' | 'unstructured' | 'n:m';
export const SCOPE_KINDS: readonly ScopeKind[] = ['block', 'channel', 'layer', 'unstructured', 'n:m'];

export type ParsedScope =
  | { readonly kind: 'block' | 'channel' | 'layer' | 'unstructured'; readonly name: PruneScope }
  | { readonly kind: 'n:m'; readonly name: PruneScope; readonly n: number; readonly m: number };

/** Parses a scope name; an unknown one is an error listing the valid ones. */
export function parseScope(scope: string): ParsedScope {
  if (scope === 'block' || scope === 'channel' || scope === 'layer' || scope === 'unstructured') {
    return { kind: scope, name: scope };
  }
  const nm = /^(\d+):(\d+)$/.exec(scope);
  if (nm) {
    const n = Number(nm[1]);
    const m = Number(nm[2]);
    if (n < 1 || n >= m) {
      throw new InputError(`scope '${scope}': N:M needs 1 <= N < M`, undefined, 'scope');
    }
    return { kind: 'n:m', name: `${n}:${m}`, n, m };
  }
  throw new InputError(
    `unknown scope '${scope}'; valid: block, channel, layer, unstructured, N:M (e.g. 2:4)`,
    undefined,
    'scope',
  );
}

/** Whether a scope removes structure (groups of units) or zeroes single weights. */
export const isElementScope = (s: ParsedScope): boolean => s.kind === 'unstructured' || s.kind === 'n:m';

/**
 * The group kinds a scope selects from. Element scopes select weights inside the members of the
 * block groups (the attention and MLP matrices of the pruned layers).
 */
export function scopeGroupKinds(s: ParsedScope): readonly GroupKind[] {
  switch (s.kind) {
    case 'channel':
      return ['hidden'];
    case 'layer':
      return ['layer'];
    default:
      return ['attention', 'mlp'];
  }
}

/**
 * How block-scope units compete: within their own group (local), with every group of their kind
 * (global-per-kind: heads with heads, channels with channels), or all in one pool
 * (global-pool: heads and channels together, as the released MoreauPruner code ranks).
 */
export type Ranking = 'local' | 'global-per-kind' | 'global-pool';
export const RANKINGS: readonly Ranking[] = ['local', 'global-per-kind', 'global-pool'];

/** A ranking name; 'global' (what version-1 plans and --global meant) is global-per-kind. */
export function parseRanking(ranking: string): Ranking {
  if (ranking === 'global') return 'global-per-kind';
  if ((RANKINGS as readonly string[]).includes(ranking)) return ranking as Ranking;
  throw new InputError(
    `unknown ranking '${ranking}'; valid: ${RANKINGS.join(', ')} (global = global-per-kind)`,
    undefined,
    'ranking',
  );
}
