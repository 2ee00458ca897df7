import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import { Rng } from '../rng.js';
import {
  calibrationToJSON,
  parseCalibration,
  sampleCalibration,
  sampleCalibrationPatches,
  windowsAt,
} from './calibration.js';

/** Token i of the stream is 1000 + i, so a window's first id gives its start. */
const stream = Array.from({ length: 500 }, (_, i) => 1000 + i);
const starts = (windows: readonly (readonly number[])[]) => windows.map((w) => w[0]! - 1000);

describe('sampleCalibration', () => {
  it('draws samples contiguous windows with start = rng.int(len - seqLen + 1), seeded', () => {
    const set = sampleCalibration(stream, { samples: 4, seqLen: 16, seed: 7 });
    expect(set.iterations).toHaveLength(1);
    const rng = new Rng(7);
    const expected = Array.from({ length: 4 }, () => rng.int(500 - 16 + 1));
    expect(starts(set.iterations[0]!)).toEqual(expected);
    for (const w of set.iterations[0]!) {
      expect(w).toHaveLength(16);
      expect(w).toEqual(Array.from({ length: 16 }, (_, i) => w[0]! + i));
    }
  });

  it('is deterministic: same seed same windows, another seed other windows', () => {
    const opts = { samples: 3, seqLen: 8, seed: 11, iterations: 4 };
    expect(sampleCalibration(stream, opts)).toEqual(sampleCalibration(stream, opts));
    expect(starts(sampleCalibration(stream, { ...opts, seed: 12 }).iterations[0]!)).not.toEqual(
      starts(sampleCalibration(stream, opts).iterations[0]!),
    );
    // Works on any ArrayLike (e.g. the Int32Array a tokenizer returns).
    expect(sampleCalibration(Int32Array.from(stream), opts)).toEqual(sampleCalibration(stream, opts));
  });

  it('fresh windows per iteration continue the same stream; the first draw never depends on iterations', () => {
    const one = sampleCalibration(stream, { samples: 2, seqLen: 8, seed: 3 });
    const three = sampleCalibration(stream, { samples: 2, seqLen: 8, seed: 3, iterations: 3 });
    const five = sampleCalibration(stream, { samples: 2, seqLen: 8, seed: 3, iterations: 5 });
    expect(three.iterations[0]).toEqual(one.iterations[0]);
    expect(five.iterations.slice(0, 3)).toEqual(three.iterations);
    const rng = new Rng(3);
    const all = Array.from({ length: 10 }, () => rng.int(493));
    expect(five.iterations.flatMap(starts)).toEqual(all);
    expect(new Set(five.iterations.map((w) => JSON.stringify(starts(w)))).size).toBe(5);
  });

  it('fresh: false reuses the first draw in every iteration', () => {
    const set = sampleCalibration(stream, { samples: 2, seqLen: 8, seed: 3, iterations: 3, fresh: false });
    expect(set.iterations).toHaveLength(3);
    expect(set.iterations[1]).toEqual(set.iterations[0]);
    expect(set.iterations[2]).toEqual(set.iterations[0]);
    expect(set.iterations[0]).toEqual(
      sampleCalibration(stream, { samples: 2, seqLen: 8, seed: 3 }).iterations[0],
    );
  });

  it('a stream of exactly one window always starts at 0', () => {
    const set = sampleCalibration(stream.slice(0, 10), { samples: 3, seqLen: 10, seed: 5 });
    expect(starts(set.iterations[0]!)).toEqual([0, 0, 0]);
  });

  it('windowsAt repeats the last iteration', () => {
    const set = sampleCalibration(stream, { samples: 1, seqLen: 4, seed: 1, iterations: 2 });
    expect(windowsAt(set, 0)).toBe(set.iterations[0]);
    expect(windowsAt(set, 1)).toBe(set.iterations[1]);
    expect(windowsAt(set, 7)).toBe(set.iterations[1]);
  });

  it.each([
    [{ samples: 0, seqLen: 8, seed: 1 }, 'samples', /calibration samples must be a positive integer, got 0/],
    [{ samples: 1.5, seqLen: 8, seed: 1 }, 'samples', /positive integer/],
    [{ samples: 2, seqLen: 1, seed: 1 }, 'seqLen', /calibration seq-len must be an integer >= 2, got 1/],
    [
      { samples: 2, seqLen: 501, seed: 1 },
      'seqLen',
      /the calibration text has 500 tokens, fewer than one window of 501/,
    ],
    [
      { samples: 2, seqLen: 8, seed: 1, iterations: 0 },
      'iterations',
      /iterations must be a positive integer, got 0/,
    ],
    [{ samples: 2, seqLen: 8, seed: 1.5 }, 'seed', /seed must be an integer/],
  ])('rejects %j (field %s)', (opts, field, message) => {
    let err: unknown;
    try {
      sampleCalibration(stream, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).field).toBe(field);
    expect((err as Error).message).toMatch(message);
  });
});

