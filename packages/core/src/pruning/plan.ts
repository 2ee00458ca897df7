/**
 * The pruning plan: a versioned, serialisable record of what a criterion decided. Plans can be
 * saved, inspected and re-applied; the same inputs give a byte-identical plan on every backend and
 * in whole or layer-streamed runs (scores and salience, which differ in the last bits between
 * engines, are only written on request).
 *
 * Version 2 names groups structurally ({"kind": "mlp", "layer": 3}, {"kind": "hidden"}) and holds
 * either group decisions (block, channel and layer scopes: kept unit indices) or element masks
 * (unstructured and N:M scopes: one bitset per matrix, or the salience to recompute it). Version-1
 * plans (block scope) still load; see plan-v1.ts.
 */

import { InputError } from '../errors.js';
import { fromBase64, toBase64 } from '../internal/base64.js';
import type { ComputeMode } from '../precision.js';
import { type GroupCut, type GroupKind, type GroupRef, groupLabel, isGroup } from './groups.js';
import { elementRuleOf, maskModel } from './masks.js';
import { countParams, type PrunableModel } from './model.js';
import {
  checkCompute,
  checkCriterion,
  checkInteger,
  checkKept,
  checkRange,
  checkRatio,
  checkReduction,
  checkScores,
  fail,
  isObject,
  type Json,
} from './plan-fields.js';
import { parsePlanV1 } from './plan-v1.js';
import {
  isElementScope,
  type PruneScope,
  parseScope,
  RANKINGS,
  type Ranking,
  scopeGroupKinds,
} from './scope.js';
import type { Reduction } from './scoring.js';
import { keptCount } from './selection.js';

export const PLAN_FORMAT = 'moreau-pruning-plan';
export const PLAN_VERSION = 2;

/** Any JSON value. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };

/**
 * Provenance a plan carries but pruning does not read: e.g. the preset name and the values it
 * resolved to, how calibration was sampled, the compute dtype. An open record of JSON values,
 * written with sorted keys. It must not hold what differs between equivalent runs (backend,
 * whole vs streamed execution, timings): a plan stays byte-identical across those.
 */
export type PlanSettings = { readonly [key: string]: JsonValue };

export interface PlanCriterion {
  readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
}

/** The decision for one group: which of its units survive (original indices). */
export interface GroupDecision {
  readonly group: GroupRef;
  /** Units the group had before pruning. */
  readonly total: number;
  /** Kept units, ascending original indices (empty: a removed layer). */
  readonly kept: readonly number[];
  /** Unit scores of the last scoring step (null: cut in an earlier step); written on request. */
  readonly scores?: readonly (number | null)[];
}

/** The zeroed weights of one matrix (element scopes). Exactly one of `zeroed` and `salience`. */
export interface MatrixMask {
  readonly param: string;
  readonly shape: readonly number[];
  /** One bit per weight, row-major, least significant bit first; set = zeroed. */
  readonly zeroed?: Uint8Array;
  /** The float32 salience the mask is recomputed from (plans written with scores). */
  readonly salience?: Float32Array;
}

export interface PruningPlan {
  readonly format: typeof PLAN_FORMAT;
  readonly version: typeof PLAN_VERSION;
  readonly scope: PruneScope;
  /** null when no criterion ranked anything (layer scope with keepFirst). */
  readonly criterion: PlanCriterion | null;
  /** Reduction across group members (scopes with groups, when a criterion ran). */
  readonly reduction?: Reduction;
  readonly ratio: number;
  /** Block scope. */
  readonly ranking?: Ranking;
  /** Half-open layer ranges [start, end) (block, layer and element scopes). */
  readonly attnLayers?: readonly [number, number];
  readonly mlpLayers?: readonly [number, number];
  /** Layer scope, LLM-Pruner's rule: keep layers 0 .. keepFirst-1. */
  readonly keepFirst?: number;
  /** Element scopes: fraction of the would-be-zeroed weights kept at random. */
  readonly keepLowRatio?: number;
  readonly seed: number;
  readonly steps: number;
  /**
   * The dtype the scores were computed in and how it ran, when not float32 (a float32 plan has no
   * such field, so float32 plans read exactly as before compute dtypes existed).
   */
  readonly compute?: ComputeMode;
  /** The model the plan was made for: its layers and parameter count (absent in version-1 plans). */
  readonly model: { readonly numLayers: number; readonly params?: number };
  readonly settings?: PlanSettings;
  readonly groups: readonly GroupDecision[];
  readonly masks: readonly MatrixMask[];
}

