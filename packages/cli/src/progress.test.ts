import { describe, expect, it } from 'vitest';
import { formatDuration, ProgressReporter } from './internal/progress.js';

describe('progress without a terminal', () => {
  it('prints plain phase lines with an ETA, the prefix, and the last step; --quiet prints nothing', () => {
    const lines: string[] = [];
    const p = new ProgressReporter(false, false, (s) => lines.push(s));
    p.prefix = '[1/2] ';
    p.update({ phase: 'ppl', done: 1, total: 4 });
    p.update({ phase: 'ppl', done: 2, total: 4 }); // within 5 s of the last line: skipped
    p.update({ phase: 'ppl', done: 4, total: 4 });
    p.note('saving');
    expect(lines[0]).toMatch(/^\[1\/2\] ppl: 1\/4( \(ETA \S+\))?\n$/);
    expect(lines.slice(1)).toEqual(['[1/2] ppl: 4/4\n', 'saving\n']);
    const quiet: string[] = [];
    const q = new ProgressReporter(true, false, (s) => quiet.push(s));
    q.update({ phase: 'x', done: 1, total: 1 });
    q.note('hello');
    expect(quiet).toEqual([]);
  });

  it('formats durations', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(65)).toBe('1m05s');
    expect(formatDuration(7260)).toBe('2h01m');
    expect(formatDuration(Number.NaN)).toBe('?');
  });
});
