/**
 * End-to-end tests of the BUILT `moreau` binary for issues 18 and 19: JSON you can pipe (`--json -`
 * on every command), `--out DIR/`, `--json /dev/stdout`, destinations checked before the work and
 * never replaced unless they are ours, plugins that misbehave (process.exit at import, a score()
 * that never settles, a busy loop under Ctrl-C, writes to the weights), and a seeded fuzz of
 * hostile inputs through the CLI (exit code, and a message naming the file / field).
 *
 * Runs on the embedded `tiny` model (no shared data needed); small limits keep it CI-sized.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Rng } from '@moreau/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, hasDist, leftovers, moreau, type Run, repoRoot, snapshot } from './e2e-helpers.js';

if (!hasDist) console.warn(`moreau edge e2e tests skipped: ${BIN} is missing (run \`npm run build\` first)`);

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-edges-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const tmp = (name: string) => path.join(TMP, name);
// Plugins import @moreau/core: give the temp folder the repository's packages.
mkdirSync(tmp('node_modules'));
symlinkSync(path.join(repoRoot, 'node_modules/@moreau'), tmp('node_modules/@moreau'));
const HELDOUT = path.join(repoRoot, 'packages/models/assets/tiny/heldout.txt');

/** Runs in TMP, so relative paths and plugins resolve there. */
const run = (args: readonly string[], options: Parameters<typeof moreau>[1] = {}) =>
  moreau(args, { cwd: TMP, ...options });

function expectRuntime(r: Run, message: RegExp) {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toMatch(/moreau-(tmp|old|probe)-/);
}

/** A criterion plugin whose score() body is given (registered as `name`). */
function plugin(name: string, body: string, top = ''): string {
  const f = tmp(`${name}.mjs`);
  writeFileSync(
    f,
    `import { registerCriterion } from '@moreau/core';
${top}
registerCriterion({
  name: '${name}',
  description: 'test plugin',
  requires: { gradients: false, calibration: false },
  options: {},
  defaultReduction: 'sum',
  channelMode: () => 'abs-then-sum',
  async score(ctx) { ${body} },
});
`,
  );
  return `./${name}.mjs`;
}
const ranked =
  'return { unitScores: ctx.groups.map((g) => Float64Array.from({ length: g.units }, (_, i) => i)) };';

