/**
 * The pruning plan: a versioned, serialisable record of what a criterion decided. Plans can be
 * saved, inspected and re-applied; the same inputs give a byte-identical plan on every backend
 * (scores, which differ in the last bits between engines, are only written on request).
 */
import { InputError } from '../errors.js';
import { COMPUTE_DTYPES, type ComputeMode } from '../precision.js';
import { cutModel, type PrunableModel } from './model.js';
import { REDUCTIONS, type Reduction } from './scoring.js';

export const PLAN_FORMAT = 'moreau-pruning-plan';
export const PLAN_VERSION = 1;

export interface LayerDecision {
  /** Units the layer had before pruning. */
  readonly total: number;
  /** Kept units, ascending original indices. */
  readonly kept: readonly number[];
  readonly scores?: readonly number[];
}

export interface LayerPlan {
  readonly layer: number;
  readonly attention?: LayerDecision;
  readonly mlp?: LayerDecision;
}

export interface PruningPlan {
  readonly format: typeof PLAN_FORMAT;
  readonly version: typeof PLAN_VERSION;
  readonly criterion: { readonly name: string; readonly options: Readonly<Record<string, unknown>> };
  readonly reduction: string;
  readonly ratio: number;
  readonly seed: number;
  readonly scope: 'local' | 'global';
  /** Half-open layer ranges [start, end). */
  readonly attnLayers: readonly [number, number];
  readonly mlpLayers: readonly [number, number];
  readonly steps: number;
  /**
   * The dtype the scores were computed in and how it ran, when not float32 (a float32 plan has no
   * such field, so float32 plans read exactly as before compute dtypes existed).
   */
  readonly compute?: ComputeMode;
  readonly numLayers: number;
  readonly layers: readonly LayerPlan[];
}

/** Stable JSON (fixed key order, one layer per line). */
export function planToJSON(plan: PruningPlan): string {
  const head = {
    format: plan.format,
    version: plan.version,
    criterion: plan.criterion,
    reduction: plan.reduction,
    ratio: plan.ratio,
    seed: plan.seed,
    scope: plan.scope,
    attnLayers: plan.attnLayers,
    mlpLayers: plan.mlpLayers,
    steps: plan.steps,
    ...(plan.compute
      ? { compute: { computeDtype: plan.compute.computeDtype, precision: plan.compute.precision } }
      : {}),
    numLayers: plan.numLayers,
  };
  const decision = (d: LayerDecision | undefined) =>
    d ? { total: d.total, kept: d.kept, ...(d.scores ? { scores: d.scores } : {}) } : undefined;
  const layers = plan.layers.map((l) =>
    JSON.stringify({ layer: l.layer, attention: decision(l.attention), mlp: decision(l.mlp) }),
  );
  const h = JSON.stringify(head, null, 2);
  return `${h.slice(0, -2)},\n  "layers": [\n    ${layers.join(',\n    ')}\n  ]\n}\n`;
}

function isObject(v: unknown): v is Record<string, any> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function fail(file: string, field: string, expected: string): never {
  throw new InputError(`${file}: field '${field}' ${expected}`, file, field);
}

function checkRange(v: unknown, file: string, field: string, numLayers: number): readonly [number, number] {
  if (
    !Array.isArray(v) ||
    v.length !== 2 ||
    !v.every(Number.isInteger) ||
    v[0] < 0 ||
    v[0] > v[1] ||
    v[1] > numLayers
  ) {
    fail(file, field, `must be [start, end) with 0 <= start <= end <= ${numLayers}`);
  }
  return v as unknown as [number, number];
}

