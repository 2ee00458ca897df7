/** Runs the CLI: maps errors to exit codes (2 usage, 1 runtime, 130 interrupted) and Ctrl-C to an abort. */
import { AbortError, MoreauError } from '@moreau/core';
import { type Command, CommanderError } from 'commander';
import { createHandlers } from './internal/commands/index.js';
import { UsageError } from './internal/flags.js';
import { removeTemporariesSync } from './internal/output.js';
import { buildProgram } from './program.js';
import { VERSION } from './version.js';

export const EXIT = { ok: 0, runtime: 1, usage: 2, aborted: 130 } as const;

export async function main(argv: readonly string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
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
  const program = buildProgram(createHandlers(controller.signal), VERSION);
  // The command whose action runs: its help is the relevant one for a usage error.
  let active: Command = program;
  program.hook('preAction', (_root, actionCommand) => {
    active = actionCommand;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    return reportError(err, active, controller.signal.aborted);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function reportError(err: unknown, command: Command, aborted: boolean): number {
  if (err instanceof CommanderError) {
    // Help and --version are "errors" with exit code 0; commander already printed message and help.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`moreau${command.parent ? ` ${command.name()}` : ''}: error: ${err.message}\n\n`);
    command.outputHelp({ error: true });
    return EXIT.usage;
  }
  if (err instanceof AbortError || (err as Error)?.name === 'AbortError' || aborted) {
    process.stderr.write('moreau: aborted; no partial output was left behind\n');
    return EXIT.aborted;
  }
  const e = err as Error;
  const message = e?.message ?? String(err);
  process.stderr.write(`moreau: error: ${message}\n`);
  if (process.env.MOREAU_DEBUG && e?.stack) process.stderr.write(`${e.stack}\n`);
  else if (!(err instanceof MoreauError)) {
    process.stderr.write('(set MOREAU_DEBUG=1 for a stack trace)\n');
  }
  return EXIT.runtime;
}
