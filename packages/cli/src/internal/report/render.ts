/** Tables of a comparison report as aligned text / Markdown, and the self-contained HTML page. */
import { type RobustnessReport, statCells, statIou } from '@moreau/eval';
import type { RenderedChart } from './charts.js';
import { distinguishingDecimals } from './scales.js';
import { type CompareReport, type CompareRun, robustnessLabel } from './types.js';

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Right-aligned columns (numbers). */
  readonly right: readonly boolean[];
  /** Cells to emphasise (best in their group), as "row,col". */
  readonly best?: ReadonlySet<string>;
  /** The first row is the dense model. */
  readonly denseFirst?: boolean;
  /** Rows of models after LoRA tuning (compare --tune-data). */
  readonly tunedRows?: ReadonlySet<number>;
}

const fix = (x: number | undefined | null, d: number) =>
  x === undefined || x === null ? '-' : Number.isFinite(x) ? x.toFixed(d) : String(x);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const int = (x: number) => x.toLocaleString('en-US');

/**
 * The main table: the dense model, then every criterion at every ratio (grouped by scope, then
 * ratio; a scope column when there are several). `params` counts non-zeros.
 */
export function comparisonTable(report: CompareReport): Table {
  const texts = Object.keys(report.dense.ppl);
  const tasks = Object.keys(report.dense.tasks);
  const withNorm = tasks.filter((t) => report.dense.tasks[t]!.acc_norm !== null);
  const scopes = report.settings.scopes;
  const several = scopes.length > 1;
  const paper = (report.dense.paper_tasks ?? 0) > 0;
  const s = report.settings;
  const latency = s.latency ? `ms ${s.latency.batch}x${s.latency.seq_len}` : undefined;
  const header = [
    ...(several ? ['scope'] : []),
    'criterion',
    'ratio',
    'params',
    'left',
    `GMACs ${s.macs_seq_len} tok`,
    ...(latency ? [latency] : []),
    ...texts.map((t) => `PPL ${t}`),
    ...tasks.flatMap((t) => (withNorm.includes(t) ? [`${t} acc`, `${t} acc_norm`] : [`${t} acc`])),
    ...(paper ? [PAPER_AVG] : []),
    'seconds',
  ];
  const row = (
    scope: string,
    name: string,
    ratio: string,
    params: number,
    left: number,
    r: Pick<CompareRun, 'ppl' | 'tasks' | 'paper_average' | 'macs' | 'latency'>,
    seconds: number,
  ) => [
    ...(several ? [scope] : []),
    name,
    ratio,
    int(params),
    pct(left),
    fix(r.macs ? r.macs.total / 1e9 : undefined, r.macs && r.macs.total < 1e8 ? 4 : 2),
    ...(latency ? [fix(r.latency ? 1000 * r.latency.seconds : undefined, 2)] : []),
    ...texts.map((t) => fix(r.ppl[t], 3)),
    ...tasks.flatMap((t) =>
      withNorm.includes(t)
        ? [fix(r.tasks[t]?.acc, 4), fix(r.tasks[t]?.acc_norm, 4)]
        : [fix(r.tasks[t]?.acc, 4)],
    ),
    ...(paper ? [fix(r.paper_average, 4)] : []),
    seconds.toFixed(1),
  ];
  const d = report.dense;
  const runs = [...report.runs].sort(
    (a, b) =>
      scopes.indexOf(a.scope) - scopes.indexOf(b.scope) ||
      a.ratio - b.ratio ||
      report.settings.criteria.indexOf(a.criterion) - report.settings.criteria.indexOf(b.criterion),
  );
  // Each pruned model's row, then (with --tune-data) the same model after LoRA tuning.
  const rows = [row('', 'dense', '0', d.params, 1, d, d.seconds)];
  const tunedRows = new Set<number>();
  // Rows competing for "best": same scope and ratio, and all pruned or all tuned.
  const groups = new Map<string, number[]>();
  const member = (key: string) => groups.set(key, [...(groups.get(key) ?? []), rows.length - 1]);
  for (const r of runs) {
    rows.push(row(r.scope, r.criterion, String(r.ratio), r.nonzero_after, r.params_left, r, r.seconds));
    member(`${r.scope} ${r.ratio} pruned`);
    if (r.tuned) {
      const t = r.tuned;
      const tuned = { ...r, ppl: t.ppl, tasks: t.tasks, paper_average: t.paper_average };
      rows.push(
        row(
          r.scope,
          `${r.criterion} +LoRA`,
          String(r.ratio),
          r.nonzero_after,
          r.params_left,
          tuned,
          t.seconds,
        ),
      );
      tunedRows.add(rows.length - 1);
      member(`${r.scope} ${r.ratio} tuned`);
    }
  }
  // Best per scope and ratio (pruned and tuned rows apart): lowest perplexity, highest accuracy.
  const best = new Set<string>();
  for (const idx of groups.values()) {
    if (idx.length < 2) continue;
    header.forEach((h, col) => {
      const lower = h.startsWith('PPL ');
      const higher = / acc(_norm)?$/.test(h) || h === PAPER_AVG;
      if (!lower && !higher) return;
      const values = idx.map((i) => Number(rows[i]![col]));
      if (values.some((v) => !Number.isFinite(v))) return;
      const target = lower ? Math.min(...values) : Math.max(...values);
      idx.forEach((i, k) => {
        if (values[k] === target) best.add(`${i},${col}`);
      });
    });
  }
  return {
    header,
    rows,
    right: header.map((h) => !['scope', 'criterion'].includes(h)),
    best,
    denseFirst: true,
    ...(tunedRows.size ? { tunedRows } : {}),
  };
}

