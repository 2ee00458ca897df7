/**
 * Atomic output, once for every package: a file is written beside its target under a temporary
 * name and renamed into place; a directory is filled under a temporary name and renamed. Several
 * outputs can be staged in one `OutputTransaction` and committed together at the end of a run, so
 * "the run failed or was interrupted" means "every destination is exactly as before".
 *
 * What it never does: replace something that is not a regular file (for a file output) or a
 * directory the caller agreed to replace (for a directory output). A symlink is followed (the link
 * survives; its target is replaced). A character device, FIFO or socket (`/dev/stdout`,
 * `/dev/null`, a pipe from `>(...)`) is written into, not replaced. Temporary names are hidden
 * (`.NAME.moreau-tmp-<hex>`), never appear in error messages (the destination does), and are the
 * only paths this module ever removes besides the backups of what it replaced.
 *
 * Every path it creates is announced to the process's `OutputJournal` (when one is set) before it
 * exists, and every commit's renames before they happen, so a supervising process can remove
 * exactly those paths, and undo a commit, after a forced kill (see `recoverOutputs`).
 *
 * Node only: `node:fs` is imported on first use, so importing @moreau/core stays host-neutral.
 */
import { AbortError, InputError, MoreauError } from './errors.js';

type Fsp = typeof import('node:fs/promises');
type PathMod = typeof import('node:path');
type FileHandle = import('node:fs/promises').FileHandle;

interface Host {
  readonly fs: Fsp;
  readonly path: PathMod;
  readonly fsConstants: typeof import('node:fs').constants;
  readonly fstatSync: typeof import('node:fs').fstatSync;
  readonly sync: typeof import('node:fs');
}
let host: Promise<Host> | undefined;
function load(): Promise<Host> {
  host ??= (async () => {
    const fs = await import('node:fs/promises');
    const path = await import('node:path');
    const fsSync = await import('node:fs');
    installExitHook(fsSync);
    return { fs, path, fsConstants: fsSync.constants, fstatSync: fsSync.fstatSync, sync: fsSync };
  })();
  return host;
}

/** Where a staged output goes. */
export interface CommitEntry {
  /** 'file' and 'dir' are renamed into place; 'stream' (a device, FIFO, socket) is written into. */
  readonly kind: 'file' | 'dir' | 'stream';
  /** The destination (symlinks resolved). */
  readonly target: string;
  /** The staged temporary path ('file', 'dir'). */
  readonly tmp?: string;
  /** Where the replaced destination waits until the run is over (a hard link for a file). */
  readonly backup?: string;
}

/**
 * Hears of every path this module creates and every commit, before they happen (each call is
 * awaited). A supervising process that keeps this journal can, after killing the writer, undo an
 * unfinished commit and remove exactly the paths the writer created.
 */
export interface OutputJournal {
  /** `path` is about to be created: a temporary file or directory ('temp') or a missing parent ('dir'). */
  created(path: string, kind: 'temp' | 'dir'): void | Promise<void>;
  /** `path` no longer exists under that name (renamed into place, or removed). */
  released(path: string): void | Promise<void>;
  /** Commit `id`: these entries are about to be renamed into place, in this order. */
  committing(id: string, entries: readonly CommitEntry[]): void | Promise<void>;
  /**
   * Commit `id` is final: its backups are about to be removed (after `finish()`), or it was undone
   * after a failure. Until then a recovery undoes it.
   */
  finished(id: string): void | Promise<void>;
}

const JOURNAL_KEY = Symbol.for('@moreau/core/output-journal');
const holder = globalThis as {
  [JOURNAL_KEY]?: {
    journal?: OutputJournal;
    live: Set<string>;
    commits: Map<string, readonly CommitEntry[]>;
    hooked?: boolean;
  };
};
holder[JOURNAL_KEY] ??= { live: new Set(), commits: new Map() };
const state = holder[JOURNAL_KEY];

/**
 * A process that exits in the middle of a write (process.exit from a signal handler, a forced
 * exit) undoes its unfinished commits and removes its temporaries on the way out, synchronously.
 */
