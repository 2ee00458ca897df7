/**
 * The criterion plugin interface. A criterion declares what it needs and returns element
 * salience (or unit scores); core turns that into a plan. Criteria never see the model graph.
 */
import type { Backend } from '../backend.js';
import type { HostTensor } from '../dtype.js';
import { InputError, MoreauError } from '../errors.js';
import type { Rng } from '../rng.js';
import type { CalibrationSet } from './calibration.js';
import type { PrunableGroup } from './groups.js';
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

export interface CriterionContext {
  /** float32 values of every parameter that belongs to a prunable group. */
  readonly weights: ReadonlyMap<string, Float32Array>;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readonly groups: readonly PrunableGroup[];
  /** Seeded for this run: same seed, same draws on every backend. */
  readonly rng: Rng;
  readonly calibration: CalibrationSet | undefined;
  /**
   * Loss and gradients at the given member weights (default: the model's) on a batch of
   * token windows. Runs forward + backward as one compiled graph on the backend.
   */
  gradient(
    batch: readonly (readonly number[])[],
    weights?: ReadonlyMap<string, Float32Array>,
  ): Promise<GradientResult>;
  /**
   * gradient() handed over in parts, for models whose gradients do not all fit in memory next to
   * the criterion's own state: `consume` receives each part's gradients (a subset of the members)
   * as soon as it is computed, and they are dropped when it returns, before the next part runs.
   * One part (one forward + backward, the same numbers as gradient()) whenever memory allows;
   * otherwise one forward + backward per part, each producing only its part's gradients. Returns
   * the loss. Optional: contexts built by hand may omit it (use gradient() then).
   */
  gradientParts?(
    batch: readonly (readonly number[])[],
    weights: ReadonlyMap<string, Float32Array>,
    consume: (grads: Map<string, Float32Array>) => void | Promise<void>,
  ): Promise<number>;
  readonly backend: Backend | undefined;
  readonly signal: AbortSignal | undefined;
  progress(p: Progress): void;
}

export interface CriterionResult {
  /** Element salience per member parameter (channel scores and reductions are core's job)... */
  readonly salience?: ReadonlyMap<string, Float32Array | Float64Array>;
  /** ...or unit scores directly, parallel to ctx.groups. */
  readonly unitScores?: readonly Float64Array[];
}

export interface Criterion {
  readonly name: string;
  readonly description: string;
  readonly requires: { readonly gradients: boolean; readonly calibration: boolean };
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Scoring iterations that draw calibration windows (for fresh-window sampling). */
  calibrationIterations?(options: OptionValues): number;
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
  if (typeof c.requires?.gradients !== 'boolean' || typeof c.requires?.calibration !== 'boolean')
    bad('must declare requires: { gradients: boolean, calibration: boolean }');
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
  return JSON.stringify([c.description, c.requires, c.options, c.defaultReduction]);
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
