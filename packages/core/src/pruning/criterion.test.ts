import { describe, expect, it } from 'vitest';
import { MoreauError } from '../errors.js';
import {
  type Criterion,
  getCriterion,
  listCriteria,
  registerCriterion,
  resolveOptions,
} from './criterion.js';
import { inputErrorOf } from './test-fixtures.js';

const withOptions: Criterion = {
  name: 'test-options',
  description: 'a criterion with one option of each type',
  requires: { gradients: false, calibration: false },
  options: {
    iterations: { type: 'number', default: 10, min: 1, max: 100, integer: true, description: 'steps' },
    lr: { type: 'number', default: 2e-4, min: 0, description: 'step size' },
    fresh: { type: 'boolean', default: true, description: 'fresh windows' },
    proximal: { type: 'enum', default: 'reference', values: ['reference', 'exact'], description: 'update' },
  },
  channelMode: () => 'abs-then-sum',
  defaultReduction: 'sum',
  score: async () => ({ unitScores: [] }),
};

describe('resolveOptions', () => {
  it('fills in defaults in the documented order', () => {
    expect(resolveOptions(withOptions)).toEqual({
      iterations: 10,
      lr: 2e-4,
      fresh: true,
      proximal: 'reference',
    });
    expect(Object.keys(resolveOptions(withOptions, { proximal: 'exact', iterations: 3 }))).toEqual([
      'iterations',
      'lr',
      'fresh',
      'proximal',
    ]);
  });

  it('converts command-line strings', () => {
    expect(
      resolveOptions(withOptions, { iterations: '4', lr: '1e-3', fresh: 'false', proximal: 'exact' }),
    ).toEqual({
      iterations: 4,
      lr: 1e-3,
      fresh: false,
      proximal: 'exact',
    });
    expect(resolveOptions(withOptions, { fresh: '1' }).fresh).toBe(true);
    expect(resolveOptions(withOptions, { fresh: '0' }).fresh).toBe(false);
  });

  it.each(['noise', 'constructor', 'toString', '__proto__', 'hasOwnProperty'])(
    'an unknown key (%s) is an error naming it and listing the valid ones',
    (key) => {
      const raw = JSON.parse(`{"${key}": 1}`);
      const e = inputErrorOf(() => resolveOptions(withOptions, raw));
      expect(e.message).toBe(
        `criterion 'test-options' has no option '${key}'; valid options: iterations, lr, fresh, proximal`,
      );
      expect(e.field).toBe(key);
    },
  );

  it('a criterion without options says so', () => {
    const none = { ...withOptions, name: 'no-options', options: {} };
    expect(inputErrorOf(() => resolveOptions(none, { p: 2 })).message).toBe(
      "criterion 'no-options' has no option 'p'; valid options: (none)",
    );
    expect(resolveOptions(none)).toEqual({});
  });

  it.each([
    [
      { iterations: 'ten' },
      'iterations',
      "criterion 'test-options' option 'iterations': expected a finite number, got \"ten\"",
    ],
    [{ iterations: '' }, 'iterations', 'expected a finite number, got ""'],
    [{ iterations: 2.5 }, 'iterations', 'expected an integer, got 2.5'],
    [{ iterations: 0 }, 'iterations', 'expected a number >= 1, got 0'],
    [{ iterations: 101 }, 'iterations', 'expected a number <= 100, got 101'],
    [{ lr: Number.POSITIVE_INFINITY }, 'lr', 'expected a finite number'],
    [{ lr: -1 }, 'lr', 'expected a number >= 0, got -1'],
    [{ fresh: 'yes' }, 'fresh', 'expected true or false, got "yes"'],
    [{ proximal: 'approx' }, 'proximal', 'expected one of reference | exact, got "approx"'],
  ])('%j is rejected naming the option', (raw, field, message) => {
    const e = inputErrorOf(() => resolveOptions(withOptions, raw));
    expect(e.message).toContain(message);
    expect(e.field).toBe(field);
  });
});

