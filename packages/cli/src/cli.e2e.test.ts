/**
 * End-to-end tests of the BUILT `moreau` binary (node packages/cli/dist/moreau.js; `npm test`
 * builds first) on the real stories260K model and data from ../shared (or MOREAU_SHARED).
 * Skips with a message when dist or the shared folder is missing. Runs are kept small
 * (--limit, few short calibration windows, moreau iterations=2 where defaults are not the point).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '@moreau/models';
import {
  haveShared,
  STORIES_BIN,
  STORIES_DOC,
  STORIES_TOK,
  sharedPath,
  TINY_GGUF,
  TINYSTORIES_HEAD,
} from '@moreau/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { buildProgram, type Handlers } from './program.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(repoRoot, 'packages/cli/dist/moreau.js');
const F = {
  model: sharedPath(STORIES_BIN),
  tok: sharedPath(STORIES_TOK),
  doc: sharedPath(STORIES_DOC),
  gguf: sharedPath(TINY_GGUF),
  ts: sharedPath(TINYSTORIES_HEAD),
  wiki: sharedPath('data/wikitext-2-raw/wiki.test.raw'),
  arc: sharedPath('data/zeroshot/arc_easy.jsonl'),
  hellaswag: sharedPath('data/hellaswag/hellaswag_val_full.txt'),
  winogrande: sharedPath('data/zeroshot/winogrande.jsonl'),
  lambada: sharedPath('data/zeroshot/lambada_openai.jsonl'),
};

const hasDist = existsSync(BIN);
if (!hasDist) console.warn(`moreau CLI e2e tests skipped: ${BIN} is missing (run \`npm run build\` first)`);
const noModel = !hasDist || !haveShared('moreau CLI e2e tests on stories260K', ...Object.values(F));

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-cli-e2e-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const tmp = (name: string) => path.join(TMP, name);

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built binary from the repository root; `onStderr` sees stderr as it arrives. */
function moreau(
  args: readonly string[],
  onStderr?: (all: string, child: ChildProcess) => void,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.MOREAU_DEBUG;
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const model = [F.model, '--tokenizer', F.tok];
/** Small calibration for speed where the defaults are not under test. */
const smallCalib = ['--calib', F.ts, '--calib-samples', '2', '--calib-seq-len', '32'];
const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const keptOf = (plan: { groups: { group: { kind: string; layer?: number }; kept: number[] }[] }) =>
  plan.groups.map((d) => [d.group.kind, d.group.layer, d.kept]);

/**
 * A usage error: exit 2, the message and one line pointing at the command's --help (not the whole
 * help) on stderr, nothing on stdout.
 */
function expectUsage(r: Run, command: string, message: RegExp) {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(message);
  const name = command === '[options] [command]' ? 'moreau' : `moreau ${command}`;
  expect(r.stderr).toContain(`(run '${name} --help' for `);
  expect(r.stderr).not.toContain('Usage:');
  expect(r.stderr.trim().split('\n').length, r.stderr).toBeLessThanOrEqual(2);
  expect(r.stdout).toBe('');
}

/** A runtime error: exit 1, one message naming what is wrong, no stack trace, nothing on stdout. */
function expectRuntime(r: Run, message: RegExp) {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stdout).toBe('');
}

