import type { Handlers } from '../../program.js';
import type { CommandContext } from '../context.js';
import { ProgressReporter } from '../progress.js';

/**
 * The command handlers: each builds the command's context (its flags, a progress reporter honouring
 * --quiet, the Ctrl-C signal, stdout) and imports its command when it runs, so `--help`,
 * `--version` and usage errors answer without loading the tensor engines.
 */
export function createHandlers(signal: AbortSignal): Handlers {
  const out = (text: string) => {
    process.stdout.write(text);
  };
  const run = async <F>(
    flags: F & { readonly quiet?: boolean },
    command: (ctx: CommandContext<F>) => Promise<void>,
  ) => {
    const progress = new ProgressReporter(Boolean(flags.quiet));
    try {
      await command({ flags, progress, signal, out });
    } finally {
      progress.stop();
    }
  };
  return {
    info: (m, f) => run(f, async (c) => (await import('./info.js')).infoCommand(m, c)),
    eval: (m, f) => run(f, async (c) => (await import('./eval.js')).evalCommand(m, c)),
    prune: (m, f) => run(f, async (c) => (await import('./prune.js')).pruneCommand(m, c)),
    compare: (m, f) => run(f, async (c) => (await import('./compare.js')).compareCommand(m, c)),
    tune: (m, f) => run(f, async (c) => (await import('./tune.js')).tuneCommand(m, c)),
    robustness: (m, f) => run(f, async (c) => (await import('./robustness.js')).robustnessCommand(m, c)),
    export: (m, f) => run(f, async (c) => (await import('./export.js')).exportCommand(m, c)),
    generate: (m, f) => run(f, async (c) => (await import('./generate.js')).generateCommand(m, c)),
    criteria: (f) => run(f, async (c) => (await import('./criteria.js')).criteriaCommand(c)),
    init: (f) => run(f, async (c) => (await import('./init.js')).initCommand(c)),
  };
}
