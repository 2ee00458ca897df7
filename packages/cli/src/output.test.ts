/**
 * The run's outputs: staged in one transaction and put in place together; --json - (or a path that
 * is this process's stdout) prints after the commit; an earlier report is replaced only when it
 * holds nothing but report files.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isStdout, RunOutputs } from './internal/output.js';
import { reportDirPolicy } from './internal/report/write.js';

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-cli-output-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

describe('run outputs', () => {
  it('stages every output and puts them in place only at commit; abort leaves nothing', async () => {
    const d = path.join(TMP, 'a');
    mkdirSync(d);
    const printed: string[] = [];
    const o = new RunOutputs((s) => printed.push(s));
    await o.file('--plan-out', path.join(d, 'plan.json'), '{}');
    await o.dir('--out', path.join(d, 'out'), async (tmp) => writeFileSync(path.join(tmp, 'x'), '1'));
    await o.writeJson('-', { ok: true });
    expect(readdirSync(d).filter((f) => !f.startsWith('.'))).toEqual([]);
    expect(printed).toEqual([]);
    await o.commit();
    await o.finish();
    expect(readdirSync(d).sort()).toEqual(['out', 'plan.json']);
    expect(JSON.parse(printed.join(''))).toEqual({ ok: true });
    const aborted = new RunOutputs(() => {});
    await aborted.file('--json', path.join(d, 'other.json'), '{}');
    await aborted.abort();
    expect(readdirSync(d).sort()).toEqual(['out', 'plan.json']);
  });

  it("'-' is stdout; a flag-like or ordinary path is not", () => {
    expect(isStdout('-')).toBe(true);
    expect(isStdout(path.join(TMP, 'x.json'))).toBe(false);
    expect(isStdout(undefined)).toBe(false);
  });

  it('a report directory is replaced only when it holds nothing but report files', async () => {
    const r = path.join(TMP, 'report');
    mkdirSync(path.join(r, 'plans'), { recursive: true });
    for (const f of [
      'report.json',
      'report.md',
      'report.html',
      'perplexity_vs_ratio.svg',
      'x.png',
      'x.vl.json',
    ])
      writeFileSync(path.join(r, f), '');
    writeFileSync(path.join(r, 'plans/taylor-0.2.json'), '{}');
    expect(await reportDirPolicy(r)).toBe(true);
    writeFileSync(path.join(r, 'notes.txt'), 'mine');
    expect(await reportDirPolicy(r)).toMatch(/holds files a report does not \('notes\.txt'\)/);
    rmSync(path.join(r, 'notes.txt'));
    rmSync(path.join(r, 'report.json'));
    expect(await reportDirPolicy(r)).toMatch(/holds no report\.json/);
    expect(readFileSync(path.join(r, 'plans/taylor-0.2.json'), 'utf8')).toBe('{}');
  });
});
