/**
 * Charts of a comparison report: Vega-Lite specs, compiled with vega-lite, rendered to SVG by
 * vega's headless View (renderer 'none'), rasterised to PNG by resvg.
 */
import { type RobustnessReport, statIou } from '@moreau/eval';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { criterionColorScale, fittedUnitDomain } from './scales.js';
import { type CompareReport, robustnessLabel } from './types.js';

/** Fonts that exist on most systems first; resvg takes the first family it finds. */
const FONT = 'DejaVu Sans, Helvetica, Arial, Liberation Sans, sans-serif';

export const CONFIG = {
  background: 'white',
  font: FONT,
  padding: 12,
  title: { fontSize: 15, anchor: 'start' as const, offset: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  header: { labelFontSize: 12, titleFontSize: 12 },
  view: { stroke: '#cccccc' },
};

export interface Chart {
  /** File stem: NAME.svg and NAME.png in the report directory. */
  readonly name: string;
  readonly title: string;
  readonly spec: TopLevelSpec;
}

export interface RenderedChart extends Chart {
  readonly svg: string;
  readonly png: Uint8Array;
}

/** One colour per criterion, the same in every chart and every report (scales.ts). */
export function colorScale(criteria: readonly string[]) {
  return criterionColorScale(criteria);
}

/** The runs of one scope, and how its charts are named and titled when the report has several scopes. */
function scopeView(report: CompareReport, scope: string) {
  const several = report.settings.scopes.length > 1;
  return {
    runs: report.runs.filter((r) => r.scope === scope),
    suffix: several ? `_${scope.replace(':', '-')}` : '',
    title: several ? ` (scope ${scope})` : '',
  };
}

/** With tuned runs: solid lines for the pruned models, dashed for the same models after LoRA tuning. */
const STAGES = ['pruned', 'pruned + LoRA'];
const tunedIn = (runs: CompareReport['runs']) => runs.some((r) => r.tuned);

function stageEncoding(runs: CompareReport['runs']) {
  if (!tunedIn(runs)) return {};
  return {
    strokeDash: {
      field: 'stage',
      type: 'nominal',
      title: 'recovery',
      sort: STAGES,
      scale: {
        domain: STAGES,
        range: [
          [1, 0],
          [6, 4],
        ],
      },
      legend: { symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 400, symbolStrokeColor: '#444444' },
    },
  };
}

/** A line layer (with the tuned / untuned dash) and a point layer over the same encoding. */
function linesAndPoints(runs: CompareReport['runs'], size: number) {
  return [
    { mark: { type: 'line', strokeWidth: 2 }, encoding: stageEncoding(runs) },
    { mark: { type: 'point', filled: true, size, opacity: 1 } },
  ];
}

/**
 * Perplexity against pruning ratio, one line per criterion (dashed: after LoRA tuning), one panel
 * per text; ratio 0 is the dense model, where both lines of a criterion start.
 */
export function perplexityChart(report: CompareReport, scope: string): Chart | undefined {
  const texts = Object.keys(report.dense.ppl);
  const view = scopeView(report, scope);
  if (texts.length === 0 || view.runs.length === 0) return undefined;
  const criteria = report.settings.criteria;
  const stages = tunedIn(view.runs) ? STAGES : STAGES.slice(0, 1);
  const rows: Record<string, unknown>[] = [];
  for (const text of texts) {
    for (const c of criteria)
      for (const stage of stages)
        rows.push({ text, criterion: c, ratio: 0, ppl: report.dense.ppl[text], model: 'dense', stage });
    for (const r of view.runs) {
      const ppl = r.ppl[text];
      if (ppl !== undefined && Number.isFinite(ppl))
        rows.push({ text, criterion: r.criterion, ratio: r.ratio, ppl, model: 'pruned', stage: STAGES[0] });
      const tuned = r.tuned?.ppl[text];
      if (tuned !== undefined && Number.isFinite(tuned))
        rows.push({
          text,
          criterion: r.criterion,
          ratio: r.ratio,
          ppl: tuned,
          model: 'tuned',
          stage: STAGES[1],
        });
    }
  }
  const ratios = [...new Set(view.runs.map((r) => r.ratio))].sort((a, b) => a - b);
  return {
    name: `perplexity_vs_ratio${view.suffix}`,
    title: `Perplexity vs pruning ratio${view.title}`,
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: {
        text: `Perplexity vs pruning ratio${view.title}`,
        subtitle: `${report.model.source} — ratio 0 is the dense model; lower is better${tunedIn(view.runs) ? '; dashed: after LoRA recovery' : ''}`,
      },
      data: { values: rows },
      facet: { column: { field: 'text', type: 'nominal', title: 'evaluation text', sort: texts } },
      resolve: { scale: { y: 'independent' } },
      spec: {
        width: texts.length > 1 ? 340 : 560,
        height: 300,
        // Lines (dashed after tuning) and points in separate layers, so the legend draws dashes.
        layer: linesAndPoints(view.runs, 60),
        encoding: {
          x: {
            field: 'ratio',
            type: 'quantitative',
            title: 'pruning ratio',
            axis: { format: '.0%', values: [0, ...ratios] },
          },
          // Log scale fitted to the data (not widened to whole decades), a little room at both ends.
          y: {
            field: 'ppl',
            type: 'quantitative',
            title: 'perplexity (log scale)',
            scale: { type: 'log', nice: false, padding: 12 },
          },
          color: { field: 'criterion', type: 'nominal', title: 'criterion', scale: colorScale(criteria) },
          tooltip: [
            { field: 'criterion', type: 'nominal' },
            { field: 'stage', type: 'nominal' },
            { field: 'ratio', type: 'quantitative' },
            { field: 'ppl', type: 'quantitative', format: '.3f' },
          ],
        },
      },
      config: CONFIG,
    } as TopLevelSpec,
  };
}

