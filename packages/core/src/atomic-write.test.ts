import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type CommitEntry,
  checkDirOutput,
  checkFileOutput,
  describeFsError,
  OutputError,
  type OutputJournal,
  OutputTransaction,
  pendingTemporaries,
  recoverOutputs,
  setOutputJournal,
  writeDirAtomic,
  writeFileAtomic,
} from './atomic-write.js';
import { Rng } from './rng.js';

const ROOT = mkdtempSync(path.join(tmpdir(), 'moreau-atomic-'));
afterAll(() => rmSync(ROOT, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = path.join(ROOT, `case${n++}`);
  mkdirSync(d);
  return d;
};
/** Everything under `dir`, as `relative path -> content` (directories as '/'). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymbolicLink()) out[r] = `-> ${readlinkSync(path.join(d, e.name))}`;
      else if (e.isDirectory()) {
        out[`${r}/`] = '/';
        walk(path.join(d, e.name), r);
      } else out[r] = readFileSync(path.join(d, e.name), 'utf8');
    }
  };
  walk(dir, '');
  return out;
}

describe('atomic output', () => {
  it('writes files and directories; a trailing slash names the directory; parents are created', async () => {
    const d = fresh();
    await writeFileAtomic(path.join(d, 'a/b/x.json'), '{}');
    await writeDirAtomic(`${path.join(d, 'out')}/`, async (tmp) => writeFileSync(path.join(tmp, 'f'), '1'));
    expect(snapshot(d)).toEqual({ 'a/': '/', 'a/b/': '/', 'a/b/x.json': '{}', 'out/': '/', 'out/f': '1' });
    expect(pendingTemporaries()).toEqual([]);
  });

  it('never replaces what it must not: a non-empty directory, a directory as a file, a file as a directory', async () => {
    const d = fresh();
    mkdirSync(path.join(d, 'out'));
    writeFileSync(path.join(d, 'out/notes.txt'), 'mine');
    const before = snapshot(d);
    await expect(writeDirAtomic(path.join(d, 'out'), async () => {})).rejects.toThrow(
      /'.*out': already exists and is not empty/,
    );
    await expect(
      writeDirAtomic(path.join(d, 'out'), async () => {}, {
        replace: () => 'holds files moreau did not write',
      }),
    ).rejects.toThrow(/holds files moreau did not write/);
    await expect(writeFileAtomic(path.join(d, 'out'), 'x', { label: '--json' })).rejects.toThrow(
      /^--json '.*out': is a directory, not a file$/,
    );
    await expect(writeFileAtomic(path.join(d, 'file/'), 'x')).rejects.toThrow(/ends with a slash/);
    writeFileSync(path.join(d, 'plain'), 'p');
    await expect(writeDirAtomic(path.join(d, 'plain'), async () => {})).rejects.toThrow(
      /exists and is not a directory/,
    );
    // A path under a regular file: one line naming the destination and the reason.
    const err = await writeFileAtomic(path.join(d, 'plain/x.json'), '{}', { label: '--json' }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(OutputError);
    expect(err.message).toMatch(
      /^--json '.*plain\/x\.json': cannot write: a part of the path is not a directory \(ENOTDIR\)$/,
    );
    expect(snapshot(d)).toEqual({ ...before, plain: 'p' });
    // An empty directory is replaced; an agreed one too, and then nothing else is left beside it.
    mkdirSync(path.join(d, 'empty'));
    await writeDirAtomic(path.join(d, 'empty'), async (tmp) => writeFileSync(path.join(tmp, 'f'), '2'));
    await writeDirAtomic(path.join(d, 'out'), async (tmp) => writeFileSync(path.join(tmp, 'g'), '3'), {
      replace: () => true,
    });
    expect(snapshot(d)).toEqual({ plain: 'p', 'empty/': '/', 'empty/f': '2', 'out/': '/', 'out/g': '3' });
  });

  it('follows symlinks (the link survives) and writes into devices instead of replacing them', async () => {
    const d = fresh();
    writeFileSync(path.join(d, 'real.json'), 'old');
    symlinkSync('real.json', path.join(d, 'link.json'));
    await writeFileAtomic(path.join(d, 'link.json'), 'new');
    expect(lstatSync(path.join(d, 'link.json')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(d, 'real.json'), 'utf8')).toBe('new');
    mkdirSync(path.join(d, 'realdir'));
    symlinkSync('realdir', path.join(d, 'linkdir'));
    await writeDirAtomic(path.join(d, 'linkdir'), async (tmp) => writeFileSync(path.join(tmp, 'f'), 'x'));
    expect(lstatSync(path.join(d, 'linkdir')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(d, 'realdir/f'), 'utf8')).toBe('x');
    await writeFileAtomic('/dev/null', 'discarded');
    expect(lstatSync('/dev/null').isCharacterDevice()).toBe(true);
    const full = await writeFileAtomic('/dev/full', 'x'.repeat(10), { label: '--json' }).catch((e) => e);
    expect(full.message).toMatch(
      /^--json '\/dev\/full': cannot write: no space left on the device \(ENOSPC\)$/,
    );
    expect(snapshot(d)).toEqual({
      'real.json': 'new',
      'link.json': '-> real.json',
      'realdir/': '/',
      'realdir/f': 'x',
      linkdir: '-> realdir',
    });
  });

  it("never names a temporary path in an error, and removes only what it created (a user's out.tmp-notes survives)", async () => {
    const d = fresh();
    mkdirSync(path.join(d, 'out.tmp-my-notes'));
    writeFileSync(path.join(d, 'out.tmp-my-notes/n.txt'), 'keep');
    const err = await writeDirAtomic(path.join(d, 'out'), async (tmp) => {
      throw new Error(`${path.join(tmp, 'config.json')}: bad field`);
    }).catch((e) => e);
    expect(err.message).toBe(`${path.join(d, 'out', 'config.json')}: bad field`);
    expect(err.message).not.toMatch(/moreau-tmp/);
    const raw = await writeDirAtomic(path.join(d, 'out'), async (tmp) => {
      readFileSync(path.join(tmp, 'missing'));
    }).catch((e) => e);
    expect(raw.message).toMatch(/^'.*out': cannot write: a part of the path does not exist \(ENOENT\)$/);
    expect(snapshot(d)).toEqual({ 'out.tmp-my-notes/': '/', 'out.tmp-my-notes/n.txt': 'keep' });
  });

  it('checks destinations before any work', async () => {
    const d = fresh();
    writeFileSync(path.join(d, 'f'), 'x');
    await checkFileOutput(path.join(d, 'new/deep/x.json'));
    await checkFileOutput(path.join(d, 'f'));
    await expect(checkFileOutput(path.join(d, 'f/x.json'), { label: '--plan-out' })).rejects.toThrow(
      /^--plan-out '.*f\/x\.json': cannot write: .*\(ENOTDIR\)$/,
    );
    await expect(checkFileOutput(d)).rejects.toThrow(/is a directory, not a file/);
    await expect(
      checkFileOutput(path.join(d, 'f'), { noClobber: true, clobberHint: 'add --overwrite' }),
    ).rejects.toThrow(/already exists \(add --overwrite\)/);
    await checkDirOutput(path.join(d, 'out'));
    await expect(checkDirOutput(path.join(d, 'f'), { label: '--out' })).rejects.toThrow(
      /^--out '.*f': exists and is not a directory$/,
    );
    // Nothing was left behind by the probes, and no directory was created.
    expect(snapshot(d)).toEqual({ f: 'x' });
    expect(describeFsError(Object.assign(new Error('x'), { code: 'EROFS' }))).toBe(
      'the file system is read-only (EROFS)',
    );
  });

  it('a transaction touches no destination until commit; abort leaves everything as before', async () => {
    const d = fresh();
    writeFileSync(path.join(d, 'plan.json'), 'old plan');
    mkdirSync(path.join(d, 'out'));
    writeFileSync(path.join(d, 'out/config.json'), 'old');
    const before = snapshot(d);
    const tx = new OutputTransaction();
    await tx.dir(path.join(d, 'out'), async (tmp) => writeFileSync(path.join(tmp, 'config.json'), 'new'), {
      replace: () => true,
    });
    await tx.file(path.join(d, 'plan.json'), 'new plan');
    await tx.file(path.join(d, 'sub/dir/x.json'), 'x');
    const during = snapshot(d);
    expect([during['plan.json'], during['out/config.json']]).toEqual(['old plan', 'old']);
    await tx.abort();
    expect(snapshot(d)).toEqual(before);
    const tx2 = new OutputTransaction();
    await tx2.dir(path.join(d, 'out'), async (tmp) => writeFileSync(path.join(tmp, 'config.json'), 'new'), {
      replace: () => true,
    });
    await tx2.file(path.join(d, 'plan.json'), 'new plan');
    await tx2.commit();
    await tx2.finish();
    expect(snapshot(d)).toEqual({ 'plan.json': 'new plan', 'out/': '/', 'out/config.json': 'new' });
  });

  it('a commit that fails half-way is undone', async () => {
    const d = fresh();
    mkdirSync(path.join(d, 'a'));
    writeFileSync(path.join(d, 'a/f'), 'old a');
    writeFileSync(path.join(d, 'b.json'), 'old b');
    const before = snapshot(d);
    const tx = new OutputTransaction();
    await tx.dir(path.join(d, 'a'), async (tmp) => writeFileSync(path.join(tmp, 'f'), 'new a'), {
      replace: () => true,
    });
    await tx.file(path.join(d, 'b.json'), 'new b');
    // Sabotage the second output: its staged file disappears before the commit renames it.
    const staged = readdirSync(d).find((f) => f.startsWith('.b.json.moreau-tmp-'))!;
    rmSync(path.join(d, staged));
    const err = await tx.commit().catch((e) => e);
    expect(err.message).toMatch(/^'.*b\.json': cannot put the output in place: .*ENOENT/);
    expect(snapshot(d)).toEqual(before);
  });
});

/**
 * Recovery after a kill at every point of a commit: the commit's steps are replayed by hand up to
 * a random point (as a killed writer would leave them), then recoverOutputs must restore exactly
 * the state before the run. Seeded; many random shapes of transaction.
 */
describe('recoverOutputs after a kill at any step of a commit (seeded)', () => {
  it('restores the exact state before the run, 60 random trials', async () => {
    const rng = new Rng(20240601);
    for (let trial = 0; trial < 60; trial++) {
      const d = fresh();
      const outputs = 1 + Math.floor(rng.uniform() * 3);
      const journal = {
        temporaries: new Set<string>(),
        directories: [] as string[],
        commits: [] as CommitEntry[][],
      };
      const steps: (() => void)[] = [];
      const recorder: OutputJournal = {
        created: (p, kind) => {
          if (kind === 'temp') journal.temporaries.add(p);
          else journal.directories.push(p);
        },
        released: (p) => {
          journal.temporaries.delete(p);
        },
        committing: (_id, entries) => {
          journal.commits.push([...entries]);
        },
        finished: () => {},
      };
      for (let i = 0; i < outputs; i++) {
        const kind = rng.uniform() < 0.5 ? 'dir' : 'file';
        if (rng.uniform() < 0.6) {
          if (kind === 'dir') {
            mkdirSync(path.join(d, `o${i}`));
            writeFileSync(path.join(d, `o${i}`, 'f'), `old ${i}`);
          } else writeFileSync(path.join(d, `o${i}`), `old ${i}`);
        }
      }
      writeFileSync(path.join(d, 'o.tmp-user-notes'), 'mine');
      const before = snapshot(d);
      setOutputJournal(recorder);
      try {
        const tx = new OutputTransaction();
        for (let i = 0; i < outputs; i++) {
          const p = path.join(d, `o${i}`);
          if (existsSync(p) ? lstatSync(p).isDirectory() : rng.uniform() < 0.5) {
            await tx.dir(p, async (tmp) => writeFileSync(path.join(tmp, 'f'), `new ${i}`), {
              replace: () => true,
            });
          } else {
            await tx.file(existsSync(p) ? p : path.join(d, `new${i}/o${i}`), `new ${i}`);
          }
        }
        // The commit, by hand, step by step, as OutputTransaction.commit performs it.
        const entries = await new Promise<CommitEntry[]>((resolve) => {
          recorder.committing = (_id, e) => {
            journal.commits.push([...e]);
            resolve([...e]);
            throw new Error('stop: replay by hand');
          };
          tx.commit().catch(() => {});
        });
        // commit() failed after `committing`: it undid nothing yet (no rename happened). Replay.
        for (const e of entries) {
          if (e.backup) {
            steps.push(() => {
              journal.temporaries.add(e.backup!);
              if (e.kind === 'dir') renameSync(e.target, e.backup!);
              else writeFileSync(e.backup!, readFileSync(e.target));
            });
          }
          steps.push(() => renameSync(e.tmp!, e.target));
        }
        const upTo = Math.floor(rng.uniform() * (steps.length + 1));
        for (const s of steps.slice(0, upTo)) s();
        await recoverOutputs(journal);
        expect(snapshot(d), `trial ${trial}, ${upTo}/${steps.length} steps`).toEqual(before);
      } finally {
        setOutputJournal(undefined);
      }
    }
  });
});
