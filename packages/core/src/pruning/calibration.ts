/**
 * Calibration windows: N windows of L tokens drawn from a token stream with the seeded RNG,
 * optionally fresh for every scoring iteration. The exact windows can be saved and replayed.
 */
import { InputError } from '../errors.js';
import { Rng } from '../rng.js';

/** `iterations[t]` holds the windows used at scoring iteration t, each a list of token ids. */
export interface CalibrationSet {
  readonly iterations: readonly (readonly (readonly number[])[])[];
}

export interface CalibrationOptions {
  readonly samples: number;
  readonly seqLen: number;
  /** Scoring iterations that need windows (default 1). */
  readonly iterations?: number;
  /** Draw new windows for every iteration (default true); otherwise reuse the first draw. */
  readonly fresh?: boolean;
  readonly seed: number;
}

export function sampleCalibration(stream: ArrayLike<number>, options: CalibrationOptions): CalibrationSet {
  const { samples, seqLen, seed } = options;
  const iterations = options.iterations ?? 1;
  if (!Number.isInteger(samples) || samples < 1)
    throw new InputError(
      `calibration samples must be a positive integer, got ${samples}`,
      undefined,
      'samples',
    );
  if (!Number.isInteger(iterations) || iterations < 1)
    throw new InputError(
      `calibration iterations must be a positive integer, got ${iterations}`,
      undefined,
      'iterations',
    );
  if (!Number.isInteger(seed))
    throw new InputError(`calibration seed must be an integer, got ${seed}`, undefined, 'seed');
  if (!Number.isInteger(seqLen) || seqLen < 2)
    throw new InputError(`calibration seq-len must be an integer >= 2, got ${seqLen}`, undefined, 'seqLen');
  if (stream.length < seqLen) {
    throw new InputError(
      `the calibration text has ${stream.length} tokens, fewer than one window of ${seqLen}`,
      undefined,
      'seqLen',
    );
  }
  const rng = new Rng(seed);
  const draw = () =>
    Array.from({ length: samples }, () => {
      const start = rng.int(stream.length - seqLen + 1);
      return Array.from({ length: seqLen }, (_, i) => stream[start + i]!);
    });
  const first = draw();
  const fresh = options.fresh ?? true;
  return { iterations: Array.from({ length: iterations }, (_, t) => (t === 0 || !fresh ? first : draw())) };
}

/** The windows for iteration t (the last list repeats if the set has fewer iterations). */
export function windowsAt(set: CalibrationSet, t: number): readonly (readonly number[])[] {
  return set.iterations[Math.min(t, set.iterations.length - 1)]!;
}

export function calibrationToJSON(set: CalibrationSet): string {
  return `{"iterations":[${set.iterations.map((it) => `[${it.map((w) => `[${w.join(',')}]`).join(',')}]`).join(',\n')}]}\n`;
}

/** Parses and validates `{"iterations": [[[ids...], ...], ...]}`; `file` names the source in errors. */
export function parseCalibration(text: string, file = '<calibration>', vocabSize?: number): CalibrationSet {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  const its = (json as { iterations?: unknown })?.iterations;
  if (!Array.isArray(its) || its.length === 0) {
    throw new InputError(
      `${file}: field 'iterations' must be a non-empty array of window lists`,
      file,
      'iterations',
    );
  }
  let len = -1;
  its.forEach((it, t) => {
    if (!Array.isArray(it) || it.length === 0)
      throw new InputError(
        `${file}: iterations[${t}] must be a non-empty list of windows`,
        file,
        `iterations[${t}]`,
      );
    it.forEach((w, i) => {
      const where = `iterations[${t}][${i}]`;
      if (!Array.isArray(w) || w.length < 2)
        throw new InputError(`${file}: ${where} must be a list of at least 2 token ids`, file, where);
      if (len >= 0 && w.length !== len)
        throw new InputError(
          `${file}: ${where} has ${w.length} tokens, other windows have ${len}`,
          file,
          where,
        );
      len = w.length;
      for (const id of w) {
        if (!Number.isInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
          throw new InputError(
            `${file}: ${where} holds token id ${id}, expected an integer in [0, ${vocabSize ?? '∞'})`,
            file,
            where,
          );
        }
      }
    });
  });
  return { iterations: its as number[][][] };
}