const PAPER_AVG = 'paper avg';

/** A run's criterion, with its scope when the report has several (each scope scores on its own). */
const withScope = (report: CompareReport, r: CompareRun) =>
  report.settings.scopes.length > 1 ? `${r.criterion} (${r.scope})` : r.criterion;

interface ShrinkIteration {
  readonly iteration: number;
  readonly all: {
    readonly rows: number;
    readonly zeroed: number;
    readonly shrunk: number;
    readonly flipped: number;
  };
}

/**
 * Moreau-GS's soft-threshold regime (its diagnostics): per criterion that reports it, per
 * iteration, the fraction of delta's rows zeroed / shrunk / flipped (the criterion scores once for
 * every ratio, so one table per criterion).
 */
export function shrinkTable(report: CompareReport): Table | undefined {
  const rows: string[][] = [];
  const seen = new Set<string>();
  for (const r of report.runs) {
    if (seen.has(`${r.scope} ${r.criterion}`)) continue;
    seen.add(`${r.scope} ${r.criterion}`);
    (r.diagnostics ?? []).forEach((d, step) => {
      const shrink = d.moreau_gs_shrink as { iterations?: readonly ShrinkIteration[] } | undefined;
      for (const it of shrink?.iterations ?? []) {
        rows.push([
          withScope(report, r),
          (r.diagnostics.length > 1 ? `${step + 1}.` : '') + String(it.iteration),
          int(it.all.rows),
          pct(it.all.zeroed),
          pct(it.all.shrunk),
          pct(it.all.flipped),
        ]);
      }
    });
  }
  if (!rows.length) return undefined;
  return {
    header: ['criterion', 'iteration', 'rows', 'zeroed', 'shrunk', 'flipped'],
    rows,
    right: [false, true, true, true, true, true],
  };
}

/** A criterion's warning, prefixed with its name unless it already starts with it. */
export const named = (criterion: string, warning: string) =>
  warning.startsWith(`${criterion}:`) ? warning : `${criterion}: ${warning}`;

/** Every criterion's warnings, once per criterion. */
function warningLines(report: CompareReport): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const r of report.runs) {
    if (seen.has(`${r.scope} ${r.criterion}`)) continue;
    seen.add(`${r.scope} ${r.criterion}`);
    for (const w of r.warnings ?? []) out.push(named(withScope(report, r), w));
  }
  return out;
}

const SHRINK_NOTE =
  "Moreau-GS soft-thresholds each row of delta with the released code's rule: with r the row's RMS after its step, r <= soft*lr zeroes it, r > soft shrinks it, and soft*lr < r < soft gives a negative coefficient that flips its sign. Most rows flipping means delta alternates instead of converging.";

