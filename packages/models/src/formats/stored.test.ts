import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AbortError,
  castHost,
  cutModel,
  type HostTensor,
  hostTensorsEqual,
  isLazyTensor,
  lazyTensor,
} from '@moreau/core';
import {
  formatError,
  haveShared,
  STORIES_BIN,
  sharedPath,
  smallConfig,
  TINY_GGUF,
  useScratchDir,
} from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { randomInit } from '../llama/presets.js';
import { LlamaModel } from '../llama/prunable.js';
import type { Checkpoint } from './checkpoint.js';
import { FormatError } from './errors.js';
import { loadGguf, saveGguf } from './gguf/llama.js';
import { loadHfDirectory, saveHfDirectory } from './hf-dir.js';
import { loadLlama2c, saveLlama2c } from './llama2c.js';
import { loadCheckpoint } from './load.js';
import { decideLazy, firstNonFinite } from './stored.js';

const dir = useScratchDir();

function expectSame(a: ReadonlyMap<string, HostTensor>, b: ReadonlyMap<string, HostTensor>): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [n, t] of a) expect(hostTensorsEqual(t, b.get(n)!), n).toBe(true);
}

const allLazy = (m: ReadonlyMap<string, HostTensor>) => [...m.values()].every(isLazyTensor);
const noneLazy = (m: ReadonlyMap<string, HostTensor>) => ![...m.values()].some(isLazyTensor);

const small = (): Checkpoint => {
  const config = smallConfig();
  return { config, tensors: randomInit(config, 3), format: 'hf', sourceDtype: 'F32' };
};

