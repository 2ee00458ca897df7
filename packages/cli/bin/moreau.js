#!/usr/bin/env node
// The installed `moreau` command. It exists before the build (npm links bins at install time)
// and hands over to the built CLI.
import { existsSync } from 'node:fs';

const built = new URL('../dist/moreau.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write('moreau: the CLI is not built yet; run `npm run build` in the repository first\n');
  process.exit(1);
}
await import(built.href);