describe.skipIf(!hasDist)('moreau help and usage errors (built binary)', () => {
  it('--help lists every command; every command help lists every flag with its default', async () => {
    const top = await moreau(['--help']);
    expect(top.code).toBe(0);
    expect(top.stderr).toBe('');
    const noop = async () => {};
    const program = buildProgram(
      Object.fromEntries(
        ['info', 'eval', 'prune', 'compare', 'robustness', 'export', 'generate', 'criteria', 'init'].map(
          (k) => [k, noop],
        ),
      ) as unknown as Handlers,
      '0.0.0',
    );
    for (const c of program.commands) expect(top.stdout).toContain(c.name());
    expect(top.stdout).toMatch(/Exit status: 0 ok .*1 runtime error/s);
    for (const c of program.commands) {
      const r = await moreau([c.name(), '--help']);
      expect(r.code).toBe(0);
      const help = r.stdout.replace(/\s+/g, ' ');
      for (const o of c.options) {
        expect(help, `${c.name()} ${o.flags}`).toContain(o.flags);
        if (o.defaultValue !== undefined && !(Array.isArray(o.defaultValue) && o.defaultValue.length === 0)) {
          expect(help, `${c.name()} ${o.flags} default`).toContain(
            `default: ${JSON.stringify(o.defaultValue)}`,
          );
        }
        if (o.mandatory) expect(help, `${c.name()} ${o.flags} (required)`).toMatch(/\(required\)/);
      }
    }
    const v = await moreau(['--version']);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, 60_000);

  it('init writes a random preset-shaped model that info loads; refuses an existing --out; usage errors', async () => {
    const out = tmp('init-60m');
    const r = await moreau([
      'init',
      '--preset',
      'synthetic-60m',
      '--layers',
      '1',
      '--dtype',
      'bfloat16',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^wrote .*init-60m: synthetic-60m, 1 layers, 0\.04B parameters, bfloat16, 0\.07 GB in 1 shard\n$/,
    );
    expect(r.stderr).toMatch(/writing synthetic-60m \(bfloat16\) to .*init-60m, MB: (\d+)\/\1\n/);
    const info = await moreau(['info', out]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/model +.*init-60m \(hf, BF16\)/);
    expect(info.stdout).toMatch(/vocabulary +32000 \(hf tokenizer\)/);
    const again = await moreau(['init', '--preset', 'synthetic-60m', '--layers', '1', '--out', out, '-q']);
    expectRuntime(again, /init-60m'?: already exists and is not empty/);
    const over = await moreau([
      'init',
      '--preset',
      'synthetic-60m',
      '--layers',
      '1',
      '--out',
      out,
      '-q',
      '--overwrite',
    ]);
    expect(over.code, over.stderr).toBe(0);
    expect(over.stderr).toBe('');
    expectUsage(
      await moreau(['init', '--preset', 'gpt-2', '--out', tmp('x')]),
      'init',
      /--preset must be one of llama-7b/,
    );
    expectUsage(
      await moreau(['init', '--preset', 'synthetic-60m', '--layers', '9', '--out', tmp('x')]),
      'init',
      /--layers must be at most 8/,
    );
    expectUsage(await moreau(['init', '--preset', 'synthetic-60m']), 'init', /required option '--out <dir>'/);
    expect(readdirSync(TMP).filter((f) => f.includes('.tmp-'))).toEqual([]);
  }, 60_000);

  it('commander usage errors exit 2 with the command help', async () => {
    expectUsage(await moreau(['frobnicate']), '[options] [command]', /unknown command 'frobnicate'/);
    expectUsage(
      await moreau(['prune', 'm', '--ratio', '0.2', '--criterion', 'taylor']),
      'prune',
      /required option '--out <dir>'/,
    );
    expectUsage(
      await moreau(['prune', ...model, '--criterion', 'taylor', '--ratio', '1.5', '--out', tmp('x')]),
      'prune',
      /option '--ratio <r>' argument '1.5' is invalid\. ratio must be a number in \[0, 1\)/,
    );
    expectUsage(
      await moreau(['eval', 'tiny', '--seq-len', '1']),
      'eval',
      /--seq-len must be an integer >= 2/,
    );
    expectUsage(
      await moreau(['info', 'tiny', '--backend', 'cuda']),
      'info',
      /Allowed choices are ort, tfjs, auto/,
    );
    const bare = await moreau([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Usage: moreau [options] [command]');
  }, 60_000);

  it('flag errors found by the commands exit 2 with that command help, before loading a model', async () => {
    const nothing = '/nonexistent/model.bin'; // never opened: the flags fail first
    expectUsage(
      await moreau(['prune', nothing, '--criterion', 'nosuch', '--ratio', '0.2', '--out', tmp('x')]),
      'prune',
      /unknown criterion 'nosuch'; available: block-influence, magnitude, moreau, moreau-gs, random, taylor/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--criterion',
        'moreau',
        '--ratio',
        '0.2',
        '--out',
        tmp('x'),
        '--opt',
        'bogus=1',
      ]),
      'prune',
      /criterion 'moreau' has no option 'bogus'; valid options: iterations, .*lambda/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--criterion',
        'moreau',
        '--ratio',
        '0.2',
        '--out',
        tmp('x'),
        '--opt',
        'iterations=abc',
      ]),
      'prune',
      /iterations/,
    );
    expectUsage(
      await moreau(['prune', nothing, '--ratio', '0.2', '--out', tmp('x')]),
      'prune',
      /--criterion/,
    );
    expectUsage(
      await moreau([
        'compare',
        nothing,
        '--criteria',
        'taylor,moreau',
        '--ratios',
        '0.1,1.5',
        '--report',
        tmp('r'),
      ]),
      'compare',
      /--ratios: ratio must be a number in \[0, 1\), got '1.5'/,
    );
    expectUsage(
      await moreau([
        'compare',
        nothing,
        '--criteria',
        'taylor,nosuch',
        '--ratios',
        '0.1',
        '--report',
        tmp('r'),
      ]),
      'compare',
      /unknown criterion 'nosuch'/,
    );
    expectUsage(
      await moreau([
        'compare',
        nothing,
        '--criteria',
        'taylor',
        '--ratios',
        '0.1',
        '--report',
        tmp('r'),
        '--opt',
        'bogus=2',
      ]),
      'compare',
      /--opt bogus: none of taylor has this option/,
    );
    expectUsage(
      await moreau([
        'robustness',
        nothing,
        '--criteria',
        'taylor',
        '--ratio',
        '0.2',
        '--perturb',
        'fp16,salt',
      ]),
      'robustness',
      /--perturb: unknown perturbation 'salt'/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--criterion',
        'magnitude',
        '--ratio',
        '0.2',
        '--scope',
        'rows',
        '--out',
        tmp('x'),
      ]),
      'prune',
      /option '--scope <s>' argument 'rows' is invalid\. unknown scope 'rows'; valid: block, channel, layer, unstructured, N:M/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--criterion',
        'magnitude',
        '--ratio',
        '0.2',
        '--ranking',
        'pool',
        '--out',
        tmp('x'),
      ]),
      'prune',
      /unknown ranking 'pool'; valid: local, global-per-kind, global-pool/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--criterion',
        'magnitude',
        '--ratio',
        '0.2',
        '--global',
        '--ranking',
        'global-pool',
        '--out',
        tmp('x'),
      ]),
      'prune',
      /--global means --ranking global-per-kind: drop one of --global and --ranking global-pool/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--scope',
        'layer',
        '--keep-first',
        '2',
        '--criterion',
        'magnitude',
        '--out',
        tmp('x'),
      ]),
      'prune',
      /--keep-first keeps the first N layers unscored: drop --criterion, --ratio and --preset/,
    );
    expectUsage(
      await moreau([
        'prune',
        nothing,
        '--scope',
        'unstructured',
        '--criterion',
        'random',
        '--ratio',
        '0.5',
        '--out',
        tmp('x'),
      ]),
      'prune',
      /criterion 'random' cannot prune at scope 'unstructured': it scores block, channel, layer only/,
    );
    expectUsage(
      await moreau([
        'compare',
        nothing,
        '--criteria',
        'magnitude,block-influence',
        '--scopes',
        'block,layer',
        '--ratios',
        '0.2',
        '--report',
        tmp('r'),
      ]),
      'compare',
      /criterion 'block-influence' cannot prune at scope 'block': it scores layer only/,
    );
    expectUsage(
      await moreau([
        'compare',
        nothing,
        '--criteria',
        'magnitude',
        '--scopes',
        'block,2:4,block',
        '--ratios',
        '0.2',
        '--report',
        tmp('r'),
      ]),
      'compare',
      /--scopes: a scope is listed twice in 'block,2:4,block'/,
    );
    expectUsage(
      await moreau(['robustness', nothing, '--criteria', 'magnitude', '--scope', '2:4', '--ratio', '0.2']),
      'robustness',
      /--scope 2:4 zeroes 2 of every 4 weights: drop --ratio/,
    );
    expectUsage(
      await moreau(['eval', nothing, '--task', `mmlu=${F.arc}`]),
      'eval',
      /unknown task 'mmlu'; valid: boolq, piqa/,
    );
    expectUsage(
      await moreau(['eval', nothing]),
      'eval',
      /eval needs at least one --ppl NAME=FILE or --task NAME=FILE/,
    );
    expectUsage(
      await moreau(['eval', nothing, '--ppl', 'noequals']),
      'eval',
      /--ppl expects NAME=VALUE, got 'noequals'/,
    );
  }, 90_000);
});

