/**
 * File helpers shared by the readers and writers: positional reads that fill a buffer completely,
 * a forward reader over a file handle for headers of unknown length, and atomic file / directory
 * writes (write next to the target, then rename; nothing half-written is left behind on failure).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, constants as fsConstants, renameSync, rmSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { describeError, FormatError } from './errors.js';

/** Largest single read / write handed to the OS (Node limits one call to < 2 GiB). */
const MAX_IO = 1 << 30;

export function assertLittleEndianHost(file: string): void {
  if (endianness() !== 'LE') {
    throw new FormatError(
      file,
      'this reader needs a little-endian host (all supported formats are little-endian)',
    );
  }
}

/** A whole file; a missing or unreadable file becomes a FormatError naming it. */
export async function readWholeFile(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (e) {
    throw new FormatError(file, `cannot read (${describeError(e)})`, { cause: e });
  }
}

export type JsonObject = Record<string, unknown>;

export function isJsonObject(x: unknown): x is JsonObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** A whole JSON file, parsed, and its bytes; FormatError when it cannot be read or is not valid JSON. */
export async function readJsonFile(file: string): Promise<{ json: unknown; bytes: Uint8Array }> {
  const bytes = await readWholeFile(file);
  try {
    return { json: JSON.parse(new TextDecoder().decode(bytes)), bytes };
  } catch (e) {
    throw new FormatError(file, `is not valid JSON (${describeError(e)})`, { cause: e });
  }
}

/** Open a file for reading; a missing or unreadable file becomes a FormatError naming it. */
export async function openForRead(file: string): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new FormatError(file, `cannot open for reading (${describeError(e)})`, { cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new FormatError(file, 'is not a regular file');
    return { fh, size: st.size };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/**
 * Fill `dst` from `position` of the file. Throws a FormatError naming `what` when the file ends
 * first (so a truncated file gives expected vs actual bytes).
 */
export async function readExactly(
  fh: FileHandle,
  file: string,
  dst: Uint8Array,
  position: number,
  what: string,
): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const n = Math.min(MAX_IO, dst.length - done);
    const { bytesRead } = await fh.read(dst, done, n, position + done);
    if (bytesRead === 0) {
      throw new FormatError(
        file,
        `truncated: ${what} needs bytes ${position}..${position + dst.length} but the file ends at byte ${position + done}`,
      );
    }
    done += bytesRead;
  }
}

export async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const n = Math.min(MAX_IO, data.length - done);
    const { bytesWritten } = await fh.write(data, done, n);
    done += bytesWritten;
  }
}

/**
 * A forward reader over a file handle that reads in chunks on demand, for headers whose length is
 * only known while parsing (GGUF metadata). Every value is little-endian.
 */
export class ChunkedReader {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0; // file offset of buf[0]
  /** Current file offset. */
  pos = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly file: string,
    readonly fileSize: number,
    private readonly chunk = 1 << 20,
  ) {}

  /** Make bytes [pos, pos + n) available; `what` names the field for the truncation error. */
  async ensure(n: number, what: string): Promise<void> {
    if (this.pos + n > this.fileSize) {
      throw new FormatError(
        this.file,
        `truncated: ${what} at byte ${this.pos} needs ${n} bytes but the file has ${this.fileSize} bytes`,
      );
    }
    if (this.pos >= this.bufStart && this.pos + n <= this.bufStart + this.buf.length) return;
    const len = Math.min(Math.max(n, this.chunk), this.fileSize - this.pos);
    const buf = new Uint8Array(len);
    await readExactly(this.fh, this.file, buf, this.pos, what);
    this.buf = buf;
    this.view = new DataView(buf.buffer);
    this.bufStart = this.pos;
  }

  private at(n: number): number {
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  async u8(what: string): Promise<number> {
    await this.ensure(1, what);
    return this.view.getUint8(this.at(1));
  }
  async i8(what: string): Promise<number> {
    await this.ensure(1, what);
    return this.view.getInt8(this.at(1));
  }
  async u16(what: string): Promise<number> {
    await this.ensure(2, what);
    return this.view.getUint16(this.at(2), true);
  }
  async i16(what: string): Promise<number> {
    await this.ensure(2, what);
    return this.view.getInt16(this.at(2), true);
  }
  async u32(what: string): Promise<number> {
    await this.ensure(4, what);
    return this.view.getUint32(this.at(4), true);
  }
  async i32(what: string): Promise<number> {
    await this.ensure(4, what);
    return this.view.getInt32(this.at(4), true);
  }
  async f32(what: string): Promise<number> {
    await this.ensure(4, what);
    return this.view.getFloat32(this.at(4), true);
  }
  async f64(what: string): Promise<number> {
    await this.ensure(8, what);
    return this.view.getFloat64(this.at(8), true);
  }
  async u64(what: string): Promise<bigint> {
    await this.ensure(8, what);
    return this.view.getBigUint64(this.at(8), true);
  }
  async i64(what: string): Promise<bigint> {
    await this.ensure(8, what);
    return this.view.getBigInt64(this.at(8), true);
  }
  /** A u64 that must fit a JS safe integer (counts, lengths, offsets). */
  async u64Number(what: string): Promise<number> {
    const v = await this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(
        this.file,
        `${what} at byte ${this.pos - 8} is ${v}, larger than any sensible value`,
      );
    }
    return Number(v);
  }
  async bytes(n: number, what: string): Promise<Uint8Array> {
    await this.ensure(n, what);
    const o = this.at(n);
    return this.buf.subarray(o, o + n);
  }
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