function installExitHook(fs: typeof import('node:fs')): void {
  if (state.hooked || typeof process === 'undefined' || typeof process.once !== 'function') return;
  state.hooked = true;
  process.once('exit', () => {
    const exists = (p: string) => {
      try {
        fs.lstatSync(p);
        return true;
      } catch {
        return false;
      }
    };
    const quiet = (f: () => void) => {
      try {
        f();
      } catch {
        // best effort on the way out
      }
    };
    for (const entries of [...state.commits.values()].reverse()) {
      for (const e of [...entries].reverse()) {
        if (e.kind === 'stream' || !e.tmp) continue;
        if (!exists(e.tmp)) {
          if (e.backup && exists(e.backup)) {
            if (e.kind === 'dir') quiet(() => fs.rmSync(e.target, { recursive: true, force: true }));
            quiet(() => fs.renameSync(e.backup!, e.target));
          } else quiet(() => fs.rmSync(e.target, { recursive: true, force: true }));
        } else if (e.kind === 'dir' && e.backup && exists(e.backup) && !exists(e.target)) {
          quiet(() => fs.renameSync(e.backup!, e.target));
        }
      }
    }
    for (const p of state.live) quiet(() => fs.rmSync(p, { recursive: true, force: true }));
  });
}

/** Sets (or clears) the process's output journal; shared by every copy of @moreau/core loaded. */
export function setOutputJournal(journal: OutputJournal | undefined): void {
  state.journal = journal;
}

/** Temporary paths this process created and has not yet renamed or removed. */
export function pendingTemporaries(): string[] {
  return [...state.live];
}

async function announce(path: string, kind: 'temp' | 'dir'): Promise<void> {
  if (kind === 'temp') state.live.add(path);
  await state.journal?.created(path, kind);
}
async function release(path: string): Promise<void> {
  state.live.delete(path);
  await state.journal?.released(path);
}

const hex = () => {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
};

/** A temporary name beside `target`: hidden, and never one a person would choose. */
function sibling(h: Host, target: string, what: 'tmp' | 'old' | 'probe'): string {
  return h.path.join(h.path.dirname(target), `.${h.path.basename(target)}.moreau-${what}-${hex()}`);
}

const REASONS: Record<string, string> = {
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exceeded',
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'it is a directory',
  EBUSY: 'it is busy (in use, or a mount point)',
  ENOENT: 'a part of the path does not exist',
  EEXIST: 'it already exists',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many levels of symbolic links',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EIO: 'an input/output error',
  EXDEV: 'it is on another device',
  ENOTEMPTY: 'the directory is not empty',
  EFBIG: 'the file is too large for the file system',
  EINVAL: 'an invalid argument (not supported by this file system?)',
  ENXIO: 'no reader is connected (a FIFO without a reader?)',
  EPIPE: 'the reader went away',
};

/** One line saying what an I/O error means ("the file system is read-only (EROFS)"), no paths. */
export function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code && REASONS[code]) return `${REASONS[code]} (${code})`;
  if (code) return code;
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, 200);
}

/** `label 'dest'` or `'dest'`: how messages name a destination. */
function named(dest: string, label?: string): string {
  return label ? `${label} '${dest}'` : `'${dest}'`;
}

/** An output that cannot be written: names the destination (never a temporary path) and why. */
export class OutputError extends InputError {
  override name = 'OutputError';
  /** What is wrong, without the destination. */
  readonly detail: string;
  constructor(dest: string, what: string, label?: string, options?: ErrorOptions) {
    super(`${named(dest, label)}: ${what}`, dest, label, options);
    this.detail = what;
  }
}

function wrap(e: unknown, dest: string, doing: string, label?: string): never {
  if (e instanceof MoreauError) throw e;
  throw new OutputError(dest, `cannot ${doing}: ${describeFsError(e)}`, label, { cause: e });
}

