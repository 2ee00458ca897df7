/**
 * The report of `moreau robustness --report DIR`: report.json (the --json document), report.md
 * (settings, the table, the chart) and the chart as SVG, PNG and its Vega-Lite spec. A single
 * analysis draws compare's robustness bars; a sweep draws IoU against the setting, one line per
 * criterion (compare's colours), dashed where it is the criterion's own seed-to-seed IoU.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BaselineStat,
  isNotApplicable,
  type RobustnessReport,
  type RobustnessSweepReport,
  statCells,
  statIou,
} from '@moreau/eval';
import type { TopLevelSpec } from 'vega-lite';
import type { RunOutputs } from '../output.js';
import { type Chart, CONFIG, colorScale, type RenderedChart, renderChart, robustnessBars } from './charts.js';
import { markdownTable, notApplicableNotes, robustnessTable, type Table } from './render.js';
import { reportDirPolicy } from './write.js';

/** What `moreau robustness` ran: the head of its --json document and report. */
export interface RobustnessHead {
  readonly format: 'moreau-robustness-report';
  readonly version: 1;
  readonly created: string;
  readonly moreau: string;
  readonly model: {
    readonly source: string;
    readonly format: string;
    readonly dtype: string;
    readonly params: number;
    readonly layers: number;
  };
  readonly backend: { readonly name: string; readonly device: string };
  readonly settings: {
    readonly preset: string | null;
    readonly criteria: readonly string[];
    readonly ratio: number;
    /** As listed (canonical names); the results show the seed family added for stochastic criteria. */
    readonly perturbations: readonly string[];
    readonly sweep: RobustnessSweepReport['sweep'] | null;
    readonly calibration: {
      readonly source: string | null;
      readonly sampling: string;
      readonly samples: number | null;
      readonly seq_len: number | null;
    } | null;
    readonly seed: number;
    /** The pruning granularity (block, channel, layer, unstructured, N:M). */
    readonly scope: string;
    /** How units are ranked against each other at the block scope (local, global-per-kind, global-pool). */
    readonly ranking: string;
    readonly attn_layers: readonly [number, number] | null;
    readonly mlp_layers: readonly [number, number] | null;
    readonly reduction: string | null;
    readonly ppl_text: string;
    readonly seq_len: number;
    /** Windows of seq_len tokens every pruned model's perplexity is measured on. */
    readonly windows: number;
  };
  /** Where it ran: CPU count and model, Node, and the load average before and after. */
  readonly machine: {
    readonly cpus: number;
    readonly cpu_model: string;
    readonly node: string;
    readonly platform: string;
    readonly loadavg_start: readonly number[];
    readonly loadavg_end: readonly number[];
  };
  readonly seconds: number;
}

export type RobustnessDocument = RobustnessHead & (RobustnessReport | RobustnessSweepReport);

export const isSweep = (r: RobustnessReport | RobustnessSweepReport): r is RobustnessSweepReport =>
  'grid' in r;

/** The first seed:K family of a set of rows (the criterion's own seed-to-seed variation). */
function seedFamily(rows: Iterable<Record<string, unknown>>): string | undefined {
  for (const row of rows) for (const k of Object.keys(row)) if (k.startsWith('seed:')) return k;
  return undefined;
}

const SOLID = 'perturbed plan';
const DASHED = 'seed-to-seed';

/**
 * IoU with each criterion's reference plan against the sweep setting: one panel per perturbation,
 * one colour per criterion; dashed, the same criterion's seed-to-seed IoU at that setting; rules,
 * ± one SD over a family's runs.
 */