describe('lazy loading', () => {
  it("'auto' is lazy above a quarter of the available memory", async () => {
    expect(await decideLazy('auto', 1000)).toBe(false);
    expect(await decideLazy(undefined, 2 ** 60)).toBe(true);
    expect(await decideLazy(true, 0)).toBe(true);
    expect(await decideLazy(false, 2 ** 60)).toBe(false);
  });

  it('HF directories (single file and sharded, with a dtype conversion) give the same tensors lazily', async () => {
    const ckpt = small();
    const one = join(dir(), 'one');
    await saveHfDirectory(one, ckpt);
    const sharded = join(dir(), 'sharded');
    const files = await saveHfDirectory(sharded, ckpt, { dtype: 'bfloat16', maxShardBytes: 4000 });
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(2);
    for (const [path, dtype] of [
      [one, undefined],
      [one, 'float16'],
      [sharded, undefined],
      [sharded, 'float32'],
    ] as const) {
      const opts = dtype ? { dtype } : {};
      const eager = await loadHfDirectory(path, { ...opts, lazy: false });
      const lazy = await loadHfDirectory(path, { ...opts, lazy: true });
      expect(noneLazy(eager.tensors)).toBe(true);
      expect(allLazy(lazy.tensors)).toBe(true);
      expect(lazy.config).toEqual(eager.config);
      expect(lazy.sourceDtype).toBe(eager.sourceDtype);
      expectSame(lazy.tensors, eager.tensors);
    }
    const back = await loadHfDirectory(one, { lazy: 'auto' }); // small: eager
    expect(noneLazy(back.tensors)).toBe(true);
    expectSame(back.tensors, ckpt.tensors);
  });

  it.skipIf(!haveShared('lazy llama2.c test', STORIES_BIN))(
    'llama2.c: q/k rows are permuted (and converted) inside the lazy loader',
    async () => {
      const file = sharedPath(STORIES_BIN);
      const eager = await loadLlama2c(file, { lazy: false });
      const lazy = await loadLlama2c(file, { lazy: true });
      expect(allLazy(lazy.tensors)).toBe(true);
      expectSame(lazy.tensors, eager.tensors);
      const lazy16 = await loadCheckpoint(file, { lazy: true, dtype: 'float16' });
      for (const [n, t] of eager.tensors)
        expect(hostTensorsEqual(lazy16.tensors.get(n)!, castHost(t, 'float16')), n).toBe(true);
    },
  );

  it.skipIf(!haveShared('lazy GGUF test', TINY_GGUF))(
    'GGUF: lazily read tensors equal the eager ones',
    async () => {
      const eager = await loadGguf(sharedPath(TINY_GGUF), { lazy: false });
      const lazy = await loadGguf(sharedPath(TINY_GGUF), { lazy: true });
      expect(allLazy(lazy.tensors)).toBe(true);
      expectSame(lazy.tensors, eager.tensors);
    },
  );

  it('a lazy model cut by core stays lazy and saves to every format tensor by tensor', async () => {
    const ckpt = small();
    const src = join(dir(), 'src-model');
    await saveHfDirectory(src, ckpt);
    const lazy = await loadHfDirectory(src, { lazy: true });
    const model = new LlamaModel(lazy.config, lazy.tensors);
    const cut = cutModel(
      model,
      new Map([
        ['layer.0.attention', [1]],
        ['layer.1.mlp', [0, 5, 7]],
      ]),
    ) as LlamaModel;
    expect(allLazy(cut.params)).toBe(true);
    const eagerCut = cutModel(
      new LlamaModel(ckpt.config, ckpt.tensors),
      new Map([
        ['layer.0.attention', [1]],
        ['layer.1.mlp', [0, 5, 7]],
      ]),
    ) as LlamaModel;
    const pruned: Checkpoint = { ...lazy, config: cut.config, tensors: new Map(cut.params) };
    const hf = join(dir(), 'cut-hf');
    await saveHfDirectory(hf, pruned, { maxShardBytes: 3000 });
    expectSame((await loadHfDirectory(hf)).tensors, eagerCut.params);
    const gguf = join(dir(), 'cut.gguf');
    await saveGguf(gguf, pruned);
    expectSame((await loadGguf(gguf, { lazy: true })).tensors, eagerCut.params);
    const unpruned = join(dir(), 'lazy.bin');
    await saveLlama2c(unpruned, lazy);
    expectSame((await loadLlama2c(unpruned)).tensors, ckpt.tensors);
  });

  it('saving materialises one tensor at a time (the next one only while the previous is written)', async () => {
    const base = small();
    const events: string[] = [];
    const tensors = new Map(
      [...base.tensors].map(([n, t]) => [
        n,
        lazyTensor(t.shape, t.dtype, () => {
          events.push(`load ${n}`);
          return t.data;
        }),
      ]),
    );
    const out = join(dir(), 'streamed');
    await saveHfDirectory(
      out,
      { ...base, tensors },
      { maxShardBytes: 5000, onProgress: (p) => events.push(`written ${p.tensor}`) },
    );
    // Before the k-th load, at least k - 2 tensors have been written.
    let loads = 0;
    let written = 0;
    for (const e of events) {
      if (e.startsWith('load')) {
        loads++;
        expect(written).toBeGreaterThanOrEqual(loads - 2);
      } else written++;
    }
    expect(written).toBe(tensors.size);
    expectSame((await loadHfDirectory(out)).tensors, base.tensors);
  });

  it('PyTorch pickle weights are refused with the one-line conversion to safetensors', async () => {
    for (const files of [
      ['pytorch_model.bin'],
      ['pytorch_model-00001-of-00002.bin', 'pytorch_model.bin.index.json'],
    ]) {
      const d = join(dir(), `pickle-${files.length}`);
      await saveHfDirectory(d, small());
      const { rm } = await import('node:fs/promises');
      await rm(join(d, 'model.safetensors'));
      for (const f of files) await writeFile(join(d, f), 'PK');
      const e = await formatError(loadHfDirectory(d));
      expect(e.file).toBe(d);
      expect(e.detail).toContain('has only PyTorch pickle weights');
      expect(e.detail).toContain(
        `python -c "import transformers as t; t.AutoModelForCausalLM.from_pretrained('${d}', torch_dtype='auto')` +
          `.save_pretrained('${d}-safetensors', safe_serialization=True); ` +
          `t.AutoTokenizer.from_pretrained('${d}').save_pretrained('${d}-safetensors')"`,
      );
    }
  });

  it("an output path with a trailing slash ('out/') is written as out, atomically", async () => {
    const out = join(dir(), 'slashed');
    await saveHfDirectory(`${out}/`, small());
    expect((await loadHfDirectory(out)).config).toEqual(small().config);
    expect((await readdir(dir())).filter((f) => f.startsWith('slashed'))).toEqual(['slashed']);
  });

  it('an abort between tensors stops the save and leaves nothing behind', async () => {
    const ckpt = small();
    const ac = new AbortController();
    const out = join(dir(), 'aborted');
    const e = await saveHfDirectory(out, ckpt, {
      maxShardBytes: 3000,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.tensorsDone === 3) ac.abort();
      },
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AbortError);
    expect((await readdir(dir())).filter((f) => f.startsWith('aborted'))).toEqual([]);
  });
});

