import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dirState, writeDirAtomic, writeFileAtomic } from './internal/output.js';

const root = mkdtempSync(path.join(tmpdir(), 'moreau-output-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('atomic output', () => {
  it('writes files through a temporary name', async () => {
    const f = path.join(root, 'a/b/c.json');
    await writeFileAtomic(f, '{}');
    expect(readFileSync(f, 'utf8')).toBe('{}');
    expect(readdirSync(path.dirname(f))).toEqual(['c.json']);
  });

  it('fills a directory under a temporary name; refuses or replaces an existing one as told', async () => {
    const d = path.join(root, 'report');
    await writeDirAtomic(d, async (tmp) => writeFileSync(path.join(tmp, 'x'), '1'));
    expect(readFileSync(path.join(d, 'x'), 'utf8')).toBe('1');
    await expect(writeDirAtomic(d, async () => {})).rejects.toThrow(/already exists and is not empty/);
    await writeDirAtomic(
      d,
      async (tmp) => writeFileSync(path.join(tmp, 'y'), '2'),
      async () => true,
    );
    expect(readdirSync(d)).toEqual(['y']);
    expect(readdirSync(root).filter((f) => f.startsWith('report.'))).toEqual([]);
  });

  it('a failure while filling leaves the old directory and no temporary', async () => {
    const d = path.join(root, 'keep');
    mkdirSync(d);
    writeFileSync(path.join(d, 'old'), 'old');
    await expect(
      writeDirAtomic(
        d,
        async (tmp) => {
          writeFileSync(path.join(tmp, 'half'), 'x');
          throw new Error('interrupted');
        },
        async () => true,
      ),
    ).rejects.toThrow('interrupted');
    expect(readdirSync(d)).toEqual(['old']);
    expect(readdirSync(root).filter((f) => f.startsWith('keep.'))).toEqual([]);
    expect(await dirState(path.join(root, 'nope'))).toBeUndefined();
    expect(await dirState(path.join(d, 'old'))).toBe('file');
    expect(existsSync(d)).toBe(true);
  });
});