/** Zero-shot accuracy against ratio, one panel per task (only when tasks were evaluated). */
export function accuracyChart(report: CompareReport, scope: string): Chart | undefined {
  const tasks = Object.keys(report.dense.tasks);
  const view = scopeView(report, scope);
  if (tasks.length === 0 || view.runs.length === 0) return undefined;
  const criteria = report.settings.criteria;
  const stages = tunedIn(view.runs) ? STAGES : STAGES.slice(0, 1);
  const rows: Record<string, unknown>[] = [];
  for (const task of tasks) {
    for (const c of criteria)
      for (const stage of stages)
        rows.push({ task, criterion: c, ratio: 0, acc: report.dense.tasks[task]!.acc, stage });
    for (const r of view.runs) {
      const t = r.tasks[task];
      if (t) rows.push({ task, criterion: r.criterion, ratio: r.ratio, acc: t.acc, stage: STAGES[0] });
      const tuned = r.tuned?.tasks[task];
      if (tuned)
        rows.push({ task, criterion: r.criterion, ratio: r.ratio, acc: tuned.acc, stage: STAGES[1] });
    }
  }
  const ratios = [...new Set(view.runs.map((r) => r.ratio))].sort((a, b) => a - b);
  return {
    name: `accuracy_vs_ratio${view.suffix}`,
    title: `Zero-shot accuracy vs pruning ratio${view.title}`,
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: {
        text: `Zero-shot accuracy vs pruning ratio${view.title}`,
        subtitle: 'ratio 0 is the dense model; higher is better',
      },
      data: { values: rows },
      facet: { field: 'task', type: 'nominal', title: 'task', sort: tasks },
      columns: 3,
      spec: {
        width: 280,
        height: 220,
        layer: linesAndPoints(view.runs, 50),
        encoding: {
          x: {
            field: 'ratio',
            type: 'quantitative',
            title: 'pruning ratio',
            axis: { format: '.0%', values: [0, ...ratios] },
          },
          y: { field: 'acc', type: 'quantitative', title: 'accuracy', scale: { zero: false } },
          color: { field: 'criterion', type: 'nominal', title: 'criterion', scale: colorScale(criteria) },
          tooltip: [
            { field: 'criterion', type: 'nominal' },
            { field: 'stage', type: 'nominal' },
            { field: 'ratio', type: 'quantitative' },
            { field: 'acc', type: 'quantitative', format: '.4f' },
          ],
        },
      },
      config: CONFIG,
    } as TopLevelSpec,
  };
}

/**
 * Robustness: IoU of each perturbed plan's pruned units with the unperturbed plan's, bars per
 * perturbation grouped by criterion, one panel per ratio; families (gauss, seed, calib) show mean ± sd.
 */
export function robustnessChart(report: CompareReport): Chart | undefined {
  return report.robustness ? robustnessBars(report.robustness, report.settings.criteria) : undefined;
}