describe.skipIf(!hasDist)('JSON you can pipe (built binary)', () => {
  it('--json - prints exactly one JSON document on stdout, for every command', async () => {
    const commands: [string, string[]][] = [
      ['info', ['info', 'tiny']],
      ['eval', ['eval', 'tiny', '--ppl', `h=${HELDOUT}`, '--limit', '1', '--seq-len', '32']],
      ['prune', ['prune', 'tiny', '--criterion', 'magnitude', '--ratio', '0.2', '--out', 'json-pruned/']],
      [
        'compare',
        [
          'compare',
          'tiny',
          '--criteria',
          'magnitude',
          '--ratios',
          '0.2',
          '--limit',
          '1',
          '--seq-len',
          '32',
          '--report',
          'json-report',
        ],
      ],
      [
        'robustness',
        [
          'robustness',
          'tiny',
          '--criteria',
          'magnitude',
          '--ratio',
          '0.2',
          '--perturb',
          'fp16',
          '--limit',
          '1',
          '--seq-len',
          '32',
        ],
      ],
      ['export', ['export', 'tiny', '--onnx', 'json.onnx']],
      ['generate', ['generate', 'tiny', '--max-tokens', '4', '--prompt', 'The']],
      ['criteria', ['criteria']],
    ];
    for (const [name, args] of commands) {
      const r = await run([...args, '--json', '-']);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      const parsed = JSON.parse(r.stdout);
      expect(typeof parsed, name).toBe('object');
      // The human-readable results went to stderr.
      expect(r.stderr.length, name).toBeGreaterThan(0);
    }
    // `| jq .ppl` works: the eval JSON has the perplexity.
    const e = await run([
      'eval',
      'tiny',
      '--ppl',
      `h=${HELDOUT}`,
      '--limit',
      '1',
      '--seq-len',
      '32',
      '--json',
      '-',
      '-q',
    ]);
    expect(JSON.parse(e.stdout).ppl.h).toBeGreaterThan(1);
    expect(e.stderr).toBe('');
    expect(leftovers(TMP)).toEqual([]);
  }, 180_000);

  it('--json /dev/stdout is stdout (as root /dev/stdout stays a symlink); a flag-like --json is a usage error', async () => {
    const r = await run(['info', 'tiny', '--json', '/dev/stdout']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).model.params).toBe(2410176);
    if (process.getuid?.() === 0) expect(lstatSync('/dev/stdout').isSymbolicLink()).toBe(true);
    else
      console.warn('not root: /dev/stdout could not have been replaced anyway; the symlink check is skipped');
    const bad = await run(['criteria', '--json', '-q']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--json needs a file name or '-' for stdout, got '-q'/);
    expect(bad.stderr).toContain("(run 'moreau criteria --help' for its flags)");
    expect(existsSync(tmp('-q'))).toBe(false);
    const out = await run([
      'prune',
      'tiny',
      '--criterion',
      'magnitude',
      '--ratio',
      '0.2',
      '--out',
      '--overwrite',
    ]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/--out needs a path, got '--overwrite'/);
  }, 60_000);

  it('usage errors for sampling flags: --temperature -1, --top-p 5', async () => {
    for (const [flag, value, message] of [
      ['--temperature', '-1', /--temperature must be a number >= 0, got '-1'/],
      ['--top-p', '5', /--top-p must be a number in \(0, 1\], got '5'/],
      ['--top-p', '0', /--top-p must be a number in \(0, 1\], got '0'/],
    ] as const) {
      const r = await run(['generate', 'tiny', flag, value]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  }, 60_000);
});

describe.skipIf(!hasDist)('outputs: checked first, ours only, all or nothing (built binary)', () => {
  it('--out DIR/ with a trailing slash works, and so does a nested new path', async () => {
    const r = await run([
      'prune',
      'tiny',
      '--criterion',
      'magnitude',
      '--ratio',
      '0.2',
      '--out',
      'slash/',
      '--plan-out',
      'deep/er/plan.json',
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(Object.keys(snapshot(tmp('slash'))).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect(JSON.parse(readFileSync(tmp('deep/er/plan.json'), 'utf8')).format).toBe('moreau-pruning-plan');
    expect(leftovers(TMP)).toEqual([]);
  }, 60_000);

  it('destinations are checked before any work: nothing is written when one cannot be', async () => {
    writeFileSync(tmp('a-file'), 'x');
    const r = await run([
      'prune',
      'tiny',
      '--criterion',
      'magnitude',
      '--ratio',
      '0.2',
      '--out',
      'never',
      '--plan-out',
      'a-file/plan.json',
    ]);
    expectRuntime(
      r,
      /--plan-out 'a-file\/plan\.json': cannot write: a part of the path is not a directory \(ENOTDIR\)/,
    );
    expect(r.stderr).not.toMatch(/parameters/); // failed before the model loaded
    expect(existsSync(tmp('never'))).toBe(false);
    // A device that is full: the stream is written before any rename, so --out stays absent.
    const full = await run([
      'prune',
      'tiny',
      '--criterion',
      'magnitude',
      '--ratio',
      '0.2',
      '--out',
      'never',
      '--json',
      '/dev/full',
      '-q',
    ]);
    expectRuntime(full, /--json '\/dev\/full': cannot write: no space left on the device \(ENOSPC\)/);
    expect(existsSync(tmp('never'))).toBe(false);
    const dir = await run(['info', 'tiny', '--json', TMP]);
    expectRuntime(dir, /--json '.*': is a directory, not a file/);
    expect(leftovers(TMP)).toEqual([]);
  }, 90_000);

  it('--overwrite replaces only an earlier output, never the input model or files it did not write', async () => {
    const base = ['prune', 'tiny', '--criterion', 'magnitude', '--ratio', '0.2', '-q'];
    expect((await run([...base, '--out', 'ow'])).code).toBe(0);
    writeFileSync(tmp('ow/notes.txt'), 'mine');
    const before = snapshot(tmp('ow'));
    expectRuntime(
      await run([...base, '--out', 'ow', '--overwrite']),
      /--out 'ow': holds files moreau prune does not write \('notes\.txt'\): add --force/,
    );
    expect(snapshot(tmp('ow'))).toEqual(before);
    expect((await run([...base, '--out', 'ow', '--overwrite', '--force'])).code).toBe(0);
    expect(existsSync(tmp('ow/notes.txt'))).toBe(false);
    // The input model's own directory: never.
    const self = await run([
      'prune',
      'ow',
      '--criterion',
      'magnitude',
      '--ratio',
      '0.2',
      '--out',
      'ow',
      '--overwrite',
      '--force',
      '-q',
    ]);
    expectRuntime(self, /--out 'ow': is the input model itself: write the pruned model elsewhere/);
    expect((await run([...base, '--out', '.', '--overwrite', '--force'])).stderr).toMatch(
      /is the working directory or above it/,
    );
    expect(leftovers(TMP)).toEqual([]);
  }, 90_000);

  it('export --onnx needs --overwrite to replace a file; compare --report keeps files it did not write', async () => {
    writeFileSync(tmp('mine.onnx'), 'not ours');
    const e = await run(['export', 'tiny', '--onnx', 'mine.onnx', '-q']);
    expectRuntime(e, /--onnx 'mine\.onnx': already exists \(add --overwrite to replace it\)/);
    expect(readFileSync(tmp('mine.onnx'), 'utf8')).toBe('not ours');
    expect((await run(['export', 'tiny', '--onnx', 'mine.onnx', '--overwrite', '-q'])).code).toBe(0);
    const args = [
      'compare',
      'tiny',
      '--criteria',
      'magnitude',
      '--ratios',
      '0.2',
      '--limit',
      '1',
      '--seq-len',
      '32',
      '--report',
      'rep',
      '-q',
    ];
    expect((await run(args)).code).toBe(0);
    writeFileSync(tmp('rep/my-notes.md'), 'mine');
    expectRuntime(await run(args), /--report 'rep': holds files a report does not \('my-notes\.md'\)/);
    expect(readFileSync(tmp('rep/my-notes.md'), 'utf8')).toBe('mine');
  }, 120_000);
});

describe.skipIf(!hasDist)(
  'plugins cannot end the run silently, hang it, or change the model (built binary)',
  () => {
    const prune = (p: string, name: string, out: string, extra: string[] = []) =>
      run([
        'prune',
        'tiny',
        '--plugin',
        p,
        '--criterion',
        name,
        '--ratio',
        '0.2',
        '--out',
        out,
        '-q',
        ...extra,
      ]);

    it('process.exit(0) at import, and a score() that never settles, are errors naming the plugin', async () => {
      const exiting = plugin('exits', ranked, 'process.exit(0);');
      expectRuntime(
        await run(['criteria', '--plugin', exiting]),
        /plugin '\.\/exits\.mjs' called process\.exit\(0\): a plugin must not end the process/,
      );
      const hangs = plugin('hangs', 'await new Promise(() => {});');
      const r = await prune(hangs, 'hangs', 'hang-out');
      expectRuntime(
        r,
        /criterion 'hangs' of plugin '\.\/hangs\.mjs' scoring never finished: it returned a promise that never settles/,
      );
      expect(existsSync(tmp('hang-out'))).toBe(false);
      const exitsLater = plugin('exits-in-score', 'process.exit(0);');
      expectRuntime(
        await prune(exitsLater, 'exits-in-score', 'x'),
        /criterion 'exits-in-score' \(plugin '\.\/exits-in-score\.mjs'\) called process\.exit\(0\)/,
      );
    }, 60_000);

    it('a busy-looping score(): the first Ctrl-C / SIGTERM is forwarded, the second ends the run at once', async () => {
      const busy = plugin('busy', 'for (;;) {}');
      for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        mkdirSync(tmp(`busy-${signal}.tmp-my-notes`));
        writeFileSync(tmp(`busy-${signal}.tmp-my-notes/n.txt`), 'mine');
        const before = snapshot(TMP);
        let sent = 0;
        const r = await run(
          [
            'prune',
            'tiny',
            '--plugin',
            busy,
            '--criterion',
            'busy',
            '--ratio',
            '0.2',
            '--out',
            `busy-${signal}`,
            '--plan-out',
            `busy-${signal}.json`,
          ],
          {
            onStderr: (err, child) => {
              if (sent === 0 && /parameters; backend/.test(err)) {
                sent = 1;
                setTimeout(() => child.kill(signal), 500);
                setTimeout(() => child.kill(signal), 1500);
              }
            },
          },
        );
        expect(sent).toBe(1);
        expect(r.code, r.stderr).toBe(130);
        expect(r.stderr).toMatch(/interrupted, stopping \(Ctrl-C again to stop at once\)/);
        expect(r.stderr).toMatch(/stopped; every output is as before the run/);
        expect(snapshot(TMP)).toEqual(before);
      }
    }, 60_000);

    it('a plugin writing to ctx.weights / ctx.weight() cannot change the saved model', async () => {
      const vandal = plugin(
        'vandal',
        `for (const p of ctx.params) { ctx.weight(p.name).fill(7); ctx.weights.get(p.name)?.fill(8); }
       for (const [, w] of ctx.weights) w.fill(9);
       ${ranked}`,
      );
      const r = await prune(vandal, 'vandal', 'vandal-out', ['--plan-out', 'vandal-plan.json']);
      expect(r.code, r.stderr).toBe(0);
      // The same plan applied by moreau itself gives byte-identical weights.
      const replay = await run([
        'prune',
        'tiny',
        '--plan',
        'vandal-plan.json',
        '--out',
        'vandal-replay',
        '-q',
      ]);
      expect(replay.code, replay.stderr).toBe(0);
      expect(
        readFileSync(tmp('vandal-out/model.safetensors')).equals(
          readFileSync(tmp('vandal-replay/model.safetensors')),
        ),
      ).toBe(true);
    }, 60_000);
  },
);

/**
 * Seeded fuzz through the CLI: generated hostile plugins, texts, task files and output paths.
 * Each case asserts the exit code and that the one-line message names the file / plugin and the
 * field (parameter, group, line) that was wrong.
 */
describe.skipIf(!hasDist)('seeded fuzz of hostile inputs through the CLI (built binary)', () => {
  const SEED = 19_18;
  const rng = new Rng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;

  interface Case {
    readonly name: string;
    readonly args: string[];
    readonly code: number;
    readonly message: RegExp;
  }

  function pluginCase(k: number): Case {
    const bad = pick(['NaN', 'Infinity', '-Infinity', "'x'", 'null', 'undefined']);
    const shape = pick(['unit', 'salience', 'length', 'result']);
    const name = `fuzz-${k}`;
    let body: string;
    let message: RegExp;
    if (shape === 'unit') {
      const at = rng.int(4);
      body = `const s = ctx.groups.map((g) => Array.from({ length: g.units }, (_, i) => i)); s[${rng.int(8)}][${at}] = ${bad}; return { unitScores: s };`;
      message = new RegExp(
        `criterion '${name}' \\(plugin '\\./${name}\\.mjs'\\) returned unit scores for group layer\\.\\d\\.(attention|mlp) with .* at index ${at}`,
      );
    } else if (shape === 'salience') {
      body = `const m = new Map(); for (const p of ctx.params) if (p.member) { const n = p.shape.reduce((a, b) => a * b, 1); const v = Array.from({ length: n }, () => 1); v[${rng.int(64)}] = ${bad}; m.set(p.name, v); } return { salience: m };`;
      message = new RegExp(
        `criterion '${name}' \\(plugin '\\./${name}\\.mjs'\\) returned salience for 'model\\.layers\\.\\d\\.[a-z_.]+weight' with .* at index \\d+`,
      );
    } else if (shape === 'length') {
      const d = pick([-1, 1, 5]);
      body = `return { unitScores: ctx.groups.map((g) => new Float64Array(Math.max(0, g.units + ${d}))) };`;
      message = new RegExp(
        `criterion '${name}' \\(plugin '\\./${name}\\.mjs'\\) returned \\d+ unit scores for group \\S+, which has \\d+ units`,
      );
    } else {
      body = `return ${pick(['42', "'scores'", 'null', '[]'])};`;
      message = new RegExp(`criterion '${name}' \\(plugin '\\./${name}\\.mjs'\\) returned`);
    }
    const p = plugin(name, body);
    return {
      name: `plugin ${shape} ${bad}`,
      args: [
        'prune',
        'tiny',
        '--plugin',
        p,
        '--criterion',
        name,
        '--ratio',
        '0.2',
        '--out',
        `fuzz-out-${k}`,
        '-q',
      ],
      code: 1,
      message,
    };
  }

  function textCase(k: number): Case {
    const kind = pick([
      'nul',
      'dir',
      'jsonl-null',
      'jsonl-field',
      'parquet',
      'task-null',
      'task-empty',
      'tsv-short',
    ]);
    const f = tmp(
      `fuzz-${k}-${kind}${kind === 'parquet' ? '.parquet' : kind === 'tsv-short' ? '.tsv' : kind.startsWith('t') || kind.startsWith('jsonl') ? '.jsonl' : '.txt'}`,
    );
    let message: RegExp;
    const esc = path.basename(f).replace(/\./g, '\\.');
    switch (kind) {
      case 'nul':
        writeFileSync(
          f,
          Uint8Array.from({ length: 50 + rng.int(50) }, (_, i) => (i === 7 ? 0 : 65)),
        );
        message = new RegExp(`text file '.*${esc}' is not text: it has a zero byte at offset 7`);
        break;
      case 'dir':
        mkdirSync(f);
        message = new RegExp(`--(ppl|task) x: '.*${esc}' is a directory, not a file`);
        break;
      case 'jsonl-null':
        writeFileSync(f, `${pick(['null', '[1]', '3', '"s"'])}\n{"text":"ok"}\n`);
        message = new RegExp(`${esc}:1: a row must be a JSON object`);
        break;
      case 'jsonl-field':
        writeFileSync(f, `{"text":"ok"}\n{"text":${pick(['1', 'null', '[]', '{}'])}}\n`);
        message = new RegExp(`${esc}:2: field 'text' is missing or not a string`);
        break;
      case 'parquet': {
        const bytes = Uint8Array.from({ length: 20 + rng.int(200) }, () => rng.int(256));
        if (rng.uniform() < 0.5) bytes.set([0x50, 0x41, 0x52, 0x31], 0);
        writeFileSync(f, bytes);
        message = new RegExp(`${esc}: not a (complete )?(readable )?parquet file`);
        break;
      }
      case 'task-null':
        writeFileSync(f, `null\n{"query":"q","choices":["a","b"],"gold":0}\n`);
        message = new RegExp(`${esc}:1: a row must be a JSON object, got null`);
        break;
      case 'task-empty':
        writeFileSync(f, '\n');
        message = new RegExp(`${esc}: no rows`);
        break;
      default:
        writeFileSync(f, 'ID\tQuestion Stem\tChoices\tComplete Question\tAnswer Key\nq1\tWhat?\n');
        message = new RegExp(`${esc}:2: 2 tab-separated cells, the header has 5`);
    }
    const asTask = kind.startsWith('task') || kind === 'tsv-short' || (kind === 'dir' && rng.uniform() < 0.5);
    const flag = asTask
      ? ['--task', `${kind === 'tsv-short' ? 'openbookqa' : 'piqa'}=${f}`]
      : ['--ppl', `x=${f}`];
    if (kind === 'dir')
      message = new RegExp(
        `--${asTask ? 'task' : 'ppl'} ${asTask ? 'piqa' : 'x'}: '.*${esc}' is a directory, not a file`,
      );
    return { name: `text ${kind}`, args: ['eval', 'tiny', ...flag, '--limit', '1', '-q'], code: 1, message };
  }

  it('24 generated cases: exit code and a message naming the file / plugin and field', async () => {
    const cases: Case[] = [];
    for (let k = 0; k < 24; k++) cases.push(k % 2 === 0 ? pluginCase(k) : textCase(k));
    // Two at a time (two cores).
    const results: Run[] = [];
    for (let i = 0; i < cases.length; i += 2) {
      results.push(...(await Promise.all(cases.slice(i, i + 2).map((c) => run(c.args)))));
    }
    cases.forEach((c, i) => {
      const r = results[i]!;
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(c.code);
      expect(r.stderr, c.name).toMatch(c.message);
      expect(r.stderr.trim().split('\n').length, `${c.name}: one line\n${r.stderr}`).toBe(1);
      expect(r.stdout, c.name).toBe('');
    });
    expect(leftovers(TMP)).toEqual([]);
  }, 180_000);
});