async function lstatOrUndefined(h: Host, p: string) {
  try {
    return await h.fs.lstat(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw e;
  }
}

async function exists(h: Host, p: string): Promise<boolean> {
  return (await lstatOrUndefined(h, p).catch(() => undefined)) !== undefined;
}

/**
 * The destination with symlinks resolved: the real path of an existing target (a link survives,
 * its target is written), else the real path of the nearest existing ancestor plus the rest.
 */
async function resolveTarget(h: Host, given: string): Promise<string> {
  const abs = h.path.resolve(given);
  try {
    return await h.fs.realpath(abs);
  } catch {
    // Absent (or a dangling link): resolve what exists above it.
  }
  const st = await lstatOrUndefined(h, abs).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    // A dangling link: write where it points.
    const to = await h.fs.readlink(abs);
    return resolveTarget(h, h.path.resolve(h.path.dirname(abs), to));
  }
  const parent = h.path.dirname(abs);
  if (parent === abs) return abs;
  return h.path.join(await resolveTarget(h, parent), h.path.basename(abs));
}

/** The nearest existing ancestor of `p` (itself excluded) and the directories missing below it. */
async function existingAncestor(h: Host, p: string): Promise<{ dir: string; missing: string[] }> {
  const missing: string[] = [];
  let dir = h.path.dirname(p);
  for (;;) {
    const st = await lstatOrUndefined(h, dir).catch((e) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return 'notdir' as const;
      throw e;
    });
    if (st === 'notdir' || (st && !st.isDirectory())) {
      const e = Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' });
      throw e;
    }
    if (st) return { dir, missing: missing.reverse() };
    missing.push(dir);
    const up = h.path.dirname(dir);
    if (up === dir) return { dir, missing: missing.reverse() };
    dir = up;
  }
}

/** Creates the missing parents of `target`, announcing each (a rollback removes them if empty). */
async function makeParents(h: Host, target: string, created: string[]): Promise<void> {
  const { missing } = await existingAncestor(h, target);
  for (const d of missing) {
    await announce(d, 'dir');
    await h.fs.mkdir(d);
    created.push(d);
  }
}

/** Probes that a file can be created where `target` will go (nearest existing directory). */
async function probe(h: Host, target: string): Promise<void> {
  const { dir } = await existingAncestor(h, target);
  const p = sibling(h, h.path.join(dir, h.path.basename(target)), 'probe');
  await announce(p, 'temp');
  try {
    const fh = await h.fs.open(p, h.fsConstants.O_CREAT | h.fsConstants.O_EXCL | h.fsConstants.O_WRONLY);
    await fh.close();
  } finally {
    await h.fs.rm(p, { force: true }).catch(() => {});
    await release(p);
  }
}

/** Is `st` the file open as this process's stdout or stderr? Then it is written through that fd. */
function stdioFd(h: Host, st: { dev: number; ino: number }): number | undefined {
  for (const fd of [1, 2]) {
    try {
      const s = h.fstatSync(fd);
      if (s.dev === st.dev && s.ino === st.ino) return fd;
    } catch {
      // fd not open
    }
  }
  return undefined;
}

export interface FileOutputOptions {
  /** How messages name the destination, e.g. '--json'. */
  readonly label?: string;
  /** Refuse to replace an existing file (default: a regular file is replaced). */
  readonly noClobber?: boolean;
  /** Why an existing file may not be replaced (with noClobber), e.g. 'add --overwrite'. */
  readonly clobberHint?: string;
}

export interface DirOutputOptions {
  readonly label?: string;
  /**
   * May an existing non-empty directory be replaced? true, or a string saying why not (the error
   * message). Default: never. An existing empty directory is always replaced.
   */
  readonly replace?: (dir: string) => Promise<true | string> | true | string;
}

export type FileContent = string | Uint8Array | ((fh: FileHandle) => Promise<void>);

/** What a file output resolves to, after the checks. */
type FileTarget =
  | { readonly kind: 'file'; readonly target: string; readonly existing: boolean }
  | { readonly kind: 'stream'; readonly target: string; readonly fd?: number };