export function sweepChart(
  report: RobustnessSweepReport,
  criteria: readonly string[],
  source: string,
): Chart | undefined {
  if (report.grid.length === 0) return undefined;
  const seed = seedFamily(report.grid.flatMap((g) => Object.values(g.report.results)));
  const panels: string[] = [];
  for (const g of report.grid)
    for (const row of Object.values(g.report.results))
      for (const p of Object.keys(row)) if (p !== seed && !panels.includes(p)) panels.push(p);
  if (panels.length === 0 && seed) panels.push(seed);
  const labels = report.grid.map((g) => g.label);
  const rows: Record<string, unknown>[] = [];
  const point = (
    setting: string,
    criterion: string,
    panel: string,
    line: string,
    v: { iou: number; sd?: number },
    ppl: number | undefined,
  ) => ({
    setting,
    criterion,
    panel,
    line,
    iou: v.iou,
    ...(v.sd === undefined ? {} : { lo: Math.max(0, v.iou - v.sd), hi: Math.min(1, v.iou + v.sd) }),
    ppl,
  });
  for (const g of report.grid) {
    for (const [criterion, row] of Object.entries(g.report.results)) {
      const ppl = g.report.baseline[criterion]?.ppl;
      const own = seed && row[seed] ? statIou(row[seed]) : undefined;
      for (const panel of panels) {
        const st = row[panel];
        const v = st ? statIou(st) : undefined;
        if (v) rows.push(point(g.label, criterion, panel, panel === seed ? DASHED : SOLID, v, ppl));
        if (own && panel !== seed) rows.push(point(g.label, criterion, panel, DASHED, own, ppl));
      }
    }
  }
  const x = {
    field: 'setting',
    type: 'ordinal',
    sort: labels,
    title: `setting (${report.sweep.map((a) => a.key).join(', ')})`,
    axis: { labelAngle: -40, labelLimit: 240 },
  };
  const y = {
    field: 'iou',
    type: 'quantitative',
    title: 'IoU with the reference plan',
    scale: { domain: [0, 1] },
  };
  const color = { field: 'criterion', type: 'nominal', title: 'criterion', scale: colorScale(criteria) };
  const lines = [SOLID, ...(seed ? [DASHED] : [])];
  return {
    name: 'robustness_sweep',
    title: 'Plan stability vs criterion setting',
    spec: {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: {
        text: 'Plan stability vs criterion setting',
        subtitle: [
          `${source}, ratio ${report.ratio}: IoU of each plan's pruned units with the criterion's reference plan at that setting`,
          `solid: under the perturbation; dashed: between the criterion's own seeds (${seed ?? 'none'}); rules: ± 1 sd over a family`,
        ],
      },
      data: { values: rows },
      facet: { field: 'panel', type: 'nominal', title: null, sort: panels },
      columns: Math.min(2, panels.length),
      spec: {
        width: Math.max(260, 30 * labels.length),
        height: 240,
        layer: [
          {
            mark: { type: 'line', strokeWidth: 2 },
            encoding: {
              x,
              y,
              color,
              strokeDash: {
                field: 'line',
                type: 'nominal',
                title: 'IoU',
                sort: lines,
                scale: {
                  domain: lines,
                  range: [
                    [1, 0],
                    [6, 4],
                  ].slice(0, lines.length),
                },
              },
            },
          },
          {
            mark: { type: 'point', filled: true, size: 45, opacity: 1 },
            encoding: {
              x,
              y,
              color,
              tooltip: [
                { field: 'criterion', type: 'nominal' },
                { field: 'setting', type: 'ordinal' },
                { field: 'panel', type: 'nominal', title: 'perturbation' },
                { field: 'line', type: 'nominal', title: 'IoU' },
                { field: 'iou', type: 'quantitative', format: '.3f' },
                { field: 'ppl', type: 'quantitative', format: '.3f', title: 'reference PPL' },
              ],
            },
          },
          {
            transform: [{ filter: 'isValid(datum.lo)' }],
            mark: { type: 'rule', strokeWidth: 1.2 },
            encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color },
          },
        ],
      },
      config: CONFIG,
    } as TopLevelSpec,
  };
}

/**
 * Moreau-GS's soft-threshold regime in a reference run: the mean over iterations of the fraction of
 * delta's rows that flipped sign (undefined for criteria that report no such counters).
 */
