/**
 * Every flag's parsing and validation, in one place: the argument parsers commander runs while it
 * reads the command line, and the checks a command runs before it loads a model (names against
 * the criterion registry, NAME=FILE lists, files that must exist, flags that exclude each other).
 * Defaults are not restated here: program.ts declares them, and the parsed flags carry them.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import {
  type CalibrationSampling,
  type Criterion,
  type DiagnosticValue,
  getCriterion,
  getPreset,
  InputError,
  type OptionValues,
  type PlanOptions,
  type PruneScope,
  type PruningPreset,
  parseRanking as parseRankingName,
  parseScope,
  type Ranking,
  type ResolvedPreset,
  resolveOptions,
  resolvePreset,
} from '@moreau/core';
import {
  parsePerturbation,
  perturbationName,
  STANDARD_TASKS,
  type SweepAxis,
  type TextSourceOptions,
} from '@moreau/eval';
import { InvalidArgumentError } from 'commander';
import type {
  CalibFlags,
  ExecFlags,
  Explicit,
  ModelFlags,
  PruneFlags,
  StateFlags,
  TextFlags,
} from '../program.js';

/** A flag error found by a command: exit 2 with the command's help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Runs `f`, turning any error into a usage error (optionally prefixed with the flag). */
function usage<T>(f: () => T, prefix = ''): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError(`${prefix}${(e as Error).message}`);
  }
}

// Commander's argument parsers: a bad value is reported by commander with the flag's name.

export const collect = (value: string, previous: string[]) => [...previous, value];

export function parseRatio(value: string): number {
  const r = Number(value);
  if (value.trim() === '' || !Number.isFinite(r) || r < 0 || r >= 1) {
    throw new InvalidArgumentError(`ratio must be a number in [0, 1), got '${value}'`);
  }
  return r;
}

export function parseIntArg(name: string, min = 1) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${value}'`);
    return n;
  };
}

export function parseNumberArg(
  name: string,
  range: { min?: number; minExclusive?: boolean; max?: number } = {},
) {
  const { min, minExclusive, max } = range;
  const expected =
    min !== undefined && max !== undefined
      ? `a number in ${minExclusive ? '(' : '['}${min}, ${max}]`
      : min !== undefined
        ? `a number ${minExclusive ? '>' : '>='} ${min}`
        : 'a number';
  return (value: string): number => {
    const n = Number(value);
    const below = min !== undefined && (minExclusive ? n <= min : n < min);
    if (value.trim() === '' || !Number.isFinite(n) || below || (max !== undefined && n > max))
      throw new InvalidArgumentError(`${name} must be ${expected}, got '${value}'`);
    return n;
  };
}

/** A value that looks like a flag was most likely a flag whose own value was forgotten. */
function looksLikeFlag(value: string): boolean {
  return value.startsWith('-') && value !== '-';
}

/** A file or directory path; a value that looks like a flag (`--out -q`) is a usage error. */
export function parsePath(name: string) {
  return (value: string): string => {
    if (value === '' || looksLikeFlag(value))
      throw new InvalidArgumentError(
        `${name} needs a path, got '${value}' (a flag? write ./${value} for a file of that name)`,
      );
    if (value === '-')
      throw new InvalidArgumentError(`${name} needs a path; '-' (stdout) is only for --json`);
    return value;
  };
}

/** A repeatable path flag. */
export function collectPath(name: string) {
  const parse = parsePath(name);
  return (value: string, previous: string[]) => [...previous, parse(value)];
}

/** --json: a file, or '-' for stdout; a value that looks like a flag is a usage error. */
export function parseJsonTarget(value: string): string {
  if (value === '' || looksLikeFlag(value))
    throw new InvalidArgumentError(
      `--json needs a file name or '-' for stdout, got '${value}' (a flag? write ./${value} for a file of that name)`,
    );
  return value;
}

export function parseLayerRange(value: string): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(value);
  if (!m || Number(m[1]) > Number(m[2]))
    throw new InvalidArgumentError(`layer range must be A:B with A <= B (half-open), got '${value}'`);
  return [Number(m[1]), Number(m[2])];
}