async function resolveFile(h: Host, file: string, options: FileOutputOptions): Promise<FileTarget> {
  const { label } = options;
  if (/[/\\]$/.test(file)) {
    throw new OutputError(file, 'ends with a slash: give a file name, not a directory', label);
  }
  const abs = h.path.resolve(file);
  let st: import('node:fs').Stats | undefined;
  try {
    st = await h.fs.stat(abs); // follows links, including /dev/stdout -> /proc/self/fd/1 -> pipe
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') wrap(e, file, 'write', label);
  }
  if (st?.isDirectory()) throw new OutputError(file, 'is a directory, not a file', label);
  if (st && !st.isFile()) return { kind: 'stream', target: abs, ...optionalFd(stdioFd(h, st)) };
  if (st) {
    const fd = stdioFd(h, st);
    if (fd !== undefined) return { kind: 'stream', target: abs, fd };
    if (options.noClobber) {
      throw new OutputError(
        file,
        `already exists${options.clobberHint ? ` (${options.clobberHint})` : ''}`,
        label,
      );
    }
  }
  let target: string;
  try {
    target = await resolveTarget(h, abs);
  } catch (e) {
    wrap(e, file, 'resolve the path', label);
  }
  return { kind: 'file', target, existing: st !== undefined };
}

const optionalFd = (fd: number | undefined) => (fd === undefined ? {} : { fd });

/**
 * Checks, before any work, that `file` can be written as a file: not a directory, not under a
 * file, in a writable directory (probed by creating and removing a file there).
 */
export async function checkFileOutput(file: string, options: FileOutputOptions = {}): Promise<void> {
  const h = await load();
  const t = await resolveFile(h, file, options);
  if (t.kind === 'stream') return;
  try {
    await probe(h, t.target);
  } catch (e) {
    wrap(e, file, 'write there', options.label);
  }
}

/** Why an existing directory may not be replaced, or undefined when it may (or is absent / empty). */
async function dirVerdict(
  h: Host,
  dir: string,
  target: string,
  options: DirOutputOptions,
): Promise<{ exists: boolean; refuse?: string }> {
  let st: import('node:fs').Stats | undefined;
  try {
    st = await h.fs.stat(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') wrap(e, dir, 'write', options.label);
  }
  if (!st) return { exists: false };
  if (!st.isDirectory()) return { exists: true, refuse: 'exists and is not a directory' };
  const entries = await h.fs.readdir(target).catch((e) => wrap(e, dir, 'read the directory', options.label));
  if (entries.length === 0) return { exists: true };
  const verdict = options.replace ? await options.replace(target) : 'already exists and is not empty';
  return verdict === true ? { exists: true } : { exists: true, refuse: verdict };
}

/** Checks, before any work, that `dir` can be written (or replaced) as a directory. */
export async function checkDirOutput(dir: string, options: DirOutputOptions = {}): Promise<void> {
  const h = await load();
  let target: string;
  try {
    target = await resolveTarget(h, dir);
  } catch (e) {
    wrap(e, dir, 'resolve the path', options.label);
  }
  const v = await dirVerdict(h, dir, target, options);
  if (v.refuse) throw new OutputError(dir, v.refuse, options.label);
  try {
    await probe(h, target);
  } catch (e) {
    wrap(e, dir, 'write there', options.label);
  }
}

async function writeContent(fh: FileHandle, content: FileContent): Promise<void> {
  if (typeof content === 'function') return content(fh);
  const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(1 << 30, bytes.length - done));
    done += bytesWritten;
  }
}

interface Staged {
  readonly entry: CommitEntry;
  readonly dest: string;
  readonly label?: string;
  /** Stream outputs: what to write at commit. */
  readonly content?: FileContent;
  readonly fd?: number;
  /** Directory outputs: re-checked just before the rename. */
  readonly dirOptions?: DirOutputOptions;
  readonly fileOptions?: FileOutputOptions;
}

/**
 * Several outputs staged under temporary names and put in place together by `commit()`; until
 * then every destination is untouched, and `abort()` removes what was staged. After `commit()`,
 * `finish()` removes the replaced originals (kept until then so the commit can be undone).
 */
