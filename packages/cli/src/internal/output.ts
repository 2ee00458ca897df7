/**
 * The outputs of one command run, in one transaction (core's atomic-write): every destination is
 * checked before the work starts, every output is staged under a temporary name while the command
 * runs, and all of them are put in place together when it succeeds. An error or an interrupt
 * before that leaves every destination exactly as it was.
 *
 * `--json -` (or a path that is this process's stdout, e.g. `/dev/stdout`) prints the JSON on
 * stdout after the commit; the command's human-readable results then go to stderr.
 */
import { fstatSync, rmSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import {
  checkDirOutput,
  checkFileOutput,
  type DirOutputOptions,
  type FileContent,
  type FileOutputOptions,
  OutputTransaction,
  pendingTemporaries,
} from '@moreau/core';

/** `-`, or a path naming the file this process's stdout is (e.g. `/dev/stdout`). */
export function isStdout(value: string | undefined): boolean {
  if (value === undefined) return false;
  if (value === '-') return true;
  try {
    const a = statSync(value);
    const b = fstatSync(1);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

export class RunOutputs {
  readonly tx = new OutputTransaction();
  private json: { value: unknown } | undefined;
  private committed = false;

  constructor(private readonly stdout: (text: string) => void) {}

  /** Checks a file destination before any work (`--json -` needs no check). */
  async checkFile(label: string, file: string | undefined, options: FileOutputOptions = {}): Promise<void> {
    if (file === undefined || (label === '--json' && isStdout(file))) return;
    await checkFileOutput(file, { label, ...options });
  }

  /** Checks a directory destination before any work. */
  async checkDir(label: string, dir: string, options: DirOutputOptions = {}): Promise<void> {
    await checkDirOutput(dir, { label, ...options });
  }

  /** Stages a file. */
  async file(
    label: string,
    file: string,
    content: FileContent,
    options: FileOutputOptions = {},
  ): Promise<void> {
    await this.tx.file(file, content, { label, ...options });
  }

  /** Stages a directory. */
  async dir(
    label: string,
    dir: string,
    fill: (tmp: string) => Promise<void>,
    options: DirOutputOptions = {},
  ) {
    await this.tx.dir(dir, fill, { label, ...options });
  }

  /** The --json result: staged as a file, or printed on stdout after the commit. */
  async writeJson(file: string, value: unknown): Promise<void> {
    if (isStdout(file)) this.json = { value };
    else await this.file('--json', file, `${JSON.stringify(value, null, 2)}\n`);
  }

  /** Puts every staged output in place, then prints the stdout JSON. */
  async commit(): Promise<void> {
    await this.tx.commit();
    this.committed = true;
    if (this.json) this.stdout(`${JSON.stringify(this.json.value, null, 2)}\n`);
  }

  /** Removes what was staged (the destinations were never touched). */
  async abort(): Promise<void> {
    if (!this.committed) await this.tx.abort();
  }

  /** After a successful run: makes the commit final and removes the replaced originals. */
  async finish(): Promise<void> {
    if (this.committed) await this.tx.finish();
  }
}

/** Synchronously removes every temporary path still in flight (an unsupervised forced exit). */
export function removeTemporariesSync(): void {
  for (const p of pendingTemporaries()) rmSync(p, { recursive: true, force: true });
}

/** The entries of `dir`, or undefined when it does not exist / is not a directory. */
export async function entriesOf(dir: string): Promise<string[] | undefined> {
  return readdir(dir).catch(() => undefined);
}

/** What `moreau prune` / `moreau init` write into --out: a directory holding only these is an earlier output. */
export const PRUNE_OUTPUT = [
  /^config\.json$/,
  /^generation_config\.json$/,
  /^model\.safetensors$/,
  /^model\.safetensors\.index\.json$/,
  /^model-\d+-of-\d+\.safetensors$/,
  /^tokenizer\.(json|bin|model)$/,
  /^tokenizer_config\.json$/,
  /^special_tokens_map\.json$/,
  /^sparsity\.json$/,
];