/** --scope: block | channel | layer | unstructured | N:M. */
export function parseScopeArg(value: string): PruneScope {
  try {
    return parseScope(value).name;
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** --ranking: local | global-per-kind | global-pool ('global' = global-per-kind). */
export function parseRanking(value: string): Ranking {
  try {
    return parseRankingName(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** --latency BxT: batch and tokens per row. */
export function parseBatchShape(value: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(value);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1)
    throw new InvalidArgumentError(`expected BxT with positive integers, e.g. 1x64, got '${value}'`);
  return [Number(m[1]), Number(m[2])];
}

const TFJS_DEVICES = ['cuda', 'node-gpu', 'node', 'wasm', 'cpu'] as const;
type TfjsDevice = (typeof TFJS_DEVICES)[number];

/**
 * --backend and --device: auto picks the best registered engine (ort first); --device cpu|cuda
 * means ort, a tfjs engine name (node-gpu | node | wasm) means tfjs.
 */
export function backendFlags({
  backend,
  device,
}: ModelFlags):
  | { name: 'auto' }
  | { name: 'ort'; device: 'cpu' | 'cuda' }
  | { name: 'tfjs'; device?: TfjsDevice } {
  let name: string = backend;
  if (name === 'auto') {
    if (device === undefined) return { name: 'auto' };
    name = ['node-gpu', 'node', 'wasm'].includes(device) ? 'tfjs' : 'ort';
  }
  if (name === 'ort') {
    if (device !== undefined && device !== 'cpu' && device !== 'cuda')
      throw new UsageError(`--device for ort must be cpu or cuda, got '${device}'`);
    return { name: 'ort', device: device ?? 'cpu' };
  }
  if (device !== undefined && !TFJS_DEVICES.includes(device as TfjsDevice))
    throw new UsageError(`--device for tfjs must be cuda, node-gpu, node, wasm or cpu, got '${device}'`);
  return { name: 'tfjs', device: device as TfjsDevice | undefined };
}

// Checks the commands run before loading a model.

/** NAME=VALUE pairs (for --ppl, --task, --opt). */
export function parsePair(flag: string, value: string): [string, string] {
  const i = value.indexOf('=');
  if (i <= 0 || i === value.length - 1) throw new UsageError(`${flag} expects NAME=VALUE, got '${value}'`);
  return [value.slice(0, i), value.slice(i + 1)];
}

/** NAME=FILE pairs of a repeatable flag, names unique. */
export function namedFiles(flag: string, pairs: readonly string[]): [string, string][] {
  const seen = new Set<string>();
  return pairs.map((p) => {
    const [name, file] = parsePair(flag, p);
    if (seen.has(name)) throw new UsageError(`${flag}: the name '${name}' is given twice`);
    seen.add(name);
    return [name, file];
  });
}

function listFlag(flag: string, value: string): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new UsageError(`${flag} needs a comma-separated list`);
  return items;
}

/** --ratios: each in [0, 1), no duplicates, kept in the given order. */
export function ratiosFlag(value: string): number[] {
  const ratios = listFlag('--ratios', value).map((r) => usage(() => parseRatio(r), '--ratios: '));
  if (new Set(ratios).size !== ratios.length)
    throw new UsageError(`--ratios: a ratio is listed twice in '${value}'`);
  return ratios;
}

/** --scopes: each a valid scope, no duplicates, kept in the given order. */
export function scopesFlag(value: string): PruneScope[] {
  const scopes = listFlag('--scopes', value).map((s) => usage(() => parseScope(s).name, '--scopes: '));
  if (new Set(scopes).size !== scopes.length)
    throw new UsageError(`--scopes: a scope is listed twice in '${value}'`);
  return scopes;
}

/** Every criterion must score every scope asked for: a mismatch names both (before any work). */
export function checkCriterionScopes(names: readonly string[], scopes: readonly PruneScope[]): void {
  for (const name of names) {
    const c = getCriterion(name);
    for (const scope of scopes) {
      if (c.scopes && !c.scopes.includes(parseScope(scope).kind))
        throw new UsageError(
          `criterion '${name}' cannot prune at scope '${scope}': it scores ${c.scopes.join(', ')} only`,
        );
    }
  }
}

/** --criteria: names checked against the registry (the error lists the valid ones). */
export function criteriaFlag(value: string, { unique = false } = {}): string[] {
  const names = listFlag('--criteria', value);
  for (const n of names) usage(() => getCriterion(n));
  if (unique && new Set(names).size !== names.length)
    throw new UsageError(`--criteria: a criterion is listed twice in '${value}'`);
  return names;
}

/**
 * --perturb: every item parsed now (canonical names), so a typo fails before any work; an item
 * listed twice (under any spelling) and a second seed:K are usage errors.
 */
export function perturbFlag(value: string): string[] {
  const parsed = listFlag('--perturb', value).map((p) => usage(() => parsePerturbation(p), '--perturb: '));
  const names = parsed.map(perturbationName);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) throw new UsageError(`--perturb: '${n}' is listed twice in '${value}'`);
  });
  if (parsed.filter((p) => p.kind === 'seed').length > 1)
    throw new UsageError(`--perturb: list one seed:K, got '${value}'`);
  return names;
}

