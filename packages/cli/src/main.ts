/** Runs the CLI: maps errors to exit codes (2 usage, 1 runtime, 130 interrupted) and Ctrl-C to an abort. */
import { AbortError, MoreauError } from '@moreau/core';
import { type Command, CommanderError } from 'commander';
import { pluginOfCriterion } from './internal/activity.js';
import { createHandlers, type Finisher } from './internal/commands/index.js';
import { UsageError } from './internal/flags.js';
import { removeTemporariesSync } from './internal/output.js';
import { buildProgram } from './program.js';
import { VERSION } from './version.js';

export const EXIT = { ok: 0, runtime: 1, usage: 2, aborted: 130 } as const;

export interface MainOptions {
  /**
   * A supervising process (bin) handles Ctrl-C: it prints the notice, forwards the first signal
   * and force-kills on the second. Here every SIGINT / SIGTERM only aborts the run.
   */
  readonly supervised?: boolean;
  /** Receives what to do once the exit status is reported (remove replaced originals). */
  readonly onFinish?: (f: Finisher) => void;
}

/** Longest message printed (a hostile input must not flood the terminal). */
const MAX_MESSAGE = 2000;

export async function main(argv: readonly string[], options: MainOptions = {}): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (options.supervised) {
      controller.abort();
      return;
    }
    if (interrupts > 1) {
      removeTemporariesSync();
      process.stderr.write('moreau: forced exit\n');
      process.exit(EXIT.aborted);
    }
    process.stderr.write('\nmoreau: interrupted, stopping (Ctrl-C again to force)\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let finish: Finisher | undefined;
  const program = buildProgram(
    createHandlers(controller.signal, (f) => {
      finish = f;
    }),
    VERSION,
  );
  // The command whose action runs: its name is the one a usage error points at.
  let active: Command = program;
  program.hook('preAction', (_root, actionCommand) => {
    active = actionCommand;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    if (finish) {
      if (options.onFinish) options.onFinish(finish);
      else await finish();
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(err, active, controller.signal.aborted);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** `moreau` or `moreau <command>`. */
const commandName = (c: Command) => `moreau${c.parent ? ` ${c.name()}` : ''}`;

/** The one line under a usage error. */
export const helpHint = (c: Command) => `(run '${commandName(c)} --help' for its flags)\n`;

/** One line, no terminal colour codes, at most MAX_MESSAGE characters. */
export function bounded(message: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal colour codes are the point
  const plain = message.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  const one = plain.replace(/\s*\n\s*/g, ' ').trim();
  return one.length > MAX_MESSAGE ? `${one.slice(0, MAX_MESSAGE)}… (${one.length} characters)` : one;
}

/** The tensor engine's out-of-memory text, said plainly (with what to change). */
function engineMessage(message: string): string {
  const alloc =
    /(Failed to allocate memory[^.;]*|std::bad_alloc|Array buffer allocation failed|out of memory)/i.exec(
      message,
    );
  if (!alloc) return message;
  return `the tensor engine ran out of memory (${alloc[1]}); use a smaller --batch-size or --seq-len, or a machine with more memory`;
}

/** A criterion a plugin registered, named with its plugin in a message about it. */
function withPlugin(message: string): string {
  for (const [name, plugin] of pluginOfCriterion) {
    if (message.includes(`criterion '${name}'`) && !message.includes(`plugin '${plugin}'`)) {
      return message.replace(`criterion '${name}'`, `criterion '${name}' (plugin '${plugin}')`);
    }
  }
  return message;
}

function reportError(err: unknown, command: Command, aborted: boolean): number {
  if (err instanceof CommanderError) {
    // Help and --version are "errors" with exit code 0; commander already printed the message.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`${commandName(command)}: error: ${bounded(err.message)}\n${helpHint(command)}`);
    return EXIT.usage;
  }
  if (err instanceof AbortError || (err as Error)?.name === 'AbortError' || aborted) {
    process.stderr.write('moreau: interrupted; nothing was written or changed\n');
    return EXIT.aborted;
  }
  const e = err as Error;
  const message = withPlugin(engineMessage(bounded(e?.message ?? String(err))));
  process.stderr.write(`moreau: error: ${message}\n`);
  if (process.env.MOREAU_DEBUG && e?.stack) process.stderr.write(`${e.stack}\n`);
  else if (!(err instanceof MoreauError)) {
    process.stderr.write('(set MOREAU_DEBUG=1 for a stack trace)\n');
  }
  return EXIT.runtime;
}