export class OutputTransaction {
  private staged: Staged[] = [];
  private backups: string[] = [];
  private done = false;
  private readonly id = hex();
  private pending = false;
  /** Parent directories this transaction created (removed again, if empty, when it fails). */
  private readonly createdDirs: string[] = [];

  /** Stages a file: written now under a temporary name beside `file`, renamed in at commit. */
  async file(file: string, content: FileContent, options: FileOutputOptions = {}): Promise<void> {
    this.open();
    const h = await load();
    const t = await resolveFile(h, file, options);
    if (t.kind === 'stream') {
      this.staged.push({
        entry: { kind: 'stream', target: t.target },
        dest: file,
        content,
        ...(t.fd !== undefined ? { fd: t.fd } : {}),
        ...(options.label ? { label: options.label } : {}),
      });
      return;
    }
    const tmp = sibling(h, t.target, 'tmp');
    let fh: FileHandle | undefined;
    try {
      await makeParents(h, t.target, this.createdDirs);
      await announce(tmp, 'temp');
      fh = await h.fs.open(tmp, h.fsConstants.O_CREAT | h.fsConstants.O_EXCL | h.fsConstants.O_WRONLY, 0o644);
      await writeContent(fh, content);
      await fh.sync();
      await fh.close();
      fh = undefined;
    } catch (e) {
      if (fh) await fh.close().catch(() => {});
      await h.fs.rm(tmp, { force: true }).catch(() => {});
      await release(tmp);
      await this.removeCreatedDirs(h);
      if (e instanceof Error && e.message.includes(tmp)) e.message = e.message.replaceAll(tmp, file);
      wrap(e, file, 'write', options.label);
    }
    if (this.done) {
      await h.fs.rm(tmp, { force: true }).catch(() => {});
      await release(tmp);
      await this.removeCreatedDirs(h);
      throw new AbortError();
    }
    this.staged.push({
      entry: { kind: 'file', target: t.target, tmp },
      dest: file,
      fileOptions: options,
      ...(options.label ? { label: options.label } : {}),
    });
  }

  /** Stages a directory: `fill` writes into a fresh temporary directory beside `dir`. */
  async dir(
    dir: string,
    fill: (tmp: string) => Promise<void>,
    options: DirOutputOptions = {},
  ): Promise<void> {
    this.open();
    const h = await load();
    let target: string;
    try {
      target = await resolveTarget(h, dir);
    } catch (e) {
      wrap(e, dir, 'resolve the path', options.label);
    }
    const v = await dirVerdict(h, dir, target, options);
    if (v.refuse) throw new OutputError(dir, v.refuse, options.label);
    const tmp = sibling(h, target, 'tmp');
    try {
      await makeParents(h, target, this.createdDirs);
      await announce(tmp, 'temp');
      await h.fs.mkdir(tmp);
    } catch (e) {
      await release(tmp);
      await this.removeCreatedDirs(h);
      wrap(e, dir, 'create the directory', options.label);
    }
    try {
      await fill(tmp);
    } catch (e) {
      await h.fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
      await release(tmp);
      await this.removeCreatedDirs(h);
      // A raw I/O error names the destination; the filler's own errors have the temporary
      // directory's name replaced by the destination's.
      if ((e as NodeJS.ErrnoException)?.code && !(e instanceof MoreauError))
        wrap(e, dir, 'write', options.label);
      if (e instanceof Error && e.message.includes(tmp)) e.message = e.message.replaceAll(tmp, dir);
      throw e;
    }
    if (this.done) {
      // Aborted while the directory was being filled: it never becomes an output.
      await h.fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
      await release(tmp);
      await this.removeCreatedDirs(h);
      throw new AbortError();
    }
    this.staged.push({
      entry: { kind: 'dir', target, tmp },
      dest: dir,
      dirOptions: options,
      ...(options.label ? { label: options.label } : {}),
    });
  }

  /** True when nothing is staged. */
  get empty(): boolean {
    return this.staged.length === 0;
  }

  private open(): void {
    if (this.done) throw new MoreauError('OutputTransaction: already committed or aborted');
  }

