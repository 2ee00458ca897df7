import { afterEach, describe, expect, it } from 'vitest';
import { unregisterBackend } from './backend.js';
import {
  type Backend,
  BackendUnavailableError,
  getBackend,
  listBackends,
  MoreauError,
  ReferenceBackend,
  registerBackend,
  UnsupportedPrimitiveError,
} from './index.js';

const ok = (label: string) => async (): Promise<Backend> =>
  Object.assign(new ReferenceBackend(), { label }) as unknown as Backend;

afterEach(() => {
  for (const name of listBackends()) unregisterBackend(name);
});

describe('registerBackend', () => {
  it('validates the name, the factory and the priority', () => {
    for (const bad of ['', 'ORT', '1ort', 'my backend', 'ort_gpu', '-x']) {
      expect(() => registerBackend(bad, ok(bad)), bad).toThrow(MoreauError);
      expect(() => registerBackend(bad, ok(bad))).toThrow(/must match/);
    }
    expect(() => registerBackend('x', 'nope' as never)).toThrow(/factory must be a function/);
    expect(() => registerBackend('x', ok('x'), Number.NaN)).toThrow(/priority must be finite/);
    expect(() => registerBackend('x', ok('x'), Number.POSITIVE_INFINITY)).toThrow(/priority must be finite/);
    expect(listBackends()).toEqual([]);
    registerBackend('ort-cuda2', ok('fine'));
    expect(listBackends()).toEqual(['ort-cuda2']);
  });

  it('ignores an identical re-registration and refuses a conflicting one', () => {
    const f = ok('a');
    registerBackend('a', f, 3);
    registerBackend('a', f, 3);
    expect(listBackends()).toEqual(['a']);
    expect(() => registerBackend('a', ok('other'), 3)).toThrow(
      /already registered .*unregisterBackend\('a'\)/,
    );
    expect(() => registerBackend('a', f, 4)).toThrow(/already registered/);
    unregisterBackend('a');
    registerBackend('a', ok('other'), 4);
    expect(listBackends()).toEqual(['a']);
  });

  it('lists backends best (highest priority) first', () => {
    registerBackend('low', ok('low'), -1);
    registerBackend('high', ok('high'), 10);
    registerBackend('mid', ok('mid'), 2);
    expect(listBackends()).toEqual(['high', 'mid', 'low']);
  });
});

describe('getBackend', () => {
  it('returns the best backend that can be created, and caches it', async () => {
    let calls = 0;
    registerBackend(
      'broken',
      async () => {
        throw new Error('no GPU');
      },
      10,
    );
    registerBackend(
      'good',
      async () => {
        calls++;
        return ok('good')();
      },
      5,
    );
    registerBackend('worse', ok('worse'), 1);
    const b = await getBackend();
    expect((b as unknown as { label: string }).label).toBe('good');
    expect(await getBackend()).toBe(b);
    expect(await getBackend('good')).toBe(b);
    expect(calls).toBe(1);
  });

  it('collects every candidate failure into one error naming each backend and why', async () => {
    registerBackend(
      'tfjs',
      async () => {
        throw new Error('libtensorflow not installed');
      },
      2,
    );
    // A factory that throws synchronously is a failed candidate too, not an escaping exception.
    registerBackend(
      'ort',
      (() => {
        throw new Error('onnxruntime-node binary missing');
      }) as never,
      5,
    );
    registerBackend('wasm', async () => Promise.reject('plain string reason'), 1);
    const err = await getBackend().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(err).toBeInstanceOf(MoreauError);
    const e = err as BackendUnavailableError;
    expect(e.failures).toEqual([
      { name: 'ort', reason: 'onnxruntime-node binary missing' },
      { name: 'tfjs', reason: 'libtensorflow not installed' },
      { name: 'wasm', reason: 'plain string reason' },
    ]);
    expect(e.message).toContain('ort: onnxruntime-node binary missing');
    expect(e.message).toContain('tfjs: libtensorflow not installed');
    expect(e.message).toContain('wasm: plain string reason');
  });

  it('retries a failed factory on the next call instead of caching the failure', async () => {
    let attempts = 0;
    registerBackend('flaky', async () => {
      attempts++;
      if (attempts === 1) throw new Error('first try fails');
      return ok('flaky')();
    });
    await expect(getBackend('flaky')).rejects.toThrow(/flaky: first try fails/);
    await expect(getBackend('flaky')).resolves.toBeDefined();
    expect(attempts).toBe(2);
  });

  it('names the registered backends when asked for an unknown one, and says what to import when none is', async () => {
    await expect(getBackend()).rejects.toThrow(/no backend is registered: import @moreau\/backend-ort/);
    registerBackend('ort', ok('ort'));
    const err = (await getBackend('tfjs').catch((e: unknown) => e)) as BackendUnavailableError;
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(err.message).toMatch(/backend 'tfjs' is not registered; registered: ort/);
    expect(err.failures).toEqual([{ name: 'tfjs', reason: 'not registered' }]);
  });
});

describe('UnsupportedPrimitiveError', () => {
  it('names the primitive and the backend', () => {
    const e = new UnsupportedPrimitiveError('scatterAdd', 'tfjs');
    expect(e).toBeInstanceOf(MoreauError);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('UnsupportedPrimitiveError');
    expect(e.primitive).toBe('scatterAdd');
    expect(e.backend).toBe('tfjs');
    expect(e.message).toBe("backend 'tfjs' has no lowering for primitive 'scatterAdd'");
  });
});
