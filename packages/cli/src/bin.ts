#!/usr/bin/env node
/**
 * The `moreau` command: a small supervisor that runs the CLI's work in a child process
 * (worker.ts) and owns Ctrl-C, because a JavaScript signal handler cannot run while the main
 * thread is busy (a plugin's score() in a tight loop would make Ctrl-C useless).
 *
 * - The first SIGINT / SIGTERM is forwarded to the worker, which stops and leaves every output
 *   as it was (exit 130). A second one kills the worker at once (SIGKILL).
 * - The worker announces, before it happens, every temporary path it creates and every commit of
 *   outputs (over IPC, each acknowledged). When it dies without reporting a result, the
 *   supervisor undoes an unfinished commit and removes exactly those paths: a destination is
 *   then exactly as before the run, and nothing else is touched.
 * - A worker that exits without reporting a result (a plugin called process.exit, it was killed
 *   for memory, ...) is an error naming the step it was in, never a silent exit 0.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommitEntry } from '@moreau/core';
import type { WorkerMessage } from './worker.js';

const EXIT_ABORTED = 130;

// A reader of our stderr that went away (a closed pipe) must not end the supervisor.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

// Signals are ours from the first moment: one before the worker starts means it never starts.
let signals = 0;
let killed = false;
let result: number | undefined;
let child: ChildProcess | undefined;
function onSignal(signal: NodeJS.Signals): void {
  if (result !== undefined) return; // the run is over; the worker is leaving
  signals++;
  if (!child) {
    process.stderr.write('\nmoreau: interrupted before starting; nothing was written or changed\n');
    process.exit(EXIT_ABORTED);
  }
  if (signals === 1) {
    process.stderr.write('\nmoreau: interrupted, stopping (Ctrl-C again to stop at once)\n');
    // The worker may already have it (a terminal's Ctrl-C reaches the whole process group).
    child.kill(signal);
    return;
  }
  if (!killed) {
    killed = true;
    process.stderr.write('moreau: stopping now\n');
    child.kill('SIGKILL');
  }
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('SIGHUP', onSignal);

const worker = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');
if (!existsSync(worker)) {
  process.stderr.write(`moreau: the CLI build is incomplete (${worker} is missing); run \`npm run build\`\n`);
  process.exit(1);
}

const temporaries = new Set<string>();
const directories: string[] = [];
const commits = new Map<string, CommitEntry[]>();
let activity = '';

// The inspector flags of this process would make the worker fight over the same port.
const execArgv = process.execArgv.filter((a) => !/^--inspect/.test(a));
const worker$: ChildProcess = fork(worker, process.argv.slice(2), {
  stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  execArgv,
});
child = worker$;

worker$.on('message', (m: WorkerMessage & { id?: number }) => {
  switch (m.t) {
    case 'created':
      if (m.kind === 'temp') temporaries.add(m.path);
      else directories.push(m.path);
      break;
    case 'released':
      temporaries.delete(m.path);
      break;
    case 'committing':
      commits.set(m.cid, m.entries as CommitEntry[]);
      break;
    case 'finished':
      commits.delete(m.cid);
      break;
    case 'activity':
      activity = m.text;
      break;
    case 'done':
      result = m.code;
      break;
  }
  if (typeof m.id === 'number' && worker$.connected) {
    try {
      worker$.send({ ack: m.id });
    } catch {
      // The worker is gone; its exit is handled below.
    }
  }
});

worker$.on('error', (e) => {
  process.stderr.write(`moreau: cannot start the worker process: ${e.message}\n`);
  process.exitCode = 1;
});

worker$.on('exit', (code, signal) => {
  void (async () => {
    if (result !== undefined) {
      // Finished: what it left in flight (if anything) is only temporaries.
      for (const p of temporaries) rmSync(p, { recursive: true, force: true });
      process.exitCode = result;
      return;
    }
    const { recoverOutputs } = await import('@moreau/core');
    await recoverOutputs({ temporaries, directories, commits: [...commits.values()] });
    if (killed || (signals > 0 && (signal === 'SIGINT' || signal === 'SIGTERM' || code === EXIT_ABORTED))) {
      process.stderr.write('moreau: stopped; every output is as before the run\n');
      process.exitCode = EXIT_ABORTED;
      return;
    }
    const where = activity ? ` while ${activity}` : '';
    const how = signal
      ? `was killed by ${signal}${signal === 'SIGKILL' ? ' (out of memory?)' : ''}`
      : `exited with code ${code} without finishing`;
    process.stderr.write(`moreau: error: the run ${how}${where}; every output is as before the run\n`);
    process.exitCode = 1;
  })();
});
