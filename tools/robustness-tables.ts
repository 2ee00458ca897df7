/**
 * The tables of docs/robustness.md from the study's --json documents (tools/robustness-study.sh):
 * for one analysis, IoU of pruned units / IoU of kept units / Spearman / perplexity per criterion (columns: the variants, the
 * criterion's own seed-to-seed variation first); for a sweep, per setting and criterion the
 * reference perplexity, Moreau-GS's flipped-row fraction and the IoU of each variant.
 *
 *   npx tsx tools/robustness-tables.ts STUDY/s260k.json [STUDY/s260k-sweep.json ...]
 */
import { readFileSync } from 'node:fs';
import {
  isFamilyStat,
  isNotApplicable,
  isPairStat,
  type RobustnessReport,
  type RobustnessStat,
  type RobustnessSweepReport,
} from '@moreau/eval';

type Doc = (RobustnessReport | RobustnessSweepReport) & {
  model: { source: string };
  settings: { criteria: string[] };
  machine: { cpus: number; cpu_model: string; loadavg_start: number[]; loadavg_end: number[] };
  seconds: number;
};

/** Column titles for the variants, in the order the study lists them. */
const TITLE: Record<string, string> = {
  'compute:float16': 'fp16 compute',
  'compute:bfloat16': 'bf16 compute',
  'compute:float16 vs compute:bfloat16': 'fp16 vs bf16 compute',
  fp16: 'fp16 weight cast',
  bf16: 'bf16 weight cast',
};
const title = (p: string) =>
  TITLE[p] ??
  (p.startsWith('seed:')
    ? `own seeds (${p})`
    : p.startsWith('calib:')
      ? `other windows (${p})`
      : p.startsWith('gauss:')
        ? `${Number(p.slice(6).split('x')[0]) * 100} % noise (${p})`
        : p);

const f = (x: number, d = 3) => x.toFixed(d);

function cell(s: RobustnessStat | undefined, what: 'iou' | 'iou_kept' | 'spearman' | 'ppl'): string {
  if (!s) return '';
  if (isNotApplicable(s)) return s.reason.startsWith('deterministic') ? 'det.' : 'n/a';
  if (isFamilyStat(s)) {
    if (what === 'iou') return `${f(s.iou_mean)} ± ${f(s.iou_sd)}`;
    if (what === 'iou_kept')
      return s.iou_kept_mean === undefined ? '' : `${f(s.iou_kept_mean)} ± ${f(s.iou_kept_sd ?? 0)}`;
    if (what === 'spearman') return f(s.spearman_mean);
    return `${f(s.ppl_mean, 2)} ± ${f(s.ppl_sd, 2)}`;
  }
  if (what === 'ppl') return isPairStat(s) ? '' : f(s.ppl, 2);
  if (what === 'iou_kept') return s.iou_kept === undefined ? '' : f(s.iou_kept);
  return f(s[what]);
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
    .concat(rows.map((r) => `| ${r.join(' | ')} |`))
    .join('\n');
}

function single(doc: Doc & RobustnessReport): string {
  const variants: string[] = [];
  for (const row of Object.values(doc.results))
    for (const p of Object.keys(row)) if (!variants.includes(p)) variants.push(p);
  const out: string[] = [];
  for (const what of ['iou', 'iou_kept', 'spearman', 'ppl'] as const) {
    const cols = what === 'ppl' ? variants.filter((p) => !p.includes(' vs ')) : variants;
    const header = ['criterion', ...(what === 'ppl' ? ['reference'] : []), ...cols.map(title)];
    const rows = Object.entries(doc.results).map(([c, row]) => [
      c,
      ...(what === 'ppl' ? [f(doc.baseline[c]!.ppl, 2)] : []),
      ...cols.map((p) => cell(row[p], what)),
    ]);
    const name = {
      iou: 'IoU of pruned units',
      iou_kept: 'IoU of kept units',
      spearman: 'Spearman',
      ppl: 'Perplexity',
    };
    out.push(`${name[what]}\n\n${table(header, rows)}`);
  }
  return out.join('\n\n');
}

function flipped(b: RobustnessReport['baseline'][string] | undefined): string {
  const shrink = b?.diagnostics?.[0]?.moreau_gs_shrink as
    | { iterations?: { all: { flipped: number } }[] }
    | undefined;
  const its = shrink?.iterations;
  return its?.length ? `${f((100 * its.reduce((a, it) => a + it.all.flipped, 0)) / its.length, 1)} %` : '';
}

function sweep(doc: Doc & RobustnessSweepReport): string {
  const variants: string[] = [];
  for (const g of doc.grid)
    for (const row of Object.values(g.report.results))
      for (const p of Object.keys(row)) if (!variants.includes(p)) variants.push(p);
  const header = [
    'setting',
    'criterion',
    'PPL',
    'GS rows flipped',
    ...variants.map((p) => `IoU ${title(p)}`),
  ];
  const rows: string[][] = [];
  for (const g of doc.grid)
    for (const [c, row] of Object.entries(g.report.results)) {
      if (g.applies[c]?.length === 0 && g !== doc.grid[0]) continue; // the same analysis at every setting
      rows.push([
        g.applies[c]?.length === 0 ? 'every setting' : g.label,
        c,
        f(g.report.baseline[c]!.ppl, 2),
        flipped(g.report.baseline[c]),
        ...variants.map((p) => cell(row[p], 'iou')),
      ]);
    }
  return table(header, rows);
}

for (const file of process.argv.slice(2)) {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as Doc;
  const m = doc.machine;
  console.log(
    `<!-- ${file}: ${doc.model.source}, ${f(doc.seconds / 60, 1)} min on ${m.cpus} x ${m.cpu_model}, load ${m.loadavg_start.join(' ')} -> ${m.loadavg_end.join(' ')} -->\n`,
  );
  console.log(
    'grid' in doc ? sweep(doc as Doc & RobustnessSweepReport) : single(doc as Doc & RobustnessReport),
  );
  console.log();
}
