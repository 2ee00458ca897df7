/**
 * What every command shares: the command context (flags, progress, signal, stdout, backend), model
 * loading, plugins and calibration windows.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createOrtBackend } from '@moreau/backend-ort';
import { createTfjsBackend } from '@moreau/backend-tfjs';
import {
  type Backend,
  type CalibrationSet,
  calibrationToJSON,
  getBackend,
  InputError,
  parseCalibration,
  sampleCalibration,
  sampleCalibrationPatches,
} from '@moreau/core';
import '@moreau/criteria';
import { readText, type TextSourceOptions } from '@moreau/eval';
import { type LoadedModel, loadModel } from '@moreau/models';
import type { CalibFlags, ModelFlags } from '../program.js';
import { backendFlags, type CalibrationChoice, calibrationChoice, UsageError } from './flags.js';
import { writeFileAtomic } from './output.js';
import type { ProgressReporter } from './progress.js';

/** One run of a command: its parsed flags, progress on stderr, the Ctrl-C signal, stdout for results. */
export interface CommandContext<F> {
  readonly flags: F;
  readonly progress: ProgressReporter;
  readonly signal: AbortSignal;
  /** Results (and only results) go here: stdout. */
  readonly out: (text: string) => void;
}

/** A command context with the tensor engine open. */
export interface BackendContext<F> extends CommandContext<F> {
  readonly backend: Backend;
}

/** Opens the backend the flags ask for, runs `body` with it, and disposes of it. */
export async function withBackend<F extends ModelFlags, T>(
  ctx: CommandContext<F>,
  body: (ctx: BackendContext<F>) => Promise<T>,
): Promise<T> {
  const backend = await openBackend(ctx.flags, ctx.progress);
  try {
    return await body({ ...ctx, backend });
  } finally {
    await backend.dispose();
  }
}

/** The backend --backend and --device ask for (see backendFlags). */
async function openBackend(flags: ModelFlags, progress: ProgressReporter): Promise<Backend> {
  const choice = backendFlags(flags);
  if (choice.name === 'auto') return getBackend();
  if (choice.name === 'ort') {
    return createOrtBackend({
      executionProvider: choice.device,
      ...(flags.threads ? { intraOpNumThreads: flags.threads } : {}),
      onNotice: (m) => progress.note(m),
    });
  }
  const { device } = choice;
  return createTfjsBackend(device === undefined ? {} : device === 'cuda' ? { device } : { engine: device });
}

export function backendInfo(b: Backend): { name: string; device: string } {
  return { name: b.name, device: b.device };
}

export async function openModel(source: string, flags: ModelFlags): Promise<LoadedModel> {
  return loadModel(source, flags.tokenizer ? { tokenizer: flags.tokenizer } : {});
}

/** Imports each --plugin: a path (relative to the working directory) or a package name. */
export async function loadPlugins(plugins: readonly string[]): Promise<void> {
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

/**
 * Reads a text source (txt, jsonl, parquet) into one string as the perplexity protocol joins it
 * (`options`: --ppl-join / --field, see textSourceOptions).
 */
export async function readTextSource(file: string, options: TextSourceOptions = {}): Promise<string> {
  if (!existsSync(file)) throw new InputError(`text file '${file}' not found`, file);
  return readText(file, options);
}

/** The calibration text file: --calib, else the model's shipped held-out text. */
function calibrationFile(loaded: LoadedModel, flags: CalibFlags): string {
  const file = flags.calib || loaded.defaultText;
  if (!file)
    throw new UsageError(
      'this criterion needs calibration text: pass --calib <file> (or --calib-tokens <file>)',
    );
  return file;
}

/** The calibration token stream: --calib text (default: the model's shipped held-out text). */
export async function calibrationTokens(loaded: LoadedModel, flags: CalibFlags): Promise<number[]> {
  return loaded.tokenizer.encode(await calibrationText(loaded, flags), { bos: true });
}

/** The calibration text: --calib (default: the model's shipped held-out text). */
export async function calibrationText(loaded: LoadedModel, flags: CalibFlags): Promise<string> {
  return readTextSource(calibrationFile(loaded, flags));
}

/** Windows replayed from --calib-tokens, or undefined when the flag is absent. */
export async function replayedCalibration(
  loaded: LoadedModel,
  flags: CalibFlags,
): Promise<CalibrationSet | undefined> {
  const file = flags.calibTokens;
  if (!file) return undefined;
  if (!existsSync(file)) throw new InputError(`calibration tokens file '${file}' not found`, file);
  return parseCalibration(await readFile(file, 'utf8'), file, loaded.model.config.vocabSize);
}

/**
 * Draws calibration windows from the calibration text as `choice` says: token-stream windows, or
 * the released MoreauPruner's character patches (each tokenized with BOS, cut to seqLen tokens).
 * Every iteration gets fresh windows; criteria that reuse the first ask for one iteration.
 */
export async function drawCalibration(
  loaded: LoadedModel,
  flags: CalibFlags,
  choice: CalibrationChoice,
  iterations: number,
): Promise<CalibrationSet> {
  const options = {
    samples: choice.samples,
    seqLen: choice.seqLen,
    iterations,
    fresh: true,
    seed: flags.seed,
  };
  if (choice.sampling === 'patches') {
    const text = await calibrationText(loaded, flags);
    return sampleCalibrationPatches(text, (patch) => loaded.tokenizer.encode(patch, { bos: true }), options);
  }
  return sampleCalibration(await calibrationTokens(loaded, flags), options);
}

/**
 * Calibration windows: replayed from --calib-tokens, or drawn from the calibration text (see
 * drawCalibration; default: the flags' sampling, samples and length), as many iterations as the
 * criterion draws; written to --save-calib when asked.
 */
export async function calibrationFromFlags(
  loaded: LoadedModel,
  flags: CalibFlags,
  iterations: number,
  choice: CalibrationChoice = calibrationChoice(flags, undefined),
): Promise<CalibrationSet> {
  const set =
    (await replayedCalibration(loaded, flags)) ?? (await drawCalibration(loaded, flags, choice, iterations));
  if (flags.saveCalib) await writeFileAtomic(flags.saveCalib, calibrationToJSON(set));
  return set;
}
