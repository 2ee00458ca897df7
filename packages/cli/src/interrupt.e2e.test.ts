/**
 * The interrupt contract of the BUILT `moreau` binary, tested by sending SIGINT / SIGTERM at
 * seeded random moments (from model loading to the save and the commit, sometimes a second signal
 * right after the first) to prune and compare runs, many times:
 *
 * - exit 130 means every destination is exactly as before the run (byte for byte, nothing added,
 *   nothing removed — including with --overwrite of an earlier output);
 * - exit 0 means every output is complete;
 * - nothing else happens, nothing this tool names `.NAME.moreau-*` is left behind, and a user's
 *   own `out.tmp-my-notes/` always survives.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Rng } from '@moreau/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, hasDist, leftovers, moreau, snapshot } from './e2e-helpers.js';

if (!hasDist)
  console.warn(`moreau interrupt e2e tests skipped: ${BIN} is missing (run \`npm run build\` first)`);

// CI size by default; MOREAU_INTERRUPT_SEED / MOREAU_INTERRUPT_TRIALS run a longer stress test.
const SEED = Number(process.env.MOREAU_INTERRUPT_SEED ?? 130);
const TRIALS = Number(process.env.MOREAU_INTERRUPT_TRIALS ?? 24);
const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-interrupt-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

interface Variant {
  readonly name: string;
  /** Arguments, run in the trial's folder. */
  readonly args: string[];
  /** What an earlier run leaves for this one to replace (copied into the trial's folder). */
  readonly earlier: boolean;
  /** Checks a completed run's outputs. */
  readonly complete: (dir: string) => void;
}

const HF_FILES = [
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'tokenizer.json',
  'tokenizer_config.json',
];
const json = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

const VARIANTS: Variant[] = [
  {
    name: 'prune to a new --out with --plan-out and --json',
    args: [
      'prune',
      'tiny',
      '--criterion',
      'magnitude',
      '--ratio',
      '0.2',
      '--out',
      'out',
      '--plan-out',
      'plan.json',
      '--json',
      'result.json',
    ],
    earlier: false,
    complete: (d) => {
      expect(readdirSync(path.join(d, 'out')).sort()).toEqual(HF_FILES);
      expect(json(path.join(d, 'plan.json')).ratio).toBe(0.2);
      expect(json(path.join(d, 'result.json')).params_after).toBe(2062272);
    },
  },
  {
    name: 'prune --overwrite an earlier output (taylor, a different plan)',
    args: [
      'prune',
      'tiny',
      '--criterion',
      'taylor',
      '--ratio',
      '0.3',
      '--calib-samples',
      '2',
      '--calib-seq-len',
      '32',
      '--out',
      'out',
      '--overwrite',
      '--plan-out',
      'plan.json',
    ],
    earlier: true,
    complete: (d) => {
      expect(readdirSync(path.join(d, 'out')).sort()).toEqual(HF_FILES);
      expect(json(path.join(d, 'plan.json')).criterion.name).toBe('taylor');
    },
  },
  {
    name: 'compare replacing an earlier report',
    args: [
      'compare',
      'tiny',
      '--criteria',
      'magnitude,random',
      '--ratios',
      '0.3',
      '--limit',
      '2',
      '--seq-len',
      '32',
      '--report',
      'out',
    ],
    earlier: true,
    complete: (d) => {
      const r = json(path.join(d, 'out/report.json'));
      expect(r.runs.map((x: { criterion: string }) => x.criterion)).toEqual(['magnitude', 'random']);
      expect(existsSync(path.join(d, 'out/report.html'))).toBe(true);
    },
  },
];