  /**
   * Puts every staged output in place: existing destinations move aside (a directory) or get a
   * hard-linked backup (a file), then the temporaries are renamed in. A failure undoes the renames
   * done so far, so the destinations are as before. Streams (devices, FIFOs) are written first.
   */
  async commit(): Promise<void> {
    this.open();
    this.done = true;
    const h = await load();
    // Re-check what may have appeared or changed while the outputs were produced.
    const entries: CommitEntry[] = [];
    try {
      for (const s of this.staged) {
        if (s.entry.kind === 'stream') {
          entries.push(s.entry);
          continue;
        }
        let existing = false;
        if (s.entry.kind === 'dir') {
          const v = await dirVerdict(h, s.dest, s.entry.target, s.dirOptions ?? {});
          if (v.refuse) throw new OutputError(s.dest, v.refuse, s.label);
          existing = v.exists;
        } else {
          const t = await resolveFile(h, s.dest, s.fileOptions ?? {});
          existing = t.kind === 'file' && t.existing;
        }
        const backup = existing ? sibling(h, s.entry.target, 'old') : undefined;
        entries.push({ ...s.entry, ...(backup ? { backup } : {}) });
      }
    } catch (e) {
      await this.removeStaged(h);
      throw e;
    }
    // Streams cannot be undone: they are written first, so a failure there leaves every file and
    // directory destination untouched.
    for (const s of this.staged) {
      if (s.entry.kind !== 'stream') continue;
      try {
        if (s.fd !== undefined) {
          await writeToFd(s.fd, s.content!);
        } else {
          const fh = await h.fs.open(s.entry.target, 'w');
          try {
            await writeContent(fh, s.content!);
          } finally {
            await fh.close();
          }
        }
      } catch (e) {
        await this.removeStaged(h);
        wrap(e, s.dest, 'write', s.label);
      }
    }
    await state.journal?.committing(this.id, entries);
    state.commits.set(this.id, entries);
    this.pending = true;
    const done: CommitEntry[] = [];
    try {
      for (const e of entries) {
        if (e.kind === 'stream') continue;
        const s = this.staged.find((x) => x.entry.tmp === e.tmp)!;
        try {
          if (e.backup) {
            await announce(e.backup, 'temp');
            if (e.kind === 'dir') await h.fs.rename(e.target, e.backup);
            else await h.fs.link(e.target, e.backup).catch(() => h.fs.copyFile(e.target, e.backup!));
          }
          done.push(e);
          await h.fs.rename(e.tmp!, e.target);
        } catch (err) {
          wrap(err, s.dest, 'put the output in place', s.label);
        }
        await release(e.tmp!);
      }
    } catch (err) {
      await rollback(h, done);
      await this.removeStaged(h);
      for (const e of entries) {
        if (!e.backup) continue;
        // A file's backup is a second link to the untouched original: drop it.
        if (e.kind === 'file') await h.fs.rm(e.backup, { force: true }).catch(() => {});
        await release(e.backup);
      }
      this.pending = false;
      state.commits.delete(this.id);
      await state.journal?.finished(this.id);
      throw err;
    }
    this.backups = entries.flatMap((e) => (e.backup ? [e.backup] : []));
  }

  /**
   * After a commit: makes it final (a recovery no longer undoes it) and removes the replaced
   * originals. Until then the commit can still be undone by `recoverOutputs`.
   */
  async finish(): Promise<void> {
    const h = await load();
    if (this.pending) {
      this.pending = false;
      state.commits.delete(this.id);
      await state.journal?.finished(this.id);
    }
    for (const b of this.backups) {
      await h.fs.rm(b, { recursive: true, force: true }).catch(() => {});
      await release(b);
    }
    this.backups = [];
  }

