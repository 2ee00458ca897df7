/**
 * Atomic output: every file is written beside its target and renamed into place, a directory is
 * filled under a temporary name and renamed, so an interrupted run leaves no half-written file.
 * Temporary paths in flight are tracked so a forced exit (second Ctrl-C) can remove them.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

const inFlight = new Set<string>();
/** Directories whose `NAME.tmp-*` siblings belong to a write in progress elsewhere (e.g. @moreau/models). */
const guarded = new Set<string>();

const suffix = () => randomBytes(4).toString('hex');

/** Writes a file atomically; `data` may come in pieces (a large plan's JSON exceeds one string). */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array | Iterable<string>,
): Promise<void> {
  const target = resolve(file);
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${suffix()}`;
  inFlight.add(tmp);
  try {
    await writeFile(tmp, data);
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    inFlight.delete(tmp);
  }
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** undefined: absent; false: an empty directory; true: a non-empty directory; 'file': not a directory. */
export async function dirState(dir: string): Promise<boolean | 'file' | undefined> {
  const s = await stat(dir).catch(() => undefined);
  if (!s) return undefined;
  if (!s.isDirectory()) return 'file';
  return (await readdir(dir)).length > 0;
}

/**
 * Fills a fresh temporary directory beside `dir`, then renames it to `dir`. An existing `dir` is
 * replaced only when `replace(dir)` allows it (checked before and after filling); it is moved
 * aside first and removed after the rename, so `dir` is always either the old or the new one.
 */
export async function writeDirAtomic(
  dir: string,
  fill: (tmp: string) => Promise<void>,
  replace: (dir: string) => Promise<boolean> = async () => false,
): Promise<void> {
  const target = resolve(dir);
  const check = async () => {
    const state = await dirState(target);
    if (state === 'file') throw new Error(`'${dir}' exists and is not a directory`);
    if (state === true && !(await replace(target)))
      throw new Error(`'${dir}' already exists and is not empty`);
    return state;
  };
  await check();
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${suffix()}`;
  inFlight.add(tmp);
  try {
    await mkdir(tmp);
    await fill(tmp);
    const state = await check();
    if (state === undefined) await rename(tmp, target);
    else {
      const old = `${target}.old-${suffix()}`;
      inFlight.add(old);
      await rename(target, old);
      try {
        await rename(tmp, target);
      } catch (e) {
        await rename(old, target).catch(() => {});
        throw e;
      }
      inFlight.delete(old);
      await rm(old, { recursive: true, force: true });
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  } finally {
    inFlight.delete(tmp);
  }
}

/** Marks `dir` as being written by a library: its temporary siblings are removed on a forced exit. */
export function guardDir(dir: string): () => void {
  const target = resolve(dir);
  guarded.add(target);
  return () => guarded.delete(target);
}

/** Synchronously removes every temporary path still in flight (for a forced exit). */
export function removeTemporariesSync(): void {
  for (const p of inFlight) rmSync(p, { recursive: true, force: true });
  inFlight.clear();
  for (const dir of guarded) {
    const parent = dirname(dir);
    const name = basename(dir);
    let entries: string[] = [];
    try {
      entries = readdirSync(parent);
    } catch {
      continue;
    }
    for (const e of entries) {
      if (e.startsWith(`${name}.tmp-`)) rmSync(join(parent, e), { recursive: true, force: true });
    }
  }
}
