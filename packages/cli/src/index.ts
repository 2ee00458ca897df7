/**
 * @moreau/cli: the `moreau` command. The binary is dist/moreau.js; this entry runs the same program
 * in-process (`main`) and types the report `moreau compare` writes (report.json).
 */

export type { CompareReport, CompareRun, TaskScores, TunedRun } from './internal/report/types.js';
export { EXIT, main } from './main.js';
export { VERSION } from './version.js';
