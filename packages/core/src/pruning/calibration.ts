/**
 * Calibration windows, drawn with the seeded RNG and optionally fresh for every scoring iteration,
 * in one of two ways:
 *
 * - `sampleCalibration` ("windows"): N windows of L consecutive tokens from one token stream (the
 *   calibration text tokenized once).
 * - `sampleCalibrationPatches` ("patches"): the released MoreauPruner's draw
 *   (`LLMPruner/datasets/example_samples.py` at ShiningSord/MoreauPruner HEAD): N random character
 *   patches of 8 x L characters of the text, each tokenized on its own with BOS and truncated to L
 *   tokens.
 *
 * Either way the result is the same set of token windows, so the exact windows can be saved and
 * replayed.
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
  checkCounts(samples, iterations, seed, seqLen);
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

function checkCounts(samples: number, iterations: number, seed: number, seqLen: number): void {
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
}

export interface PatchOptions extends CalibrationOptions {
  /** Characters per patch per token of seqLen (default 8, the reference's `patch_len = seq_len * 8`). */
  readonly charsPerToken?: number;
}

/**
 * The released MoreauPruner's calibration draw (`_sample_raw_patches` + `_tokenize_patches`): for
 * each of `samples` windows, a patch of `charsPerToken * seqLen` characters (Unicode code points, as
 * Python indexes strings) starting at a uniform position in [0, len - patchLen - 1] (the reference's
 * `random.randint(0, max_start)`, which never reaches the text's last character; a text no longer
 * than the patch gives patches of len - 1 characters from 0), tokenized with `encode` (which must
 * add BOS, as the reference's tokenizer call does) and truncated to `seqLen` tokens, BOS included.
 * Fresh draws every iteration are the reference's `--moredata`; `fresh: false` reuses the first.
 *
 * A patch that tokenizes to fewer than seqLen tokens is an error naming the patch (the reference
 * would crash in torch.cat, or silently train on ragged rows): windows must have equal lengths,
 * and padding or redrawing would change what is measured. Use a shorter seqLen or a longer text.
 */
export function sampleCalibrationPatches(
  text: string,
  encode: (patch: string) => ArrayLike<number>,
  options: PatchOptions,
): CalibrationSet {
  const { samples, seqLen, seed } = options;
  const iterations = options.iterations ?? 1;
  checkCounts(samples, iterations, seed, seqLen);
  const perToken = options.charsPerToken ?? 8;
  if (!Number.isInteger(perToken) || perToken < 1)
    throw new InputError(
      `calibration charsPerToken must be a positive integer, got ${perToken}`,
      undefined,
      'charsPerToken',
    );
  // Code point offsets into the UTF-16 string (only needed when it has surrogate pairs).
  const offsets = /[\uD800-\uDFFF]/.test(text) ? codePointOffsets(text) : undefined;
  const length = offsets ? offsets.length - 1 : text.length;
  if (length < 2) {
    throw new InputError(
      `the calibration text has ${length} characters; patches need at least 2`,
      undefined,
      'seqLen',
    );
  }
  const patchLen = Math.min(perToken * seqLen, length - 1);
  const maxStart = Math.max(0, length - patchLen - 1);
  const slice = (a: number, b: number) => (offsets ? text.slice(offsets[a], offsets[b]) : text.slice(a, b));
  const rng = new Rng(seed);
  let drawn = 0;
  const draw = () =>
    Array.from({ length: samples }, (_, k) => {
      const start = rng.int(maxStart + 1);
      const ids = encode(slice(start, start + patchLen));
      if (ids.length < seqLen) {
        throw new InputError(
          `calibration patch ${k + 1} of draw ${drawn + 1} (characters ${start}..${start + patchLen} of ${length}) tokenizes to ${ids.length} tokens (BOS included), fewer than the window length ${seqLen}: use a shorter window or a longer text`,
          undefined,
          'seqLen',
        );
      }
      return Array.from({ length: seqLen }, (_, i) => ids[i]!);
    });
  const next = () => {
    const d = draw();
    drawn++;
    return d;
  };
  const first = next();
  const fresh = options.fresh ?? true;
  return { iterations: Array.from({ length: iterations }, (_, t) => (t === 0 || !fresh ? first : next())) };
}

/** UTF-16 offset of every code point of `text`, and text.length at the end. */
function codePointOffsets(text: string): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; ) {
    out.push(i);
    const c = text.charCodeAt(i);
    const pair = c >= 0xd800 && c < 0xdc00 && i + 1 < text.length;
    const d = pair ? text.charCodeAt(i + 1) : 0;
    i += pair && d >= 0xdc00 && d < 0xe000 ? 2 : 1;
  }
  out.push(text.length);
  return Uint32Array.from(out);
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
