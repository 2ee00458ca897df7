/**
 * Helpers of the end-to-end tests that run the BUILT `moreau` binary (not part of the package):
 * spawning it, snapshotting a directory tree, and the shared data paths.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SHARED_DIR } from '@moreau/test-utils';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(repoRoot, 'packages/cli/dist/moreau.js');
export const SHARED = SHARED_DIR;
export const hasDist = existsSync(BIN);

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Sees stderr as it arrives. */
  readonly onStderr?: (all: string, child: ChildProcess) => void;
  /** Called once the process started. */
  readonly onSpawn?: (child: ChildProcess) => void;
}

/** Runs the built binary (from the repository root unless `cwd`). */
export function moreau(args: readonly string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...options.env };
    delete env.MOREAU_DEBUG;
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      options.onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    options.onSpawn?.(child);
  });
}

/** Everything under `dir` (file contents hashed by length + sum), for "exactly as before" checks. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out[r] = `-> ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[`${r}/`] = 'dir';
        walk(p, r);
      } else {
        const b = readFileSync(p);
        let sum = 0;
        for (let i = 0; i < b.length; i += 97) sum = (sum * 31 + b[i]!) >>> 0;
        out[r] = `${b.length}:${sum}`;
      }
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

/** Names this tool's temporaries carry (`.NAME.moreau-tmp-<hex>`, ...): none may be left behind. */
export const leftovers = (dir: string) => readdirSync(dir).filter((f) => /\.moreau-(tmp|old|probe)-/.test(f));

/** The stories260K files under the shared folder. */
export const STORIES = {
  model: path.join(SHARED, 'models/stories260K/stories260K.bin'),
  tok: path.join(SHARED, 'models/stories260K/tok512.bin'),
  ts: path.join(SHARED, 'data/tinystories/tinystories_validation_head.txt'),
  arc: path.join(SHARED, 'data/zeroshot/arc_easy.jsonl'),
};
export const hasStories = Object.values(STORIES).every((f) => existsSync(f));
