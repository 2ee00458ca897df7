/**
 * End to end on the BUILT binary: --compute-dtype on stories260K (eval, generate, prune, compare).
 *
 * - `eval` on the same 4 windows of 128 tokens: bfloat16 and float16 NLLs differ from float32 by a
 *   small non-zero amount, and --json records {dtype, precision: 'emulated'};
 * - onnxruntime and tfjs (wasm) in bfloat16 agree closely but not bit for bit: the emulation rounds
 *   every op's float32 result the same way on both engines, but the engines' float32 sums (matmul,
 *   reductions) differ in their last bits (the float32 NLLs already differ), and a result next to a
 *   rounding boundary then lands on different bfloat16 neighbours (12 of the 508 token NLLs here);
 * - `prune --compute-dtype float16` scores with gradients in float16 and its plan's `compute` says so;
 * - `generate` and `compare` record the compute mode (compare in its report's settings).
 *
 * Reads ../shared (or MOREAU_SHARED) and skips with a message when the files are absent.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { haveStories260k, STORIES_BIN, STORIES_TOK, sharedPath, TINYSTORIES_HEAD } from '@moreau/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { hasDist, moreau } from './e2e-helpers.js';

const have = haveStories260k('cli compute-dtype e2e tests', TINYSTORIES_HEAD);
if (!hasDist) console.warn('cli compute-dtype e2e tests skipped: packages/cli/dist is missing (build first)');
const SLOW = 300_000;

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-compute-e2e-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const tmp = (name: string) => path.join(TMP, name);

const model = () => [sharedPath(STORIES_BIN), '--tokenizer', sharedPath(STORIES_TOK)];
const text = () => `ts=${sharedPath(TINYSTORIES_HEAD)}`;

/** `moreau eval` on the first 4 windows of 128 tokens; returns the --json result. */
async function evalNll(dtype: string, ...backend: string[]) {
  const r = await moreau([
    'eval',
    ...model(),
    '--ppl',
    text(),
    '--seq-len',
    '128',
    '--limit',
    '4',
    '--compute-dtype',
    dtype,
    ...backend,
    '--json',
    '-',
    '-q',
  ]);
  expect(r.code, r.stderr).toBe(0);
  const j = JSON.parse(r.stdout);
  expect(j.tokens.ts).toBe(4 * 127);
  return j as { nll: { ts: number }; compute: { dtype: string; precision: string } };
}

describe.skipIf(!have || !hasDist)('--compute-dtype on stories260K (built binary)', () => {
  const nll = new Map<string, number>();

  it(
    'eval: bfloat16 and float16 NLLs differ from float32 by a small non-zero amount; --json records the mode',
    async () => {
      const f32 = await evalNll('float32', '--backend', 'ort');
      expect(f32.compute).toEqual({ dtype: 'float32', precision: 'native' });
      nll.set('float32', f32.nll.ts);
      for (const dtype of ['bfloat16', 'float16']) {
        const half = await evalNll(dtype, '--backend', 'ort');
        expect(half.compute).toEqual({ dtype, precision: 'emulated' });
        const diff = Math.abs(half.nll.ts - f32.nll.ts);
        console.log(
          `stories260K NLL, 4 x 128 tokens, ort: ${dtype} ${half.nll.ts} vs float32 ${f32.nll.ts} (|diff| ${diff.toExponential(3)})`,
        );
        expect(diff).toBeGreaterThan(0);
        expect(diff).toBeLessThan(1e-2 * f32.nll.ts);
        nll.set(dtype, half.nll.ts);
      }
    },
    SLOW,
  );

  it(
    'eval: onnxruntime and tfjs (wasm) agree in bfloat16 to 1e-3 (not bit for bit: float32 sums differ between engines)',
    async () => {
      const ort = nll.get('bfloat16') ?? (await evalNll('bfloat16', '--backend', 'ort')).nll.ts;
      const tfjs = await evalNll('bfloat16', '--backend', 'tfjs', '--device', 'wasm');
      expect(tfjs.compute).toEqual({ dtype: 'bfloat16', precision: 'emulated' });
      console.log(`stories260K bfloat16 NLL: ort ${ort}, tfjs (wasm) ${tfjs.nll.ts}`);
      expect(Math.abs(tfjs.nll.ts - ort)).toBeLessThan(1e-3 * ort);
      // Each engine is deterministic: the same run gives the same bits.
      expect((await evalNll('bfloat16', '--backend', 'tfjs', '--device', 'wasm')).nll.ts).toBe(tfjs.nll.ts);
    },
    SLOW,
  );

  it(
    'prune --compute-dtype float16: the plan and --json record float16 (emulated)',
    async () => {
      const r = await moreau([
        'prune',
        ...model(),
        '--criterion',
        'taylor',
        '--ratio',
        '0.2',
        '--calib',
        sharedPath(TINYSTORIES_HEAD),
        '--calib-samples',
        '2',
        '--calib-seq-len',
        '64',
        '--compute-dtype',
        'float16',
        '--out',
        tmp('pruned-f16'),
        '--plan-out',
        tmp('plan-f16.json'),
        '--json',
        '-',
        '-q',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const plan = JSON.parse(readFileSync(tmp('plan-f16.json'), 'utf8'));
      expect(plan.compute).toEqual({ computeDtype: 'float16', precision: 'emulated' });
      expect(JSON.parse(r.stdout).compute).toEqual({ dtype: 'float16', precision: 'emulated' });
    },
    SLOW,
  );

  it(
    'generate --compute-dtype bfloat16 records the mode; compare records it in the report settings',
    async () => {
      const g = await moreau([
        'generate',
        ...model(),
        '--max-tokens',
        '8',
        '--compute-dtype',
        'bfloat16',
        '--json',
        '-',
        '-q',
      ]);
      expect(g.code, g.stderr).toBe(0);
      const gj = JSON.parse(g.stdout);
      expect(gj.compute).toEqual({ dtype: 'bfloat16', precision: 'emulated' });
      expect(gj.generated_ids).toHaveLength(8);

      const c = await moreau([
        'compare',
        ...model(),
        '--criteria',
        'magnitude',
        '--ratios',
        '0.2',
        '--ppl',
        text(),
        '--limit',
        '2',
        '--compute-dtype',
        'bfloat16',
        '--report',
        tmp('report'),
        '-q',
      ]);
      expect(c.code, c.stderr).toBe(0);
      const report = JSON.parse(readFileSync(tmp('report/report.json'), 'utf8'));
      expect(report.version).toBe(2);
      expect(report.settings.compute).toEqual({ dtype: 'bfloat16', precision: 'emulated' });
      expect(readFileSync(tmp('report/report.md'), 'utf8')).toContain('compute: bfloat16 (emulated)');
    },
    SLOW,
  );

  it('robustness does not take --compute-dtype (its reference is float32; use --perturb compute:D)', async () => {
    const r = await moreau([
      'robustness',
      ...model(),
      '--criteria',
      'magnitude',
      '--compute-dtype',
      'float16',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--compute-dtype'/);
  });
});
