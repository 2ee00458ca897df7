import { describe, expect, it } from 'vitest';
import { formatDuration, ProgressReporter } from './internal/progress.js';

describe('progress without a terminal', () => {
  it('prints plain phase lines with an ETA, the prefix, and the last step; --quiet prints nothing', () => {
    const lines: string[] = [];
    const p = new ProgressReporter(false, false, (s) => lines.push(s));
    p.prefix = '[1/2] ';
    p.update({ phase: 'ppl', done: 1, total: 4, unit: 'windows' });
    p.update({ phase: 'ppl', done: 2, total: 4, unit: 'windows' }); // within 5 s of the last line: skipped
    p.update({ phase: 'ppl', done: 4, total: 4, unit: 'windows' });
    p.note('saving');
    p.update({ phase: 'perplexity', done: 8, total: 6299 });
    p.update({ phase: 'moreau: proximal steps', done: 10, total: 10 });
    expect(lines[0]).toMatch(/^\[1\/2\] ppl: 1\/4 windows( \(ETA \S+\))?\n$/);
    expect(lines.slice(1, 3)).toEqual(['[1/2] ppl: 4/4 windows\n', 'saving\n']);
    // Counts say what they count (inferred from the phase when not given).
    expect(lines[3]).toMatch(/^\[1\/2\] perplexity: 8\/6299 windows/);
    expect(lines[4]).toBe('[1/2] moreau: proximal steps: 10/10\n');
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
