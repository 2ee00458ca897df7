/**
 * Every command of the README runs as written: each ```sh block (but the install and test blocks,
 * which are what CI itself runs: `npm ci`, `npm test`) is run by bash, unchanged, from a folder
 * laid out like a fresh clone (its node_modules are the repository's, so `npx moreau` resolves
 * the same bin; `../shared` is the shared data folder). Nothing is added to the commands: the
 * README keeps them small enough to run as they are.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, hasDist, leftovers, repoRoot, SHARED } from './e2e-helpers.js';

const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
/** The ```sh blocks, in order. */
const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
const isSetup = (b: string) => /^\s*npm (ci|test|install)\b/m.test(b);
// The blocks of moreau commands (a block of other tools, e.g. a Python conversion one-liner with
// placeholder folders, is the user's to adapt).
const runnable = blocks.filter((b) => !isSetup(b) && /^\s*npx moreau /m.test(b));
const needsShared = (b: string) => b.includes('../shared');
const hasShared = existsSync(path.join(SHARED, 'models/stories260K/stories260K.bin'));

if (!hasDist) console.warn(`README e2e test skipped: ${BIN} is missing (run \`npm run build\` first)`);
if (hasDist && !hasShared)
  console.warn(`README blocks that read ../shared are skipped: ${SHARED} is missing (set MOREAU_SHARED)`);

const TMP = mkdtempSync(path.join(tmpdir(), 'moreau-readme-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const clone = path.join(TMP, 'clone');
mkdirSync(clone);
symlinkSync(path.join(repoRoot, 'node_modules'), path.join(clone, 'node_modules'));
// The repository files the README's commands read (a fresh clone has them; copies, so no command
// can change the repository).
for (const file of ['packages/models/assets/tiny/heldout.txt']) {
  mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
  copyFileSync(path.join(repoRoot, file), path.join(clone, file));
}
if (hasShared) symlinkSync(path.resolve(SHARED), path.join(TMP, 'shared'));

describe.skipIf(!hasDist)('the README, as written (built binary)', () => {
  it('has its commands in sh blocks, every one written to run (npx moreau, not a bare moreau)', () => {
    expect(runnable.length).toBeGreaterThanOrEqual(2);
    for (const b of blocks) {
      for (const line of b.split('\n'))
        expect(line, 'a bare `moreau` needs a global install').not.toMatch(/^\s*moreau /);
    }
  });

  runnable.forEach((block, i) => {
    const first =
      block
        .trim()
        .split('\n')
        .find((l) => l.includes('moreau')) ?? block.trim().split('\n')[0]!;
    it.skipIf(needsShared(block) && !hasShared)(
      `block ${i + 1} runs: ${first.slice(0, 70)}`,
      async () => {
        const r = await bash(block);
        expect(r.status, `${block}\n--- stderr ---\n${r.stderr.slice(-4000)}`).toBe(0);
        expect(leftovers(clone)).toEqual([]);
        if (block.includes('compare tiny --criteria taylor,moreau-gs --ratios 0.2 --report report')) {
          // The quick start prints the table the README shows: same rows, same numbers (but seconds).
          const rows = (text: string) =>
            [...text.matchAll(/^\| (dense|taylor|moreau-gs) .*$/gm)].map((m) =>
              m[0]
                .split('|')
                .slice(1, -2)
                .map((c) => c.trim()),
            );
          const shown = rows(readme.slice(readme.indexOf(block))).slice(0, 3);
          expect(shown.length).toBe(3);
          expect(rows(r.stdout).slice(0, 3)).toEqual(shown);
          expect(existsSync(path.join(clone, 'report/report.html'))).toBe(true);
        }
      },
      1_000_000,
    );
  });
});

/** Runs a block with bash in the clone; on a timeout the whole process group is killed. */
function bash(block: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-x', '-c', block], {
      cwd: clone,
      env: { ...process.env, MOREAU_DEBUG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      stderr += '\n(timed out after 900 s: killed)';
      process.kill(-child.pid!, 'SIGKILL');
    }, 900_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