describe('calibration JSON', () => {
  it('round-trips through calibrationToJSON / parseCalibration', () => {
    const set = sampleCalibration(stream, { samples: 3, seqLen: 6, seed: 9, iterations: 2 });
    const json = calibrationToJSON(set);
    expect(json.split('\n')).toHaveLength(3); // one iteration per line, trailing newline
    expect(parseCalibration(json, 'calib.json')).toEqual(set);
    expect(calibrationToJSON(parseCalibration(json))).toBe(json);
    expect(calibrationToJSON({ iterations: [[[1, 2, 3]], [[4, 5, 6]]] })).toBe(
      '{"iterations":[[[1,2,3]],\n[[4,5,6]]]}\n',
    );
  });

  it.each([
    ['{"iterations": [[[1,2]]', undefined, undefined, /^c\.json: not valid JSON \(/],
    ['{}', undefined, 'iterations', /^c\.json: field 'iterations' must be a non-empty array of window lists/],
    ['{"iterations": []}', undefined, 'iterations', /field 'iterations'/],
    ['null', undefined, 'iterations', /field 'iterations'/],
    [
      '{"iterations": [[[1,2]], []]}',
      undefined,
      'iterations[1]',
      /^c\.json: iterations\[1\] must be a non-empty list/,
    ],
    [
      '{"iterations": [[[1,2], [3]]]}',
      undefined,
      'iterations[0][1]',
      /iterations\[0\]\[1\] must be a list of at least 2 token ids/,
    ],
    [
      '{"iterations": [[[1,2,3]], [[1,2]]]}',
      undefined,
      'iterations[1][0]',
      /iterations\[1\]\[0\] has 2 tokens, other windows have 3/,
    ],
    [
      '{"iterations": [[[1,-2]]]}',
      undefined,
      'iterations[0][0]',
      /holds token id -2, expected an integer in \[0, ∞\)/,
    ],
    ['{"iterations": [[[1,2.5]]]}', undefined, 'iterations[0][0]', /holds token id 2.5/],
    [
      '{"iterations": [[[1,2],[3,512]]]}',
      512,
      'iterations[0][1]',
      /holds token id 512, expected an integer in \[0, 512\)/,
    ],
  ])('%s', (text, vocab, field, message) => {
    let err: unknown;
    try {
      parseCalibration(text, 'c.json', vocab);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).file).toBe('c.json');
    expect((err as InputError).field).toBe(field);
    expect((err as Error).message).toMatch(message);
  });
});