// ----- writing -----------------------------------------------------------------------------------

function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (isObject(v))
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortedKeys(v[k])]),
    );
  return v;
}

const float32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * The plan's JSON in pieces: the header fields one per line, then one group or mask per line.
 * Join them for a string, or write them one by one (a 7B model's masks exceed a string's limit).
 */
export function* planToJSONChunks(plan: PruningPlan): Generator<string> {
  const head: [string, unknown][] = [
    ['format', plan.format],
    ['version', plan.version],
    ['scope', plan.scope],
    ['criterion', plan.criterion],
    ['reduction', plan.reduction],
    ['ratio', plan.ratio],
    ['ranking', plan.ranking],
    ['attnLayers', plan.attnLayers],
    ['mlpLayers', plan.mlpLayers],
    ['keepFirst', plan.keepFirst],
    ['keepLowRatio', plan.keepLowRatio],
    ['seed', plan.seed],
    ['steps', plan.steps],
    [
      'compute',
      plan.compute && { computeDtype: plan.compute.computeDtype, precision: plan.compute.precision },
    ],
    ['model', plan.model && { numLayers: plan.model.numLayers, params: plan.model.params }],
    ['settings', plan.settings && sortedKeys(plan.settings)],
  ];
  yield '{\n';
  for (const [k, v] of head) if (v !== undefined) yield `  ${JSON.stringify(k)}: ${JSON.stringify(v)},\n`;
  const list = function* <T>(name: string, items: readonly T[], line: (x: T) => unknown, last: boolean) {
    yield `  "${name}": [`;
    for (let i = 0; i < items.length; i++) yield `${i ? ',' : ''}\n    ${JSON.stringify(line(items[i]!))}`;
    yield `${items.length ? '\n  ' : ''}]${last ? '' : ','}\n`;
  };
  yield* list(
    'groups',
    plan.groups,
    (d) => ({
      group:
        d.group.layer === undefined ? { kind: d.group.kind } : { kind: d.group.kind, layer: d.group.layer },
      total: d.total,
      kept: d.kept,
      ...(d.scores ? { scores: d.scores } : {}),
    }),
    false,
  );
  yield* list(
    'masks',
    plan.masks,
    (m) => ({
      param: m.param,
      shape: m.shape,
      ...(m.zeroed ? { zeroed: toBase64(m.zeroed) } : {}),
      ...(m.salience ? { salience: toBase64(float32Bytes(m.salience)) } : {}),
    }),
    true,
  );
  yield '}\n';
}

/** Stable JSON: fixed key order, one group or matrix per line. */
export function planToJSON(plan: PruningPlan): string {
  return [...planToJSONChunks(plan)].join('');
}

// ----- reading -----------------------------------------------------------------------------------

