import type { RobustnessReport, RobustnessSweepReport } from '@moreau/eval';
import { describe, expect, it } from 'vitest';
import { renderChart, robustnessBars } from './internal/report/charts.js';
import { markdownTable, robustnessTable } from './internal/report/render.js';
import {
  flippedFraction,
  type RobustnessDocument,
  renderRobustnessMarkdown,
  robustnessWarnings,
  sweepChart,
  sweepTable,
} from './internal/report/robustness.js';

/** One analysis with every kind of row: a seed family, a compute pair, a not-applicable row. */
const analysis = (moreauSeedIou: number): RobustnessReport => ({
  ratio: 0.2,
  results: {
    taylor: {
      'seed:3': { applicable: false, reason: "deterministic: taylor's scores do not depend on the seed" },
      'compute:float16': { iou: 0.9, spearman: 0.99, ppl: 20.5, precision: 'emulated' },
      'compute:bfloat16': { iou: 0.8, spearman: 0.98, ppl: 20.7, precision: 'emulated' },
      'compute:float16 vs compute:bfloat16': {
        iou: 0.75,
        spearman: 0.97,
        between: ['compute:float16', 'compute:bfloat16'],
      },
    },
    moreau: {
      'seed:3': {
        iou_mean: moreauSeedIou,
        iou_sd: 0.1,
        iou_kept_mean: 0.95,
        iou_kept_sd: 0.02,
        spearman_mean: 0.9,
        ppl_mean: 25.5,
        ppl_sd: 0.5,
        runs: [],
        varies: ['criterion seed'],
      },
      'compute:float16': { iou: 0.95, spearman: 0.99, ppl: 25, precision: 'emulated' },
      'compute:bfloat16': { iou: 0.9, spearman: 0.99, ppl: 25.2, precision: 'emulated' },
      'compute:float16 vs compute:bfloat16': {
        iou: 0.85,
        spearman: 0.99,
        between: ['compute:float16', 'compute:bfloat16'],
      },
    },
  },
  baseline: { taylor: { ppl: 20 }, moreau: { ppl: 25 } },
  dense: { ppl: 10 },
  stochastic: { taylor: false, moreau: true },
});

const sweep: RobustnessSweepReport = {
  ratio: 0.2,
  sweep: [{ key: 'lr', values: [2e-4, 0.02] }],
  grid: [
    {
      setting: { lr: 2e-4 },
      label: 'lr=0.0002',
      report: analysis(0.5),
      applies: { taylor: [], moreau: ['lr'] },
    },
    {
      setting: { lr: 0.02 },
      label: 'lr=0.02',
      report: analysis(0.7),
      applies: { taylor: [], moreau: ['lr'] },
    },
  ],
  dense: { ppl: 10 },
};