/**
 * Which windows the robustness perplexities use, against the results table's: the robustness analysis
 * evaluates many pruned models, so it measures the first `robustness_windows` windows of the first
 * text, where the results table measures all of them (or --limit).
 */
export function robustnessWindows(
  report: CompareReport,
): { text: string; used: number; of: number; resultsPpl: number } | undefined {
  const text = Object.keys(report.settings.ppl_texts)[0];
  const limit = report.settings.robustness_windows;
  if (text === undefined || limit === undefined || limit === null) return undefined;
  const tokens = report.dense.tokens[text];
  const ppl = report.dense.ppl[text];
  if (tokens === undefined || ppl === undefined) return undefined;
  const of = Math.round(tokens / (report.settings.seq_len - 1));
  return { text, used: Math.min(limit, of), of, resultsPpl: ppl };
}

/**
 * "dense PPL 105.499 on the first 32 of 660 windows of heldout; the results table uses all 660 (dense
 * PPL 108.638)": which evaluation the robustness perplexities are, next to the results table's.
 */
export function robustnessDenseLabel(report: CompareReport, dense: number | undefined): string {
  const w = robustnessWindows(report);
  const ppl = dense === undefined ? undefined : `dense PPL ${dense.toFixed(3)}`;
  if (!w) return ppl ?? '';
  if (w.used >= w.of)
    return `${ppl ? `${ppl} on ` : ''}all ${w.of} windows of ${w.text}, as in the results table`;
  return (
    `${ppl ? `${ppl} on ` : 'perplexity on '}the first ${w.used} of ${w.of} windows of ${w.text}; ` +
    `the results table uses all ${w.of} (dense PPL ${w.resultsPpl.toFixed(3)})`
  );
}

/**
 * One table per ratio: IoU / Spearman / perplexity of each criterion under each perturbation (the
 * criterion's own seed-to-seed variation first; variants that cannot apply say why).
 */
export function robustnessTables(report: CompareReport): { ratio: string; dense?: number; table: Table }[] {
  const w = robustnessWindows(report);
  const pplHeader = w && w.used < w.of ? `PPL (${w.used} windows)` : 'PPL';
  return Object.entries(report.robustness ?? {}).map(([ratio, r]) => ({
    ratio,
    ...(r.dense ? { dense: r.dense.ppl } : {}),
    table: robustnessTable(r, pplHeader),
  }));
}

/** Why each not-applicable row of an analysis is so: 'criterion, variant: reason'. */
export function notApplicableNotes(r: RobustnessReport): string[] {
  const out: string[] = [];
  for (const [c, row] of Object.entries(r.results))
    for (const [p, s] of Object.entries(row)) {
      const note = statCells(s).note;
      if (note) out.push(`${c}, ${p}: ${note}`);
    }
  return out;
}

/**
 * The rows of one analysis: each criterion's reference, then each variant (n/a: see notApplicableNotes);
 * IoU and Spearman with as many decimals as it takes to tell this table's values apart.
 */
export function robustnessTable(r: RobustnessReport, pplHeader = 'PPL'): Table {
  const stats = Object.values(r.results).flatMap((row) => Object.values(row));
  const ious = stats.flatMap((s) => {
    const v = statIou(s);
    const kept = 'iou_kept' in s ? s.iou_kept : 'iou_kept_mean' in s ? s.iou_kept_mean : undefined;
    return [v?.iou, kept].filter((x): x is number => x !== undefined);
  });
  const rhos = stats.flatMap((s) =>
    'spearman' in s ? [s.spearman] : 'spearman_mean' in s ? [s.spearman_mean] : [],
  );
  const decimals = { iou: distinguishingDecimals(ious), spearman: distinguishingDecimals(rhos) };
  const rows: string[][] = [];
  for (const [c, byPerturbation] of Object.entries(r.results)) {
    rows.push([c, 'none (reference)', '1', '1', '1', fix(r.baseline[c]?.ppl, 3)]);
    for (const [p, s] of Object.entries(byPerturbation)) {
      const cell = statCells(s, decimals);
      rows.push([c, p, cell.iou, cell.iouKept, cell.spearman, cell.ppl]);
    }
  }
  return {
    header: ['criterion', 'perturbation', 'IoU', 'IoU kept', 'Spearman', pplHeader],
    rows,
    right: [false, false, true, true, true, true],
  };
}