  /** Removes everything staged; the destinations were never touched. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.removeStaged(await load());
  }

  private async removeStaged(h: Host): Promise<void> {
    for (const s of this.staged) {
      if (!s.entry.tmp) continue;
      if (await exists(h, s.entry.tmp))
        await h.fs.rm(s.entry.tmp, { recursive: true, force: true }).catch(() => {});
      await release(s.entry.tmp);
    }
    this.staged = [];
    await this.removeCreatedDirs(h);
  }

  /** Removes the parent directories this transaction created, deepest first, where empty. */
  private async removeCreatedDirs(h: Host): Promise<void> {
    for (const d of this.createdDirs.splice(0).reverse()) await h.fs.rmdir(d).catch(() => {});
  }
}

async function writeToFd(fd: number, content: FileContent): Promise<void> {
  if (typeof content === 'function') throw new MoreauError('a stream output takes bytes, not a writer');
  const { writeSync } = await import('node:fs');
  const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done, bytes.length - done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw e;
    }
  }
}

/**
 * Undoes the renames of a commit, newest first: a destination renamed in is moved back out (and
 * removed), a moved-aside or backed-up original is put back. Decided from what exists, so it is
 * also right for a commit that was killed half-way (`recoverOutputs`).
 */
async function rollback(h: Host, entries: readonly CommitEntry[]): Promise<void> {
  for (const e of [...entries].reverse()) {
    if (e.kind === 'stream' || !e.tmp) continue;
    const renamedIn = !(await exists(h, e.tmp));
    if (renamedIn) {
      if (e.backup && (await exists(h, e.backup))) {
        if (e.kind === 'dir') {
          await h.fs.rm(e.target, { recursive: true, force: true }).catch(() => {});
          await h.fs.rename(e.backup, e.target).catch(() => {});
        } else {
          await h.fs.rename(e.backup, e.target).catch(() => {});
        }
      } else {
        await h.fs.rm(e.target, { recursive: e.kind === 'dir', force: true }).catch(() => {});
      }
    } else if (e.kind === 'dir' && e.backup && (await exists(h, e.backup)) && !(await exists(h, e.target))) {
      await h.fs.rename(e.backup, e.target).catch(() => {});
    }
  }
}

/**
 * Recovery after the writing process died: undoes its unfinished commits (newest first), removes
 * every temporary path it announced, then every directory it created that is now empty. Only
 * paths from the journal are touched, and a moved-aside original is only ever put back.
 */
export async function recoverOutputs(journal: {
  readonly temporaries: Iterable<string>;
  readonly directories?: Iterable<string>;
  readonly commits?: readonly (readonly CommitEntry[])[];
}): Promise<void> {
  const h = await load();
  const backups = new Map<string, CommitEntry>();
  for (const entries of [...(journal.commits ?? [])].reverse()) {
    await rollback(h, entries);
    for (const e of entries) if (e.backup) backups.set(e.backup, e);
  }
  for (const p of journal.temporaries) {
    const e = backups.get(p);
    // A moved-aside original whose destination is empty goes back, never away.
    if (e?.kind === 'dir' && (await exists(h, p))) {
      if (!(await exists(h, e.target))) await h.fs.rename(p, e.target).catch(() => {});
      if (await exists(h, p)) continue;
    }
    await h.fs.rm(p, { recursive: true, force: true }).catch(() => {});
  }
  for (const d of [...(journal.directories ?? [])].reverse()) await h.fs.rmdir(d).catch(() => {});
}

/** Runs one staged output as its own transaction: committed, or aborted and rethrown. */
async function singleOutput(stage: (tx: OutputTransaction) => Promise<void>): Promise<void> {
  const tx = new OutputTransaction();
  try {
    await stage(tx);
    await tx.commit();
  } catch (e) {
    await tx.abort();
    throw e;
  }
  await tx.finish();
}

/** Writes one file atomically (a transaction of one output). */
export function writeFileAtomic(
  file: string,
  content: FileContent,
  options: FileOutputOptions = {},
): Promise<void> {
  return singleOutput((tx) => tx.file(file, content, options));
}

/** Writes one directory atomically (a transaction of one output). */
export function writeDirAtomic(
  dir: string,
  fill: (tmp: string) => Promise<void>,
  options: DirOutputOptions = {},
): Promise<void> {
  return singleOutput((tx) => tx.dir(dir, fill, options));
}
