/** Writes a comparison report directory atomically: report.json, report.md, report.html, charts, plans. */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunOutputs } from '../output.js';
import { type RenderedChart, renderChart, reportCharts } from './charts.js';
import { renderHtml, renderMarkdown } from './render.js';
import type { CompareReport } from './types.js';

/** Names a report directory holds: a directory holding only these (and report.json) is an earlier report. */
const REPORT_FILE = /^(report\.(json|md|html)|[a-z0-9_]+\.(svg|png|vl\.json))$/;

/**
 * May --report be replaced? An earlier report (report.json, and only files a report holds) yes;
 * anything else is refused with the reason, so files moreau did not write are never deleted.
 */
export async function reportDirPolicy(dir: string): Promise<true | string> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  if (!entries.includes('report.json'))
    return 'exists, is not empty and holds no report.json: choose a new directory (an earlier report is replaced)';
  const foreign = entries.filter((e) => e !== 'plans' && !REPORT_FILE.test(e));
  const plans = entries.includes('plans')
    ? await readdir(join(dir, 'plans')).catch(() => ['(unreadable)'])
    : [];
  foreign.push(...plans.filter((p) => !/^[a-z0-9-]+-[0-9.]+\.json$/.test(p)).map((p) => `plans/${p}`));
  if (foreign.length) {
    return `holds files a report does not (${foreign
      .slice(0, 3)
      .map((f) => `'${f}'`)
      .join(', ')}${foreign.length > 3 ? ', ...' : ''}): move them or choose a new directory`;
  }
  return true;
}

/** Fails early (before hours of pruning) when --report names something we must not replace. */
export async function checkReportDir(dir: string, outputs: RunOutputs): Promise<void> {
  await outputs.checkDir('--report', dir, { replace: reportDirPolicy });
}

/** Renders the charts, then stages the report directory in the run's outputs. */
export async function writeReport(
  dir: string,
  report: Omit<CompareReport, 'charts'>,
  plans: ReadonlyMap<string, string>,
  outputs: RunOutputs,
): Promise<{ report: CompareReport; charts: RenderedChart[] }> {
  const draft: CompareReport = { ...report, charts: [] };
  const charts: RenderedChart[] = [];
  for (const c of reportCharts(draft)) charts.push(await renderChart(c));
  const full: CompareReport = {
    ...report,
    charts: charts.flatMap((c) => [`${c.name}.svg`, `${c.name}.png`]),
  };
  await outputs.dir(
    '--report',
    dir,
    async (tmp) => {
      await writeFile(join(tmp, 'report.json'), `${JSON.stringify(full, null, 2)}\n`);
      await writeFile(join(tmp, 'report.md'), renderMarkdown(full, charts));
      await writeFile(join(tmp, 'report.html'), renderHtml(full, charts));
      for (const c of charts) {
        await writeFile(join(tmp, `${c.name}.svg`), c.svg);
        await writeFile(join(tmp, `${c.name}.png`), c.png);
        await writeFile(join(tmp, `${c.name}.vl.json`), `${JSON.stringify(c.spec, null, 2)}\n`);
      }
      if (plans.size) {
        await mkdir(join(tmp, 'plans'));
        for (const [file, json] of plans) await writeFile(join(tmp, file), json);
      }
    },
    { replace: reportDirPolicy },
  );
  return { report: full, charts };
}