export function flippedFraction(b: BaselineStat | undefined): number | undefined {
  const shrink = b?.diagnostics?.[0]?.moreau_gs_shrink as
    | { iterations?: readonly { all: { flipped: number } }[] }
    | undefined;
  const its = shrink?.iterations;
  return its?.length ? its.reduce((a, it) => a + it.all.flipped, 0) / its.length : undefined;
}

/**
 * The sweep as one table: per setting and criterion, the reference plan's perplexity, Moreau-GS's
 * mean fraction of flipped rows (when a criterion reports it) and the IoU under each variant
 * (families: mean ± SD; n/a: cannot apply, see report.json for why).
 */
export function sweepTable(report: RobustnessSweepReport): Table {
  const columns: string[] = [];
  for (const g of report.grid)
    for (const row of Object.values(g.report.results))
      for (const p of Object.keys(row)) if (!columns.includes(p)) columns.push(p);
  const flips = report.grid.some((g) =>
    Object.values(g.report.baseline).some((b) => flippedFraction(b) !== undefined),
  );
  const rows: string[][] = [];
  for (const g of report.grid) {
    for (const [c, row] of Object.entries(g.report.results)) {
      const shared = (g.applies[c] ?? []).length === 0 ? ' (every setting)' : '';
      const ppl = g.report.baseline[c]?.ppl;
      const flipped = flippedFraction(g.report.baseline[c]);
      rows.push([
        g.label,
        `${c}${shared}`,
        ppl === undefined ? '-' : ppl.toFixed(3),
        ...(flips ? [flipped === undefined ? '-' : `${(100 * flipped).toFixed(1)}%`] : []),
        ...columns.map((p) => {
          const st = row[p];
          return !st ? '-' : isNotApplicable(st) ? 'n/a' : statCells(st).iou;
        }),
      ]);
    }
  }
  return {
    header: [
      'setting',
      'criterion',
      'PPL',
      ...(flips ? ['GS rows flipped'] : []),
      ...columns.map((c) => `${c} IoU`),
    ],
    rows,
    right: [false, false, true, ...(flips ? [true] : []), ...columns.map(() => true)],
  };
}

/** The reference runs' warnings, once each, prefixed with the criterion. */
export function robustnessWarnings(doc: RobustnessReport | RobustnessSweepReport): string[] {
  const reports = isSweep(doc) ? doc.grid.map((g) => g.report) : [doc];
  const out = new Set<string>();
  for (const r of reports)
    for (const [c, b] of Object.entries(r.baseline))
      for (const w of b.warnings ?? []) out.add(w.startsWith(`${c.split(' ')[0]}:`) ? w : `${c}: ${w}`);
  return [...out];
}

/** The charts of a robustness document. */
export function robustnessCharts(doc: RobustnessDocument): Chart[] {
  const criteria = doc.settings.criteria;
  const chart = isSweep(doc)
    ? sweepChart(doc, criteria, doc.model.source)
    : robustnessBars({ [String(doc.ratio)]: doc }, criteria);
  return chart ? [chart] : [];
}

/** Why each not-applicable row is so (once per criterion and variant). */
function notApplicableLines(doc: RobustnessDocument): string[] {
  const reports = isSweep(doc) ? doc.grid.map((g) => g.report) : [doc];
  return [...new Set(reports.flatMap(notApplicableNotes))];
}