/**
 * --sweep KEY=V1,V2,...: each key an option of at least one listed criterion, given once and not
 * also set with --opt; each value valid for every criterion that has the key (converted as
 * resolveOptions converts it), no value twice.
 */
export function sweepFlags(
  pairs: readonly string[],
  criteria: readonly { name: string; options: Record<string, string | number | boolean> }[],
  optPairs: readonly string[] = [],
): SweepAxis[] {
  const keys = new Set<string>();
  return pairs.map((pair) => {
    const [key, list] = parsePair('--sweep', pair);
    if (keys.has(key)) throw new UsageError(`--sweep ${key}: the option is swept twice`);
    keys.add(key);
    const owners = criteria.filter((c) => Object.hasOwn(getCriterion(c.name).options, key));
    if (owners.length === 0) {
      const valid = [...new Set(criteria.flatMap((c) => Object.keys(getCriterion(c.name).options)))];
      throw new UsageError(
        `--sweep ${key}: none of ${criteria.map((c) => c.name).join(', ')} has this option; valid: ${valid.join(', ') || '(none)'}`,
      );
    }
    if (optPairs.some((p) => p.slice(0, p.indexOf('=')) === key))
      throw new UsageError(`--sweep ${key}: also set with --opt ${key}=...; drop one`);
    const raw = list.split(',').map((v) => v.trim());
    if (raw.some((v) => v === '')) throw new UsageError(`--sweep ${key}: empty value in '${list}'`);
    const values = raw.map((v) => {
      let converted: string | number | boolean = v;
      for (const c of owners) {
        const r = usage(
          () => resolveOptions(getCriterion(c.name), { ...c.options, [key]: v }),
          `--sweep ${key}=${v}: `,
        );
        converted = r[key]!;
      }
      return converted;
    });
    values.forEach((v, i) => {
      if (values.indexOf(v) !== i)
        throw new UsageError(`--sweep ${key}: the value '${raw[i]}' is listed twice`);
    });
    return { key, values };
  });
}

/** The --task names: the harness's multiple-choice tasks, and LAMBADA. */
const TASK_NAMES: readonly string[] = [...STANDARD_TASKS, 'lambada'];

/** --task NAME=FILE pairs, names checked. */
export function taskFlags(pairs: readonly string[]): [string, string][] {
  const tasks = namedFiles('--task', pairs);
  for (const [name] of tasks) {
    if (!TASK_NAMES.includes(name))
      throw new UsageError(`--task: unknown task '${name}'; valid: ${TASK_NAMES.join(', ')}`);
  }
  return tasks;
}

type OptionDefaults = Readonly<Record<string, number | boolean | string>>;

/** The preset's criterion options that `criterion` documents (another criterion ignores the rest). */
function presetOptionsFor(criterion: Criterion, preset: PruningPreset | undefined): OptionDefaults {
  if (!preset) return {};
  return Object.fromEntries(
    Object.entries(preset.options).filter(([k]) => Object.hasOwn(criterion.options, k)),
  );
}

/**
 * One criterion and its options from --criterion and --opt (prune), over the preset's defaults:
 * the preset names the criterion when --criterion is absent, and its options apply where --opt does
 * not set the same key.
 */
export function criterionFromFlags(
  name: string | undefined,
  optPairs: readonly string[],
  preset?: PruningPreset,
): { criterion: Criterion; options: Record<string, string | number | boolean>; resolved: OptionValues } {
  const chosen = name ?? preset?.criterion;
  if (chosen === undefined)
    throw new UsageError(
      "required option '--criterion <name>' not specified (or give --plan FILE or --preset NAME)",
    );
  const criterion = usage(() => getCriterion(chosen));
  const options = {
    ...presetOptionsFor(criterion, preset),
    ...Object.fromEntries(optPairs.map((p) => parsePair('--opt', p))),
  };
  return { criterion, options, resolved: usage(() => resolveOptions(criterion, options)) };
}

