/**
 * Training checkpoints: a PEFT adapter folder (so any checkpoint loads as an adapter) plus the
 * optimizer's moments (`optimizer.safetensors`: `<param>.exp_avg`, `<param>.exp_avg_sq`, float32)
 * and the trainer's state (`trainer_state.json`: the steps done, the settings and data they
 * belong to, the loss history). Restoring all three continues a run exactly: the data order and
 * the dropout masks are pure functions of (seed, step), so no generator state needs saving.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type AdamWState, type HostTensor, InputError, type LoraAdapters, tensor } from '@moreau/core';
import { loadLoraAdapter, readSafetensors, saveLoraAdapter, writeSafetensors } from '@moreau/models';

export const CHECKPOINT_FORMAT = 'moreau-tune-checkpoint';
const STATE_FILE = 'trainer_state.json';
const OPTIMIZER_FILE = 'optimizer.safetensors';

/** One optimizer step's record. */
export interface StepRecord {
  /** Steps done after this one (1-based, like the Trainer's global_step). */
  readonly step: number;
  /** Mean of the micro-batch losses. */
  readonly loss: number;
  readonly lr: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** Real tokens in the step's micro-batches. */
  readonly tokens: number;
}

export interface EvalRecord {
  readonly step: number;
  /** Mean NLL per label token of the validation set. */
  readonly loss: number;
}

/** Everything besides tensors that a resumed run needs and checks. */
export interface TrainerState {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly version: 1;
  /** Optimizer steps done. */
  readonly step: number;
  readonly totalSteps: number;
  /** Execution mode of the run (a resumed run keeps it: whole and streamed round differently). */
  readonly mode: 'whole' | 'streamed';
  /** The settings that decide the run; a resume must match them. */
  readonly settings: Readonly<Record<string, unknown>>;
  /** Hash of the tokenized training and validation examples. */
  readonly data: string;
  readonly history: readonly StepRecord[];
  readonly evals: readonly EvalRecord[];
}

export interface Checkpoint {
  readonly adapters: LoraAdapters;
  readonly optimizer: AdamWState;
  readonly state: TrainerState;
}

/** The folder of the checkpoint after `step` steps. */
export function checkpointPath(dir: string, step: number): string {
  return join(dir, `checkpoint-${step}`);
}

/** Writes a checkpoint folder atomically (replacing one of the same step). */
export async function saveCheckpoint(dir: string, ck: Checkpoint, baseModel?: string): Promise<void> {
  const moments = new Map<string, HostTensor>();
  for (const [name, { m, v }] of ck.optimizer.moments) {
    moments.set(`${name}.exp_avg`, tensor(m, [m.length], 'float32'));
    moments.set(`${name}.exp_avg_sq`, tensor(v, [v.length], 'float32'));
  }
  await saveLoraAdapter(dir, ck.adapters, {
    ...(baseModel ? { baseModel } : {}),
    overwrite: true,
    extra: async (tmp) => {
      await writeSafetensors(join(tmp, OPTIMIZER_FILE), moments, {
        metadata: { optimizer: 'adamw', step: String(ck.optimizer.step) },
      });
      await writeFile(join(tmp, STATE_FILE), `${JSON.stringify(ck.state, null, 2)}\n`);
    },
  });
}

/** Reads a checkpoint folder written by saveCheckpoint; errors name the folder and what is wrong. */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8'));
  } catch (e) {
    throw new InputError(
      `--resume '${dir}' is not a tuning checkpoint: ${STATE_FILE} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      dir,
      'resume',
    );
  }
  if (state?.format !== CHECKPOINT_FORMAT || state.version !== 1 || !Number.isInteger(state.step))
    throw new InputError(
      `${join(dir, STATE_FILE)}: not a ${CHECKPOINT_FORMAT} version 1 state`,
      dir,
      'resume',
    );
  const adapters = await loadLoraAdapter(dir);
  const { tensors, metadata } = await readSafetensors(join(dir, OPTIMIZER_FILE));
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const name of adapters.params.keys()) {
    const m = tensors.get(`${name}.exp_avg`);
    const v = tensors.get(`${name}.exp_avg_sq`);
    if (!m || !v) {
      if (state.step === 0) continue;
      throw new InputError(`${join(dir, OPTIMIZER_FILE)}: no moments of '${name}'`, dir, 'resume');
    }
    moments.set(name, { m: m.data as Float32Array, v: v.data as Float32Array });
  }
  return {
    adapters: { config: adapters.config, params: adapters.params },
    optimizer: { step: Number(metadata.step ?? state.step), moments },
    state,
  };
}

/** Removes the oldest `checkpoint-N` folders of `dir` beyond the newest `keep`. */
export async function pruneCheckpoints(dir: string, keep: number): Promise<void> {
  const steps = (await readdir(dir).catch(() => [] as string[]))
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  for (const s of steps.slice(0, Math.max(0, steps.length - keep))) {
    await rm(checkpointPath(dir, s), { recursive: true, force: true });
  }
}