/** Parses and validates a plan (version 2, or version 1 converted); errors name the file and the field. */
export function parsePlan(text: string, file = '<plan>'): PruningPlan {
  let p: unknown;
  try {
    p = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  return planFromJSON(p, file);
}

/** Validates an already-parsed plan object. */
export function planFromJSON(p: unknown, file = '<plan>'): PruningPlan {
  if (!isObject(p)) fail(file, '(root)', 'must be an object');
  if (p.format !== PLAN_FORMAT) fail(file, 'format', `must be '${PLAN_FORMAT}'`);
  if (p.version === 1) return checkPlanRatio(parsePlanV1(p, file), file);
  if (p.version !== PLAN_VERSION)
    fail(
      file,
      'version',
      `must be 1 or ${PLAN_VERSION} (this SDK's plan versions), got ${String(p.version)}`,
    );
  return checkPlanRatio(parsePlanV2(p, file), file);
}

/**
 * A unit-scope plan's `ratio` (the requested ratio, what `prune --plan` reports) must be the one its
 * kept lists were selected at: each pool of groups (local ranking: each group; global-per-kind: the
 * groups of a kind; global-pool: all of them; channel: the hidden group) keeps
 * max(keptCount(its units, ratio), its groups) units, and the layer scope keeps
 * keptCount(candidate layers, ratio) layers (selection.ts: floor(n (1 - r)), at least 1). Element
 * scopes recompute or carry their masks per row and keepFirst plans say which layers they keep:
 * neither is checked here. A mismatch is an error naming the file, 'ratio' and the first pool.
 */
function checkPlanRatio(plan: PruningPlan, file: string): PruningPlan {
  const scope = parseScope(plan.scope);
  if (isElementScope(scope) || plan.keepFirst !== undefined || plan.groups.length === 0) return plan;
  const pools: number[][] =
    scope.kind === 'layer' || plan.ranking === 'global-pool'
      ? [plan.groups.map((_, i) => i)]
      : plan.ranking === 'global-per-kind'
        ? [...new Set(plan.groups.map((d) => d.group.kind))].map((k) =>
            plan.groups.flatMap((d, i) => (d.group.kind === k ? [i] : [])),
          )
        : plan.groups.map((_, i) => [i]);
  for (const pool of pools) {
    const total = pool.reduce((n, i) => n + plan.groups[i]!.total, 0);
    const kept = pool.reduce((n, i) => n + plan.groups[i]!.kept.length, 0);
    const expected =
      scope.kind === 'layer'
        ? keptCount(total, plan.ratio)
        : Math.max(keptCount(total, plan.ratio), pool.length);
    if (kept !== expected) {
      const where =
        pool.length === 1
          ? `groups[${pool[0]}] (${groupLabel(plan.groups[pool[0]!]!.group)})`
          : `the ${pool.length} ${scope.kind === 'layer' ? 'layer' : (plan.ranking ?? 'local')} groups from groups[${pool[0]}]`;
      fail(
        file,
        'ratio',
        `is ${plan.ratio}, but the kept lists disagree: ${where} keep ${kept} of ${total} ${scope.kind === 'layer' ? 'layers' : 'units'} where ratio ${plan.ratio} keeps ${expected} (pruned fraction ${((total - kept) / total).toFixed(4)})`,
      );
    }
  }
  return plan;
}

function parsePlanV2(p: Json, file: string): PruningPlan {
  if (typeof p.scope !== 'string') fail(file, 'scope', 'must be a string');
  let scope: ReturnType<typeof parseScope>;
  try {
    scope = parseScope(p.scope);
  } catch (e) {
    fail(file, 'scope', (e as Error).message);
  }
  const has = (k: string) => p[k] !== undefined;
  const only = (k: string, allowed: boolean, why: string) => {
    if (has(k) && !allowed) fail(file, k, `is not used by scope ${scope.name} (${why})`);
  };
  if (!isObject(p.model)) fail(file, 'model', 'must be {numLayers, params?}');
  const numLayers = checkInteger(p.model.numLayers, file, 'model.numLayers', 1);
  const params =
    p.model.params === undefined ? undefined : checkInteger(p.model.params, file, 'model.params', 1);

  const keepFirst = p.keepFirst === undefined ? undefined : checkInteger(p.keepFirst, file, 'keepFirst', 1);
  only('keepFirst', scope.kind === 'layer', 'layer scope only');
  if (keepFirst !== undefined && keepFirst > numLayers) fail(file, 'keepFirst', `must be <= ${numLayers}`);
  const criterion =
    p.criterion === null && keepFirst !== undefined ? null : checkCriterion(p.criterion, file);
  if (criterion && keepFirst !== undefined) fail(file, 'criterion', 'must be null with keepFirst');
  const unitScope = !isElementScope(scope);
  only('reduction', unitScope && criterion !== null, 'it reduces group members');
  const reduction = unitScope && criterion ? checkReduction(p.reduction, file) : undefined;
  const ratio = checkRatio(p.ratio, file);
  only('ranking', scope.kind === 'block', 'block scope only');
  if (scope.kind === 'block' && !RANKINGS.includes(p.ranking))
    fail(file, 'ranking', `must be one of ${RANKINGS.join(', ')}`);
  const ranked = scope.kind !== 'channel';
  only('attnLayers', ranked, 'hidden channels run through every layer');
  only('mlpLayers', ranked, 'hidden channels run through every layer');
  const attnLayers = ranked ? checkRange(p.attnLayers, file, 'attnLayers', numLayers) : undefined;
  const mlpLayers = ranked ? checkRange(p.mlpLayers, file, 'mlpLayers', numLayers) : undefined;
  only('keepLowRatio', !unitScope, 'element scopes only');
  const keepLowRatio = unitScope ? undefined : checkRatio(p.keepLowRatio ?? 0, file, 'keepLowRatio');
  const seed = checkInteger(p.seed, file, 'seed');
  const steps = checkInteger(p.steps, file, 'steps', 1);
  const compute = checkCompute(p.compute, file);
  if (p.settings !== undefined && !isObject(p.settings)) fail(file, 'settings', 'must be an object');

  if (!Array.isArray(p.groups)) fail(file, 'groups', 'must be an array');
  if (!Array.isArray(p.masks)) fail(file, 'masks', 'must be an array');
  if (!unitScope && p.groups.length)
    fail(file, 'groups', `must be empty for scope ${scope.name} (it uses masks)`);
  if (unitScope && p.masks.length)
    fail(file, 'masks', `must be empty for scope ${scope.name} (it uses groups)`);
  const kinds = scopeGroupKinds(scope);
  const rangeOf = (kind: GroupKind): readonly [number, number][] =>
    kind === 'attention'
      ? [attnLayers!]
      : kind === 'mlp'
        ? [mlpLayers!]
        : kind === 'layer'
          ? [attnLayers!, mlpLayers!]
          : [];
  const seen = new Set<string>();
  const groups: GroupDecision[] = (p.groups as unknown[]).map((d, i) => {
    const f = `groups[${i}]`;
    if (!isObject(d) || !isObject(d.group)) fail(file, f, 'must be an object {group, total, kept, scores?}');
    const kind = d.group.kind as GroupKind;
    if (!kinds.includes(kind))
      fail(file, `${f}.group.kind`, `must be ${kinds.join(' or ')} for scope ${scope.name}`);
    const perLayer = kind !== 'hidden';
    const layer = d.group.layer;
    if (perLayer) {
      if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers)
        fail(file, `${f}.group.layer`, `must be in [0, ${numLayers})`);
      for (const [a, b] of rangeOf(kind)) {
        if (layer < a || layer >= b)
          fail(file, `${f}.group.layer`, `is ${layer}, outside the ${kind} layer range [${a}, ${b})`);
      }
    } else if (layer !== undefined) fail(file, `${f}.group.layer`, `must be absent for a ${kind} group`);
    const ref: GroupRef = perLayer ? { kind, layer } : { kind };
    const key = groupLabel(ref);
    if (seen.has(key)) fail(file, f, `repeats group ${key}`);
    seen.add(key);
    const total = checkInteger(d.total, file, `${f}.total`, 1);
    if (kind === 'layer' && total !== 1) fail(file, `${f}.total`, 'must be 1 for a layer group');
    const kept = checkKept(d.kept, total, file, `${f}.kept`, kind === 'layer');
    const scores = d.scores === undefined ? undefined : checkScores(d.scores, total, file, `${f}.scores`);
    return { group: ref, total, kept, ...(scores ? { scores } : {}) };
  });
  const seenParams = new Set<string>();
  const masks = (p.masks as unknown[]).map((m, i) => parseMaskEntry(m, i, file, seenParams));
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    scope: scope.name,
    criterion,
    ...(reduction ? { reduction } : {}),
    ratio,
    ...(scope.kind === 'block' ? { ranking: p.ranking as Ranking } : {}),
    ...(attnLayers ? { attnLayers, mlpLayers: mlpLayers! } : {}),
    ...(keepFirst !== undefined ? { keepFirst } : {}),
    ...(keepLowRatio !== undefined ? { keepLowRatio } : {}),
    seed,
    steps,
    ...(compute ? { compute } : {}),
    model: params === undefined ? { numLayers } : { numLayers, params },
    ...(p.settings !== undefined ? { settings: p.settings } : {}),
    groups,
    masks,
  };
}

