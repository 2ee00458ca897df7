import type { PruneScope } from '@moreau/core';
import { describe, expect, it } from 'vitest';
import { renderChart, reportCharts } from './internal/report/charts.js';
import {
  comparisonTable,
  markdownTable,
  renderHtml,
  renderMarkdown,
  textSummary,
} from './internal/report/render.js';
import type { CompareReport } from './internal/report/types.js';

const run = (criterion: string, ratio: number, ppl: number, acc: number, scope: PruneScope = 'block') => ({
  scope,
  criterion,
  ratio,
  params_after: ratio === 0.1 ? 900 : 800,
  nonzero_after: ratio === 0.1 ? 900 : 800,
  params_left: ratio === 0.1 ? 0.9 : 0.8,
  ppl: { wiki: ppl },
  nll: { wiki: Math.log(ppl) },
  tasks: { arc_easy: { acc, acc_norm: acc, n: 10 } },
  seconds: 1.5,
  score_seconds: 1,
  eval_seconds: 0.5,
  plan: `plans/${criterion}-${ratio}.json`,
});

const report: CompareReport = {
  format: 'moreau-compare-report',
  version: 2,
  created: '2026-01-01T00:00:00.000Z',
  moreau: '0.0.0',
  model: {
    source: 'toy <model>',
    format: 'hf',
    params: 1000,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    intermediate_size: 16,
    vocab_size: 32,
  },
  backend: { name: 'ort', device: 'cpu' },
  settings: {
    criteria: ['taylor', 'moreau'],
    ratios: [0.1, 0.2],
    scopes: ['block'],
    options: { taylor: { variant: 'param_first' }, moreau: { iterations: 2 } },
    ppl_texts: { wiki: 'wiki.txt' },
    tasks: { arc_easy: 'arc.jsonl' },
    seq_len: 128,
    limit: 4,
    calibration: { source: 'calib.txt', samples: 2, seq_len: 32, iterations: 2 },
    seed: 1,
    ranking: 'local',
    keep_low_ratio: 0,
    attn_layers: null,
    mlp_layers: null,
    perturbations: ['fp16', 'gauss:0.01x2'],
  },
  dense: {
    params: 1000,
    ppl: { wiki: 10 },
    nll: { wiki: Math.log(10) },
    tokens: { wiki: 508 },
    tasks: { arc_easy: { acc: 0.5, acc_norm: 0.5, n: 10 } },
    seconds: 1,
  },
  runs: [
    run('taylor', 0.1, 12, 0.4),
    run('taylor', 0.2, 20, 0.3),
    run('moreau', 0.1, 11, 0.45),
    run('moreau', 0.2, 25, 0.35),
  ],
  robustness: {
    '0.2': {
      ratio: 0.2,
      results: {
        taylor: {
          fp16: { iou: 0.9, spearman: 0.99, ppl: 20.1 },
          'gauss:0.01x2': { iou_mean: 0.8, iou_sd: 0.05, spearman_mean: 0.98, ppl_mean: 21, ppl_sd: 0.5 },
        },
        moreau: {
          fp16: { iou: 1, spearman: 1, ppl: 25 },
          'gauss:0.01x2': { iou_mean: 0.95, iou_sd: 0.01, spearman_mean: 0.99, ppl_mean: 25.2, ppl_sd: 0.1 },
        },
      },
      baseline: { taylor: { ppl: 20 }, moreau: { ppl: 25 } },
      dense: { ppl: 10 },
    },
  },
  charts: [],
  seconds: 9,
};