/** --preset NAME (commander checked the name), or undefined. */
export function presetFlag(flags: { preset?: string }): PruningPreset | undefined {
  return flags.preset === undefined ? undefined : usage(() => getPreset(flags.preset!));
}

/**
 * --opt KEY=VALUE for several criteria (compare, robustness): each pair applies to the criteria
 * that document KEY, and a key no listed criterion documents is a usage error.
 */
export function criteriaOptions(
  criteria: readonly string[],
  optPairs: readonly string[],
  preset?: PruningPreset,
): { name: string; options: Record<string, string | number | boolean> }[] {
  for (const p of optPairs) {
    const k = p.slice(0, Math.max(0, p.indexOf('=')));
    if (!criteria.some((n) => k in getCriterion(n).options)) {
      throw new UsageError(
        `--opt ${k}: none of ${criteria.join(', ')} has this option; valid: ${[...new Set(criteria.flatMap((n) => Object.keys(getCriterion(n).options)))].join(', ')}`,
      );
    }
  }
  return criteria.map((name) => {
    const c = getCriterion(name);
    const options: Record<string, string | number | boolean> = { ...presetOptionsFor(c, preset) };
    for (const p of optPairs) {
      const k = p.slice(0, p.indexOf('='));
      if (k in c.options) options[k] = p.slice(k.length + 1);
    }
    usage(() => resolveOptions(c, options));
    return { name, options };
  });
}

const DTYPES: readonly string[] = ['float32', 'float16', 'bfloat16'];