describe('a process that exits in the middle of a save', () => {
  it('leaves neither the temporary directory nor a half-replaced output (plain and --overwrite)', async () => {
    const hfDir = fileURLToPath(new URL('./hf-dir.ts', import.meta.url));
    const fixtures = fileURLToPath(new URL('../../../../test-utils/index.ts', import.meta.url));
    const presets = fileURLToPath(new URL('../llama/presets.ts', import.meta.url));
    const core = fileURLToPath(new URL('../../../core/src/index.ts', import.meta.url));
    for (const overwrite of [false, true]) {
      const parent = join(dir(), `exit-${overwrite}`);
      await mkdir(parent);
      const out = join(parent, 'out');
      if (overwrite) {
        await mkdir(out);
        await writeFile(join(out, 'mine.txt'), 'keep me');
      }
      const script = `
        import { lazyTensor } from ${JSON.stringify(core)};
        import { saveHfDirectory } from ${JSON.stringify(hfDir)};
        import { smallConfig } from ${JSON.stringify(fixtures)};
        import { randomInit } from ${JSON.stringify(presets)};
        const config = smallConfig();
        let n = 0;
        const tensors = new Map([...randomInit(config, 1)].map(([k, t]) => [k, lazyTensor(t.shape, t.dtype, () => {
          if (++n === 5) process.exit(130);
          return t.data;
        })]));
        await saveHfDirectory(${JSON.stringify(out)}, { config, tensors, format: 'hf', sourceDtype: 'F32' },
          { overwrite: ${overwrite}, maxShardBytes: 3000 });`;
      const run = promisify(execFile)(process.execPath, [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        script,
      ]);
      const code = await run.then(
        () => 0,
        (e: { code?: number }) => e.code,
      );
      expect(code).toBe(130);
      expect(await readdir(parent)).toEqual(overwrite ? ['out'] : []);
      if (overwrite) expect(await readdir(out)).toEqual(['mine.txt']);
    }
  });
});

describe('non-finite weights and changed files', () => {
  it('eager loading names the tensor and the first bad element; lazy loading does at first read', async () => {
    const ckpt = small();
    const name = 'model.layers.1.mlp.down_proj.weight';
    const t = ckpt.tensors.get(name)!;
    const data = (t.data as Float32Array).slice();
    data[2 * t.shape[1]! + 5] = Number.NaN;
    data[40] = Number.POSITIVE_INFINITY; // before the NaN (element 53): the first one is reported
    const bad: Checkpoint = { ...ckpt, tensors: new Map(ckpt.tensors).set(name, { ...t, data }) };
    const out = join(dir(), 'nan');
    await saveHfDirectory(out, bad, { dtype: 'bfloat16' });
    const e = await formatError(loadHfDirectory(out, { lazy: false }));
    expect(e.file).toBe(join(out, 'model.safetensors'));
    expect(e.detail).toBe(`tensor ${name} has a non-finite value: Infinity at element 40 (row 1, column 16)`);
    const lazy = await loadHfDirectory(out, { lazy: true }); // loads: nothing is read
    const lt = lazy.tensors.get(name)!;
    expect(() => lt.data).toThrow(FormatError);
    expect(() => lt.data).toThrow(/non-finite value: Infinity at element 40/);
    expect(lazy.tensors.get('model.norm.weight')!.data.length).toBe(32); // other tensors are fine
    // float32 -> float16 conversion that overflows is caught too.
    const big = small();
    const w = big.tensors.get('model.embed_tokens.weight')!;
    const wd = (w.data as Float32Array).slice();
    wd[7] = 1e6;
    const out2 = join(dir(), 'overflow');
    await saveHfDirectory(out2, {
      ...big,
      tensors: new Map(big.tensors).set('model.embed_tokens.weight', { ...w, data: wd }),
    });
    expect((await formatError(loadHfDirectory(out2, { dtype: 'float16', lazy: false }))).detail).toMatch(
      /tensor model.embed_tokens.weight overflows float16: Infinity at element 7/,
    );
  });

  it('firstNonFinite checks float32, float16 and bfloat16 bits', () => {
    expect(firstNonFinite(Float32Array.from([1, -3e38, 0]), 'float32')).toBe(-1);
    expect(firstNonFinite(Float32Array.from([1, Number.NEGATIVE_INFINITY]), 'float32')).toBe(1);
    expect(firstNonFinite(Uint16Array.from([0x3c00, 0x7bff, 0xfc00]), 'float16')).toBe(2);
    expect(firstNonFinite(Uint16Array.from([0x3f80, 0x7fc0]), 'bfloat16')).toBe(1);
    expect(firstNonFinite(Uint16Array.from([0x7c00]), 'bfloat16')).toBe(-1); // a finite bfloat16
  });

  it('a file that changed on disk after a lazy load is an error, not other weights', async () => {
    const out = join(dir(), 'changing');
    await saveHfDirectory(out, small());
    const lazy = await loadHfDirectory(out, { lazy: true });
    const file = join(out, 'model.safetensors');
    const bytes = await readFile(file);
    await writeFile(file, Buffer.concat([bytes, Buffer.from('xx')]));
    const t = lazy.tensors.get('model.norm.weight')!;
    expect(() => t.data).toThrow(/model.safetensors: changed on disk since the model was loaded/);
  });
});
