/** Writes a comparison report directory atomically: report.json, report.md, report.html, charts, plans. */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '@moreau/core';
import { dirState, writeDirAtomic } from '../output.js';
import { type RenderedChart, renderChart, reportCharts } from './charts.js';
import { renderHtml, renderMarkdown } from './render.js';
import type { CompareReport } from './types.js';

/** A directory we may replace: absent, empty, or an earlier report (it holds report.json). */
export async function isReplaceableReportDir(dir: string): Promise<boolean> {
  const state = await dirState(dir);
  return state === undefined || state === false || (state === true && existsSync(join(dir, 'report.json')));
}

/** Fails early (before hours of pruning) when --report names something we must not overwrite. */
export async function checkReportDir(dir: string): Promise<void> {
  const state = await dirState(dir);
  if (state === 'file') throw new InputError(`--report '${dir}' is a file, not a directory`, dir, 'report');
  if (!(await isReplaceableReportDir(dir))) {
    throw new InputError(
      `--report '${dir}' exists, is not empty and holds no report.json: choose a new directory (an earlier report is replaced)`,
      dir,
      'report',
    );
  }
}

/** Renders the charts, then fills a temporary directory and renames it to `dir`. */
export async function writeReport(
  dir: string,
  report: Omit<CompareReport, 'charts'>,
  plans: ReadonlyMap<string, string>,
): Promise<{ report: CompareReport; charts: RenderedChart[] }> {
  const draft: CompareReport = { ...report, charts: [] };
  const charts: RenderedChart[] = [];
  for (const c of reportCharts(draft)) charts.push(await renderChart(c));
  const full: CompareReport = {
    ...report,
    charts: charts.flatMap((c) => [`${c.name}.svg`, `${c.name}.png`]),
  };
  await writeDirAtomic(
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
    isReplaceableReportDir,
  );
  return { report: full, charts };
}
