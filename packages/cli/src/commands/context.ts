/** What every command shares: backend choice, model loading, plugins, calibration, options. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createOrtBackend } from '@moreau/backend-ort';
import { createTfjsBackend, type TfjsEngine } from '@moreau/backend-tfjs';
import {
  type Backend,
  type CalibrationSet,
  type Criterion,
  calibrationToJSON,
  getBackend,
  getCriterion,
  InputError,
  type OptionValues,
  parseCalibration,
  resolveOptions,
  sampleCalibration,
} from '@moreau/core';
import '@moreau/criteria';
import { readText } from '@moreau/eval';
import { type LoadedModel, loadModel } from '@moreau/models';
import { writeFileAtomic } from '../output.js';
import { parsePair, UsageError } from '../program.js';
import type { ProgressReporter } from '../progress.js';

export type Opts = Record<string, any>;

/**
 * The backend the flags ask for. --backend auto picks the best registered engine (ort first);
 * --device cpu|cuda means ort, a tfjs engine name (node-gpu | node | wasm) means tfjs.
 */
export async function openBackend(opts: Opts, progress: ProgressReporter): Promise<Backend> {
  const device = opts.device === undefined ? undefined : String(opts.device);
  let name = String(opts.backend ?? 'auto');
  if (name === 'auto') {
    if (device === undefined) return getBackend();
    name = ['node-gpu', 'node', 'wasm'].includes(device) ? 'tfjs' : 'ort';
  }
  if (name === 'ort') {
    if (device !== undefined && device !== 'cpu' && device !== 'cuda') {
      throw new UsageError(`--device for ort must be cpu or cuda, got '${device}'`);
    }
    return createOrtBackend({
      executionProvider: device === 'cuda' ? 'cuda' : 'cpu',
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      onNotice: (m) => progress.note(m),
    });
  }
  if (device === undefined) return createTfjsBackend({});
  if (device === 'cuda') return createTfjsBackend({ device: 'cuda' });
  if (!['node-gpu', 'node', 'wasm', 'cpu'].includes(device)) {
    throw new UsageError(`--device for tfjs must be cuda, node-gpu, node, wasm or cpu, got '${device}'`);
  }
  return createTfjsBackend({ engine: device as TfjsEngine });
}

export function backendInfo(b: Backend): { name: string; device: string } {
  return { name: b.name, device: b.device };
}

export async function openModel(source: string, opts: Opts): Promise<LoadedModel> {
  return loadModel(source, opts.tokenizer ? { tokenizer: String(opts.tokenizer) } : {});
}

/** Imports each --plugin: a path (relative to the working directory) or a package name. */
export async function loadPlugins(plugins: readonly string[] = []): Promise<void> {
  for (const p of plugins) {
    const asPath = isAbsolute(p) ? p : resolve(p);
    try {
      if (existsSync(asPath)) await import(pathToFileURL(asPath).href);
      else await importPackage(p);
    } catch (e) {
      if (e instanceof InputError) throw e;
      throw new InputError(`plugin '${p}' failed to load: ${(e as Error).message}`, p, 'plugin');
    }
  }
}

/**
 * A plugin package: resolved like any ESM import (its ESM build, sharing this process's core), or,
 * when it is installed only in the working directory's project, through that project's resolution.
 */
async function importPackage(name: string): Promise<void> {
  try {
    await import(name);
    return;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
  let file: string;
  try {
    file = createRequire(resolve('package.json')).resolve(name);
  } catch {
    throw new InputError(
      `plugin '${name}' not found: give a path to a module or an installed package name`,
      name,
      'plugin',
    );
  }
  await import(pathToFileURL(file).href);
}

/** The criterion and its options from --criterion and --opt; unknown names are usage errors. */
export function criterionFromFlags(
  name: string,
  optPairs: readonly string[],
): { criterion: Criterion; options: Record<string, string>; resolved: OptionValues } {
  let criterion: Criterion;
  try {
    criterion = getCriterion(name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const options: Record<string, string> = {};
  for (const pair of optPairs) {
    const [k, v] = parsePair('--opt', pair);
    options[k] = v;
  }
  try {
    return { criterion, options, resolved: resolveOptions(criterion, options) };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Reads a text source (txt, jsonl, parquet) into one string as the perplexity protocol joins it. */
export async function readTextSource(file: string): Promise<string> {
  if (!existsSync(file)) throw new InputError(`text file '${file}' not found`, file);
  return readText(file);
}

/** The calibration token stream: --calib text (default: the model's shipped held-out text). */
export async function calibrationTokens(loaded: LoadedModel, opts: Opts): Promise<number[]> {
  const file = opts.calib ? String(opts.calib) : loaded.defaultText;
  if (!file)
    throw new UsageError(
      'this criterion needs calibration text: pass --calib <file> (or --calib-tokens <file>)',
    );
  return loaded.tokenizer.encode(await readTextSource(file), { bos: true });
}

/** Windows replayed from --calib-tokens, or undefined when the flag is absent. */
export async function replayedCalibration(
  loaded: LoadedModel,
  opts: Opts,
): Promise<CalibrationSet | undefined> {
  if (!opts.calibTokens) return undefined;
  const file = String(opts.calibTokens);
  if (!existsSync(file)) throw new InputError(`calibration tokens file '${file}' not found`, file);
  return parseCalibration(await readFile(file, 'utf8'), file, loaded.model.config.vocabSize);
}

/**
 * Calibration windows: replayed from --calib-tokens, or drawn from the calibration text, as many
 * iterations as the criterion draws; written to --save-calib when asked.
 */
export async function calibrationFromFlags(
  loaded: LoadedModel,
  opts: Opts,
  iterations: number,
): Promise<CalibrationSet> {
  const set =
    (await replayedCalibration(loaded, opts)) ??
    sampleCalibration(await calibrationTokens(loaded, opts), {
      samples: opts.calibSamples ?? 4,
      seqLen: opts.calibSeqLen ?? 128,
      iterations,
      fresh: true,
      seed: opts.seed ?? 1,
    });
  if (opts.saveCalib) await writeFileAtomic(String(opts.saveCalib), calibrationToJSON(set));
  return set;
}

/**
 * Fails fast, before a model loads, when a file named by a flag is missing: the message names the
 * flag and the file. `files` holds [flag, path or undefined] pairs.
 */
export function requireFiles(files: readonly (readonly [string, unknown])[]): void {
  for (const [flag, file] of files) {
    if (file === undefined || file === null || file === false) continue;
    if (!existsSync(String(file)))
      throw new InputError(`${flag}: file '${String(file)}' not found`, String(file), flag);
  }
}

/** The file flags every calibrating command shares, plus NAME=FILE lists. */
export function requireInputFiles(opts: Opts, lists: Record<string, readonly [string, string][]> = {}): void {
  requireFiles([
    ['--tokenizer', opts.tokenizer],
    ['--calib', opts.calib],
    ['--calib-tokens', opts.calibTokens],
    ['--plan', opts.plan],
    ...Object.entries(lists).flatMap(([flag, pairs]) =>
      pairs.map(([name, file]) => [`${flag} ${name}`, file] as const),
    ),
  ]);
}

/** NAME=FILE pairs of a repeatable flag, names unique. */
export function namedFiles(flag: string, pairs: readonly string[] = []): [string, string][] {
  const seen = new Set<string>();
  return pairs.map((p) => {
    const [name, file] = parsePair(flag, p);
    if (seen.has(name)) throw new UsageError(`${flag}: the name '${name}' is given twice`);
    seen.add(name);
    return [name, file];
  });
}