/** One entry of a plan's masks: base64 decoded, checked against its shape; `seen` catches repeats. */
export function parseMaskEntry(m: unknown, i: number, file: string, seen: Set<string>): MatrixMask {
  const f = `masks[${i}]`;
  if (!isObject(m) || typeof m.param !== 'string')
    fail(file, f, 'must be an object {param, shape, zeroed | salience}');
  if (seen.has(m.param)) fail(file, `${f}.param`, `repeats '${m.param}'`);
  seen.add(m.param);
  if (!Array.isArray(m.shape) || m.shape.length !== 2 || !m.shape.every((d) => Number.isInteger(d) && d > 0))
    fail(file, `${f}.shape`, 'must be [rows, cols] of positive integers');
  const size = m.shape[0] * m.shape[1];
  if ((m.zeroed === undefined) === (m.salience === undefined))
    fail(file, f, "must have exactly one of 'zeroed' (a bitset) and 'salience'");
  const bytes = (field: string, n: number) => {
    const b = typeof m[field] === 'string' ? fromBase64(m[field]) : undefined;
    if (!b || b.length !== n) fail(file, `${f}.${field}`, `must be base64 of ${n} bytes`);
    return b;
  };
  const shape = [m.shape[0], m.shape[1]];
  return m.zeroed !== undefined
    ? { param: m.param, shape, zeroed: bytes('zeroed', Math.ceil(size / 8)) }
    : { param: m.param, shape, salience: new Float32Array(bytes('salience', 4 * size).buffer) };
}

