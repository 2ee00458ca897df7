import { describe, expect, it } from 'vitest';
import { parseLayerRange, parsePair, parseRatio } from './internal/flags.js';
import { buildProgram, type Handlers } from './program.js';

describe('the command-line contract', () => {
  it('parses ratios, layer ranges and NAME=VALUE pairs', () => {
    expect(parseRatio('0.2')).toBe(0.2);
    expect(parseRatio('0')).toBe(0);
    for (const bad of ['1', '1.5', '-0.1', '', 'abc'])
      expect(() => parseRatio(bad)).toThrow(/ratio must be a number in \[0, 1\)/);
    expect(parseLayerRange('4:30')).toEqual([4, 30]);
    expect(() => parseLayerRange('5:2')).toThrow(/A <= B/);
    expect(parsePair('--ppl', 'wiki=a=b.txt')).toEqual(['wiki', 'a=b.txt']);
    expect(() => parsePair('--ppl', 'wiki')).toThrow(/--ppl expects NAME=VALUE/);
  });

  it('declares the documented defaults', async () => {
    const seen: Record<string, Record<string, unknown>> = {};
    const handler = (name: string) => async (_m: unknown, o?: unknown) => {
      seen[name] = (o ?? _m) as Record<string, unknown>;
    };
    const names = [
      'info',
      'eval',
      'prune',
      'compare',
      'robustness',
      'export',
      'generate',
      'criteria',
      'init',
    ];
    const program = buildProgram(
      Object.fromEntries(names.map((n) => [n, handler(n)])) as unknown as Handlers,
      '0.0.0',
    );
    await program.parseAsync(
      ['compare', 'tiny', '--criteria', 'taylor', '--ratios', '0.2', '--report', 'r'],
      { from: 'user' },
    );
    expect(seen.compare).toMatchObject({
      backend: 'auto',
      calibSamples: 4,
      calibSeqLen: 128,
      seed: 1,
      seqLen: 128,
      batchSize: 8,
      global: false,
      robustness: false,
      perturb: 'fp16,bf16,gauss:0.01x3',
      opt: [],
      ppl: [],
      task: [],
    });
    await program.parseAsync(['init', '--preset', 'llama-2-7b', '--out', 'm'], { from: 'user' });
    expect(seen.init).toEqual({
      preset: 'llama-2-7b',
      out: 'm',
      dtype: 'float16',
      seed: 1,
      overwrite: false,
      quiet: false,
    });
    await program.parseAsync(['generate', 'tiny'], { from: 'user' });
    expect(seen.generate).toMatchObject({ prompt: '', maxTokens: 64, temperature: 0, topP: 1, seed: 1 });
    expect(seen.generate!.adapter).toBeUndefined();
    // --adapter DIR (eval, generate): a folder path, never a flag or stdout.
    await program.parseAsync(['eval', 'P', '--adapter', 'A', '--ppl', 'x=y.txt'], { from: 'user' });
    expect(seen.eval).toMatchObject({ adapter: 'A', ppl: ['x=y.txt'] });
    await program.parseAsync(['generate', 'P', '--adapter', 'A'], { from: 'user' });
    expect(seen.generate).toMatchObject({ adapter: 'A' });
    program.commands.find((c) => c.name() === 'eval')!.configureOutput({ writeErr: () => {} });
    await expect(program.parseAsync(['eval', 'P', '--adapter', '-'], { from: 'user' })).rejects.toThrow(
      /--adapter needs a path; '-' \(stdout\) is only for --json/,
    );
  });
});