describe('sampleCalibrationPatches (the released MoreauPruner draw)', () => {
  // A toy tokenizer: BOS = 1, then one token per character (its code point + 2).
  const encode = (s: string) => [1, ...Array.from(s, (c) => c.codePointAt(0)! + 2)];
  const decode = (ids: readonly number[]) => String.fromCodePoint(...ids.slice(1).map((i) => i - 2));
  const text = Array.from({ length: 3000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');

  it('patches of 8 x L characters from a uniform start, tokenized with BOS, truncated to L tokens', () => {
    const L = 16;
    const set = sampleCalibrationPatches(text, encode, { samples: 3, seqLen: L, seed: 4 });
    // The reference: patch_len = 8 L, max_start = len - patch_len - 1, start = randint(0, max_start).
    const rng = new Rng(4);
    const starts = Array.from({ length: 3 }, () => rng.int(3000 - 8 * L - 1 + 1));
    expect(set.iterations).toHaveLength(1);
    set.iterations[0]!.forEach((w, k) => {
      expect(w).toHaveLength(L);
      expect(w[0]).toBe(1); // BOS first, counted in the L tokens
      expect(decode(w)).toBe(text.slice(starts[k], starts[k]! + L - 1));
    });
  });

  it('the whole patch reaches the tokenizer; charsPerToken changes its length', () => {
    const seen: string[] = [];
    const spy = (s: string) => {
      seen.push(s);
      return encode(s);
    };
    sampleCalibrationPatches(text, spy, { samples: 2, seqLen: 10, seed: 1 });
    expect(seen.map((s) => s.length)).toEqual([80, 80]);
    seen.length = 0;
    sampleCalibrationPatches(text, spy, { samples: 1, seqLen: 10, seed: 1, charsPerToken: 3 });
    expect(seen.map((s) => s.length)).toEqual([30]);
    for (const s of seen) expect(text.includes(s)).toBe(true);
  });

  it('a text no longer than a patch: patches of len - 1 characters from 0 (the reference)', () => {
    const seen: string[] = [];
    const spy = (s: string) => {
      seen.push(s);
      return encode(s);
    };
    sampleCalibrationPatches('abcdefghij', spy, { samples: 2, seqLen: 4, seed: 3 });
    expect(seen).toEqual(['abcdefghi', 'abcdefghi']);
  });

  it('indexes code points (as Python does), never splitting a surrogate pair', () => {
    const astral = Array.from({ length: 400 }, (_, i) => (i % 3 === 0 ? '😀' : 'x')).join('');
    const set = sampleCalibrationPatches(astral, encode, { samples: 5, seqLen: 6, seed: 2, iterations: 3 });
    for (const it of set.iterations) {
      for (const w of it) {
        expect(w).toHaveLength(6);
        const s = decode(w);
        expect(astral.includes(s)).toBe(true);
        expect(Array.from(s)).toHaveLength(5);
      }
    }
  });

  it('is deterministic under a seed; fresh draws continue the generator, fresh: false repeats', () => {
    const opts = { samples: 2, seqLen: 8, seed: 9, iterations: 3 };
    const a = sampleCalibrationPatches(text, encode, opts);
    expect(sampleCalibrationPatches(text, encode, opts)).toEqual(a);
    expect(sampleCalibrationPatches(text, encode, { ...opts, seed: 10 })).not.toEqual(a);
    expect(new Set(a.iterations.map((w) => JSON.stringify(w))).size).toBe(3);
    const one = sampleCalibrationPatches(text, encode, { ...opts, iterations: 1 });
    expect(a.iterations[0]).toEqual(one.iterations[0]);
    const same = sampleCalibrationPatches(text, encode, { ...opts, fresh: false });
    expect(same.iterations).toEqual([a.iterations[0], a.iterations[0], a.iterations[0]]);
  });

  it('a patch that tokenizes to fewer than L tokens is an error naming the patch', () => {
    // Every 4 characters become one token: 8 L characters give 2 L tokens, except a patch of a
    // short text.
    const packed = (s: string) => [1, ...Array.from({ length: Math.floor(s.length / 4) }, () => 5)];
    expect(
      sampleCalibrationPatches(text, packed, { samples: 2, seqLen: 32, seed: 1 }).iterations[0]![0],
    ).toHaveLength(32);
    let err: unknown;
    try {
      sampleCalibrationPatches(text.slice(0, 100), packed, { samples: 2, seqLen: 32, seed: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).field).toBe('seqLen');
    expect((err as Error).message).toMatch(
      /calibration patch 1 of draw 1 \(characters 0\.\.99 of 100\) tokenizes to 25 tokens \(BOS included\), fewer than the window length 32/,
    );
  });

  it('rejects bad counts like sampleCalibration', () => {
    expect(() => sampleCalibrationPatches(text, encode, { samples: 0, seqLen: 8, seed: 1 })).toThrow(
      /samples must be a positive integer/,
    );
    expect(() =>
      sampleCalibrationPatches(text, encode, { samples: 1, seqLen: 8, seed: 1, charsPerToken: 0 }),
    ).toThrow(/charsPerToken must be a positive integer/);
    expect(() => sampleCalibrationPatches('a', encode, { samples: 1, seqLen: 8, seed: 1 })).toThrow(
      /has 1 characters; patches need at least 2/,
    );
  });
});