describe.skipIf(noModel)('moreau on stories260K (built binary)', () => {
  it('runtime errors exit 1 naming the file, field or option', async () => {
    expectRuntime(
      await moreau(['info', tmp('missing.bin')]),
      /model '.*missing\.bin' not found: expected an HF directory, a llama2\.c \.bin, a \.gguf file/,
    );
    const truncated = tmp('truncated.bin');
    writeFileSync(truncated, readFileSync(F.model).subarray(0, 100_000));
    expectRuntime(
      await moreau(['info', truncated, '--tokenizer', F.tok]),
      /truncated\.bin: truncated: the header .* implies 1056540 bytes but the file has 100000 bytes/,
    );
    expectRuntime(
      await moreau(['info', F.model]),
      /llama2\.c checkpoint: pass its tokenizer with --tokenizer/,
    );
    expectRuntime(
      await moreau(['info', F.model, '--tokenizer', tmp('nope.bin')]),
      /--tokenizer: file '.*nope\.bin' not found|tokenizer '.*nope\.bin' not found/,
    );
    expectRuntime(
      await moreau([
        'prune',
        ...model,
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        '--out',
        tmp('x'),
        '--calib',
        tmp('nope.txt'),
      ]),
      /--calib: file '.*nope\.txt' not found/,
    );
    expectRuntime(
      await moreau(['eval', ...model, '--ppl', `ts=${tmp('nope.txt')}`]),
      /--ppl ts: file '.*nope\.txt' not found/,
    );
    const badCalib = tmp('bad-calib.json');
    writeFileSync(
      badCalib,
      JSON.stringify({
        iterations: [
          [
            [1, 2, 3],
            [1, 2],
          ],
        ],
      }),
    );
    expectRuntime(
      await moreau([
        'prune',
        ...model,
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        '--out',
        tmp('x'),
        '--calib-tokens',
        badCalib,
      ]),
      /bad-calib\.json: iterations\[0\]\[1\] has 2 tokens, other windows have 3/,
    );
    const occupied = tmp('occupied');
    mkdirSync(occupied);
    writeFileSync(path.join(occupied, 'keep.txt'), 'mine');
    expectRuntime(
      await moreau(['prune', ...model, '--criterion', 'magnitude', '--ratio', '0.2', '--out', occupied]),
      /--out '.*occupied': already exists and is not empty \(add --overwrite to replace it\)/,
    );
    expectRuntime(
      await moreau([
        'compare',
        ...model,
        '--criteria',
        'magnitude',
        '--ratios',
        '0.2',
        '--report',
        occupied,
        '--ppl',
        `ts=${F.ts}`,
      ]),
      /--report '.*occupied': exists, is not empty and holds no report\.json/,
    );
    expect(readdirSync(occupied)).toEqual(['keep.txt']);
    expectRuntime(
      await moreau(['criteria', '--plugin', './no/such/plugin.js']),
      /plugin '\.\/no\/such\/plugin\.js' not found/,
    );
  }, 120_000);

  it('info: text on stdout, --json; llama2.c, GGUF', async () => {
    const r = await moreau(['info', ...model, '--json', tmp('info.json')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/parameters\s+260,032/);
    expect(r.stdout).toMatch(/heads \/ kv heads 8 \/ 4 \(head_dim 8\)/);
    expect(r.stdout).toMatch(/^\s+4\s+8\s+4\s+172$/m);
    const info = json(tmp('info.json')).model;
    expect(info).toMatchObject({
      format: 'llama2c',
      params: 260032,
      layers: 5,
      heads: 8,
      kv_heads: 4,
      vocab_size: 512,
    });
    expect(info.per_layer).toHaveLength(5);
    const g = await moreau(['info', F.gguf]);
    expect(g.code, g.stderr).toBe(0);
    expect(g.stdout).toMatch(/\(gguf, /);
    expect(g.stdout).toMatch(/vocabulary\s+32000/);
    // A reader that goes away (`moreau info ... | head -1`) is no error: exit 0, files still written.
    const piped = spawn(process.execPath, [BIN, 'info', ...model, '--json', tmp('info-pipe.json')], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    piped.stdout.destroy();
    let pipedErr = '';
    piped.stderr.on('data', (d) => {
      pipedErr += d;
    });
    const pipedCode = await new Promise((resolve) => piped.on('close', resolve));
    expect(pipedErr).toBe('');
    expect(pipedCode).toBe(0);
    expect(json(tmp('info-pipe.json')).model.params).toBe(260032);
  }, 60_000);

  it('criteria lists the built-ins and a --plugin criterion', async () => {
    const r = await moreau(['criteria', '--json', tmp('criteria.json')]);
    expect(r.code, r.stderr).toBe(0);
    for (const c of ['magnitude', 'random', 'taylor', 'moreau', 'moreau-gs'])
      expect(r.stdout).toContain(`${c} — `);
    expect(r.stdout).toMatch(/--opt iterations=10/);
    expect(json(tmp('criteria.json')).criteria.map((c: { name: string }) => c.name)).toContain('moreau-gs');
    const plugin = path.join(repoRoot, 'examples/fisher-criterion/dist/index.js');
    if (existsSync(plugin)) {
      const p = await moreau(['criteria', '--plugin', plugin]);
      expect(p.code, p.stderr).toBe(0);
      expect(p.stdout).toContain('fisher — ');
    }
  }, 60_000);

  it('generate --max-tokens 200 prints the reference greedy text of llama2.c', async () => {
    const doc = readFileSync(F.doc, 'utf8');
    const reference = /-t 0\.0\n([\s\S]*?)\n```/.exec(doc)![1]!;
    const r = await moreau(['generate', ...model, '--max-tokens', '200', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const text = r.stdout.replace(/\n$/, '');
    expect(text.length).toBeGreaterThan(400);
    expect(reference.startsWith(text), `got:\n${text}`).toBe(true);
    expect(text.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
    // Layer-streamed decoding prints the same text, and says how it ran.
    const streamed = await moreau(['generate', ...model, '--max-tokens', '200', '--exec', 'streamed']);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout.replace(/\n$/, '')).toBe(text);
    expect(streamed.stderr).toMatch(
      /generated 200 tokens in [\d.]+ s \([\d.]+ tokens\/s; exec streamed; compute float32\)/,
    );
    // Sampling is seeded: the same seed gives the same text, another seed another text.
    const sample = (seed: string) =>
      moreau(['generate', ...model, '--max-tokens', '32', '--temperature', '1', '--seed', seed, '-q']);
    const [a, b, c] = [await sample('7'), await sample('7'), await sample('8')];
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout.length).toBeGreaterThan(20);
    expect(c.stdout).not.toBe(a.stdout);
    // A prompt is printed, then continued.
    const p = await moreau(['generate', ...model, '--prompt', 'The dog', '--max-tokens', '8', '-q']);
    expect(p.stdout.startsWith('The dog')).toBe(true);
    expect(p.stdout.length).toBeGreaterThan('The dog'.length + 8);
  }, 120_000);

  it('eval: perplexity and zero-shot tasks, JSON contract, progress only on stderr, --quiet', async () => {
    const out = tmp('eval.json');
    const r = await moreau([
      'eval',
      ...model,
      '--ppl',
      `ts=${F.ts}`,
      '--ppl',
      `wiki=${F.wiki}`,
      '--task',
      `arc_easy=${F.arc}`,
      '--task',
      `hellaswag=${F.hellaswag}`,
      '--task',
      `winogrande=${F.winogrande}`,
      '--task',
      `lambada=${F.lambada}`,
      '--limit',
      '3',
      '--json',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ppl ts\s+\d+\.\d{4}\s+\(nll \d\.\d+, 381 tokens\)$/m);
    expect(r.stdout).toMatch(
      /^task hellaswag\s+acc \d\.\d{4}\s+acc_norm \d\.\d{4}\s+n 3\s+paper \d\.\d{4}$/m,
    );
    expect(r.stdout).toMatch(/^task paper average\s+\d\.\d{4} over 3 of 7 tasks$/m);
    for (const line of r.stdout.trim().split('\n')) expect(line).toMatch(/^(ppl|task) /);
    expect(r.stderr).toMatch(/ppl ts \(whole\): 3\/3 windows/);
    const j = json(out);
    expect(Object.keys(j).sort()).toEqual([
      'adapter',
      'backend',
      'compute',
      'exec',
      'field',
      'model',
      'nll',
      'paper_average',
      'paper_tasks',
      'ppl',
      'ppl_join',
      'tasks',
      'tokens',
      'zeroshot_protocol',
    ]);
    expect(j).toMatchObject({
      zeroshot_protocol: 'current',
      ppl_join: null,
      field: null,
      paper_tasks: 3,
      adapter: null,
    });
    expect(j.exec).toBe('whole');
    expect(j.backend).toEqual({ name: 'ort', device: 'cpu' });
    expect(j.model).toMatchObject({ params: 260032, format: 'llama2c' });
    expect(j.ppl.ts).toBeGreaterThan(2);
    expect(j.ppl.ts).toBeLessThan(10);
    expect(j.ppl.wiki).toBeGreaterThan(j.ppl.ts); // out of domain
    expect(j.ppl.ts).toBeCloseTo(Math.exp(j.nll.ts), 6);
    expect(j.tokens).toEqual({ ts: 381, wiki: 381 });
    for (const t of ['arc_easy', 'hellaswag', 'winogrande']) {
      expect(Object.keys(j.tasks[t]).sort()).toEqual(['acc', 'acc_norm', 'n', 'paper']);
      expect(j.tasks[t].n).toBe(3);
    }
    // The papers' metric: acc for arc_easy and winogrande, acc_norm for hellaswag.
    expect(j.tasks.arc_easy.paper).toBe(j.tasks.arc_easy.acc);
    expect(j.tasks.winogrande.paper).toBe(j.tasks.winogrande.acc);
    expect(j.tasks.hellaswag.paper).toBe(j.tasks.hellaswag.acc_norm);
    expect(j.paper_average).toBeCloseTo(
      (j.tasks.arc_easy.acc + j.tasks.winogrande.acc + j.tasks.hellaswag.acc_norm) / 3,
      12,
    );
    expect(j.tasks.lambada).toMatchObject({ acc_norm: null, n: 3, paper: null });
    // --quiet: nothing on stderr; the tfjs backend agrees with onnxruntime.
    const q = await moreau([
      'eval',
      ...model,
      '--ppl',
      `ts=${F.ts}`,
      '--limit',
      '1',
      '--seq-len',
      '32',
      '-q',
      '--json',
      tmp('q.json'),
    ]);
    const t = await moreau([
      'eval',
      ...model,
      '--ppl',
      `ts=${F.ts}`,
      '--limit',
      '1',
      '--seq-len',
      '32',
      '-q',
      '--backend',
      'tfjs',
      '--json',
      tmp('t.json'),
    ]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).toBe('');
    expect(t.code, t.stderr).toBe(0);
    expect(json(tmp('t.json')).backend.name).toBe('tfjs');
    expect(json(tmp('t.json')).nll.ts).toBeCloseTo(json(tmp('q.json')).nll.ts, 4);
  }, 180_000);

  it('prune: HF directory with per-layer dims and tokenizer, JSON contract, --save-calib / --calib-tokens / --plan replay', async () => {
    const out1 = tmp('pruned1');
    const r = await moreau([
      'prune',
      ...model,
      '--criterion',
      'moreau',
      '--opt',
      'iterations=2',
      '--ratio',
      '0.2',
      ...smallCalib,
      '--out',
      out1,
      '--save-calib',
      tmp('calib.json'),
      '--plan-out',
      tmp('plan1.json'),
      '--eval-ppl',
      `ts=${F.ts}`,
      '--limit',
      '2',
      '--json',
      tmp('prune1.json'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/260,032 -> 211,072 parameters \(81\.17%\)/);
    expect(r.stdout).toMatch(/^ppl ts: \d+\.\d{4}$/m);
    expect(r.stderr).toMatch(/moreau: proximal steps: 2\/2/);
    const j = json(tmp('prune1.json'));
    expect(j).toMatchObject({ params_before: 260032, params_after: 211072, out: out1, ratio: 0.2 });
    expect(j.seconds).toBeGreaterThan(0);
    expect(j.ppl.ts).toBeGreaterThan(1);
    expect(j.plan.criterion).toMatchObject({ name: 'moreau', options: { iterations: 2 } });
    const calib = json(tmp('calib.json'));
    expect(calib.iterations).toHaveLength(2);
    expect(calib.iterations[0]).toHaveLength(2);
    expect(calib.iterations[0][0]).toHaveLength(32);
    expect(readdirSync(out1).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.bin',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect(readdirSync(TMP).filter((f) => f.includes('.tmp-') || f.includes('.moreau-'))).toEqual([]);
    // The directory loads: per-layer dims, tokenizer included (no --tokenizer needed).
    const info = await moreau(['info', out1, '--json', tmp('info1.json')]);
    expect(info.code, info.stderr).toBe(0);
    const layers = json(tmp('info1.json')).model.per_layer;
    expect(
      layers.every(
        (l: { heads: number; kv_heads: number; intermediate_size: number }) =>
          l.heads === 6 && l.kv_heads === 3 && l.intermediate_size === 137,
      ),
    ).toBe(true);
    // Replaying the saved windows gives the same plan.
    const r2 = await moreau([
      'prune',
      ...model,
      '--criterion',
      'moreau',
      '--opt',
      'iterations=2',
      '--ratio',
      '0.2',
      '--calib-tokens',
      tmp('calib.json'),
      '--out',
      tmp('pruned2'),
      '--plan-out',
      tmp('plan2.json'),
      '-q',
    ]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(keptOf(json(tmp('plan2.json')))).toEqual(keptOf(json(tmp('plan1.json'))));
    // Re-applying the plan gives the same weights, byte for byte.
    const r3 = await moreau(['prune', ...model, '--plan', tmp('plan1.json'), '--out', tmp('pruned3'), '-q']);
    expect(r3.code, r3.stderr).toBe(0);
    expect(
      readFileSync(path.join(tmp('pruned3'), 'model.safetensors')).equals(
        readFileSync(path.join(out1, 'model.safetensors')),
      ),
    ).toBe(true);
    // --overwrite replaces an existing output.
    const r4 = await moreau([
      'prune',
      ...model,
      '--plan',
      tmp('plan1.json'),
      '--out',
      tmp('pruned3'),
      '--overwrite',
      '-q',
    ]);
    expect(r4.code, r4.stderr).toBe(0);
  }, 180_000);

  it('prune with --plan-out and no --out writes only the plan (and the --json result)', async () => {
    const dir = tmp('plan-only');
    mkdirSync(dir, { recursive: true });
    const r = await moreau([
      'prune',
      ...model,
      '--criterion',
      'taylor',
      '--ratio',
      '0.2',
      ...smallCalib,
      '--plan-out',
      path.join(dir, 'plan.json'),
      '--json',
      path.join(dir, 'prune.json'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/plan written to .*plan\.json \(no --out: no model saved\)/);
    expect(r.stderr).not.toMatch(/saving/);
    expect(readdirSync(dir).sort()).toEqual(['plan.json', 'prune.json']);
    expect(json(path.join(dir, 'prune.json')).out).toBeNull();
    expect(json(path.join(dir, 'plan.json')).criterion).toMatchObject({ name: 'taylor' });
    expectUsage(
      await moreau([
        'prune',
        ...model,
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        '--plan-out',
        tmp('p.json'),
        '--overwrite',
      ]),
      'prune',
      /--overwrite applies to --out, which is not given/,
    );
  }, 120_000);

  it('prune with the defaults (moreau: 10 iterations, 4 windows x 128 tokens), layer ranges, global ranking', async () => {
    const r = await moreau([
      'prune',
      ...model,
      '--criterion',
      'moreau',
      '--ratio',
      '0.25',
      '--calib',
      F.ts,
      '--out',
      tmp('pruned-default'),
      '--save-calib',
      tmp('calib-default.json'),
      '--json',
      tmp('prune-default.json'),
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const j = json(tmp('prune-default.json'));
    expect(j.plan.criterion.options).toMatchObject({
      iterations: 10,
      averageLast: 5,
      noiseStd: 0.05,
      lambda: 0.2,
      lr: 0.0002,
    });
    expect(j.plan).toMatchObject({
      version: 2,
      scope: 'block',
      ranking: 'local',
      seed: 1,
      attnLayers: [0, 5],
      mlpLayers: [0, 5],
    });
    const calib = json(tmp('calib-default.json'));
    expect(calib.iterations).toHaveLength(10);
    expect(
      calib.iterations.every((it: number[][]) => it.length === 4 && it.every((w) => w.length === 128)),
    ).toBe(true);
    // Layer ranges and global ranking (magnitude: no calibration needed).
    const m = await moreau([
      'prune',
      ...model,
      '--criterion',
      'magnitude',
      '--ratio',
      '0.5',
      '--attn-layers',
      '1:3',
      '--mlp-layers',
      '2:5',
      '--global',
      '--out',
      tmp('pruned-ranges'),
      '--plan-out',
      tmp('plan-ranges.json'),
      '-q',
    ]);
    expect(m.code, m.stderr).toBe(0);
    const plan = json(tmp('plan-ranges.json'));
    expect(plan).toMatchObject({
      scope: 'block',
      ranking: 'global-per-kind',
      attnLayers: [1, 3],
      mlpLayers: [2, 5],
    });
    const i = await moreau(['info', tmp('pruned-ranges'), '--json', tmp('info-ranges.json')]);
    const per = json(tmp('info-ranges.json')).model.per_layer;
    expect(per[0]).toMatchObject({ heads: 8, intermediate_size: 172 });
    expect(per[3].heads).toBe(8);
    expect(per[1].intermediate_size).toBe(172);
    expect(per[1].kv_heads + per[2].kv_heads).toBe(4); // global: 8 KV groups in range, half kept
    expect(per[2].intermediate_size + per[3].intermediate_size + per[4].intermediate_size).toBe(258);
    expect(i.code).toBe(0);
  }, 180_000);

  it('prune at every scope: info shows the new shape or the sparsity, eval runs, the plan re-applies', async () => {
    const cases: {
      name: string;
      args: string[];
      params: number;
      nonzero: number;
      check: (info: any) => void;
    }[] = [
      {
        name: 'channel',
        args: ['--scope', 'channel', '--criterion', 'magnitude', '--ratio', '0.25'],
        params: 195_024,
        nonzero: 195_024,
        check: (i) => expect(i.model).toMatchObject({ hidden_size: 48, head_dim: 8, heads: 8, layers: 5 }),
      },
      {
        name: 'layer',
        args: ['--scope', 'layer', '--criterion', 'block-influence', '--ratio', '0.4', ...smallCalib],
        params: 169_152,
        nonzero: 169_152,
        check: (i) => expect(i.model.layers).toBe(3),
      },
      {
        name: 'keep-first',
        args: ['--scope', 'layer', '--keep-first', '3'],
        params: 169_152,
        nonzero: 169_152,
        check: (i) => expect(i.model.layers).toBe(3),
      },
      {
        // Half of every row of every layer matrix, then 1 % of those weights kept back at random.
        name: 'unstructured',
        args: [
          '--scope',
          'unstructured',
          '--criterion',
          'magnitude',
          '--ratio',
          '0.5',
          '--keep-low-ratio',
          '0.01',
        ],
        params: 260_032,
        nonzero: 146_752 + 5 * (20 + 10 + 10 + 20 + 3 * 55),
        check: (i) => expect(i.sparsity.sparse_matrices).toBe(35),
      },
      {
        name: '2-4',
        args: ['--scope', '2:4', '--criterion', 'taylor', ...smallCalib],
        params: 260_032,
        nonzero: 146_752,
        check: (i) => {
          // 4:8 holds too where a row's width is a multiple of 8, but MLP rows are 172 wide.
          expect(i.sparsity.nm_patterns).toEqual(['2:4']);
          expect(i.sparsity.sparse_matrix_zero_fraction).toBe(0.5);
        },
      },
    ];
    for (const c of cases) {
      const out = tmp(`scope-${c.name}`);
      const r = await moreau([
        'prune',
        ...model,
        ...c.args,
        '--out',
        out,
        '--plan-out',
        tmp(`scope-${c.name}.plan.json`),
        '--json',
        tmp(`scope-${c.name}.json`),
        '-q',
      ]);
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(0);
      const j = json(tmp(`scope-${c.name}.json`));
      expect(j, c.name).toMatchObject({
        params_before: 260032,
        params_after: c.params,
        nonzero_after: c.nonzero,
      });
      expect(j.plan.version).toBe(2);
      expect(r.stdout).toContain(
        `-> ${c.nonzero.toLocaleString('en-US')} ${c.params === c.nonzero ? '' : 'non-zero '}parameters`,
      );
      const sparse = c.params !== c.nonzero;
      expect(existsSync(path.join(out, 'sparsity.json')), c.name).toBe(sparse);
      if (sparse) {
        const sp = json(path.join(out, 'sparsity.json'));
        expect(sp).toMatchObject({ format: 'moreau-sparsity', nonzero: c.nonzero, params: 260032 });
        expect(sp.matrices).toHaveLength(35);
        if (c.name === '2-4') expect(sp.nm).toEqual({ n: 2, m: 4, valid: true });
        else expect(sp.keep_low_ratio).toBe(0.01);
      }
      const info = await moreau(['info', out, '--json', tmp(`scope-${c.name}.info.json`)]);
      expect(info.code, info.stderr).toBe(0);
      const i = json(tmp(`scope-${c.name}.info.json`));
      expect(i.model.params).toBe(c.params);
      expect(i.sparsity.nonzero).toBe(c.nonzero);
      c.check(i);
      if (sparse) expect(info.stdout).toMatch(/sparsity\s+35 matrices with zeros/);
      const ev = await moreau(['eval', out, '--ppl', `ts=${F.ts}`, '--limit', '2', '-q']);
      expect(ev.code, ev.stderr).toBe(0);
      expect(ev.stdout).toMatch(/^ppl ts\s+\d+\.\d{4}/m);
      const again = await moreau([
        'prune',
        ...model,
        '--plan',
        tmp(`scope-${c.name}.plan.json`),
        '--out',
        tmp(`scope-${c.name}-again`),
        '-q',
      ]);
      expect(again.code, again.stderr).toBe(0);
      expect(
        readFileSync(path.join(tmp(`scope-${c.name}-again`), 'model.safetensors')).equals(
          readFileSync(path.join(out, 'model.safetensors')),
        ),
        c.name,
      ).toBe(true);
    }
  }, 300_000);

  it('a plan-v1 file written before plan version 2 applies unchanged', async () => {
    const fixtures = path.join(repoRoot, 'packages/criteria/src/fixtures');
    for (const name of ['plan-v1-magnitude', 'plan-v1-taylor-global']) {
      const out = tmp(name);
      const r = await moreau([
        'prune',
        ...model,
        '--plan',
        path.join(fixtures, `${name}.json`),
        '--out',
        out,
        '-q',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const want = json(path.join(fixtures, `${name}.hashes.json`));
      const { tensors } = await readSafetensors(path.join(out, 'model.safetensors'));
      expect([...tensors.keys()].sort()).toEqual(Object.keys(want).sort());
      for (const [k, t] of tensors) {
        const sha = createHash('sha256')
          .update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))
          .digest('hex')
          .slice(0, 16);
        expect(sha, `${name} ${k}`).toBe(want[k].sha256);
      }
    }
  }, 60_000);

  it('compare tiny at the block, channel and unstructured scopes: one report, a chart per scope', async () => {
    const dir = tmp('report-scopes');
    const r = await moreau([
      'compare',
      'tiny',
      '--criteria',
      'magnitude,taylor,moreau-gs',
      '--scopes',
      'block,channel,unstructured',
      '--ratios',
      '0.2',
      '--limit',
      '4',
      '--report',
      dir,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\| scope\s+\| criterion \| ratio \|/m);
    expect(r.stdout).toMatch(/^\| unstructured \| moreau-gs \|\s+0\.2 \|/m);
    const rep = json(path.join(dir, 'report.json'));
    expect(rep.version).toBe(2);
    expect(rep.settings).toMatchObject({ scopes: ['block', 'channel', 'unstructured'], ranking: 'local' });
    expect(rep.runs.map((x: { scope: string; criterion: string }) => `${x.scope}/${x.criterion}`)).toEqual([
      'block/magnitude',
      'block/taylor',
      'block/moreau-gs',
      'channel/magnitude',
      'channel/taylor',
      'channel/moreau-gs',
      'unstructured/magnitude',
      'unstructured/taylor',
      'unstructured/moreau-gs',
    ]);
    const un = rep.runs.find((x: { scope: string }) => x.scope === 'unstructured');
    expect(un.params_after).toBe(rep.dense.params);
    expect(un.nonzero_after).toBeLessThan(un.params_after);
    const files = readdirSync(dir);
    for (const scope of ['block', 'channel', 'unstructured']) {
      expect(files).toContain(`perplexity_vs_ratio_${scope}.svg`);
      expect(files).toContain(`perplexity_vs_ratio_${scope}.png`);
    }
    expect(readdirSync(path.join(dir, 'plans'))).toContain('unstructured-taylor-0.2.json');
    const html = readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect((html.match(/<img [^>]*src="data:image\/svg\+xml;base64,/g) ?? []).length).toBe(3);
  }, 300_000);

  it('prune --preset: the published setups resolved for 5 layers, explicit flags over them, recorded; GS counters, MACs, latency', async () => {
    // moreaupruner (HEAD): patches drawn fresh every iteration, moreau-gs at the reference values.
    const r = await moreau([
      'prune',
      ...model,
      '--preset',
      'moreaupruner',
      '--opt',
      'iterations=2',
      '--calib',
      F.ts,
      '--calib-samples',
      '2',
      '--calib-seq-len',
      '64',
      '--out',
      tmp('pruned-preset'),
      '--save-calib',
      tmp('calib-preset.json'),
      '--plan-out',
      tmp('plan-preset.json'),
      '--latency',
      '1x64',
      '--json',
      tmp('prune-preset.json'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/preset moreaupruner \(ShiningSord\/MoreauPruner@ce5453f\)/);
    // At the reference lr and soft most rows of delta flip sign: warned on stderr.
    expect(r.stderr).toMatch(/^warning: moreau-gs: most rows of delta flipped sign at 2 of 2 iterations/m);
    expect(r.stdout).toMatch(/^MACs per 64 tokens: 0\.0196 G -> 0\.0157 G \(80\.31%\)$/m);
    expect(r.stdout).toMatch(/^latency 1x64: \d+\.\d\d ms -> \d+\.\d\d ms \(x\d+\.\d\d\)$/m);
    const j = json(tmp('prune-preset.json'));
    expect(j.settings).toMatchObject({
      preset: 'moreaupruner',
      preset_source: { repository: 'ShiningSord/MoreauPruner', commit: 'ce5453f' },
      criterion: 'moreau-gs',
      options: {
        lr: 0.0002,
        soft: 5e-6,
        noiseStd: 0.05,
        lambda: 0.2,
        iterations: 2,
        averageLast: 5,
        perturb: 'all',
      },
      ratio: 0.2,
      reduction: 'sum',
      attn_layers: [0, 5],
      mlp_layers: [0, 5],
      calibration: {
        sampling: 'patches',
        samples: 2,
        seq_len: 64,
        chars_per_token: 8,
        iterations: 2,
        fresh: true,
      },
      from_flags: ['opt', 'calibSamples', 'calibSeqLen'],
    });
    expect(j.plan).toMatchObject({
      ratio: 0.2,
      reduction: 'sum',
      attnLayers: [0, 5],
      criterion: { name: 'moreau-gs' },
    });
    const calib = json(tmp('calib-preset.json'));
    expect(calib.iterations).toHaveLength(2);
    expect(calib.iterations[1]).not.toEqual(calib.iterations[0]); // fresh (--moredata)
    for (const w of calib.iterations.flat()) {
      expect(w).toHaveLength(64);
      expect(w[0]).toBe(1); // each patch tokenized with BOS
    }
    const shrink = j.diagnostics[0].moreau_gs_shrink;
    expect(shrink.iterations).toHaveLength(2);
    expect(Object.keys(shrink.iterations[0].kinds)).toContain('q_proj');
    expect(shrink.iterations[0].all.flipped).toBeGreaterThan(0.5);
    expect(j.warnings).toHaveLength(1);
    expect(j.macs).toMatchObject({ seq_len: 64, dense: { total: 19609344 }, pruned: { total: 15747904 } });
    expect(j.latency).toMatchObject({ batch: 1, seq_len: 64, repeats: 5 });
    expect(j.latency.dense.seconds).toBeGreaterThan(0);

    // moreaupruner-paper (9e894ff): 10 windows of 64 tokens, the same every iteration, ratio 0.25;
    // lr raised on the command line: no flip regime, no warning.
    const p = await moreau([
      'prune',
      ...model,
      '--preset',
      'moreaupruner-paper',
      '--opt',
      'iterations=2',
      '--opt',
      'lr=0.02',
      '--calib',
      F.ts,
      '--out',
      tmp('pruned-paper'),
      '--save-calib',
      tmp('calib-paper.json'),
      '--json',
      tmp('prune-paper.json'),
      '-q',
    ]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stderr).toBe('');
    const jp = json(tmp('prune-paper.json'));
    expect(jp.settings).toMatchObject({
      preset: 'moreaupruner-paper',
      preset_source: { commit: '9e894ff' },
      ratio: 0.25,
      options: { freshCalibration: false, lr: 0.02 },
      calibration: { sampling: 'windows', samples: 10, seq_len: 64, iterations: 1, fresh: false },
      from_flags: ['opt'],
    });
    expect(jp.plan.ratio).toBe(0.25);
    expect(jp.diagnostics[0].moreau_gs_shrink.iterations[1].all.flipped).toBeLessThan(0.5);
    expect(json(tmp('calib-paper.json')).iterations).toHaveLength(1);

    // llm-pruner: taylor param_first; --ratio and --mlp-layers given explicitly win.
    const l = await moreau([
      'prune',
      ...model,
      '--preset',
      'llm-pruner',
      '--ratio',
      '0.5',
      '--mlp-layers',
      '1:4',
      '--calib',
      F.ts,
      '--out',
      tmp('pruned-llmp'),
      '--json',
      tmp('prune-llmp.json'),
      '-q',
    ]);
    expect(l.code, l.stderr).toBe(0);
    expect(json(tmp('prune-llmp.json')).settings).toMatchObject({
      preset: 'llm-pruner',
      criterion: 'taylor',
      options: { variant: 'param_first' },
      ratio: 0.5,
      attn_layers: [0, 5],
      mlp_layers: [1, 4],
      calibration: { sampling: 'windows', samples: 10, seq_len: 64 },
      from_flags: ['ratio', 'mlpLayers'],
    });
  }, 240_000);

  it('eval switches: --ppl-join rows, --field, --zeroshot-protocol harness-2023', async () => {
    const jsonl = tmp('rows.jsonl');
    writeFileSync(
      jsonl,
      readFileSync(F.ts, 'utf8')
        .split('\n')
        .slice(0, 400)
        .map((line) => JSON.stringify({ sentence: line.trim() }))
        .join('\n'),
    );
    const r = await moreau([
      'eval',
      ...model,
      '--ppl',
      `wiki=${F.wiki}`,
      '--ppl',
      `rows=${jsonl}`,
      '--ppl-join',
      'rows',
      '--field',
      'sentence',
      '--task',
      `arc_easy=${F.arc}`,
      '--zeroshot-protocol',
      'harness-2023',
      '--limit',
      '3',
      '--seq-len',
      '64',
      '--json',
      tmp('eval-rows.json'),
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = await moreau([
      'eval',
      ...model,
      '--ppl',
      `wiki=${F.wiki}`,
      '--task',
      `arc_easy=${F.arc}`,
      '--limit',
      '3',
      '--seq-len',
      '64',
      '--json',
      tmp('eval-doc.json'),
      '-q',
    ]);
    expect(doc.code, doc.stderr).toBe(0);
    const rows = json(tmp('eval-rows.json'));
    const one = json(tmp('eval-doc.json'));
    expect(rows).toMatchObject({ zeroshot_protocol: 'harness-2023', ppl_join: 'rows', field: 'sentence' });
    expect(rows.ppl.rows).toBeGreaterThan(1);
    // Rows joined by "\n\n" are another token stream than the file as one document.
    expect(rows.nll.wiki).not.toBe(one.nll.wiki);
    expect(rows.tasks.arc_easy.n).toBe(3);
    const bad = await moreau(['eval', ...model, '--ppl', `x=${jsonl}`, '--ppl-join', 'document']);
    expectUsage(
      bad,
      'eval',
      /--ppl-join document: '.*rows\.jsonl' is jsonl \/ parquet, whose rows are always rows/,
    );
  }, 180_000);

  it('robustness: table on stdout and JSON', async () => {
    const r = await moreau([
      'robustness',
      ...model,
      '--criteria',
      'magnitude,taylor',
      '--ratio',
      '0.2',
      '--perturb',
      'fp16,gauss:0.01x2',
      ...smallCalib,
      '--ppl',
      `ts=${F.ts}`,
      '--limit',
      '2',
      '--exec',
      'streamed',
      '--json',
      tmp('rob.json'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| criterion \| perturbation \| IoU \| IoU kept \| Spearman \| PPL \|/);
    expect(r.stdout).toMatch(/\| taylor \| fp16 \| (1|\d\.\d{3}) \|/);
    const j = json(tmp('rob.json'));
    expect(j.ratio).toBe(0.2);
    expect(Object.keys(j.results)).toEqual(['magnitude', 'taylor']);
    expect(j.results.taylor.fp16.iou).toBeGreaterThan(0.5);
    expect(j.results.taylor['gauss:0.01x2']).toHaveProperty('iou_sd');
    expect(j.dense.ppl).toBeGreaterThan(1);
    expect(j.exec).toBe('streamed');
    // At the channel scope: the same analysis over hidden channels.
    const c = await moreau([
      'robustness',
      ...model,
      '--scope',
      'channel',
      '--criteria',
      'magnitude',
      '--ratio',
      '0.25',
      '--perturb',
      'bf16',
      '--ppl',
      `ts=${F.ts}`,
      '--limit',
      '2',
      '--json',
      tmp('rob-channel.json'),
      '-q',
    ]);
    expect(c.code, c.stderr).toBe(0);
    const jc = json(tmp('rob-channel.json'));
    expect(jc.results.magnitude.bf16.iou).toBeGreaterThan(0.5);
    expect(jc.results.magnitude.bf16.spearman).toBeGreaterThan(0.5);
  }, 120_000);

  it('--exec: whole and streamed agree, the mode is reported; --state-dir; windows and batches follow the model and the work', async () => {
    const evalArgs = [
      'eval',
      ...model,
      '--ppl',
      `ts=${F.ts}`,
      '--task',
      `lambada=${F.lambada}`,
      '--task',
      `arc_easy=${F.arc}`,
      '--limit',
      '2',
    ];
    const whole = await moreau([...evalArgs, '--exec', 'whole', '--json', tmp('ew.json')]);
    const streamed = await moreau([...evalArgs, '--exec', 'streamed', '--json', tmp('es.json')]);
    expect(whole.code, whole.stderr).toBe(0);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stderr).toMatch(/ppl ts \(streamed\): 2\/2/);
    const [w, st] = [json(tmp('ew.json')), json(tmp('es.json'))];
    expect([w.exec, st.exec]).toEqual(['whole', 'streamed']);
    expect(Math.abs(st.nll.ts - w.nll.ts)).toBeLessThan(1e-5 * w.nll.ts);
    expect(st.tasks).toEqual(w.tasks);

    // Prune layer-streamed with a state folder: the plan of the whole-graph run; --eval-ppl's mode too.
    const prune = (exec: string, out: string, extra: string[] = []) =>
      moreau([
        'prune',
        ...model,
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        ...smallCalib,
        '--exec',
        exec,
        '--out',
        tmp(out),
        '--plan-out',
        tmp(`${out}.plan.json`),
        '--json',
        tmp(`${out}.json`),
        ...extra,
      ]);
    const pw = await prune('whole', 'pw');
    const ps = await prune('streamed', 'ps', [
      '--state-dir',
      tmp('state'),
      '--eval-ppl',
      `ts=${F.ts}`,
      '--limit',
      '1',
    ]);
    expect(pw.code, pw.stderr).toBe(0);
    expect(ps.code, ps.stderr).toBe(0);
    expect(ps.stderr).toMatch(/scored layer by layer \(exec streamed\)/);
    expect(json(tmp('pw.json')).exec).toBe('whole');
    expect(json(tmp('ps.json'))).toMatchObject({ exec: 'streamed', eval_exec: 'streamed' });
    expect(keptOf(json(tmp('ps.plan.json')))).toEqual(keptOf(json(tmp('pw.plan.json'))));
    writeFileSync(tmp('state-file'), 'not a folder');
    expectRuntime(
      await prune('streamed', 'pf', ['--state-dir', tmp('state-file')]),
      /--state-dir '.*state-file' is a file, not a folder/,
    );

    // Windows longer than the model's 512 positions are usage errors, after the model is read.
    expectUsage(
      await moreau(['eval', ...model, '--ppl', `ts=${F.ts}`, '--seq-len', '1024']),
      'eval',
      /--seq-len 1024 exceeds the model's context of 512 positions/,
    );
    expectUsage(
      await moreau([
        'prune',
        ...model,
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        '--calib',
        F.ts,
        '--calib-seq-len',
        '1024',
        '--out',
        tmp('long'),
      ]),
      'prune',
      /--calib-seq-len 1024 exceeds the model's context of 512 positions/,
    );
    const long = tmp('long-calib.json');
    writeFileSync(long, JSON.stringify({ iterations: [[Array.from({ length: 600 }, (_, i) => i % 100)]] }));
    expectRuntime(
      await moreau([
        'prune',
        ...model,
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        '--calib-tokens',
        long,
        '--out',
        tmp('long'),
      ]),
      /--calib-tokens '.*long-calib\.json': a window of 600 tokens exceeds the model's context of 512 positions/,
    );

    // Peak memory of one window does not grow with --batch-size.
    const peakKb = (batch: string) => {
      const r = spawnSync(
        '/usr/bin/time',
        [
          '-f',
          '%M',
          process.execPath,
          BIN,
          'eval',
          ...model,
          '--ppl',
          `ts=${F.ts}`,
          '--limit',
          '1',
          '--batch-size',
          batch,
          '-q',
        ],
        { cwd: repoRoot, encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      return Number(r.stderr.trim().split('\n').at(-1));
    };
    if (existsSync('/usr/bin/time')) {
      const [one, many] = [peakKb('1'), peakKb('1000')];
      expect(many).toBeLessThan(one * 1.15);
    }
  }, 240_000);

  // export --onnx: interop.e2e.test.ts (plain onnxruntime-node at several sizes against moreau's logits).

  it('compare: all criteria x ratios in memory, report.json/md/html, SVG+PNG charts, table on stdout', async () => {
    const dir = tmp('report');
    const r = await moreau([
      'compare',
      ...model,
      '--criteria',
      'taylor,moreau',
      '--ratios',
      '0.1,0.2',
      '--opt',
      'iterations=2',
      ...smallCalib,
      '--ppl',
      `ts=${F.ts}`,
      '--task',
      `arc_easy=${F.arc}`,
      '--limit',
      '2',
      '--robustness',
      '--perturb',
      'fp16',
      '--report',
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    // stdout: the comparison table, then robustness tables, then where the report is.
    expect(r.stdout).toMatch(
      /^\| criterion \| ratio \|\s+params \|\s+left \|\s+GMACs 64 tok \|\s+PPL ts \|\s+arc_easy acc \|\s+arc_easy acc_norm \|\s+paper avg \|\s+seconds \|$/m,
    );
    expect(r.stdout).toMatch(/^\| dense\s+\|\s+0 \| 260,032 \| 100\.0% \|\s+0\.0196 \|/m);
    expect(r.stdout).toMatch(/^\| dense\s+\|\s+0 \| 260,032 \| 100\.0% \|/m);
    expect(r.stdout).toMatch(/^\| moreau\s+\|\s+0\.2 \| 211,072 \|\s+81\.2% \|/m);
    // With --limit the robustness perplexities are the results table's evaluation, and say so.
    expect(r.stdout).toMatch(
      /robustness at ratio 0\.1: dense PPL \d+\.\d{3} on all 2 windows of ts, as in the results table/,
    );
    expect(r.stdout).toMatch(/report: .*report\.html/);
    expect(r.stderr).toMatch(/\[1\/5\] dense: ppl ts \(whole\): 2\/2/);
    expect(r.stderr).toMatch(/\[5\/5\] moreau 0\.2: ppl ts \(whole\): 2\/2/);
    const files = readdirSync(dir).sort();
    for (const f of [
      'report.json',
      'report.md',
      'report.html',
      'perplexity_vs_ratio.svg',
      'perplexity_vs_ratio.png',
      'accuracy_vs_ratio.svg',
      'accuracy_vs_ratio.png',
      'robustness_iou.svg',
      'robustness_iou.png',
      'plans',
    ]) {
      expect(files).toContain(f);
    }
    expect(readdirSync(TMP).filter((f) => f.startsWith('report.') || f.includes('.moreau-'))).toEqual([]);
    const rep = json(path.join(dir, 'report.json'));
    expect(rep.runs).toHaveLength(4);
    for (const run of rep.runs) {
      expect(Object.keys(run)).toEqual(
        expect.arrayContaining(['criterion', 'ratio', 'params_after', 'ppl', 'tasks', 'seconds']),
      );
      expect(run.ppl.ts).toBeGreaterThan(1);
      expect(run.tasks.arc_easy.n).toBe(2);
    }
    expect(rep.runs.map((x: { criterion: string; ratio: number }) => `${x.criterion}@${x.ratio}`)).toEqual([
      'taylor@0.1',
      'taylor@0.2',
      'moreau@0.1',
      'moreau@0.2',
    ]);
    expect(rep.dense).toMatchObject({
      params: 260032,
      exec: 'whole',
      macs: { total: 19609344 },
      latency: null,
      paper_tasks: 1,
    });
    expect(rep.dense.paper_average).toBe(rep.dense.tasks.arc_easy.acc);
    expect(rep.runs[1].macs.total).toBe(15747904); // taylor 0.2: the same dims as prune's 0.2
    expect(rep.runs[2].diagnostics).toEqual([{}]); // moreau (no soft threshold): nothing to report
    for (const run of rep.runs) expect(run).toMatchObject({ exec: 'whole', score_exec: 'whole' });
    expect(rep.settings).toMatchObject({
      exec: 'auto',
      preset: null,
      zeroshot_protocol: 'current',
      macs_seq_len: 64,
      latency: null,
      calibration: { sampling: 'windows', samples: 2, seq_len: 32 },
    });
    expect(rep.dense.ppl.ts).toBeLessThan(rep.runs[1].ppl.ts);
    expect(Object.keys(rep.robustness)).toEqual(['0.1', '0.2']);
    expect(Object.keys(rep.robustness['0.2'].results)).toEqual(['taylor', 'moreau']);
    // Same flags, same plan as `moreau prune` (the prune test above used these windows and options).
    if (existsSync(tmp('plan1.json'))) {
      expect(keptOf(json(path.join(dir, 'plans/moreau-0.2.json')))).toEqual(keptOf(json(tmp('plan1.json'))));
    }
    // Charts: SVG from vega, PNG from resvg; the HTML page is self-contained.
    const svg = readFileSync(path.join(dir, 'perplexity_vs_ratio.svg'), 'utf8');
    expect(svg).toMatch(/^<svg [^>]*class="marks"/);
    expect(readFileSync(path.join(dir, 'robustness_iou.png')).subarray(1, 4).toString()).toBe('PNG');
    const html = readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect((html.match(/<img [^>]*src="data:image\/svg\+xml;base64,/g) ?? []).length).toBe(3);
    expect(html).not.toMatch(/<(script|link)[^>]+(src|href)="https?:/);
    expect(html).toContain('<table>');
    const md = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(md).toMatch(/## Robustness/);
    expect(md).toContain('![Perplexity vs pruning ratio](perplexity_vs_ratio.svg)');
    // Running again replaces the earlier report (and only a report).
    const again = await moreau([
      'compare',
      ...model,
      '--criteria',
      'magnitude',
      '--ratios',
      '0.5',
      '--ppl',
      `ts=${F.ts}`,
      '--limit',
      '1',
      '--report',
      dir,
      '-q',
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(json(path.join(dir, 'report.json')).runs).toHaveLength(1);
    expect(existsSync(path.join(dir, 'robustness_iou.svg'))).toBe(false);
  }, 300_000);

  it('Ctrl-C stops cleanly: exit 130, no half-written model or report', async () => {
    const out = tmp('interrupted');
    let sent = false;
    const r = await moreau(
      ['prune', ...model, '--criterion', 'moreau', '--ratio', '0.2', '--calib', F.ts, '--out', out],
      (err, child) => {
        if (!sent && /proximal steps/.test(err)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    );
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted, stopping/);
    expect(r.stderr).toMatch(/interrupted; nothing was written or changed/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(TMP).filter((f) => f.startsWith('interrupted'))).toEqual([]);
    const dir = tmp('interrupted-report');
    let sent2 = false;
    const c = await moreau(
      [
        'compare',
        ...model,
        '--criteria',
        'magnitude,taylor',
        '--ratios',
        '0.2',
        '--calib',
        F.ts,
        '--ppl',
        `ts=${F.ts}`,
        '--limit',
        '2',
        '--report',
        dir,
      ],
      (err, child) => {
        if (!sent2 && /\[2\/3\]/.test(err)) {
          sent2 = true;
          child.kill('SIGINT');
        }
      },
    );
    expect(c.code, c.stderr).toBe(130);
    expect(c.stdout).toBe('');
    expect(readdirSync(TMP).filter((f) => f.startsWith('interrupted-report'))).toEqual([]);
  }, 120_000);

  it('`npx moreau` (the bin npm links at install) runs the built CLI', () => {
    const link = path.join(repoRoot, 'node_modules/.bin/moreau');
    expect(existsSync(link), 'npm install links node_modules/.bin/moreau').toBe(true);
    expect(realpathSync(link)).toBe(realpathSync(path.join(repoRoot, 'packages/cli/bin/moreau.js')));
    const r = spawnSync(process.execPath, [link, '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
