/** Where the shared models and data live for tests: MOREAU_SHARED, default <repo>/../shared. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const SHARED = process.env.MOREAU_SHARED ?? path.resolve(repoRoot, '../shared');

/** The files among `rel` (relative to SHARED) that are missing; warns once with a clear message. */
export function missingShared(what: string, rel: readonly string[]): string[] {
  const missing = rel.map((r) => path.join(SHARED, r)).filter((f) => !existsSync(f));
  if (missing.length > 0) {
    console.warn(`${what} skipped: missing ${missing.join(', ')} (set MOREAU_SHARED to the shared folder)`);
  }
  return missing;
}
