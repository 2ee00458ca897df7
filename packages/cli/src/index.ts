/**
 * @moreau/cli: the `moreau` command. The binary is dist/moreau.js; this entry exposes the program
 * (for embedding and tests) and the report writer used by `moreau compare`.
 */
export { main } from './main.js';
export { writeFileAtomic, writeJsonAtomic } from './output.js';
export { buildProgram, type Handlers, UsageError } from './program.js';
export { type ProgressEvent, ProgressReporter, type ProgressSink } from './progress.js';
export {
  type Chart,
  chartSvg,
  type RenderedChart,
  renderChart,
  reportCharts,
  svgToPng,
} from './report/charts.js';
export { comparisonTable, markdownTable, renderHtml, renderMarkdown, textSummary } from './report/render.js';
export type { CompareReport, CompareRun, TaskScores } from './report/types.js';
export { writeReport } from './report/write.js';
export { VERSION } from './version.js';
