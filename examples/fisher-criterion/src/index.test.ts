/**
 * The example plugin: importing it registers 'fisher'; its scores match a hand computation on a
 * tiny random LLaMA; loaded the way the CLI loads `--plugin <package>` (Node's resolution, which
 * picks the CommonJS build and so a second copy of @moreau/core), it still lands in the registry
 * an ESM host reads.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type CalibrationSet,
  getCriterion,
  type HostTensor,
  jit,
  listCriteria,
  prune,
  ReferenceBackend,
  Rng,
  resolveOptions,
  sampleCalibration,
  tensor,
  valueAndGrad,
} from '@moreau/core';
import { LlamaModel, llamaLoss, randomInit } from '@moreau/models';
import { smallConfig } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { fisher } from './index.js';

const config = smallConfig({
  vocabSize: 32,
  hiddenSize: 16,
  intermediateSize: 12,
  headDim: 4,
  tieWordEmbeddings: true,
});
const model = new LlamaModel(config, randomInit(config, 3, { std: 0.2 }));
const backend = new ReferenceBackend();
const stream = Array.from(new Rng(99).uniformArray(400, 0, 32), Math.floor);
const calibration: CalibrationSet = sampleCalibration(stream, { samples: 3, seqLen: 8, seed: 5 });

/** Unit scores by hand: sum over every row / column slice of the unit of mean_i (w * g_i)^2. */
async function byHand(windows: readonly (readonly number[])[]): Promise<Map<string, number[]>> {
  const f = jit(
    valueAndGrad((p: Record<string, any>, ids: any) => llamaLoss(p, ids, config)),
    { backend },
  );
  const perWindow: Record<string, HostTensor>[] = [];
  for (const w of windows) {
    const [, g] = (await f(
      Object.fromEntries(model.params),
      tensor(Int32Array.from(w), [1, w.length], 'int32'),
    )) as [HostTensor, Record<string, HostTensor>];
    perWindow.push(g);
  }
  const out = new Map<string, number[]>();
  for (const group of model.groups(['attention', 'mlp'])) {
    out.set(
      group.id,
      Array.from({ length: group.units }, (_, u) => {
        let s = 0;
        for (const m of group.members) {
          const t = model.params.get(m.param)!;
          const [rows, cols] = t.shape as [number, number];
          const w = t.data as Float32Array;
          const at = (i: number) =>
            perWindow.reduce((acc, g) => acc + (w[i]! * (g[m.param]!.data as Float32Array)[i]!) ** 2, 0) /
            windows.length;
          for (let j = m.offset + u * m.span; j < m.offset + (u + 1) * m.span; j++) {
            if (m.axis === 0) for (let c = 0; c < cols; c++) s += at(j * cols + c);
            else for (let r = 0; r < rows; r++) s += at(r * cols + j);
          }
        }
        return s;
      }),
    );
  }
  return out;
}

function expectClose(got: ReadonlyMap<string, Float64Array>, want: Map<string, number[]>) {
  for (const [id, w] of want) {
    const scale = Math.max(...w);
    w.forEach((v, i) => {
      expect(Math.abs(got.get(id)![i]! - v), `${id}[${i}]`).toBeLessThanOrEqual(1e-4 * scale);
    });
  }
}

describe('@moreau/example-fisher-criterion', () => {
  it("importing it registers 'fisher' with its documented option", () => {
    expect(listCriteria()).toContain('fisher');
    expect(getCriterion('fisher')).toBe(fisher);
    expect(fisher.requires).toEqual({ gradients: true, calibration: true });
    expect(resolveOptions(fisher)).toEqual({ windows: 0 });
    expect(() => resolveOptions(fisher, { window: 2 })).toThrow(
      "criterion 'fisher' has no option 'window'; valid options: windows",
    );
  });

  it('scores units by the mean over windows of (w * dL/dw)^2, one backward pass per window', async () => {
    const progress: string[] = [];
    const { scores, plan } = await prune(model, {
      criterion: 'fisher',
      ratio: 0.25,
      calibration,
      backend,
      onProgress: (p) => progress.push(`${p.phase} ${p.done}/${p.total}`),
    });
    expectClose(scores, await byHand(calibration.iterations[0]!));
    expect(progress.filter((p) => p.startsWith('fisher'))).toEqual([
      'fisher: per-window gradients 1/3',
      'fisher: per-window gradients 2/3',
      'fisher: per-window gradients 3/3',
    ]);
    expect(plan.criterion).toEqual({ name: 'fisher', options: { windows: 0 } });
  });

  it('windows=N uses the first N windows; more than there are means all of them', async () => {
    const two = await prune(model, {
      criterion: 'fisher',
      options: { windows: 2 },
      ratio: 0.25,
      calibration,
      backend,
    });
    expectClose(two.scores, await byHand(calibration.iterations[0]!.slice(0, 2)));
    const many = await prune(model, {
      criterion: 'fisher',
      options: { windows: 9 },
      ratio: 0.25,
      calibration,
      backend,
    });
    expectClose(many.scores, await byHand(calibration.iterations[0]!));
  });

  it('needs calibration windows', async () => {
    await expect(prune(model, { criterion: 'fisher', ratio: 0.25 })).rejects.toThrow(
      /criterion 'fisher' needs calibration windows/,
    );
  });
});

// The built package, loaded as `moreau --plugin @moreau/example-fisher-criterion` loads it. It
// exercises dist/ files, which `npm test` builds first (nx may restore them from its cache, so
// their age says nothing); run alone without a build, it is skipped.
const here = path.dirname(fileURLToPath(import.meta.url));
const pluginCjs = path.resolve(here, '../dist/index.cjs');
const coreCjs = path.resolve(here, '../../../packages/core/dist/index.cjs');
const builtFresh = existsSync(pluginCjs) && existsSync(coreCjs);
if (!builtFresh)
  console.warn(
    'fisher plugin CommonJS test skipped: dist/ of core or of the plugin is missing (npm run build)',
  );

describe.skipIf(!builtFresh)('the built plugin, resolved like the CLI resolves a package name', () => {
  it('registers where this (ESM, source) copy of core looks, and the other copy sees this one', () => {
    const require = createRequire(path.resolve(here, '../../../package.json'));
    const resolved = require.resolve('@moreau/example-fisher-criterion');
    expect(resolved).toBe(pluginCjs);
    const otherCore = require('@moreau/core') as typeof import('@moreau/core');
    expect(otherCore.getCriterion).not.toBe(getCriterion); // a second copy of core (its CommonJS build)
    const mod = require(resolved) as { fisher: typeof fisher };
    expect(mod.fisher).not.toBe(fisher); // and of the plugin, declaring the same criterion: accepted
    expect(getCriterion('fisher')).toBe(fisher); // the first registration stays
    expect(otherCore.getCriterion('fisher')).toBe(fisher); // one registry for both copies
    expect(otherCore.listCriteria()).toEqual(listCriteria());
  });
});
