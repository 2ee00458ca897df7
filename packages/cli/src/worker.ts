/**
 * The CLI's work, run in a child process of the `moreau` command (bin.ts supervises it). It tells
 * the supervisor, over IPC and before each happens, every temporary path it is about to create,
 * every commit of outputs and every named step (a plugin loading, a plugin criterion scoring),
 * and waits for each acknowledgement; so after a forced kill the supervisor removes exactly what
 * this process created and undoes an unfinished commit.
 *
 * Also here: a plugin that calls process.exit() fails the run naming the plugin; a run whose work
 * stops without finishing (a promise that never settles, nothing left to wait for) fails naming
 * the step instead of exiting 0.
 */

import { rmSync } from 'node:fs';
import { type OutputJournal, pendingTemporaries, setOutputJournal } from '@moreau/core';
import { currentActivity, PluginExit, setActivitySink } from './internal/activity.js';
import type { Finisher } from './internal/commands/index.js';
import { main } from './main.js';

/** Messages to the supervisor; each is acknowledged with `{ ack: id }`. */
export type WorkerMessage =
  | { t: 'created'; path: string; kind: 'temp' | 'dir' }
  | { t: 'released'; path: string }
  | { t: 'committing'; cid: string; entries: unknown[] }
  | { t: 'finished'; cid: string }
  | { t: 'activity'; text: string }
  | { t: 'done'; code: number };

const exit = process.exit.bind(process);
/** The run reported its result (or is reporting it). */
let settled = false;
let connected = typeof process.send === 'function';
let nextId = 0;
const waiting = new Map<number, () => void>();

/** Sends a message and waits for the supervisor's acknowledgement (no-op without a supervisor). */
function tell(message: WorkerMessage): Promise<void> {
  if (!connected) return Promise.resolve();
  const id = ++nextId;
  return new Promise<void>((resolve) => {
    waiting.set(id, resolve);
    // Keep the process alive while an answer is due, and only then.
    (process.channel as { ref?: () => void } | undefined)?.ref?.();
    try {
      process.send!({ ...message, id });
    } catch {
      connected = false;
      waiting.delete(id);
      resolve();
    }
  });
}

process.on('message', (m: { ack?: number }) => {
  const resolve = m && typeof m.ack === 'number' ? waiting.get(m.ack) : undefined;
  if (!resolve) return;
  waiting.delete(m.ack!);
  if (waiting.size === 0) (process.channel as { unref?: () => void } | undefined)?.unref?.();
  resolve();
});
process.on('disconnect', () => {
  // The supervisor is gone (killed): nobody can stop this run or hear its result any more, so it
  // stops as if interrupted (its outputs stay as they were).
  connected = false;
  for (const resolve of waiting.values()) resolve();
  waiting.clear();
  if (!settled) process.kill(process.pid, 'SIGTERM');
});
(process.channel as { unref?: () => void } | undefined)?.unref?.();

const journal: OutputJournal = {
  created: (path, kind) => tell({ t: 'created', path, kind }),
  released: (path) => tell({ t: 'released', path }),
  committing: (cid, entries) => tell({ t: 'committing', cid, entries: [...entries] }),
  finished: (cid) => tell({ t: 'finished', cid }),
};
setOutputJournal(journal);
setActivitySink((text) => tell({ t: 'activity', text }));

// Closed pipes (`moreau ... | head`) are not errors: drop the rest of that stream's output.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

// A plugin's process.exit() becomes an error naming the step it was called in, not an exit.
process.exit = ((code?: number | string | null) => {
  throw new PluginExit(code);
}) as typeof process.exit;

async function end(code: number, finish?: Finisher): Promise<never> {
  settled = true;
  await tell({ t: 'done', code });
  if (finish) await finish().catch(() => {});
  for (const p of pendingTemporaries()) rmSync(p, { recursive: true, force: true });
  process.stdout.write('', () => process.stderr.write('', () => exit(code)));
  // If a stream never drains (a stuck pipe), leave anyway.
  setTimeout(() => exit(code), 2000).unref();
  return new Promise<never>(() => {});
}

function fail(message: string): void {
  if (settled) return;
  process.stderr.write(`moreau: error: ${message}\n`);
  void end(1);
}

process.on('uncaughtException', (e) => {
  const step = currentActivity();
  fail(`${(e as Error)?.message ?? String(e)}${step && !String(e).includes(step) ? ` (while ${step})` : ''}`);
});
process.on('unhandledRejection', () => {
  // A rejection the command abandoned (e.g. a plugin's work after Ctrl-C): not the run's result.
});
process.on('beforeExit', () => {
  // Nothing is left to wait for, yet the command has not finished: a promise that never settles.
  const step = currentActivity();
  fail(
    step
      ? `${step} never finished: it returned a promise that never settles (and nothing else was left to do)`
      : 'the command stopped before finishing: a promise never settled',
  );
});

let finish: Finisher | undefined;
main(process.argv.slice(2), {
  supervised: connected,
  onFinish: (f) => {
    finish = f;
  },
}).then(
  (code) => end(code, code === 0 ? finish : undefined),
  (err) => {
    process.stderr.write(`moreau: fatal: ${err instanceof Error ? err.message : String(err)}\n`);
    return end(1);
  },
);
