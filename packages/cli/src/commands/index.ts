import type { Handlers } from '../program.js';
import { ProgressReporter } from '../progress.js';
import type { Opts } from './context.js';

type Command = (m: string, o: Opts, p: ProgressReporter, s: AbortSignal) => Promise<void>;

/**
 * The command handlers. Each is imported when its command runs, so `--help`, `--version` and
 * usage errors answer without loading the tensor engines.
 */
export function createHandlers(signal: AbortSignal): Handlers {
  const withProgress = (load: () => Promise<Command>) => async (m: string, o: Record<string, unknown>) => {
    const run = await load();
    const p = new ProgressReporter(Boolean(o.quiet));
    try {
      await run(m, o, p, signal);
    } finally {
      p.stop();
    }
  };
  return {
    info: async (m, o) => (await import('./info.js')).infoCommand(m, o),
    eval: withProgress(async () => (await import('./eval.js')).evalCommand),
    prune: withProgress(async () => (await import('./prune.js')).pruneCommand),
    compare: withProgress(async () => (await import('./compare.js')).compareCommand),
    robustness: withProgress(async () => (await import('./robustness.js')).robustnessCommand),
    export: withProgress(async () => (await import('./export.js')).exportCommand),
    generate: withProgress(async () => (await import('./generate.js')).generateCommand),
    criteria: async (o) => (await import('./criteria.js')).criteriaCommand(o),
  };
}
