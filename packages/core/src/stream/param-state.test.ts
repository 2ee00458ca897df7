import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../rng.js';
import { ParamState } from './param-state.js';

const root = mkdtempSync(path.join(tmpdir(), 'moreau-param-state-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A criterion's update loop (delta <- shrink(delta - lr * g)) over a few parameters, on a store. */
async function run(state: ParamState): Promise<Map<string, Float32Array>> {
  const rng = new Rng(7);
  const sizes = { embed: 96, 'layers.0.w': 33, 'layers.1.w': 1, norm: 8 };
  for (let it = 0; it < 5; it++) {
    for (const [key, n] of Object.entries(sizes)) {
      const delta = Float32Array.from(await state.get(key, n));
      for (let i = 0; i < n; i++) {
        const g = rng.normal() * 1e-3;
        const v = delta[i]! - 0.02 * g;
        delta[i] = Math.abs(v) < 1e-5 ? -0 : v * 0.999;
      }
      // Values a float32 file must keep exactly: -0, subnormals, the largest finite float.
      if (it === 4 && key === 'norm') delta.set([-0, 1e-45, 3.4028234663852886e38], 0);
      await state.set(key, delta);
    }
  }
  const out = new Map<string, Float32Array>();
  for (const [key, n] of Object.entries(sizes)) out.set(key, Float32Array.from(await state.get(key, n)));
  return out;
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

describe('ParamState: criterion state in memory or spilled to disk', () => {
  it('spilled state gives the deltas of in-memory state, bit for bit, and its folder is removed', async () => {
    const memory = await ParamState.create(1e3, 1e9);
    expect(memory.spilled).toBe(false);
    const dir = path.join(root, 'state');
    const disk = await ParamState.create(1e3, 1e9, { dir, spill: true });
    expect(disk.spilled).toBe(true);
    const [a, b] = [await run(memory), await run(disk)];
    for (const [k, v] of a) expect(bytes(b.get(k)!), k).toBe(bytes(v));
    await disk.dispose();
    // The user's folder stays; the store's own moreau-state-* subfolder goes.
    expect(existsSync(dir)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('state larger than the budget spills even without a folder', async () => {
    const s = await ParamState.create(2e9, 1e9);
    expect(s.spilled).toBe(true);
    await s.dispose();
  });

  it('a state folder that is a file, or disappears, is an error naming the folder', async () => {
    const file = path.join(root, 'a-file');
    await import('node:fs/promises').then((fs) => fs.writeFile(file, 'x'));
    await expect(ParamState.create(1e3, 1e9, { dir: file, spill: true })).rejects.toThrow(
      /--state-dir '.*a-file' cannot be created/,
    );
    const s = await ParamState.create(1e3, 1e9, { dir: path.join(root, 'gone'), spill: true });
    rmSync(path.join(root, 'gone'), { recursive: true, force: true });
    await expect(s.set('k', new Float32Array(4))).rejects.toThrow(/cannot write criterion state to '.*gone/);
  });

  // /dev/full answers every write with ENOSPC, as a full disk does: the state file is made a link to it.
  it.skipIf(!existsSync('/dev/full'))(
    'a full disk stops the run with a message naming the folder',
    async () => {
      const s = await ParamState.create(1e3, 1e9, { dir: path.join(root, 'full'), spill: true });
      symlinkSync('/dev/full', path.join(s.dir!, `${encodeURIComponent('delta:w')}.f32`));
      await expect(s.set('delta:w', new Float32Array(1024))).rejects.toThrow(
        /^the state folder '.*full\/moreau-state-\w+' is full \(writing .* for delta:w\); free space or pass --state-dir on a larger disk$/,
      );
      await s.dispose();
    },
  );
});
