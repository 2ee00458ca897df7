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
import { criterionColor, distinguishingDecimals, fittedUnitDomain } from './internal/report/scales.js';
import type { CompareReport } from './internal/report/types.js';

/** Moreau-GS shrink counters of two iterations (the second mostly flipping). */
const shrinkDiagnostics = {
  moreau_gs_shrink: {
    rule: 'r',
    soft: 5e-6,
    lr: 2e-4,
    iterations: [
      { iteration: 1, all: { rows: 200, zeroed: 0.5, shrunk: 0.25, flipped: 0.25 }, kinds: {} },
      { iteration: 2, all: { rows: 200, zeroed: 0, shrunk: 0.01, flipped: 0.99 }, kinds: {} },
    ],
  },
};

const run = (criterion: string, ratio: number, ppl: number, acc: number, scope: PruneScope = 'block') => ({
  scope,
  criterion,
  ratio,
  params_after: ratio === 0.1 ? 900 : 800,
  nonzero_after: ratio === 0.1 ? 900 : 800,
  params_left: ratio === 0.1 ? 0.9 : 0.8,
  ppl: { wiki: ppl },
  nll: { wiki: Math.log(ppl) },
  tasks: { arc_easy: { acc, acc_norm: acc, n: 10, paper: acc } },
  paper_average: acc,
  paper_tasks: 1,
  macs: { total: ratio === 0.1 ? 2.5e9 : 2e9, per_token: (ratio === 0.1 ? 2.5e9 : 2e9) / 64 },
  latency: { seconds: ratio === 0.1 ? 0.009 : 0.008, min_seconds: 0.007, tokens_per_second: 7000 },
  diagnostics: criterion === 'moreau' ? [shrinkDiagnostics] : [{}],
  warnings: criterion === 'moreau' ? ['most rows flipped'] : [],
  seconds: 1.5,
  score_seconds: 1,
  eval_seconds: 0.5,
  score_exec: 'whole' as const,
  exec: 'whole' as const,
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
    preset: 'moreaupruner',
    preset_source: { repository: 'ShiningSord/MoreauPruner', commit: 'ce5453f', files: ['start.sh'] },
    criteria: ['taylor', 'moreau'],
    ratios: [0.1, 0.2],
    scopes: ['block'],
    options: { taylor: { variant: 'param_first' }, moreau: { iterations: 2 } },
    ppl_texts: { wiki: 'wiki.txt' },
    tasks: { arc_easy: 'arc.jsonl' },
    seq_len: 128,
    limit: 4,
    calibration: { source: 'calib.txt', sampling: 'patches', samples: 2, seq_len: 32, iterations: 2 },
    seed: 1,
    ranking: 'local',
    keep_low_ratio: 0,
    attn_layers: null,
    mlp_layers: null,
    perturbations: ['fp16', 'gauss:0.01x2'],
    zeroshot_protocol: 'harness-2023',
    ppl_join: 'rows',
    field: null,
    macs_seq_len: 64,
    macs_counted: 'test_speedup',
    latency: { batch: 1, seq_len: 64, repeats: 5, warmup: 1 },
    exec: 'auto',
  },
  dense: {
    params: 1000,
    ppl: { wiki: 10 },
    nll: { wiki: Math.log(10) },
    tokens: { wiki: 508 },
    tasks: { arc_easy: { acc: 0.5, acc_norm: 0.5, n: 10, paper: 0.5 } },
    paper_average: 0.5,
    paper_tasks: 1,
    macs: { total: 3e9, per_token: 3e9 / 64 },
    latency: { seconds: 0.01, min_seconds: 0.009, tokens_per_second: 6400 },
    seconds: 1,
    exec: 'whole',
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
      'GMACs 64 tok',
      'ms 1x64',
      'PPL wiki',
      'arc_easy acc',
      'arc_easy acc_norm',
      'paper avg',
      'seconds',
    ]);
    expect(t.rows[0]!.slice(4, 6)).toEqual(['3.00', '10.00']);
    expect(t.rows[1]!.slice(4, 6)).toEqual(['2.50', '9.00']);
    expect(t.rows[2]![9]).toBe('0.4500'); // moreau 0.1's paper average
    expect(t.rows.map((r) => `${r[0]}@${r[1]}`)).toEqual([
      'dense@0',
      'taylor@0.1',
      'moreau@0.1',
      'taylor@0.2',
      'moreau@0.2',
    ]);
    expect(t.best?.has('2,6')).toBe(true); // moreau 0.1 has the lower perplexity
    expect(t.best?.has('3,6')).toBe(true); // taylor 0.2
    expect(t.best?.has('2,7')).toBe(true); // moreau 0.1 has the higher accuracy
    expect(t.best?.has('2,9')).toBe(true); // and the higher paper average
    expect(t.best?.has('2,4')).toBe(false); // MACs are not ranked
    const md = markdownTable(t, true);
    expect(md.split('\n')[1]).toMatch(/^\|-+\|-+:\|/);
    expect(md).toContain('**11.000**');
    const text = textSummary(report);
    expect(text).not.toContain('**');
    expect(text).toMatch(/robustness at ratio 0\.2: dense PPL 10\.000\n/);
    expect(text).toMatch(/\| taylor\s+\| gauss:0\.01x2\s+\| 0\.800 ± 0\.050 \|/);
    // Moreau-GS's regime, once per criterion (it scores once for every ratio).
    expect(text).toContain('moreau-gs soft-threshold regime');
    expect(text).toMatch(/\| moreau\s+\|\s+2 \|\s+200 \|\s+0\.0% \|\s+1\.0% \|\s+99\.0% \|/);
    expect(text.match(/\| moreau\s+\|\s+1 \|/g)).toHaveLength(1);
  });

  it('settings name the preset and its commit, what MACs count, the latency shape and the paper metric', () => {
    const md = renderMarkdown(report, []);
    expect(md).toContain('- preset: moreaupruner (ShiningSord/MoreauPruner@ce5453f: start.sh)');
    expect(md).toContain('2 patches x 32 tokens');
    expect(md).toContain('MACs: one forward pass of 64 tokens, counted as test_speedup');
    expect(md).toContain('latency: median of 5 forward passes of 1 x 64 tokens');
    expect(md).toContain('zero-shot protocol harness-2023');
    expect(md).toContain('## Criterion diagnostics');
    expect(md).toContain('- warning: moreau: most rows flipped');
    expect(renderHtml(report, [])).toContain('<strong>warning:</strong> moreau: most rows flipped');
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
    const ppl = t.header.indexOf('PPL wiki');
    expect(t.best?.has(`2,${ppl}`)).toBe(true); // block: moreau's perplexity 11
    expect(t.best?.has(`3,${ppl}`)).toBe(true); // unstructured: taylor's 14
    expect(reportCharts({ ...scoped, robustness: undefined }).map((c) => c.name)).toEqual([
      'perplexity_vs_ratio_block',
      'accuracy_vs_ratio_block',
      'perplexity_vs_ratio_unstructured',
      'accuracy_vs_ratio_unstructured',
    ]);
    expect(textSummary(scoped)).toMatch(/robustness at unstructured, ratio 0\.1: dense PPL 10\.000\n/);
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

  it('a criterion has the same colour in every report; plugin criteria a stable one of their own', () => {
    const colours = (criteria: string[]) => {
      const spec = reportCharts({ ...report, settings: { ...report.settings, criteria } })[0]!
        .spec as unknown as {
        spec: { encoding: { color: { scale: { domain: string[]; range: string[] } } } };
      };
      const { domain, range } = spec.spec.encoding.color.scale;
      return Object.fromEntries(domain.map((c, i) => [c, range[i]]));
    };
    const a = colours(['taylor', 'moreau']);
    const b = colours(['magnitude', 'random', 'moreau-gs', 'taylor', 'fisher']);
    expect(a.taylor).toBe('#4e79a7');
    expect(b.taylor).toBe(a.taylor);
    expect(colours(['fisher', 'taylor']).fisher).toBe(b.fisher);
    const builtins = ['taylor', 'moreau', 'moreau-gs', 'magnitude', 'random'].map(criterionColor);
    expect(new Set(builtins).size).toBe(5);
    expect(builtins).not.toContain(criterionColor('fisher'));
    expect(criterionColor('fisher')).toBe(criterionColor('fisher'));
  });

  it('the IoU axis fits the data: 0.97-1.0 spans the axis instead of bars of equal height', async () => {
    expect(fittedUnitDomain([0.97, 0.99, 1])).toEqual([0.95, 1]);
    expect(fittedUnitDomain([0.5, 1])).toEqual([0.4, 1]);
    expect(fittedUnitDomain([0.05, 0.9])).toEqual([0, 1]);
    expect(fittedUnitDomain([1, 1])).toEqual([0.995, 1]);
    const close = {
      ...report,
      robustness: {
        '0.2': {
          ...report.robustness!['0.2']!,
          results: {
            taylor: { fp16: { iou: 0.99, spearman: 0.9999, ppl: 20 } },
            moreau: { fp16: { iou: 0.975, spearman: 0.99996, ppl: 25 } },
          },
        },
      },
    };
    const chart = reportCharts(close)[2]!;
    const { svg } = await renderChart(chart);
    const ticks = [...svg.matchAll(/<text[^>]*>(0\.\d+|1\.0+)<\/text>/g)].map((m) => Number(m[1]));
    expect(Math.min(...ticks)).toBeGreaterThanOrEqual(0.95);
    expect(svg).toContain('the IoU axis starts at 0.95, not 0');
  }, 60_000);

  it('IoU and Spearman print as many digits as tell their values apart; exactly 1 prints as 1', () => {
    expect(distinguishingDecimals([0.9, 0.95])).toBe(3);
    expect(distinguishingDecimals([0.99991, 0.99996, 1])).toBe(5);
    expect(distinguishingDecimals([0.9999996])).toBe(7); // never rounds up to 1.000
    const tight = {
      ...report,
      robustness: {
        '0.2': {
          ...report.robustness!['0.2']!,
          results: {
            taylor: { fp16: { iou: 1, spearman: 0.99991, ppl: 20 } },
            moreau: { fp16: { iou: 0.98, spearman: 0.99996, ppl: 25 } },
          },
        },
      },
    };
    const text = textSummary(tight);
    expect(text).toMatch(/\| taylor\s+\| fp16\s+\|\s+1 \|\s+- \|\s+0\.99991 \|/);
    expect(text).toMatch(/\| moreau\s+\| fp16\s+\|\s+0\.980 \|\s+- \|\s+0\.99996 \|/);
  });

  it('the robustness perplexities say which windows they use next to the results table', () => {
    const windows = (tokens: number, limit: number) =>
      textSummary({
        ...report,
        settings: { ...report.settings, robustness_windows: limit },
        dense: { ...report.dense, tokens: { wiki: tokens }, ppl: { wiki: 10.5 } },
      });
    expect(windows(127 * 660, 32)).toContain(
      'robustness at ratio 0.2: dense PPL 10.000 on the first 32 of 660 windows of wiki; the results table uses all 660 (dense PPL 10.500)',
    );
    expect(windows(127 * 660, 32)).toMatch(
      /\| criterion \| perturbation\s+\|\s+IoU \| IoU kept \| Spearman \| PPL \(32 windows\) \|/,
    );
    expect(windows(127 * 4, 32)).toContain(
      'dense PPL 10.000 on all 4 windows of wiki, as in the results table',
    );
    const md = renderMarkdown(
      {
        ...report,
        settings: { ...report.settings, robustness_windows: 32 },
        dense: { ...report.dense, tokens: { wiki: 127 * 660 } },
      },
      [],
    );
    expect(md).toContain(
      'Perplexities in these tables: dense PPL 10.000 on the first 32 of 660 windows of wiki',
    );
  });

  it('tuned runs: a +LoRA row after each pruned one, best marked among each kind, dashed lines', async () => {
    const tuned = (ppl: number, acc: number) => ({
      ppl: { wiki: ppl },
      nll: { wiki: Math.log(ppl) },
      tasks: { arc_easy: { acc, acc_norm: acc, n: 10, paper: acc } },
      paper_average: acc,
      steps: 3,
      train_loss: 2,
      val_loss: null,
      seconds: 4,
      tune_seconds: 3,
    });
    const withTuning: CompareReport = {
      ...report,
      runs: [
        { ...run('taylor', 0.1, 12, 0.4), tuned: tuned(10.5, 0.46) },
        { ...run('moreau', 0.1, 11, 0.45), tuned: tuned(10.8, 0.44) },
      ],
    };
    const t = comparisonTable(withTuning);
    expect(t.rows.map((r) => `${r[0]}@${r[1]}`)).toEqual([
      'dense@0',
      'taylor@0.1',
      'taylor +LoRA@0.1',
      'moreau@0.1',
      'moreau +LoRA@0.1',
    ]);
    expect(t.rows[2]![6]).toBe('10.500');
    expect(t.best?.has('3,6')).toBe(true); // moreau is the best pruned model
    expect(t.best?.has('2,6')).toBe(true); // taylor +LoRA the best tuned one
    expect(t.best?.has('1,6')).toBe(false);
    expect(renderHtml(withTuning, [])).toContain('<tr class="tuned">');
    const [ppl] = reportCharts(withTuning);
    const { svg } = await renderChart(ppl!);
    expect(svg).toContain('stroke-dasharray="6,4"'); // the tuned lines (and their legend entry)
    expect(svg).toContain('pruned + LoRA');
  }, 60_000);
});