// ----- applying ----------------------------------------------------------------------------------

/** Where a plan came from, for the messages of applyPlan. */
export interface ApplyPlanOptions {
  /** The plan's file: every error names it (and the plan field that does not fit the model). */
  readonly file?: string;
}

/**
 * An error applying the plan: `file: field 'F': what` (field F) with a file, else `what` (field
 * `bare`, the key these errors had before they named files).
 */
function misfit(file: string | undefined, field: string, what: string, bare = field): never {
  throw file === undefined
    ? new InputError(what, undefined, bare)
    : new InputError(`${file}: field '${field}': ${what}`, file, field);
}

/** The plan's group decisions as cuts of this model; a group it lacks or sizes differently is an error. */
function planCuts(model: PrunableModel, plan: PruningPlan, file: string | undefined): GroupCut[] {
  const kinds = [...new Set(plan.groups.map((d) => d.group.kind))];
  const groups = kinds.length ? model.groups(kinds) : [];
  return plan.groups.map((d, i) => {
    const g = groups.find((x) => isGroup(x, d.group));
    const label = groupLabel(d.group);
    if (!g)
      misfit(file, `groups[${i}].group`, `${label}: the plan prunes a group this model does not have`, label);
    if (g.units !== d.total) {
      misfit(
        file,
        `groups[${i}].total`,
        `${label}: the plan expects ${d.total} units but the model has ${g.units}` +
          (g.units < d.total ? ' (was the plan already applied?)' : ''),
        label,
      );
    }
    return { group: g, kept: d.kept };
  });
}

/**
 * Applies a plan to the model it was made for: the model must have the plan's layers, groups,
 * matrix shapes and parameter count (so applying a plan twice, or to another model, is an error
 * naming the first mismatch, and the plan file and field with `options.file`). A plan that prunes
 * nothing (no groups and no masks) is an error too: applying it would give the model back
 * unchanged, labelled pruned. (A ratio-0 plan lists its groups with every unit kept: it applies.)
 * Unstructured plans written with salience recompute their masks.
 */
export function applyPlan(
  model: PrunableModel,
  plan: PruningPlan,
  options: ApplyPlanOptions = {},
): PrunableModel {
  const { file } = options;
  if (plan.groups.length === 0 && plan.masks.length === 0) {
    misfit(
      file,
      isElementScope(parseScope(plan.scope)) ? 'masks' : 'groups',
      'the plan prunes nothing (no groups and no masks): applying it would copy the model unpruned',
    );
  }
  if (model.numLayers !== plan.model.numLayers) {
    misfit(
      file,
      'model.numLayers',
      `the plan is for a model with ${plan.model.numLayers} layers; this model has ${model.numLayers}`,
      'numLayers',
    );
  }
  const cuts = planCuts(model, plan, file);
  plan.masks.forEach((m, i) => {
    const t = model.params.get(m.param);
    if (!t)
      misfit(
        file,
        `masks[${i}].param`,
        `the plan masks '${m.param}', which this model does not have`,
        m.param,
      );
    if (t.shape.length !== m.shape.length || t.shape.some((d, k) => d !== m.shape[k])) {
      misfit(
        file,
        `masks[${i}].shape`,
        `'${m.param}': the plan expects shape [${m.shape.join(', ')}] but the model has [${t.shape.join(', ')}]`,
        m.param,
      );
    }
  });
  if (plan.model.params !== undefined && countParams(model.params) !== plan.model.params) {
    misfit(
      file,
      'model.params',
      `the plan is for a model with ${plan.model.params} parameters; this model has ${countParams(model.params)}`,
      'params',
    );
  }
  const cut = cuts.length ? model.cut(cuts) : model;
  const rule = elementRuleOf(parseScope(plan.scope), plan.ratio, plan.keepLowRatio ?? 0, plan.seed);
  return maskModel(cut, plan.masks, rule);
}
