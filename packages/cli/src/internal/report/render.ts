/** Tables of a comparison report as aligned text / Markdown, and the self-contained HTML page. */
import type { RenderedChart } from './charts.js';
import type { CompareReport } from './types.js';

export interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Right-aligned columns (numbers). */
  readonly right: readonly boolean[];
  /** Cells to emphasise (best in their group), as "row,col". */
  readonly best?: ReadonlySet<string>;
}

const fix = (x: number | undefined | null, d: number) =>
  x === undefined || x === null ? '-' : Number.isFinite(x) ? x.toFixed(d) : String(x);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const int = (x: number) => x.toLocaleString('en-US');

/** The main table: the dense model, then every criterion at every ratio (grouped by ratio). */
export function comparisonTable(report: CompareReport): Table {
  const texts = Object.keys(report.dense.ppl);
  const tasks = Object.keys(report.dense.tasks);
  const withNorm = tasks.filter((t) => report.dense.tasks[t]!.acc_norm !== null);
  const header = [
    'criterion',
    'ratio',
    'params',
    'left',
    ...texts.map((t) => `PPL ${t}`),
    ...tasks.flatMap((t) => (withNorm.includes(t) ? [`${t} acc`, `${t} acc_norm`] : [`${t} acc`])),
    'seconds',
  ];
  const row = (
    name: string,
    ratio: string,
    params: number,
    left: number,
    ppl: Record<string, number>,
    tk: Record<string, { acc: number; acc_norm: number | null }>,
    seconds: number,
  ) => [
    name,
    ratio,
    int(params),
    pct(left),
    ...texts.map((t) => fix(ppl[t], 3)),
    ...tasks.flatMap((t) =>
      withNorm.includes(t) ? [fix(tk[t]?.acc, 4), fix(tk[t]?.acc_norm, 4)] : [fix(tk[t]?.acc, 4)],
    ),
    seconds.toFixed(1),
  ];
  const d = report.dense;
  const runs = [...report.runs].sort(
    (a, b) =>
      a.ratio - b.ratio ||
      report.settings.criteria.indexOf(a.criterion) - report.settings.criteria.indexOf(b.criterion),
  );
  // Each pruned model's row, then (with --tune-data) the same model after LoRA tuning.
  const rows = [row('dense', '0', d.params, 1, d.ppl, d.tasks, d.seconds)];
  const groups = new Map<string, number[]>(); // rows competing for "best": same ratio, tuned or not
  const member = (key: string) => {
    const list = groups.get(key) ?? [];
    list.push(rows.length - 1);
    groups.set(key, list);
  };
  for (const r of runs) {
    rows.push(row(r.criterion, String(r.ratio), r.params_after, r.params_left, r.ppl, r.tasks, r.seconds));
    member(`${r.ratio}:pruned`);
    if (r.tuned) {
      const t = r.tuned;
      rows.push(
        row(
          `${r.criterion} +LoRA`,
          String(r.ratio),
          r.params_after,
          r.params_left,
          t.ppl,
          t.tasks,
          t.seconds,
        ),
      );
      member(`${r.ratio}:tuned`);
    }
  }
  // Best per ratio (among the pruned rows, and among the tuned ones): lowest perplexity, highest accuracy.
  const best = new Set<string>();
  for (const idx of groups.values()) {
    if (idx.length < 2) continue;
    header.forEach((h, col) => {
      const lower = h.startsWith('PPL ');
      const higher = / acc(_norm)?$/.test(h);
      if (!lower && !higher) return;
      const values = idx.map((i) => Number(rows[i]![col]));
      if (values.some((v) => !Number.isFinite(v))) return;
      const target = lower ? Math.min(...values) : Math.max(...values);
      idx.forEach((i, k) => {
        if (values[k] === target) best.add(`${i},${col}`);
      });
    });
  }
  return { header, rows, right: header.map((_, i) => i > 0), best };
}

/** One table per ratio: IoU / Spearman / perplexity of each criterion under each perturbation. */
export function robustnessTables(report: CompareReport): { ratio: string; dense?: number; table: Table }[] {
  const out: { ratio: string; dense?: number; table: Table }[] = [];
  for (const [ratio, r] of Object.entries(report.robustness ?? {})) {
    const rows: string[][] = [];
    for (const [c, byPerturbation] of Object.entries(r.results)) {
      rows.push([c, 'none (reference)', '1', '1', fix(r.baseline[c]?.ppl, 3)]);
      for (const [p, s] of Object.entries(byPerturbation)) {
        if ('iou' in s) rows.push([c, p, fix(s.iou, 3), fix(s.spearman, 3), fix(s.ppl, 3)]);
        else
          rows.push([
            c,
            p,
            `${fix(s.iou_mean, 3)} ± ${fix(s.iou_sd, 3)}`,
            fix(s.spearman_mean, 3),
            `${fix(s.ppl_mean, 3)} ± ${fix(s.ppl_sd, 3)}`,
          ]);
      }
    }
    out.push({
      ratio,
      ...(r.dense ? { dense: r.dense.ppl } : {}),
      table: {
        header: ['criterion', 'perturbation', 'IoU', 'Spearman', 'PPL'],
        rows,
        right: [false, false, true, true, true],
      },
    });
  }
  return out;
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
    `criteria: ${s.criteria.join(', ')}; ratios: ${s.ratios.join(', ')}; ${s.scope} ranking; seed ${s.seed}` +
      `${s.attn_layers ? `; attention layers ${s.attn_layers.join(':')}` : ''}${s.mlp_layers ? `; MLP layers ${s.mlp_layers.join(':')}` : ''}`,
    ...(s.calibration
      ? [
          `calibration: ${s.calibration.source ?? 'replayed windows'}${s.calibration.samples ? `, ${s.calibration.samples} windows x ${s.calibration.seq_len} tokens` : ''}, ${s.calibration.iterations} iteration(s)`,
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
  for (const r of robustnessTables(report)) {
    parts.push(
      `robustness at ratio ${r.ratio}${r.dense !== undefined ? ` (dense PPL ${r.dense.toFixed(3)})` : ''}\n${markdownTable(r.table)}`,
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
  const rob = robustnessTables(report);
  if (rob.length) {
    out.push(
      '## Robustness',
      '',
      'For each criterion, a plan from perturbed weights compared with the plan from the original weights: IoU of the pruned units, Spearman correlation of the unit scores, perplexity of the pruned (perturbed) model.',
      '',
    );
    for (const r of rob) {
      out.push(
        `### Ratio ${r.ratio}${r.dense !== undefined ? ` (dense PPL ${r.dense.toFixed(3)})` : ''}`,
        '',
        markdownTable(r.table),
        '',
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
        `<tr${r === 0 && row[0] === 'dense' ? ' class="dense"' : row[0]!.endsWith(' +LoRA') ? ' class="tuned"' : ''}>${row
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
  rob.length
    ? `<h2>Robustness</h2>
<p class="note">For each criterion, a plan from perturbed weights compared with the plan from the original weights: IoU of the pruned units, Spearman correlation of the unit scores, perplexity of the pruned (perturbed) model.</p>
${robustnessChart.map(figure).join('\n')}
<div class="row">
${rob.map((r) => `<div><h3>Ratio ${esc(r.ratio)}${r.dense !== undefined ? ` (dense PPL ${r.dense.toFixed(3)})` : ''}</h3>\n${htmlTable(r.table)}</div>`).join('\n')}
</div>`
    : ''
}
</body>
</html>
`;
}
