/** Runs the CLI: maps errors to exit codes (2 usage, 1 runtime, 130 interrupted) and Ctrl-C to an abort. */
import { AbortError, InputError } from '@moreau/core';
import { CommanderError } from 'commander';
import { createHandlers } from './commands/index.js';
import { buildProgram, UsageError } from './program.js';
import { VERSION } from './version.js';

export async function main(argv: readonly string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\nmoreau: interrupted, stopping (Ctrl-C again to force)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const program = buildProgram(createHandlers(controller.signal), VERSION);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    return reportError(err, program);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function reportError(err: unknown, program: ReturnType<typeof buildProgram>): number {
  if (err instanceof CommanderError) {
    // Help and --version are "errors" with exit code 0; commander already printed its message.
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`moreau: error: ${err.message}\n\n`);
    (err.command ?? program).outputHelp({ error: true });
    return 2;
  }
  if (err instanceof AbortError || (err as Error)?.name === 'AbortError') {
    process.stderr.write('moreau: aborted; nothing was written\n');
    return 130;
  }
  const e = err as Error & { file?: string };
  const message = e?.message ?? String(err);
  process.stderr.write(`moreau: error: ${message}\n`);
  if (process.env.MOREAU_DEBUG && e?.stack) process.stderr.write(`${e.stack}\n`);
  if (!(err instanceof InputError) && e?.name !== 'FormatError' && process.env.MOREAU_DEBUG === undefined) {
    process.stderr.write('(set MOREAU_DEBUG=1 for a stack trace)\n');
  }
  return 1;
}