/** Decode UTF-8, throwing a FormatError naming `what` on malformed input. */
export function decodeUtf8(bytes: Uint8Array, file: string, what: string): string {
  try {
    return utf8Fatal.decode(bytes);
  } catch {
    throw new FormatError(file, `${what} is not valid UTF-8`);
  }
}

export function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}

/** What to undo if the process exits in the middle of an atomic write (run synchronously). */
const pendingCleanups = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Register a synchronous cleanup until `release()`: should the process exit in between (a forced
 * exit on a second Ctrl-C, process.exit from a signal handler), it runs on the way out, so an
 * interrupted write never leaves a half-written file or directory behind.
 */
function onExitUntilDone(cleanup: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of pendingCleanups) {
        try {
          c();
        } catch {}
      }
    });
  }
  pendingCleanups.add(cleanup);
  return () => {
    pendingCleanups.delete(cleanup);
  };
}

/** Remove `path` (file or directory) if the process exits before `release()`. */
function trackTemp(path: string): () => void {
  return onExitUntilDone(() => rmSync(path, { recursive: true, force: true }));
}

/**
 * Write a file atomically: `fill` writes into a temporary file in the same directory, which is
 * fsync'ed and renamed over `file`. On any failure the temporary file is removed and `file` is
 * untouched.
 */
export async function writeFileAtomic(file: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${randomSuffix()}`);
  let fh: FileHandle | undefined;
  const release = trackTemp(tmp);
  try {
    fh = await open(tmp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o644);
    await fill(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, file);
  } catch (e) {
    if (fh) await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  } finally {
    release();
  }
}

async function isNonEmptyDir(dir: string): Promise<boolean | undefined> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) return true;
    return (await readdir(dir)).length > 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Create a directory atomically: `fill` writes into `${dir}.tmp-<random>` (same parent), which is
 * then renamed to `dir`. A `dir` that exists and is not empty is an error unless `overwrite`, in
 * which case the old directory is moved aside, the new one moved in, and the old one deleted (and
 * restored if the swap fails). On failure the temporary directory is removed.
 */
export async function writeDirAtomic(
  dir: string,
  fill: (tmpDir: string) => Promise<void>,
  options: { overwrite?: boolean } = {},
): Promise<void> {
  // Temporary names are built from the resolved path: 'out/' (a trailing slash) must give 'out.tmp-*'.
  const target = resolve(dir);
  const state = await isNonEmptyDir(target);
  if (state === true && !options.overwrite) {
    throw new FormatError(dir, 'already exists and is not empty (pass { overwrite: true } to replace it)');
  }
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${randomSuffix()}`;
  const release = trackTemp(tmp);
  await mkdir(tmp);
  try {
    await fill(tmp);
    const now = await isNonEmptyDir(target);
    if (now === undefined) {
      await rename(tmp, target);
    } else if (now === false) {
      await rm(target, { recursive: true, force: true });
      await rename(tmp, target);
    } else {
      if (!options.overwrite) {
        throw new FormatError(
          dir,
          'appeared while writing and is not empty (pass { overwrite: true } to replace it)',
        );
      }
      const old = `${target}.old-${randomSuffix()}`;
      // An exit between the two renames puts the old directory back; one after them removes it.
      let swapped = false;
      const undo = onExitUntilDone(() => {
        if (swapped) rmSync(old, { recursive: true, force: true });
        else if (existsSync(old) && !existsSync(target)) renameSync(old, target);
      });
      try {
        await rename(target, old);
        try {
          await rename(tmp, target);
          swapped = true;
        } catch (e) {
          await rename(old, target).catch(() => {});
          throw e;
        }
        await rm(old, { recursive: true, force: true });
      } finally {
        undo();
      }
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  } finally {
    release();
  }
}
