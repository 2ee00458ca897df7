/** What memory there is, and what a whole-model graph would need of it. */

/**
 * Bytes of memory available now (Linux MemAvailable, else os.freemem()); Infinity where neither
 * can be read (core imports no Node module statically, so it also loads in a browser).
 */
export async function availableMemory(): Promise<number> {
  try {
    const { readFileSync } = await import('node:fs');
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  try {
    return (await import('node:os')).freemem();
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** GiB with two decimals, for messages (MiB / KiB below 1 GiB, so small numbers are not 0.00). */
export function gib(bytes: number): string {
  if (bytes >= 2 ** 30 || !Number.isFinite(bytes)) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
}