describe.skipIf(!hasDist)('the interrupt contract, seeded random signals (built binary)', () => {
  it(`${TRIALS} trials: exit 130 leaves every destination as before, exit 0 leaves it complete`, async () => {
    // The earlier outputs that trials replace, and how long each variant takes uninterrupted.
    const earlier = path.join(TMP, 'earlier');
    mkdirSync(earlier);
    const first = await moreau(
      [
        'prune',
        'tiny',
        '--criterion',
        'magnitude',
        '--ratio',
        '0.2',
        '--out',
        'prune-out',
        '--plan-out',
        'plan.json',
        '-q',
      ],
      { cwd: earlier },
    );
    expect(first.code, first.stderr).toBe(0);
    const rep = await moreau(
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
        'report-out',
        '-q',
      ],
      {
        cwd: earlier,
      },
    );
    expect(rep.code, rep.stderr).toBe(0);
    const setup = (v: Variant, dir: string) => {
      mkdirSync(dir);
      mkdirSync(path.join(dir, 'out.tmp-my-notes'));
      writeFileSync(path.join(dir, 'out.tmp-my-notes/notes.txt'), 'mine');
      if (!v.earlier) return;
      if (v.args[0] === 'compare')
        cpSync(path.join(earlier, 'report-out'), path.join(dir, 'out'), { recursive: true });
      else {
        cpSync(path.join(earlier, 'prune-out'), path.join(dir, 'out'), { recursive: true });
        cpSync(path.join(earlier, 'plan.json'), path.join(dir, 'plan.json'));
      }
    };
    const durations: number[] = [];
    for (const [i, v] of VARIANTS.entries()) {
      const dir = path.join(TMP, `timing-${i}`);
      setup(v, dir);
      const t0 = Date.now();
      const r = await moreau([...v.args, '-q'], { cwd: dir });
      expect(r.code, `${v.name}: ${r.stderr}`).toBe(0);
      v.complete(dir);
      durations.push(Date.now() - t0);
    }

    const rng = new Rng(SEED);
    const outcomes: string[] = [];
    const trial = async (k: number) => {
      const v = VARIANTS[rng.int(VARIANTS.length)]!;
      const dir = path.join(TMP, `trial-${k}`);
      setup(v, dir);
      const before = snapshot(dir);
      const d = durations[VARIANTS.indexOf(v)]!;
      // Anywhere in the run, weighted towards its end (the save and the commit).
      const delay = rng.uniform() < 0.5 ? rng.uniform() * d : d * (0.6 + 0.5 * rng.uniform());
      const signal = rng.uniform() < 0.5 ? 'SIGINT' : 'SIGTERM';
      const second = rng.uniform() < 0.4 ? rng.uniform() * 300 : undefined;
      const r = await moreau([...v.args, '-q'], {
        cwd: dir,
        onSpawn: (child) => {
          setTimeout(() => child.kill(signal), delay);
          if (second !== undefined) setTimeout(() => child.kill(signal), delay + second);
        },
      });
      const what = `trial ${k}: ${v.name}, ${signal} at ${Math.round(delay)} ms of ~${d}${second !== undefined ? `, again ${Math.round(second)} ms later` : ''}\n${r.stderr}`;
      // Killed by the signal itself (before node could install a handler: the shell reports 130 / 143).
      const code = r.code ?? (r.signal === 'SIGINT' || r.signal === 'SIGTERM' ? 130 : r.code);
      expect([0, 130], what).toContain(code);
      if (code === 130) expect(snapshot(dir), what).toEqual(before);
      else v.complete(dir);
      expect(leftovers(dir), what).toEqual([]);
      expect(readFileSync(path.join(dir, 'out.tmp-my-notes/notes.txt'), 'utf8'), what).toBe('mine');
      outcomes.push(`${code}`);
    };
    for (let k = 0; k < TRIALS; k += 2) await Promise.all([trial(k), trial(k + 1)]);
    const count = (c: string) => outcomes.filter((o) => o === c).length;
    console.log(
      `interrupt trials (seed ${SEED}): ${count('130')} stopped (exit 130), ${count('0')} completed (exit 0)`,
    );
    expect(count('130')).toBeGreaterThan(TRIALS / 4);
  }, 400_000);
});