/** Parses and validates a plan; errors name the file and the field. */
export function parsePlan(text: string, file = '<plan>'): PruningPlan {
  let p: Record<string, unknown>;
  try {
    p = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  if (!isObject(p)) fail(file, '(root)', 'must be an object');
  if (p.format !== PLAN_FORMAT) fail(file, 'format', `must be '${PLAN_FORMAT}'`);
  if (p.version !== PLAN_VERSION)
    fail(file, 'version', `must be ${PLAN_VERSION} (this SDK's plan version), got ${String(p.version)}`);
  const c = p.criterion as PruningPlan['criterion'];
  if (!isObject(c) || typeof c.name !== 'string' || !isObject(c.options))
    fail(file, 'criterion', 'must be {name, options}');
  if (!REDUCTIONS.includes(p.reduction as Reduction))
    fail(file, 'reduction', `must be one of ${REDUCTIONS.join(', ')}`);
  if (typeof p.ratio !== 'number' || !(p.ratio >= 0 && p.ratio < 1))
    fail(file, 'ratio', 'must be a number in [0, 1)');
  if (!Number.isInteger(p.seed)) fail(file, 'seed', 'must be an integer');
  if (!Number.isInteger(p.steps) || (p.steps as number) < 1)
    fail(file, 'steps', 'must be a positive integer');
  if (p.scope !== 'local' && p.scope !== 'global') fail(file, 'scope', "must be 'local' or 'global'");
  if (p.compute !== undefined) {
    const c = p.compute as Partial<ComputeMode>;
    if (
      !isObject(c) ||
      !COMPUTE_DTYPES.includes(c.computeDtype as ComputeMode['computeDtype']) ||
      (c.precision !== 'native' && c.precision !== 'emulated')
    )
      fail(
        file,
        'compute',
        `must be {computeDtype: ${COMPUTE_DTYPES.join(' | ')}, precision: native | emulated}`,
      );
  }
  if (!Number.isInteger(p.numLayers) || (p.numLayers as number) < 1)
    fail(file, 'numLayers', 'must be a positive integer');
  const numLayers = p.numLayers as number;
  const ranges = {
    attention: checkRange(p.attnLayers, file, 'attnLayers', numLayers),
    mlp: checkRange(p.mlpLayers, file, 'mlpLayers', numLayers),
  };
  if (!Array.isArray(p.layers)) fail(file, 'layers', 'must be an array');
  const seen = new Set<number>();
  (p.layers as LayerPlan[]).forEach((l, i) => {
    if (!isObject(l)) fail(file, `layers[${i}]`, 'must be an object {layer, attention?, mlp?}');
    if (!Number.isInteger(l.layer) || l.layer < 0 || l.layer >= numLayers)
      fail(file, `layers[${i}].layer`, `must be in [0, ${numLayers})`);
    if (seen.has(l.layer)) fail(file, `layers[${i}].layer`, `repeats layer ${l.layer}`);
    seen.add(l.layer);
    for (const kind of ['attention', 'mlp'] as const) {
      const d = l[kind];
      if (d === undefined) continue;
      const f = `layers[${i}].${kind}`;
      if (!isObject(d)) fail(file, f, 'must be an object {total, kept, scores?}');
      const [a, b] = ranges[kind];
      if (l.layer < a || l.layer >= b)
        fail(
          file,
          f,
          `is for layer ${l.layer}, outside ${kind === 'attention' ? 'attnLayers' : 'mlpLayers'} [${a}, ${b})`,
        );
      if (!Number.isInteger(d.total) || d.total < 1) fail(file, `${f}.total`, 'must be a positive integer');
      if (!Array.isArray(d.kept) || d.kept.length === 0) fail(file, `${f}.kept`, 'must be a non-empty array');
      d.kept.forEach((u, j) => {
        if (!Number.isInteger(u) || u < 0 || u >= d.total || (j > 0 && u <= d.kept[j - 1]!)) {
          fail(file, `${f}.kept`, `must hold ascending unique integers in [0, ${d.total})`);
        }
      });
      if (
        d.scores !== undefined &&
        (!Array.isArray(d.scores) ||
          d.scores.length !== d.total ||
          !d.scores.every((v) => v === null || typeof v === 'number'))
      )
        fail(file, `${f}.scores`, `must be ${d.total} numbers (null for units cut in an earlier step)`);
    }
  });
  return p as unknown as PruningPlan;
}

/** Kept units by group id ('layer.<i>.attention' / 'layer.<i>.mlp'). */
export function keptFromPlan(plan: PruningPlan): Map<string, readonly number[]> {
  const out = new Map<string, readonly number[]>();
  for (const l of plan.layers) {
    for (const kind of ['attention', 'mlp'] as const) {
      const d = l[kind];
      if (d) out.set(`layer.${l.layer}.${kind}`, d.kept);
    }
  }
  return out;
}

/**
 * Applies a plan: the model must have exactly the unit counts the plan was made for (so applying
 * a plan twice, or to another model, is an error naming the layer).
 */
export function applyPlan(model: PrunableModel, plan: PruningPlan): PrunableModel {
  if (model.numLayers !== plan.numLayers) {
    throw new InputError(
      `the plan is for a model with ${plan.numLayers} layers; this model has ${model.numLayers}`,
      undefined,
      'numLayers',
    );
  }
  const groups = model.groups();
  for (const l of plan.layers) {
    for (const kind of ['attention', 'mlp'] as const) {
      const d = l[kind];
      if (!d) continue;
      const g = groups.find((x) => x.id === `layer.${l.layer}.${kind}`);
      if (!g || g.units !== d.total) {
        throw new InputError(
          `layer ${l.layer} ${kind}: the plan expects ${d.total} units but the model has ${g?.units ?? 0}` +
            (g && g.units < d.total ? ' (was the plan already applied?)' : ''),
          undefined,
          `layers[${l.layer}].${kind}`,
        );
      }
    }
  }
  return cutModel(model, keptFromPlan(plan));
}