describe('comparison report rendering', () => {
  it('tables: dense first, runs grouped by ratio in --criteria order, best per ratio marked', () => {
    const t = comparisonTable(report);
    expect(t.header).toEqual([
      'criterion',
      'ratio',
      'params',
      'left',
      'PPL wiki',
      'arc_easy acc',
      'arc_easy acc_norm',
      'seconds',
    ]);
    expect(t.rows.map((r) => `${r[0]}@${r[1]}`)).toEqual([
      'dense@0',
      'taylor@0.1',
      'moreau@0.1',
      'taylor@0.2',
      'moreau@0.2',
    ]);
    expect(t.best?.has('2,4')).toBe(true); // moreau 0.1 has the lower perplexity
    expect(t.best?.has('3,4')).toBe(true); // taylor 0.2
    expect(t.best?.has('2,5')).toBe(true); // moreau 0.1 has the higher accuracy
    const md = markdownTable(t, true);
    expect(md.split('\n')[1]).toMatch(/^\|-+\|-+:\|/);
    expect(md).toContain('**11.000**');
    const text = textSummary(report);
    expect(text).not.toContain('**');
    expect(text).toMatch(/robustness at ratio 0\.2 \(dense PPL 10\.000\)/);
    expect(text).toMatch(/\| taylor\s+\| gauss:0\.01x2\s+\| 0\.800 ± 0\.050 \|/);
  });

  it('several scopes: a scope column, best per scope and ratio, one perplexity chart per scope', () => {
    const scoped: CompareReport = {
      ...report,
      settings: { ...report.settings, scopes: ['block', 'unstructured'] },
      runs: [
        run('taylor', 0.1, 12, 0.4),
        run('moreau', 0.1, 11, 0.45),
        { ...run('taylor', 0.1, 14, 0.4, 'unstructured'), nonzero_after: 901, params_left: 0.901 },
        run('moreau', 0.1, 15, 0.45, 'unstructured'),
      ],
      robustness: { 'unstructured 0.1': report.robustness!['0.2']! },
    };
    const t = comparisonTable(scoped);
    expect(t.header.slice(0, 4)).toEqual(['scope', 'criterion', 'ratio', 'params']);
    expect(t.rows.map((r) => r.slice(0, 4).join('@'))).toEqual([
      '@dense@0@1,000',
      'block@taylor@0.1@900',
      'block@moreau@0.1@900',
      'unstructured@taylor@0.1@901',
      'unstructured@moreau@0.1@900',
    ]);
    expect(t.best?.has('2,5')).toBe(true); // block: moreau's perplexity 11
    expect(t.best?.has('3,5')).toBe(true); // unstructured: taylor's 14
    expect(reportCharts({ ...scoped, robustness: undefined }).map((c) => c.name)).toEqual([
      'perplexity_vs_ratio_block',
      'accuracy_vs_ratio_block',
      'perplexity_vs_ratio_unstructured',
      'accuracy_vs_ratio_unstructured',
    ]);
    expect(textSummary(scoped)).toMatch(/robustness at unstructured, ratio 0\.1 /);
    expect(renderMarkdown(scoped, [])).toContain('scopes block, unstructured; local ranking (block)');
  });

  it('markdown and a self-contained, escaped HTML page', () => {
    const md = renderMarkdown(report, []);
    expect(md).toMatch(/^# Pruning comparison: toy <model>/);
    expect(md).toContain('## Robustness');
    const html = renderHtml(report, [
      { name: 'c', title: 'C & D', spec: {} as never, svg: '<svg/>', png: new Uint8Array() },
    ]);
    expect(html).toContain('toy &lt;model&gt;');
    expect(html).toContain('C &amp; D');
    expect(html).toContain(`src="data:image/svg+xml;base64,${Buffer.from('<svg/>').toString('base64')}"`);
    expect(html).not.toMatch(/(src|href)="https?:/);
  });

  it('charts: Vega-Lite specs rendered by vega to SVG and by resvg to PNG', async () => {
    const charts = reportCharts(report);
    expect(charts.map((c) => c.name)).toEqual(['perplexity_vs_ratio', 'accuracy_vs_ratio', 'robustness_iou']);
    expect(
      reportCharts({ ...report, robustness: undefined, dense: { ...report.dense, tasks: {} } }).map(
        (c) => c.name,
      ),
    ).toEqual(['perplexity_vs_ratio']);
    const r = await renderChart(charts[2]!);
    expect(r.svg).toMatch(/^<svg [^>]*class="marks"/);
    expect(r.svg).toContain('gauss:0.01x2');
    expect(r.svg).toContain('moreau');
    expect(Buffer.from(r.png.subarray(0, 8)).toString('hex')).toBe('89504e470d0a1a0a');
  }, 60_000);

  it('the perplexity axis fits the data instead of spanning whole decades', async () => {
    const runs = [run('taylor', 0.1, 121.5, 0.4), run('moreau', 0.1, 124.8, 0.4)];
    const narrow = { ...report, runs, dense: { ...report.dense, ppl: { wiki: 108.6 } } };
    const { svg } = await renderChart(reportCharts(narrow)[0]!);
    const ticks = [...svg.matchAll(/<text[^>]*>([\d,.]+)<\/text>/g)].map((m) =>
      Number(m[1]!.replace(/,/g, '')),
    );
    const ppl = ticks.filter((t) => t > 1);
    expect(ppl.length).toBeGreaterThan(2);
    expect(Math.min(...ppl)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...ppl)).toBeLessThanOrEqual(130);
  }, 60_000);
});
