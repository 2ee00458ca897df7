/**
 * What every command shares: the command context (flags, progress, signal, stdout, backend), model
 * loading, plugins and calibration windows.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createOrtBackend } from '@moreau/backend-ort';
import { createTfjsBackend } from '@moreau/backend-tfjs';
import {
  type Backend,
  type CalibrationSet,
  type ComputeDtype,
  type ComputeMode,
  type Criterion,
  calibrationToJSON,
  computeMode,
  getBackend,
  InputError,
  listCriteria,
  parseCalibration,
  sampleCalibration,
  sampleCalibrationPatches,
} from '@moreau/core';
import '@moreau/criteria';
import { readText, readTextFile, type TextSourceOptions } from '@moreau/eval';
import {
  type LlamaModel,
  type LoadedLoraAdapter,
  type LoadedModel,
  loadLoraAdapter,
  loadModel,
} from '@moreau/models';
import type { CalibFlags, ModelFlags } from '../program.js';
import { during, PluginExit, pluginOfCriterion } from './activity.js';
import {
  backendFlags,
  type CalibrationChoice,
  calibrationChoice,
  checkWindowLength,
  UsageError,
} from './flags.js';
import type { RunOutputs } from './output.js';
import type { ProgressReporter } from './progress.js';

/** One run of a command: its parsed flags, progress on stderr, the Ctrl-C signal, its outputs. */
export interface CommandContext<F> {
  readonly flags: F;
  readonly progress: ProgressReporter;
  readonly signal: AbortSignal;
  /**
   * Human-readable results: stdout, or stderr when the JSON result goes to stdout (`--json -`),
   * so stdout carries exactly one JSON document.
   */
  readonly out: (text: string) => void;
  /** The run's outputs, staged and put in place together when the command succeeds. */
  readonly outputs: RunOutputs;
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

/**
 * The `compute` record of a --json result: the dtype and whether it ran natively or emulated (what
 * ran, `ran`, when the model ran; else what `dtype` runs as on `backend`).
 */
export function computeInfo(
  backend: Backend,
  dtype: ComputeDtype,
  ran?: ComputeMode,
): { dtype: ComputeDtype; precision: ComputeMode['precision'] } {
  const mode = ran ?? computeMode(backend, dtype);
  return { dtype: mode.computeDtype, precision: mode.precision };
}

export async function openModel(source: string, flags: ModelFlags): Promise<LoadedModel> {
  return loadModel(source, flags.tokenizer ? { tokenizer: flags.tokenizer } : {});
}

/** What a result JSON records of --adapter. */
export interface AdapterSummary {
  readonly dir: string;
  readonly base_model: string | null;
  readonly r: number;
  readonly lora_alpha: number;
  readonly target_modules: readonly string[];
}

/**
 * The model with the PEFT LoRA folder of --adapter attached unmerged (applied in every graph,
 * decoding included). It must fit the model: its targets are projections the model has, and
 * every adapted weight has its A [r, in] and B [out, r]; a misfit is an error naming the folder
 * and the tensor.
 */
export async function attachAdapter(
  model: LlamaModel,
  dir: string,
): Promise<{ model: LlamaModel; adapter: LoadedLoraAdapter; summary: AdapterSummary }> {
  const adapter = await loadLoraAdapter(dir); // its FormatErrors name the file
  let adapted: LlamaModel;
  try {
    adapted = model.withLora(adapter);
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    throw new InputError(`--adapter '${dir}' does not fit the model: ${e.message}`, dir, '--adapter', {
      cause: e,
    });
  }
  const { r, alpha, targets } = adapter.config;
  return {
    model: adapted,
    adapter,
    summary: { dir, base_model: adapter.baseModel, r, lora_alpha: alpha, target_modules: targets },
  };
}

/**
 * Imports each --plugin: a path (relative to the working directory) or a package name. The
 * criteria a plugin registers are remembered with it (messages name the plugin), and their
 * score() runs as a named step, so a score() that never finishes is reported by name.
 */
export async function loadPlugins(plugins: readonly string[]): Promise<void> {
  for (const p of plugins) {
    const asPath = isAbsolute(p) ? p : resolve(p);
    const before = new Set(listCriteria());
    try {
      await during(`loading plugin '${p}'`, async () => {
        if (existsSync(asPath)) await import(pathToFileURL(asPath).href);
        else await importPackage(p);
      });
    } catch (e) {
      if (e instanceof InputError) throw e;
      if (e instanceof PluginExit)
        throw new InputError(`plugin '${p}' ${e.message} (it did so while loading)`, p, 'plugin');
      const message = ((e as Error)?.message ?? String(e)).split('\n')[0];
      throw new InputError(`plugin '${p}' failed to load: ${message}`, p, 'plugin');
    }
    for (const name of listCriteria()) {
      if (before.has(name)) continue;
      pluginOfCriterion.set(name, p);
      superviseCriterion(name, p);
    }
  }
}

/** Replaces a plugin criterion in the registry by one whose score() runs as a named step. */
function superviseCriterion(name: string, plugin: string): void {
  // The registry core keeps on globalThis (every copy of core shares it).
  const registry = (globalThis as Record<symbol, unknown>)[Symbol.for('@moreau/core/criteria')] as
    | Map<string, Criterion>
    | undefined;
  const c = registry?.get(name);
  if (!c) return;
  const supervised: Criterion = Object.create(c);
  Object.defineProperty(supervised, 'score', {
    value: (ctx: Parameters<Criterion['score']>[0], options: Parameters<Criterion['score']>[1]) =>
      during(`criterion '${name}' of plugin '${plugin}' scoring`, async () => {
        try {
          return await c.score.call(c, ctx, options);
        } catch (e) {
          if (e instanceof PluginExit)
            throw new InputError(`criterion '${name}' (plugin '${plugin}') ${e.message}`, plugin, 'plugin');
          throw e;
        }
      }),
  });
  registry!.set(name, supervised);
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
  const set = parseCalibration(
    await readTextFile(file, 'calibration tokens file'),
    file,
    loaded.model.config.vocabSize,
  );
  const max = loaded.model.config.maxPositionEmbeddings;
  let longest = 0;
  for (const it of set.iterations) for (const w of it) longest = Math.max(longest, w.length);
  if (longest > max) {
    throw new InputError(
      `--calib-tokens '${file}': a window of ${longest} tokens exceeds the model's context of ${max} positions`,
      file,
      '--calib-tokens',
    );
  }
  return set;
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
  checkWindowLength('--calib-seq-len', choice.seqLen, loaded.model.config.maxPositionEmbeddings);
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
 * criterion draws; staged for --save-calib when asked.
 */
export async function calibrationFromFlags(
  loaded: LoadedModel,
  flags: CalibFlags,
  iterations: number,
  choice: CalibrationChoice = calibrationChoice(flags, undefined),
  outputs?: RunOutputs,
): Promise<CalibrationSet> {
  const set =
    (await replayedCalibration(loaded, flags)) ?? (await drawCalibration(loaded, flags, choice, iterations));
  if (flags.saveCalib) {
    if (!outputs) throw new Error('calibrationFromFlags: --save-calib needs the run outputs');
    await outputs.file('--save-calib', flags.saveCalib, calibrationToJSON(set));
  }
  return set;
}
