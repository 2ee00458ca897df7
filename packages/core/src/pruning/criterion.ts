/**
 * The criterion plugin interface. A criterion declares what it needs and returns element
 * salience (or unit scores); core turns that into a plan. Criteria never see the model graph.
 */
import type { Backend } from '../backend.js';
import type { DType, HostTensor } from '../dtype.js';
import { InputError, MoreauError } from '../errors.js';
import type { Rng } from '../rng.js';
import type { ExecMode } from '../stream/executor.js';
import type { ParamState } from '../stream/param-state.js';
import type { CalibrationSet } from './calibration.js';
import type { PrunableGroup } from './groups.js';
import { type ParsedScope, SCOPE_KINDS, type ScopeKind } from './scope.js';
import { type ChannelMode, REDUCTIONS, type Reduction } from './scoring.js';

export type OptionSpec =
  | {
      readonly type: 'number';
      readonly default: number;
      readonly min?: number;
      readonly max?: number;
      readonly integer?: boolean;
      readonly description: string;
    }
  | { readonly type: 'boolean'; readonly default: boolean; readonly description: string }
  | {
      readonly type: 'enum';
      readonly default: string;
      readonly values: readonly string[];
      readonly description: string;
    };

export type OptionValues = Record<string, number | boolean | string>;

export interface Progress {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

export interface GradientResult {
  readonly loss: number;
  /** d loss / d param for every group member parameter, float32, same layout as the parameter. */
  readonly grads: Map<string, Float32Array>;
}

/** A parameter of the model being scored. */
export interface ParamInfo {
  readonly name: string;
  readonly shape: readonly number[];
  /** Storage dtype (weights reach criteria as float32 copies). */
  readonly dtype: DType;
  /** True when the parameter belongs to a group being scored. */
  readonly member: boolean;
}

/** One streamed loss-and-gradient pass (see CriterionContext.gradients). */
export interface GradientRequest {
  /** Whose gradients: the group members (default), every parameter, or the listed names. */
  readonly params?: 'members' | 'all' | readonly string[];
  /**
   * The evaluation point: float32 values for (some of) the named parameters; the ones it leaves
   * out keep the model's weights. Called per stage of the model, and in layer-streamed runs twice
   * per stage (forward, then the backward recompute): both calls must return the same values. The
   * engine is done with one call's arrays before it makes the next call, so a criterion may reuse
   * them then (and save allocating a stage's weights each time).
   */
  readonly point?: (
    names: readonly string[],
  ) => ReadonlyMap<string, Float32Array> | Promise<ReadonlyMap<string, Float32Array>>;
  /**
   * Receives gradients as soon as they are complete — all at once for a model run as one graph,
   * stage by stage (last layer first) when it runs layer-streamed. The arrays are yours; keep
   * nothing you do not need, so memory stays bounded by a layer.
   */
  readonly consume: (grads: Map<string, Float32Array>) => void | Promise<void>;
}

/** A decoder layer's input and output hidden states on one batch (see CriterionContext.layerActivations). */
export interface LayerActivations {
  /** Decoder layer index. */
  readonly layer: number;
  /** float32 [batch, seq, hidden]. */
  readonly input: HostTensor;
  readonly output: HostTensor;
}

export interface CriterionContext {
  /** Every parameter of the model (members and the rest), in the model's order. */
  readonly params: readonly ParamInfo[];
  /**
   * float32 weights of every group member. Each read is a fresh copy (the model's own buffers are
   * never handed out), so read each parameter once and keep what you need.
   */
  readonly weights: ReadonlyMap<string, Float32Array>;
  /**
   * A float32 copy of any parameter's weights: a fresh array, or written into `out` (of the
   * parameter's length) when given, so a criterion that reads weights every step can reuse buffers.
   */
  weight(name: string, out?: Float32Array): Float32Array;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /**
   * The groups being scored: the scope's groups in the pruned layers (block: attention and MLP;
   * channel: the hidden group; layer: one group per candidate layer). At the element scopes
   * (unstructured, N:M) the block groups, whose members are the matrices to mask.
   */
  readonly groups: readonly PrunableGroup[];
  /** Seeded for this run: same seed, same draws on every backend. */
  readonly rng: Rng;
  readonly calibration: CalibrationSet | undefined;
  /** How the model runs: one graph ('whole') or a layer at a time ('streamed'). */
  readonly mode: ExecMode;
  /**
   * Loss and every member's gradient at once, at the given member weights (default: the model's),
   * on a batch of token windows. Simple, but holds all member gradients: for models of any size
   * prefer gradients().
   */
  gradient(
    batch: readonly (readonly number[])[],
    weights?: ReadonlyMap<string, Float32Array>,
  ): Promise<GradientResult>;
  /**
   * Streamed loss and gradients: each stage's gradients go to `request.consume` as soon as they
   * exist and are dropped after it returns, so memory is bounded by a layer. Returns the loss.
   */
  gradients(batch: readonly (readonly number[])[], request: GradientRequest): Promise<number>;
  /**
   * Runs the model forward on a batch and hands each decoder layer's input and output hidden
   * states to `consume`, layer by layer in order (only one layer's are held at a time). Needs
   * `requires.forward`.
   */
  layerActivations(
    batch: readonly (readonly number[])[],
    consume: (a: LayerActivations) => void | Promise<void>,
  ): Promise<void>;
  /**
   * Hands over the element salience of one member parameter as soon as it exists (core folds it
   * into unit scores and drops it). Criteria may instead return all salience in their result.
   */
  salience(name: string, values: Float32Array | Float64Array): void;
  /**
   * Float32 state per parameter (e.g. Moreau's delta) that lives in memory while `bytes` fits and
   * spills to disk (a temp folder or the run's stateDir) otherwise. Dispose it when done.
   */
  state(bytes: number): Promise<ParamState>;
  readonly backend: Backend | undefined;
  readonly signal: AbortSignal | undefined;
  progress(p: Progress): void;
}

/** A JSON value: what criterion diagnostics may hold. */
export type DiagnosticValue =
  | string
  | number
  | boolean
  | null
  | readonly DiagnosticValue[]
  | { readonly [key: string]: DiagnosticValue };

/**
 * What a criterion measured about its own run, for the user to read (e.g. Moreau-GS's per-iteration
 * soft-threshold counters): JSON values under the criterion's own keys. Core does not interpret it.
 */
export type CriterionDiagnostics = { readonly [key: string]: DiagnosticValue };

export interface CriterionResult {
  /** Element salience per member parameter (channel scores and reductions are core's job)... */
  readonly salience?: ReadonlyMap<string, Float32Array | Float64Array>;
  /** ...or unit scores directly, parallel to ctx.groups. */
  readonly unitScores?: readonly Float64Array[];
  /** Measurements of this scoring run; prune() hands them on in its result (`diagnostics`). */
  readonly diagnostics?: CriterionDiagnostics;
  /** One-line warnings for the user (the CLI prints them on stderr); prune() hands them on. */
  readonly warnings?: readonly string[];
}

export interface Criterion {
  readonly name: string;
  readonly description: string;
  /** gradients: ctx.gradients; calibration: windows; forward: ctx.layerActivations (default false). */
  readonly requires: {
    readonly gradients: boolean;
    readonly calibration: boolean;
    readonly forward?: boolean;
  };
  /**
   * The scopes it can score (default: all). Criteria that hand over element salience work at
   * every scope; ones that return unit scores (e.g. random) list the scopes they score units of.
   */
  readonly scopes?: readonly ScopeKind[];
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Scoring iterations that draw calibration windows (for fresh-window sampling). */
  calibrationIterations?(options: OptionValues): number;
  /**
   * Whether its scores depend on the run's seed (draws from `ctx.rng`, or fresh calibration windows)
   * under these options: the robustness analysis re-scores stochastic criteria with other seeds to
   * measure their own seed-to-seed variation. Undeclared: the analysis watches whether a scoring run
   * draws from `ctx.rng` or uses more than one iteration of windows.
   */
  stochastic?(options: OptionValues): boolean;
  channelMode(options: OptionValues): ChannelMode;
  readonly defaultReduction: Reduction;
  score(ctx: CriterionContext, options: OptionValues): Promise<CriterionResult>;
}

/**
 * The registry lives on globalThis under a well-known symbol, so every copy of @moreau/core loaded
 * in a process shares it: a plugin resolved through `require` (the CommonJS build, hence a second
 * copy of core) registers where an ESM host looks, and vice versa.
 */
const REGISTRY_KEY = Symbol.for('@moreau/core/criteria');
const holder = globalThis as { [REGISTRY_KEY]?: Map<string, Criterion> };
if (!holder[REGISTRY_KEY]) holder[REGISTRY_KEY] = new Map();
const criteria: Map<string, Criterion> = holder[REGISTRY_KEY];

export function registerCriterion(c: Criterion): void {
  if (!/^[a-z][a-z0-9-]*$/.test(c?.name))
    throw new MoreauError(`registerCriterion: invalid name '${c?.name}' (lowercase, digits, dashes)`);
  const bad = (what: string): never => {
    throw new MoreauError(`registerCriterion: criterion '${c.name}' ${what}`);
  };
  if (typeof c.score !== 'function') bad('has no score() function');
  if (typeof c.channelMode !== 'function') bad('has no channelMode() function');
  if (
    typeof c.requires?.gradients !== 'boolean' ||
    typeof c.requires?.calibration !== 'boolean' ||
    (c.requires.forward !== undefined && typeof c.requires.forward !== 'boolean')
  )
    bad('must declare requires: { gradients: boolean, calibration: boolean, forward?: boolean }');
  if (
    c.scopes !== undefined &&
    (!Array.isArray(c.scopes) || c.scopes.length === 0 || c.scopes.some((s) => !SCOPE_KINDS.includes(s)))
  )
    bad(`declares scopes ${JSON.stringify(c.scopes)}; valid: a non-empty list of ${SCOPE_KINDS.join(', ')}`);
  if (!REDUCTIONS.includes(c.defaultReduction))
    bad(`has defaultReduction '${c.defaultReduction}'; valid: ${REDUCTIONS.join(', ')}`);
  if (c.options === null || typeof c.options !== 'object')
    bad('must declare options (an object, {} for none)');
  for (const [k, spec] of Object.entries(c.options)) {
    if (spec?.type !== 'number' && spec?.type !== 'boolean' && spec?.type !== 'enum')
      bad(`option '${k}' has type '${(spec as { type?: unknown })?.type}'; valid: number, boolean, enum`);
    if (spec.type === 'enum' && !spec.values.includes(spec.default))
      bad(`option '${k}' has default '${spec.default}', not one of ${spec.values.join(' | ')}`);
    if (spec.type !== 'enum' && typeof spec.default !== spec.type)
      bad(`option '${k}' has a default that is not a ${spec.type}`);
  }
  const existing = criteria.get(c.name);
  if (existing && existing !== c) {
    // The same package loaded twice (e.g. its ESM and CommonJS builds) declares the same criterion:
    // keep the first. Anything else under a taken name is a conflict.
    if (signature(existing) === signature(c)) return;
    throw new MoreauError(`registerCriterion: a different criterion is already registered as '${c.name}'`);
  }
  criteria.set(c.name, c);
}

/** What a criterion declares, for telling another copy of the same criterion from a different one. */
function signature(c: Criterion): string {
  return JSON.stringify([c.description, c.requires, c.options, c.defaultReduction, c.scopes]);
}

/** A criterion that cannot score at a scope is a usage error naming both. */
export function checkCriterionScope(c: Criterion, scope: ParsedScope): void {
  if (c.scopes && !c.scopes.includes(scope.kind)) {
    throw new InputError(
      `criterion '${c.name}' cannot prune at scope '${scope.name}': it scores ${c.scopes.join(', ')} only`,
      undefined,
      'scope',
    );
  }
}

export function listCriteria(): string[] {
  return [...criteria.keys()].sort();
}

export function getCriterion(name: string): Criterion {
  const c = criteria.get(name);
  if (!c) {
    throw new InputError(
      `unknown criterion '${name}'; available: ${listCriteria().join(', ') || '(none registered)'}`,
      undefined,
      'criterion',
    );
  }
  return c;
}

/**
 * Validates raw option values (strings from a command line are converted) against the
 * criterion's documented options, filling in defaults. Errors name the key and list valid ones.
 */
export function resolveOptions(c: Criterion, raw: Readonly<Record<string, unknown>> = {}): OptionValues {
  const out: OptionValues = {};
  for (const [k, spec] of Object.entries(c.options)) out[k] = spec.default;
  for (const [k, v] of Object.entries(raw)) {
    // Own keys only: 'constructor' or 'toString' are not options of any criterion.
    const spec = Object.hasOwn(c.options, k) ? c.options[k] : undefined;
    if (!spec) {
      throw new InputError(
        `criterion '${c.name}' has no option '${k}'; valid options: ${Object.keys(c.options).join(', ') || '(none)'}`,
        undefined,
        k,
      );
    }
    out[k] = coerce(c.name, k, spec, v);
  }
  return out;
}

function coerce(name: string, key: string, spec: OptionSpec, v: unknown): number | boolean | string {
  const bad = (expected: string): never => {
    throw new InputError(
      `criterion '${name}' option '${key}': expected ${expected}, got ${JSON.stringify(v)}`,
      undefined,
      key,
    );
  };
  switch (spec.type) {
    case 'number': {
      const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isFinite(n)) return bad('a finite number');
      if (spec.integer && !Number.isInteger(n)) return bad('an integer');
      if (spec.min !== undefined && n < spec.min) return bad(`a number >= ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) return bad(`a number <= ${spec.max}`);
      return n;
    }
    case 'boolean':
      if (typeof v === 'boolean') return v;
      if (v === 'true' || v === '1') return true;
      if (v === 'false' || v === '0') return false;
      return bad('true or false');
    case 'enum':
      if (typeof v === 'string' && spec.values.includes(v)) return v;
      return bad(`one of ${spec.values.join(' | ')}`);
  }
}

export type { HostTensor };