/** The robustness bars of analyses by ratio (compare's report, and `moreau robustness --report`). */
export function robustnessBars(
  rob: Readonly<Record<string, RobustnessReport>>,
  criteria: readonly string[],
): Chart | undefined {
  if (Object.keys(rob).length === 0) return undefined;
  const rows: Record<string, unknown>[] = [];
  const perturbations: string[] = [];
  for (const [ratio, r] of Object.entries(rob)) {
    for (const [criterion, byPerturbation] of Object.entries(r.results)) {
      for (const [perturbation, s] of Object.entries(byPerturbation)) {
        if (!perturbations.includes(perturbation)) perturbations.push(perturbation);
        const v = statIou(s);
        if (!v) continue; // not applicable to this criterion (e.g. seed:K of a deterministic one)
        rows.push({
          ratio: robustnessLabel(ratio),
          criterion,
          perturbation,
          iou: v.iou,
          ...(v.sd === undefined ? {} : { lo: Math.max(0, v.iou - v.sd), hi: Math.min(1, v.iou + v.sd) }),
        });
      }
    }
  }
  const ratios = Object.keys(rob).map(robustnessLabel);
  const x = {
    field: 'perturbation',
    type: 'nominal',
    title: 'perturbation',
    sort: perturbations,
    axis: { labelAngle: 0 },
  };
  const xOffset = { field: 'criterion', type: 'nominal', sort: criteria };
  // The IoU axis fitted to the data (bars of 0.97-1.0 are not all full height), clipped at its bottom.
  const domain = fittedUnitDomain(rows.flatMap((r) => [r.iou as number, (r.lo as number | undefined) ?? 1]));
  return {
    name: 'robustness_iou',
    title: 'Robustness: IoU of pruned units with the reference plan',
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: {
        text: 'Robustness of the pruning mask',
        subtitle: [
          'IoU of the pruned units with the reference plan (1 = same mask); families: mean ± sd',
          `seed:K: the criterion's own seed-to-seed variation${domain[0] > 0 ? `; the IoU axis starts at ${domain[0]}, not 0` : ''}`,
        ],
      },
      data: { values: rows },
      facet: { field: 'ratio', type: 'nominal', title: null, sort: ratios },
      columns: Math.min(3, ratios.length),
      spec: {
        width: Math.max(200, 22 * perturbations.length * Math.min(criteria.length, 6)),
        height: 260,
        layer: [
          {
            mark: { type: 'bar', clip: true },
            encoding: {
              x,
              xOffset,
              y: {
                field: 'iou',
                type: 'quantitative',
                title: 'IoU',
                scale: { domain, zero: false, nice: false },
              },
              color: { field: 'criterion', type: 'nominal', title: 'criterion', scale: colorScale(criteria) },
              tooltip: [
                { field: 'criterion', type: 'nominal' },
                { field: 'perturbation', type: 'nominal' },
                { field: 'iou', type: 'quantitative', format: '.3f' },
              ],
            },
          },
          {
            transform: [{ filter: 'isValid(datum.lo)' }],
            mark: { type: 'rule', color: '#222222', strokeWidth: 1.5, clip: true },
            encoding: { x, xOffset, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } },
          },
        ],
      },
      config: CONFIG,
    } as TopLevelSpec,
  };
}

/** Per scope a perplexity chart (and an accuracy chart with tasks), then the robustness chart. */
export function reportCharts(report: CompareReport): Chart[] {
  return [
    ...report.settings.scopes.flatMap((s) => [perplexityChart(report, s), accuracyChart(report, s)]),
    robustnessChart(report),
  ].filter((c): c is Chart => !!c);
}

/** Vega-Lite -> Vega -> SVG (headless View). */
export async function chartSvg(spec: TopLevelSpec): Promise<string> {
  // Quiet: warnings would land on stderr between the progress lines.
  const compiled = compile(spec, { logger: vega.logger(vega.None) }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.None });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** SVG -> PNG at twice the SVG's size, on white. */
export function svgToPng(svg: string): Uint8Array {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    background: 'white',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  });
  return resvg.render().asPng();
}

export async function renderChart(chart: Chart): Promise<RenderedChart> {
  const svg = await chartSvg(chart.spec);
  return { ...chart, svg, png: svgToPng(svg) };
}