describe('the criterion registry', () => {
  it('registers by name, lists sorted, refuses a different criterion under the same name', () => {
    const a: Criterion = { ...withOptions, name: 'test-zeta' };
    const b: Criterion = { ...withOptions, name: 'test-alpha' };
    registerCriterion(a);
    registerCriterion(b);
    registerCriterion(a); // the same object again is fine (a module imported twice)
    expect(getCriterion('test-zeta')).toBe(a);
    const names = listCriteria();
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining(['test-alpha', 'test-zeta']));
    expect(() => registerCriterion({ ...a, description: 'another one' })).toThrow(
      "registerCriterion: a different criterion is already registered as 'test-zeta'",
    );
    expect(() => registerCriterion({ ...a, options: {} })).toThrow(/a different criterion/);
    expect(getCriterion('test-zeta')).toBe(a);
  });

  it('another copy of the same criterion (its package loaded twice) is accepted; the first stays', () => {
    const a: Criterion = { ...withOptions, name: 'test-copied' };
    registerCriterion(a);
    const copy: Criterion = {
      ...withOptions,
      name: 'test-copied',
      options: structuredClone(withOptions.options),
    };
    expect(() => registerCriterion(copy)).not.toThrow();
    expect(getCriterion('test-copied')).toBe(a);
  });

  it('an unknown name lists the available criteria', () => {
    registerCriterion({ ...withOptions, name: 'test-listed' });
    const e = inputErrorOf(() => getCriterion('nope'));
    expect(e.message).toMatch(/^unknown criterion 'nope'; available: .*test-listed/);
    expect(e.field).toBe('criterion');
  });

  it.each([
    [{ name: 'Bad_Name' }, /invalid name 'Bad_Name' \(lowercase, digits, dashes\)/],
    [{ name: 'test-x', score: undefined }, /criterion 'test-x' has no score\(\) function/],
    [{ name: 'test-x', channelMode: 'abs-then-sum' }, /criterion 'test-x' has no channelMode\(\) function/],
    [
      { name: 'test-x', requires: { gradients: true } },
      /must declare requires: \{ gradients: boolean, calibration: boolean, forward\?: boolean \}/,
    ],
    [
      { name: 'test-x', requires: { gradients: false, calibration: false, forward: 'yes' } },
      /must declare requires: \{ gradients: boolean, calibration: boolean, forward\?: boolean \}/,
    ],
    [
      { name: 'test-x', scopes: [] },
      /declares scopes \[\]; valid: a non-empty list of block, channel, layer, unstructured, n:m/,
    ],
    [{ name: 'test-x', scopes: ['rows'] }, /declares scopes \["rows"\]/],
    [
      { name: 'test-x', defaultReduction: 'median' },
      /defaultReduction 'median'; valid: sum, mean, max, prod, first/,
    ],
    [{ name: 'test-x', options: undefined }, /must declare options/],
    [
      { name: 'test-x', options: { k: { type: 'string', default: 'a', description: '' } } },
      /option 'k' has type 'string'; valid: number, boolean, enum/,
    ],
    [
      { name: 'test-x', options: { k: { type: 'enum', default: 'c', values: ['a', 'b'], description: '' } } },
      /option 'k' has default 'c', not one of a \| b/,
    ],
    [
      { name: 'test-x', options: { k: { type: 'number', default: '1', description: '' } } },
      /option 'k' has a default that is not a number/,
    ],
  ])('validates what it registers: %j', (patch, message) => {
    expect(() => registerCriterion({ ...withOptions, ...patch } as unknown as Criterion)).toThrow(
      MoreauError,
    );
    expect(() => registerCriterion({ ...withOptions, ...patch } as unknown as Criterion)).toThrow(message);
    expect(listCriteria()).not.toContain('test-x');
  });

  it('is shared by every copy of core in the process (ESM and CommonJS builds)', () => {
    const c: Criterion = { ...withOptions, name: 'test-shared' };
    registerCriterion(c);
    // Another copy of core finds the same Map under the well-known symbol.
    const shared = (globalThis as Record<symbol, unknown>)[Symbol.for('@moreau/core/criteria')] as Map<
      string,
      Criterion
    >;
    expect(shared.get('test-shared')).toBe(c);
    const other: Criterion = { ...withOptions, name: 'test-from-other-copy' };
    shared.set(other.name, other);
    expect(getCriterion('test-from-other-copy')).toBe(other);
  });
});