/** A Markdown table with padded columns (reads as plain text too). */
export function markdownTable(t: Table, emphasise = false): string {
  const cell = (r: number, c: number, s: string) => (emphasise && t.best?.has(`${r},${c}`) ? `**${s}**` : s);
  const rows = t.rows.map((row, r) => row.map((s, c) => cell(r, c, s)));
  const widths = t.header.map((h, c) => Math.max(h.length, 3, ...rows.map((row) => row[c]!.length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((s, c) => (t.right[c] ? s.padStart(widths[c]!) : s.padEnd(widths[c]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (t.right[c] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(t.header), rule, ...rows.map(line)].join('\n');
}

function settingsLines(report: CompareReport): string[] {
  const s = report.settings;
  const opts = Object.entries(s.options)
    .filter(([, o]) => Object.keys(o).length > 0)
    .map(
      ([c, o]) =>
        `${c} {${Object.entries(o)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}}`,
    );
  return [
    `model: ${report.model.source} (${report.model.format}, ${int(report.model.params)} parameters, ${report.model.layers} layers, ${report.model.heads} heads / ${report.model.kv_heads} KV heads, MLP ${report.model.intermediate_size})`,
    `backend: ${report.backend.name} (${report.backend.device})`,
    ...(s.preset
      ? [
          `preset: ${s.preset} (${s.preset_source?.repository}@${s.preset_source?.commit}: ${s.preset_source?.files.join(', ')}); explicit flags override it`,
        ]
      : []),
    `criteria: ${s.criteria.join(', ')}; ratios: ${s.ratios.join(', ')}; ${s.scopes.length > 1 ? 'scopes' : 'scope'} ${s.scopes.join(', ')}; ${s.ranking} ranking (block)${s.keep_low_ratio ? `; keep-low ratio ${s.keep_low_ratio}` : ''}; seed ${s.seed}` +
      `${s.attn_layers ? `; attention layers ${s.attn_layers.join(':')}` : ''}${s.mlp_layers ? `; MLP layers ${s.mlp_layers.join(':')}` : ''}`,
    ...(s.calibration
      ? [
          `calibration: ${s.calibration.source ?? 'replayed windows'}${s.calibration.samples ? `, ${s.calibration.samples} ${s.calibration.sampling === 'patches' ? 'patches' : 'windows'} x ${s.calibration.seq_len} tokens` : ''}, ${s.calibration.iterations} iteration(s)`,
        ]
      : []),
    `perplexity: ${
      Object.entries(s.ppl_texts)
        .map(([k, v]) => `${k} = ${v}`)
        .join(', ') || 'none'
    }; windows of ${s.seq_len} tokens${s.limit ? `, at most ${s.limit} per text` : ''}`,
    ...(Object.keys(s.tasks).length
      ? [
          `zero-shot: ${Object.entries(s.tasks)
            .map(([k, v]) => `${k} = ${v}`)
            .join(', ')}${s.limit ? ` (at most ${s.limit} items each)` : ''}`,
        ]
      : []),
    ...(opts.length ? [`options: ${opts.join('; ')}`] : []),
    ...(s.perturbations ? [`robustness perturbations: ${s.perturbations.join(', ')}`] : []),
    ...(s.compute && s.compute.dtype !== 'float32'
      ? [
          `compute: ${s.compute.dtype} (${s.compute.precision}) for scoring and evaluation${s.perturbations ? '; robustness against its float32 reference' : ''}`,
        ]
      : []),
    `MACs: one forward pass of ${s.macs_seq_len} tokens, counted as ${s.macs_counted}`,
    ...(s.latency
      ? [
          `latency: median of ${s.latency.repeats} forward passes of ${s.latency.batch} x ${s.latency.seq_len} tokens after ${s.latency.warmup} warm-up, on the backend above`,
        ]
      : []),
    ...((report.dense.paper_tasks ?? 0) > 0
      ? [
          `paper avg: the mean over the evaluated tasks of the metric the papers' tables use (acc for boolq, winogrande, arc_easy; acc_norm for piqa, hellaswag, arc_challenge, openbookqa); zero-shot protocol ${s.zeroshot_protocol}`,
        ]
      : []),
    ...(s.tuning
      ? [
          `LoRA recovery (+LoRA rows): ${s.tuning.data} (${s.tuning.kind}, ${s.tuning.train_examples} training examples), r ${s.tuning.lora_r}, alpha ${s.tuning.lora_alpha}, dropout ${s.tuning.lora_dropout} on ${s.tuning.lora_targets.join(',')}; ${s.tuning.max_steps !== null ? `${s.tuning.max_steps} steps` : `${s.tuning.epochs} epochs`}, lr ${s.tuning.lr}, batch ${s.tuning.batch_size} (micro ${s.tuning.micro_batch_size}), cutoff ${s.tuning.cutoff_len}, warmup ${s.tuning.warmup_steps}, loss on ${s.tuning.train_on_inputs ? 'prompt and response' : 'the response'}`,
        ]
      : []),
  ];
}

/** The plain-text summary printed on stdout. */
export function textSummary(report: CompareReport): string {
  const parts = [markdownTable(comparisonTable(report))];
  const shrink = shrinkTable(report);
  if (shrink)
    parts.push(`moreau-gs soft-threshold regime (fraction of delta rows)\n${markdownTable(shrink)}`);
  for (const r of robustnessTables(report)) {
    const label = robustnessDenseLabel(report, r.dense);
    parts.push(
      `robustness at ${robustnessLabel(r.ratio)}${label ? `: ${label}` : ''}\n${markdownTable(r.table)}`,
    );
  }
  return `${parts.join('\n\n')}\n`;
}

export function renderMarkdown(report: CompareReport, charts: readonly RenderedChart[]): string {
  const out = [
    `# Pruning comparison: ${report.model.source}`,
    '',
    ...settingsLines(report).map((l) => `- ${l}`),
    `- created ${report.created} by moreau ${report.moreau} in ${report.seconds.toFixed(1)} s`,
    '',
    '## Results',
    '',
    'Perplexity: lower is better; accuracy: higher is better; the best value at each ratio is in bold. `left` is the fraction of parameters kept.',
    '',
    markdownTable(comparisonTable(report), true),
    '',
  ];
  const shrink = shrinkTable(report);
  const warnings = warningLines(report);
  if (shrink || warnings.length) {
    out.push('## Criterion diagnostics', '');
    if (shrink) out.push(SHRINK_NOTE, '', markdownTable(shrink), '');
    for (const w of warnings) out.push(`- warning: ${w}`);
    if (warnings.length) out.push('');
  }
  const rob = robustnessTables(report);
  if (rob.length) {
    out.push(
      '## Robustness',
      '',
      "For each criterion, each variant's plan compared with the plan from the original weights (float32 compute, the run's seed): IoU of the pruned units and of the kept units, Spearman correlation of the unit scores, perplexity of the variant's pruned model. seed:K is the criterion's own seed-to-seed variation.",
      '',
    );
    const label = robustnessDenseLabel(report, rob[0]!.dense);
    if (label) out.push(`Perplexities in these tables: ${label}.`, '');
    for (const r of rob) {
      const notes = notApplicableNotes(report.robustness![r.ratio]!);
      out.push(
        `### ${capital(robustnessLabel(r.ratio))}`,
        '',
        markdownTable(r.table),
        '',
        ...(notes.length ? ['n/a (nothing was run):', '', ...notes.map((n) => `- ${n}`), ''] : []),
      );
    }
  }
  if (charts.length) {
    out.push('## Charts', '');
    for (const c of charts)
      out.push(`![${c.title}](${c.name}.svg)`, '', `(${c.name}.svg, ${c.name}.png)`, '');
  }
  return `${out.join('\n')}`;
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function htmlTable(t: Table): string {
  const head = `<tr>${t.header.map((h, c) => `<th class="${t.right[c] ? 'num' : ''}">${esc(h)}</th>`).join('')}</tr>`;
  const body = t.rows
    .map(
      (row, r) =>
        `<tr${r === 0 && t.denseFirst ? ' class="dense"' : t.tunedRows?.has(r) ? ' class="tuned"' : ''}>${row
          .map((s, c) => {
            const cls = [t.right[c] ? 'num' : '', t.best?.has(`${r},${c}`) ? 'best' : '']
              .filter(Boolean)
              .join(' ');
            return `<td${cls ? ` class="${cls}"` : ''}>${esc(s)}</td>`;
          })
          .join('')}</tr>`,
    )
    .join('\n');
  return `<table>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/** One self-contained page: tables plus every chart inlined as an SVG data URI (no external assets). */
export function renderHtml(report: CompareReport, charts: readonly RenderedChart[]): string {
  const rob = robustnessTables(report);
  const shrink = shrinkTable(report);
  const warnings = warningLines(report);
  const figure = (c: RenderedChart) =>
    `<figure id="${esc(c.name)}"><img alt="${esc(c.title)}" src="data:image/svg+xml;base64,${Buffer.from(c.svg).toString('base64')}"><figcaption>${esc(c.title)} — <code>${esc(c.name)}.svg</code>, <code>${esc(c.name)}.png</code></figcaption></figure>`;
  const robustnessChart = charts.filter((c) => c.name === 'robustness_iou');
  const otherCharts = charts.filter((c) => c.name !== 'robustness_iou');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pruning comparison: ${esc(report.model.source)}</title>
<style>
  body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #222; max-width: 1400px; }
  h1 { font-size: 22px; margin: 0 0 8px; }
  h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
  h3 { font-size: 15px; margin: 4px 0 6px; }
  ul.settings { font-size: 13px; color: #444; padding-left: 18px; margin: 6px 0; }
  p.note { font-size: 13px; color: #555; margin: 4px 0 8px; }
  table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
  th, td { border: 1px solid #d0d0d0; padding: 4px 9px; }
  th { background: #f2f4f7; text-align: left; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.dense td { background: #f7f7f7; font-style: italic; }
  tr.tuned td:first-child { color: #35618f; }
  td.best { font-weight: bold; background: #e8f5e9; }
  .row { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
  figure { margin: 12px 0; }
  figure img { max-width: 100%; border: 1px solid #e4e4e4; }
  figcaption { font-size: 12px; color: #666; }
</style>
</head>
<body>
<h1>Pruning comparison: ${esc(report.model.source)}</h1>
<ul class="settings">
${settingsLines(report)
  .map((l) => `<li>${esc(l)}</li>`)
  .join('\n')}
<li>created ${esc(report.created)} by moreau ${esc(report.moreau)} in ${report.seconds.toFixed(1)} s</li>
</ul>
<h2>Results</h2>
<p class="note">Perplexity: lower is better; accuracy: higher is better; the best value at each ratio is highlighted. <em>left</em> is the fraction of parameters kept.</p>
${htmlTable(comparisonTable(report))}
${otherCharts.map(figure).join('\n')}
${
  shrink || warnings.length
    ? `<h2>Criterion diagnostics</h2>
${shrink ? `<p class="note">${esc(SHRINK_NOTE)}</p>\n${htmlTable(shrink)}` : ''}
${warnings.map((w) => `<p class="note"><strong>warning:</strong> ${esc(w)}</p>`).join('\n')}`
    : ''
}
${
  rob.length
    ? `<h2>Robustness</h2>
<p class="note">For each criterion, each variant's plan compared with the plan from the original weights (float32 compute, the run's seed): IoU of the pruned units and of the kept units, Spearman correlation of the unit scores, perplexity of the variant's pruned model. seed:K is the criterion's own seed-to-seed variation.</p>
${robustnessChart.map(figure).join('\n')}
${rob[0] && robustnessDenseLabel(report, rob[0].dense) ? `<p class="note">Perplexities in these tables: ${esc(robustnessDenseLabel(report, rob[0].dense))}.</p>` : ''}
<div class="row">
${rob.map((r) => `<div><h3>${esc(capital(robustnessLabel(r.ratio)))}</h3>\n${htmlTable(r.table)}</div>`).join('\n')}
</div>`
    : ''
}
</body>
</html>
`;
}