export function renderRobustnessMarkdown(doc: RobustnessDocument, charts: readonly RenderedChart[]): string {
  const s = doc.settings;
  const m = doc.machine;
  const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(' / ');
  const out = [
    `# Robustness: ${doc.model.source}`,
    '',
    `- model: ${doc.model.source} (${doc.model.format}, ${doc.model.dtype}, ${doc.model.params.toLocaleString('en-US')} parameters, ${doc.model.layers} layers)`,
    `- backend: ${doc.backend.name} (${doc.backend.device})`,
    ...(s.preset ? [`- preset: ${s.preset} (explicit flags override it)`] : []),
    `- criteria: ${s.criteria.join(', ')}; ratio ${s.ratio}; scope ${s.scope}, ${s.ranking} ranking; seed ${s.seed}${s.attn_layers ? `; attention layers ${s.attn_layers.join(':')}` : ''}${s.mlp_layers ? `; MLP layers ${s.mlp_layers.join(':')}` : ''}${s.reduction ? `; reduction ${s.reduction}` : ''}`,
    `- perturbations: ${s.perturbations.join(', ')}`,
    ...(s.sweep ? [`- sweep: ${s.sweep.map((a) => `${a.key} = ${a.values.join(', ')}`).join('; ')}`] : []),
    ...(s.calibration
      ? [
          `- calibration: ${s.calibration.source ?? 'replayed windows'}${s.calibration.samples ? `, ${s.calibration.samples} ${s.calibration.sampling === 'patches' ? 'patches' : 'windows'} x ${s.calibration.seq_len} tokens` : ''}`,
        ]
      : []),
    `- perplexity: ${s.ppl_text}, ${s.windows} windows of ${s.seq_len} tokens`,
    `- machine: ${m.cpus} x ${m.cpu_model}, ${m.platform}, Node ${m.node}; load average (1 / 5 / 15 min) ${load(m.loadavg_start)} at the start, ${load(m.loadavg_end)} at the end`,
    `- created ${doc.created} by moreau ${doc.moreau} in ${doc.seconds.toFixed(1)} s`,
    '',
    "IoU: Jaccard similarity of the pruned units with the criterion's reference plan (float32 compute, the run's seed, the original weights); IoU kept: the same for the kept units (near 1 whenever few units swap: the pruned sets are the small ones); Spearman: rank correlation of all unit scores; PPL: perplexity of the variant's pruned model. Families (gauss, seed, calib): mean ± sample SD over their runs. `seed:K` is the criterion's own seed-to-seed variation: read every other IoU against it.",
    '',
  ];
  if (isSweep(doc)) {
    out.push(
      `## Sweep (ratio ${doc.ratio}${doc.dense ? `, dense PPL ${doc.dense.ppl.toFixed(3)}` : ''})`,
      '',
      markdownTable(sweepTable(doc)),
      '',
    );
  } else {
    out.push(
      `## Ratio ${doc.ratio}${doc.dense ? ` (dense PPL ${doc.dense.ppl.toFixed(3)})` : ''}`,
      '',
      markdownTable(robustnessTable(doc)),
      '',
    );
  }
  const warnings = robustnessWarnings(doc);
  if (warnings.length) out.push(...warnings.map((w) => `- warning (reference run): ${w}`), '');
  const na = notApplicableLines(doc);
  if (na.length) out.push('Not applicable (nothing was run):', '', ...na.map((l) => `- ${l}`), '');
  if (charts.length) {
    out.push('## Chart', '');
    for (const c of charts)
      out.push(`![${c.title}](${c.name}.svg)`, '', `(${c.name}.svg, ${c.name}.png)`, '');
  }
  return out.join('\n');
}

/** Renders the chart, then writes the directory atomically (an earlier report is replaced). */
export async function writeRobustnessReport(
  dir: string,
  doc: RobustnessDocument,
  outputs: RunOutputs,
): Promise<RenderedChart[]> {
  const charts: RenderedChart[] = [];
  for (const c of robustnessCharts(doc)) charts.push(await renderChart(c));
  await outputs.dir(
    '--report',
    dir,
    async (tmp) => {
      await writeFile(join(tmp, 'report.json'), `${JSON.stringify(doc, null, 2)}\n`);
      await writeFile(join(tmp, 'report.md'), renderRobustnessMarkdown(doc, charts));
      for (const c of charts) {
        await writeFile(join(tmp, `${c.name}.svg`), c.svg);
        await writeFile(join(tmp, `${c.name}.png`), c.png);
        await writeFile(join(tmp, `${c.name}.vl.json`), `${JSON.stringify(c.spec, null, 2)}\n`);
      }
    },
    { replace: reportDirPolicy },
  );
  return charts;
}
