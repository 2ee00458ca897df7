import { AbortError } from '@moreau/core';
import type { Handlers } from '../../program.js';
import type { CommandContext } from '../context.js';
import { isStdout, RunOutputs } from '../output.js';
import { ProgressReporter } from '../progress.js';

/** What a finished run leaves to do once its exit status is settled (remove replaced originals). */
export type Finisher = () => Promise<void>;

/**
 * The command handlers: each builds the command's context (its flags, a progress reporter honouring
 * --quiet, the Ctrl-C signal, stdout or stderr for the human results, the run's outputs) and
 * imports its command when it runs, so `--help`, `--version` and usage errors answer without
 * loading the tensor engines.
 *
 * A run's outputs are put in place only when the command succeeded and no interrupt came first;
 * an interrupt ends the command at once (even a step that never checks the signal), and then
 * nothing was changed. A command that saves work of its own on an interrupt (`tune` writes a
 * checkpoint at the last completed step) is awaited instead: it checks the signal between steps,
 * and a second Ctrl-C still ends the process at once (the supervisor's). `onFinish` receives what
 * to do after the exit status is reported.
 */
export function createHandlers(signal: AbortSignal, onFinish: (f: Finisher) => void = () => {}): Handlers {
  const stdout = (text: string) => {
    process.stdout.write(text);
  };
  const stderr = (text: string) => {
    process.stderr.write(text);
  };
  const run = async <F>(
    flags: F & { readonly quiet?: boolean; readonly json?: string },
    command: (ctx: CommandContext<F>) => Promise<void>,
    { savesOnAbort = false }: { savesOnAbort?: boolean } = {},
  ) => {
    const quiet = Boolean(flags.quiet);
    const progress = new ProgressReporter(quiet);
    const jsonOnStdout = isStdout(flags.json);
    const out = jsonOnStdout ? (quiet ? () => {} : stderr) : stdout;
    const outputs = new RunOutputs(stdout);
    try {
      const work = command({ flags, progress, signal, out, outputs });
      await (savesOnAbort ? work : untilAborted(work, signal));
      if (signal.aborted) throw new AbortError();
      progress.stop();
      await outputs.commit();
    } catch (e) {
      await outputs.abort();
      throw e;
    } finally {
      progress.stop();
    }
    onFinish(() => outputs.finish());
  };
  return {
    info: (m, f) => run(f, async (c) => (await import('./info.js')).infoCommand(m, c)),
    eval: (m, f) => run(f, async (c) => (await import('./eval.js')).evalCommand(m, c)),
    prune: (m, f) => run(f, async (c) => (await import('./prune.js')).pruneCommand(m, c)),
    compare: (m, f) => run(f, async (c) => (await import('./compare.js')).compareCommand(m, c)),
    tune: (m, f) =>
      run(f, async (c) => (await import('./tune.js')).tuneCommand(m, c), { savesOnAbort: true }),
    robustness: (m, f) => run(f, async (c) => (await import('./robustness.js')).robustnessCommand(m, c)),
    export: (m, f) => run(f, async (c) => (await import('./export.js')).exportCommand(m, c)),
    generate: (m, f) => run(f, async (c) => (await import('./generate.js')).generateCommand(m, c)),
    criteria: (f) => run(f, async (c) => (await import('./criteria.js')).criteriaCommand(c)),
    init: (f) => run(f, async (c) => (await import('./init.js')).initCommand(c)),
  };
}

/**
 * The command's promise, or an AbortError as soon as the signal fires: a step that ignores the
 * signal (a plugin's score(), a long native call) does not hold the run after Ctrl-C.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(new AbortError());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(new AbortError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
