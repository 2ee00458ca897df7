/**
 * What the run is doing right now (loading a plugin, a plugin's criterion scoring), so a run that
 * ends without finishing can say where it stopped. A supervising process hears of each change
 * before it happens (see worker.ts), so it can name the step even if this process dies in it.
 */

export type ActivitySink = (text: string) => void | Promise<void>;

let sink: ActivitySink | undefined;
let current = '';

export function setActivitySink(s: ActivitySink | undefined): void {
  sink = s;
}

/** The step in progress ('' when nothing in particular). */
export function currentActivity(): string {
  return current;
}

/** Records the step in progress (and tells the supervisor, awaiting its acknowledgement). */
export async function setActivity(text: string): Promise<void> {
  current = text;
  await sink?.(text);
}

/** What a plugin's process.exit() becomes in the worker: an error, not an exit. */
export class PluginExit extends Error {
  override name = 'PluginExit';
  constructor(readonly code: unknown) {
    super(`called process.exit(${code ?? ''}): a plugin must not end the process`);
  }
}

/** Plugin criteria by name: the module each came from (for messages). */
export const pluginOfCriterion = new Map<string, string>();

/** Runs `body` as the named step, restoring the previous one afterwards. */
export async function during<T>(text: string, body: () => Promise<T>): Promise<T> {
  const previous = current;
  await setActivity(text);
  try {
    return await body();
  } finally {
    await setActivity(previous);
  }
}