/** prune --dtype. */
export function dtypeFlag(dtype: string | undefined): void {
  if (dtype && !DTYPES.includes(dtype))
    throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got '${dtype}'`);
}

/** prune: either --plan alone, or --criterion with --ratio (or a --preset that sets them). */
export function checkPlanFlags(flags: PruneFlags): void {
  if (flags.plan) {
    const excluded = [
      [flags.criterion, '--criterion'],
      [flags.ratio, '--ratio'],
      [flags.preset, '--preset'],
      [flags.calibTokens, '--calib-tokens'],
      [flags.calib, '--calib'],
      [flags.saveCalib, '--save-calib'],
    ] as const;
    for (const [value, flag] of excluded) {
      if (value !== undefined) throw new UsageError(`--plan applies a saved plan as it is: drop ${flag}`);
    }
    if (flags.steps !== 1 || flags.opt.length)
      throw new UsageError('--plan applies a saved plan as it is: drop --steps / --opt');
    if (flags.keepFirst !== undefined)
      throw new UsageError('--plan applies a saved plan as it is: drop --keep-first');
  } else if (flags.keepFirst !== undefined) {
    // LLM-Pruner's rule decides without a criterion; core checks the scope and the rest.
    if (flags.criterion !== undefined || flags.ratio !== undefined || flags.preset !== undefined)
      throw new UsageError(
        '--keep-first keeps the first N layers unscored: drop --criterion, --ratio and --preset',
      );
  } else if (flags.preset === undefined) {
    if (flags.criterion === undefined)
      throw new UsageError(
        "required option '--criterion <name>' not specified (or give --plan FILE, --preset NAME, or --scope layer --keep-first N)",
      );
    if (flags.ratio === undefined && parseScope(flags.scope).kind !== 'n:m')
      throw new UsageError(
        "required option '--ratio <r>' not specified (or give --plan FILE or --preset NAME)",
      );
  }
}

/** Whether a flag was given on the command line (a missing `explicit` set: every flag counts as given). */
export function given(flags: Explicit, key: string): boolean {
  return flags.explicit ? flags.explicit.has(key) : true;
}

/** The calibration draw: --calib-sampling / --calib-samples / --calib-seq-len, else the preset's. */
export interface CalibrationChoice {
  readonly sampling: CalibrationSampling;
  readonly samples: number;
  readonly seqLen: number;
}

export function calibrationChoice(flags: CalibFlags, preset: ResolvedPreset | undefined): CalibrationChoice {
  const pick = <K extends 'calibSampling' | 'calibSamples' | 'calibSeqLen'>(
    key: K,
    fromPreset: CalibFlags[K] | undefined,
  ): CalibFlags[K] => (!preset || given(flags, key) || fromPreset === undefined ? flags[key] : fromPreset);
  return {
    sampling: pick('calibSampling', preset?.calibration.sampling),
    samples: pick('calibSamples', preset?.calibration.samples),
    seqLen: pick('calibSeqLen', preset?.calibration.seqLen),
  };
}

/** --ppl-join and --field as readText options for one file (jsonl / parquet rows are always rows). */
export function textSourceOptions(flags: TextFlags, file: string): TextSourceOptions {
  const tabular = /\.(jsonl|ndjson|parquet)$/i.test(file);
  if (tabular && flags.pplJoin === 'document')
    throw new UsageError(`--ppl-join document: '${file}' is jsonl / parquet, whose rows are always rows`);
  return {
    ...(flags.field ? { field: flags.field } : {}),
    ...(!tabular && flags.pplJoin === 'rows' ? { documents: 'rows' as const } : {}),
  };
}

/**
 * Fails fast, before a model loads, when a file named by a flag is missing: the message names the
 * flag and the file. Checks --tokenizer, --calib, --calib-tokens and --plan where given, then
 * the NAME=FILE lists (by flag).
 */
export function requireInputFiles(
  flags: { tokenizer?: string; calib?: string; calibTokens?: string; plan?: string },
  lists: Record<string, readonly [string, string][]> = {},
): void {
  const files = [
    ['--tokenizer', flags.tokenizer],
    ['--calib', flags.calib],
    ['--calib-tokens', flags.calibTokens],
    ['--plan', flags.plan],
    ...Object.entries(lists).flatMap(([flag, pairs]) =>
      pairs.map(([name, file]) => [`${flag} ${name}`, file]),
    ),
  ];
  for (const [flag, file] of files) {
    if (file === undefined) continue;
    if (!existsSync(file)) throw new InputError(`${flag}: file '${file}' not found`, file, flag);
    if (flag !== '--tokenizer' && statSync(file).isDirectory())
      throw new InputError(`${flag}: '${file}' is a directory, not a file`, file, flag);
  }
}

/** --adapter: an existing folder, checked before the model loads (its files when it loads). */
export function requireAdapterDir(dir: string | undefined): void {
  if (dir === undefined) return;
  if (!existsSync(dir)) throw new InputError(`--adapter: folder '${dir}' not found`, dir, '--adapter');
  if (!statSync(dir).isDirectory())
    throw new InputError(
      `--adapter: '${dir}' is a file; give the PEFT folder that holds adapter_config.json and adapter_model.safetensors`,
      dir,
      '--adapter',
    );
}

/** --ranking, or --global (its older spelling); both at once must agree. */
export function rankingFlag(flags: CalibFlags): Ranking | undefined {
  if (flags.global && flags.ranking !== undefined && flags.ranking !== 'global-per-kind')
    throw new UsageError(
      `--global means --ranking global-per-kind: drop one of --global and --ranking ${flags.ranking}`,
    );
  return flags.global ? 'global-per-kind' : (flags.ranking as Ranking | undefined);
}

/**
 * --state-dir: an existing path must be a writable folder (a missing one is created when state
 * spills), checked before any work.
 */
export function checkStateDir(dir: string | undefined): void {
  if (dir === undefined || !existsSync(dir)) return;
  if (!statSync(dir).isDirectory())
    throw new InputError(`--state-dir '${dir}' is a file, not a folder`, dir, '--state-dir');
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new InputError(`--state-dir '${dir}' is not writable`, dir, '--state-dir');
  }
}

/**
 * Windows longer than the model's context are a usage error (memory would grow with the flag):
 * --seq-len, --calib-seq-len.
 */
export function checkWindowLength(flag: string, length: number, maxPositions: number): void {
  if (length > maxPositions)
    throw new UsageError(`${flag} ${length} exceeds the model's context of ${maxPositions} positions`);
}

