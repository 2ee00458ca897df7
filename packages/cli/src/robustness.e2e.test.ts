/**
 * `moreau robustness` end to end on the BUILT binary with the embedded `tiny` model (no shared
 * folder needed): the compute and seed perturbations in the table and the JSON, and a --sweep with
 * its report. Runs are kept small (2 windows of 32 calibration tokens, moreau with 1-2 iterations).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, hasDist, moreau } from './e2e-helpers.js';

if (!hasDist)
  console.warn(`moreau robustness e2e tests skipped: ${BIN} is missing (run \`npm run build\` first)`);

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-robustness-e2e-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const tmp = (name: string) => path.join(TMP, name);
const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

const small = ['--calib-samples', '2', '--calib-seq-len', '32', '--limit', '2', '-q'];

describe.skipIf(!hasDist)('moreau robustness on tiny (built binary)', () => {
  it('--perturb compute:bfloat16,seed:2: the rows in the table and every field in the JSON', async () => {
    const file = tmp('rob.json');
    const r = await moreau([
      'robustness',
      'tiny',
      '--criteria',
      'taylor,moreau',
      '--ratio',
      '0.2',
      '--perturb',
      'compute:bfloat16,seed:2',
      '--opt',
      'iterations=2',
      '--opt',
      'averageLast=1',
      ...small,
      '--json',
      file,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^\| taylor \| compute:bfloat16 \| (?:1|\d\.\d{3,}) \| (?:1|\d\.\d{3,}) \| -?(?:1|\d\.\d{3,}) \| \d+\.\d{3} \|$/m,
    );
    expect(r.stdout).toMatch(/^\| taylor \| seed:2 \| n\/a \| - \| - \| deterministic: /m);
    expect(r.stdout).toMatch(
      /^\| moreau \| seed:2 \| (?:1|\d\.\d{3,}) ± (?:0|\d\.\d{3,}) \| (?:1|\d\.\d{3,}) ± (?:0|\d\.\d{3,}) \| -?(?:1|\d\.\d{3,}) \| \d+\.\d{3} ± \d+\.\d{3} \|$/m,
    );
    const j = json(file);
    expect(j).toMatchObject({
      format: 'moreau-robustness-report',
      model: { source: 'tiny', layers: 4 },
      settings: {
        criteria: ['taylor', 'moreau'],
        ratio: 0.2,
        perturbations: ['compute:bfloat16', 'seed:2'],
        sweep: null,
        seed: 1,
        calibration: { sampling: 'windows', samples: 2, seq_len: 32 },
        windows: 2,
      },
      machine: { cpus: expect.any(Number), loadavg_start: expect.any(Array) },
      ratio: 0.2,
      stochastic: { taylor: false, moreau: true },
      seed: 1,
    });
    expect(Object.keys(j.results)).toEqual(['taylor', 'moreau']);
    for (const c of ['taylor', 'moreau']) {
      expect(j.baseline[c].ppl).toBeGreaterThan(1);
      const s = j.results[c]['compute:bfloat16'];
      expect(Object.keys(s)).toEqual(['iou', 'iou_kept', 'spearman', 'ppl', 'precision', 'seconds']);
      expect(s.iou_kept).toBeGreaterThanOrEqual(s.iou); // at ratio 0.2 the kept sets are the large ones
      expect(s.precision).toBe('emulated');
      expect(s.iou).toBeGreaterThan(0);
      expect(s.iou).toBeLessThanOrEqual(1);
    }
    expect(j.results.taylor['seed:2']).toEqual({
      applicable: false,
      reason: expect.stringMatching(/^deterministic/),
    });
    const seed = j.results.moreau['seed:2'];
    expect(Object.keys(seed)).toEqual([
      'iou_mean',
      'iou_sd',
      'iou_kept_mean',
      'iou_kept_sd',
      'spearman_mean',
      'ppl_mean',
      'ppl_sd',
      'runs',
      'varies',
      'seconds',
    ]);
    expect(seed.runs.map((x: { seed: number }) => x.seed)).toEqual([2, 3]);
    expect(seed.varies).toEqual(['criterion seed', 'calibration windows']);
    expect(j.dense.ppl).toBeGreaterThan(1);
  }, 240_000);

  it('--sweep: one table, the grid in JSON, report.md and the chart; bad sweeps exit 2 naming the flag', async () => {
    const bad = await moreau([
      'robustness',
      'tiny',
      '--criteria',
      'taylor',
      '--ratio',
      '0.2',
      '--sweep',
      'lr=1,2',
    ]);
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toMatch(/--sweep lr: none of taylor has this option; valid: variant/);
    expect(bad.stderr).toContain("(run 'moreau robustness --help' for its flags)");
    const twice = await moreau([
      'robustness',
      'tiny',
      '--criteria',
      'moreau',
      '--ratio',
      '0.2',
      '--perturb',
      'seed:1,seed:2',
    ]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/--perturb: list one seed:K/);

    const dir = tmp('sweep');
    const r = await moreau([
      'robustness',
      'tiny',
      '--criteria',
      'taylor,moreau-gs',
      '--ratio',
      '0.2',
      '--perturb',
      'bf16,seed:1',
      '--opt',
      'iterations=1',
      '--sweep',
      'noiseStd=0,0.05',
      ...small,
      '--report',
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^\| setting\s+\| criterion\s+\|\s+PPL \| GS rows flipped \| bf16 IoU \|\s+seed:1 IoU \|$/m,
    );
    expect(r.stdout).toMatch(
      /^\| noiseStd=0\.05 \| taylor \(every setting\) \|\s+\d+\.\d{3} \|\s+- \|\s+(?:1|\d\.\d{3,}) \|\s+n\/a \|$/m,
    );
    // One iteration without noise draws nothing from the seed: deterministic. With noise: 1 seed, sd 0.
    expect(r.stdout).toMatch(
      /^\| noiseStd=0\s+\| moreau-gs\s+\|\s+\d+\.\d{3} \|\s+\d+\.\d% \|\s+(?:1|\d\.\d{3,}) \|\s+n\/a \|$/m,
    );
    expect(r.stdout).toMatch(
      /^\| noiseStd=0\.05 \| moreau-gs\s+\|\s+\d+\.\d{3} \|\s+\d+\.\d% \|\s+(?:1|\d\.\d{3,}) \|\s+(?:1|\d\.\d{3,}) ± (?:0|\d\.\d{3,}) \|$/m,
    );
    expect(readdirSync(dir).sort()).toEqual([
      'report.json',
      'report.md',
      'robustness_sweep.png',
      'robustness_sweep.svg',
      'robustness_sweep.vl.json',
    ]);
    const j = json(path.join(dir, 'report.json'));
    expect(j.settings.sweep).toEqual([{ key: 'noiseStd', values: [0, 0.05] }]);
    expect(j.grid.map((g: { label: string }) => g.label)).toEqual(['noiseStd=0', 'noiseStd=0.05']);
    expect(j.grid[1].applies).toEqual({ taylor: [], 'moreau-gs': ['noiseStd'] });
    expect(j.grid[1].report.options['moreau-gs'].noiseStd).toBe(0.05);
    expect(j.grid.map((g: { report: { stochastic: object } }) => g.report.stochastic)).toEqual([
      { taylor: false, 'moreau-gs': false },
      { taylor: false, 'moreau-gs': true },
    ]);
    // The reference run's soft-threshold counters (the GS regime) are recorded.
    expect(j.grid[0].report.baseline['moreau-gs'].diagnostics[0].moreau_gs_shrink.iterations).toHaveLength(1);
    const md = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(md).toMatch(/^## Sweep \(ratio 0\.2, dense PPL \d+\.\d{3}\)$/m);
    expect(md).toContain('![Plan stability vs criterion setting](robustness_sweep.svg)');
    expect(md).toMatch(/- machine: \d+ x .*load average/);
    expect(readFileSync(path.join(dir, 'robustness_sweep.png')).subarray(1, 4).toString()).toBe('PNG');
    expect(readFileSync(path.join(dir, 'robustness_sweep.svg'), 'utf8')).toMatch(/^<svg /);
  }, 240_000);
});