describe('robustness report', () => {
  it('tables: families as mean ± sd, the compute pair, not-applicable rows with their reason', () => {
    const md = markdownTable(robustnessTable(analysis(0.5)));
    expect(md).toMatch(/\| taylor\s+\| none \(reference\)\s+\|\s+1 \|\s+1 \|\s+1 \|\s+20\.000 \|/);
    expect(md).toMatch(/\| taylor\s+\| seed:3\s+\|\s+n\/a \|\s+- \|\s+- \|\s+- \|/);
    expect(md).toMatch(
      /\| moreau\s+\| seed:3\s+\|\s+0\.500 ± 0\.100 \|\s+0\.950 ± 0\.020 \|\s+0\.900 \|\s+25\.500 ± 0\.500 \|/,
    );
    expect(md).toMatch(/\| moreau\s+\| compute:float16\s+\|\s+0\.950 \|\s+- \|/); // an older report: no kept IoU
    expect(md).toMatch(
      /\| moreau\s+\| compute:float16 vs compute:bfloat16 \|\s+0\.850 \|\s+- \|\s+0\.990 \|\s+\(each plan: its row\) \|/,
    );
    const t = sweepTable(sweep);
    expect(t.header).toEqual([
      'setting',
      'criterion',
      'PPL',
      'seed:3 IoU',
      'compute:float16 IoU',
      'compute:bfloat16 IoU',
      'compute:float16 vs compute:bfloat16 IoU',
    ]);
    expect(t.rows[0]).toEqual([
      'lr=0.0002',
      'taylor (every setting)',
      '20.000',
      'n/a',
      '0.900',
      '0.800',
      '0.750',
    ]);
    expect(t.rows[3]).toEqual(['lr=0.02', 'moreau', '25.000', '0.700 ± 0.100', '0.950', '0.900', '0.850']);
  });

  it("Moreau-GS's regime: the mean flipped fraction as a column, the reference runs' warnings once", () => {
    const shrink = (flipped: number[]) => ({
      moreau_gs_shrink: { iterations: flipped.map((f, i) => ({ iteration: i + 1, all: { flipped: f } })) },
    });
    expect(flippedFraction({ ppl: 1, diagnostics: [shrink([1, 0.5])] })).toBe(0.75);
    expect(flippedFraction({ ppl: 1 })).toBeUndefined();
    const withGs = (f: number): RobustnessReport => {
      const a = analysis(0.5);
      return {
        ...a,
        baseline: {
          ...a.baseline,
          moreau: { ppl: 25, diagnostics: [shrink([f, f])], warnings: ['moreau-gs: most rows flipped'] },
        },
      };
    };
    const gs: RobustnessSweepReport = {
      ...sweep,
      grid: sweep.grid.map((g, i) => ({ ...g, report: withGs(i === 0 ? 0.99 : 0) })),
    };
    const t = sweepTable(gs);
    expect(t.header.slice(0, 4)).toEqual(['setting', 'criterion', 'PPL', 'GS rows flipped']);
    expect(t.rows.map((r) => r[3])).toEqual(['-', '99.0%', '-', '0.0%']);
    expect(robustnessWarnings(gs)).toEqual(['moreau: moreau-gs: most rows flipped']);
  });

  it('the bars skip not-applicable rows; the sweep chart draws the seed family dashed in every panel', async () => {
    const bars = robustnessBars({ '0.2': analysis(0.5) }, ['taylor', 'moreau'])!;
    const barRows = (bars.spec as { data: { values: { criterion: string; perturbation: string }[] } }).data
      .values;
    expect(barRows.filter((r) => r.perturbation === 'seed:3').map((r) => r.criterion)).toEqual(['moreau']);
    const chart = sweepChart(sweep, ['taylor', 'moreau'], 'toy')!;
    expect(chart.name).toBe('robustness_sweep');
    const spec = chart.spec as {
      data: { values: { setting: string; criterion: string; panel: string; line: string; iou: number }[] };
      facet: { sort: string[] };
    };
    // Panels: every variant but the seed family, which is drawn (dashed) inside each of them.
    expect(spec.facet.sort).toEqual([
      'compute:float16',
      'compute:bfloat16',
      'compute:float16 vs compute:bfloat16',
    ]);
    const rows = spec.data.values;
    const dashed = rows.filter((r) => r.line === 'seed-to-seed');
    expect(dashed.every((r) => r.criterion === 'moreau')).toBe(true); // taylor is deterministic
    expect(dashed.filter((r) => r.panel === 'compute:bfloat16').map((r) => [r.setting, r.iou])).toEqual([
      ['lr=0.0002', 0.5],
      ['lr=0.02', 0.7],
    ]);
    expect(rows.filter((r) => r.line === 'perturbed plan')).toHaveLength(2 * 2 * 3);
    const { svg, png } = await renderChart(chart);
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain('lr=0.0002');
    expect(Buffer.from(png.subarray(0, 8)).toString('hex')).toBe('89504e470d0a1a0a');
  }, 60_000);

  it('markdown: settings, the machine and its load, the sweep table, why rows are n/a', () => {
    const doc = {
      format: 'moreau-robustness-report',
      version: 1,
      created: '2026-01-01T00:00:00.000Z',
      moreau: '0.0.0',
      model: { source: 'toy', format: 'hf', dtype: 'F32', params: 1000, layers: 2 },
      backend: { name: 'ort', device: 'cpu' },
      settings: {
        preset: 'moreaupruner',
        criteria: ['taylor', 'moreau'],
        ratio: 0.2,
        perturbations: ['compute:float16', 'compute:bfloat16'],
        sweep: sweep.sweep,
        calibration: { source: 'cal.txt', sampling: 'patches', samples: 4, seq_len: 512 },
        seed: 1,
        scope: 'block',
        ranking: 'local',
        attn_layers: [0, 2],
        mlp_layers: [0, 2],
        reduction: 'sum',
        ppl_text: 'eval.txt',
        seq_len: 128,
        windows: 32,
      },
      machine: {
        cpus: 2,
        cpu_model: 'CPU',
        node: 'v20',
        platform: 'linux-x64',
        loadavg_start: [1, 2, 3],
        loadavg_end: [4, 5, 6],
      },
      seconds: 12,
      ...sweep,
    } as RobustnessDocument;
    const md = renderRobustnessMarkdown(doc, []);
    expect(md).toContain('- calibration: cal.txt, 4 patches x 512 tokens');
    expect(md).toContain('- sweep: lr = 0.0002, 0.02');
    expect(md).toContain(
      'load average (1 / 5 / 15 min) 1.00 / 2.00 / 3.00 at the start, 4.00 / 5.00 / 6.00 at the end',
    );
    expect(md).toContain('## Sweep (ratio 0.2, dense PPL 10.000)');
    expect(md).toContain("- taylor, seed:3: deterministic: taylor's scores do not depend on the seed");
  });
});