/**
 * The prune options the selection flags set at a scope (--seed, --ranking / --global, --attn-layers,
 * --mlp-layers, --reduction, --keep-low-ratio) and the execution flags (--exec, --state-dir), over the preset's layer ranges and reduction (a
 * preset describes block pruning: its ranges apply at the block scope only). A flag the scope has
 * no use for is passed on, and core's error names both; with `lenient` (compare, several scopes at
 * once) it is left out for that scope instead.
 */
export function planOptionsFromFlags(
  flags: CalibFlags & ExecFlags & StateFlags,
  scope: PruneScope,
  { lenient = false, preset }: { lenient?: boolean; preset?: ResolvedPreset } = {},
): Pick<
  PlanOptions,
  | 'seed'
  | 'scope'
  | 'ranking'
  | 'attnLayers'
  | 'mlpLayers'
  | 'reduction'
  | 'keepLowRatio'
  | 'mode'
  | 'stateDir'
> {
  const kind = parseScope(scope).kind;
  const applies = (yes: boolean) => yes || !lenient;
  const elements = kind === 'unstructured' || kind === 'n:m';
  const ranking = rankingFlag(flags);
  const ranges = kind === 'block' ? preset : undefined;
  const reduction = flags.reduction || (elements ? undefined : preset?.reduction);
  return {
    seed: flags.seed,
    scope,
    ...(ranking !== undefined && applies(kind === 'block') ? { ranking } : {}),
    ...(applies(kind !== 'channel')
      ? {
          attnLayers: flags.attnLayers ?? ranges?.attnLayers,
          mlpLayers: flags.mlpLayers ?? ranges?.mlpLayers,
        }
      : {}),
    ...(applies(!elements) && reduction ? { reduction: reduction as PlanOptions['reduction'] } : {}),
    ...(flags.keepLowRatio !== undefined && applies(elements) ? { keepLowRatio: flags.keepLowRatio } : {}),
    mode: flags.exec,
    ...(flags.stateDir ? { stateDir: flags.stateDir } : {}),
  };
}

/** The preset resolved for a loaded model's depth and context length. */
export function resolvedPreset(
  preset: PruningPreset | undefined,
  config: { numHiddenLayers: number; maxPositionEmbeddings: number },
): ResolvedPreset | undefined {
  return preset
    ? resolvePreset(preset, { numLayers: config.numHiddenLayers, maxPositions: config.maxPositionEmbeddings })
    : undefined;
}

/**
 * The provenance of a scoring run: the preset (with the repository and commit it follows), every
 * value the run resolved to, and which of them the command line set over the preset.
 */
export function scoringSettings(
  flags: CalibFlags & { steps?: number },
  preset: ResolvedPreset | undefined,
  run: {
    readonly criterion: string;
    readonly options: OptionValues;
    readonly ratio: number | readonly number[];
    readonly reduction: string;
    readonly attnLayers: readonly [number, number];
    readonly mlpLayers: readonly [number, number];
    readonly scope: string;
    readonly ranking: string | null;
    readonly calibration: (CalibrationChoice & { source: string | null; iterations: number }) | null;
  },
): Record<string, DiagnosticValue> {
  const keys = [
    'criterion',
    'ratio',
    'opt',
    'reduction',
    'attnLayers',
    'mlpLayers',
    'calibSampling',
    'calibSamples',
    'calibSeqLen',
  ];
  const c = run.calibration;
  return {
    preset: preset ? preset.name : null,
    preset_source: preset ? { ...preset.source, files: [...preset.source.files] } : null,
    criterion: run.criterion,
    options: { ...run.options },
    ratio: typeof run.ratio === 'number' ? run.ratio : [...run.ratio],
    reduction: run.reduction,
    seed: flags.seed,
    scope: run.scope,
    ranking: run.ranking,
    attn_layers: [...run.attnLayers],
    mlp_layers: [...run.mlpLayers],
    ...(flags.steps !== undefined ? { steps: flags.steps } : {}),
    calibration: c
      ? {
          source: c.source,
          sampling: flags.calibTokens ? 'replayed' : c.sampling,
          samples: c.samples,
          seq_len: c.seqLen,
          ...(c.sampling === 'patches' && !flags.calibTokens ? { chars_per_token: 8 } : {}),
          iterations: c.iterations,
          fresh: typeof run.options.freshCalibration === 'boolean' ? run.options.freshCalibration : null,
        }
      : null,
    from_flags: preset ? keys.filter((k) => flags.explicit?.has(k)) : [],
  };
}
